import contextlib
import csv
import io
import json
import struct

import numpy as np
import pytest

from jsurgery.cli import main
from jsurgery.rl import load_agent

CONFIG_FILE = """
hidden = [8]
eval_episodes = 2
buffer_size = 5000
"""


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short CartPole run of 2 seeds, configured by a file and --set, logged to csv and
    tensorboard: ``(out, metrics, what it printed to stderr)``."""
    pytest.importorskip("tensorboardX")
    root = tmp_path_factory.mktemp("train")
    (root / "small.toml").write_text(CONFIG_FILE)
    out = root / "cp"
    with contextlib.redirect_stderr(io.StringIO()) as stderr:
        code = main([
            "train", "CartPole-v1", "--seeds", "2", "--steps", "1000", "--config",
            str(root / "small.toml"), "--set", "buffer_size=1000", "--obs", "theta,x_dot",
            "--actions", "right,left", "--log", "csv,tensorboard", "--out", str(out),
        ])  # fmt: skip
    assert code == 0
    return out, json.loads((out / "metrics.json").read_text()), stderr.getvalue()


def test_compiling_is_announced_before_the_progress_bar(trained):
    _, metrics, stderr = trained
    first, bars = stderr.split("\n", 1)
    assert first == f"CartPole-v1 x2 seeds: compiling ... {metrics['compile_seconds']:.1f} s"
    assert "step/s" in bars and "eval_return=" in bars


def test_train_command_writes_checkpoint_metrics_and_plot(trained):
    out, metrics, _ = trained
    for name in ("metrics.json", "curves.png", "agent.json", "checkpoint"):
        assert (out / name).exists(), name
    assert metrics["obs_ids"] == ["theta", "x_dot"] and metrics["seeds"] == [0, 1]
    assert len(metrics["final_eval_return"]) == 2 and metrics["steps_per_second"] > 0
    assert metrics["eval_steps"][0] == 0 and metrics["eval_steps"][-1] == 1000
    assert len(metrics["episode_return"]) == 2
    assert len(metrics["episode_return"][0]) == len(metrics["episode_steps"])
    agent = load_agent(out, seed=1)
    actions = agent.act(np.zeros((5, 4), np.float32))
    assert actions.shape == (5,) and set(actions.tolist()) <= {0, 1}


def test_the_run_records_the_config_file_set_and_flags(trained):
    """The file's keys, --set over the file, --steps, and the preset for the rest."""
    from jsurgery.rl.presets import cartpole_config

    _, metrics, _ = trained
    expected = cartpole_config(1000, hidden=(8,)).replace(eval_episodes=2, buffer_size=1000)
    assert metrics["config"] == expected.to_dict()


def _expected_scalars(metrics) -> dict:
    """``{(run, tag, step): value}`` as metrics.json gives them, per seed and their mean."""
    expected = {}
    for tag, steps in (("eval_return", "eval_steps"), ("episode_return", "episode_steps")):
        rows = np.array(metrics[tag], dtype=np.float64)  # None (no episode yet) -> nan
        for step, column in zip(metrics[steps], rows.T, strict=True):
            for seed, value in zip(metrics["seeds"], column, strict=True):
                if np.isfinite(value):
                    expected[(f"seed_{seed}", tag, step)] = value
            if np.isfinite(column).any():
                expected[("mean", tag, step)] = np.nanmean(column)
    for key in ("steps_per_second", "compile_seconds", "run_seconds"):
        expected[("mean", key, metrics["eval_steps"][-1])] = metrics[key]
    return expected


def _read_events(path) -> list:
    """The events of a TensorBoard event file (records: length, crc, event, crc)."""
    from tensorboardX.proto import event_pb2

    data, events, offset = path.read_bytes(), [], 0
    while offset < len(data):
        (length,) = struct.unpack("<Q", data[offset : offset + 8])
        events.append(event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length]))
        offset += 12 + length + 4
    return events


def test_log_csv_holds_the_metrics_per_seed_and_mean(trained):
    out, metrics, _ = trained
    with (out / "scalars.csv").open() as f:
        rows = list(csv.DictReader(f))
    got = {(r["run"], r["tag"], int(r["step"])): float(r["value"]) for r in rows}
    expected = _expected_scalars(metrics)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_log_tensorboard_event_files_hold_the_metrics(trained):
    out, metrics, _ = trained
    got = {}
    for run_dir in (out / "tensorboard").iterdir():
        for path in run_dir.glob("events.out.tfevents.*"):
            for event in _read_events(path):
                for value in event.summary.value:
                    got[(run_dir.name, value.tag, event.step)] = value.simple_value
    expected = _expected_scalars(metrics)
    assert got.keys() == expected.keys()
    for key, value in expected.items():  # TensorBoard keeps float32
        assert got[key] == pytest.approx(value, rel=1e-6), key


def test_train_command_names_the_fix_for_odd_step_counts(tmp_path):
    from jsurgery.commands.train import train_command

    with pytest.raises(ValueError, match="--steps 1234: .* multiple of 250; use e.g. --steps 1250"):
        train_command("CartPole-v1", steps=1234, out=tmp_path / "x")
