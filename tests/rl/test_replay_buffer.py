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
    batch = buffer.sample(jax.random.PRNGKey(0), jnp.int32(3), 256)
    assert set(np.asarray(batch.action).tolist()) == {1, 2, 3}
    np.testing.assert_array_equal(batch.obs[:, 0], batch.action)


def test_sample_after_wrap_covers_the_whole_buffer():
    buffer = ReplayBuffer.create(capacity=4, obs_dim=1)
    buffer = buffer.add(jnp.int32(0), *_rows(0, 4, 1))
    buffer = buffer.add(jnp.int32(4), *_rows(4, 3, 1))
    batch = buffer.sample(jax.random.PRNGKey(1), jnp.int32(7), 256)
    assert set(np.asarray(batch.action).tolist()) == {4, 5, 6, 3}
