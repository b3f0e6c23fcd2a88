"""Environments seen through observation and action IDs.

A network trained on part of an environment sees a chosen subset and order of its observation
features
and a chosen subset and order of its actions, all named. The same names are the unit IDs the surgery
core matches when a network moves to a different view of the environment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.rl.suggest import did_you_mean

__all__ = [
    "CONTINUOUS_ENV_IDS",
    "ENV_IDS",
    "GYMNAX_DISCRETE",
    "EnvSpec",
    "IdEnv",
    "env_spec",
    "make_env",
]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """The observation and action names of one environment, and how to build it.

    ``obs_ids`` name the features of a vector observation, or the channels of an image one (the
    last axis of an ``(h, w, channel)`` observation); ``None`` names them by position (``obs_0``,
    ...), as ``action_ids`` of ``None`` name the actions ``action_0``, ...
    """

    env_id: str
    obs_ids: tuple[str, ...] | None
    action_ids: tuple[str, ...] | None
    build: Callable[[], tuple[Any, Any]]


def _gymnax(env_id: str) -> Callable[[], tuple[Any, Any]]:
    def build():
        try:
            import gymnax
        except ImportError:
            raise ValueError(
                f"`env_id`: {env_id!r} needs gymnax (the rl extra), which is not installed; "
                "install it with pip install 'jsurgery[rl]'"
            ) from None
        try:
            with jax.numpy_dtype_promotion("standard"):  # some gymnax envs mix ints and floats
                return gymnax.make(env_id)
        except Exception as error:  # e.g. MNISTBandit downloading its data set offline
            raise ValueError(
                f"`env_id`: gymnax could not build {env_id!r}: {type(error).__name__}: "
                f"{str(error).splitlines()[0] if str(error) else ''}".rstrip(": ")
            ) from None

    return build


def _lunar_lander():
    from jsurgery.envs.lunar_lander import LunarLander

    env = LunarLander()
    return env, env.default_params


_MINATAR_ACTIONS = {
    "Asterix": ("noop", "left", "up", "right", "down"),
    "Breakout": ("noop", "left", "right"),
    "Freeway": ("noop", "up", "down"),
    "Seaquest": ("noop", "left", "up", "right", "down", "fire"),
    "SpaceInvaders": ("noop", "left", "right", "fire"),
}
_MINATAR_CHANNELS = {
    "Asterix": ("player", "enemy", "trail", "gold"),
    "Breakout": ("paddle", "ball", "trail", "brick"),
    "Freeway": ("chicken", "car", "speed1", "speed2", "speed3", "speed4", "speed5"),
    "Seaquest": (
        "sub_front", "sub_back", "friendly_bullet", "trail", "enemy_bullet", "enemy_fish",
        "enemy_sub", "oxygen_gauge", "diver_gauge", "diver",
    ),
    "SpaceInvaders": (
        "cannon", "alien", "alien_left", "alien_right", "friendly_bullet", "enemy_bullet",
    ),
}  # fmt: skip

_NAMED = (
    EnvSpec("CartPole-v1", ("x", "x_dot", "theta", "theta_dot"), ("left", "right"),
            _gymnax("CartPole-v1")),
    EnvSpec("Acrobot-v1", ("cos1", "sin1", "cos2", "sin2", "dtheta1", "dtheta2"),
            ("torque-1", "noop", "torque+1"), _gymnax("Acrobot-v1")),
    EnvSpec("LunarLander-v3",
            ("x", "y", "vx", "vy", "angle", "angular_velocity", "left_leg", "right_leg"),
            ("noop", "left", "main", "right"), _lunar_lander),
    EnvSpec("MountainCar-v0", ("position", "velocity"), ("left", "noop", "right"),
            _gymnax("MountainCar-v0")),
    *(EnvSpec(f"{game}-MinAtar", _MINATAR_CHANNELS[game], _MINATAR_ACTIONS[game],
              _gymnax(f"{game}-MinAtar")) for game in _MINATAR_ACTIONS),
    EnvSpec("Catch-bsuite", ("board",), ("left", "noop", "right"), _gymnax("Catch-bsuite")),
    EnvSpec("DeepSea-bsuite", ("position",), ("left", "right"), _gymnax("DeepSea-bsuite")),
)  # fmt: skip

GYMNAX_DISCRETE: tuple[str, ...] = (
    "CartPole-v1", "Acrobot-v1", "MountainCar-v0", "Asterix-MinAtar", "Breakout-MinAtar",
    "Freeway-MinAtar", "Seaquest-MinAtar", "SpaceInvaders-MinAtar", "Catch-bsuite",
    "DeepSea-bsuite", "MemoryChain-bsuite", "UmbrellaChain-bsuite", "DiscountingChain-bsuite",
    "MNISTBandit-bsuite", "SimpleBandit-bsuite", "FourRooms-misc", "MetaMaze-misc",
    "BernoulliBandit-misc", "GaussianBandit-misc", "Pong-misc", "FrozenLake-misc",
)  # fmt: skip
"""The gymnax environments with discrete actions (gymnax 1.0); the DQN trains on each."""

_SPECS = {spec.env_id: spec for spec in _NAMED}
_SPECS.update(
    (env_id, EnvSpec(env_id, None, None, _gymnax(env_id)))
    for env_id in GYMNAX_DISCRETE
    if env_id not in _SPECS
)

ENV_IDS: tuple[str, ...] = tuple(_SPECS)
"""The discrete-action environments :func:`make_env` knows: the named ones first, then every other
discrete-action gymnax environment (observation and action IDs by position)."""

_CONTINUOUS = (
    EnvSpec("Pendulum-v1", ("cos_theta", "sin_theta", "theta_dot"), ("torque",),
            _gymnax("Pendulum-v1")),
    EnvSpec("MountainCarContinuous-v0", ("position", "velocity"), ("force",),
            _gymnax("MountainCarContinuous-v0")),
)  # fmt: skip
_SPECS.update((spec.env_id, spec) for spec in _CONTINUOUS)

CONTINUOUS_ENV_IDS: tuple[str, ...] = tuple(spec.env_id for spec in _CONTINUOUS)
"""The continuous-action environments :func:`make_env` knows (for PPO): action IDs name the
dimensions of the action vector."""


def _pick(argument: str, chosen: Sequence[str] | None, full: tuple[str, ...]) -> tuple[str, ...]:
    if chosen is None:
        return full
    if isinstance(chosen, str):
        raise ValueError(f"`{argument}`: expected a sequence of names, got the string {chosen!r}")
    chosen = tuple(chosen)
    if not chosen:
        raise ValueError(f"`{argument}`: expected at least one name out of {list(full)}")
    unknown = [name for name in chosen if name not in full]
    if unknown:
        raise ValueError(
            f"`{argument}`: unknown names {unknown}{did_you_mean(unknown[0], full)}; this "
            f"environment has {list(full)}"
        )
    duplicates = sorted({name for name in chosen if chosen.count(name) > 1})
    if duplicates:
        raise ValueError(f"`{argument}`: names {duplicates} appear twice; each may appear once")
    return chosen


def _observation_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An observation shape as ``(features,)`` or ``(h, w, channel)``."""
    if len(shape) == 0:
        return (1,)
    if len(shape) == 2:
        return (*shape, 1)
    return shape


def _action_space(env: Any, env_params: Any) -> tuple[int, np.ndarray | None, np.ndarray | None]:
    """The number of actions (discrete) or action dimensions (continuous), and the continuous
    bounds per dimension (``None`` for discrete actions)."""
    space = env.action_space(env_params)
    if hasattr(space, "n"):
        return int(space.n), None, None
    shape = tuple(int(n) for n in space.shape)
    size = int(np.prod(shape, dtype=int))
    low = np.broadcast_to(np.asarray(space.low, np.float32), shape).reshape(size)
    high = np.broadcast_to(np.asarray(space.high, np.float32), shape).reshape(size)
    return size, low, high


class IdEnv:
    """A gymnax environment showing a named subset and order of observations and actions.

    ``reset`` and ``step`` work on one environment (``vmap`` them for more) and return only the
    chosen observation features, flattened to a vector; ``step`` takes an index into the chosen
    actions. Episodes auto-reset and ``info["final_observation"]`` holds the (chosen features of
    the) last observation of the episode that ended, so truncated episodes can be bootstrapped.

    Continuous actions (:data:`CONTINUOUS_ENV_IDS`) are vectors: ``action_ids`` name their
    dimensions, ``step`` takes one value per offered dimension (clipped to
    ``action_low``/``action_high``) and the dimensions not offered are held at
    :attr:`action_rest` (0 clipped into the bounds).

    An image observation ``(h, w, channel)`` (MinAtar; a 2-D board such as Catch's is one channel)
    is chosen by channel: ``obs_ids`` name channels, and the network sees the chosen channels
    flattened in ``(h, w, channel)`` order, so that its input units are ``feature_ids``, the tuples
    ``(row, column, channel_id)``: adding or removing a channel moves every feature of it.

    Attributes:
        env_id: the environment's name, e.g. ``"CartPole-v1"``.
        obs_ids: the observation features (channels of an image) this view shows, in its order.
        action_ids: the actions this view offers, in its order.
        all_obs_ids: every observation feature (channel) of the environment, in its order.
        all_action_ids: every action of the environment, in the environment's order.
        raw_obs_shape: the environment's own observation shape.
        obs_shape: the same as ``(features,)`` or ``(h, w, channel)``.
        obs_index: position in the full observation (channel axis) of each shown feature.
        action_index: environment action index (continuous: dimension) of each offered action
            (NumPy ints).
        continuous: whether actions are continuous vectors.
        action_low, action_high: bounds of each offered dimension (continuous actions; else None).
        action_rest: the value of every dimension of the environment's action vector when it is
            not offered (continuous actions; else None).
        max_steps: the episode time limit.
    """

    def __init__(
        self,
        spec: EnvSpec,
        obs: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
    ):
        self.env_id = spec.env_id
        self.env, self.env_params = spec.build()
        with jax.numpy_dtype_promotion("standard"):
            num_actions, low, high = _action_space(self.env, self.env_params)
            space = self.env.observation_space(self.env_params)
        self.raw_obs_shape = tuple(int(n) for n in space.shape)
        self.obs_shape = _observation_shape(self.raw_obs_shape)
        width = self.obs_shape[-1]
        self.all_obs_ids = spec.obs_ids or tuple(f"obs_{i}" for i in range(width))
        self.all_action_ids = spec.action_ids or tuple(f"action_{i}" for i in range(num_actions))
        if len(self.all_obs_ids) != width or len(self.all_action_ids) != num_actions:
            raise ValueError(
                f"`env_id`: {spec.env_id!r} has {width} observation features (channels) and "
                f"{num_actions} actions, but {len(self.all_obs_ids)} and "
                f"{len(self.all_action_ids)} names; the installed gymnax differs from the one "
                "these names were written for"
            )
        self.obs_ids = _pick("obs", obs, self.all_obs_ids)
        self.action_ids = _pick("actions", actions, self.all_action_ids)
        self.obs_index = np.array([self.all_obs_ids.index(n) for n in self.obs_ids], dtype=np.int32)
        self.action_index = np.array(
            [self.all_action_ids.index(n) for n in self.action_ids], dtype=np.int32
        )
        self.max_steps = int(self.env_params.max_steps_in_episode)
        self.continuous = low is not None
        self.action_low = self.action_high = self.action_rest = None
        if self.continuous:
            self.action_low, self.action_high = low[self.action_index], high[self.action_index]
            self.action_rest = np.clip(np.float32(0.0), low, high)

    def require_discrete(self, algorithm: str) -> None:
        """Raises a ValueError naming ``algorithm`` if this environment's actions are
        continuous."""
        if self.continuous:
            raise ValueError(
                f"`env`: {self.env_id} has continuous actions and {algorithm} needs discrete "
                "ones; train it with PPO (jsurgery.rl.ppo)"
            )

    @property
    def is_image(self) -> bool:
        """Whether observations are images ``(h, w, channel)`` chosen by channel."""
        return len(self.obs_shape) == 3

    @property
    def num_obs(self) -> int:
        """Width of the flattened observation the network sees."""
        return int(np.prod(self.obs_shape[:-1], dtype=int)) * len(self.obs_ids)

    @property
    def num_actions(self) -> int:
        return len(self.action_ids)

    @property
    def feature_ids(self) -> tuple:
        """The unit ID of each network input: ``obs_ids``, or ``(row, column, channel_id)``
        tuples for an image, in the order of the flattened observation."""
        if not self.is_image:
            return self.obs_ids
        h, w, _ = self.obs_shape
        return tuple((i, j, c) for i in range(h) for j in range(w) for c in self.obs_ids)

    def __repr__(self) -> str:
        return f"IdEnv({self.env_id!r}, obs={list(self.obs_ids)}, actions={list(self.action_ids)})"

    def select_obs(self, full_obs):
        """The shown features of full observations, flattened to ``(..., num_obs)``.

        A vector observation has the environment's features on its last axis; an image one is
        ``(..., h, w, channel)`` (or ``(..., h, w)`` for a one-channel board).
        """
        lead = full_obs.shape[: full_obs.ndim - len(self.raw_obs_shape)]
        full_obs = full_obs.reshape(*lead, *self.obs_shape)
        if isinstance(full_obs, np.ndarray):
            chosen = full_obs[..., self.obs_index]
        else:
            chosen = jnp.take(full_obs, jnp.asarray(self.obs_index), axis=-1)
        if self.is_image:
            chosen = chosen.reshape(*chosen.shape[:-3], -1)
        return chosen

    def env_action(self, action):
        """Environment action indices of indices into :attr:`action_ids`; for continuous actions,
        the environment's action vectors ``(..., dimensions)`` of the offered dimensions'
        values ``(..., num_actions)``, clipped to the bounds."""
        if self.continuous:
            action = jnp.clip(action, self.action_low, self.action_high)
            full = jnp.broadcast_to(self.action_rest, (*action.shape[:-1], self.action_rest.size))
            return full.at[..., jnp.asarray(self.action_index)].set(action)
        if isinstance(action, np.ndarray | int | np.integer):
            return self.action_index[action]
        return jnp.asarray(self.action_index)[action]

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]:
        """Start an episode: the shown observation and the environment state."""
        with jax.numpy_dtype_promotion("standard"):
            obs, state = self.env.reset(key, self.env_params)
        return self.select_obs(obs.astype(jnp.float32)), state

    def step(self, key: jax.Array, state: Any, action: jax.Array):
        """One step with an index into :attr:`action_ids` (continuous: a value per offered
        dimension).

        Returns:
            ``(obs, state, reward, terminated, truncated, info)``; ``obs`` starts the next episode
            when
            this one ended, and ``info["final_observation"]`` is the observation the step reached.
        """
        env_action = self.env_action(action)
        with jax.numpy_dtype_promotion("standard"):
            obs, state, reward, terminated, truncated, info = self.env.step(
                key, state, env_action, self.env_params
            )
        final = self.select_obs(jnp.asarray(info["final_observation"], jnp.float32))
        info = {**info, "final_observation": final}
        return (
            self.select_obs(obs.astype(jnp.float32)),
            state,
            jnp.asarray(reward, jnp.float32),
            jnp.asarray(terminated, jnp.bool_),
            jnp.asarray(truncated, jnp.bool_),
            info,
        )


def make_env(
    env_id: str, obs: Sequence[str] | None = None, actions: Sequence[str] | None = None
) -> IdEnv:
    """The environment ``env_id`` showing the observation features ``obs`` and actions ``actions``.

    Args:
        env_id: one of :data:`ENV_IDS`: ``CartPole-v1``, ``Acrobot-v1``, ``LunarLander-v3``,
            ``MountainCar-v0``, the MinAtar games, bsuite's Catch and DeepSea (all with named
            observations and actions), or any other discrete-action gymnax environment
            (:data:`GYMNAX_DISCRETE`, IDs by position: ``obs_0``, ..., ``action_0``, ...); or,
            for PPO, one of :data:`CONTINUOUS_ENV_IDS` (``Pendulum-v1``,
            ``MountainCarContinuous-v0``).
        obs: observation IDs (channels of an image) to show, in the order the network sees them;
            ``None`` shows all.
        actions: action IDs to offer, in the order of the network's outputs; ``None`` offers all.

    Raises:
        ValueError: an unknown environment, or unknown or repeated names.

    Example:
        >>> env = make_env("CartPole-v1", obs=["x_dot", "theta"])
        >>> env.obs_ids, env.action_ids
        (('x_dot', 'theta'), ('left', 'right'))
        >>> env.obs_index.tolist()
        [1, 2]
        >>> make_env("Breakout-MinAtar", obs=["paddle", "ball"]).feature_ids[:3]
        ((0, 0, 'paddle'), (0, 0, 'ball'), (0, 1, 'paddle'))
    """
    return IdEnv(env_spec(env_id), obs, actions)


def env_spec(env_id: str) -> EnvSpec:
    """The :class:`EnvSpec` of ``env_id`` (its observation and action IDs), without building it.

    Raises:
        ValueError: an unknown environment, with the closest known one.
    """
    if env_id not in _SPECS:
        known = (*ENV_IDS, *CONTINUOUS_ENV_IDS)
        raise ValueError(
            f"`env_id`: unknown environment {env_id!r}{did_you_mean(env_id, known)}; choose "
            f"one of {', '.join(ENV_IDS)} (discrete actions) or {', '.join(CONTINUOUS_ENV_IDS)} "
            "(continuous actions, PPO only)"
        )
    return _SPECS[env_id]
