"""Refusals and warnings name the real cause in the user's terms: the key the user meant, the
layer kinds two networks differ in, the user's layer and source line (never a library's file or
private function), and what settles it."""

import re

import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from surgery_models import CNN, MLP
from test_attention import EntityAttention, RmsStream
from test_composite_spaces import Grouped, MaybeGrouped

import jsurgery

BATCH, STEPS = 3, 16
OBS4 = ["x", "v", "theta", "omega"]
OBS6 = ["x", "x_dot", "v", "theta", "omega", "omega_dot"]
OLD_COLUMNS = [0, 2, 3, 4]  # where OBS4's features sit among OBS6
LIBRARY_WORDS = ("site-packages", "/flax/", "/jax/", "_compute_stats")


def _perturbed(tree, seed):
    """Every leaf moved off its init (biases non-zero) so every copy shows."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda v: v + jnp.asarray(0.3 * rng.normal(size=v.shape), v.dtype), tree)


class LstmPolicy(nn.Module):
    hidden: int

    @nn.compact
    def __call__(self, carry, obs):
        x = nn.relu(nn.Dense(8, name="encoder")(obs))
        carry, h = nn.OptimizedLSTMCell(self.hidden, name="cell")(carry, x)
        return carry, nn.Dense(2, name="pi")(h)


def _zeros(hidden):
    return (jnp.zeros((BATCH, hidden)), jnp.zeros((BATCH, hidden)))  # (c, h)


def _lstm_plan(inputs):
    old_m, new_m = LstmPolicy(16), LstmPolicy(24)
    x4, x6 = jnp.zeros((BATCH, 4)), jnp.zeros((BATCH, 6))
    old = _perturbed(old_m.init(jax.random.key(0), _zeros(16), x4), 0)
    new = new_m.init(jax.random.key(1), _zeros(24), x6)
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(old_m.apply, new_m.apply),
        example=((_zeros(16), x4), (_zeros(24), x6)),
        inputs=inputs,
        **jsurgery.PRESERVING,
    )
    return old_m, new_m, old, jsurgery.transplant(old, new, plan), plan


def test_an_inputs_key_on_a_carry_leaf_is_refused_naming_the_leaf_and_the_key_meant():
    """`{1: obs_ids}` with a carry (c, h) first: key 1 is the carry's h, not the observation."""
    with pytest.raises(jsurgery.PlanError) as info:
        _lstm_plan({1: (OBS4, OBS6)})
    text = str(info.value)
    assert "`inputs[1]" in text and "array leaves" in text, text
    assert "key 1 is leaf `[1]` of argument 0" in text, text
    assert "argument 0 is keys 0-1" in text and "argument 1 is key 2" in text, text
    assert "inputs={2: (old_ids, new_ids)}" in text, text
    assert "`inputs[0]" not in text, text


def test_the_key_the_refusal_gives_keeps_the_old_policy_over_a_rollout():
    with pytest.raises(jsurgery.PlanError) as info:
        _lstm_plan({1: (OBS4, OBS6)})
    key = int(re.search(r"inputs=\{(\d+): \(old_ids, new_ids\)\}", str(info.value)).group(1))
    old_m, new_m, old, out, plan = _lstm_plan({key: (OBS4, OBS6)})
    rng = np.random.default_rng(2)
    c_old = tuple(jnp.asarray(rng.normal(size=(BATCH, 16)), jnp.float32) for _ in range(2))
    c_new = jsurgery.transplant_carry(c_old, plan)
    for _ in range(STEPS):
        x = rng.normal(size=(BATCH, 4)).astype(np.float32)
        x_new = np.zeros((BATCH, 6), np.float32)
        x_new[:, OLD_COLUMNS] = x
        c_old, y_old = old_m.apply(old, c_old, x)
        c_new, y_new = new_m.apply(out, c_new, x_new)
        np.testing.assert_allclose(y_new, y_old, atol=1e-5, rtol=0)
        for a, b in zip(c_old, c_new, strict=True):
            np.testing.assert_allclose(np.asarray(b)[:, :16], a, atol=1e-5, rtol=0)


def _shapes(model, shape):
    return jax.eval_shape(model.init, jax.random.key(0), jnp.ones(shape))


@pytest.mark.parametrize("traced", [False, True], ids=["params-only", "traced"])
def test_cnn_params_with_an_mlp_template_are_refused_as_different_architectures(traced):
    cnn, mlp = CNN((4,), (8,), 2), MLP((8,), 2)
    old, new = _shapes(cnn, (1, 4, 4, 3)), _shapes(mlp, (1, 48))
    kw = {}
    if traced:
        kw = dict(
            apply=(cnn.apply, mlp.apply),
            example=((jnp.ones((1, 4, 4, 3)),), (jnp.ones((1, 48)),)),
        )
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(old, new, **kw)
    text = str(info.value)
    assert "different architectures" in text, text
    assert "a convolution ('Conv_0')" in text and "'Dense_0', is a dense layer" in text, text
    assert "new template" in text, text


@pytest.mark.parametrize("outputs", [None, {0: ([0, 1], [0, 1])}])
def test_an_apply_that_returns_nothing_is_refused_as_such(outputs):
    x = jnp.ones((1, 3))
    v = MLP((4,), 2).init(jax.random.key(0), x)
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(v, v, apply=lambda v, x: None, example=((x,), (x,)), outputs=outputs)
    text = str(info.value)
    assert "`apply`" in text and "returned no arrays" in text and "`return`" in text, text
    assert "0 to -1" not in text, text


def test_carry_true_says_how_to_have_the_carry_found():
    v = _shapes(MLP((4,), 2), (1, 3))
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(v, v, carry=True)
    text = str(info.value)
    assert "got True" in text and "leave `carry` out" in text, text
    assert "apply=" in text and "(arg_index, output_index)" in text, text


# ----------------------------------------------------------------------------------------------
# Warnings and refusals made inside a library cite the user's layer and line
# ----------------------------------------------------------------------------------------------


def _traced(old_m, new_m, x, **kw):
    old, new = old_m.init(jax.random.key(0), x), new_m.init(jax.random.key(1), x)
    return jsurgery.make_plan(
        old, new, apply=(old_m.apply, new_m.apply), example=((x,), (x,)), **kw
    )


class GroupedConv(nn.Module):
    channels: int

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(self.channels, (3,), feature_group_count=2, name="gconv")(x)
        return nn.Dense(2)(h.reshape(x.shape[0], -1))


class NnxNormed(nnx.Module):
    def __init__(self, hidden, rngs):
        self.dense = nnx.Linear(3, hidden, rngs=rngs)
        self.norm = nnx.LayerNorm(hidden, rngs=rngs)
        self.head = nnx.Linear(hidden, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(self.norm(self.dense(x)))


class EqxNormed(eqx.Module):
    dense: eqx.nn.Linear
    norm: eqx.nn.LayerNorm
    head: eqx.nn.Linear

    def __init__(self, hidden, key):
        k1, k2 = jax.random.split(key)
        self.dense = eqx.nn.Linear(3, hidden, key=k1)
        self.norm = eqx.nn.LayerNorm(hidden)
        self.head = eqx.nn.Linear(hidden, 2, key=k2)

    def __call__(self, x):
        return self.head(self.norm(self.dense(x)))


X2, XE, XC = jnp.ones((2, 3)), jnp.ones((2, 5, 3)), jnp.ones((2, 5, 4))
P = jsurgery.PRESERVING
#: Plain Net2Net replicas: under a norm they change its statistics, and the plan warns.
R = {**P, "new_hidden": jsurgery.init.net2net(normalised=False)}

# (id, plan, the words that must cite the user's layer)
LIBRARY_CASES = [
    (
        "layernorm-after-widened-dense",
        lambda: _traced(MLP((4,), 2, "layer"), MLP((6,), 2, "layer"), X2, **R),
        ["`LayerNorm_0`", "surgery_models.py"],
    ),
    (
        "params-only-layernorm",
        lambda: jsurgery.make_plan(
            _shapes(MLP((4,), 2, "layer"), (1, 3)), _shapes(MLP((6,), 2, "layer"), (1, 3)), **R
        ),
        ["a norm layer read from the parameters"],
    ),
    ("layernorm-inserted", lambda: _traced(MLP((4,), 2), MLP((4,), 2, "layer"), X2, **P), []),
    (
        "groupnorm-group-width",
        lambda: _traced(Grouped(num_groups=2, group_size=None), Grouped(6, 2, None), XE, **P),
        ["`gn`", "test_composite_spaces.py"],
    ),
    ("groupnorm-inserted", lambda: _traced(MaybeGrouped(False), MaybeGrouped(True), XE, **P), []),
    (
        "attention-head-width",
        lambda: _traced(EntityAttention(), EntityAttention(head_dim=6), XE, **P),
        ["`attn`", "test_attention.py"],
    ),
    (
        "layernorm-before-attention",
        lambda: _traced(EntityAttention(norm=True), EntityAttention(width=12, norm=True), XE, **R),
        ["`ln`"],
    ),
    ("rmsnorm", lambda: _traced(RmsStream(), RmsStream(width=12), XE, **R), ["`rms`"]),
    (
        "grouped-convolution-refused",
        lambda: _traced(GroupedConv(4), GroupedConv(6), XC, **P),
        ["`gconv`", "test_messages.py"],
    ),
    (
        "nnx-layernorm",
        lambda: jsurgery.make_plan(
            NnxNormed(4, nnx.Rngs(0)), NnxNormed(6, nnx.Rngs(1)), example=((X2,), (X2,)), **R
        ),
        ["`LayerNorm`", "test_messages.py"],
    ),
    (
        "equinox-layernorm",
        lambda: jsurgery.make_plan(
            EqxNormed(4, jax.random.key(0)),
            EqxNormed(6, jax.random.key(1)),
            example=((X2[0],), (X2[0],)),
            **R,
        ),
        ["`LayerNorm`", "test_messages.py"],
    ),
]


@pytest.mark.parametrize(
    "make, cites", [c[1:] for c in LIBRARY_CASES], ids=[c[0] for c in LIBRARY_CASES]
)
def test_messages_from_inside_a_library_cite_the_users_layer_not_the_library(make, cites):
    try:
        texts = list(make().warnings)
    except jsurgery.PlanError as e:
        texts = [str(e)]
    assert texts, "neither a warning nor a refusal"
    for text in texts:
        assert not any(word in text for word in LIBRARY_WORDS), text
    if cites:
        assert any(all(c in text for c in cites) for text in texts), texts
