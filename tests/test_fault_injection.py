"""Fault injection over every file a checkpoint is made of: for ``save_state`` checkpoints and
saved agents, each file is damaged at many places (a byte flipped at 12 places, truncated to
half, emptied); every restore must then raise the library's error naming the damaged file (or
the leaf), or return exactly what was saved: never other values, never a raw error."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from surgery_models import MLP

import jsurgery
from jsurgery.checkpoint import CheckpointError, restore_transplanted, save_state
from jsurgery.rl import DQNConfig, QNetwork, load_run, make_env, make_optimizer, save_agent
from jsurgery.rl.files import DamagedFileError

pytestmark = pytest.mark.slow

FLIPS_PER_FILE = 12


def _damages(path):
    """``(what, new bytes)`` for each damage done to the file at ``path``."""
    data = path.read_bytes()
    size = len(data)
    for i in range(FLIPS_PER_FILE):
        at = (size * i) // FLIPS_PER_FILE
        flipped = bytearray(data)
        flipped[at] ^= 0x5A
        yield f"byte {at} of {size} flipped", bytes(flipped)
    yield "truncated to half", data[: size // 2]
    yield "emptied", b""


def _fuzz(directory, restore, saved, errors):
    """Damages every file under ``directory`` in turn; returns the outcome counts."""
    counts = {"refused": 0, "unchanged": 0}
    files = sorted(p for p in directory.rglob("*") if p.is_file())
    assert len(files) >= 4, files
    for path in files:
        original = path.read_bytes()
        for what, damaged in _damages(path):
            path.write_bytes(damaged)
            try:
                got = restore()
            except errors as error:
                message = str(error)
                assert path.name in message or "leaf" in message, (path, what, message)
                counts["refused"] += 1
            else:
                for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(saved), strict=True):
                    np.testing.assert_array_equal(
                        np.asarray(a), np.asarray(b), err_msg=f"{path} {what}: restored changed"
                    )
                counts["unchanged"] += 1
            finally:
                path.write_bytes(original)
    return counts, len(files)


def test_every_damaged_file_of_a_save_state_checkpoint_is_refused_or_harmless(tmp_path):
    model = MLP((32, 32), 2)
    params = model.init(jax.random.key(0), jnp.ones((1, 3)))
    state = {"params": params}
    directory = save_state(tmp_path / "ckpt", state)
    plan = jsurgery.make_plan(params, params)
    counts, files = _fuzz(
        directory,
        lambda: restore_transplanted(directory, state, plan),
        state,
        (CheckpointError,),
    )
    assert counts["refused"] >= files * FLIPS_PER_FILE // 2, counts


def test_every_damaged_file_of_a_saved_agent_is_refused_or_harmless(tmp_path):
    env = make_env("CartPole-v1")
    config = DQNConfig(hidden=(16, 16))
    network = QNetwork.for_config(config, env.num_actions)
    keys = jax.random.split(jax.random.key(0), 2)
    params = jax.vmap(lambda k: network.init(k, jnp.zeros((1, env.num_obs))))(keys)
    opt_state = jax.vmap(make_optimizer(config).init)(params)
    saved = {"params": params, "target_params": params, "opt_state": opt_state}
    directory = save_agent(tmp_path / "run", config, env, saved)
    counts, files = _fuzz(
        directory,
        lambda: load_run(directory).state,
        saved,
        (DamagedFileError, FileNotFoundError),
    )
    assert counts["refused"] >= files * FLIPS_PER_FILE // 2, counts
