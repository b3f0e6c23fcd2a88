"""Every discrete-action gymnax environment through make_env: IDs by name or by position, images
flattened in (h, w, channel) order and chosen by channel."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsurgery
from jsurgery.rl import QNetwork, make_env
from jsurgery.rl.environments import GYMNAX_DISCRETE
from jsurgery.rl.presets import default_config

# MNISTBandit downloads MNIST when built; the others build offline.
OFFLINE = [env_id for env_id in GYMNAX_DISCRETE if env_id != "MNISTBandit-bsuite"]


@pytest.mark.parametrize("env_id", OFFLINE)
def test_every_discrete_gymnax_environment_builds_with_ids(env_id):
    env = make_env(env_id)
    assert len(env.all_action_ids) == env.env.action_space(env.env_params).n
    assert len(env.feature_ids) == env.num_obs == len(set(env.feature_ids))
    assert default_config(env_id).total_steps > 0


@pytest.mark.parametrize(
    "env_id, obs_ids, action_ids",
    [
        ("MountainCar-v0", ("position", "velocity"), ("left", "noop", "right")),
        ("Breakout-MinAtar", ("paddle", "ball", "trail", "brick"), ("noop", "left", "right")),
        ("Catch-bsuite", ("board",), ("left", "noop", "right")),
        ("FourRooms-misc", ("obs_0", "obs_1", "obs_2", "obs_3"),
         ("action_0", "action_1", "action_2", "action_3")),
    ],
    ids=["mountaincar", "breakout", "catch", "fourrooms-by-position"],
)  # fmt: skip
def test_names_and_positions(env_id, obs_ids, action_ids):
    env = make_env(env_id)
    assert env.all_obs_ids == obs_ids and env.all_action_ids == action_ids


def test_image_channels_are_chosen_and_flattened_in_h_w_channel_order():
    full = make_env("Breakout-MinAtar")
    env = make_env("Breakout-MinAtar", obs=["brick", "paddle"], actions=["left", "right"])
    assert env.obs_shape == (10, 10, 4) and env.num_obs == 200
    assert env.feature_ids[:3] == ((0, 0, "brick"), (0, 0, "paddle"), (0, 1, "brick"))
    key = jax.random.PRNGKey(0)
    image, state = full.env.reset(key, full.env_params)
    obs, _ = env.reset(key)
    expected = np.asarray(image, np.float32)[:, :, [3, 0]].reshape(-1)
    np.testing.assert_array_equal(obs, expected)
    obs, _, reward, terminated, truncated, info = jax.jit(env.step)(key, state, jnp.int32(1))
    assert obs.shape == (200,) and info["final_observation"].shape == (200,)
    batch = np.stack([np.asarray(image, np.float32)] * 3)
    np.testing.assert_array_equal(env.select_obs(batch), np.stack([expected] * 3))


def test_a_new_channel_is_a_surgery_by_channel_ids():
    old = make_env("Breakout-MinAtar", obs=["paddle", "ball"])
    new = make_env("Breakout-MinAtar", obs=["paddle", "ball", "brick"])
    old_net, new_net = QNetwork(hidden=(8,), num_actions=3), QNetwork(hidden=(8,), num_actions=3)
    old_params = old_net.init(jax.random.PRNGKey(0), jnp.zeros((1, old.num_obs)))
    new_params = new_net.init(jax.random.PRNGKey(1), jnp.zeros((1, new.num_obs)))
    plan = jsurgery.make_plan(old_params, new_params, inputs=(old.feature_ids, new.feature_ids),
                              **jsurgery.PRESERVING)  # fmt: skip
    moved = jsurgery.transplant(old_params, new_params, plan)
    image = np.asarray(make_env("Breakout-MinAtar").env.reset(
        jax.random.PRNGKey(2), new.env_params)[0], np.float32)  # fmt: skip
    np.testing.assert_allclose(
        new_net.apply(moved, new.select_obs(image)),
        old_net.apply(old_params, old.select_obs(image)),
        atol=1e-5,
    )


def test_continuous_actions_are_refused_by_the_dqn():
    from jsurgery.rl import make_dqn
    from jsurgery.rl.presets import default_config

    env = make_env("MountainCarContinuous-v0")
    assert env.continuous and env.action_ids == ("force",)
    with pytest.raises(ValueError, match="continuous actions and a DQN needs discrete"):
        make_dqn(default_config("CartPole-v1"), env)
    with pytest.raises(ValueError, match="continuous actions and a DQN needs discrete"):
        default_config("Pendulum-v1")
