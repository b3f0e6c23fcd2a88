"""Attention and DenseGeneral: heads added, the stream widened, entity features and actions added
(exact), head width changed and a LayerNorm over a widened stream (named in the warnings).

An entity encoder as RL code has it: per-entity features -> Dense -> stream, one self-attention
block with a residual add, ReLU, mean over entities, policy head.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from graph_zoo import compare_outputs, embed

import jsurgery

FEATS3, FEATS4 = ["x", "y", "hp"], ["x", "y", "team", "hp"]
A2, A3 = ["left", "right"], ["left", "noop", "right"]
ENTITIES = 5


class EntityAttention(nn.Module):
    width: int = 8
    heads: int = 2
    head_dim: int = 4
    actions: int = 2
    norm: bool = False

    @nn.compact
    def __call__(self, entities):
        x = nn.Dense(self.width, name="embed")(entities)
        h = nn.LayerNorm(name="ln")(x) if self.norm else x
        x = x + nn.MultiHeadDotProductAttention(
            self.heads, qkv_features=self.heads * self.head_dim, name="attn"
        )(h)
        return nn.Dense(self.actions, name="pi")(nn.relu(x).mean(axis=1))


def _surgery(old_m, new_m, n_feats=(3, 3), **kw):
    x = np.random.default_rng(0).normal(size=(4, ENTITIES, n_feats[0])).astype(np.float32)
    x_new = jnp.zeros((4, ENTITIES, n_feats[1]))
    old = old_m.init(jax.random.key(0), x)
    rng = np.random.default_rng(1)
    old = jax.tree.map(lambda v: v + jnp.asarray(0.3 * rng.normal(size=v.shape), v.dtype), old)
    new = new_m.init(jax.random.key(1), x_new)
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(old_m.apply, new_m.apply),
        example=((x,), (x_new,)),
        **{**jsurgery.PRESERVING, **kw},
    )
    return x, old, plan, jsurgery.transplant(old, new, plan)


EXACT = {
    "head-added": (EntityAttention(), EntityAttention(heads=3), {}),
    "heads-2-to-4": (EntityAttention(), EntityAttention(heads=4), {}),
    "stream-widened": (EntityAttention(), EntityAttention(width=12), {}),
    "entity-features-and-actions-added": (
        EntityAttention(),
        EntityAttention(actions=3),
        {"inputs": (FEATS3, FEATS4), "outputs": (A2, A3)},
    ),
}


@pytest.mark.parametrize("change", list(EXACT))
def test_attention_changes_are_exact(change):
    old_m, new_m, kw = EXACT[change]
    n_feats = (3, 4) if "inputs" in kw else (3, 3)
    x, old, plan, out = _surgery(old_m, new_m, n_feats, **kw)
    x_new = embed(x, *kw["inputs"]) if "inputs" in kw else x
    outputs = {0: kw["outputs"]} if "outputs" in kw else {}
    compare_outputs(old_m.apply(old, x), new_m.apply(out, x_new), outputs, 1e-5)
    assert not plan.warnings, plan.warnings


def test_a_new_head_replicates_an_old_one_and_shares_its_output_rows():
    equal = jsurgery.init.net2net(split="equal")  # the head and its replica read half each
    _, old, _, out = _surgery(EntityAttention(), EntityAttention(heads=3), new_hidden=equal)
    o, n = old["params"]["attn"], out["params"]["attn"]
    for name in ("query", "key", "value"):
        np.testing.assert_array_equal(n[name]["kernel"][:, :2], o[name]["kernel"])
        np.testing.assert_array_equal(n[name]["kernel"][:, 2], o[name]["kernel"][:, 0])
    rows = np.asarray(n["out"]["kernel"])  # (heads, head_dim, features)
    np.testing.assert_allclose(rows[0], o["out"]["kernel"][0] / 2, rtol=1e-6)
    np.testing.assert_allclose(rows[2], o["out"]["kernel"][0] / 2, rtol=1e-6)
    np.testing.assert_array_equal(rows[1], o["out"]["kernel"][1])


def test_head_width_change_is_named_in_the_warnings():
    """q.k sums over head_dim and is scaled by 1/sqrt(head_dim): no start keeps the logits."""
    x, old, plan, out = _surgery(EntityAttention(), EntityAttention(head_dim=6))
    assert any("head_dim" in w for w in plan.warnings), plan.warnings
    report = jsurgery.check_preservation(
        EntityAttention().apply, old, EntityAttention(head_dim=6).apply, out, x, plan
    )
    assert not report.ok(1e-5)


REPLICAS = {"new_hidden": jsurgery.init.net2net(normalised=False)}


@pytest.mark.parametrize("options", [{}, REPLICAS], ids=["default", "replicas"])
def test_a_stream_widened_under_a_layernorm(options):
    """The default keeps the norm's statistics (exact up to its epsilon); plain replicas change
    them, and the plan names the norm's reduction over the stream."""
    old_m, new_m = EntityAttention(norm=True), EntityAttention(width=12, norm=True)
    x, old, plan, out = _surgery(old_m, new_m, **options)
    gap = np.abs(np.asarray(new_m.apply(out, x)) - np.asarray(old_m.apply(old, x))).max()
    if options:
        assert any("reduce" in w and "embed" in w for w in plan.warnings), plan.warnings
    else:
        assert gap <= 1e-5 * (1 + np.abs(np.asarray(old_m.apply(old, x))).max()), gap


class EntityMixer(nn.Module):
    """DenseGeneral over (entities, features) at once: kernel (entities, features, width)."""

    width: int = 6

    @nn.compact
    def __call__(self, entities):
        h = nn.relu(nn.DenseGeneral(self.width, axis=(-2, -1), name="mix")(entities))
        return nn.Dense(2, name="pi")(h)


def test_dense_general_over_two_axes_features_added_and_widened_is_exact():
    x, old, plan, out = _surgery(EntityMixer(), EntityMixer(9), (3, 4), inputs=(FEATS3, FEATS4))
    assert plan.input_specs[0][0] == 2  # the feature axis; entities keep their positions
    kernel = np.asarray(out["params"]["mix"]["kernel"])
    np.testing.assert_array_equal(kernel[:, FEATS4.index("team")], 0.0)
    compare_outputs(
        EntityMixer().apply(old, x), EntityMixer(9).apply(out, embed(x, FEATS3, FEATS4)), {}, 1e-5
    )


class RmsStream(nn.Module):
    """An RMSNorm over the stream before the policy head."""

    width: int = 8

    @nn.compact
    def __call__(self, entities):
        x = nn.Dense(self.width, name="embed")(entities)
        return nn.Dense(2, name="pi")(nn.RMSNorm(name="rms")(x).mean(axis=1))


def test_a_stream_widened_under_an_rmsnorm_keeps_the_old_outputs():
    """New units start at zero and the norm's scales take sqrt(d / D): the mean square, and with
    it every old unit, is kept (up to the norm's epsilon)."""
    x, old, plan, out = _surgery(RmsStream(), RmsStream(width=12))
    compare_outputs(RmsStream().apply(old, x), RmsStream(width=12).apply(out, x), {}, 1e-5)
