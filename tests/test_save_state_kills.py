"""``save_state(force=True)`` killed at many moments never leaves a directory without a complete
checkpoint: the old one or the new one, whole, as readers see it."""

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from jsurgery.atomic import current_dir

SIZE = 4_000_000  # float32 per leaf: two leaves, 32 MB, so a save takes a while

WORKER = textwrap.dedent(f"""
    import sys, time
    import numpy as np
    from jsurgery.checkpoint import save_state
    value = float(sys.argv[2])
    state = {{"a": np.full(({SIZE},), value, np.float32),
              "b": {{"c": np.full(({SIZE},), value, np.float32)}}}}
    print("ready", flush=True)
    start = time.perf_counter()
    save_state(sys.argv[1], state, force=True)
    print(time.perf_counter() - start, flush=True)
""")


def _start(target, value):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(target), str(value)], stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL, text=True, env=env,
    )  # fmt: skip
    assert proc.stdout.readline().strip() == "ready"
    return proc


def _saved_value(target):
    """The one value every leaf of the checkpoint under ``target`` holds (it must be whole)."""
    import orbax.checkpoint as ocp

    with ocp.StandardCheckpointer() as checkpointer:
        restored = checkpointer.restore(current_dir(target))
    leaves = [np.asarray(restored["a"]), np.asarray(restored["b"]["c"])]
    assert all(leaf.shape == (SIZE,) for leaf in leaves)
    values = {float(v) for leaf in leaves for v in np.unique(leaf)}
    assert len(values) == 1, values
    return values.pop()


def _kill_at_moments(tmp_path, count):
    target = tmp_path / "ckpt"
    proc = _start(target, 1.0)
    seconds = float(proc.stdout.readline())  # a whole save, measured
    assert proc.wait() == 0
    old, outcomes = 1.0, {"old": 0, "new": 0}
    for i in range(count):
        new = old + 1.0
        proc = _start(target, new)
        time.sleep(1.3 * seconds * i / max(count - 1, 1))
        proc.kill()
        proc.wait()
        value = _saved_value(target)
        assert value in (old, new)
        outcomes["new" if value == new else "old"] += 1
        old = value
    return outcomes


def test_save_state_killed_at_three_moments_leaves_a_whole_checkpoint(tmp_path):
    _kill_at_moments(tmp_path, 3)


@pytest.mark.slow
def test_save_state_killed_at_twenty_moments_leaves_a_whole_checkpoint(tmp_path):
    outcomes = _kill_at_moments(tmp_path, 20)
    assert outcomes["old"] and outcomes["new"]  # the kills fell on both sides of the switch
