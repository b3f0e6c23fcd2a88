"""What the CartPole preset's LayerNorm layers cost, side by side in one process.

Trains the preset with and without ``layer_norm`` (``make_train``, ``--seeds`` seeds vmapped in one
compiled call, ``--steps`` environment steps per seed), alternating the two and keeping the best of
``--repeats`` timings of each; compilation is excluded. Gradient steps are most of a run's time, so
the ratio is close to their cost ratio.

    python benchmarks/layer_norm_cost.py            # 20 seeds x 10,000 steps
"""

from __future__ import annotations

import argparse
import time

import jax

from jsurgery.rl import make_train, seed_keys
from jsurgery.rl.presets import cartpole_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--steps", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    preset = cartpole_config(args.steps)
    keys = seed_keys(range(args.seeds))
    runs = {}
    for flag in (False, True):
        train = jax.jit(jax.vmap(make_train(preset.replace(layer_norm=flag), "CartPole-v1")))
        runs[flag] = train.lower(keys).compile()
    best = {flag: float("inf") for flag in runs}
    for _ in range(args.repeats):
        for flag, run in runs.items():
            start = time.perf_counter()
            jax.block_until_ready(run(keys))
            best[flag] = min(best[flag], time.perf_counter() - start)
    rate = {flag: args.seeds * args.steps / seconds for flag, seconds in best.items()}
    print(
        f"CartPole-v1 preset, {args.seeds} seeds x {args.steps} steps, network {preset.hidden}: "
        f"{rate[False]:,.0f} steps/s without LayerNorm ({best[False]:.1f} s), {rate[True]:,.0f} "
        f"with ({best[True]:.1f} s); LayerNorm makes a run {best[True] / best[False]:.2f}x as long"
    )


if __name__ == "__main__":
    main()
