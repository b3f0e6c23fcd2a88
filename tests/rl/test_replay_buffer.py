import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.rl import ReplayBuffer


def _rows(start, n, obs_dim=2):
    values = jnp.arange(start, start + n, dtype=jnp.float32)
    obs = jnp.repeat(values[:, None], obs_dim, axis=1)
    return obs, values.astype(jnp.int32), values, obs + 0.5, jnp.zeros((n,), jnp.bool_)


def test_add_wraps_around_overwriting_the_oldest():
    buffer = ReplayBuffer.create(capacity=5, obs_dim=2)
    count = 0
    for _ in range(4):  # 4 batches of 2 rows: 8 rows into 5 slots
        buffer = buffer.add(jnp.int32(count), *_rows(count, 2))
        count += 2
    # Rows 0..7 went to slots 0,1,2,3,4,0,1,2: slots hold 5,6,7,3,4.
    np.testing.assert_array_equal(buffer.action, [5, 6, 7, 3, 4])
    np.testing.assert_array_equal(buffer.obs[:, 0], [5, 6, 7, 3, 4])
    np.testing.assert_array_equal(buffer.next_obs[:, 1], [5.5, 6.5, 7.5, 3.5, 4.5])


def test_sample_draws_only_stored_rows():
    buffer = ReplayBuffer.create(capacity=100, obs_dim=2)
    buffer = buffer.add(jnp.int32(0), *_rows(1, 3))  # rows hold actions 1, 2, 3
    batch = buffer.sample_returns(jax.random.PRNGKey(0), jnp.int32(3), 256, gamma=0.9)
    assert set(np.asarray(batch.action).tolist()) == {1, 2, 3}
    np.testing.assert_array_equal(batch.obs[:, 0], batch.action)


def test_sample_after_wrap_covers_the_whole_buffer():
    buffer = ReplayBuffer.create(capacity=4, obs_dim=1)
    buffer = buffer.add(jnp.int32(0), *_rows(0, 4, 1))
    buffer = buffer.add(jnp.int32(4), *_rows(4, 3, 1))
    batch = buffer.sample_returns(jax.random.PRNGKey(1), jnp.int32(7), 256, gamma=0.9)
    assert set(np.asarray(batch.action).tolist()) == {4, 5, 6, 3}


def _episode_buffer(rewards, done, terminated, capacity=16, stride=1):
    """A buffer whose row ``t`` holds ordinal ``t``: reward ``rewards[t]``, next_obs ``t + 1``."""
    n = len(rewards)
    buffer = ReplayBuffer.create(capacity=capacity, obs_dim=1)
    ordinals = jnp.arange(n, dtype=jnp.float32)
    for start in range(0, n, stride):
        rows = slice(start, start + stride)
        buffer = buffer.add(
            jnp.int32(start),
            ordinals[rows, None],
            jnp.arange(n, dtype=jnp.int32)[rows],
            jnp.asarray(rewards, jnp.float32)[rows],
            ordinals[rows, None] + 1,
            jnp.asarray(terminated)[rows],
            jnp.asarray(done)[rows],
        )
    return buffer


def _expected_return(t, rewards, done, terminated, count, gamma, n, stride):
    total, steps, last = 0.0, 0, t
    for k in range(n):
        ordinal = t + k * stride
        if ordinal >= count or (k > 0 and done[t + (k - 1) * stride]):
            break
        total += gamma**k * rewards[ordinal]
        steps, last = k + 1, ordinal
    return total, last + 1, gamma**steps * (1.0 - terminated[last])


def test_n_step_returns_stop_at_episode_ends_and_the_newest_row():
    gamma, n, stride = 0.9, 3, 2
    rewards = [float(t + 1) for t in range(12)]
    # Environment 0 (even ordinals): truncated at ordinal 4; environment 1: terminated at 7.
    done = [t in (4, 7) for t in range(12)]
    terminated = [float(t == 7) for t in range(12)]
    buffer = _episode_buffer(rewards, done, jnp.asarray(terminated), stride=stride)
    batch = buffer.sample_returns(
        jax.random.PRNGKey(0), jnp.int32(12), 512, gamma=gamma, n_step=n, stride=stride
    )
    starts = np.asarray(batch.obs[:, 0]).astype(int)
    assert set(starts.tolist()) == set(range(12))
    for i, t in enumerate(starts):
        reward, next_obs, discount = _expected_return(
            t, rewards, done, terminated, 12, gamma, n, stride
        )
        np.testing.assert_allclose(batch.reward[i], reward, rtol=1e-6, err_msg=f"start {t}")
        assert float(batch.next_obs[i, 0]) == next_obs, f"start {t}"
        np.testing.assert_allclose(batch.discount[i], discount, rtol=1e-6, err_msg=f"start {t}")
        assert int(batch.action[i]) == t


def test_n_step_returns_follow_ordinals_across_the_wrap():
    gamma, n = 0.5, 3
    rewards = [float(t) for t in range(10)]
    done = [False] * 10
    terminated = [0.0] * 10
    # Capacity 6: ordinals 4..9 are stored, ordinal 6 sits in row 0 after ordinal 5 in row 5.
    buffer = _episode_buffer(rewards, done, jnp.asarray(terminated), capacity=6)
    batch = buffer.sample_returns(jax.random.PRNGKey(2), jnp.int32(10), 256, gamma=gamma, n_step=n)
    starts = np.asarray(batch.obs[:, 0]).astype(int)
    assert set(starts.tolist()) == set(range(4, 10))
    for i, t in enumerate(starts):
        reward, next_obs, discount = _expected_return(t, rewards, done, terminated, 10, gamma, n, 1)
        np.testing.assert_allclose(batch.reward[i], reward, rtol=1e-6, err_msg=f"start {t}")
        assert float(batch.next_obs[i, 0]) == next_obs
        np.testing.assert_allclose(batch.discount[i], discount, rtol=1e-6)


def test_one_step_returns_are_the_plain_transition():
    buffer = ReplayBuffer.create(capacity=100, obs_dim=2)
    obs, action, reward, next_obs, _ = _rows(1, 4)
    terminated = jnp.asarray([False, True, False, True])
    buffer = buffer.add(jnp.int32(0), obs, action, reward, next_obs, terminated)
    batch = buffer.sample_returns(jax.random.PRNGKey(0), jnp.int32(4), 64, gamma=0.99)
    rows = np.asarray(batch.action) - 1  # row t holds action t + 1
    assert set(rows.tolist()) == {0, 1, 2, 3}
    np.testing.assert_array_equal(batch.obs, np.asarray(obs)[rows])
    np.testing.assert_array_equal(batch.reward, np.asarray(reward)[rows])
    np.testing.assert_array_equal(batch.next_obs, np.asarray(next_obs)[rows])
    np.testing.assert_allclose(batch.discount, 0.99 * (1.0 - np.asarray(terminated)[rows]))
