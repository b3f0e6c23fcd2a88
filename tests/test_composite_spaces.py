"""Composite spaces. Axes split by a reshape into factors: GroupNorm widened by whole groups (linen
and NNX), heads added to an attention whose projections are reshaped to `(heads, head_dim)`, and
the warnings where a change breaks a group (a group width changed, IDs that split a group, a norm
over a concatenation whose part widened, a convolution window over a widened axis).
Concatenations: an observation sliced between two encoders and logits concatenated from two heads
follow the IDs given for the whole.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import jsurgery

X = jnp.asarray(np.random.default_rng(5).normal(size=(2, 5, 3)), jnp.float32)


def _perturbed(tree, seed):
    """Every parameter moved off its init (biases non-zero, scales not one) so every copy shows."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda v: v + jnp.asarray(0.3 * rng.normal(size=v.shape), v.dtype), tree)


class Grouped(nn.Module):
    """Conv channels under a GroupNorm, flattened into a policy head."""

    channels: int = 4
    num_groups: int | None = None
    group_size: int | None = 2

    @nn.compact
    def __call__(self, x):
        conv = nn.Conv(self.channels, (3,), name="conv")(x)
        h = nn.GroupNorm(num_groups=self.num_groups, group_size=self.group_size, name="gn")(conv)
        return nn.Dense(2, name="pi")(nn.relu(h).reshape(x.shape[0], -1))


def _surgery(old_m, new_m, x=X, **kw):
    """Perturbed old variables, the plan (PRESERVING unless `kw` says otherwise), the result."""
    old = _perturbed(old_m.init(jax.random.key(0), x), 0)
    new = new_m.init(jax.random.key(1), x)
    kw = {**jsurgery.PRESERVING, **kw}
    plan = jsurgery.make_plan(
        old, new, apply=(old_m.apply, new_m.apply), example=((x,), (x,)), **kw
    )
    out = jsurgery.transplant(old, new, plan)
    return old, plan, out


def _gap(old_m, old, new_m, out, x=X) -> float:
    return float(np.abs(np.asarray(new_m.apply(out, x)) - np.asarray(old_m.apply(old, x))).max())


def _channels(tree, path) -> np.ndarray:
    """A leaf with its channel axis first."""
    for k in path:
        tree = tree[k]
    return np.moveaxis(np.asarray(tree), -1, 0)


@pytest.mark.parametrize("new_hidden", ["net2net", "zero_fanout"])
def test_groupnorm_widened_by_a_whole_group_is_exact_and_copies_whole_groups(new_hidden):
    old_m, new_m = Grouped(), Grouped(6)
    # net2net with the fan-out halved between a group and its replica, as checked below
    rule = jsurgery.init.net2net(split="equal") if new_hidden == "net2net" else new_hidden
    old, plan, out = _surgery(old_m, new_m, new_hidden=rule)
    assert _gap(old_m, old, new_m, out) < 1e-5
    assert not plan.warnings, plan.warnings
    kernel_old = _channels(old, ("params", "conv", "kernel"))
    kernel_new = _channels(out, ("params", "conv", "kernel"))
    # the group the new channels (4, 5) replicate; -1 when they start fresh
    g = next(
        (g for g in (0, 1) if np.array_equal(kernel_new[4:], kernel_old[2 * g : 2 * g + 2])), -1
    )
    assert (g >= 0) == (new_hidden == "net2net")
    for path in (("params", "conv", "bias"), ("params", "gn", "scale"), ("params", "gn", "bias")):
        o, n = _channels(old, path), _channels(out, path)
        np.testing.assert_array_equal(n[:4], o)
        if g >= 0:
            np.testing.assert_array_equal(n[4:], o[2 * g : 2 * g + 2])
    # the flatten reads (position, channel) rows: 5 positions x 6 channels
    rows_old = np.asarray(old["params"]["pi"]["kernel"]).reshape(5, 4, 2)
    rows_new = np.asarray(out["params"]["pi"]["kernel"]).reshape(5, 6, 2)
    expected = np.concatenate([rows_old, np.zeros((5, 2, 2), np.float32)], axis=1)
    if g >= 0:  # the replicated group and its replica each read half of the old rows
        half = rows_old[:, 2 * g : 2 * g + 2] / 2
        expected[:, 2 * g : 2 * g + 2], expected[:, 4:] = half, half
    np.testing.assert_allclose(rows_new, expected, rtol=1e-6, atol=0)


def test_a_changed_group_width_is_named_in_the_warnings_and_is_not_exact():
    """Two groups of 2 become two groups of 3: each group's statistics gain a unit."""
    old_m, new_m = Grouped(num_groups=2, group_size=None), Grouped(6, 2, None)
    old, plan, out = _surgery(old_m, new_m)
    assert any("reduce_sum" in w and "1 new" in w for w in plan.warnings), plan.warnings
    assert _gap(old_m, old, new_m, out) > 1e-3


@pytest.mark.parametrize(
    "new_ids, kept",
    [("cdab", True), ("badc", True), ("acbd", False), ("abcdef", True), ("abcedf", False)],
)
def test_hidden_ids_on_grouped_channels_are_followed_and_split_groups_are_named(new_ids, kept):
    old_m, new_m = Grouped(), Grouped(len(new_ids))
    hidden = {"conv": (list("abcd"), list(new_ids))}
    old, plan, out = _surgery(old_m, new_m, hidden=hidden)
    o, n = (
        _channels(old, ("params", "conv", "kernel")),
        _channels(out, ("params", "conv", "kernel")),
    )
    for p, unit in enumerate(new_ids):
        if unit in "abcd":
            np.testing.assert_array_equal(n[p], o["abcd".index(unit)])
    warned = any("groups of 2" in w for w in plan.warnings)
    assert warned != kept, plan.warnings
    assert (_gap(old_m, old, new_m, out) < 1e-5) == kept


class GroupedNNX(nnx.Module):
    def __init__(self, channels: int, rngs: nnx.Rngs):
        self.conv = nnx.Conv(3, channels, (3,), rngs=rngs)
        self.gn = nnx.GroupNorm(channels, num_groups=None, group_size=2, rngs=rngs)
        self.pi = nnx.Linear(5 * channels, 2, rngs=rngs)

    def __call__(self, x):
        return self.pi(nnx.relu(self.gn(self.conv(x))).reshape(x.shape[0], -1))


def test_nnx_groupnorm_widened_by_a_whole_group_is_exact():
    graphdef, state = nnx.split(GroupedNNX(4, nnx.Rngs(0)))
    old = nnx.merge(graphdef, _perturbed(state, 0))
    new = GroupedNNX(6, nnx.Rngs(1))
    plan = jsurgery.make_plan(old, new, example=((X,), (X,)), **jsurgery.PRESERVING)
    out = jsurgery.transplant(old, new, plan)
    np.testing.assert_allclose(out(X), old(X), atol=1e-5, rtol=0)
    assert not plan.warnings, plan.warnings


def attention_policy(head_dim: int = 4):
    """Plain-JAX self-attention whose projections are reshaped to (heads, head_dim)."""

    def apply(p, x):
        b, n, _ = x.shape
        s = jnp.einsum("bnf,fd->bnd", x, p["embed"])

        def heads(w):
            return (s @ w).reshape(b, n, -1, head_dim)

        q, k, v = heads(p["q"]), heads(p["k"]), heads(p["v"])
        att = jax.nn.softmax(jnp.einsum("bnhd,bmhd->bhnm", q, k) / np.sqrt(head_dim), axis=-1)
        o = jnp.einsum("bhnm,bmhd->bnhd", att, v).reshape(b, n, -1)
        return jax.nn.relu(s + o @ p["o"]).mean(axis=1) @ p["pi"]

    return apply


def _attention_params(n_heads, seed, head_dim=4, width=6):
    rng = np.random.default_rng(seed)
    qkv = n_heads * head_dim
    shapes = {"embed": (3, width), "q": (width, qkv), "k": (width, qkv), "v": (width, qkv)}
    shapes |= {"o": (qkv, width), "pi": (width, 2)}
    return {k: jnp.asarray(0.5 * rng.normal(size=s), jnp.float32) for k, s in shapes.items()}


def test_a_head_added_to_a_reshaped_projection_is_exact_and_replicates_a_whole_head():
    old, new, apply = _attention_params(2, 0), _attention_params(3, 1), attention_policy()
    plan = jsurgery.make_plan(old, new, apply=apply, example=((X,), (X,)), **jsurgery.PRESERVING)
    out = jsurgery.transplant(old, new, plan)
    np.testing.assert_allclose(apply(out, X), apply(old, X), atol=1e-5, rtol=0)
    assert not plan.warnings, plan.warnings
    q_old = np.asarray(old["q"]).reshape(6, 2, 4)
    q_new = np.asarray(out["q"]).reshape(6, 3, 4)
    np.testing.assert_array_equal(q_new[:, :2], q_old)
    assert any(np.array_equal(q_new[:, 2], q_old[:, h]) for h in (0, 1))


def test_a_changed_head_width_in_a_reshaped_projection_is_named():
    """Head width 4 -> 6 with two heads kept: q.k sums over the widened axis."""
    old, new = _attention_params(2, 0), _attention_params(2, 1, head_dim=6)
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(attention_policy(4), attention_policy(6)),
        example=((X,), (X,)),
        **jsurgery.PRESERVING,
    )
    assert any("dot_general of two activations" in w for w in plan.warnings), plan.warnings


class NormedConcat(nn.Module):
    """A LayerNorm over the concatenation of two encoders."""

    a: int = 3

    @nn.compact
    def __call__(self, x):
        h = jnp.concatenate([nn.Dense(self.a, name="enc_a")(x), nn.Dense(2, name="enc_b")(x)], -1)
        return nn.Dense(2, name="pi")(nn.LayerNorm(name="ln")(h))


def test_a_norm_over_a_concatenation_whose_part_widened_is_named():
    old_m, new_m = NormedConcat(), NormedConcat(5)
    old, plan, out = _surgery(old_m, new_m, X[:, 0])
    assert any("composite" in w and "enc_a" in w for w in plan.warnings), plan.warnings
    assert _gap(old_m, old, new_m, out, X[:, 0]) > 1e-3


class Decoder(nn.Module):
    """A Dense output reshaped into a (rows, 4) map that a convolution slides over."""

    rows: int = 3

    @nn.compact
    def __call__(self, x):
        grid = nn.Dense(self.rows * 4, name="grid")(x).reshape(x.shape[0], self.rows, 4, 1)
        return nn.Dense(2, name="pi")(nn.Conv(2, (3, 3), name="conv")(grid).mean(axis=(1, 2)))


def test_a_convolution_window_over_a_widened_split_axis_is_named():
    """New rows of the map are new units of a split factor, and the window mixes them in."""
    _, plan, _ = _surgery(Decoder(), Decoder(4), X[:, 0])
    assert any("conv_general_dilated" in w for w in plan.warnings), plan.warnings


def sliced_policy(p, x):
    """Two encoders, each reading its own slice of the observation."""
    cut = p["wa"].shape[0]
    h = jnp.concatenate([jnp.tanh(x[..., :cut] @ p["wa"]), jnp.tanh(x[..., cut:] @ p["wb"])], -1)
    return h @ p["pi"]


def _sliced(n_a, n_b, seed):
    rng = np.random.default_rng(seed)
    shapes = {"wa": (n_a, 3), "wb": (n_b, 3), "pi": (6, 2)}
    return {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}


@pytest.mark.parametrize(
    "new_ids, n_a",
    [("abecd", 3), ("baecd", 3), ("abcde", 2), ("abdce", 2), (None, 2), ("acbde", 3)],
)
def test_a_sliced_observation_follows_the_input_ids_in_every_slice(new_ids, n_a):
    """New features read with zero weights, permuted ones where the IDs put them, per slice."""
    old, new = _sliced(2, 2, 0), _sliced(n_a, 5 - n_a, 1)
    ids = None if new_ids is None else (list("abcd"), list(new_ids))
    new_ids = new_ids or "abcde"  # by position: the new feature is the last
    x4 = jnp.asarray(np.random.default_rng(2).normal(size=(6, 4)), jnp.float32)
    x5 = np.zeros((6, 5), np.float32)
    for i, u in enumerate(new_ids):
        if u in "abcd":
            x5[:, i] = x4[:, "abcd".index(u)]
    kw = {} if ids is None else {"inputs": ids}
    plan = jsurgery.make_plan(
        old, new, apply=sliced_policy, example=((x4,), (x5,)), **kw, **jsurgery.PRESERVING
    )
    out = jsurgery.transplant(old, new, plan)
    rows_old = np.concatenate([old["wa"], np.zeros((1, 3)), old["wb"]])  # a, b, _, c, d
    rows_new = dict(zip(new_ids, np.concatenate([out["wa"], out["wb"]]), strict=True))
    in_a_old, in_a_new = set("ab"), set(new_ids[:n_a])
    for u, row in rows_new.items():
        kept = u in "abcd" and ((u in in_a_old) == (u in in_a_new))
        expected = rows_old["ab_cd".index(u)] if kept else np.zeros(3)
        np.testing.assert_array_equal(row, expected, err_msg=u)
    moved = [u for u in "abcd" if (u in in_a_old) != (u in in_a_new)]
    gap = float(np.abs(sliced_policy(out, x5) - sliced_policy(old, x4)).max())
    assert (gap < 1e-5) == (not moved), gap


class TwoHeads(nn.Module):
    """Logits concatenated from two heads (two groups of actions)."""

    a: int = 2

    @nn.compact
    def __call__(self, x):
        h = nn.tanh(nn.Dense(4, name="torso")(x))
        return jnp.concatenate([nn.Dense(self.a, name="pa")(h), nn.Dense(2, name="pb")(h)], -1)


def _two_heads(**kw):
    old, plan, out = _surgery(TwoHeads(), TwoHeads(3), X[:, 0], **kw)
    return X[:, 0], old, plan, out


ACTIONS = (["left", "right", "up", "down"], ["left", "noop", "right", "up", "down"])


def test_ids_on_concatenated_logits_reach_each_head():
    x, old, plan, out = _two_heads(outputs=ACTIONS)
    y_old, y_new = np.asarray(TwoHeads().apply(old, x)), np.asarray(TwoHeads(3).apply(out, x))
    np.testing.assert_allclose(y_new[:, [0, 2, 3, 4]], y_old, atol=1e-5, rtol=0)
    # the new action is pessimistic within its head: the mean of that head's old columns, lowered
    o, n = old["params"]["pa"], out["params"]["pa"]
    np.testing.assert_allclose(n["kernel"][:, 1], np.mean(o["kernel"], axis=1), rtol=1e-6)
    assert float(n["bias"][1]) < float(np.mean(o["bias"]))


def test_conflicting_ids_for_one_head_of_concatenated_logits_are_refused():
    hidden = {"pa": (["left", "right"], ["left", "right", "noop"])}
    with pytest.raises(jsurgery.PlanError) as info:
        _two_heads(outputs=ACTIONS, hidden=hidden)
    for word in ("`outputs[1] (new IDs)", "hidden['pa'][1]", "noop"):
        assert word in str(info.value), (word, str(info.value))


class MaybeGrouped(nn.Module):
    """Conv channels with or without a GroupNorm, flattened into a policy head."""

    norm: bool
    channels: int = 4

    @nn.compact
    def __call__(self, x):
        h = nn.Conv(self.channels, (3,), name="conv")(x)
        h = nn.GroupNorm(num_groups=2, name="gn")(h) if self.norm else h
        return nn.Dense(2, name="pi")(nn.relu(h).reshape(x.shape[0], -1))


def test_a_groupnorm_inserted_is_planned_and_named_in_the_warnings():
    """The new norm splits channels the old network kept whole: they are planned as one space,
    every old weight copied, and the norm's template scale is named as not exact."""
    old_m, new_m = MaybeGrouped(False), MaybeGrouped(True, 6)
    old, plan, out = _surgery(old_m, new_m)
    assert plan.layer_map["gn"] is None
    assert [w for w in plan.warnings if "gn/scale" in w and "not exact" in w], plan.warnings
    kernel_old = _channels(old, ("params", "conv", "kernel"))
    np.testing.assert_array_equal(_channels(out, ("params", "conv", "kernel"))[:4], kernel_old)
    assert _gap(old_m, old, new_m, out) > 1e-3


def test_a_groupnorm_removed_is_planned_and_named_in_the_warnings():
    old_m, new_m = MaybeGrouped(True), MaybeGrouped(False)
    old, plan, out = _surgery(old_m, new_m)
    assert any("not carried over" in w and "gn" in w for w in plan.warnings), plan.warnings
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(out["params"]["conv"][name], old["params"]["conv"][name])


def per_head_output(p, x):
    """Projections reshaped to (heads, 2) and an output kernel (heads, 2, features) per head."""
    b, n, _ = x.shape
    q, k, v = ((x @ p[name]["kernel"]).reshape(b, n, -1, 2) for name in "qkv")
    att = jax.nn.softmax(jnp.einsum("bnhd,bmhd->bhnm", q, k), axis=-1)
    o = jnp.einsum("bhnm,bmhd->bnhd", att, v)
    return jnp.einsum("bnhd,hdf->bnf", o, p["o"]["kernel"]).mean(axis=1)


def test_ids_for_a_split_axis_whose_factors_other_kernels_read_are_refused():
    """IDs on q's 4 units cannot say how to move the output kernel's per-head rows."""
    rng = np.random.default_rng(0)
    shapes = {"q": (3, 4), "k": (3, 4), "v": (3, 4), "o": (2, 2, 3)}
    params = {
        n: {"kernel": jnp.asarray(rng.normal(size=s), jnp.float32)} for n, s in shapes.items()
    }
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(
            params,
            params,
            apply=per_head_output,
            example=((X,), (X,)),
            hidden={"q": (list("abcd"), list("cdab"))},
        )
    for word in ("hidden['q']", "reshape splits", "[2, 2]"):
        assert word in str(info.value), (word, str(info.value))


class Distributional(nn.Module):
    """A C51-style head: one Dense output reshaped to (actions, atoms)."""

    actions: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(8, name="torso")(x))
        return nn.Dense(self.actions * 5, name="head")(h).reshape(x.shape[0], self.actions, 5)


def test_an_action_added_to_a_reshaped_distributional_head_keeps_the_old_actions():
    """The split action axis is the output's units: the old actions' atom logits are exact, and
    the pessimistic new action puts (almost) all its probability on the first atom."""
    x = X[:, 0]
    old, _, out = _surgery(Distributional(2), Distributional(3), x)
    y_old = np.asarray(Distributional(2).apply(old, x))
    y_new = np.asarray(Distributional(3).apply(out, x))
    np.testing.assert_allclose(y_new[:, :2], y_old, atol=1e-5, rtol=0)
    assert np.all(np.asarray(jax.nn.softmax(y_new[:, 2], axis=-1))[:, 0] > 0.999)
