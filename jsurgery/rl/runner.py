"""Many seeds at once: chunked compiled runs with a progress bar and save points, sharded over
devices."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jsurgery import stopping
from jsurgery.rl import dqn, ppo
from jsurgery.rl.config import DQNConfig
from jsurgery.rl.environments import IdEnv, make_env
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.progress import compile_finished, compile_started, progress_bar
from jsurgery.rl.snapshot import Progress, Snapshots

__all__ = ["TrainResult", "chunk_blocks", "seed_keys", "train_seeds"]


@dataclasses.dataclass
class TrainResult:
    """What :func:`train_seeds` returns.

    Attributes:
        state: ``{"params", "target_params", "opt_state"}`` with a leading seed axis on every leaf.
        metrics: NumPy arrays with a leading seed axis: ``episode_return``, ``episode_valid``,
            ``episode_steps``, ``loss`` of shape ``(seeds, num_blocks)``; ``eval_return``,
            ``eval_steps`` of shape ``(seeds, num_evals)``.
        seeds: the integer seed of each row.
        compile_seconds: time spent compiling.
        run_seconds: time spent running the compiled code (evaluations included).
    """

    config: DQNConfig
    env: IdEnv
    seeds: tuple[int, ...]
    state: dict[str, Any]
    metrics: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float

    @property
    def steps_per_second(self) -> float:
        """Environment steps per second over all seeds, compilation excluded."""
        return len(self.seeds) * self.config.total_steps / max(self.run_seconds, 1e-9)


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """One key per integer seed: ``PRNGKey(seed)``, so seed 3 gets the same key in any set of seeds.

    The key is the same, the float results need not be: XLA may order reductions differently for
    another number of vmapped seeds, and a long training run can amplify those last-bit differences.
    Compare seeds across runs made with the same seed count.
    """
    return jnp.stack([jax.random.PRNGKey(int(seed)) for seed in seeds])


def chunk_blocks(config: DQNConfig, chunks: int) -> int:
    """Blocks per compiled chunk: the largest divisor of a period's blocks that cuts the run into
    at least ``chunks`` chunks (one block at least, one period at most)."""
    per_period = config.eval_every // config.block_steps
    most = max(1, config.num_blocks // chunks)
    return max(d for d in range(1, per_period + 1) if per_period % d == 0 and d <= most)


def _unpad(tree: Any, count: int) -> Any:
    return None if tree is None else jax.tree.map(lambda leaf: leaf[:count], tree)


def _pad(tree: Any, count: int) -> Any:
    if count == 0:
        return tree
    return jax.tree.map(
        lambda leaf: jnp.concatenate([leaf, jnp.repeat(leaf[-1:], count, axis=0)]), tree
    )


def _strong(tree: Any) -> Any:
    """``tree`` without weak types, so that a fresh and a restored carry compile alike."""
    return jax.tree.map(lambda leaf: jax.lax.convert_element_type(leaf, leaf.dtype), tree)


class _Curves:
    """The learning curves of a run as they come in, chunk by chunk (NumPy, seeds first)."""

    def __init__(self, saved: dict[str, np.ndarray]):
        self.pieces = {name: [value] for name, value in saved.items()}

    def add(self, name: str, value: np.ndarray) -> None:
        self.pieces.setdefault(name, []).append(value)

    def joined(self) -> dict[str, np.ndarray]:
        return {name: np.concatenate(values, axis=1) for name, values in self.pieces.items()}


def _algorithm(config: DQNConfig | PPOConfig) -> tuple[Any, Any]:
    """``(make_parts, agent_state)`` of the algorithm ``config`` configures: the DQN's
    (:mod:`jsurgery.rl.dqn`) or PPO's (:mod:`jsurgery.rl.ppo`)."""
    if isinstance(config, PPOConfig):
        return ppo.make_ppo, ppo.agent_state
    return dqn.make_dqn, dqn.agent_state


@functools.lru_cache(maxsize=8)
def _programs(
    config: DQNConfig | PPOConfig,
    env_id: str,
    obs_ids: tuple[str, ...],
    action_ids: tuple[str, ...],
    size: int,
    shard: bool,
) -> tuple[Any, Any, Any, NamedSharding | None]:
    """The jitted ``begin``, chunk and ``end_period`` of a run, and the seed sharding (or None);
    kept, so that another run of the same configuration (a resumed one too) compiles nothing."""
    parts = _algorithm(config)[0](config, make_env(env_id, obs_ids, action_ids))
    placement, sharding = {}, None
    if shard:
        mesh = jax.sharding.Mesh(np.array(jax.devices()), ("seeds",))
        sharding = NamedSharding(mesh, PartitionSpec("seeds"))
        # Every per-seed leaf, outputs included, is split along the seed axis.
        placement = {"out_shardings": sharding}
    begin = jax.jit(jax.vmap(parts.begin), **placement)
    run = jax.jit(
        jax.vmap(lambda carry, first: parts.blocks(carry, first, size), in_axes=(0, None)),
        donate_argnums=0,
        **placement,
    )
    end_period = jax.jit(jax.vmap(parts.end_period), donate_argnums=0, **placement)
    return begin, run, end_period, sharding


def train_seeds(
    config: DQNConfig | PPOConfig,
    env: IdEnv | str,
    seeds: int | Sequence[int] = 1,
    init: dict[str, Any] | None = None,
    *,
    progress: bool = True,
    shard: bool | None = None,
    chunks: int = 200,
    snapshots: Snapshots | None = None,
) -> TrainResult:
    """Train one agent per seed, all seeds in each compiled call.

    The run is cut into compiled chunks of whole blocks (about ``chunks`` of them, see
    :func:`chunk_blocks`), with a progress bar and possible save points between them; the result
    equals ``jax.jit(jax.vmap(make_train(config, env)))`` on the same keys up to the last bits
    (XLA may round differently in another cut). With several devices the seed axis is sharded
    across them (padded to a multiple of the device count).

    With ``snapshots``, the whole training state is saved between chunks every
    ``snapshots.every`` seconds, and, when a stop signal arrives while the command line's
    handlers are installed (:mod:`jsurgery.stopping`), at the end of the chunk running then,
    before :class:`~jsurgery.stopping.Stopped` is raised. With ``snapshots.resume`` the run
    continues from the saved state and ends with exactly the numbers of an uninterrupted run.

    Args:
        config: the run's configuration: a :class:`DQNConfig` trains DQN agents, a
            :class:`~jsurgery.rl.ppo_config.PPOConfig` PPO agents.
        env: an :class:`IdEnv` or environment ID.
        seeds: a number ``n`` (seeds ``0 .. n-1``) or the integer seeds themselves.
        init: optional ``{"params", "target_params", "opt_state"}`` (PPO: ``{"params",
            "opt_state"}``) with a leading seed axis.
        progress: show a progress bar.
        shard: shard seeds across devices; default: when more than one device is present.
        chunks: about how many compiled chunks (progress updates, save points) a run is cut
            into; the cut must be the same for a run and its resumed continuation.
        snapshots: where and how often to save the training state, and whether to resume.
    """
    if isinstance(env, str):
        env = make_env(env)
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("`seeds`: expected at least one seed")
    keys = seed_keys(seeds)
    if init is not None:
        init = jax.tree.map(jnp.asarray, init)
    devices = jax.devices()
    shard = len(devices) > 1 if shard is None else shard
    padding = (-len(seeds)) % len(devices) if shard else 0
    keys, init = _pad(keys, padding), _pad(init, padding)
    size = chunk_blocks(config, chunks)
    begin, run, end_period, sharding = _programs(
        config, env.env_id, env.obs_ids, env.action_ids, size, shard
    )
    put = (lambda tree: tree) if sharding is None else lambda tree: jax.device_put(tree, sharding)
    keys, init = put((keys, init))

    template = jax.tree.map(
        lambda leaf: jax.ShapeDtypeStruct((len(seeds), *leaf.shape[1:]), leaf.dtype),
        jax.eval_shape(begin, keys, init)[0],
    )
    saved = None if snapshots is None else snapshots.load(template)
    description = f"{env.env_id} x{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    if progress:
        compile_started(description)
    if saved is None:
        start = time.perf_counter()
        begin = begin.lower(keys, init).compile()
        compile_seconds = time.perf_counter() - start
        start = time.perf_counter()
        carry, eval_return0 = jax.block_until_ready(begin(keys, init))
        run_seconds = time.perf_counter() - start
        carry = _strong(carry)
        step, curves = 0, _Curves({"eval_return": np.asarray(eval_return0)[: len(seeds), None]})
    else:
        carry = put(_pad(jax.tree.map(jnp.asarray, saved.carry), padding))
        compile_seconds, run_seconds = saved.compile_seconds, saved.run_seconds
        step, curves = saved.step, _Curves(saved.curves)
    start = time.perf_counter()
    run = run.lower(carry, jnp.int32(0)).compile()
    end_period = end_period.lower(carry).compile()
    compile_seconds += time.perf_counter() - start
    if progress:
        compile_finished(compile_seconds)

    bar = None
    if progress:
        bar = progress_bar(total=config.total_steps, initial=step, unit="step", desc=description)
    chunk_steps = size * config.block_steps
    try:
        with stopping.deferred() if snapshots is not None else contextlib.nullcontext():
            while step < config.total_steps:
                start = time.perf_counter()
                carry, metrics = jax.block_until_ready(run(carry, jnp.int32(step)))
                step += chunk_steps
                for name, value in jax.device_get(metrics).items():
                    curves.add(name, np.asarray(value)[: len(seeds)])
                if step % config.eval_every == 0:
                    carry, eval_return = jax.block_until_ready(end_period(carry))
                    curves.add("eval_return", np.asarray(eval_return)[: len(seeds), None])
                run_seconds += time.perf_counter() - start
                if bar is not None:
                    last = curves.pieces["eval_return"][-1]
                    bar.set_postfix(eval_return=f"{float(np.mean(last)):.1f}")
                    bar.update(chunk_steps)
                if snapshots is not None and step < config.total_steps:
                    if snapshots.due() or stopping.stop_requested():
                        saved = Progress(
                            step, _unpad(carry, len(seeds)), curves.joined(), compile_seconds,
                            run_seconds,
                        )  # fmt: skip
                        snapshots.save(saved)
                        curves = _Curves(saved.curves)
                    stopping.raise_if_stopped()
    finally:
        if bar is not None:
            bar.close()

    metrics = curves.joined()
    metrics["eval_steps"] = np.broadcast_to(
        np.arange(0, config.total_steps + 1, config.eval_every, dtype=np.int32),
        metrics["eval_return"].shape,
    ).copy()
    state = _algorithm(config)[1](_unpad(carry, len(seeds)))
    return TrainResult(config, env, seeds, state, metrics, compile_seconds, run_seconds)
