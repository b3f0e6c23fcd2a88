"""A ``jsurgery train --force`` rerun into an existing run directory, killed at 20 moments (most
of them while it saves), always leaves one complete run there: its manifest's files, a checkpoint
that loads and metrics made with the same arguments, from the old run or from the new one."""

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from jsurgery.atomic import current_dir
from jsurgery.rl import load_run

pytestmark = pytest.mark.slow

TRAIN = ["train", "CartPole-v1", "--steps", "2000", "--hidden", "8", "--seeds", "2"]
RATES = (0.001, 0.002)


class _Run:
    def __init__(self, out, rate, env):
        args = [*TRAIN, "--out", str(out), "--force", "--learning-rate", str(rate)]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jsurgery", *args], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self.trained = None  # when the progress bar reached the end: the final save begins
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        seen = b""
        while chunk := os.read(self.proc.stderr.fileno(), 4096):
            seen += chunk
            if self.trained is None and re.search(rb"2000/2000 \[", seen):
                self.trained = time.monotonic()

    def wait_trained(self):
        while self.trained is None and self.proc.poll() is None:
            time.sleep(0.005)
        return self.trained


def _complete_rate(out):
    """The learning rate of the one complete run under ``out``, checked whole."""
    found = current_dir(out)
    manifest = json.loads((found / "manifest.json").read_text())
    assert manifest["files"] == ["agent.json", "checkpoint", "curves.png", "metrics.json"]
    assert all((found / name).exists() for name in manifest["files"])
    agent = json.loads((found / "agent.json").read_text())
    metrics = json.loads((found / "metrics.json").read_text())
    assert metrics["config"] == agent["config"] == manifest["identity"]["config"]
    load_run(out)  # the checkpoint restores
    return agent["config"]["learning_rate"]


def test_train_rerun_killed_at_twenty_moments_leaves_a_complete_run(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }
    out = tmp_path / "run"
    first = _Run(out, RATES[0], env)
    assert first.proc.wait() == 0
    calibration = _Run(out, RATES[1], env)
    calibration.wait_trained()
    assert calibration.proc.wait() == 0
    training = calibration.trained - calibration.started
    saving = time.monotonic() - calibration.trained  # an upper bound of the final save
    rate = _complete_rate(out)
    assert rate == RATES[1]

    kept = {"old": 0, "new": 0}
    moments = [("start", training * f) for f in (0.0, 0.3, 0.6, 0.9)]
    moments += [("trained", 1.2 * saving * i / 15) for i in range(16)]
    for anchor, delay in moments:
        new = RATES[1 - RATES.index(rate)]
        run = _Run(out, new, env)
        start = run.started if anchor == "start" else run.wait_trained()
        time.sleep(max(0.0, start + delay - time.monotonic()))
        run.proc.kill()
        run.proc.wait()
        got = _complete_rate(out)
        assert got in (rate, new)
        kept["new" if got == new else "old"] += 1
        rate = got
    assert kept["old"] and kept["new"], kept  # kills fell before and after the switch
