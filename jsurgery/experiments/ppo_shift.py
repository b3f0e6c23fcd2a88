"""How far a surgery moved a PPO agent's policy and value, on the states the old agent visits.

The old network's greedy policy (its most probable action, or its Gaussian's mean) plays the new
network's view of the environment for :data:`STATE_EPISODES` parallel episodes of
:data:`STATE_STEPS` steps (an episode that ends starts again); the old network sees the columns of
its own observation IDs. On those states the two networks are compared:

- ``value_change``: ``||V_new - V_old|| / ||V_old||``;
- ``policy_change``: for discrete actions the mean total-variation distance between the old
  policy (no probability on new actions) and the new one; for continuous actions
  ``||mu_new - mu_old|| / ||mu_old||`` over the old action dimensions;
- ``greedy_agreement`` (discrete actions): the fraction of states on which both pick the same
  action.

A function-preserving surgery gives changes near float32 rounding (the policy's up to the share a
new action starts with) and agreement 1.

After training, :func:`greedy_action_shares` says how often the trained greedy policy picks each
action on the states it visits itself (whether a new action came to be used).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.experiments.shift import STATE_EPISODES, STATE_STEPS


def view_indices(old_env, new_env) -> tuple[np.ndarray, np.ndarray] | None:
    """``(obs, actions)``: where each old observation ID and action ID sits in the new view;
    None when the old view has IDs the new one lacks (the old policy cannot play it)."""
    old_obs, new_obs = list(old_env.feature_ids), list(new_env.feature_ids)
    old_actions, new_actions = list(old_env.action_ids), list(new_env.action_ids)
    if not (set(old_obs) <= set(new_obs) and set(old_actions) <= set(new_actions)):
        return None
    obs = np.array([new_obs.index(i) for i in old_obs], np.int32)
    actions = np.array([new_actions.index(a) for a in old_actions], np.int32)
    return obs, actions


def visited_states(network, params, env, obs_index, action_index, key: jax.Array) -> jax.Array:
    """``(STATE_EPISODES * STATE_STEPS, env.num_obs)`` observations of ``env`` met by the greedy
    policy of the old ``network``, which sees the columns ``obs_index`` and whose action ``k``
    is ``env``'s action ``action_index[k]``."""
    env_reset, env_step = jax.vmap(env.reset), jax.vmap(env.step)
    reset_key, run_key = jax.random.split(key)
    obs, state = env_reset(jax.random.split(reset_key, STATE_EPISODES))

    def step(carry, step_key):
        obs, state = carry
        policy, _ = network.apply(params, obs[:, obs_index])
        if env.continuous:
            action = jnp.zeros((STATE_EPISODES, env.num_actions)).at[:, action_index].set(policy)
        else:
            action = action_index[jnp.argmax(policy, axis=-1)].astype(jnp.int32)
        next_obs, state, *_ = env_step(jax.random.split(step_key, STATE_EPISODES), state, action)
        return (next_obs, state), obs

    _, seen = jax.lax.scan(step, (obs, state), jax.random.split(run_key, STATE_STEPS))
    return seen.reshape(-1, seen.shape[-1])


def relative_change(old: jax.Array, new: jax.Array) -> jax.Array:
    return jnp.linalg.norm(new - old) / jnp.linalg.norm(old)


def policy_shift(old_policy, new_policy, action_index, continuous: bool) -> dict[str, jax.Array]:
    """``policy_change`` (and for discrete actions ``greedy_agreement``) of the old policy's
    outputs ``(states, old actions)`` against the new one's ``(states, new actions)``.

    Example:
        >>> import jax.numpy as jnp
        >>> old = jnp.log(jnp.array([[0.5, 0.5]]))
        >>> new = jnp.log(jnp.array([[0.25, 0.5, 0.25]]))
        >>> shift = policy_shift(old, new, jnp.array([0, 2]), continuous=False)
        >>> [round(float(shift[k]), 3) for k in ("policy_change", "greedy_agreement")]
        [0.5, 0.0]
    """
    if continuous:
        return {"policy_change": relative_change(old_policy, new_policy[:, action_index])}
    old_probability = (
        jnp.zeros(new_policy.shape).at[:, action_index].set(jax.nn.softmax(old_policy))
    )
    distance = 0.5 * jnp.abs(jax.nn.softmax(new_policy) - old_probability).sum(axis=-1)
    old_greedy = action_index[jnp.argmax(old_policy, axis=-1)]
    return {
        "policy_change": distance.mean(),
        "greedy_agreement": jnp.mean(jnp.argmax(new_policy, axis=-1) == old_greedy),
    }


def ppo_surgery_shift(
    old_network, new_network, old_env, new_env, old_params: Any, new_params: Any, keys
) -> dict | None:
    """Per seed, how far the new network's policy and value lie from the old one's on the states
    the old greedy policy visits in ``new_env`` (see the module's docstring).

    Args:
        old_network, new_network: the two :class:`~jsurgery.rl.ActorCritic` modules.
        old_env, new_env: their views of the environment.
        old_params, new_params: their parameters, with a leading seed axis.
        keys: one key per seed, for the episodes.

    Returns:
        ``{"value_change": [...], "policy_change": [...], "greedy_agreement": [...]}`` (the last
        for discrete actions), one value per seed; None when the old view has observation or
        action IDs that the new one lacks.
    """
    indices = view_indices(old_env, new_env)
    if indices is None:
        return None
    obs, actions = (tuple(int(i) for i in index) for index in indices)
    env = (new_env.env_id, new_env.obs_ids, new_env.action_ids)
    shift = _compiled_shift(old_network, new_network, env, obs, actions)
    return {
        name: np.asarray(values, np.float64).tolist()
        for name, values in shift(old_params, new_params, keys).items()
    }


@functools.lru_cache(maxsize=8)
def _compiled_shift(old_network, new_network, env_view, obs_index, action_index):
    from jsurgery.rl import make_env

    env_id, obs_ids, action_ids = env_view
    env = make_env(env_id, obs=obs_ids, actions=action_ids)
    obs_index, action_index = jnp.array(obs_index), jnp.array(action_index)

    def one_seed(old_params, new_params, key):
        states = visited_states(old_network, old_params, env, obs_index, action_index, key)
        old_policy, old_value = old_network.apply(old_params, states[:, obs_index])
        new_policy, new_value = new_network.apply(new_params, states)
        shift = policy_shift(old_policy, new_policy, action_index, env.continuous)
        return {"value_change": relative_change(old_value, new_value), **shift}

    return jax.jit(jax.vmap(one_seed))


def greedy_action_shares(network, env, params: Any, keys) -> dict | None:
    """Per action ID, one value per seed: the share of the states the greedy policy of
    ``network`` (with ``params``, leading seed axis) visits in ``env`` on which it picks that
    action; None for continuous actions."""
    if env.continuous:
        return None
    shares = _compiled_shares(network, (env.env_id, env.obs_ids, env.action_ids))(params, keys)
    shares = np.asarray(shares, np.float64)
    return {str(action): shares[:, i].tolist() for i, action in enumerate(env.action_ids)}


@functools.lru_cache(maxsize=8)
def _compiled_shares(network, env_view):
    from jsurgery.rl import make_env

    env_id, obs_ids, action_ids = env_view
    env = make_env(env_id, obs=obs_ids, actions=action_ids)
    obs_index, action_index = jnp.arange(env.num_obs), jnp.arange(env.num_actions)

    def one_seed(params, key):
        states = visited_states(network, params, env, obs_index, action_index, key)
        policy, _ = network.apply(params, states)
        greedy = jax.nn.one_hot(jnp.argmax(policy, axis=-1), env.num_actions)
        return greedy.mean(axis=0)

    return jax.jit(jax.vmap(one_seed))
