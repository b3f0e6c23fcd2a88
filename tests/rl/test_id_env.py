import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsurgery.rl import ENV_IDS, DQNConfig, make_dqn, make_env


@pytest.mark.parametrize(
    "env_id, obs_ids, action_ids",
    [
        ("CartPole-v1", ["x", "x_dot", "theta", "theta_dot"], ["left", "right"]),
        (
            "Acrobot-v1",
            ["cos1", "sin1", "cos2", "sin2", "dtheta1", "dtheta2"],
            ["torque-1", "noop", "torque+1"],
        ),
    ],
    ids=["cartpole", "acrobot"],
)
def test_full_ids(env_id, obs_ids, action_ids):
    env = make_env(env_id)
    assert env.obs_ids == env.all_obs_ids == tuple(obs_ids)
    assert env.action_ids == env.all_action_ids == tuple(action_ids)
    obs, state = env.reset(jax.random.PRNGKey(0))
    assert obs.shape == (len(obs_ids),) and obs.dtype == jnp.float32


def test_subset_and_order_of_observations_and_actions():
    full = make_env("Acrobot-v1")
    env = make_env("Acrobot-v1", obs=["dtheta2", "cos1"], actions=["torque+1", "noop"])
    assert env.obs_index.tolist() == [5, 0] and env.action_index.tolist() == [2, 1]
    key = jax.random.PRNGKey(3)
    full_obs, state = full.reset(key)
    obs, _ = env.reset(key)
    np.testing.assert_array_equal(obs, full_obs[jnp.array([5, 0])])
    # Action 0 of the view is the environment's torque+1 (index 2).
    step_key = jax.random.PRNGKey(4)
    full_next = full.step(step_key, state, jnp.int32(2))
    view_next = env.step(step_key, state, jnp.int32(0))
    np.testing.assert_array_equal(view_next[0], full_next[0][jnp.array([5, 0])])
    np.testing.assert_array_equal(
        view_next[5]["final_observation"], full_next[5]["final_observation"][jnp.array([5, 0])]
    )
    assert view_next[2].dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"obs": ["x", "y"]}, "unknown names \\['y'\\]"),
        ({"obs": ["x", "x"]}, "appear twice"),
        ({"actions": []}, "at least one"),
        ({"obs": "theta"}, "sequence of names"),
    ],
    ids=["unknown", "duplicate", "empty", "string"],
)
def test_bad_ids_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_env("CartPole-v1", **kwargs)


def test_unknown_environment():
    with pytest.raises(ValueError, match="unknown environment 'Pendulum-v0'.*'Pendulum-v1'"):
        make_env("Pendulum-v0")
    assert "LunarLander-v3" in ENV_IDS
    assert "Pendulum-v1" not in ENV_IDS


def test_continuous_actions_by_dimension():
    env = make_env("Pendulum-v1", obs=["theta_dot", "cos_theta"])
    assert env.continuous and env.num_actions == 1 and env.action_ids == ("torque",)
    assert env.action_low.tolist() == [-2.0] and env.action_high.tolist() == [2.0]
    np.testing.assert_array_equal(env.env_action(jnp.array([[3.0], [-0.5]])), [[2.0], [-0.5]])
    obs, state = env.reset(jax.random.PRNGKey(0))
    assert obs.shape == (2,)
    obs, state, reward, *_ = env.step(jax.random.PRNGKey(1), state, jnp.array([0.5]))
    assert obs.shape == (2,) and reward.shape == ()
    with pytest.raises(ValueError, match="Pendulum-v1 has continuous actions and a DQN"):
        make_dqn(DQNConfig(), env)


def test_lunar_lander_ids():
    pytest.importorskip("jsurgery.envs.lunar_lander")
    env = make_env("LunarLander-v3", obs=["y", "vy"], actions=["noop", "main"])
    assert env.all_obs_ids[-2:] == ("left_leg", "right_leg")
    assert env.action_index.tolist() == [0, 2]
    obs, state = env.reset(jax.random.PRNGKey(0))
    obs, state, reward, terminated, truncated, info = env.step(
        jax.random.PRNGKey(1), state, jnp.int32(1)
    )
    assert obs.shape == (2,) and info["final_observation"].shape == (2,)
