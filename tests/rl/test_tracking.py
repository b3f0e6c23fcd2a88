"""The tracking backends receive the scalars of metrics.json and results.json."""

import sys
import types

import pytest

from jsurgery.rl import tracking
from jsurgery.rl.tracking import Scalar

SUMMARY = {
    "seeds": [0, 3],
    "eval_steps": [0, 100, 200],
    "eval_return": [[1.0, 2.0, 4.0], [3.0, 2.0, 6.0]],
    "episode_steps": [100, 200],
    "episode_return": [[None, 5.0], [7.0, 9.0]],
    "steps_per_second": 1234.5,
}


def test_training_scalars_per_seed_and_mean():
    got = {(s.run, s.tag, s.step): s.value for s in tracking.training_scalars(SUMMARY)}
    assert got[("seed_3", "eval_return", 200)] == 6.0
    assert got[("mean", "eval_return", 0)] == 2.0
    assert ("seed_0", "episode_return", 100) not in got  # no finished episode yet
    assert got[("mean", "episode_return", 100)] == 7.0  # the mean of the seeds that have one
    assert got[("mean", "episode_return", 200)] == 7.0
    assert got[("mean", "steps_per_second", 200)] == 1234.5
    assert len(got) == 3 * 3 + 3 + 2 + 1


def test_experiment_scalars_per_arm_seed_and_mean():
    results = {"arms": {"scratch": {"x": [0.0, 50.0], "curves": [[1.0, 3.0], [2.0, 5.0]],
                                    "auc": [2.0, 3.5], "final": [3.0, 5.0]}}}  # fmt: skip
    got = {(s.run, s.tag, s.step): s.value for s in tracking.experiment_scalars(results)}
    assert got[("scratch/seed_1", "curve", 50)] == 5.0
    assert got[("scratch/mean", "curve", 50)] == 4.0
    assert got[("scratch/mean", "auc", 50)] == 2.75 and got[("scratch/seed_0", "final", 50)] == 3.0


def test_parse_backends():
    assert tracking.parse_backends("csv, TensorBoard,csv") == ("csv", "tensorboard")
    with pytest.raises(ValueError, match=r"unknown backend 'wandbb' \(did you mean 'wandb'\?\)"):
        tracking.parse_backends("csv,wandbb")
    with pytest.raises(ValueError, match="expected backends"):
        tracking.parse_backends(",")


def test_wandb_writer_logs_each_step_once_in_order(tmp_path, monkeypatch):
    """With a stand-in for the wandb module: one run, keys RUN/TAG, steps rising, then finish."""
    calls = []

    class Run:
        def log(self, data, step):
            calls.append(("log", step, data))

        def finish(self):
            calls.append(("finish",))

    def init(**options):
        calls.append(("init", options))
        return Run()

    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(init=init))
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    scalars = [Scalar("seed_0", "eval_return", 100, 2.0), Scalar("mean", "eval_return", 0, 1.0),
               Scalar("seed_0", "eval_return", 0, 1.0)]  # fmt: skip
    tracking.check_backends(["wandb"])
    tracking.write_scalars(["wandb"], tmp_path, scalars, name="cp", config={"gamma": 0.9})
    assert calls == [
        ("init", {"project": "jsurgery", "name": "cp", "dir": str(tmp_path),
                  "config": {"gamma": 0.9}}),
        ("log", 0, {"mean/eval_return": 1.0, "seed_0/eval_return": 1.0}),
        ("log", 100, {"seed_0/eval_return": 2.0}),
        ("finish",),
    ]  # fmt: skip
