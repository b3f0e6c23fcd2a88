"""A circular replay buffer in plain arrays.

The write position is not stored: with ``n`` transitions added per call, the ``t``-th transition
ever
added lives at ``t % capacity``, so the training loop passes the count of transitions added so far.
Keeping that count outside the (per-seed) buffer lets it stay a scalar shared by all seeds under
``vmap``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["ReplayBuffer"]


@struct.dataclass
class ReplayBuffer:
    """Transitions ``(obs, action, reward, next_obs, terminated)``, one row each."""

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array

    @classmethod
    def create(cls, capacity: int, obs_dim: int) -> ReplayBuffer:
        return cls(
            obs=jnp.zeros((capacity, obs_dim), jnp.float32),
            action=jnp.zeros((capacity,), jnp.int32),
            reward=jnp.zeros((capacity,), jnp.float32),
            next_obs=jnp.zeros((capacity, obs_dim), jnp.float32),
            terminated=jnp.zeros((capacity,), jnp.float32),
        )

    @property
    def capacity(self) -> int:
        return self.action.shape[-1]

    def add(self, count: jax.Array, obs, action, reward, next_obs, terminated) -> ReplayBuffer:
        """Write ``n`` transitions after the ``count`` already added (wrapping around)."""
        rows = (count + jnp.arange(action.shape[0], dtype=jnp.int32)) % self.capacity
        return ReplayBuffer(
            obs=self.obs.at[rows].set(obs),
            action=self.action.at[rows].set(action.astype(jnp.int32)),
            reward=self.reward.at[rows].set(reward.astype(jnp.float32)),
            next_obs=self.next_obs.at[rows].set(next_obs),
            terminated=self.terminated.at[rows].set(terminated.astype(jnp.float32)),
        )

    def sample(self, key: jax.Array, count: jax.Array, batch_size: int) -> ReplayBuffer:
        """``batch_size`` transitions drawn uniformly, with replacement, from those stored."""
        size = jnp.maximum(jnp.minimum(count, self.capacity), 1)
        rows = jax.random.randint(key, (batch_size,), 0, size)
        return jax.tree.map(lambda leaf: leaf[rows], self)
