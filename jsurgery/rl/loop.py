"""The training loop of a DQN agent, written once for the feed-forward and the recurrent agent.

:mod:`jsurgery.rl.dqn` and :mod:`jsurgery.rl.drqn` differ in their network, replay buffer and loss;
around those the loop is the same. A run scans over evaluation periods, a period over blocks, and a
block runs ``train_freq`` iterations of acting (epsilon-greedy, with :func:`exploration_rate`),
then the target updates due in them, then a training phase of ``gradient_steps`` gradient steps
(with the step size scaled by :func:`step_size_scale`) once past ``learning_starts``.

The agent's per-seed state (its *carry*) is a ``flax.struct`` dataclass with at least the fields
``params``, ``target_params``, ``opt_state``, ``buffer``, ``episode_return``, ``last_return``,
``has_return`` and ``key``. The step counter is carried beside it, not in it, so under ``vmap`` it
stays one scalar shared by all seeds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jsurgery.rl.config import DQNConfig
from jsurgery.rl.environments import IdEnv

__all__ = [
    "block_curve",
    "episode_returns",
    "explore",
    "exploration_rate",
    "make_block",
    "make_blocks",
    "make_end_period",
    "make_evaluate",
    "make_learn",
    "make_run",
    "step_size_scale",
    "update_target",
]

CURVES = ("episode_return", "episode_valid", "episode_steps", "loss")


def exploration_rate(config: DQNConfig, step: jax.Array) -> jax.Array:
    """Epsilon at environment step ``step``: ``exploration_start`` falling linearly to
    ``exploration_end`` over the first ``exploration_fraction`` of the run."""
    if config.exploration_fraction == 0.0:
        return jnp.float32(config.exploration_end)
    progress = step.astype(jnp.float32) / (config.exploration_fraction * config.total_steps)
    progress = jnp.minimum(progress, jnp.float32(1.0))
    start, end = config.exploration_start, config.exploration_end
    return jnp.float32(start) + jnp.float32(end - start) * progress


def step_size_scale(config: DQNConfig, step: jax.Array) -> jax.Array:
    """The step size at environment step ``step`` as a fraction of ``learning_rate``: 1, or falling
    linearly to ``learning_rate_end / learning_rate`` at ``total_steps``.

    Counted by environment steps, not by the optimizer's own count, which a transplanted optimizer
    state carries over.
    """
    if config.learning_rate_end is None:
        return jnp.float32(1.0)
    progress = step.astype(jnp.float32) / config.total_steps
    end = config.learning_rate_end / config.learning_rate
    return jnp.float32(1.0) + jnp.float32(end - 1.0) * jnp.minimum(progress, 1.0)


def explore(
    config: DQNConfig, greedy: jax.Array, step: jax.Array, num_actions: int, action_key, coin_key
) -> jax.Array:
    """``greedy`` (one action per environment), each replaced with probability
    :func:`exploration_rate` by an action drawn uniformly with ``action_key``."""
    random = jax.random.randint(action_key, greedy.shape, 0, num_actions, jnp.int32)
    chosen = jax.random.uniform(coin_key, greedy.shape) < exploration_rate(config, step)
    return jnp.where(chosen, random, greedy)


def episode_returns(carry: Any, reward: jax.Array, done: jax.Array) -> dict[str, jax.Array]:
    """The fields ``episode_return``, ``last_return`` and ``has_return`` of ``carry`` after a step
    that earned ``reward`` and ended the episodes where ``done``."""
    episode_return = carry.episode_return + reward
    return {
        "episode_return": jnp.where(done, jnp.float32(0.0), episode_return),
        "last_return": jnp.where(done, episode_return, carry.last_return),
        "has_return": carry.has_return | done,
    }


def make_evaluate(
    config: DQNConfig, env: IdEnv, greedy: Callable, initial_memory: Callable
) -> Callable:
    """``evaluate(params, key) -> mean greedy return`` over ``config.eval_episodes`` episodes of
    ``env``, each cut at ``env.max_steps`` steps.

    ``greedy(params, memory, obs) -> (memory, action)`` acts in all episodes at once, starting
    from ``initial_memory((n,))`` for ``n`` episodes (``()`` for a network without a state).
    """
    env_reset, env_step = jax.vmap(env.reset), jax.vmap(env.step)

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

        total, alive = jnp.zeros((n,), jnp.float32), jnp.ones((n,), jnp.bool_)
        start = (obs, state, initial_memory((n,)), total, alive)
        (*_, total, _), _ = jax.lax.scan(step, start, jax.random.split(run_key, env.max_steps))
        return total.mean()

    return evaluate


def make_learn(
    config: DQNConfig,
    optimizer: optax.GradientTransformation,
    loss_fn: Callable,
    sample: Callable,
) -> Callable:
    """The training phase: ``learn(carry, count) -> (carry, mean loss)``.

    Takes ``config.gradient_steps`` steps of ``optimizer`` on ``loss_fn(params, target_params,
    batch)``, each on a fresh ``sample(buffer, key, count)`` (``count``: environment steps so far),
    with the updates scaled by :func:`step_size_scale`.
    """

    def learn(carry, count):
        key, *step_keys = jax.random.split(carry.key, config.gradient_steps + 1)
        scale = step_size_scale(config, count)

        def gradient_step(state, step_key):
            params, opt_state = state
            batch = sample(carry.buffer, step_key, count)
            loss, grads = jax.value_and_grad(loss_fn)(params, carry.target_params, batch)
            with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts and floats
                updates, opt_state = optimizer.update(grads, opt_state, params)
            updates = jax.tree.map(lambda update: update * scale, updates)
            return (optax.apply_updates(params, updates), opt_state), loss

        (params, opt_state), losses = jax.lax.scan(
            gradient_step, (carry.params, carry.opt_state), jnp.stack(step_keys)
        )
        return carry.replace(params=params, opt_state=opt_state, key=key), losses.mean()

    return learn


def update_target(config: DQNConfig, carry: Any, step: jax.Array, end: jax.Array) -> Any:
    """``carry`` with the target updates due between steps ``step`` and ``end`` applied.

    They all see the same online network (it only changes in training phases), so ``k`` updates
    of rate ``tau`` fold into one of rate ``1 - (1 - tau) ** k``.
    """
    interval = config.target_update_interval
    updates = (end // interval - step // interval).astype(jnp.float32)
    keep = jnp.float32(1.0 - config.tau) ** updates
    target_params = jax.tree.map(
        lambda online, target: keep * target + (1.0 - keep) * online,
        carry.params,
        carry.target_params,
    )
    return carry.replace(target_params=target_params)


def block_curve(carry: Any, end: jax.Array, loss: jax.Array) -> dict[str, jax.Array]:
    """One learning-curve point: the mean over environments of their last finished episode's
    return, whether any has finished, the step count and the training phase's mean loss."""
    finished = carry.has_return.sum()
    return {
        "episode_return": jnp.where(carry.has_return, carry.last_return, jnp.float32(0.0)).sum()
        / jnp.maximum(finished, 1).astype(jnp.float32),
        "episode_valid": finished > 0,
        "episode_steps": end,
        "loss": loss,
    }


def _no_training(carry: Any, count: jax.Array) -> tuple[Any, jax.Array]:
    return carry, jnp.float32(jnp.nan)


def make_block(config: DQNConfig, act_and_store: Callable, learn: Callable) -> Callable:
    """One block as a ``lax.scan`` body: ``block((carry, step), _) -> ((carry, end), curve)``.

    ``act_and_store((carry, step), _) -> ((carry, step + num_envs), _)`` runs ``train_freq``
    times, then :func:`update_target`, then ``learn`` (from :func:`make_learn`) if more than
    ``learning_starts`` steps are done (else the loss is NaN); ``curve`` is :func:`block_curve`.
    """

    def block(inner, _):
        carry, step = inner
        (carry, end), _ = jax.lax.scan(act_and_store, (carry, step), None, length=config.train_freq)
        carry = update_target(config, carry, step, end)
        carry, loss = jax.lax.cond(end > config.learning_starts, learn, _no_training, carry, end)
        return (carry, end), block_curve(carry, end, loss)

    return block


def make_blocks(block: Callable) -> Callable:
    """``run_blocks(carry, first_step, num_blocks) -> (carry, curves)``: ``num_blocks`` blocks
    (from :func:`make_block`) from step ``first_step`` (an unbatched integer); ``curves`` holds one
    :func:`block_curve` point per block."""

    def run_blocks(carry, first_step, num_blocks):
        first_step = jnp.asarray(first_step, jnp.int32)
        (carry, _), curves = jax.lax.scan(block, (carry, first_step), None, length=num_blocks)
        return carry, curves

    return run_blocks


def make_end_period(evaluate: Callable, eval_key: Callable) -> Callable:
    """``end_period(carry) -> (carry, eval_return)``: the greedy evaluation that ends a period,
    with ``evaluate(params, key)`` and the key from ``eval_key(carry) -> (carry, key)``."""

    def end_period(carry):
        carry, key = eval_key(carry)
        return carry, evaluate(carry.params, key)

    return end_period


def make_run(
    config: DQNConfig,
    block: Callable,
    evaluate: Callable,
    eval_key: Callable,
    on_period: Callable[[Any], None] | None = None,
) -> Callable:
    """``run(carry, first_step, num_periods) -> (carry, metrics)``: ``num_periods`` evaluation
    periods from step ``first_step`` (an unbatched integer).

    A period runs ``eval_every`` steps of ``block`` (from :func:`make_block`, through
    :func:`make_blocks`), then greedily evaluates with ``evaluate(params, key)``, the key from
    ``eval_key(carry) -> (carry, key)`` (:func:`make_end_period`), and calls ``on_period`` (if
    given) on the host with the step count. ``metrics`` holds the block curves, flattened, and
    ``eval_return`` at ``eval_steps``.
    """
    blocks_per_period = config.eval_every // config.block_steps
    run_blocks = make_blocks(block)
    end_period = make_end_period(evaluate, eval_key)

    def period(inner, _):
        carry, step = inner
        carry, curve = run_blocks(carry, step, blocks_per_period)
        end = step + config.eval_every
        carry, eval_return = end_period(carry)
        if on_period is not None:
            # `end` is shared by all seeds, so under vmap the host sees one call per period.
            jax.debug.callback(on_period, end)
        return (carry, end), {**curve, "eval_return": eval_return}

    def run(carry, first_step, num_periods):
        first_step = jnp.asarray(first_step, jnp.int32)
        (carry, _), out = jax.lax.scan(period, (carry, first_step), None, length=num_periods)
        metrics = {name: out[name].reshape(-1) for name in CURVES}
        metrics["eval_return"] = out["eval_return"]
        metrics["eval_steps"] = first_step + config.eval_every * jnp.arange(
            1, num_periods + 1, dtype=jnp.int32
        )
        return carry, metrics

    return run
