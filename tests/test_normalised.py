"""Widening units that a LayerNorm or an RMSNorm reads (PQN, SimBa, pre-LN transformers), judged
by forward passes of the old and new networks on random inputs and by index arithmetic written
here: the default PRESERVING recipe keeps the norm's statistics, so the old outputs come back up
to the norm's epsilon, and its new units learn."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import jsurgery

REL = 1e-5  # max |new - old| / max |old|


class PQN(nn.Module):
    """(Dense -> norm -> relu) per hidden width, then Dense(3); `act_first`: relu before norm."""

    widths: tuple
    norm: str = "layer"
    act_first: bool = False

    @nn.compact
    def __call__(self, x):
        for w in self.widths:
            x = nn.Dense(w)(x)
            norm = nn.LayerNorm() if self.norm == "layer" else nn.RMSNorm()
            x = norm(nn.relu(x)) if self.act_first else nn.relu(norm(x))
        return nn.Dense(3)(x)


class SimBa(nn.Module):
    """Dense embedding, pre-LN residual MLP blocks, a final LayerNorm, Dense head."""

    width: int

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.width)(x)
        for _ in range(2):
            h = nn.relu(nn.Dense(4 * self.width)(nn.LayerNorm()(x)))
            x = x + nn.Dense(self.width)(h)
        return nn.Dense(3)(nn.LayerNorm()(x))


class BRO(nn.Module):
    """BroNet: Dense -> LayerNorm -> relu, then residual blocks x + LN(Dense(relu(LN(Dense(x)))));
    `final`: a LayerNorm over the stream before the head."""

    width: int
    final: bool = False

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.LayerNorm()(nn.Dense(self.width)(x)))
        for _ in range(2):
            h = nn.relu(nn.LayerNorm()(nn.Dense(self.width)(x)))
            x = x + nn.LayerNorm()(nn.Dense(self.width)(h))
        return nn.Dense(3)(nn.LayerNorm()(x) if self.final else x)


class Transformer(nn.Module):
    """Pre-LN encoder on (tokens, features): attention and GELU MLP blocks, final LayerNorm."""

    width: int
    heads: int
    head_dim: int = 8
    blocks: int = 1

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(self.width)(x)
        for _ in range(self.blocks):
            h = nn.LayerNorm()(x)
            attention = nn.MultiHeadDotProductAttention(
                num_heads=self.heads, qkv_features=self.heads * self.head_dim
            )
            x = x + attention(h, h)
            h = nn.LayerNorm()(x)
            x = x + nn.Dense(self.width)(nn.gelu(nn.Dense(2 * self.width)(h)))
        return nn.Dense(3)(nn.LayerNorm()(x))


def _perturbed(model, x, seed):
    """Initial variables with every leaf moved by 0.3 N(0, 1): norm scales away from one."""
    variables = model.init(jax.random.key(seed), x)
    leaves, tree = jax.tree.flatten(variables)
    keys = jax.random.split(jax.random.key(seed + 100), len(leaves))
    moved = [a + 0.3 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    return jax.tree.unflatten(tree, moved)


def _surgery(old, new, x, **options):
    """(old variables, transplanted new variables, plan) for a traced PRESERVING plan."""
    old_vars, template = _perturbed(old, x, 0), new.init(jax.random.key(1), x)
    kwargs = {**jsurgery.PRESERVING, **options}
    plan = jsurgery.make_plan(
        old_vars, template, apply=(old.apply, new.apply), example=((x[:1],), (x[:1],)), **kwargs
    )
    return old_vars, jsurgery.transplant(old_vars, template, plan), plan


def _moved(old, new, old_vars, new_vars, x) -> float:
    a, b = old.apply(old_vars, x), new.apply(new_vars, x)
    return float(jnp.max(jnp.abs(b - a)) / jnp.max(jnp.abs(a)))


X = jax.random.normal(jax.random.key(7), (64, 5))
XSEQ = jax.random.normal(jax.random.key(8), (16, 6, 5))
WIDENED = {
    "pqn-32-48": (PQN((32, 32)), PQN((48, 48)), X),
    "rmsnorm-24-40": (PQN((24,), "rms"), PQN((40,), "rms"), X),
    "simba-stream-16-24": (SimBa(16), SimBa(24), X),
    "bro-16-24": (BRO(16), BRO(24), X),
    "transformer-width-and-heads": (Transformer(16, 2), Transformer(24, 3), XSEQ),
}


@pytest.mark.parametrize("case", list(WIDENED), ids=list(WIDENED))
def test_widening_under_a_norm_keeps_the_old_outputs(case):
    old, new, x = WIDENED[case]
    old_vars, new_vars, plan = _surgery(old, new, x)
    assert _moved(old, new, old_vars, new_vars, x) <= REL
    assert all(p.kind == "exact" and p.up_to for p in plan.promises if not p.new)


def test_the_params_only_path_keeps_the_statistics_too():
    old, new = PQN((32, 32)), PQN((48, 48))
    old_vars, template = _perturbed(old, X, 0), new.init(jax.random.key(1), X)
    plan = jsurgery.make_plan(old_vars, template, **jsurgery.PRESERVING)
    assert _moved(old, new, old_vars, jsurgery.transplant(old_vars, template, plan), X) <= REL


def test_the_mean_expansion_by_index_arithmetic():
    """New units' incoming columns and biases are the old ones' means; the norm's old scales
    are multiplied by sqrt(d / D); its new biases are positive and distinct; the next layer reads
    new units with zero weights."""
    old, new = PQN((8,)), PQN((13,))
    old_vars, new_vars, _ = _surgery(old, new, X)
    o, n = old_vars["params"], new_vars["params"]
    k_old, k_new = o["Dense_0"]["kernel"], n["Dense_0"]["kernel"]
    np.testing.assert_allclose(k_new[:, :8], k_old, rtol=1e-6)
    mean_column = np.broadcast_to(np.mean(k_old, axis=1, keepdims=True), (5, 5))
    np.testing.assert_allclose(k_new[:, 8:], mean_column, rtol=1e-5)
    np.testing.assert_allclose(n["Dense_0"]["bias"][8:], np.mean(o["Dense_0"]["bias"]), rtol=1e-5)
    scale = n["LayerNorm_0"]["scale"][:8]
    np.testing.assert_allclose(scale, o["LayerNorm_0"]["scale"] * np.sqrt(8 / 13), rtol=1e-6)
    new_bias = np.asarray(n["LayerNorm_0"]["bias"][8:])
    assert np.all(new_bias > 0) and len(set(new_bias.tolist())) == 5
    np.testing.assert_array_equal(n["Dense_1"]["kernel"][8:], 0.0)


def test_nnx_layernorm_and_rmsnorm_are_exact_too():
    class Net(nnx.Module):
        def __init__(self, width, norm, rngs):
            self.dense = nnx.Linear(5, width, rngs=rngs)
            self.norm = norm(width, rngs=rngs)
            self.head = nnx.Linear(width, 3, rngs=rngs)

        def __call__(self, x):
            return self.head(nnx.relu(self.norm(self.dense(x))))

    for norm in (nnx.LayerNorm, nnx.RMSNorm):
        old, new = Net(8, norm, nnx.Rngs(0)), Net(13, norm, nnx.Rngs(1))
        old.norm.scale = nnx.Param(1.0 + 0.5 * jax.random.normal(jax.random.key(2), (8,)))
        plan = jsurgery.make_plan(old, new, example=((X[:1],), (X[:1],)), **jsurgery.PRESERVING)
        out = jsurgery.transplant(old, new, plan)
        assert float(jnp.max(jnp.abs(out(X) - old(X))) / jnp.max(jnp.abs(old(X)))) <= REL


def test_replicas_under_a_layernorm_move_the_outputs_and_say_so():
    """`net2net(normalised=False)`: plain replicas change the norm's statistics; the plan makes
    no promise for the old outputs and warns, naming the norm's reduction."""
    old, new = PQN((32, 32)), PQN((48, 48))
    replicas = jsurgery.init.net2net(normalised=False)
    old_vars, new_vars, plan = _surgery(old, new, X, new_hidden=replicas)
    assert _moved(old, new, old_vars, new_vars, X) > 1e-2
    assert plan.promises[0].kind == "nothing"
    assert any("LayerNorm_0" in w for w in plan.warnings), plan.warnings


def test_a_norm_after_the_activation_is_not_promised():
    """Dense -> relu -> LayerNorm: no new weights make the new units the mean of relu outputs,
    so the plan warns and the old outputs do move."""
    old, new = PQN((8,), act_first=True), PQN((13,), act_first=True)
    old_vars, new_vars, plan = _surgery(old, new, X)
    assert plan.promises[0].kind == "nothing" and plan.warnings
    assert _moved(old, new, old_vars, new_vars, X) > 1e-3


def test_a_norm_over_a_sum_of_norm_outputs_is_not_promised():
    """BRO with a final LayerNorm: the stream it reads is a sum of LayerNorm outputs, whose new
    units are those norms' biases, not the mean of the old units: warned, and the outputs move."""
    old, new = BRO(16, final=True), BRO(24, final=True)
    old_vars, new_vars, plan = _surgery(old, new, X)
    assert plan.promises[0].kind == "nothing" and plan.warnings
    assert _moved(old, new, old_vars, new_vars, X) > 1e-3


def test_a_wider_attention_head_is_not_promised():
    """Widening the head dimension changes q.k and its 1/sqrt(head_dim) scale: warned."""
    old, new = Transformer(16, 2, head_dim=8), Transformer(24, 2, head_dim=12)
    _, _, plan = _surgery(old, new, XSEQ)
    assert plan.promises[0].kind == "nothing"
    assert any("head_dim" in w for w in plan.warnings), plan.warnings


def _sgd_steps(model, variables, x, steps=3):
    """`steps` SGD steps of a random regression loss on `x`."""
    target = jax.random.normal(jax.random.key(9), (x.shape[0], 3))
    loss = lambda v: jnp.mean((model.apply(v, x) - target) ** 2)  # noqa: E731
    opt = optax.sgd(0.1)
    state = opt.init(variables)
    for _ in range(steps):
        updates, state = opt.update(jax.grad(loss)(variables), state)
        variables = optax.apply_updates(variables, updates)
    return variables


def test_new_units_under_a_layernorm_learn():
    """After 3 SGD steps every new unit's incoming column, norm bias and outgoing row moved
    (none is dead behind the relu), and no two units of the layer have equal incoming
    columns."""
    old, new = PQN((8,)), PQN((13,))
    _, start, _ = _surgery(old, new, X)
    trained = _sgd_steps(new, start, X)
    before, after = start["params"], trained["params"]
    new_unit_axes = [("Dense_0", "kernel", 1), ("LayerNorm_0", "bias", 0), ("Dense_1", "kernel", 0)]
    for layer, leaf, axis in new_unit_axes:
        a = np.take(np.asarray(before[layer][leaf]), range(8, 13), axis=axis)
        b = np.take(np.asarray(after[layer][leaf]), range(8, 13), axis=axis)
        moved = np.abs(b - a).reshape(-1, 5) if axis == 0 else np.abs(b - a)
        assert np.all(moved.max(axis=0 if axis else 1) > 0), f"{layer}/{leaf}: a unit is stuck"
    columns = np.asarray(after["Dense_0"]["kernel"]).T
    distances = np.abs(columns[:, None, :] - columns[None, :, :]).max(-1)
    assert np.all(distances[~np.eye(13, dtype=bool)] > 0), "two units are identical"


@pytest.mark.parametrize("case", ["pqn", "simba"])
def test_a_removed_input_is_folded_exactly_in_a_normalised_network(case):
    """Removing an observation held at 1.5 (`removed_inputs`), and widening at once: the new
    network on the other four computes the old one with the fifth held there."""
    old, new = (PQN((8,)), PQN((13,))) if case == "pqn" else (SimBa(8), SimBa(12))
    names = ["a", "b", "c", "d", "e"]
    old_vars = _perturbed(old, X, 0)
    template = new.init(jax.random.key(1), X[:, :4])
    plan = jsurgery.make_plan(
        old_vars,
        template,
        apply=(old.apply, new.apply),
        example=((X[:1],), (X[:1, :4],)),
        inputs=(names, names[:4]),
        removed_inputs={"e": 1.5},
        **jsurgery.PRESERVING,
    )
    held = X.at[:, 4].set(1.5)
    a = old.apply(old_vars, held)
    b = new.apply(jsurgery.transplant(old_vars, template, plan), X[:, :4])
    assert float(jnp.max(jnp.abs(b - a)) / jnp.max(jnp.abs(a))) <= REL


def test_an_equinox_layernorm_is_widened_exactly():
    """Equinox's LayerNorm (its epsilon set to flax's 1e-6: the default 1e-5, acting as
    1e-5 * 13 / 8, moves these outputs by about 3e-5)."""
    eqx = pytest.importorskip("equinox")

    class Net(eqx.Module):
        dense: eqx.nn.Linear
        norm: eqx.nn.LayerNorm
        head: eqx.nn.Linear

        def __init__(self, width, key):
            k1, k2 = jax.random.split(key)
            self.dense = eqx.nn.Linear(5, width, key=k1)
            self.norm = eqx.nn.LayerNorm(width, eps=1e-6)
            self.head = eqx.nn.Linear(width, 3, key=k2)

        def __call__(self, x):
            return self.head(jax.nn.relu(self.norm(self.dense(x))))

    old, new = Net(8, jax.random.key(0)), Net(13, jax.random.key(1))
    old = eqx.tree_at(
        lambda m: m.norm.weight, old, 1.0 + 0.5 * jax.random.normal(jax.random.key(2), (8,))
    )
    plan = jsurgery.make_plan(old, new, example=((X[0],), (X[0],)), **jsurgery.PRESERVING)
    out = jsurgery.transplant(old, new, plan)
    a, b = jax.vmap(old)(X), jax.vmap(out)(X)
    assert float(jnp.max(jnp.abs(b - a)) / jnp.max(jnp.abs(a))) <= REL


def _deviation_spread(params, old_width: int) -> np.ndarray:
    """Singular values (largest first, divided by it) of the new units' incoming columns minus
    their mean column: how many directions the new units of `Dense_0` differ in."""
    columns = np.asarray(params["Dense_0"]["kernel"], np.float64)[:, old_width:]
    s = np.linalg.svd(columns - columns.mean(axis=1, keepdims=True), compute_uv=False)
    return s / s[0]


def test_noise_under_a_layernorm_spreads_the_new_units_columns():
    """`net2net(noise=0.1)` under a LayerNorm: each new unit's incoming column is the old
    columns' mean times (1 + 0.1 N(0, 1)), entry by entry; the old columns are kept."""
    old, new = PQN((8,)), PQN((13,))
    noisy = jsurgery.init.net2net(noise=0.1)
    old_vars, new_vars, plan = _surgery(old, new, X, new_hidden=noisy)
    k_old = np.asarray(old_vars["params"]["Dense_0"]["kernel"])
    k_new = np.asarray(new_vars["params"]["Dense_0"]["kernel"])
    np.testing.assert_allclose(k_new[:, :8], k_old, rtol=1e-6)
    relative = k_new[:, 8:] / np.mean(k_old, axis=1, keepdims=True) - 1
    assert 0.05 < relative.std() < 0.2
    distances = np.abs(k_new[:, 8:, None] - k_new[:, None, 8:]).max(0)
    assert np.all(distances[~np.eye(5, dtype=bool)] > 0), "two new columns are equal"
    old_promise = plan.promises[0]
    assert old_promise.kind == "first order" and old_promise.scale == 0.1


def test_noise_under_a_layernorm_moves_the_old_outputs_to_first_order():
    """The old outputs move in proportion to the noise: ten times the noise, about ten times
    the change (a second-order change would be a hundred times)."""
    old, new = PQN((32, 32)), PQN((48, 48))
    moved = []
    for noise in (1e-3, 1e-2):
        rule = jsurgery.init.net2net(noise=noise)
        moved.append(_moved(old, new, *_surgery(old, new, X, new_hidden=rule)[:2], X))
    assert moved[0] > 1e-5  # ten times float32's rounding: a change, not rounding
    assert 5 < moved[1] / moved[0] < 20


def test_exact_new_units_under_a_layernorm_learn_as_one_and_noise_parts_them():
    """After 30 SGD steps the exact widening's new units still differ from their mean in one
    direction only (their columns' deviations have rank 1), while noise 0.1 leaves them
    differing in several."""
    old, new = PQN((8,)), PQN((13,))
    exact = _sgd_steps(new, _surgery(old, new, X)[1], X, steps=30)
    noisy_start = _surgery(old, new, X, new_hidden=jsurgery.init.net2net(noise=0.1))[1]
    noisy = _sgd_steps(new, noisy_start, X, steps=30)
    assert _deviation_spread(exact["params"], 8)[1] < 1e-3
    assert _deviation_spread(noisy["params"], 8)[1] > 1e-2
