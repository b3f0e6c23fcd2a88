"""Many seeds at once: chunked compiled runs with a progress bar, sharded over devices."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from jsurgery.rl.config import DQNConfig
from jsurgery.rl.dqn import agent_state, join_metrics, make_dqn
from jsurgery.rl.environments import IdEnv, make_env
from jsurgery.rl.progress import compile_finished, compile_started, progress_bar

__all__ = ["TrainResult", "seed_keys", "train_seeds"]


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


def _chunk_periods(num_periods: int, max_chunks: int) -> int:
    for size in range(1, num_periods + 1):
        if num_periods % size == 0 and num_periods // size <= max_chunks:
            return size
    return num_periods


def _pad(tree: Any, count: int) -> Any:
    if count == 0:
        return tree
    return jax.tree.map(
        lambda leaf: jnp.concatenate([leaf, jnp.repeat(leaf[-1:], count, axis=0)]), tree
    )


def train_seeds(
    config: DQNConfig,
    env: IdEnv | str,
    seeds: int | Sequence[int] = 1,
    init: dict[str, Any] | None = None,
    *,
    progress: bool = True,
    shard: bool | None = None,
    max_chunks: int = 20,
) -> TrainResult:
    """Train one agent per seed, all seeds in each compiled call.

    The run is split into up to ``max_chunks`` compiled chunks of whole evaluation periods, with a
    progress bar between them; the result equals ``jax.jit(jax.vmap(make_train(config, env)))``
    on the same keys. With several devices the seed axis is sharded across them (padded to a
    multiple of the device count).

    Args:
        config: the run's configuration.
        env: an :class:`IdEnv` or environment ID.
        seeds: a number ``n`` (seeds ``0 .. n-1``) or the integer seeds themselves.
        init: optional ``{"params", "target_params", "opt_state"}`` with a leading seed axis.
        progress: show a progress bar.
        shard: shard seeds across devices; default: when more than one device is present.
        max_chunks: most compiled chunks (progress-bar updates) per run.
    """
    if isinstance(env, str):
        env = make_env(env)
    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("`seeds`: expected at least one seed")
    parts = make_dqn(config, env)
    keys = seed_keys(seeds)
    if init is not None:
        init = jax.tree.map(jnp.asarray, init)
    devices = jax.devices()
    shard = len(devices) > 1 if shard is None else shard
    padding = (-len(seeds)) % len(devices) if shard else 0
    keys, init = _pad(keys, padding), _pad(init, padding)
    placement = {}
    if shard:
        mesh = jax.sharding.Mesh(np.array(devices), ("seeds",))
        sharding = NamedSharding(mesh, PartitionSpec("seeds"))
        keys, init = jax.device_put((keys, init), sharding)
        # Every per-seed leaf, outputs included, is split along the seed axis.
        placement = {"out_shardings": sharding}

    chunk = _chunk_periods(parts.num_periods, max_chunks)
    begin = jax.jit(jax.vmap(parts.begin), **placement)
    run = jax.jit(
        jax.vmap(lambda carry, first: parts.run(carry, first, chunk), in_axes=(0, None)),
        donate_argnums=0,
        **placement,
    )
    description = f"{env.env_id} x{len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    if progress:
        compile_started(description)
    start = time.perf_counter()
    begin = begin.lower(keys, init).compile()
    compile_seconds = time.perf_counter() - start
    start = time.perf_counter()
    carry, eval_return0 = jax.block_until_ready(begin(keys, init))
    run_seconds = time.perf_counter() - start
    start = time.perf_counter()
    run = run.lower(carry, jnp.int32(0)).compile()
    compile_seconds += time.perf_counter() - start
    if progress:
        compile_finished(compile_seconds)

    pieces = []
    bar = None
    if progress:
        bar = progress_bar(total=config.total_steps, unit="step", desc=description)
    for first in range(0, config.total_steps, chunk * config.eval_every):
        start = time.perf_counter()
        carry, metrics = jax.block_until_ready(run(carry, jnp.int32(first)))
        run_seconds += time.perf_counter() - start
        pieces.append(jax.device_get(metrics))
        if bar is not None:
            last = float(np.mean(metrics["eval_return"][: len(seeds), -1]))
            bar.set_postfix(eval_return=f"{last:.1f}")
            bar.update(chunk * config.eval_every)
    if bar is not None:
        bar.close()

    joined = {name: np.concatenate([p[name] for p in pieces], axis=1) for name in pieces[0]}
    joined = jax.vmap(join_metrics)(eval_return0, joined)
    metrics = {name: np.asarray(value)[: len(seeds)] for name, value in joined.items()}
    state = jax.tree.map(lambda leaf: leaf[: len(seeds)], agent_state(carry))
    return TrainResult(config, env, seeds, state, metrics, compile_seconds, run_seconds)
