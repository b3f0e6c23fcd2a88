"""How far a surgery moved a DQN agent's Q-values, on the states the old agent visits.

The states are those the old network's greedy policy meets in :data:`STATE_EPISODES` episodes
of :data:`STATE_STEPS` steps each (an episode that ends starts again). On them the old and the
new network are compared: the relative change of the Q-values,
``||Q_new - Q_old|| / ||Q_old||`` over all states and actions, and the fraction of states on
which both choose the same greedy action. A function-preserving surgery gives a change near
float32 rounding and agreement 1.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: Parallel episodes and steps per episode of the states the networks are compared on.
STATE_EPISODES = 16
STATE_STEPS = 32


def visited_states(network, params, env, key: jax.Array) -> jax.Array:
    """``(STATE_EPISODES * STATE_STEPS, num_obs)`` observations met by the greedy policy of
    ``network`` with ``params`` in ``env``, from episodes started with ``key``."""
    env_reset, env_step = jax.vmap(env.reset), jax.vmap(env.step)
    reset_key, run_key = jax.random.split(key)
    obs, state = env_reset(jax.random.split(reset_key, STATE_EPISODES))

    def step(carry, step_key):
        obs, state = carry
        action = jnp.argmax(network.apply(params, obs), axis=-1).astype(jnp.int32)
        next_obs, state, *_ = env_step(jax.random.split(step_key, STATE_EPISODES), state, action)
        return (next_obs, state), obs

    _, seen = jax.lax.scan(step, (obs, state), jax.random.split(run_key, STATE_STEPS))
    return seen.reshape(-1, seen.shape[-1])


def q_shift(old_q: jax.Array, new_q: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(relative change, greedy agreement)`` of Q-values ``(states, actions)``.

    Example:
        >>> import jax.numpy as jnp
        >>> old = jnp.array([[1.0, 2.0], [3.0, 1.0]])
        >>> [round(float(v), 3) for v in q_shift(old, 2 * old)]
        [1.0, 1.0]
        >>> [round(float(v), 3) for v in q_shift(old, old[:, ::-1])]
        [0.816, 0.0]
    """
    change = jnp.linalg.norm(new_q - old_q) / jnp.linalg.norm(old_q)
    agreement = jnp.mean(jnp.argmax(new_q, axis=-1) == jnp.argmax(old_q, axis=-1))
    return change, agreement


def surgery_shift(old_network, new_network, env, old_params: Any, new_params: Any, keys) -> dict:
    """Per seed, how far the new network's Q-values lie from the old one's on the states the old
    greedy policy visits in ``env`` (both networks see ``env``'s observations and actions).

    Args:
        old_network, new_network: the two :class:`~jsurgery.rl.QNetwork` modules.
        env: the environment both play.
        old_params, new_params: their parameters, with a leading seed axis.
        keys: one key per seed, for the episodes.

    Returns:
        ``{"q_change": [...], "greedy_agreement": [...]}``, one value per seed.
    """
    shift = _compiled_shift(old_network, new_network, env.env_id, env.obs_ids, env.action_ids)
    change, agreement = shift(old_params, new_params, keys)
    return {
        "q_change": np.asarray(change, np.float64).tolist(),
        "greedy_agreement": np.asarray(agreement, np.float64).tolist(),
    }


@functools.lru_cache(maxsize=8)
def _compiled_shift(old_network, new_network, env_id, obs, actions):
    from jsurgery.rl import make_env

    env = make_env(env_id, obs=obs, actions=actions)

    def one_seed(old_params, new_params, key):
        states = visited_states(old_network, old_params, env, key)
        return q_shift(old_network.apply(old_params, states), new_network.apply(new_params, states))

    return jax.jit(jax.vmap(one_seed))
