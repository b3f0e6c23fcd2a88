"""What verification adds to `make_plan`: the same plan made with `verify=False` and with
`verify=True` (both networks run on random old inputs, the transplant applied, every promise
measured), side by side in one process, on a deep MLP and a ResNet-50 with concrete weights.

    python benchmarks/verify_cost.py [--layers 100] [--repeats 3]

Each figure is the best of `--repeats` runs; the ratio is what a user waits for verification.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
from plan_trace import DeepMLP, ResNet50

import jsurgery


def _best(make, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        make()
        best = min(best, time.perf_counter() - start)
    return best


def _compare(name: str, old_m, new_m, x_old, x_new, repeats: int, **kw) -> None:
    old = old_m.init(jax.random.key(0), x_old)
    new = new_m.init(jax.random.key(1), x_new)
    kw = dict(kw, apply=(old_m.apply, new_m.apply), example=((x_old,), (x_new,)))

    def make(verify: bool):
        return lambda: jsurgery.make_plan(old, new, **kw, **jsurgery.PRESERVING, verify=verify)

    plain, checked = _best(make(False), repeats), _best(make(True), repeats)
    print(
        f"{name}: plan {plain:.2f} s, plan + verify {checked:.2f} s "
        f"(x{checked / plain:.2f}); {make(True)().verified}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    x_old, x_new = jnp.ones((8, 64)), jnp.ones((8, 68))
    mlps = DeepMLP(256, args.layers, 16), DeepMLP(264, args.layers, 18)
    _compare(f"MLP, {args.layers} hidden layers 256 -> 264", *mlps, x_old, x_new, args.repeats)
    img = jnp.ones((2, 64, 64, 3))
    classes = dict(outputs=(list(range(1000)), list(range(1010))))
    _compare(
        "ResNet-50, 10 new classes",
        ResNet50(1000),
        ResNet50(1010),
        img,
        img,
        args.repeats,
        **classes,
    )


if __name__ == "__main__":
    main()
