"""A recurrent DQN's network, replay and targets (DRQN with R2D2's stored sequences).

The Q-network reads one observation per call and keeps a state: ``apply(variables, carry, obs) ->
(carry, q)`` (a GRU cell between a Dense encoder and a linear head), the form the traced surgery
planner moves as one carried hidden space. The replay buffer keeps every environment's steps in
order and hands out fixed-length windows; a window is unrolled from a zero carry that is set to
zero again where an episode starts inside it, and trained on the steps whose carry is exact (their
episode started inside the window) or has seen ``burn_in`` steps. Targets are n-step returns that
stop at the end of the episode and of the window. :mod:`jsurgery.rl.drqn` trains with these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jsurgery.rl.config import DQNConfig

__all__ = [
    "RecurrentDQNConfig",
    "RecurrentQNetwork",
    "SequenceBuffer",
    "Window",
    "n_step_targets",
    "recurrent_cartpole_config",
    "trained_steps",
    "unroll",
]


@dataclasses.dataclass(frozen=True)
class RecurrentDQNConfig(DQNConfig):
    """A :class:`~jsurgery.rl.DQNConfig` for the recurrent DQN.

    ``hidden`` lists the encoder's ReLU Dense widths, then the GRU's width: ``(64, 32)`` is a Dense
    layer of 64 units feeding a GRU of 32. ``batch_size`` counts windows, ``buffer_size`` steps
    (over all environments of a seed), ``n_step`` returns stop at the end of a window.
    ``layer_norm`` is not used.

    Attributes:
        sequence_length: steps per replayed window, burn-in included.
        burn_in: steps at the start of a window that only warm up the carry (no loss), unless an
            episode starts at or before them inside the window.
    """

    hidden: tuple[int, ...] = (64, 32)
    batch_size: int = 32
    sequence_length: int = 16
    burn_in: int = 4

    def __post_init__(self):
        super().__post_init__()
        if not isinstance(self.sequence_length, int) or self.sequence_length <= 0:
            raise ValueError(
                f"`sequence_length`: expected a positive integer, got {self.sequence_length!r}"
            )
        if not isinstance(self.burn_in, int) or not 0 <= self.burn_in < self.sequence_length:
            raise ValueError(
                f"`burn_in`: expected 0 <= burn_in < sequence_length = {self.sequence_length}, "
                f"got {self.burn_in!r}"
            )
        if self.buffer_size // self.num_envs < self.sequence_length:
            raise ValueError(
                f"`buffer_size`: {self.buffer_size} steps over {self.num_envs} environments hold "
                f"fewer than sequence_length = {self.sequence_length} steps per environment"
            )
        if self.learning_starts < self.sequence_length * self.num_envs:
            raise ValueError(
                f"`learning_starts`: {self.learning_starts} steps do not fill one window of "
                f"{self.sequence_length} steps in each of {self.num_envs} environments; use at "
                f"least {self.sequence_length * self.num_envs}"
            )


def recurrent_cartpole_config(
    total_steps: int = 16_000, hidden: Sequence[int] = (64, 32)
) -> RecurrentDQNConfig:
    """CartPole-v1 seen in part (no velocities): a Dense 64 -> GRU 32 network, 5-step Double DQN.

    Four environments per seed; every 100 steps 50 gradient steps on 16 windows of 12 steps (4 of
    burn-in); gamma 0.95; a target copy every 500 steps; Adam at 1e-3 falling to 0; exploration
    falling to 0.05 over the first fifth; greedy evaluations every tenth of the run.
    """
    from jsurgery.rl.presets import pick_eval_every

    base = RecurrentDQNConfig(
        hidden=tuple(hidden),
        learning_rate=1e-3,
        learning_rate_end=0.0,
        buffer_size=20_000,
        batch_size=16,
        gamma=0.95,
        n_step=5,
        double_dqn=True,
        target_update_interval=500,
        exploration_fraction=0.2,
        exploration_end=0.05,
        train_freq=25,
        gradient_steps=50,
        learning_starts=1_000,
        num_envs=4,
        sequence_length=12,
        burn_in=4,
        total_steps=total_steps,
        eval_every=total_steps,
    )
    return base.replace(eval_every=pick_eval_every(total_steps, base.block_steps))


class RecurrentQNetwork(nn.Module):
    """Observation and carry to the next carry and one Q-value per action.

    ``Dense_i`` (ReLU) for each encoder width, then ``cell`` (a ``GRUCell`` of ``hidden[-1]``
    units), then the linear ``head``. Leading axes of ``carry`` and ``obs`` are batch axes.

    Example:
        >>> net = RecurrentQNetwork(hidden=(8, 4), num_actions=2)
        >>> carry = net.initial_carry((3,))
        >>> params = net.init(jax.random.key(0), carry, jnp.zeros((3, 2)))
        >>> sorted(params["params"]), params["params"]["cell"]["hn"]["kernel"].shape
        (['Dense_0', 'cell', 'head'], (4, 4))
        >>> carry, q = net.apply(params, carry, jnp.ones((3, 2)))
        >>> carry.shape, q.shape
        ((3, 4), (3, 2))
    """

    hidden: Sequence[int] = (64, 32)
    num_actions: int = 2

    @classmethod
    def for_config(cls, config: DQNConfig, num_actions: int) -> RecurrentQNetwork:
        return cls(hidden=config.hidden, num_actions=num_actions)

    def initial_carry(self, batch_shape: tuple[int, ...]) -> jax.Array:
        """The zero state of ``batch_shape`` sequences."""
        return jnp.zeros((*batch_shape, self.hidden[-1]), jnp.float32)

    @nn.compact
    def __call__(self, carry: jax.Array, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = obs
        for width in self.hidden[:-1]:
            x = nn.relu(nn.Dense(width)(x))
        carry, h = nn.GRUCell(self.hidden[-1], name="cell")(carry, x)
        return carry, nn.Dense(self.num_actions, name="head")(h)


@struct.dataclass
class Window:
    """Replayed windows ``(batch, length, ...)``: one environment's consecutive steps each.

    ``first[t]``: step ``t`` starts an episode (the carry is zero before it); ``next_obs[t]`` the
    observation step ``t`` reached (the last one of its episode when ``done[t]``).
    """

    obs: jax.Array
    action: jax.Array
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    done: jax.Array
    first: jax.Array


@struct.dataclass
class SequenceBuffer:
    """Each environment's steps in order: row ``i % rows`` holds every environment's ``i``-th step.

    As in :class:`~jsurgery.rl.ReplayBuffer`, the count of rows written (``iterations``) is kept
    by the caller, so it stays one scalar for all seeds under ``vmap``.
    """

    obs: jax.Array  # (rows, envs, obs)
    action: jax.Array  # (rows, envs)
    reward: jax.Array
    next_obs: jax.Array
    terminated: jax.Array
    done: jax.Array
    first: jax.Array

    @classmethod
    def create(cls, capacity: int, num_envs: int, obs_dim: int) -> SequenceBuffer:
        """A buffer of ``capacity`` steps over ``num_envs`` environments."""
        rows = capacity // num_envs
        flags = jnp.zeros((rows, num_envs), jnp.bool_)
        return cls(
            obs=jnp.zeros((rows, num_envs, obs_dim), jnp.float32),
            action=jnp.zeros((rows, num_envs), jnp.int32),
            reward=jnp.zeros((rows, num_envs), jnp.float32),
            next_obs=jnp.zeros((rows, num_envs, obs_dim), jnp.float32),
            terminated=flags,
            done=flags,
            first=flags,
        )

    @property
    def rows(self) -> int:
        return self.action.shape[-2]

    def add(self, iteration, obs, action, reward, next_obs, terminated, done, first):
        """Writes every environment's step number ``iteration`` (one value per environment)."""
        row = iteration % self.rows
        return SequenceBuffer(
            obs=self.obs.at[row].set(obs),
            action=self.action.at[row].set(action.astype(jnp.int32)),
            reward=self.reward.at[row].set(reward.astype(jnp.float32)),
            next_obs=self.next_obs.at[row].set(next_obs),
            terminated=self.terminated.at[row].set(terminated),
            done=self.done.at[row].set(done),
            first=self.first.at[row].set(first),
        )

    def sample(self, key: jax.Array, iterations, batch_size: int, length: int) -> Window:
        """``batch_size`` windows of ``length`` stored steps, each from a uniformly drawn
        environment and start among those whose whole window is stored (``iterations >=
        length`` rows written)."""
        env_key, start_key = jax.random.split(key)
        oldest = jnp.maximum(iterations - self.rows, 0)
        starts = jax.random.randint(
            start_key, (batch_size,), oldest, jnp.maximum(iterations - length + 1, oldest + 1)
        )
        envs = jax.random.randint(env_key, (batch_size,), 0, self.action.shape[-1])
        rows = (starts[:, None] + jnp.arange(length)) % self.rows  # (batch, length)
        cols = envs[:, None]
        fields = dataclasses.fields(self)
        return Window(**{field.name: getattr(self, field.name)[rows, cols] for field in fields})


def trained_steps(first: jax.Array, burn_in: int) -> jax.Array:
    """Which steps of windows ``(..., length)`` get a loss: those from ``burn_in`` on, and those at
    or after an episode start inside the window (their carry is the true one)."""
    started = jnp.cumsum(first.astype(jnp.int32), axis=-1) > 0
    return started | (jnp.arange(first.shape[-1]) >= burn_in)


def unroll(apply: Callable, params, carry, obs, first):
    """Runs ``apply(params, carry, obs_t)`` over windows ``obs (batch, length, obs)``, with the
    carry set to zero before every step that starts an episode.

    Returns:
        ``(carries, q)``: the carry after each step ``(batch, length, hidden)`` and the Q-values
        ``(batch, length, actions)``.
    """

    def step(carry, inputs):
        x, starts = inputs
        carry = jnp.where(starts[:, None], jnp.zeros_like(carry), carry)
        carry, q = apply(params, carry, x)
        return carry, (carry, q)

    _, (carries, q) = jax.lax.scan(step, carry, (obs.swapaxes(0, 1), first.swapaxes(0, 1)))
    return carries.swapaxes(0, 1), q.swapaxes(0, 1)


def n_step_targets(reward, done, terminated, next_value, *, gamma: float, n_step: int):
    """n-step returns within windows ``(..., length)``.

    The return of step ``t`` sums the rewards of steps ``t .. t+m-1`` and adds ``gamma ** m *
    next_value[t+m-1]`` unless step ``t+m-1`` terminated, where ``m <= n_step`` stops at the step
    that ends the episode and at the end of the window.
    """
    length = reward.shape[-1]
    t = jnp.arange(length)
    later = t[:, None] + jnp.arange(n_step)  # (length, n)
    inside = later < length
    later = jnp.minimum(later, length - 1)
    ends = done[..., later].astype(jnp.int32)  # (..., length, n)
    counted = inside & (jnp.cumsum(ends, axis=-1) - ends == 0)
    discounts = jnp.float32(gamma) ** jnp.arange(n_step, dtype=jnp.float32)
    total = (reward[..., later] * discounts * counted.astype(jnp.float32)).sum(axis=-1)
    steps = counted.astype(jnp.int32).sum(axis=-1)
    last = t + steps - 1
    keep = 1.0 - jnp.take_along_axis(terminated, last, axis=-1).astype(jnp.float32)
    bootstrap = jnp.take_along_axis(next_value, last, axis=-1)
    return total + jnp.float32(gamma) ** steps.astype(jnp.float32) * keep * bootstrap
