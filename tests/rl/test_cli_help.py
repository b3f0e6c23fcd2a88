"""The command line's help, version and messages read as a command line's, not as API docs."""

import re
import subprocess
import sys

import pytest

from jsurgery.cli import build_parser, main

SUBCOMMANDS = ("train", "surgery", "run", "list")
REST_MARKUP = re.compile(r"``|:(class|func|mod|data|meth|attr):`")


def help_text(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", ("", *SUBCOMMANDS))
def test_help_has_no_rest_markup(command, capsys):
    text = help_text([command] if command else [], capsys)
    assert text.startswith("usage: jsurgery")
    assert not REST_MARKUP.search(text), REST_MARKUP.search(text)


def test_every_subcommand_is_checked_here():
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    assert tuple(commands.choices) == SUBCOMMANDS


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    from jsurgery import __version__

    assert capsys.readouterr().out.strip() == f"jsurgery {__version__}"


def test_train_help_lists_environments_ids_steps_and_config_keys(capsys):
    text = " ".join(help_text(["train"], capsys).split())
    assert "CartPole-v1, 50000 steps obs: x, x_dot, theta, theta_dot actions: left, right" in text
    assert "LunarLander-v3, 200000 steps" in text and "Pong-misc" in text
    assert "gamma, n_step" in text and "max_grad_norm" in text


def test_run_help_lists_experiments_protocols_and_defaults(capsys):
    text = help_text(["run"], capsys)
    assert "cartpole-add-obs: original, long, tiny" in text
    assert "(default: results)" in text


RUN_ERRORS = [
    (["run", "cartpole-add-ob"], "unknown experiment 'cartpole-add-ob' "
     "(did you mean 'cartpole-add-obs'?)"),
    (["run", "cartpole-add-obs", "--protocol", "tinny"], "(did you mean 'tiny'?)"),
    (["run", "cartpole-add-obs", "--seeds", "0"], "expected a positive integer"),
    (["run", "cartpole-add-obs", "--log", "tensorbord"], "(did you mean 'tensorboard'?)"),
]  # fmt: skip


@pytest.mark.parametrize("argv, message", RUN_ERRORS, ids=[" ".join(c[0][2:]) for c in RUN_ERRORS])
def test_run_errors_are_error_lines(argv, message, tmp_path, capsys):
    try:
        code = main([*argv, "--out", str(tmp_path / "out")])
    except SystemExit as error:  # argparse
        code = error.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("jsurgery run: error: ") and "`" not in err, err
    assert message in err, err


def test_a_missing_tracking_extra_names_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now fails
    code = main(["train", "CartPole-v1", "--log", "csv,wandb", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err == (
        "jsurgery train: error: --log wandb needs wandb, which is not installed; install it "
        "with pip install 'jsurgery[wandb]'"
    )


def test_a_closed_pipe_ends_quietly():
    """jsurgery list | head -0: the reader is gone before anything is written."""
    process = subprocess.Popen(
        [sys.executable, "-m", "jsurgery", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    process.stdout.close()
    stderr = process.communicate(timeout=120)[1].decode()
    assert process.returncode == 1 and stderr == "", stderr
