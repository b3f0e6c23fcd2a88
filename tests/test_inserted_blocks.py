"""A residual block inserted into a trained network, x + block(x): under PRESERVING every
projection back into the stream starts at zero, so the new network computes the old function,
while the layers inside the branch keep their template init, so that the branch can learn.

Each case is judged by forward passes of the old and new networks on random old inputs
(|new - old| <= 1e-5 (1 + |old|)), by the transplanted leaves compared with the template's, and
by one SGD step. Every weight of both networks is random, biases and norm parameters included,
so that no start is exact by the accident of a zero init.
"""

from functools import cache

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsurgery

EXACT_TOL = 1e-5
SEQ, FEATURES, OBS = 5, 3, 4


class PreLNBlock(nn.Module):
    """x + attention(LN(x)); x + Dense(gelu(Dense(LN(x))))."""

    mlp: int

    @nn.compact
    def __call__(self, x):
        x = x + nn.MultiHeadDotProductAttention(num_heads=2, name="attn")(nn.LayerNorm()(x))
        h = nn.gelu(nn.Dense(self.mlp, name="up")(nn.LayerNorm()(x)))
        return x + nn.Dense(x.shape[-1], name="down")(h)


class Encoder(nn.Module):
    """A pre-LN transformer encoder over continuous tokens: Dense embedding (d_model 16),
    blocks, final LayerNorm, Dense head per token."""

    mlp: tuple = (32, 24)

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(16, name="embed")(x)
        for i, m in enumerate(self.mlp):
            x = PreLNBlock(m, name=f"block_{i}")(x)
        return nn.Dense(3, name="head")(nn.LayerNorm(name="final_ln")(x))


class SimbaBlock(nn.Module):
    """x + Dense(relu(Dense(LN(x))))."""

    inner: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(self.inner, name="up")(nn.LayerNorm()(x)))
        return x + nn.Dense(x.shape[-1], name="down")(h)


class BroBlock(nn.Module):
    """x + LN(Dense(relu(LN(Dense(x))))): the norms inside the branch, the last one at its end."""

    inner: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.LayerNorm(name="ln_up")(nn.Dense(self.inner, name="up")(x)))
        return x + nn.LayerNorm(name="ln_down")(nn.Dense(x.shape[-1], name="down")(h))


class ResidualMLP(nn.Module):
    """Dense embedding, residual blocks (SimBa's or BRO's), final LayerNorm, Dense head."""

    inner: tuple = (8, 6)
    bro: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(6, name="embed")(x)
        for i, w in enumerate(self.inner):
            x = (BroBlock if self.bro else SimbaBlock)(w, name=f"block_{i}")(x)
        return nn.Dense(2, name="head")(nn.LayerNorm(name="final_ln")(x))


#: (old model, new model with a block inserted second, `layers=` pairs, input shape)
CASES = {
    "pre-ln-transformer": (
        Encoder((32, 24)),
        Encoder((32, 20, 24)),
        {"block_2": "block_1"},
        (SEQ, FEATURES),
    ),
    "simba": (ResidualMLP((8, 6)), ResidualMLP((8, 5, 6)), {"block_2": "block_1"}, (OBS,)),
    "bro": (
        ResidualMLP((8, 6), bro=True),
        ResidualMLP((8, 5, 6), bro=True),
        {"block_2": "block_1"},
        (OBS,),
    ),
}


def _draw(model, x, seed: int):
    """Variables of `model` drawn with NumPy (nothing compiles): kernels N(0, 1 / fan-in),
    biases N(0, 0.3), norm scales 1 + N(0, 0.3)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)

    def draw(path, leaf):
        z = rng.normal(size=leaf.shape)
        if len(leaf.shape) >= 2:
            return (z / np.sqrt(np.prod(leaf.shape[:-1]))).astype(np.float32)
        return (0.3 * z + (1.0 if path[-1].key == "scale" else 0.0)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


@cache
def _apply(model):
    return jax.jit(model.apply)


def _inputs(shape, seed: int, batch: int = 8):
    return jax.random.normal(jax.random.key(seed), (batch, *shape))


@cache
def _surgery(name: str):
    """The old and new models, the old variables, the template, the plan and the transplanted
    variables of case `name`."""
    old_m, new_m, pairs, shape = CASES[name]
    x = _inputs(shape, 0, 2)
    old, template = _draw(old_m, x, 1), _draw(new_m, x, 2)
    layers = {**{p: p for p in _layer_paths(template) if not p.startswith("block_")}}
    layers.update(_block_pairs(template, pairs))
    plan = jsurgery.make_plan(
        old,
        template,
        apply=(old_m.apply, new_m.apply),
        example=((x,), (x,)),
        layers=layers,
        **jsurgery.PRESERVING,
    )
    return old_m, new_m, old, template, plan, jsurgery.transplant(old, template, plan)


def _layer_paths(tree) -> list:
    """Every layer's path ('block_0/attn/query'), from the leaves' paths."""
    paths = jax.tree_util.tree_flatten_with_path(tree["params"])[0]
    return sorted({"/".join(k.key for k in p[:-1]) for p, _ in paths})


def _block_pairs(template, pairs: dict) -> dict:
    """`layers=` for the blocks: each old block's layers to the same new block, `pairs` naming
    the renamed ones; the one new block is left out (inserted)."""
    out = {}
    for path in _layer_paths(template):
        block, _, rest = path.partition("/")
        if not block.startswith("block_"):
            continue
        old_block = pairs.get(block, block)
        if block in pairs or block != "block_1":
            out[path] = f"{old_block}/{rest}"
    return out


def _moved(name: str) -> float:
    old_m, new_m, old, _, _, new = _surgery(name)
    x = _inputs(CASES[name][3], 5, 32)
    y_old = np.asarray(_apply(old_m)(old, x), np.float64)
    y_new = np.asarray(_apply(new_m)(new, x), np.float64)
    return float(np.max(np.abs(y_new - y_old) / (1.0 + np.abs(y_old))))


@pytest.mark.parametrize("name", list(CASES))
def test_inserted_block_keeps_the_old_function(name):
    assert _moved(name) <= EXACT_TOL


def _leaf(tree, path: str):
    node = tree["params"]
    for key in path.split("/"):
        node = node[key]
    return np.asarray(node)


#: Per case: the inserted block's leaves that write back into the stream (zero at the start)
#: and those inside the branch, which keep the template's values.
BRANCH_LEAVES = {
    "pre-ln-transformer": (
        ["attn/out/kernel", "attn/out/bias", "down/kernel", "down/bias"],
        ["attn/query/kernel", "attn/key/kernel", "attn/value/kernel", "attn/value/bias"]
        + ["up/kernel", "up/bias"],
    ),
    "simba": (["down/kernel", "down/bias"], ["up/kernel", "up/bias"]),
    "bro": (["down/kernel", "down/bias", "ln_down/bias"], ["up/kernel", "up/bias"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_only_projections_back_into_the_stream_start_at_zero(name):
    *_, template, _, new = _surgery(name)
    zero, kept = BRANCH_LEAVES[name]
    for path in zero:
        np.testing.assert_array_equal(_leaf(new, f"block_1/{path}"), 0.0, err_msg=path)
    for path in kept:
        template_leaf = _leaf(template, f"block_1/{path}")
        assert np.abs(template_leaf).max() > 0, path
        np.testing.assert_array_equal(_leaf(new, f"block_1/{path}"), template_leaf, err_msg=path)


@pytest.mark.parametrize(
    "name", [pytest.param("pre-ln-transformer", marks=pytest.mark.slow), "simba"]
)
def test_one_sgd_step_moves_the_zeroed_projections(name):
    _, new_m, _, _, _, new = _surgery(name)
    shape = CASES[name][3]
    x = _inputs(shape, 6, 16)
    target = jax.random.normal(jax.random.key(7), (16, *shape[:-1], 3 if shape != (OBS,) else 2))
    loss = lambda v: jnp.mean((new_m.apply(v, x) - target) ** 2)  # noqa: E731
    grads = jax.jit(jax.grad(loss))(new)
    for path in BRANCH_LEAVES[name][0]:
        if path.endswith("kernel"):
            assert np.abs(_leaf(grads, f"block_1/{path}")).max() > 1e-6, path
    stepped = jax.tree.map(lambda p, g: p - 1e-3 * g, new, grads)
    assert float(loss(stepped)) < float(loss(new))


@pytest.mark.parametrize("name", list(CASES))
def test_the_plan_promises_exact_and_passes_verification(name):
    plan = _surgery(name)[4]
    assert [p.kind for p in plan.promises] == ["exact"], plan.promises
    assert "verified" in str(plan) and plan.warnings == (), plan.warnings


class Gated(nn.Module):
    """Dense -> relu -> (a gate x * Dense(relu(Dense(x))) when `gate`) -> Dense."""

    gate: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(6, name="embed")(x))
        if self.gate:
            x = x * nn.Dense(6, name="down")(nn.relu(nn.Dense(5, name="up")(x)))
        return nn.Dense(2, name="head")(x)


def test_a_zero_gate_is_not_promised_exact():
    old_m, new_m = Gated(), Gated(gate=True)
    x = _inputs((OBS,), 0, 2)
    old, template = _draw(old_m, x, 1), _draw(new_m, x, 2)
    plan = jsurgery.make_plan(
        old,
        template,
        apply=(old_m.apply, new_m.apply),
        example=((x,), (x,)),
        layers={"embed": "embed", "head": "head"},
        **jsurgery.PRESERVING,
    )
    new = jsurgery.transplant(old, template, plan)
    moved = np.abs(new_m.apply(new, x) - old_m.apply(old, x)).max()
    assert moved > 1e-3
    assert any("'params/down/kernel'" in w and "gates" in w for w in plan.warnings), plan.warnings
    assert [p.kind for p in plan.promises] == ["nothing"]


class FlatSimba(nn.Module):
    """SimBa with every layer at the top level, so the params-only path reads it as a chain."""

    inner: tuple = (8,)

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(6, name="embed")(x)
        for i, w in enumerate(self.inner):
            h = nn.relu(nn.Dense(w, name=f"up_{i}")(nn.LayerNorm(name=f"ln_{i}")(x)))
            x = x + nn.Dense(6, name=f"down_{i}")(h)
        return nn.Dense(2, name="head")(nn.LayerNorm(name="final_ln")(x))


def test_params_only_does_not_promise_an_inserted_block_exact():
    x = _inputs((OBS,), 0, 2)
    old, template = _draw(FlatSimba(), x, 1), _draw(FlatSimba((8, 5)), x, 2)
    order = ["embed", "ln_0", "up_0", "down_0", "ln_1", "up_1", "down_1", "final_ln", "head"]
    plan = jsurgery.make_plan(old, template, order=order, **jsurgery.PRESERVING)
    assert [p.kind for p in plan.promises] == ["nothing"]
    assert any("down_1/kernel" in w and "apply=" in w for w in plan.warnings), plan.warnings
