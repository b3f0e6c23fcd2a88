"""PPO's learning step as pure functions: policy distributions, GAE, the clipped loss, and the
epochs of minibatch updates on one rollout."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jsurgery.rl.ppo_config import PPOConfig

__all__ = [
    "Rollout",
    "entropy",
    "gae",
    "log_prob",
    "make_optimizer",
    "make_update",
    "ppo_loss",
    "sample_action",
    "shuffled_order",
]

LOG_2PI = float(jnp.log(2.0 * jnp.pi))


@struct.dataclass
class Rollout:
    """One iteration's transitions, each field ``(num_steps, num_envs, ...)``; ``advantage`` and
    ``target`` are filled in by GAE."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target: jax.Array


def make_optimizer(config: PPOConfig) -> optax.GradientTransformation:
    """Adam (eps 1e-5, as cleanrl and purejaxrl) after clipping gradients to
    ``config.max_grad_norm`` global norm."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm),
        optax.adam(config.learning_rate, eps=1e-5),
    )


def log_prob(policy: jax.Array, log_std: jax.Array | None, action: jax.Array) -> jax.Array:
    """Log-probability of ``action`` under the policy: categorical over ``policy`` logits when
    ``log_std`` is None, else a diagonal Gaussian of mean ``policy`` (summed over dimensions)."""
    if log_std is None:
        log_probs = jax.nn.log_softmax(policy)
        return jnp.take_along_axis(log_probs, action[..., None], axis=-1)[..., 0]
    z = (action - policy) * jnp.exp(-log_std)
    return (-0.5 * z**2 - log_std - 0.5 * LOG_2PI).sum(axis=-1)


def entropy(policy: jax.Array, log_std: jax.Array | None) -> jax.Array:
    """Entropy of the policy per observation (see :func:`log_prob`)."""
    if log_std is None:
        log_probs = jax.nn.log_softmax(policy)
        return -(jnp.exp(log_probs) * log_probs).sum(axis=-1)
    per_dim = log_std + 0.5 * (1.0 + LOG_2PI)
    return jnp.broadcast_to(per_dim.sum(), policy.shape[:-1])


def sample_action(key: jax.Array, policy: jax.Array, log_std: jax.Array | None) -> jax.Array:
    """An action drawn from the policy (see :func:`log_prob`)."""
    if log_std is None:
        return jax.random.categorical(key, policy).astype(jnp.int32)
    return policy + jnp.exp(log_std) * jax.random.normal(key, policy.shape, policy.dtype)


MOST_PACKED = 1024


def shuffled_order(key: jax.Array, size: int) -> jax.Array:
    """A random permutation of ``range(size)``, as ``jax.random.permutation`` draws one.

    Up to :data:`MOST_PACKED` items, each index is packed into the low bits of a random 32-bit
    word and the words are sorted alone: XLA's CPU runtime sorts one array of integers several
    times faster than a key array with a value array beside it. Two words that share their random
    high bits (22 or more of them; for 500 items, some pair shares them with probability 1.5% per
    permutation) keep their indices' order, a bias far below anything a minibatch split can show.
    Larger sizes use ``jax.random.permutation``.

    Example:
        >>> sorted(shuffled_order(jax.random.PRNGKey(0), 5).tolist())
        [0, 1, 2, 3, 4]
    """
    if size > MOST_PACKED:
        return jax.random.permutation(key, size)
    index_bits = max(1, (size - 1).bit_length())
    high = jnp.uint32((0xFFFFFFFF >> index_bits) << index_bits)
    words = jax.random.bits(key, (size,), jnp.uint32) & high
    words = jnp.sort(words | jnp.arange(size, dtype=jnp.uint32))
    return (words & ~high).astype(jnp.int32)


def gae(
    reward: jax.Array,
    value: jax.Array,
    done: jax.Array,
    last_value: jax.Array,
    gamma: float,
    gae_lambda: float,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and value targets of one rollout.

    Args:
        reward: ``(T, ...)`` rewards (a truncated step's reward already includes
            ``gamma * V(final observation)``, so that the time limit is bootstrapped through).
        value: ``(T, ...)`` value estimates of the observations the rewards followed.
        done: ``(T, ...)`` whether each step ended its episode (terminated or truncated); no value
            flows back across such a step.
        last_value: ``(...)`` value of the observation after the last step.
        gamma: discount.
        gae_lambda: the GAE lambda.

    Returns:
        ``(advantage, target)``, both ``(T, ...)``, with ``target = advantage + value``.

    Example:
        >>> a, t = gae(jnp.ones(2), jnp.zeros(2), jnp.zeros(2, bool), jnp.float32(0.0), 0.5, 1.0)
        >>> a.tolist()
        [1.5, 1.0]
    """
    keep = 1.0 - done.astype(value.dtype)
    next_value = jnp.concatenate([value[1:], last_value[None]])
    delta = reward + gamma * next_value * keep - value

    def back(advantage, step):
        delta_t, keep_t = step
        advantage = delta_t + gamma * gae_lambda * keep_t * advantage
        return advantage, advantage

    _, advantage = jax.lax.scan(back, jnp.zeros_like(last_value), (delta, keep), reverse=True)
    return advantage, advantage + value


def ppo_loss(
    config: PPOConfig, apply: Callable, params: Any, batch: Rollout
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The clipped PPO objective on a minibatch, to minimise.

    ``apply(params, obs) -> (policy, value, log_std or None)``. Advantages are normalised over the
    minibatch; the loss is ``policy_loss + vf_coef * value_loss - ent_coef * entropy``.
    """
    policy, value, log_std = apply(params, batch.obs)
    ratio = jnp.exp(log_prob(policy, log_std, batch.action) - batch.log_prob)
    advantage = (batch.advantage - batch.advantage.mean()) / (batch.advantage.std() + 1e-8)
    clipped = jnp.clip(ratio, 1.0 - config.clip_eps, 1.0 + config.clip_eps)
    policy_loss = -jnp.minimum(ratio * advantage, clipped * advantage).mean()
    value_loss = (value - batch.target) ** 2
    if config.clip_value:
        moved = batch.value + jnp.clip(value - batch.value, -config.clip_eps, config.clip_eps)
        value_loss = jnp.maximum(value_loss, (moved - batch.target) ** 2)
    value_loss = 0.5 * value_loss.mean()
    mean_entropy = entropy(policy, log_std).mean()
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * mean_entropy
    return loss, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": mean_entropy}


def make_update(
    config: PPOConfig, optimizer: optax.GradientTransformation, apply: Callable
) -> Callable:
    """``update(params, opt_state, rollout, key, scale) -> (params, opt_state, losses)``:
    ``num_epochs`` passes over the flattened rollout in shuffled minibatches, one optimizer step
    on :func:`ppo_loss` each, the updates multiplied by ``scale`` (the step-size schedule).
    ``losses`` holds the mean total loss and its parts."""
    grad_fn = jax.value_and_grad(lambda p, b: ppo_loss(config, apply, p, b), has_aux=True)

    def minibatch_step(state, batch):
        params, opt_state, scale = state
        (loss, parts), grads = grad_fn(params, batch)
        with jax.numpy_dtype_promotion("standard"):  # optax mixes int32 counts and floats
            updates, opt_state = optimizer.update(grads, opt_state, params)
        updates = jax.tree.map(lambda update: update * scale, updates)
        return (optax.apply_updates(params, updates), opt_state, scale), {"loss": loss, **parts}

    def epoch(state, key):
        params, opt_state, scale, flat = state
        order = shuffled_order(key, config.batch_steps)
        minibatches = jax.tree.map(
            lambda leaf: leaf[order].reshape(config.num_minibatches, -1, *leaf.shape[1:]), flat
        )
        (params, opt_state, scale), losses = jax.lax.scan(
            minibatch_step, (params, opt_state, scale), minibatches
        )
        return (params, opt_state, scale, flat), losses

    def update(params, opt_state, rollout, key, scale):
        flat = jax.tree.map(lambda leaf: leaf.reshape(config.batch_steps, *leaf.shape[2:]), rollout)
        (params, opt_state, _, _), losses = jax.lax.scan(
            epoch, (params, opt_state, scale, flat), jax.random.split(key, config.num_epochs)
        )
        return params, opt_state, jax.tree.map(jnp.mean, losses)

    return update
