"""Every bad command-line argument: one line naming the problem and the fix, exit status 2."""

import json
import shutil
import sys
import tomllib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsurgery.cli import main
from jsurgery.rl import DQNConfig, QNetwork, make_env, make_optimizer, save_agent


def run_cli(argv, capsys):
    try:
        code = main(argv)
    except SystemExit as error:  # argparse
        code = error.code
    captured = capsys.readouterr()
    return code, captured.err.strip()


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory):
    """An untrained CartPole run on ``x_dot, theta``, hidden (8, 8), seeds 0 and 1 (no training)."""
    env = make_env("CartPole-v1", obs=["x_dot", "theta"])
    config = DQNConfig(hidden=(8, 8))
    network = QNetwork.for_config(config, env.num_actions)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    params = jax.vmap(lambda k: network.init(k, jnp.zeros((1, env.num_obs))))(keys)
    state = {"params": params, "target_params": params,
             "opt_state": jax.vmap(make_optimizer(config).init)(params)}  # fmt: skip
    return save_agent(tmp_path_factory.mktemp("runs") / "run", config, env, state)


CASES = [
    (["train", "Foo-v0", "--out", "{out}"], "unknown environment 'Foo-v0'"),
    (["train", "Pendulum-v1", "--out", "{out}"], "train it with PPO: jsurgery train --algo ppo"),
    (["train", "CartPole-v1", "--obs", "x,y", "--out", "{out}"], "unknown names ['y']"),
    (["train", "CartPole-v1", "--steps", "1234", "--out", "{out}"], "use e.g. --steps 1250"),
    (["train", "CartPole-v1", "--steps", "0", "--out", "{out}"], "expected a positive integer"),
    (["train", "CartPole-v1", "--hidden", "a,b", "--out", "{out}"], "such as 64,64"),
    (["train", "CartPole-v1", "--seeds", "-1", "--out", "{out}"], "expected a positive integer"),
    (["train", "CartPole-v1", "--exploration-start", "2", "--out", "{out}"], "in [0, 1]"),
    (["train", "CartPole-v1", "--learning-rate", "-1", "--out", "{out}"], "positive finite number"),
    (["train", "CartPole-v1"], "the following arguments are required: --out"),
    (["train", "CartPole-v1", "--init", "{missing}", "--out", "{out}"], "no such directory"),
    (["train", "CartPole-v1", "--init", "{empty}", "--out", "{out}"], "not a saved run"),
    (["train", "Acrobot-v1", "--init", "{run}", "--out", "{out}"],
     "trained on CartPole-v1, not Acrobot-v1"),
    (["train", "CartPole-v1", "--init", "{run}", "--obs", "x,theta", "--out", "{out}"],
     "drop --obs"),
    (["train", "CartPole-v1", "--init", "{run}", "--seeds", "3", "--out", "{out}"],
     "holds 2 seeds"),
    (["train", "CartPole-v1", "--init", "{run}", "--hidden", "16", "--out", "{out}"],
     "drop --hidden"),
    (["train", "CartPole-v1", "--init", "{run}", "--set", "hidden=16", "--out", "{out}"],
     "--set hidden=16: the network under --init is the run's (hidden 8,8, layer_norm false)"),
    (["train", "CartPole-v1", "--init", "{run}", "--set", "layer_norm=true", "--out", "{out}"],
     "drop layer_norm"),
    (["surgery", "{empty}", "--out", "{out}"], "RUN_DIR {empty}: not a saved run"),
    (["surgery", "{run}", "--obs", "x,speed", "--out", "{out}"], "unknown names ['speed']"),
    (["surgery", "{run}", "--actions", "left,left", "--out", "{out}"], "appear twice"),
    (["surgery", "{run}", "--recipe", "magic", "--out", "{out}"], "invalid choice: 'magic'"),
    (["surgery", "{run}", "--hidden", "8,8,8", "--out", "{out}"],
     "does not fit this change: the layers can be matched in more than one"),
    (["surgery", "{run}", "--out", "{run}"], "is the run being read"),
    (["surgery", "{run}", "--layers", "Dense_2", "--out", "{out}"], "expected NEW=OLD pairs"),
    (["surgery", "{run}", "--layers", "Dense_9=Dense_0", "--out", "{out}"],
     "'Dense_9' is not a layer of the new template"),
    (["run", "no-such-experiment"], "unknown experiment 'no-such-experiment'"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
]  # fmt: skip

FILE_SYSTEM_AND_NUMBER_CASES = [
    (["train", "CartPole-v1", "--out", "{file}"], "{file}: is a file, not a directory"),
    (["train", "CartPole-v1", "--out", "{file}/run"], "lies under the file {file}"),
    (["train", "CartPole-v1", "--out", "{unwritable}/run"], "cannot write in {unwritable}"),
    (["train", "CartPole-v1", "--init", "{file}", "--out", "{out}"],
     "--init {file}: is a file, not a directory"),
    (["train", "CartPole-v1", "--init", "{damaged}", "--out", "{out}"],
     "agent.json is damaged: not JSON"),
    (["surgery", "{file}", "--out", "{out}"], "RUN_DIR {file}: is a file, not a directory"),
    (["surgery", "{missing}", "--out", "{out}"], "RUN_DIR {missing}: no such directory"),
    (["surgery", "{damaged}", "--out", "{out}"], "agent.json is damaged: not JSON"),
    (["surgery", "{run}", "--out", "{file}"], "{file}: is a file, not a directory"),
    (["surgery", "{run}", "--out", "{file}/new"], "lies under the file {file}"),
    (["surgery", "{run}", "--out", "{unwritable}/new"], "cannot write in {unwritable}"),
    (["run", "cartpole-add-obs", "--out", "{file}"], "{file}: is a file, not a directory"),
    (["run", "cartpole-add-obs", "--out", "{file}/results"], "lies under the file {file}"),
    (["run", "cartpole-add-obs", "--out", "{unwritable}/r"], "cannot write in {unwritable}"),
    (["train", "CartPole-v1", "--config", "{missing}.toml", "--out", "{out}"], "cannot read it"),
    (["train", "CartPole-v1", "--config", "{empty}", "--out", "{out}"],
     "expected a .toml, .yaml or .yml file"),
    (["train", "CartPole-v1", "--config", "{bad_toml}", "--out", "{out}"], "not valid TOML"),
    (["train", "CartPole-v1", "--learning-rate", "inf", "--out", "{out}"],
     "expected a positive finite number, got 'inf'"),
    (["train", "CartPole-v1", "--learning-rate", "nan", "--out", "{out}"],
     "expected a positive finite number, got 'nan'"),
    (["train", "CartPole-v1", "--learning-rate=-inf", "--out", "{out}"],
     "expected a positive finite number"),
    (["train", "CartPole-v1", "--exploration-start", "nan", "--out", "{out}"], "in [0, 1]"),
    (["train", "CartPole-v1", "--save-every", "inf", "--out", "{out}"], "expected seconds >= 0"),
    (["train", "CartPole-v1", "--save-every", "-1", "--out", "{out}"], "expected seconds >= 0"),
    (["train", "CartPole-v1", "--steps", "1e9", "--out", "{out}"], "expected a positive integer"),
    (["train", "CartPole-v1", "--set", "learning_rate=inf", "--out", "{out}"],
     "expected a finite number for learning_rate"),
    (["train", "CartPole-v1", "--set", "gamma=nan", "--out", "{out}"],
     "expected a finite number for gamma"),
    (["train", "CartPole-v1", "--set", "gamma=2", "--out", "{out}"], "in [0, 1], got 2.0"),
    (["train", "CartPole-v1", "--set", "tau=-1", "--out", "{out}"], "expected 0 < tau <= 1"),
    (["train", "CartPole-v1", "--set", "batch_size=0", "--out", "{out}"],
     "expected a positive integer, got 0"),
    (["run", "cartpole-add-obs", "--seeds", "0"], "expected a positive integer, got '0'"),
    (["run", "cartpole-add-obs", "--log", "nope"], "unknown backend 'nope'"),
]  # fmt: skip


def _unwritable(tmp_path) -> Path:
    """A folder no file can be created in: a read-only one, or /proc where permissions do not
    stop the user (root)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        (folder / "probe").touch()
    except PermissionError:
        return folder
    (folder / "probe").unlink()
    if not Path("/proc").is_dir():
        pytest.skip("no folder here that refuses writes")
    return Path("/proc")


def _paths(saved_run, tmp_path) -> dict:
    (tmp_path / "empty").mkdir()
    (tmp_path / "a-file").write_text("not a directory\n")
    (tmp_path / "bad.toml").write_text("gamma = \n")
    damaged = tmp_path / "damaged"
    shutil.copytree(saved_run, damaged)
    (damaged / "agent.json").write_bytes(b'{"env_id": "CartPole-v1", "obs_')
    return {"out": tmp_path / "out", "missing": tmp_path / "missing", "empty": tmp_path / "empty",
            "run": saved_run, "file": tmp_path / "a-file", "bad_toml": tmp_path / "bad.toml",
            "damaged": damaged, "unwritable": _unwritable(tmp_path)}  # fmt: skip


@pytest.fixture
def no_training(monkeypatch):
    """Every case must be refused before training: training fails the test loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError("an invocation that should have been refused started training")

    monkeypatch.setattr("jsurgery.commands.train.train_seeds", refuse)
    monkeypatch.setattr("jsurgery.rl.runner.train_seeds", refuse)


ALL_CASES = CASES + FILE_SYSTEM_AND_NUMBER_CASES


CASE_IDS = [" ".join(argv[:2]) + f"-{i}" for i, (argv, _) in enumerate(ALL_CASES)]


@pytest.mark.parametrize("argv, message", ALL_CASES, ids=CASE_IDS)
def test_bad_argument_is_one_line_and_status_2(
    argv, message, saved_run, tmp_path, capsys, no_training
):
    paths = _paths(saved_run, tmp_path)
    argv = [arg.format(**paths) for arg in argv]
    code, err = run_cli(argv, capsys)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith(
        (
            "jsurgery train: error: ",
            "jsurgery surgery: error: ",
            "jsurgery run: error: ",
            "jsurgery: error: ",
        )
    ), err
    assert "`" not in err, err
    assert message.format(**paths) in err, err
    assert not (tmp_path / "out").exists()


def test_there_are_at_least_45_malformed_invocations():
    assert len(ALL_CASES) >= 45


def test_init_takes_a_config_that_repeats_its_network(saved_run, capsys):
    """--set or a file may repeat the saved run's hidden and layer_norm; the rest applies."""
    argv = ["train", "CartPole-v1", "--init", str(saved_run), "--set", "hidden=8,8", "--set",
            "layer_norm=false", "--set", "gamma=0.9", "--print-config"]  # fmt: skip
    assert main(argv) == 0
    printed = tomllib.loads(capsys.readouterr().out)
    assert (printed["hidden"], printed["layer_norm"], printed["gamma"]) == ([8, 8], False, 0.9)
    assert (
        printed["exploration_start"] == printed["exploration_end"]
    )  # continuing: exploring little


@pytest.mark.parametrize("module, package", [("orbax.checkpoint", "orbax-checkpoint"),
                                             ("gymnax", "gymnax")])  # fmt: skip
def test_missing_optional_dependency(module, package, monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now fails
    code, err = run_cli(["train", "CartPole-v1", "--steps", "500", "--out", str(tmp_path)],
                        capsys)  # fmt: skip
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"needs {package}" in err and "pip install 'jsurgery[rl]'" in err, err


def test_a_tied_matching_is_settled_by_the_layers_the_error_names(saved_run, tmp_path, capsys):
    """8, 8 -> 8, 8, 8: the error names a --layers that settles it, and that run is exact."""
    out = tmp_path / "new"
    code, err = run_cli(["surgery", str(saved_run), "--hidden", "8,8,8", "--out", str(out)], capsys)
    assert code == 2 and "On the command line: --layers " in err, err
    pairs = err.split("--layers ")[-1].split()[0]
    argv = ["surgery", str(saved_run), "--hidden", "8,8,8", "--layers", pairs, "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads((out / "surgery.json").read_text())
    expected = dict(pair.split("=") for pair in pairs.split(","))
    assert summary["layers"] == expected
    for new, old in expected.items():
        assert f"{new} <- {old}" in summary["plan"], summary["plan"]
    # an inserted identity layer between ReLU layers: the same greedy policy, the same returns
    np.testing.assert_array_equal(summary["new_greedy_return"], summary["old_greedy_return"])
