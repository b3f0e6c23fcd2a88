import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jsurgery.rl import DQNConfig, QNetwork, make_dqn, make_env, make_train, seed_keys, train_seeds
from jsurgery.rl.presets import small_cartpole_config

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


@pytest.fixture(scope="module")
def tiny_run():
    return train_seeds(TINY, "CartPole-v1", 3, progress=False)


def test_metric_shapes_and_step_axes(tiny_run):
    m = tiny_run.metrics
    assert m["episode_return"].shape == m["episode_valid"].shape == (3, TINY.num_blocks)
    assert m["loss"].shape == m["episode_steps"].shape == (3, 100)
    np.testing.assert_array_equal(m["episode_steps"][0], np.arange(4, 401, 4))
    np.testing.assert_array_equal(m["eval_steps"][0], [0, 200, 400])
    assert m["eval_return"].shape == (3, 3)
    # No training before learning_starts, no finished episode at the first block.
    assert np.isnan(m["loss"][:, :24]).all() and np.isfinite(m["loss"][:, 25:]).all()
    assert not m["episode_valid"][:, 0].any() and m["episode_valid"][:, -1].all()


def test_seeds_differ(tiny_run):
    kernels = np.asarray(tiny_run.state["params"]["params"]["Dense_0"]["kernel"])
    assert not np.allclose(kernels[0], kernels[1])
    assert not np.array_equal(
        tiny_run.metrics["episode_return"][0], tiny_run.metrics["episode_return"][1]
    )


def test_single_run_agrees_with_its_seed_in_the_vmapped_chunked_run(tiny_run):
    # tiny_run is jit(vmap(...)) over seeds 0, 1, 2, in chunks; a lone seed-2 run matches row 2.
    train = make_train(TINY, "CartPole-v1")
    state, single = jax.jit(train)(jax.random.PRNGKey(2))
    for name, value in single.items():
        np.testing.assert_allclose(
            value, tiny_run.metrics[name][2], rtol=1e-4, atol=1e-4, err_msg=name
        )
    np.testing.assert_allclose(
        state["params"]["params"]["Dense_1"]["kernel"],
        tiny_run.state["params"]["params"]["Dense_1"]["kernel"][2],
        atol=1e-4,
    )


def test_init_continues_from_given_params(tiny_run):
    keys = seed_keys([0, 1, 2])
    parts = make_dqn(TINY.replace(exploration_start=0.05), "CartPole-v1")
    # Only params given: the target starts as a copy of them and the optimizer fresh.
    given = {"params": tiny_run.state["params"]}
    carry, eval0 = jax.jit(jax.vmap(parts.begin))(keys, given)
    kernel = given["params"]["params"]["Dense_0"]["kernel"]
    np.testing.assert_array_equal(carry.params["params"]["Dense_0"]["kernel"], kernel)
    np.testing.assert_array_equal(carry.target_params["params"]["Dense_0"]["kernel"], kernel)
    assert (np.asarray(carry.opt_state[1][0].count) == 0).all()
    # The step-0 evaluation evaluates the given network (begin's third key is the evaluation's).
    eval_keys = jax.vmap(lambda key: jax.random.split(key, 4)[2])(keys)
    expected = jax.jit(jax.vmap(parts.evaluate))(given["params"], eval_keys)
    np.testing.assert_allclose(eval0, expected)


def test_init_with_wrong_shapes_or_keys_is_refused():
    parts = make_dqn(TINY, make_env("CartPole-v1", obs=["theta"]))
    wrong = QNetwork(hidden=(8,), num_actions=2).init(jax.random.PRNGKey(0), jnp.zeros((1, 4)))
    with pytest.raises(ValueError, match="do not match the network"):
        parts.begin(jax.random.PRNGKey(0), {"params": wrong})
    with pytest.raises(ValueError, match="unknown keys \\['optimizer'\\]"):
        parts.begin(jax.random.PRNGKey(0), {"optimizer": None})


def test_truncation_bootstraps_from_final_observation():
    env = make_env("CartPole-v1")
    env.env_params = env.env_params.replace(max_steps_in_episode=7)
    config = TINY.replace(total_steps=200, eval_every=200, learning_starts=10_000, buffer_size=200)
    parts = make_dqn(config, env)
    carry, _ = parts.begin(jax.random.PRNGKey(0))
    carry, _ = jax.jit(parts.run, static_argnums=2)(carry, 0, 1)
    b = jax.device_get(carry.buffer)
    same_episode = np.all(b.next_obs[:-1] == b.obs[1:], axis=1)
    ended = ~same_episode
    terminated = b.terminated[:-1] == 1.0
    # Every row is followed by the next step of its episode, or the episode ended there.
    limits = env.env_params  # CartPole's own thresholds: 2.4 m and 12 degrees
    fell = (np.abs(b.next_obs[:-1, 0]) > limits.x_threshold) | (
        np.abs(b.next_obs[:-1, 2]) > limits.theta_threshold_radians
    )
    np.testing.assert_array_equal(terminated, ended & fell)
    truncated = ended & ~fell
    assert truncated.sum() >= 5, "expected several time-limit truncations with 7-step episodes"
    # Both ends stop an n-step return: `done` marks them all.
    np.testing.assert_array_equal(b.done[:-1], ended)
    # A truncated row keeps terminated=0 (bootstrapped) and its true next observation.
    assert (b.terminated[:-1][truncated] == 0.0).all()
    assert (np.abs(b.next_obs[:-1][truncated] - b.obs[1:][truncated]) > 0).any(axis=1).all()


def test_config_checks():
    with pytest.raises(ValueError, match="eval_every"):
        DQNConfig(train_freq=3, eval_every=100, total_steps=300)
    with pytest.raises(ValueError, match="total_steps"):
        DQNConfig(eval_every=100, total_steps=250, train_freq=4)
    with pytest.raises(ValueError, match="tau"):
        DQNConfig(tau=0.0)


def test_short_run_beats_random_play():
    config = small_cartpole_config(total_steps=6_000).replace(eval_episodes=5)
    env = make_env("CartPole-v1", obs=["x_dot", "theta"])
    result = train_seeds(config, env, 4, progress=False)
    final = result.metrics["eval_return"][:, -1]
    # Random play on CartPole lasts about 22 steps; an untrained greedy network about as long.
    assert final.mean() > 45, final
    assert final.mean() > result.metrics["eval_return"][:, 0].mean() + 20


def test_on_period_reports_the_step_count_once_per_period_for_all_seeds():
    steps = []
    train = make_train(TINY, "CartPole-v1", on_period=lambda step: steps.append(int(step)))
    jax.block_until_ready(jax.jit(jax.vmap(train))(seed_keys([0, 1])))
    assert sorted(steps) == [200, 400]
