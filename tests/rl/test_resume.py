"""Training continued from saved progress ends exactly where an uninterrupted run does; run
directories are refused, replaced or continued as asked, by one writer at a time."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jsurgery.cli import main
from jsurgery.rl import DQNConfig, load_run, train_seeds
from jsurgery.rl.snapshot import ProgressError, Snapshots, read_step

TINY = DQNConfig(
    hidden=(8,),
    total_steps=400,
    eval_every=200,
    eval_episodes=2,
    learning_starts=100,
    buffer_size=256,
    batch_size=16,
    train_freq=4,
    target_update_interval=50,
    n_step=2,
)
IDENTITY = {"config": TINY.to_dict(), "seeds": [0, 1]}


class FirstSaveOnly(Snapshots):
    """Saves once, after the first chunk, as a run stopped there would have."""

    def save(self, progress):
        super().save(progress)
        self.every = float("inf")


@pytest.fixture(scope="module")
def uninterrupted():
    return train_seeds(TINY, "CartPole-v1", 2, progress=False, chunks=10)


def _assert_same_run(a, b):
    assert sorted(a.metrics) == sorted(b.metrics)
    for name in a.metrics:
        np.testing.assert_array_equal(a.metrics[name], b.metrics[name], err_msg=name)
    for x, y in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("saver", [FirstSaveOnly, Snapshots], ids=["first-chunk", "last-chunk"])
def test_resumed_run_equals_the_uninterrupted_one_bit_for_bit(tmp_path, uninterrupted, saver):
    progress = tmp_path / "progress"
    train_seeds(
        TINY, "CartPole-v1", 2, progress=False, chunks=10, snapshots=saver(progress, 0, IDENTITY)
    )
    step = read_step(progress)
    assert 0 < step < TINY.total_steps  # 10 chunks of 40 steps: saved at 40, or at 360
    resumed = train_seeds(
        TINY, "CartPole-v1", 2, progress=False, chunks=10,
        snapshots=Snapshots(progress, 1e9, IDENTITY, resume=True),
    )  # fmt: skip
    _assert_same_run(resumed, uninterrupted)


def test_progress_of_another_run_is_refused(tmp_path):
    progress = tmp_path / "progress"
    train_seeds(
        TINY, "CartPole-v1", 2, progress=False, chunks=10,
        snapshots=FirstSaveOnly(progress, 0, IDENTITY),
    )  # fmt: skip
    other = {**IDENTITY, "seeds": [0, 2]}
    with pytest.raises(ProgressError, match="started with other arguments"):
        train_seeds(
            TINY, "CartPole-v1", 2, progress=False, chunks=10,
            snapshots=Snapshots(progress, 0, other, resume=True),
        )  # fmt: skip


def _train(out, *extra):
    return main(["train", "CartPole-v1", "--steps", "500", "--hidden", "8", "--out", str(out),
                 *extra])  # fmt: skip


@pytest.fixture(scope="module")
def small_presets():
    from jsurgery.rl import presets

    original = presets.PRESETS["CartPole-v1"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(
            presets.PRESETS,
            "CartPole-v1",
            lambda total_steps=500, hidden=None: original(total_steps, hidden).replace(
                eval_episodes=2, buffer_size=1_000
            ),
        )
        yield


def test_existing_run_is_refused_kept_resumed_as_complete_or_replaced(
    tmp_path, small_presets, capsys
):
    out = tmp_path / "run"
    assert _train(out) == 0
    first = json.loads((out / "metrics.json").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["files"] == ["agent.json", "checkpoint", "curves.png", "metrics.json"]
    capsys.readouterr()

    assert _train(out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "holds a complete run; pass --resume" in err
    assert json.loads((out / "metrics.json").read_text()) == first

    assert _train(out, "--resume") == 0  # the same arguments: reported, not trained again
    assert capsys.readouterr().out.startswith("already complete: CartPole-v1")
    assert _train(out, "--resume", "--learning-rate", "0.01") == 2
    err = capsys.readouterr().err.strip()
    assert "started with other arguments (config.learning_rate 0.0023 -> 0.01" in err

    assert _train(out, "--force", "--learning-rate", "0.01") == 0
    assert json.loads((out / "metrics.json").read_text())["config"]["learning_rate"] == 0.01
    siblings = [p.name for p in tmp_path.iterdir() if p.name != "run"]
    assert siblings == [".run.lock"]


def test_a_directory_that_is_not_a_run_is_refused_even_with_force(tmp_path, small_presets, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert _train(out, "--force") == 2
    assert "holds no jsurgery run" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_second_writer_is_refused_naming_the_first(tmp_path, small_presets, capsys):
    out = tmp_path / "run"
    holder = textwrap.dedent(f"""
        import time
        from jsurgery.atomic import lock_dir
        with lock_dir({str(out)!r}):
            print("held", flush=True)
            time.sleep(120)
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.Popen(
        [sys.executable, "-c", holder, "jsurgery-train-stand-in"], stdout=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "held"
        assert _train(out) == 2
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    holder = f"pid {proc.pid}: -c jsurgery-train-stand-in"
    assert f"is being written by another process ({holder})" in err
    assert not out.exists()


SHARDED = textwrap.dedent(
    """
    import sys
    import jax
    import numpy as np
    jax.config.update("jax_numpy_dtype_promotion", "strict")
    from jsurgery.rl import DQNConfig, train_seeds
    from jsurgery.rl.snapshot import Snapshots, read_step
    assert jax.device_count() == 8, jax.devices()
    config = DQNConfig(hidden=(8,), total_steps=200, eval_every=100, eval_episodes=2,
                       learning_starts=50, buffer_size=128, batch_size=8, target_update_interval=20)
    identity = {"seeds": 5}

    class FirstSaveOnly(Snapshots):
        def save(self, progress):
            super().save(progress)
            self.every = float("inf")

    whole = train_seeds(config, "CartPole-v1", 5, progress=False, chunks=10)  # padded to 8 seeds
    train_seeds(config, "CartPole-v1", 5, progress=False, chunks=10,
                snapshots=FirstSaveOnly(sys.argv[1], 0, identity))
    assert read_step(sys.argv[1]) == 20, read_step(sys.argv[1])
    resumed = train_seeds(config, "CartPole-v1", 5, progress=False, chunks=10,
                          snapshots=Snapshots(sys.argv[1], 1e9, identity, resume=True))
    for name in whole.metrics:
        np.testing.assert_array_equal(resumed.metrics[name], whole.metrics[name], err_msg=name)
    for a, b in zip(jax.tree.leaves(resumed.state), jax.tree.leaves(whole.state), strict=True):
        np.testing.assert_array_equal(a, b)
    print("equal")
    """
)


@pytest.mark.slow
def test_a_run_sharded_over_eight_devices_resumes_exactly(tmp_path):
    env = {
        **os.environ,
        "PYTHONPATH": os.getcwd(),
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    done = subprocess.run(
        [sys.executable, "-c", SHARDED, str(tmp_path / "progress")], env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "equal" in done.stdout


WRITER = textwrap.dedent(
    """
    import sys
    import jax, jax.numpy as jnp
    from jsurgery.rl import DQNConfig, make_env, save_agent
    from jsurgery.rl.dqn import make_optimizer
    from jsurgery.rl.networks import QNetwork
    config, env = DQNConfig(hidden=(64,)), make_env("CartPole-v1")
    params = QNetwork.for_config(config, 2).init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    state = {"params": params, "target_params": params,
             "opt_state": make_optimizer(config).init(params)}
    for i in range(1000):
        value = float(i % 2 + 1)
        filled = jax.tree.map(lambda x: jnp.full((3, *x.shape), value, x.dtype), state)
        save_agent(sys.argv[1], config.replace(learning_rate=value * 1e-3), env, filled)
        print(i, flush=True)
    """
)


@pytest.mark.slow
def test_load_run_while_another_process_keeps_replacing_the_run_reads_whole_runs(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "JAX_PLATFORMS": "cpu"}
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert writer.stdout.readline().strip() == "0"
        for _ in range(30):
            run = load_run(out)
            value = run.config.learning_rate * 1e3
            kernel = np.asarray(run.state["params"]["params"]["Dense_0"]["kernel"])
            np.testing.assert_array_equal(kernel, value)  # config and arrays of one save
    finally:
        writer.kill()
        writer.wait()
