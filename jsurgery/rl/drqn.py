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

from jsurgery.rl.config import DQNConfig
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


def _schedule(config: DQNConfig):
    """``(epsilon(step), rate_scale(step))`` as in :func:`jsurgery.rl.make_dqn`."""

    def epsilon(step):
        if config.exploration_fraction == 0.0:
            return jnp.float32(config.exploration_end)
        progress = step.astype(jnp.float32) / (config.exploration_fraction * config.total_steps)
        progress = jnp.minimum(progress, jnp.float32(1.0))
        start, end = config.exploration_start, config.exploration_end
        return jnp.float32(start) + jnp.float32(end - start) * progress

    def rate_scale(step):
        if config.learning_rate_end is None:
            return jnp.float32(1.0)
        progress = jnp.minimum(step.astype(jnp.float32) / config.total_steps, 1.0)
        return 1.0 + jnp.float32(config.learning_rate_end / config.learning_rate - 1.0) * progress

    return epsilon, rate_scale


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
    network = RecurrentQNetwork.for_config(config, env.num_actions)
    optimizer = make_optimizer(config)
    epsilon, rate_scale = _schedule(config)
    num_envs, num_actions = config.num_envs, env.num_actions
    env_reset, env_step = jax.vmap(env.reset), jax.vmap(env.step)

    def greedy(params, memory, obs):
        memory, q = network.apply(params, memory, obs)
        return memory, jnp.argmax(q, axis=-1).astype(jnp.int32)

    def evaluate(params, key):
        n = config.eval_episodes
        reset_key, run_key = jax.random.split(key)
        obs, state = env_reset(jax.random.split(reset_key, n))

        def step(carry, step_key):
            obs, state, memory, total, alive = carry
            memory, action = greedy(params, memory, obs)
            obs, state, reward, terminated, truncated, _ = env_step(
                jax.random.split(step_key, n), state, action
            )
            total = total + jnp.where(alive, reward, jnp.float32(0.0))
            alive = alive & ~(terminated | truncated)
            return (obs, state, memory, total, alive), None

        start = (obs, state, network.initial_carry((n,)), jnp.zeros((n,), jnp.float32),
                 jnp.ones((n,), jnp.bool_))  # fmt: skip
        (*_, total, _), _ = jax.lax.scan(step, start, jax.random.split(run_key, env.max_steps))
        return total.mean()

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
        key, action_key, explore_key, env_key = jax.random.split(carry.key, 4)
        memory, greedy_action = greedy(carry.params, carry.memory, carry.obs)
        random = jax.random.randint(action_key, (num_envs,), 0, num_actions, jnp.int32)
        explore = jax.random.uniform(explore_key, (num_envs,)) < epsilon(step)
        action = jnp.where(explore, random, greedy_action)
        obs, env_state, reward, terminated, truncated, info = env_step(
            jax.random.split(env_key, num_envs), carry.env_state, action
        )
        done = terminated | truncated
        buffer = carry.buffer.add(
            step // num_envs, carry.obs, action, reward, info["final_observation"], terminated,
            done, carry.first,
        )  # fmt: skip
        episode_return = carry.episode_return + reward
        carry = carry.replace(
            buffer=buffer,
            env_state=env_state,
            obs=obs,
            memory=jnp.where(done[:, None], jnp.zeros_like(memory), memory),
            first=done,
            episode_return=jnp.where(done, jnp.float32(0.0), episode_return),
            last_return=jnp.where(done, episode_return, carry.last_return),
            has_return=carry.has_return | done,
            key=key,
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

    def learn(carry, count):
        key, *step_keys = jax.random.split(carry.key, config.gradient_steps + 1)

        def gradient_step(state, step_key):
            params, opt_state = state
            window = carry.buffer.sample(
                step_key, count // num_envs, config.batch_size, config.sequence_length
            )
            loss, grads = jax.value_and_grad(loss_fn)(params, carry.target_params, window)
            with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts and floats
                updates, opt_state = optimizer.update(grads, opt_state, params)
            updates = jax.tree.map(lambda update: update * rate_scale(count), updates)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            gradient_step, (carry.params, carry.opt_state), jnp.stack(step_keys)
        )
        return carry.replace(params=params, opt_state=opt_state, key=key), losses.mean()

    def block(inner, _):
        carry, step = inner
        (carry, end), _ = jax.lax.scan(act_and_store, (carry, step), None, length=config.train_freq)
        interval = config.target_update_interval
        updates = (end // interval - step // interval).astype(jnp.float32)
        keep = jnp.float32(1.0 - config.tau) ** updates
        target_params = jax.tree.map(
            lambda online, target: keep * target + (1.0 - keep) * online,
            carry.params,
            carry.target_params,
        )
        carry = carry.replace(target_params=target_params)
        carry, loss = jax.lax.cond(
            end > config.learning_starts,
            learn,
            lambda carry, count: (carry, jnp.float32(jnp.nan)),
            carry,
            end,
        )
        finished = carry.has_return.sum()
        curve = {
            "episode_return": jnp.where(carry.has_return, carry.last_return, jnp.float32(0.0)).sum()
            / jnp.maximum(finished, 1).astype(jnp.float32),
            "episode_valid": finished > 0,
            "episode_steps": end,
            "loss": loss,
        }
        return (carry, end), curve

    def period(inner, _):
        carry, step = inner
        blocks = config.eval_every // config.block_steps
        (carry, end), curve = jax.lax.scan(block, (carry, step), None, length=blocks)
        eval_return = evaluate(carry.params, carry.eval_key)
        if on_period is not None:
            jax.debug.callback(on_period, end)
        return (carry, end), {**curve, "eval_return": eval_return}

    def train(key: jax.Array, init: dict[str, Any] | None = None, eval_key=None):
        carry, eval_return0 = begin(key, init, eval_key)
        num_periods = config.total_steps // config.eval_every
        (carry, _), out = jax.lax.scan(period, (carry, jnp.int32(0)), None, length=num_periods)
        metrics = {
            name: out[name].reshape(-1)
            for name in ("episode_return", "episode_valid", "episode_steps", "loss")
        }
        metrics["eval_return"] = out["eval_return"]
        metrics["eval_steps"] = config.eval_every * jnp.arange(1, num_periods + 1, dtype=jnp.int32)
        return agent_state(carry), join_metrics(eval_return0, metrics)

    return train
