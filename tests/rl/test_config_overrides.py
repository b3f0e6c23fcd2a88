"""--config FILE and --set KEY=VALUE reach every DQNConfig field; a bad key or value is one line."""

import json
import tomllib

import pytest

from jsurgery.cli import main
from jsurgery.rl.config_overrides import config_field_types
from jsurgery.rl.presets import cartpole_config

# Per field: the text given to --set, and the value it means; each differs from CartPole's preset.
NEW_VALUES = {
    "hidden": ("32,16", [32, 16]),
    "layer_norm": ("false", False),
    "learning_rate": ("1e-4", 1e-4),
    "learning_rate_end": ("none", None),
    "buffer_size": ("20000", 20_000),
    "batch_size": ("32", 32),
    "gamma": ("0.9", 0.9),
    "n_step": ("3", 3),
    "target_update_interval": ("100", 100),
    "tau": ("0.5", 0.5),
    "exploration_start": ("0.5", 0.5),
    "exploration_end": ("0.1", 0.1),
    "exploration_fraction": ("0.3", 0.3),
    "train_freq": ("500", 500),
    "gradient_steps": ("100", 100),
    "learning_starts": ("2000", 2000),
    "num_envs": ("2", 2),
    "total_steps": ("100000", 100_000),
    "eval_every": ("10000", 10_000),
    "eval_episodes": ("5", 5),
    "double_dqn": ("false", False),
    "max_grad_norm": ("1.5", 1.5),
}


def test_every_field_has_a_new_value_here():
    assert list(NEW_VALUES) == list(config_field_types())
    preset = cartpole_config().to_dict()
    assert all(preset[key] != value for key, (_, value) in NEW_VALUES.items())


def printed_text(argv, capsys) -> str:
    assert main(["train", "CartPole-v1", *argv, "--print-config"]) == 0
    return capsys.readouterr().out


def print_config(argv, capsys) -> dict:
    return tomllib.loads(printed_text(argv, capsys))


def _none_as_written(value):
    return "none" if value is None else value


@pytest.mark.parametrize("key", list(NEW_VALUES))
def test_set_reaches_the_field(key, capsys):
    text, value = NEW_VALUES[key]
    printed = print_config(["--set", f"{key}={text}"], capsys)
    assert printed[key] == _none_as_written(value)
    untouched = {"eval_every", "learning_rate_end"}  # the only fields a change may move along
    preset = cartpole_config().to_dict()
    assert all(printed[k] == _none_as_written(v) for k, v in preset.items()
               if k != key and k not in untouched)  # fmt: skip


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
@pytest.mark.parametrize("key", list(NEW_VALUES))
def test_config_file_reaches_the_field(key, suffix, tmp_path, capsys):
    _, value = NEW_VALUES[key]
    path = tmp_path / f"config{suffix}"
    if suffix == ".toml":
        path.write_text(f"{key} = {json.dumps(_none_as_written(value))}\n")
    else:
        path.write_text(f"{key}: {json.dumps(value)}\n")  # JSON is YAML; null for None
    assert print_config(["--config", str(path)], capsys)[key] == _none_as_written(value)


def test_print_config_reads_back_as_the_same_config(tmp_path, capsys):
    text = printed_text(["--steps", "10000", "--set", "learning_rate_end=none"], capsys)
    path = tmp_path / "run.toml"
    path.write_text(text)
    assert printed_text(["--config", str(path)], capsys) == text
    assert tomllib.loads(text)["total_steps"] == 10_000


def test_flags_win_over_the_file_and_set_wins_over_the_file(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("total_steps = 100000\ngamma = 0.5\nbatch_size = 16\n")
    printed = print_config(["--config", str(path), "--steps", "5000", "--set", "gamma=0.7"], capsys)
    assert (printed["total_steps"], printed["gamma"], printed["batch_size"]) == (5000, 0.7, 16)


BAD = [
    (["--set", "lerning_rate=0.1"], "--set lerning_rate=0.1: unknown key 'lerning_rate' "
     "(did you mean 'learning_rate'?)"),
    (["--set", "gamma=fast"], "--set gamma=fast: expected a number for gamma, got 'fast'"),
    (["--set", "gamma=2"], "--set gamma=2: gamma: expected a number in [0, 1], got 2.0"),
    (["--set", "hidden=8,x"], "--set hidden=8,x: expected widths such as 64,64"),
    (["--set", "double_dqn=maybe"], "expected true or false for double_dqn"),
    (["--set", "n_step=1.5"], "expected an integer for n_step"),
    (["--set", "learning_rate=nan"], "expected a finite number for learning_rate"),
    (["--set", "total_steps=1234"], "multiple of 250; use e.g. --set total_steps=1250"),
    (["--set", "gamma"], "argument --set: expected KEY=VALUE"),
    (["--steps", "5000", "--set", "total_steps=5000"], "both set total_steps; give one of them"),
    (["--config", "{toml}"], "{toml}: batch_size = 0: batch_size: expected a positive integer"),
    (["--config", "{typo}"], "{typo}: gama = 0.5: unknown key 'gama' (did you mean 'gamma'?)"),
    (["--config", "{yaml}"], "{yaml}: layer_norm = yes please: expected true or false"),
    (["--config", "{missing}"], "--config {missing}: cannot read it"),
    (["--config", "{json}"], "expected a .toml, .yaml or .yml file, got .json"),
]  # fmt: skip


@pytest.mark.parametrize("argv, message", BAD, ids=[c[0][-1] for c in BAD])
def test_a_bad_key_or_value_is_one_error_line(argv, message, tmp_path, capsys):
    files = {"toml": "batch_size = 0\n", "typo": "gama = 0.5\n", "yaml": "layer_norm: yes please\n"}
    paths = {name: tmp_path / f"{name}.{'yaml' if name == 'yaml' else 'toml'}" for name in files}
    for name, text in files.items():
        paths[name].write_text(text)
    paths |= {"missing": tmp_path / "missing.toml", "json": tmp_path / "c.json"}
    argv = [arg.format(**paths) for arg in argv]
    try:
        code = main(["train", "CartPole-v1", *argv, "--out", str(tmp_path / "out")])
    except SystemExit as error:  # argparse
        code = error.code
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("jsurgery train: error: ") and "`" not in err, err
    assert message.format(**paths) in err, err
    assert not (tmp_path / "out").exists()
