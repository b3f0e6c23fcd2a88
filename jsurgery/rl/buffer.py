"""A circular replay buffer in plain arrays.

The write position is not stored: with ``n`` transitions added per call, the ``t``-th transition
ever added lives at ``t % capacity``, so the training loop passes the count of transitions added so
far. Keeping that count outside the (per-seed) buffer lets it stay a scalar shared by all seeds
under ``vmap``. With ``num_envs`` environments adding one transition each per call, the next
transition of the same environment is ``num_envs`` rows later, which is what n-step returns follow.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

__all__ = ["Batch", "ReplayBuffer"]


@struct.dataclass
class Batch:
    """Transitions for a TD update: ``target = reward + discount * max_a Q(next_obs, a)``.

    For n-step returns ``reward`` is the discounted sum of up to ``n`` rewards, ``next_obs`` the
    observation after the last of them and ``discount`` is ``gamma ** m`` (``m`` rewards summed),
    or 0 when the episode terminated within them.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    discount: jax.Array


@struct.dataclass
class ReplayBuffer:
    """Transitions ``(obs, action, reward, next_obs, terminated, done)``, one row each.

    ``terminated`` cuts the bootstrap; ``done`` (terminated or truncated) ends the episode, which is
    where an n-step return stops summing rewards.
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    done: jax.Array

    @classmethod
    def create(cls, capacity: int, obs_dim: int) -> ReplayBuffer:
        return cls(
            obs=jnp.zeros((capacity, obs_dim), jnp.float32),
            action=jnp.zeros((capacity,), jnp.int32),
            reward=jnp.zeros((capacity,), jnp.float32),
            next_obs=jnp.zeros((capacity, obs_dim), jnp.float32),
            terminated=jnp.zeros((capacity,), jnp.float32),
            done=jnp.zeros((capacity,), jnp.bool_),
        )

    @property
    def capacity(self) -> int:
        return self.action.shape[-1]

    def add(
        self, count: jax.Array, obs, action, reward, next_obs, terminated, done=None
    ) -> ReplayBuffer:
        """Write ``n`` transitions after the ``count`` already added (wrapping around).

        ``done`` (the episode ended, by termination or truncation) defaults to ``terminated``.
        """
        rows = (count + jnp.arange(action.shape[0], dtype=jnp.int32)) % self.capacity
        done = terminated if done is None else done
        return ReplayBuffer(
            obs=self.obs.at[rows].set(obs),
            action=self.action.at[rows].set(action.astype(jnp.int32)),
            reward=self.reward.at[rows].set(reward.astype(jnp.float32)),
            next_obs=self.next_obs.at[rows].set(next_obs),
            terminated=self.terminated.at[rows].set(terminated.astype(jnp.float32)),
            done=self.done.at[rows].set(done.astype(jnp.bool_)),
        )

    def sample_returns(
        self,
        key: jax.Array,
        count: jax.Array,
        batch_size: int,
        *,
        gamma: float,
        n_step: int = 1,
        stride: int = 1,
    ) -> Batch:
        """``batch_size`` n-step transitions from uniformly drawn starting rows.

        From a drawn transition the return sums the rewards of the same environment's next
        transitions (``stride`` rows apart) until ``n_step`` rewards, the end of the episode or the
        newest stored transition, whichever comes first. With ``n_step=1`` this is a one-step
        transition with ``discount = gamma * (1 - terminated)``.
        """
        size = jnp.maximum(jnp.minimum(count, self.capacity), 1)  # rows stored so far
        rows = jax.random.randint(key, (batch_size,), 0, size)
        first = (count - 1) - (count - 1 - rows) % self.capacity  # ordinal of each drawn row
        ordinals = first[:, None] + stride * jnp.arange(n_step, dtype=jnp.int32)  # (batch, n)
        later = ordinals % self.capacity
        done = self.done[later].astype(jnp.int32)
        # A step counts if it is stored and no earlier step of the window ended the episode.
        ended_before = jnp.cumsum(done, axis=1) - done > 0
        counted = (ordinals < count) & ~ended_before
        counted = counted.at[:, 0].set(True)
        discounts = jnp.float32(gamma) ** jnp.arange(n_step, dtype=jnp.float32)
        reward = (self.reward[later] * discounts * counted.astype(jnp.float32)).sum(axis=1)
        steps = counted.astype(jnp.int32).sum(axis=1)
        last = jnp.take_along_axis(later, (steps - 1)[:, None], axis=1)[:, 0]
        discount = jnp.float32(gamma) ** steps.astype(jnp.float32) * (1.0 - self.terminated[last])
        return Batch(
            obs=self.obs[rows],
            action=self.action[rows],
            reward=reward,
            next_obs=self.next_obs[last],
            discount=discount,
        )
