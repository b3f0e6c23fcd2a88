"""Small linen and NNX models shared by the surgery-core tests."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


class MLP(nn.Module):
    """ReLU MLP: Dense(h) for each hidden width, then Dense(out)."""

    hidden: Sequence[int]
    out: int
    norm: str | None = None  # None, "layer" or "batch"

    @nn.compact
    def __call__(self, x):
        for h in self.hidden:
            x = nn.Dense(h)(x)
            if self.norm == "layer":
                x = nn.LayerNorm()(x)
            elif self.norm == "batch":
                x = nn.BatchNorm(use_running_average=True)(x)
            x = nn.relu(x)
        return nn.Dense(self.out)(x)


class CNN(nn.Module):
    """Conv layers (SAME, ReLU), optional max-pool, flatten, Dense layers."""

    convs: Sequence[int]
    dense: Sequence[int]
    out: int
    pool: bool = False
    window: tuple = (3, 3)

    @nn.compact
    def __call__(self, x):
        for c in self.convs:
            x = nn.relu(nn.Conv(c, self.window, padding="SAME")(x))
        if self.pool:
            x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        for h in self.dense:
            x = nn.relu(nn.Dense(h)(x))
        return nn.Dense(self.out)(x)


class TokenNet(nn.Module):
    vocab: int
    out: int

    @nn.compact
    def __call__(self, tokens):
        x = nn.Embed(self.vocab, 8)(tokens)
        return nn.Dense(self.out)(nn.relu(x))


class NnxMLP(nnx.Module):
    def __init__(self, n_in: int, hidden: Sequence[int], out: int, rngs: nnx.Rngs):
        widths = [n_in, *hidden]
        self.layers = nnx.List(
            [nnx.Linear(a, b, rngs=rngs) for a, b in zip(widths[:-1], widths[1:], strict=True)]
        )
        self.head = nnx.Linear(widths[-1], out, rngs=rngs)

    def __call__(self, x):
        for layer in self.layers:
            x = nnx.relu(layer(x))
        return self.head(x)


_JITTED: dict = {}


def _jitted(model: nn.Module, method: str):
    """One jitted `init`/`apply` per model configuration, shared by all tests."""
    key = (repr(model), method)
    if key not in _JITTED:
        _JITTED[key] = jax.jit(getattr(model, method))
    return _JITTED[key]


def init(model: nn.Module, n_in, seed: int, batch_stats: bool = False):
    """Linen variables; for BatchNorm models the running statistics are randomised."""
    shape = (1, *n_in) if isinstance(n_in, tuple) else (1, n_in)
    variables = _jitted(model, "init")(jax.random.key(seed), jnp.ones(shape, jnp.float32))
    if batch_stats and "batch_stats" in variables:
        leaves, treedef = jax.tree.flatten(variables["batch_stats"])
        keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
        leaves = [
            jnp.abs(jax.random.normal(k, x.shape)) + 0.5 for k, x in zip(keys, leaves, strict=True)
        ]
        variables = {**variables, "batch_stats": jax.tree.unflatten(treedef, leaves)}
        params = jax.tree.map(
            lambda x: x + 0.1 * jax.random.normal(jax.random.key(seed + 7), x.shape),
            variables["params"],
        )
        variables = {**variables, "params": params}
    return variables


def apply_fn(model: nn.Module):
    """A jitted `model.apply` (one compile per model instead of one per eager op)."""
    return _jitted(model, "apply")


def randomise_biases(variables, seed: int):
    """Non-zero biases, so tests see them move."""

    def f(path, x):
        if path[-1].key == "bias":
            return x + jax.random.normal(jax.random.key(seed + len(path)), x.shape, x.dtype)
        return x

    return jax.tree_util.tree_map_with_path(f, variables)


def rand(shape, seed: int = 0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def mlp(rng, n_in, hidden, n_out):
    """A bare params dict `{"Dense_i": {"kernel", "bias"}}` of random weights (no compile)."""
    widths = [n_in, *hidden, n_out]
    return {
        f"Dense_{i}": {
            "kernel": jnp.asarray(rng.normal(size=(a, b)), jnp.float32),
            "bias": jnp.asarray(rng.normal(size=(b,)), jnp.float32),
        }
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
    }


def forward(params, x):
    """The ReLU MLP of `mlp` params in float64 NumPy."""
    if "params" in params:
        params = params["params"]
    n = len(params)
    for i in range(n):
        layer = params[f"Dense_{i}"]
        x = x @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        if i < n - 1:
            x = np.maximum(x, 0)
    return x
