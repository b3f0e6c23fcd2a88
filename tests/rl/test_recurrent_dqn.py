"""The recurrent DQN: replayed windows, their targets and masks, training, and surgery on it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsurgery
from jsurgery.rl import make_env, seed_keys
from jsurgery.rl.drqn import make_train
from jsurgery.rl.recurrent import (
    RecurrentDQNConfig,
    RecurrentQNetwork,
    SequenceBuffer,
    n_step_targets,
    trained_steps,
    unroll,
)

TINY = RecurrentDQNConfig(
    hidden=(8, 4),
    total_steps=400,
    eval_every=200,
    eval_episodes=2,
    learning_starts=64,
    buffer_size=256,
    batch_size=4,
    train_freq=4,
    gradient_steps=2,
    num_envs=2,
    sequence_length=8,
    burn_in=2,
    n_step=3,
    target_update_interval=50,
    double_dqn=True,
)
OLD_OBS, NEW_OBS = ("x", "theta"), ("x", "x_dot", "theta", "theta_dot")


def filled_buffer(num_envs=3, rows=40, iterations=100, seed=0):
    """Episodes of random lengths in every environment, written for more rows than the buffer has
    (so it wraps); obs = (episode number, step within the episode), episodes numbered from 1."""
    rng = np.random.default_rng(seed)
    buffer = SequenceBuffer.create(rows * num_envs, num_envs, 2)
    episode = np.arange(1, num_envs + 1)
    step = np.zeros(num_envs, int)
    first = np.ones(num_envs, bool)
    add = jax.jit(lambda buffer, *step: buffer.add(*step))
    for i in range(iterations):
        done = rng.random(num_envs) < 0.15
        terminated = done & (rng.random(num_envs) < 0.5)
        obs = np.stack([episode, step], axis=1).astype(np.float32)
        next_obs = np.stack([episode, step + 1], axis=1).astype(np.float32)
        buffer = add(
            buffer,
            jnp.int32(i),
            obs,
            jnp.asarray(rng.integers(0, 2, num_envs)),
            jnp.asarray(rng.random(num_envs), jnp.float32),
            next_obs,
            jnp.asarray(terminated),
            jnp.asarray(done),
            jnp.asarray(first),
        )
        episode = np.where(done, episode.max() + 1 + np.arange(num_envs), episode)
        step = np.where(done, 0, step + 1)
        first = done
    return buffer, iterations


def test_windows_never_cross_an_episode_boundary_unmasked():
    buffer, iterations = filled_buffer()
    window = jax.tree.map(
        np.asarray, buffer.sample(jax.random.key(0), jnp.int32(iterations), 500, 12)
    )
    episode, step = window.obs[..., 0], window.obs[..., 1]
    assert (episode > 0).all(), "a window reached rows never written"
    assert len(np.unique(episode[:, 0])) > 5
    same = episode[:, 1:] == episode[:, :-1]
    # Consecutive steps: an episode boundary is exactly where `first` (the carry reset) is set.
    np.testing.assert_array_equal(window.first[:, 1:], ~same)
    np.testing.assert_array_equal(window.first[:, 1:], window.done[:, :-1])
    np.testing.assert_array_equal(step[:, 1:][same], step[:, :-1][same] + 1)
    np.testing.assert_array_equal(step[window.first], 0)
    np.testing.assert_array_equal(window.next_obs[..., 0], episode)  # the step's own episode
    # Steps trained before the burn-in ends have a true carry: their episode began in the window.
    trained = np.asarray(trained_steps(jnp.asarray(window.first), 4))
    for row, t in zip(*np.nonzero(trained[:, :4]), strict=True):
        assert window.first[row, : t + 1].any()
    assert trained[:, 4:].all()


def test_the_carry_after_a_reset_in_a_window_is_a_fresh_episodes():
    """From each episode start inside a window to the next, the Q-values are those of the episode
    unrolled alone from a zero carry, whatever the window's carry was before."""
    buffer, iterations = filled_buffer(seed=1)
    window = jax.tree.map(
        np.asarray, buffer.sample(jax.random.key(1), jnp.int32(iterations), 64, 12)
    )
    net = RecurrentQNetwork(hidden=(6, 5), num_actions=2)
    params = net.init(jax.random.key(2), net.initial_carry((1,)), jnp.zeros((1, 2)))
    run = jax.jit(lambda carry, obs, first: unroll(net.apply, params, carry, obs, first)[1])
    q = np.asarray(run(jnp.ones((64, 5)), window.obs, window.first))
    no_reset = jnp.zeros((1, 12), jnp.bool_)
    checked = 0
    for row in range(64):
        starts = [*np.nonzero(window.first[row])[0], 12]
        for s, end in zip(starts[:-1], starts[1:], strict=True):
            alone = np.zeros((1, 12, 2), np.float32)
            alone[0, : end - s] = window.obs[row, s:end]
            fresh = np.asarray(run(net.initial_carry((1,)), alone, no_reset))
            np.testing.assert_allclose(q[row, s:end], fresh[0, : end - s], atol=1e-6)
            checked += 1
    assert checked > 10


def reference_targets(reward, done, terminated, value, gamma, n):
    out = np.zeros_like(reward)
    for b in range(reward.shape[0]):
        for t in range(reward.shape[1]):
            total, k = 0.0, 0
            while True:
                total += gamma**k * reward[b, t + k]
                k += 1
                if done[b, t + k - 1] or k == n or t + k == reward.shape[1]:
                    break
            last = t + k - 1
            out[b, t] = total + (0.0 if terminated[b, last] else gamma**k * value[b, last])
    return out


def test_n_step_targets_stop_at_episode_and_window_ends():
    rng = np.random.default_rng(0)
    reward = rng.normal(size=(5, 10)).astype(np.float32)
    done = rng.random((5, 10)) < 0.3
    terminated = done & (rng.random((5, 10)) < 0.5)
    value = rng.normal(size=(5, 10)).astype(np.float32)
    got = n_step_targets(
        jnp.asarray(reward),
        jnp.asarray(done),
        jnp.asarray(terminated),
        jnp.asarray(value),
        gamma=0.9,
        n_step=3,
    )
    np.testing.assert_allclose(
        got, reference_targets(reward, done, terminated, value, 0.9, 3), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"burn_in": 8}, "burn_in"),
        ({"sequence_length": 0}, "sequence_length"),
        ({"learning_starts": 8}, "learning_starts"),
        ({"buffer_size": 12}, "buffer_size"),
    ],
)
def test_config_errors_name_the_field(change, message):
    with pytest.raises(ValueError, match=message):
        TINY.replace(**change)


@pytest.fixture(scope="module")
def tiny_run():
    env = make_env("CartPole-v1", obs=OLD_OBS)
    state, metrics = jax.jit(jax.vmap(make_train(TINY, env)))(seed_keys(range(2)))
    return env, state, jax.tree.map(np.asarray, metrics)


def test_metric_shapes_and_learning_start(tiny_run):
    _, state, m = tiny_run
    assert m["eval_return"].shape == (2, 3) and m["loss"].shape == (2, TINY.num_blocks)
    np.testing.assert_array_equal(m["eval_steps"][0], [0, 200, 400])
    start = TINY.learning_starts // TINY.block_steps
    assert np.isnan(m["loss"][:, :start]).all() and np.isfinite(m["loss"][:, start:]).all()
    kernels = state["params"]["params"]["cell"]["hn"]["kernel"]
    assert not np.allclose(kernels[0], kernels[1])  # seeds differ


def test_preserving_surgery_keeps_q_values_over_a_rollout(tiny_run):
    """An agent trained a few steps on (x, theta), moved to all four observations with its GRU
    widened 4 -> 6: the same Q-values at every step of a 16-step rollout, from a zero carry and
    from a live carry moved by transplant_carry."""
    _, state, _ = tiny_run
    old_vars = jax.tree.map(lambda leaf: leaf[0], state["params"])
    old_net, new_net = RecurrentQNetwork((8, 4), 2), RecurrentQNetwork((8, 6), 2)
    c_old, c_new = old_net.initial_carry((3,)), new_net.initial_carry((3,))
    x_old, x_new = jnp.zeros((3, 2)), jnp.zeros((3, 4))
    template = new_net.init(jax.random.key(5), c_new, x_new)
    plan = jsurgery.make_plan(
        old_vars,
        template,
        apply=(old_net.apply, new_net.apply),
        example=((c_old, x_old), (c_new, x_new)),
        inputs={1: (OLD_OBS, NEW_OBS)},
        outputs={1: (("left", "right"), ("left", "right"))},
        **jsurgery.PRESERVING,
    )
    new_vars = jsurgery.transplant(old_vars, template, plan)
    rng = np.random.default_rng(0)
    full = rng.normal(size=(16, 3, 4)).astype(np.float32)
    live = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    for start in (c_old, live):
        h_old, h_new = start, jsurgery.transplant_carry(start, plan)
        for t in range(16):
            h_old, q_old = old_net.apply(old_vars, h_old, full[t][:, [0, 2]])
            h_new, q_new = new_net.apply(new_vars, h_new, full[t])
            np.testing.assert_allclose(q_new, q_old, atol=1e-5, rtol=0)
            np.testing.assert_array_equal(h_new[:, 4:], 0.0)


def test_init_of_another_shape_is_refused(tiny_run):
    env, state, _ = tiny_run
    train = make_train(TINY.replace(total_steps=200), env)
    with pytest.raises(ValueError, match="parameter shapes"):
        wrong = RecurrentQNetwork((8, 5), 2).init(
            jax.random.key(0), jnp.zeros((1, 5)), jnp.zeros((1, 2))
        )
        train(jax.random.key(0), {"params": wrong})
