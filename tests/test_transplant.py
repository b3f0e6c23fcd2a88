"""Contract suite: every layer kind and init option; function preserved where promised."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from surgery_models import (
    CNN,
    MLP,
    TokenNet,
    apply_fn,
    forward,
    init,
    mlp,
    rand,
    randomise_biases,
)

import jsurgery

IN4 = ["x", "x_dot", "theta", "theta_dot"]

# (id, old model, new model, old input shape, new input shape, make_plan kwargs, exact)
CASES = [
    ("mlp-inputs-added-zeros", MLP((16,), 2), MLP((16,), 2), 2, 4,
     dict(inputs=(["x_dot", "theta"], IN4), new_inputs="zeros"), True),
    ("mlp-inputs-permuted", MLP((8,), 2), MLP((8,), 2), 4, 4,
     dict(inputs=(IN4, IN4[::-1])), True),
    ("mlp-inputs-removed-and-added", MLP((8,), 2), MLP((8,), 2), 3, 3,
     dict(inputs=(["a", "b", "c"], ["c", "d", "a"]), new_inputs="zeros"), False),
    ("mlp-hidden-zero-fanout", MLP((4, 4), 2), MLP((16, 16), 2), 3, 3,
     dict(new_hidden="zero_fanout"), True),
    ("mlp-hidden-net2net", MLP((4, 4), 2), MLP((16, 16), 2), 3, 3,
     dict(new_hidden="net2net"), True),
    ("mlp-hidden-net2net-noise", MLP((4, 4), 2), MLP((16, 16), 2), 3, 3,
     dict(new_hidden="net2net", net2net_noise=0.01), False),
    ("mlp-hidden-template", MLP((4, 4), 2), MLP((16, 16), 2), 3, 3,
     dict(new_hidden="template"), False),
    ("mlp-hidden-permuted-by-ids", MLP((4,), 2), MLP((4,), 2), 3, 3,
     dict(hidden={"Dense_0": ([0, 1, 2, 3], [3, 1, 0, 2])}), True),
    ("mlp-hidden-removed", MLP((8,), 2), MLP((5,), 2), 3, 3, {}, False),
    ("mlp-outputs-added-zeros", MLP((8,), 2), MLP((8,), 4), 3, 3,
     dict(outputs=(["left", "right"], ["noop", "left", "main", "right"]), new_outputs="zeros"),
     True),
    ("mlp-outputs-added-pessimistic", MLP((8,), 2), MLP((8,), 3), 3, 3,
     dict(outputs=(["torque+1", "noop"], ["torque-1", "noop", "torque+1"]),
          new_outputs="pessimistic"), True),
    ("mlp-outputs-removed", MLP((8,), 3), MLP((8,), 2), 3, 3,
     dict(outputs=(["a", "b", "c"], ["c", "a"])), True),
    ("mlp-layer-inserted-identity", MLP((8,), 2), MLP((8, 8), 2), 3, 3, {}, True),
    ("mlp-layer-inserted-two", MLP((8,), 2), MLP((8, 8, 8), 2), 3, 3, {}, True),
    ("mlp-layer-inserted-widened", MLP((4,), 2), MLP((8, 8), 2), 3, 3,
     dict(new_hidden="net2net"), True),
    ("mlp-layer-removed", MLP((8, 8), 2), MLP((8,), 2), 3, 3, {}, False),
    ("mlp-layernorm-permuted", MLP((6,), 2, "layer"), MLP((6,), 2, "layer"), 3, 3,
     dict(hidden={"Dense_0": (list("abcdef"), list("fedcba"))}), True),
    ("mlp-batchnorm-net2net", MLP((4,), 2, "batch"), MLP((9,), 2, "batch"), 3, 3,
     dict(new_hidden="net2net"), True),
    ("cnn-input-channel-added", CNN((4,), (), 3), CNN((4,), (), 3), (6, 6, 2), (6, 6, 3),
     dict(inputs=(["r", "g"], ["r", "g", "b"]), new_inputs="zeros"), True),
    ("cnn-channels-net2net-flatten", CNN((3, 4), (8,), 3), CNN((5, 7), (8,), 3),
     (6, 6, 1), (6, 6, 1), dict(new_hidden="net2net"), True),
    ("cnn-channels-permuted-flatten", CNN((4,), (), 2), CNN((4,), (), 2), (5, 5, 1), (5, 5, 1),
     dict(hidden={"Conv_0": ([0, 1, 2, 3], [2, 0, 3, 1])}), True),
    ("cnn-channels-removed-flatten", CNN((4,), (), 2), CNN((3,), (), 2), (5, 5, 1), (5, 5, 1),
     {}, False),
    ("cnn-conv-inserted-dirac", CNN((4,), (6,), 2), CNN((4, 4), (6,), 2), (5, 5, 2), (5, 5, 2),
     {}, True),
    ("cnn-conv-inserted-corner", CNN((4,), (6,), 2), CNN((4, 4), (6,), 2), (5, 5, 2), (5, 5, 2),
     dict(new_layers="identity_corner"), False),
    ("cnn-conv1d-net2net", CNN((3,), (), 2, window=(3,)), CNN((6,), (), 2, window=(3,)),
     (7, 2), (7, 2), dict(new_hidden="net2net"), True),
    ("cnn-conv3d-zero-fanout", CNN((2,), (), 2, window=(3, 3, 3)),
     CNN((4,), (), 2, window=(3, 3, 3)), (3, 3, 3, 1), (3, 3, 3, 1),
     dict(new_hidden="zero_fanout"), True),
]


def _build(case):
    _, old_m, new_m, old_in, new_in, kwargs, exact = case
    norm_stats = getattr(old_m, "norm", None) == "batch"
    old = randomise_biases(init(old_m, old_in, 0, norm_stats), 1)
    new = init(new_m, new_in, 1, norm_stats)
    plan = jsurgery.make_plan(old, new, **kwargs)
    return old_m, new_m, old, new, plan, exact, old_in


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_function_preserved_where_promised(case):
    old_m, new_m, old, new, plan, exact, old_in = _build(case)
    out = jsurgery.transplant(old, new, plan)
    assert jax.tree.structure(out) == jax.tree.structure(new)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(new), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    shape = (8, *old_in) if isinstance(old_in, tuple) else (8, old_in)
    report = jsurgery.check_preservation(apply_fn(old_m), old, apply_fn(new_m), out, rand(shape),
                                         plan)
    if exact:
        assert report.max_abs_diff < 1e-5, str(report)
    else:
        assert report.max_abs_diff > 1e-5, str(report)


@pytest.mark.parametrize("case", CASES[:6], ids=[c[0] for c in CASES[:6]])
def test_jit_and_no_jit_agree(case):
    _, _, old, new, plan, _, _ = _build(case)
    out = jsurgery.transplant(old, new, plan)
    with jax.disable_jit():
        eager = jsurgery.transplant(old, new, plan)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), out, eager)


def test_second_call_does_not_retrace():
    _, _, old, new, plan, _, _ = _build(CASES[4])
    from jsurgery.transplant import _apply

    jsurgery.transplant(old, new, plan)
    size = _apply._cache_size()
    other = jax.tree.map(lambda x: x + 1, old)
    jsurgery.transplant(other, new, plan)
    jsurgery.transplant(old, jax.tree.map(lambda x: x * 2, new), plan)
    assert _apply._cache_size() == size


def _mlp_io(n_out_old, n_out_new, outputs, new_outputs, **kwargs):
    old_m, new_m = MLP((8,), n_out_old), MLP((8,), n_out_new)
    old = randomise_biases(init(old_m, 3, 0), 1)
    new = init(new_m, 3, 1)
    plan = jsurgery.make_plan(old, new, outputs=outputs, new_outputs=new_outputs, **kwargs)
    out = jsurgery.transplant(old, new, plan)
    x = rand((16, 3))
    return apply_fn(old_m)(old, x), apply_fn(new_m)(out, x), plan


def test_new_output_options_give_what_they_promise():
    outs = (["left", "right"], ["noop", "left", "main", "right"])
    y_old, y, _ = _mlp_io(2, 4, outs, {"noop": "left", "main": "pessimistic"}, pessimism=2.5)
    np.testing.assert_allclose(y[:, 0], y_old[:, 0], atol=1e-5)
    np.testing.assert_allclose(y[:, 2], y_old.mean(axis=1) - 2.5, atol=1e-5)
    y_old, y, _ = _mlp_io(2, 4, outs, "mean")
    np.testing.assert_allclose(y[:, 0], y_old.mean(axis=1), atol=1e-5)
    y_old, y, plan = _mlp_io(2, 4, outs, "zeros")
    np.testing.assert_allclose(y[:, [0, 2]], 0.0, atol=1e-6)
    assert "zero-initialised new Q-output is likely to be picked by argmax" in str(plan)


def test_embed_vocab_added_keeps_old_tokens():
    old_m, new_m = TokenNet(5, 2), TokenNet(7, 2)
    old = old_m.init(jax.random.key(0), jnp.zeros((1,), jnp.int32))
    new = new_m.init(jax.random.key(1), jnp.zeros((1,), jnp.int32))
    vocab_old, vocab_new = list("abcde"), list("xaebdcy")
    plan = jsurgery.make_plan(old, new, inputs=(vocab_old, vocab_new))
    out = jsurgery.transplant(old, new, plan)
    tok_old = jnp.arange(5)
    tok_new = jnp.asarray([vocab_new.index(t) for t in vocab_old])
    np.testing.assert_allclose(new_m.apply(out, tok_new), old_m.apply(old, tok_old), atol=1e-6)


def test_dtype_kept_bfloat16():
    old_m, new_m = MLP((4,), 2), MLP((8,), 3)
    cast = lambda t: jax.tree.map(lambda x: x.astype(jnp.bfloat16), t)
    old, new = cast(init(old_m, 3, 0)), cast(init(new_m, 3, 1))
    plan = jsurgery.make_plan(old, new, new_hidden="net2net", new_outputs="pessimistic")
    out = jsurgery.transplant(old, new, plan)
    assert {x.dtype for x in jax.tree.leaves(out)} == {jnp.dtype(jnp.bfloat16)}
    np.testing.assert_array_equal(
        out["params"]["Dense_0"]["kernel"][:, :4], old["params"]["Dense_0"]["kernel"]
    )


def test_vmap_over_seeds_with_batched_template():
    old_m, new_m = MLP((4, 4), 2), MLP((16, 16), 3)
    seeds = jnp.arange(3)
    olds = jax.jit(jax.vmap(lambda s: old_m.init(jax.random.key(s), jnp.ones((1, 2)))))(seeds)
    news = jax.jit(jax.vmap(lambda s: new_m.init(jax.random.key(s + 10), jnp.ones((1, 4)))))(seeds)
    one = lambda t: jax.tree.map(lambda x: x[0], t)
    plan = jsurgery.make_plan(one(olds), one(news), **jsurgery.PRESERVING,
                              inputs=(["x_dot", "theta"], IN4))
    batched = jax.vmap(lambda o, t: jsurgery.transplant(o, t, plan))(olds, news)
    fixed = jax.vmap(lambda o: jsurgery.transplant(o, one(news), plan))(olds)
    for s in range(3):
        pick = lambda t, s=s: jax.tree.map(lambda x: x[s], t)
        single = jsurgery.transplant(pick(olds), pick(news), plan)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), pick(batched),
                     single)
    assert jax.tree.structure(fixed) == jax.tree.structure(batched)
    x = rand((5, 2))
    for s in range(3):
        pick = lambda t, s=s: jax.tree.map(lambda v: v[s], t)
        y_old = forward(pick(olds), x)
        y_new = forward(pick(batched), np.asarray(plan.embed_inputs(x)))
        np.testing.assert_allclose(y_new[:, :2], y_old, atol=1e-5)


def test_linen_inner_params_dict_and_frozen_dict():
    old_m, new_m = MLP((4,), 2), MLP((6,), 2)
    old, new = init(old_m, 3, 0)["params"], init(new_m, 3, 1)["params"]
    plan = jsurgery.make_plan(old, new, new_hidden="net2net")
    out = jsurgery.transplant(old, new, plan)
    assert isinstance(out, dict) and set(out) == {"Dense_0", "Dense_1"}
    x = rand((4, 3))
    np.testing.assert_allclose(apply_fn(new_m)({"params": out}, x),
                               apply_fn(old_m)({"params": old}, x),
                               atol=1e-5)
    from flax.core import freeze

    out_frozen = jsurgery.transplant(freeze(old), freeze(new), plan)
    assert type(out_frozen).__name__ == "FrozenDict"


def test_dense_10_follows_dense_2():
    rng = np.random.default_rng(0)
    old = dict(sorted(mlp(rng, 3, [4] * 11, 2).items()))  # as jax.tree returns it
    new = dict(sorted(mlp(rng, 3, [4] * 12, 2).items()))
    assert list(old)[:4] == ["Dense_0", "Dense_1", "Dense_10", "Dense_11"]
    with pytest.raises(jsurgery.PlanError, match="equally small"):
        jsurgery.make_plan(old, new)  # twelve equal layers: the inserted one could be any
    plan = jsurgery.make_plan(old, new, layers={"Dense_12": "Dense_11"})
    assert plan.layer_map["Dense_12"] == "Dense_11" and plan.layer_map["Dense_11"] is None
    assert plan.layer_map["Dense_10"] == "Dense_10"
    out = jsurgery.transplant(old, new, plan)
    x = rand((4, 3))
    np.testing.assert_allclose(forward(out, x), forward(old, x), atol=1e-5)
