"""PPO as pure functions of arrays: ``make_train(config, env) -> train(key, init=None)``.

A whole run is one ``lax.scan`` over evaluation periods; each period scans over iterations, and an
iteration collects a rollout (a ``lax.scan`` of ``num_steps`` steps of ``num_envs``
environments), computes GAE advantages and takes ``num_epochs`` passes of minibatch updates
(:mod:`jsurgery.rl.ppo_update`). ``jax.jit(jax.vmap(train))(keys)`` trains one seed per key in a
single compiled call, as the DQN does (:mod:`jsurgery.rl.dqn`), and the evaluation periods, the
step-size schedule and the learning curves are the DQN's (:mod:`jsurgery.rl.loop`).

Episodes cut by the time limit are bootstrapped through: a truncated step's reward gets
``gamma * V(final observation)`` added, from ``info["final_observation"]``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jsurgery.rl import loop
from jsurgery.rl.actor_critic import ActorCritic
from jsurgery.rl.dqn import check_init, join_metrics
from jsurgery.rl.environments import IdEnv, make_env
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.ppo_update import (
    Rollout,
    gae,
    log_prob,
    make_optimizer,
    make_update,
    sample_action,
)

__all__ = ["PPOCarry", "PPOParts", "agent_state", "make_ppo", "make_train"]

INIT_KEYS = ("params", "opt_state")


@struct.dataclass
class PPOCarry:
    """The per-seed state carried through a run."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array  # (num_envs, num_obs)
    episode_return: jax.Array  # running return of the current episode, per environment
    last_return: jax.Array  # return of the last finished episode, per environment
    has_return: jax.Array  # whether an episode has finished yet, per environment
    key: jax.Array


@struct.dataclass
class Transition:
    """One step of all environments, as the rollout records it."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array  # terminated or truncated
    cut: jax.Array  # truncated by the time limit without terminating
    final_obs: jax.Array


@dataclasses.dataclass(frozen=True)
class PPOParts:
    """The pieces of a run, each a pure function of one seed's arrays.

    Attributes:
        begin: ``(key, init) -> (carry, eval_return)``: initial state and greedy return at step 0.
        run: ``(carry, first_step, num_periods) -> (carry, metrics)``: ``num_periods`` evaluation
            periods starting at step ``first_step`` (an unbatched integer).
        evaluate: ``(params, key) -> mean greedy return`` over ``config.eval_episodes`` episodes.
        blocks: ``(carry, first_step, num_blocks) -> (carry, curves)``: ``num_blocks``
            iterations, a part of a period (``run`` is made of these and ``end_period``).
        end_period: ``carry -> (carry, eval_return)``: the greedy evaluation ending a period.
        collect: ``(carry, first_step) -> (carry, end_step, transitions)``: one iteration's
            rollout, ``num_steps`` steps of all ``num_envs`` environments.
        advantages: ``(params, transitions, last_obs) -> Rollout``: GAE on a rollout.
        update: ``(params, opt_state, rollout, key, scale) -> (params, opt_state, losses)``: the
            epochs of minibatch updates (:func:`~jsurgery.rl.ppo_update.make_update`).
        apply: ``(params, obs) -> (policy, value, log_std or None)``.
        network: the :class:`ActorCritic`.
        optimizer: the optax transformation.
    """

    config: PPOConfig
    env: IdEnv
    network: ActorCritic
    optimizer: optax.GradientTransformation
    begin: Callable
    run: Callable
    evaluate: Callable
    blocks: Callable
    end_period: Callable
    collect: Callable
    advantages: Callable
    update: Callable
    apply: Callable

    @property
    def num_periods(self) -> int:
        return self.config.total_steps // self.config.eval_every


def make_apply(network: ActorCritic) -> Callable:
    """``apply(params, obs) -> (policy, value, log_std or None)`` for ``network``."""

    def apply(params, obs):
        policy, value = network.apply(params, obs)
        log_std = params["params"]["log_std"] if network.continuous else None
        return policy, value, log_std

    return apply


def make_ppo(
    config: PPOConfig, env: IdEnv | str, on_period: Callable[[Any], None] | None = None
) -> PPOParts:
    """The functions of a PPO run on ``env`` (an :class:`IdEnv` or an environment ID).

    ``on_period``, if given, is called on the host with the step count after every evaluation
    period (through ``jax.debug.callback``), to show progress inside one compiled call.
    """
    if isinstance(env, str):
        env = make_env(env)
    network = ActorCritic.for_config(config, env.num_actions, env.continuous)
    optimizer = make_optimizer(config)
    apply = make_apply(network)
    update = make_update(config, optimizer, apply)
    num_envs = config.num_envs
    env_reset = jax.vmap(env.reset)
    env_step = jax.vmap(env.step)

    def greedy(params, memory, obs):
        policy, _, _ = apply(params, obs)
        if env.continuous:
            return memory, policy
        return memory, jnp.argmax(policy, axis=-1).astype(jnp.int32)

    evaluate = loop.make_evaluate(config, env, greedy, initial_memory=lambda shape: ())

    def begin(key, init=None):
        net_key, env_key, eval_key, run_key = jax.random.split(key, 4)
        params = network.init(net_key, jnp.zeros((1, env.num_obs), jnp.float32))
        given = check_init(init, params, INIT_KEYS)
        params = given.get("params", params)
        opt_state = given["opt_state"] if "opt_state" in given else optimizer.init(params)
        obs, env_state = env_reset(jax.random.split(env_key, num_envs))
        carry = PPOCarry(
            params=params,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            episode_return=jnp.zeros((num_envs,), jnp.float32),
            last_return=jnp.zeros((num_envs,), jnp.float32),
            has_return=jnp.zeros((num_envs,), jnp.bool_),
            key=run_key,
        )
        return carry, evaluate(params, eval_key)

    def act(inner, _):
        carry, step = inner
        key, action_key, env_key = jax.random.split(carry.key, 3)
        policy, value, log_std = apply(carry.params, carry.obs)
        action = sample_action(action_key, policy, log_std)
        obs, env_state, reward, terminated, truncated, info = env_step(
            jax.random.split(env_key, num_envs), carry.env_state, action
        )
        done = terminated | truncated
        transition = Transition(
            obs=carry.obs,
            action=action,
            log_prob=log_prob(policy, log_std, action),
            value=value,
            reward=reward,
            done=done,
            cut=truncated & ~terminated,
            final_obs=info["final_observation"],
        )
        carry = carry.replace(
            env_state=env_state, obs=obs, key=key, **loop.episode_returns(carry, reward, done)
        )
        return (carry, step + num_envs), transition

    def collect(carry, step):
        (carry, end), steps = jax.lax.scan(act, (carry, step), None, length=config.num_steps)
        return carry, end, steps

    def value(params, obs):
        return network.apply(params, obs, method=ActorCritic.value)

    def advantages(params, steps: Transition, last_obs) -> Rollout:
        last_value = value(params, last_obs)
        final_value = value(params, steps.final_obs)
        reward = config.reward_scale * steps.reward
        reward = reward + config.gamma * jnp.where(steps.cut, final_value, jnp.float32(0.0))
        advantage, target = gae(
            reward, steps.value, steps.done, last_value, config.gamma, config.gae_lambda
        )
        return Rollout(steps.obs, steps.action, steps.log_prob, steps.value, advantage, target)

    def iteration(inner, _):
        carry, step = inner
        carry, end, steps = collect(carry, step)
        rollout = advantages(carry.params, steps, carry.obs)
        key, update_key = jax.random.split(carry.key)
        scale = loop.step_size_scale(config, step)
        params, opt_state, losses = update(
            carry.params, carry.opt_state, rollout, update_key, scale
        )
        carry = carry.replace(params=params, opt_state=opt_state, key=key)
        return (carry, end), loop.block_curve(carry, end, losses["loss"])

    def next_eval_key(carry):
        key, eval_key = jax.random.split(carry.key)
        return carry.replace(key=key), eval_key

    run = loop.make_run(config, iteration, evaluate, next_eval_key, on_period)
    blocks = loop.make_blocks(iteration)
    end_period = loop.make_end_period(evaluate, next_eval_key)
    return PPOParts(
        config, env, network, optimizer, begin, run, evaluate, blocks, end_period, collect,
        advantages, update, apply,
    )  # fmt: skip


def after(value: jax.Array, carry: PPOCarry) -> PPOCarry:
    """``carry`` unchanged, but made to depend on ``value`` (a finite return).

    The step-0 evaluation and the training loop are otherwise independent loops in one compiled
    call, which XLA's CPU runtime may run concurrently, and with the concurrency-optimised
    scheduler (jaxlib 0.10) such a vmapped pair of loops can deadlock; the dependency orders them.
    """
    bumped = jax.random.fold_in(carry.key, 1)
    return carry.replace(key=jnp.where(jnp.isinf(value), bumped, carry.key))


def agent_state(carry: PPOCarry) -> dict[str, Any]:
    """The trainable state of a run, in the form ``train`` accepts as ``init``."""
    return {"params": carry.params, "opt_state": carry.opt_state}


def make_train(
    config: PPOConfig,
    env: IdEnv | str = "CartPole-v1",
    on_period: Callable[[Any], None] | None = None,
) -> Callable:
    """A function training one PPO agent from a key, as a single ``lax.scan``.

    Args:
        config: the run's :class:`PPOConfig`.
        env: an :class:`IdEnv` from :func:`make_env` (choosing observation and action IDs), or an
            environment ID for the full environment; discrete or continuous actions.
        on_period: optional host function called with the step count after every evaluation
            period, for progress reports from inside the compiled run.

    Returns:
        ``train(key, init=None) -> (state, metrics)``. ``init`` optionally holds ``"params"`` (the
        :class:`ActorCritic`'s ``{"params": {"actor": ..., "critic": ...}}``) and ``"opt_state"``
        (default: fresh), so a transplanted network continues training; ``state`` has the same
        keys. ``metrics`` holds ``episode_return`` ``(num_blocks,)``, the return of the last
        finished episode (mean over environments) after each iteration, with ``episode_valid``,
        ``episode_steps`` and ``loss`` (the iteration's mean PPO loss); and ``eval_return``
        ``(num_evals,)``, the mean greedy return over ``eval_episodes`` episodes at ``eval_steps``
        = 0, eval_every, ..., total_steps, as the DQN's ``make_train`` returns them.

        ``jax.jit(jax.vmap(train))(keys, init)`` trains one seed per key; the leaves of ``init``
        then carry a leading seed axis.

    Example:
        >>> config = PPOConfig(hidden=(8,), num_envs=2, num_steps=16, num_minibatches=2,
        ...                    total_steps=64, eval_every=32, eval_episodes=2)
        >>> state, metrics = jax.jit(make_train(config, "CartPole-v1"))(jax.random.PRNGKey(0))
        >>> metrics["eval_return"].shape, metrics["episode_return"].shape
        ((3,), (2,))
    """
    parts = make_ppo(config, env, on_period)

    def train(key: jax.Array, init: dict[str, Any] | None = None):
        carry, eval_return0 = parts.begin(key, init)
        carry, metrics = parts.run(after(eval_return0, carry), 0, parts.num_periods)
        return agent_state(carry), join_metrics(eval_return0, metrics)

    return train
