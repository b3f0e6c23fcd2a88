"""Time of `make_plan`, trace included, on a deep MLP (traced and params-only) and a ResNet-50.

    python benchmarks/plan_trace.py [--layers 100]

Only shapes are used (`jax.eval_shape`), so nothing is compiled or allocated; the times are the
host work of tracing both functions and planning. Best of 3.
"""

from __future__ import annotations

import argparse
import time

import flax.linen as nn
import jax
import jax.numpy as jnp

import jsurgery


class DeepMLP(nn.Module):
    width: int
    layers: int
    out: int

    @nn.compact
    def __call__(self, x):
        for _ in range(self.layers):
            x = nn.relu(nn.Dense(self.width)(x))
        return nn.Dense(self.out)(x)


class Bottleneck(nn.Module):
    features: int
    strides: int

    @nn.compact
    def __call__(self, x):
        norm = lambda: nn.BatchNorm(use_running_average=True)  # noqa: E731
        y = nn.relu(norm()(nn.Conv(self.features, (1, 1))(x)))
        y = nn.relu(norm()(nn.Conv(self.features, (3, 3), self.strides)(y)))
        y = norm()(nn.Conv(self.features * 4, (1, 1))(y))
        if x.shape[-1] != y.shape[-1] or self.strides != 1:
            x = norm()(nn.Conv(self.features * 4, (1, 1), self.strides)(x))
        return nn.relu(x + y)


class ResNet50(nn.Module):
    classes: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.BatchNorm(use_running_average=True)(nn.Conv(64, (7, 7), 2)(x)))
        for i, blocks in enumerate((3, 4, 6, 3)):
            for j in range(blocks):
                x = Bottleneck(64 * 2**i, 2 if i and not j else 1)(x)
        return nn.Dense(self.classes)(x.mean((1, 2)))


def _time(old_m, new_m, x_old, x_new, traced: bool = True, **kw) -> tuple[float, int]:
    """Best of 3 of `make_plan`: traced from the apply functions, or from the params alone."""
    old = jax.eval_shape(old_m.init, jax.random.key(0), x_old)
    new = jax.eval_shape(new_m.init, jax.random.key(1), x_new)
    if traced:
        kw = dict(kw, apply=(old_m.apply, new_m.apply), example=((x_old,), (x_new,)))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        plan = jsurgery.make_plan(old, new, **kw, **jsurgery.PRESERVING)
        best = min(best, time.perf_counter() - start)
    return best, len(plan.leaves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=100)
    args = parser.parse_args()
    x_old = jax.ShapeDtypeStruct((8, 64), jnp.float32)
    x_new = jax.ShapeDtypeStruct((8, 68), jnp.float32)
    mlps = DeepMLP(256, args.layers, 16), DeepMLP(264, args.layers, 18)
    t, n = _time(*mlps, x_old, x_new)
    t_params, _ = _time(*mlps, x_old, x_new, traced=False)
    print(
        f"MLP, {args.layers} hidden layers of 256 -> 264, 4 new inputs, 2 new outputs "
        f"({n} leaves): {t:.2f} s traced, {t_params:.2f} s from the params alone"
    )
    img = jax.ShapeDtypeStruct((2, 64, 64, 3), jnp.float32)
    t, n = _time(
        ResNet50(1000), ResNet50(1010), img, img, outputs=(list(range(1000)), list(range(1010)))
    )
    print(f"ResNet-50 (25.6M parameters), 10 new classes ({n} leaves): {t:.2f} s")


if __name__ == "__main__":
    main()
