"""DQN as pure functions of arrays: ``make_train(config, env) -> train(key, init=None)``.

A whole run is one ``lax.scan`` over evaluation periods; each period scans over blocks of
``train_freq`` iterations followed by a training phase (the loop of :mod:`jsurgery.rl.loop`).
``jax.jit(jax.vmap(train))(keys)`` trains one seed per key in a single compiled call. The step
counter lives outside the per-seed state, so under ``vmap`` it stays one scalar shared by all seeds
and the ``lax.cond`` that skips training before ``learning_starts`` stays a real branch rather than
computing both sides.
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
from jsurgery.rl.buffer import ReplayBuffer
from jsurgery.rl.config import DQNConfig
from jsurgery.rl.environments import IdEnv, make_env
from jsurgery.rl.networks import QNetwork

__all__ = ["Carry", "DQNParts", "make_dqn", "make_optimizer", "make_train"]

INIT_KEYS = ("params", "target_params", "opt_state")


@struct.dataclass
class Carry:
    """The per-seed state carried through a run."""

    params: Any
    target_params: Any
    opt_state: Any
    buffer: ReplayBuffer
    env_state: Any
    obs: jax.Array  # (num_envs, num_obs)
    episode_return: jax.Array  # running return of the current episode, per environment
    last_return: jax.Array  # return of the last finished episode, per environment
    has_return: jax.Array  # whether an episode has finished yet, per environment
    key: jax.Array


def make_optimizer(config: DQNConfig) -> optax.GradientTransformation:
    """Adam after clipping gradients to ``config.max_grad_norm`` global norm."""
    return optax.chain(
        optax.clip_by_global_norm(config.max_grad_norm), optax.adam(config.learning_rate)
    )


@dataclasses.dataclass(frozen=True)
class DQNParts:
    """The pieces of a run, each a pure function of one seed's arrays.

    Attributes:
        begin: ``(key, init) -> (carry, eval_return)``: initial state and greedy return at step 0.
        run: ``(carry, first_step, num_periods) -> (carry, metrics)``: ``num_periods`` evaluation
            periods starting at step ``first_step`` (an unbatched integer).
        evaluate: ``(params, key) -> mean greedy return`` over ``config.eval_episodes`` episodes.
        blocks: ``(carry, first_step, num_blocks) -> (carry, curves)``: ``num_blocks`` blocks, a
            part of a period (``run`` is made of these and ``end_period``).
        end_period: ``carry -> (carry, eval_return)``: the greedy evaluation ending a period.
        network: the :class:`QNetwork`.
        optimizer: the optax transformation.
    """

    config: DQNConfig
    env: IdEnv
    network: QNetwork
    optimizer: optax.GradientTransformation
    begin: Callable
    run: Callable
    evaluate: Callable
    blocks: Callable
    end_period: Callable

    @property
    def num_periods(self) -> int:
        return self.config.total_steps // self.config.eval_every


def check_init(init: Any, template: Any, keys: tuple[str, ...] = INIT_KEYS) -> dict[str, Any]:
    """The parts of `init` (among `keys`: params, target params, optimizer state) checked
    against the template's structure and shapes; {} for None. PPO passes its own `keys`."""
    if init is None:
        return {}
    if not isinstance(init, dict):
        raise ValueError(
            f"`init`: expected a dict with keys among {list(keys)}, got {type(init).__name__}"
        )
    unknown = sorted(set(init) - set(keys))
    if unknown:
        raise ValueError(f"`init`: unknown keys {unknown}; allowed keys are {list(keys)}")
    for name in ("params", "target_params"):
        if name not in init:
            continue
        want = jax.tree.map(lambda leaf: leaf.shape, template)
        got = jax.tree.map(lambda leaf: jnp.shape(leaf), init[name])
        if jax.tree.structure(want) != jax.tree.structure(got) or want != got:
            raise ValueError(
                f"`init[{name!r}]`: parameter shapes {got} do not match the network's {want}; "
                "check `hidden` and the environment's obs/action IDs"
            )
    return dict(init)


def make_dqn(
    config: DQNConfig, env: IdEnv | str, on_period: Callable[[Any], None] | None = None
) -> DQNParts:
    """The functions of a DQN run on ``env`` (an :class:`IdEnv` or an environment ID).

    ``on_period``, if given, is called on the host with the step count after every evaluation
    period (through ``jax.debug.callback``), to show progress inside one compiled call.
    """
    if isinstance(env, str):
        env = make_env(env)
    env.require_discrete("a DQN")
    network = QNetwork.for_config(config, env.num_actions)
    optimizer = make_optimizer(config)
    num_envs = config.num_envs
    env_reset = jax.vmap(env.reset)
    env_step = jax.vmap(env.step)

    def q_values(params, obs):
        return network.apply(params, obs)

    def greedy(params, memory, obs):
        return memory, jnp.argmax(q_values(params, obs), axis=-1).astype(jnp.int32)

    evaluate = loop.make_evaluate(config, env, greedy, initial_memory=lambda shape: ())

    def begin(key, init=None):
        net_key, env_key, eval_key, run_key = jax.random.split(key, 4)
        params = network.init(net_key, jnp.zeros((1, env.num_obs), jnp.float32))
        given = check_init(init, params)
        params = given.get("params", params)
        target_params = given.get("target_params", params)
        opt_state = given["opt_state"] if "opt_state" in given else optimizer.init(params)
        obs, env_state = env_reset(jax.random.split(env_key, num_envs))
        carry = Carry(
            params=params,
            target_params=target_params,
            opt_state=opt_state,
            buffer=ReplayBuffer.create(config.buffer_size, env.num_obs),
            env_state=env_state,
            obs=obs,
            episode_return=jnp.zeros((num_envs,), jnp.float32),
            last_return=jnp.zeros((num_envs,), jnp.float32),
            has_return=jnp.zeros((num_envs,), jnp.bool_),
            key=run_key,
        )
        return carry, evaluate(params, eval_key)

    def act_and_store(inner, _):
        carry, step = inner
        key, action_key, coin_key, env_key = jax.random.split(carry.key, 4)
        _, greedy_action = greedy(carry.params, (), carry.obs)
        action = loop.explore(config, greedy_action, step, env.num_actions, action_key, coin_key)
        obs, env_state, reward, terminated, truncated, info = env_step(
            jax.random.split(env_key, num_envs), carry.env_state, action
        )
        # The next observation of a finished episode is the one it ended on, not the reset one;
        # only termination cuts the bootstrap, truncation by the time limit does not.
        done = terminated | truncated
        buffer = carry.buffer.add(
            step, carry.obs, action, reward, info["final_observation"], terminated, done
        )
        carry = carry.replace(
            buffer=buffer,
            env_state=env_state,
            obs=obs,
            key=key,
            **loop.episode_returns(carry, reward, done),
        )
        return (carry, step + num_envs), None

    def loss_fn(params, target_params, batch):
        q = q_values(params, batch.obs)
        q_taken = jnp.take_along_axis(q, batch.action[:, None], axis=-1)[:, 0]
        next_target = q_values(target_params, batch.next_obs)
        if config.double_dqn:
            next_action = jnp.argmax(q_values(params, batch.next_obs), axis=-1)
            next_q = jnp.take_along_axis(next_target, next_action[:, None], axis=-1)[:, 0]
        else:
            next_q = next_target.max(axis=-1)
        target = batch.reward + batch.discount * next_q
        return optax.huber_loss(q_taken, jax.lax.stop_gradient(target), delta=1.0).mean()

    def sample(buffer, key, count):
        return buffer.sample_returns(
            key, count, config.batch_size, gamma=config.gamma, n_step=config.n_step, stride=num_envs
        )

    def next_eval_key(carry):
        key, eval_key = jax.random.split(carry.key)
        return carry.replace(key=key), eval_key

    learn = loop.make_learn(config, optimizer, loss_fn, sample)
    block = loop.make_block(config, act_and_store, learn)
    run = loop.make_run(config, block, evaluate, next_eval_key, on_period)
    blocks = loop.make_blocks(block)
    end_period = loop.make_end_period(evaluate, next_eval_key)
    return DQNParts(config, env, network, optimizer, begin, run, evaluate, blocks, end_period)


def agent_state(carry: Carry) -> dict[str, Any]:
    """The trainable state of a run, in the form ``train`` accepts as ``init``."""
    return {
        "params": carry.params,
        "target_params": carry.target_params,
        "opt_state": carry.opt_state,
    }


def join_metrics(eval_return0: jax.Array, metrics: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Prepend the step-0 evaluation to the evaluations of a run."""
    metrics = dict(metrics)
    metrics["eval_return"] = jnp.concatenate([eval_return0[None], metrics["eval_return"]])
    metrics["eval_steps"] = jnp.concatenate([jnp.zeros((1,), jnp.int32), metrics["eval_steps"]])
    return metrics


def make_train(
    config: DQNConfig,
    env: IdEnv | str = "CartPole-v1",
    on_period: Callable[[Any], None] | None = None,
) -> Callable:
    """A function training one DQN agent from a key, as a single ``lax.scan``.

    Args:
        config: the run's :class:`DQNConfig`.
        env: an :class:`IdEnv` from :func:`make_env` (choosing observation and action IDs), or an
            environment ID for the full environment.
        on_period: optional host function called with the step count after every evaluation
            period, for progress reports from inside the compiled run.

    Returns:
        ``train(key, init=None) -> (state, metrics)``. ``init`` optionally holds ``"params"`` (the
        network's ``{"params": {"Dense_0": ...}}``), ``"target_params"`` (default: ``params``) and
        ``"opt_state"`` (default: fresh), so a transplanted network continues training.
        ``state`` has the same three keys, so it can be passed back as ``init``. ``metrics``
        holds ``episode_return`` ``(num_blocks,)``, the return of the last finished episode (mean
        over environments), one point per training block, with ``episode_valid`` (False before
        any episode has finished), ``episode_steps`` (the steps at each point) and ``loss`` (the
        mean loss of the block's training phase, NaN before ``learning_starts``); and
        ``eval_return`` ``(num_evals,)``, the mean greedy return over ``eval_episodes`` episodes
        at ``eval_steps`` = 0, eval_every, ..., total_steps.

        ``jax.jit(jax.vmap(train))(keys, init)`` trains one seed per key; the leaves of ``init``
        then carry a leading seed axis.

    Example:
        >>> config = DQNConfig(hidden=(8,), total_steps=200, eval_every=100, eval_episodes=2,
        ...                    learning_starts=50, buffer_size=100)
        >>> state, metrics = jax.jit(make_train(config, "CartPole-v1"))(jax.random.PRNGKey(0))
        >>> metrics["eval_return"].shape, metrics["episode_return"].shape
        ((3,), (50,))
    """
    parts = make_dqn(config, env, on_period)

    def train(key: jax.Array, init: dict[str, Any] | None = None):
        carry, eval_return0 = parts.begin(key, init)
        carry, metrics = parts.run(carry, 0, parts.num_periods)
        return agent_state(carry), join_metrics(eval_return0, metrics)

    return train
