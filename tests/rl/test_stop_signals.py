"""Stopping ``jsurgery train`` and ``jsurgery run`` with SIGINT, SIGTERM or SIGKILL, then running
the same command again (``--resume`` for train) ends with exactly the numbers of an uninterrupted
run. Each test runs the command line in subprocesses; they share a compilation cache."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import jax
import numpy as np
import pytest

from jsurgery.rl import load_run

pytestmark = pytest.mark.slow

STEPS = 20_000
TRAIN = ["train", "CartPole-v1", "--steps", str(STEPS), "--hidden", "8", "--seeds", "2"]
TIMINGS = {"steps_per_second", "compile_seconds", "run_seconds"}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jax-cache")
    return {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _jsurgery(args, env, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "jsurgery", *args], env=env, capture_output=True, text=True,
        timeout=600, **kwargs,
    )  # fmt: skip


class _Started:
    """A command running in a subprocess, its stderr read as it comes."""

    def __init__(self, args, env):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jsurgery", *args], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        self.err = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        while chunk := os.read(self.proc.stderr.fileno(), 4096):
            self.err += chunk

    def wait_for(self, ready, timeout=300):
        end = time.monotonic() + timeout
        while not ready():
            assert self.proc.poll() is None, f"ended before the signal: {self.err[-500:]!r}"
            assert time.monotonic() < end, "timed out waiting"
            time.sleep(0.01)

    def finish(self):
        code = self.proc.wait(timeout=300)
        self.reader.join(timeout=10)
        return code, self.err.decode(errors="replace")


@pytest.fixture(scope="module")
def reference(env, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference") / "run"
    assert _jsurgery([*TRAIN, "--out", str(out)], env).returncode == 0
    return out


def _assert_same_run(out, reference):
    got = json.loads((out / "metrics.json").read_text())
    want = json.loads((reference / "metrics.json").read_text())
    assert sorted(got) == sorted(want)
    for key in sorted(set(want) - TIMINGS):
        assert got[key] == want[key], key
    a, b = load_run(out).state, load_run(reference).state
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_keeps_the_last_block_and_resume_finishes_exactly(
    tmp_path, env, reference, signum
):
    out = tmp_path / "run"
    run = _Started([*TRAIN, "--out", str(out)], env)  # default --save-every: no save before
    run.wait_for(lambda: re.search(rb"[1-9][0-9]*/20000 \[", run.err))
    run.proc.send_signal(signum)
    code, err = run.finish()
    name = signal.Signals(signum).name
    assert code == 128 + signum
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    match = re.fullmatch(
        rf"jsurgery train: stopped by {name}; kept step ([0-9,]+) of 20,000 of every seed in "
        rf"{re.escape(str(out / 'progress'))}; continue with the same command and --resume",
        last,
    )
    assert match, last
    assert 0 < int(match[1].replace(",", "")) < STEPS
    assert not (out / "metrics.json").exists()

    resumed = _jsurgery([*TRAIN, "--out", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_run(out, reference)
    assert not (out / "progress").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".run.lock", "run"]


def test_after_sigkill_resume_continues_from_the_last_save(tmp_path, env, reference):
    out = tmp_path / "run"
    run = _Started([*TRAIN, "--out", str(out), "--save-every", "0"], env)
    run.wait_for(lambda: (out / "progress" / "progress.json").exists())
    time.sleep(0.2)  # into the next chunks and saves
    run.proc.kill()
    code, _ = run.finish()
    assert code == -signal.SIGKILL
    step = json.loads((out / "progress" / "progress.json").read_text())["step"]
    assert 0 < step < STEPS

    resumed = _jsurgery([*TRAIN, "--out", str(out), "--resume"], env)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _assert_same_run(out, reference)


RUN = ["run", "cartpole-add-obs", "--protocol", "tiny", "--seeds", "2"]


def _arms(out):
    results = json.loads((out / "cartpole-add-obs" / "results.json").read_text())
    assert results["complete"]
    return {
        name: {key: value for key, value in arm.items() if key != "wall_time_s"}
        for name, arm in results["arms"].items()
    }, results["comparisons"]


def test_jsurgery_run_stopped_and_run_again_equals_an_uninterrupted_run(tmp_path, env):
    whole = tmp_path / "whole"
    assert _jsurgery([*RUN, "--out", str(whole)], env).returncode == 0

    out = tmp_path / "stopped"
    results = out / "cartpole-add-obs" / "results.json"
    run = _Started([*RUN, "--out", str(out)], env)
    run.wait_for(results.exists)  # the old arm is done
    run.proc.send_signal(signal.SIGINT)
    code, err = run.finish()
    assert code == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == (
        f"jsurgery run: stopped by SIGINT; the finished arms of cartpole-add-obs are kept in "
        f"{results}; run the same command again to continue"
    )
    assert not json.loads(results.read_text())["complete"]

    again = _jsurgery([*RUN, "--out", str(out)], env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _arms(out) == _arms(whole)
