"""The params-only path and the traced path give one plan: on every chain of the contract suite
(and LayerNorm chains widened), planned from the parameters alone and from the traced `apply`,
the transplants are equal leaf by leaf and the plans warn about the same leaves for the same
reasons."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from surgery_models import MLP, TokenNet, init, randomise_biases
from test_transplant import CASES

import jsurgery

LAYERNORM_CASES = [
    (
        "layernorm-widened-net2net",
        MLP((32,), 3, "layer"),
        MLP((48,), 3, "layer"),
        4,
        4,
        dict(jsurgery.PRESERVING),
        False,
    ),
    (
        "layernorm-widened-twice-layer-inserted",
        MLP((8,), 3, "layer"),
        MLP((12, 12), 3, "layer"),
        4,
        4,
        dict(jsurgery.PRESERVING, layers={"LayerNorm_0": "LayerNorm_0"}),
        False,
    ),
]
ALL = CASES + LAYERNORM_CASES


def _example(model, n_in):
    if isinstance(model, TokenNet):
        return (jnp.zeros((1,), jnp.int32),)
    shape = (1, *n_in) if isinstance(n_in, tuple) else (1, n_in)
    return (jnp.zeros(shape, jnp.float32),)


def _variables(case):
    _, old_m, new_m, old_in, new_in, _, _ = case
    stats = getattr(old_m, "norm", None) == "batch"
    return randomise_biases(init(old_m, old_in, 0, stats), 1), init(new_m, new_in, 1, stats)


def reasons(warnings) -> list:
    """Each warning with the operations and source lines it cites left out: the leaf or layer
    it is about and what it says. Warnings about an identity start are compared on their own
    (`identity_starts`): the params-only path does not know the activation."""
    cited = re.compile(r"^(.*?: ).*? (mixes the units .*)$")
    return sorted(cited.sub(r"\1\2", w) for w in warnings if IDENTITY_START not in w)


IDENTITY_START = "its identity start"


def identity_starts(warnings) -> set:
    """The leaves whose identity start a plan warns about."""
    return {w.split(":")[0] for w in warnings if IDENTITY_START in w}


@pytest.mark.parametrize("case", ALL, ids=[c[0] for c in ALL])
def test_params_only_and_traced_plans_agree(case):
    name, old_m, new_m, old_in, new_in, kwargs, _ = case
    old, new = _variables(case)
    from_params = jsurgery.make_plan(old, new, **kwargs)
    traced = jsurgery.make_plan(
        old,
        new,
        apply=(old_m.apply, new_m.apply),
        example=(_example(old_m, old_in), _example(new_m, new_in)),
        **kwargs,
    )
    assert from_params.layer_map == traced.layer_map
    assert reasons(from_params.warnings) == reasons(traced.warnings)
    # the params-only path warns wherever an identity start is not known to be exact
    assert identity_starts(traced.warnings) <= identity_starts(from_params.warnings)
    a = jax.tree.leaves(jsurgery.transplant(old, new, from_params))
    b = jax.tree.leaves(jsurgery.transplant(old, new, traced))
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_params_only_replicas_under_layernorm_are_named_and_the_outputs_move():
    """Plain replicas (`normalised=False`) under a LayerNorm; the default keeps the norm's
    statistics (tests/test_normalised.py)."""
    _, old_m, new_m, old_in, new_in, kwargs, _ = LAYERNORM_CASES[0]
    old, new = _variables(LAYERNORM_CASES[0])
    replicas = {**kwargs, "new_hidden": jsurgery.init.net2net(normalised=False)}
    plan = jsurgery.make_plan(old, new, **replicas)
    x = jax.random.normal(jax.random.key(3), (64, old_in))
    moved = jsurgery.transplant(old, new, plan)
    diff = float(jnp.abs(old_m.apply(old, x) - new_m.apply(moved, x)).max())
    assert diff > 1e-3  # not exact: the norm's statistics see the replicas
    (warning,) = [w for w in plan.warnings if "mixes the units" in w]
    assert "Dense_0" in warning and "16 new" in warning and "a norm layer" in warning
    assert "jsurgery" not in warning  # the library's own files are not the user's source


class NnxNormed(nnx.Module):
    def __init__(self, width: int, rngs: nnx.Rngs):
        self.dense = nnx.Linear(4, width, rngs=rngs)
        self.norm = nnx.LayerNorm(width, rngs=rngs)
        self.head = nnx.Linear(width, 3, rngs=rngs)

    def __call__(self, x):
        return self.head(nnx.relu(self.norm(self.dense(x))))


def test_nnx_module_without_example_warns_about_the_layernorm_like_the_traced_plan():
    old, new = NnxNormed(32, nnx.Rngs(0)), NnxNormed(48, nnx.Rngs(1))
    replicas = {**jsurgery.PRESERVING, "new_hidden": jsurgery.init.net2net(normalised=False)}
    plain = jsurgery.make_plan(old, new, **replicas)
    x = jnp.ones((1, 4))
    traced = jsurgery.make_plan(old, new, example=((x,), (x,)), **replicas)
    assert reasons(plain.warnings) == reasons(traced.warnings)
    assert any("dense/" in w and "mixes the units" in w for w in plain.warnings)
