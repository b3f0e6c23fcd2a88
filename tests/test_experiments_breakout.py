"""``breakout-add-channel``: the trail channel added to a LayerNorm Q-network's image input. The
preserving arm's new network is checked by forward passes on Breakout frames against the old one
(small networks, no training)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsurgery.experiments.configs import build_experiments
from jsurgery.experiments.dqn import fold_keys, initial_params
from jsurgery.rl import QNetwork, seed_keys

NAME = "breakout-add-channel"
SEEDS = 2
FRAMES = 64


@pytest.fixture(scope="module")
def experiment():
    """The experiment with (8, 8) hidden layers: the same envs, arms and preset, a small net."""
    return dataclasses.replace(build_experiments()[NAME], old_hidden=(8, 8), new_hidden=(8, 8))


def breakout_frames(env, count: int, key) -> jax.Array:
    """``count`` raw ``(10, 10, 4)`` frames of Breakout played with random actions."""

    def step(carry, key):
        state, obs = carry
        act_key, step_key = jax.random.split(key)
        action = jax.random.randint(act_key, (), 0, 3)
        obs, state, *_ = env.env.step(step_key, state, action, env.env_params)
        return (state, obs), obs

    with jax.numpy_dtype_promotion("standard"):
        obs, state = env.env.reset(key, env.env_params)
        _, frames = jax.lax.scan(step, (state, obs), jax.random.split(key, count))
    return frames.astype(jnp.float32)


def q_values(experiment, env, hidden, params, frames):
    """Each seed's Q-values ``(seeds, frames, actions)`` on the channels ``env`` shows."""
    config = experiment.dqn_config("tiny", hidden)
    network = QNetwork.for_config(config, env.num_actions)
    obs = env.select_obs(frames)
    return np.asarray(jax.vmap(lambda p: network.apply(p, obs))(params))


def test_the_experiment_adds_the_trail_channel_under_layer_norm(experiment):
    old_env, new_env = experiment.envs()
    assert old_env.obs_ids == ("paddle", "ball", "brick")
    assert new_env.obs_ids == ("paddle", "ball", "trail", "brick")
    assert (old_env.num_obs, new_env.num_obs) == (300, 400)
    assert all(experiment.configs[p].layer_norm for p in experiment.protocols)
    assert experiment.arms == ("old", "scratch", "transplant", "preserving", "naive-load")


@pytest.mark.parametrize("arm", ["preserving", "transplant", "naive-load"])
def test_new_network_against_the_old_on_breakout_frames(experiment, arm):
    """On frames where the trail channel is lit, ``preserving`` (zero weights from the trail)
    gives the old Q-values through the LayerNorm; the template weights of ``transplant`` and
    ``naive-load`` read the trail and move them."""
    old_env, new_env = experiment.envs()
    keys = seed_keys(range(SEEDS))
    old_config = experiment.dqn_config("tiny", experiment.old_hidden)
    old_params = initial_params(old_config, old_env, fold_keys(keys, 0))
    frames = breakout_frames(new_env, FRAMES, jax.random.PRNGKey(7))
    trail = new_env.all_obs_ids.index("trail")
    assert int((frames[..., trail] > 0).any(axis=(1, 2)).sum()) > FRAMES // 2

    params, notes = experiment.start_arm(arm, protocol="tiny", keys=keys, old_params=old_params)
    assert params["params"]["Dense_0"]["kernel"].shape == (SEEDS, 400, 8)
    old_q = q_values(experiment, old_env, experiment.old_hidden, old_params, frames)
    new_q = q_values(experiment, new_env, experiment.new_hidden, params, frames)
    if arm == "preserving":
        assert "100 new (zeros)" in notes["plan"]
        np.testing.assert_allclose(new_q, old_q, rtol=1e-5, atol=1e-5)
    else:
        assert np.abs(new_q - old_q).max() > 1e-2
