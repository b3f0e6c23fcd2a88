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

__all__ = ["ENV_IDS", "EnvSpec", "IdEnv", "make_env"]


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """The full observation and action names of one environment, and how to build it."""

    env_id: str
    obs_ids: tuple[str, ...]
    action_ids: tuple[str, ...]
    build: Callable[[], tuple[Any, Any]]


def _gymnax(env_id: str) -> Callable[[], tuple[Any, Any]]:
    def build():
        import gymnax

        return gymnax.make(env_id)

    return build


def _lunar_lander():
    from jsurgery.envs.lunar_lander import LunarLander

    env = LunarLander()
    return env, env.default_params


_SPECS = {
    spec.env_id: spec
    for spec in (
        EnvSpec(
            "CartPole-v1",
            ("x", "x_dot", "theta", "theta_dot"),
            ("left", "right"),
            _gymnax("CartPole-v1"),
        ),
        EnvSpec(
            "Acrobot-v1",
            ("cos1", "sin1", "cos2", "sin2", "dtheta1", "dtheta2"),
            ("torque-1", "noop", "torque+1"),
            _gymnax("Acrobot-v1"),
        ),
        EnvSpec(
            "LunarLander-v3",
            ("x", "y", "vx", "vy", "angle", "angular_velocity", "left_leg", "right_leg"),
            ("noop", "left", "main", "right"),
            _lunar_lander,
        ),
    )
}

ENV_IDS: tuple[str, ...] = tuple(_SPECS)
"""The environments :func:`make_env` knows by name."""


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
            f"`{argument}`: unknown names {unknown}; this environment has {list(full)}"
        )
    duplicates = sorted({name for name in chosen if chosen.count(name) > 1})
    if duplicates:
        raise ValueError(f"`{argument}`: names {duplicates} appear twice; each may appear once")
    return chosen


class IdEnv:
    """A gymnax environment showing a named subset and order of observations and actions.

    ``reset`` and ``step`` work on one environment (``vmap`` them for more) and return only the
    chosen
    observation features; ``step`` takes an index into the chosen actions. Episodes auto-reset and
    ``info["final_observation"]`` holds the (chosen features of the) last observation of the episode
    that ended, so truncated episodes can be bootstrapped.

    Attributes:
        env_id: the environment's name, e.g. ``"CartPole-v1"``.
        obs_ids: the observation features this view shows, in its order.
        action_ids: the actions this view offers, in its order.
        all_obs_ids: every observation feature of the environment, in the environment's order.
        all_action_ids: every action of the environment, in the environment's order.
        obs_index: position in the full observation of each shown feature (NumPy ints).
        action_index: environment action index of each offered action (NumPy ints).
        max_steps: the episode time limit.
    """

    def __init__(
        self,
        spec: EnvSpec,
        obs: Sequence[str] | None = None,
        actions: Sequence[str] | None = None,
    ):
        self.env_id = spec.env_id
        self.all_obs_ids = spec.obs_ids
        self.all_action_ids = spec.action_ids
        self.obs_ids = _pick("obs", obs, spec.obs_ids)
        self.action_ids = _pick("actions", actions, spec.action_ids)
        self.obs_index = np.array([spec.obs_ids.index(n) for n in self.obs_ids], dtype=np.int32)
        self.action_index = np.array(
            [spec.action_ids.index(n) for n in self.action_ids], dtype=np.int32
        )
        self.env, self.env_params = spec.build()
        self.max_steps = int(self.env_params.max_steps_in_episode)

    @property
    def num_obs(self) -> int:
        return len(self.obs_ids)

    @property
    def num_actions(self) -> int:
        return len(self.action_ids)

    def __repr__(self) -> str:
        return f"IdEnv({self.env_id!r}, obs={list(self.obs_ids)}, actions={list(self.action_ids)})"

    def select_obs(self, full_obs):
        """The shown features of full observations (last axis in the environment's order)."""
        if isinstance(full_obs, np.ndarray):
            return full_obs[..., self.obs_index]
        return jnp.take(full_obs, jnp.asarray(self.obs_index), axis=-1)

    def env_action(self, action):
        """Environment action indices of indices into :attr:`action_ids`."""
        if isinstance(action, np.ndarray | int | np.integer):
            return self.action_index[action]
        return jnp.asarray(self.action_index)[action]

    def reset(self, key: jax.Array) -> tuple[jax.Array, Any]:
        """Start an episode: the shown observation and the environment state."""
        with jax.numpy_dtype_promotion("standard"):
            obs, state = self.env.reset(key, self.env_params)
        return self.select_obs(obs.astype(jnp.float32)), state

    def step(self, key: jax.Array, state: Any, action: jax.Array):
        """One step with an index into :attr:`action_ids`.

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
        env_id: one of :data:`ENV_IDS` (``CartPole-v1``, ``Acrobot-v1``, ``LunarLander-v3``).
        obs: observation IDs to show, in the order the network sees them; ``None`` shows all.
        actions: action IDs to offer, in the order of the network's outputs; ``None`` offers all.

    Raises:
        ValueError: an unknown environment, or unknown or repeated names.

    Example:
        >>> env = make_env("CartPole-v1", obs=["x_dot", "theta"])
        >>> env.obs_ids, env.action_ids
        (('x_dot', 'theta'), ('left', 'right'))
        >>> env.obs_index.tolist()
        [1, 2]
    """
    if env_id not in _SPECS:
        raise ValueError(f"`env_id`: unknown environment {env_id!r}; known: {list(ENV_IDS)}")
    return IdEnv(_SPECS[env_id], obs, actions)
