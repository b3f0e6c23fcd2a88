"""Benchmark of the surgery core.

1. A jitted transplant into a 100M+ parameter MLP against a jitted plain copy of the same new tree
   (the copy is the floor: transplanting is memory traffic), as a ratio, in one process.
2. Plan-building time for a 100-layer model (host NumPy work, from shapes only).
3. Compile time of the transplant.

Run: python benchmarks/transplant.py [--width 4096] [--depth 7] [--repeats 5] [--plan-depth 100]
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp

import jsurgery


def mlp(key, n_in, hidden, n_out, dtype=jnp.float32):
    widths = [n_in, *hidden, n_out]
    keys = jax.random.split(key, len(widths))
    return {
        f"Dense_{i}": {
            "kernel": jax.random.normal(keys[i], (a, b), dtype) * 0.01,
            "bias": jnp.zeros((b,), dtype),
        }
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
    }


def shapes(n_in, hidden, n_out):
    widths = [n_in, *hidden, n_out]
    return {
        f"Dense_{i}": {
            "kernel": jax.ShapeDtypeStruct((a, b), jnp.float32),
            "bias": jax.ShapeDtypeStruct((b,), jnp.float32),
        }
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
    }


def best_of(fns: dict, repeats: int) -> dict:
    """Best time of each function, calling them in turn (so a load spike hits all of them)."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - t)
    return {name: min(ts) for name, ts in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--depth", type=int, default=7, help="hidden layers of the old model")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--plan-depth",
        type=int,
        default=100,
        help="hidden layers of the model whose plan-building time is measured",
    )
    args = parser.parse_args()
    w, d = args.width, args.depth
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()})")

    old = mlp(jax.random.key(0), 64, [w] * d, 16)
    n_old = sum(x.size for x in jax.tree.leaves(old))
    in_old, in_new = list(range(64)), list(range(-4, 64))
    out_old, out_new = list(range(16)), list(range(18))
    copy = jax.jit(lambda t: jax.tree.map(jnp.copy, t))
    for name, options, hidden in (
        ("transplant (template)", jsurgery.TRANSPLANT, [w + 128] * d),
        ("preserving (net2net)", jsurgery.PRESERVING, [w + 128] * d),
        ("same shapes (pure copy)", jsurgery.TRANSPLANT, [w] * d),
    ):
        new = mlp(jax.random.key(1), len(in_new), hidden, len(out_new))
        n_new = sum(x.size for x in jax.tree.leaves(new))
        plan = jsurgery.make_plan(
            old, new, inputs=(in_old, in_new), outputs=(out_old, out_new), **options
        )
        t = time.perf_counter()
        jax.block_until_ready(jsurgery.transplant(old, new, plan))
        first = time.perf_counter() - t
        jax.block_until_ready(copy(new))
        best = best_of(
            {
                "surgery": lambda new=new, plan=plan: jsurgery.transplant(old, new, plan),
                "copy": lambda new=new: copy(new),
            },
            args.repeats,
        )
        t_surgery, t_copy = best["surgery"], best["copy"]
        lowered_t = time.perf_counter()
        jax.jit(lambda o, t, plan=plan: jsurgery.transplant(o, t, plan)).lower(old, new).compile()
        compile_s = time.perf_counter() - lowered_t
        print(
            f"{name:<26} old {n_old / 1e6:.1f}M -> new {n_new / 1e6:.1f}M params: "
            f"transplant {t_surgery * 1e3:.1f} ms, plain copy {t_copy * 1e3:.1f} ms, "
            f"ratio {t_surgery / t_copy:.2f}; first call {first:.2f} s, "
            f"compile {compile_s:.2f} s"
        )

    for depth in (args.plan_depth,):
        old_s = shapes(64, [256] * depth, 16)
        new_s = shapes(68, [320] * (depth + 1), 18)
        t = time.perf_counter()
        # 100 equal hidden layers: where the new one goes is the user's to say (here: last)
        head = {f"Dense_{depth + 1}": f"Dense_{depth}"}
        plan = jsurgery.make_plan(
            old_s,
            new_s,
            inputs=(in_old, in_new),
            layers=head,
            outputs=(out_old, out_new),
            **jsurgery.PRESERVING,
        )
        elapsed = time.perf_counter() - t
        print(
            f"plan building, {depth + 1}-layer model -> {depth + 2} layers (one inserted, "
            f"all widened): {elapsed * 1e3:.0f} ms ({len(plan.leaves)} leaves)"
        )


if __name__ == "__main__":
    main()
