"""A recurrent DQN as pure functions of arrays: ``make_train(config, env) -> train(key, ...)``.

Acting keeps the network's carry per environment, set to zero when an episode ends; every step is
stored in a :class:`~jsurgery.rl.recurrent.SequenceBuffer`. A gradient step draws windows of
``sequence_length`` steps, unrolls the online and the target network over them from a zero carry,
and trains on the steps :func:`~jsurgery.rl.recurrent.trained_steps` names with n-step Double-DQN
targets (:func:`~jsurgery.rl.recurrent.n_step_targets`); the value after step ``t`` is
``Q(carry_t, next_obs_t)``, so a truncated episode bootstraps from its last observation.

As in :mod:`jsurgery.rl.dqn`, a run is one ``lax.scan`` over evaluation periods and
``jax.jit(jax.vmap(train))(keys)`` trains one seed per key in one compiled call. Every greedy
evaluation of a run plays the same episodes (their start states and step keys come from one
``eval_key``), so two evaluations differ only by the network: a function-preserving surgery gives
the same return at step 0 as the old agent's last evaluation when both share the key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jsurgery.rl import loop
from jsurgery.rl.dqn import agent_state, check_init, join_metrics, make_optimizer
from jsurgery.rl.environments import IdEnv, make_env
from jsurgery.rl.recurrent import (
    RecurrentDQNConfig,
    RecurrentQNetwork,
    SequenceBuffer,
    Window,
    n_step_targets,
    trained_steps,
    unroll,
)

__all__ = ["RecurrentCarry", "make_train"]


@struct.dataclass
class RecurrentCarry:
    """The per-seed state carried through a run."""

    params: Any
    target_params: Any
    opt_state: Any
    buffer: SequenceBuffer
    env_state: Any
    obs: jax.Array  # (num_envs, num_obs)
    memory: jax.Array  # the network's carry per environment, (num_envs, hidden)
    first: jax.Array  # whether `obs` starts an episode, per environment
    episode_return: jax.Array
    last_return: jax.Array
    has_return: jax.Array
    eval_key: jax.Array
    key: jax.Array


def make_train(
    config: RecurrentDQNConfig,
    env: IdEnv | str = "CartPole-v1",
    on_period: Callable[[Any], None] | None = None,
) -> Callable:
    """A function training one recurrent DQN agent from a key, as a single ``lax.scan``.

    Args:
        config: the run's :class:`RecurrentDQNConfig`.
        env: an :class:`~jsurgery.rl.IdEnv` or an environment ID.
        on_period: optional host function called with the step count after every evaluation.

    Returns:
        ``train(key, init=None, eval_key=None) -> (state, metrics)``, as
        :func:`jsurgery.rl.make_train`'s (same ``init`` keys, same metrics). Every evaluation
        plays the ``eval_episodes`` episodes drawn from ``eval_key`` (default: drawn from
        ``key``).

    Example:
        >>> config = RecurrentDQNConfig(hidden=(4,), total_steps=200, eval_every=100,
        ...     eval_episodes=2, learning_starts=50, buffer_size=100, batch_size=4,
        ...     sequence_length=8, burn_in=2)
        >>> state, metrics = jax.jit(make_train(config, "CartPole-v1"))(jax.random.key(0))
        >>> metrics["eval_return"].shape, state["params"]["params"]["cell"]["hn"]["kernel"].shape
        ((3,), (4, 4))
    """
    if isinstance(env, str):
        env = make_env(env)
    env.require_discrete("a recurrent DQN")
    network = RecurrentQNetwork.for_config(config, env.num_actions)
    optimizer = make_optimizer(config)
    num_envs = config.num_envs
    env_reset, env_step = jax.vmap(env.reset), jax.vmap(env.step)

    def greedy(params, memory, obs):
        memory, q = network.apply(params, memory, obs)
        return memory, jnp.argmax(q, axis=-1).astype(jnp.int32)

    evaluate = loop.make_evaluate(config, env, greedy, initial_memory=network.initial_carry)

    def begin(key, init=None, eval_key=None):
        net_key, env_key, default_eval_key, run_key = jax.random.split(key, 4)
        eval_key = default_eval_key if eval_key is None else eval_key
        obs0 = jnp.zeros((1, env.num_obs), jnp.float32)
        params = network.init(net_key, network.initial_carry((1,)), obs0)
        given = check_init(init, params)
        params = given.get("params", params)
        opt_state = given["opt_state"] if "opt_state" in given else optimizer.init(params)
        obs, env_state = env_reset(jax.random.split(env_key, num_envs))
        flags = jnp.zeros((num_envs,), jnp.bool_)
        carry = RecurrentCarry(
            params=params,
            target_params=given.get("target_params", params),
            opt_state=opt_state,
            buffer=SequenceBuffer.create(config.buffer_size, num_envs, env.num_obs),
            env_state=env_state,
            obs=obs,
            memory=network.initial_carry((num_envs,)),
            first=jnp.ones((num_envs,), jnp.bool_),
            episode_return=jnp.zeros((num_envs,), jnp.float32),
            last_return=jnp.zeros((num_envs,), jnp.float32),
            has_return=flags,
            eval_key=eval_key,
            key=run_key,
        )
        return carry, evaluate(params, eval_key)

    def act_and_store(inner, _):
        carry, step = inner
        key, action_key, coin_key, env_key = jax.random.split(carry.key, 4)
        memory, greedy_action = greedy(carry.params, carry.memory, carry.obs)
        action = loop.explore(config, greedy_action, step, env.num_actions, action_key, coin_key)
        obs, env_state, reward, terminated, truncated, info = env_step(
            jax.random.split(env_key, num_envs), carry.env_state, action
        )
        done = terminated | truncated
        buffer = carry.buffer.add(
            step // num_envs, carry.obs, action, reward, info["final_observation"], terminated,
            done, carry.first,
        )  # fmt: skip
        carry = carry.replace(
            buffer=buffer,
            env_state=env_state,
            obs=obs,
            memory=jnp.where(done[:, None], jnp.zeros_like(memory), memory),
            first=done,
            key=key,
            **loop.episode_returns(carry, reward, done),
        )
        return (carry, step + num_envs), None

    def loss_fn(params, target_params, window: Window):
        zero = network.initial_carry((window.obs.shape[0],))
        carries, q = unroll(network.apply, params, zero, window.obs, window.first)
        q_taken = jnp.take_along_axis(q, window.action[..., None], axis=-1)[..., 0]
        target_carries, _ = unroll(network.apply, target_params, zero, window.obs, window.first)
        _, next_target = network.apply(target_params, target_carries, window.next_obs)
        if config.double_dqn:
            _, next_online = network.apply(params, carries, window.next_obs)
            best = jnp.argmax(next_online, axis=-1)[..., None]
            next_value = jnp.take_along_axis(next_target, best, axis=-1)[..., 0]
        else:
            next_value = next_target.max(axis=-1)
        target = n_step_targets(
            window.reward, window.done, window.terminated, next_value,
            gamma=config.gamma, n_step=config.n_step,
        )  # fmt: skip
        weight = trained_steps(window.first, config.burn_in).astype(jnp.float32)
        losses = optax.huber_loss(q_taken, jax.lax.stop_gradient(target), delta=1.0)
        return (losses * weight).sum() / jnp.maximum(weight.sum(), 1.0)

    def sample(buffer, key, count):
        return buffer.sample(key, count // num_envs, config.batch_size, config.sequence_length)

    learn = loop.make_learn(config, optimizer, loss_fn, sample)
    block = loop.make_block(config, act_and_store, learn)
    run = loop.make_run(config, block, evaluate, lambda carry: (carry, carry.eval_key), on_period)

    def train(key: jax.Array, init: dict[str, Any] | None = None, eval_key=None):
        carry, eval_return0 = begin(key, init, eval_key)
        carry, metrics = run(carry, 0, config.total_steps // config.eval_every)
        return agent_state(carry), join_metrics(eval_return0, metrics)

    return train
