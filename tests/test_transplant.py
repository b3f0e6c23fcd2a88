"""Contract suite: every layer kind and init option; every transplanted value where the unit IDs
say it goes, and the function preserved where promised."""

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
#: Net2Net with the fan-out divided by the number of copies, which `round_robin` spells out.
EQUAL = jsurgery.init.net2net(split="equal")

# (id, old model, new model, old input shape, new input shape, make_plan kwargs, exact)
CASES = [
    (
        "mlp-inputs-added-zeros",
        MLP((16,), 2),
        MLP((16,), 2),
        2,
        4,
        dict(inputs=(["x_dot", "theta"], IN4), new_inputs="zeros"),
        True,
    ),
    ("mlp-inputs-permuted", MLP((8,), 2), MLP((8,), 2), 4, 4, dict(inputs=(IN4, IN4[::-1])), True),
    (
        "mlp-inputs-removed-and-added",
        MLP((8,), 2),
        MLP((8,), 2),
        3,
        3,
        dict(inputs=(["a", "b", "c"], ["c", "d", "a"]), new_inputs="zeros"),
        False,
    ),
    (
        "mlp-hidden-zero-fanout",
        MLP((4, 4), 2),
        MLP((16, 16), 2),
        3,
        3,
        dict(new_hidden="zero_fanout"),
        True,
    ),
    (
        "mlp-hidden-net2net",
        MLP((4, 4), 2),
        MLP((16, 16), 2),
        3,
        3,
        dict(new_hidden=EQUAL),
        True,
    ),
    (
        "mlp-hidden-net2net-noise",
        MLP((4, 4), 2),
        MLP((16, 16), 2),
        3,
        3,
        dict(new_hidden=jsurgery.init.net2net(noise=0.01, split="equal")),
        False,
    ),
    (
        "mlp-hidden-template",
        MLP((4, 4), 2),
        MLP((16, 16), 2),
        3,
        3,
        dict(new_hidden="template"),
        False,
    ),
    (
        "mlp-hidden-permuted-by-ids",
        MLP((4,), 2),
        MLP((4,), 2),
        3,
        3,
        dict(hidden={"Dense_0": ([0, 1, 2, 3], [3, 1, 0, 2])}),
        True,
    ),
    ("mlp-hidden-removed", MLP((8,), 2), MLP((5,), 2), 3, 3, {}, False),
    (
        "mlp-outputs-added-zeros",
        MLP((8,), 2),
        MLP((8,), 4),
        3,
        3,
        dict(outputs=(["left", "right"], ["noop", "left", "main", "right"]), new_outputs="zeros"),
        True,
    ),
    (
        "mlp-outputs-added-pessimistic",
        MLP((8,), 2),
        MLP((8,), 3),
        3,
        3,
        dict(
            outputs=(["torque+1", "noop"], ["torque-1", "noop", "torque+1"]),
            new_outputs="pessimistic",
        ),
        True,
    ),
    (
        "mlp-outputs-removed",
        MLP((8,), 3),
        MLP((8,), 2),
        3,
        3,
        dict(outputs=(["a", "b", "c"], ["c", "a"])),
        True,
    ),
    ("mlp-layer-inserted-identity", MLP((8,), 2), MLP((8, 8), 2), 3, 3, {}, True),
    ("mlp-layer-inserted-two", MLP((8,), 2), MLP((8, 8, 8), 2), 3, 3, {}, True),
    (
        "mlp-layer-inserted-widened",
        MLP((4,), 2),
        MLP((8, 8), 2),
        3,
        3,
        dict(new_hidden=EQUAL),
        True,
    ),
    ("mlp-layer-removed", MLP((8, 8), 2), MLP((8,), 2), 3, 3, {}, False),
    (
        "mlp-layernorm-permuted",
        MLP((6,), 2, "layer"),
        MLP((6,), 2, "layer"),
        3,
        3,
        dict(hidden={"Dense_0": (list("abcdef"), list("fedcba"))}),
        True,
    ),
    (
        "mlp-batchnorm-net2net",
        MLP((4,), 2, "batch"),
        MLP((9,), 2, "batch"),
        3,
        3,
        dict(new_hidden=EQUAL),
        True,
    ),
    (
        "cnn-input-channel-added",
        CNN((4,), (), 3),
        CNN((4,), (), 3),
        (6, 6, 2),
        (6, 6, 3),
        dict(inputs=(["r", "g"], ["r", "g", "b"]), new_inputs="zeros"),
        True,
    ),
    (
        "cnn-channels-net2net-flatten",
        CNN((3, 4), (8,), 3),
        CNN((5, 7), (8,), 3),
        (6, 6, 1),
        (6, 6, 1),
        dict(new_hidden=EQUAL),
        True,
    ),
    (
        "cnn-channels-permuted-flatten",
        CNN((4,), (), 2),
        CNN((4,), (), 2),
        (5, 5, 1),
        (5, 5, 1),
        dict(hidden={"Conv_0": ([0, 1, 2, 3], [2, 0, 3, 1])}),
        True,
    ),
    (
        "cnn-channels-removed-flatten",
        CNN((4,), (), 2),
        CNN((3,), (), 2),
        (5, 5, 1),
        (5, 5, 1),
        {},
        False,
    ),
    (
        "cnn-conv-inserted-dirac",
        CNN((4,), (6,), 2),
        CNN((4, 4), (6,), 2),
        (5, 5, 2),
        (5, 5, 2),
        {},
        True,
    ),
    (
        "cnn-conv-inserted-corner",
        CNN((4,), (6,), 2),
        CNN((4, 4), (6,), 2),
        (5, 5, 2),
        (5, 5, 2),
        dict(new_layers="identity_corner"),
        False,
    ),
    (
        "cnn-conv1d-net2net",
        CNN((3,), (), 2, window=(3,)),
        CNN((6,), (), 2, window=(3,)),
        (7, 2),
        (7, 2),
        dict(new_hidden=EQUAL),
        True,
    ),
    (
        "cnn-conv3d-zero-fanout",
        CNN((2,), (), 2, window=(3, 3, 3)),
        CNN((4,), (), 2, window=(3, 3, 3)),
        (3, 3, 3, 1),
        (3, 3, 3, 1),
        dict(new_hidden="zero_fanout"),
        True,
    ),
]


def _build(case):
    _, old_m, new_m, old_in, new_in, kwargs, exact = case
    norm_stats = getattr(old_m, "norm", None) == "batch"
    old = randomise_biases(init(old_m, old_in, 0, norm_stats), 1)
    new = init(new_m, new_in, 1, norm_stats)
    plan = jsurgery.make_plan(old, new, **kwargs)
    return old_m, new_m, old, new, plan, exact, old_in


# Expected values by index arithmetic. A unit map lists, for each new unit of a space, the old unit
# it comes from (-1: a new unit). `place` writes the old weights of a (..., in, out) kernel into the
# template by the two maps; rows of new inputs are zeroed when `zero_in`, and `scale_in` multiplies
# each row (Net2Net's shared fan-out).


def _flat(variables):
    leaves = jax.tree_util.tree_flatten_with_path(variables)[0]
    return {
        "/".join(str(k.key) for k in path if k.key != "params"): np.asarray(leaf, np.float64)
        for path, leaf in leaves
    }


def place(template, old, in_map=None, out_map=None, zero_in=False, scale_in=None):
    out = np.array(template, np.float64)
    old = np.asarray(old, np.float64)
    n_in, n_out = out.shape[-2], out.shape[-1]
    in_map = np.arange(n_in) if in_map is None else np.asarray(in_map)
    out_map = np.arange(n_out) if out_map is None else np.asarray(out_map)
    scale = np.ones(n_in) if scale_in is None else np.asarray(scale_in, np.float64)
    for i in range(n_in):
        for j in range(n_out):
            if in_map[i] >= 0 and out_map[j] >= 0:
                out[..., i, j] = old[..., in_map[i], out_map[j]] * scale[i]
        if in_map[i] < 0 and zero_in:
            out[..., i, :] = 0.0
    return out


def place_vec(template, old, unit_map=None):
    out = np.array(template, np.float64)
    unit_map = np.arange(len(out)) if unit_map is None else unit_map
    for j, k in enumerate(unit_map):
        if k >= 0:
            out[j] = old[k]
    return out


def by_ids(old_ids, new_ids):
    return np.array([list(old_ids).index(i) if i in old_ids else -1 for i in new_ids])


def round_robin(n_old, n_new):
    """Net2Net's map: new unit j copies old unit j mod n_old; each old unit's fan-out is shared."""
    src = np.arange(n_new) % n_old
    return src, 1.0 / np.bincount(src)[src]


def flattened(src, positions, n_old):
    """A unit map over the rows a Dense layer reads from a flattened (positions, channels) map."""
    return np.concatenate([np.where(src >= 0, p * n_old + src, -1) for p in range(positions)])


def _same(o, t, names):
    return {name: o[name] for name in names}


def _dense_chain(o, t, layers, maps, zero_in=(), scales=None):
    """Each `layers[k]` reads space `maps[k]` and writes space `maps[k + 1]`."""
    scales = scales or {}
    expected = {}
    for k, layer in enumerate(layers):
        expected[f"{layer}/kernel"] = place(
            t[f"{layer}/kernel"],
            o[f"{layer}/kernel"],
            maps[k],
            maps[k + 1],
            zero_in=k in zero_in,
            scale_in=scales.get(k),
        )
        expected[f"{layer}/bias"] = place_vec(t[f"{layer}/bias"], o[f"{layer}/bias"], maps[k + 1])
    return expected


def expect_mlp_inputs(in_map):
    def expect(o, t):
        e = _dense_chain(o, t, ["Dense_0"], [in_map, None], zero_in=(0,))
        return {**e, **_same(o, t, ["Dense_1/kernel", "Dense_1/bias"])}

    return expect


def expect_widened(n_old, n_new, how):
    def expect(o, t):
        if how == "net2net":
            src, share = round_robin(n_old, n_new)
        else:
            src, share = np.where(np.arange(n_new) < n_old, np.arange(n_new), -1), None
        scales = {1: share, 2: share} if how == "net2net" else {}
        zero = (1, 2) if how == "zero_fanout" else ()
        return _dense_chain(
            o,
            t,
            ["Dense_0", "Dense_1", "Dense_2"],
            [None, src, src, None],
            zero_in=zero,
            scales=scales,
        )

    return expect


def expect_hidden_map(src, extra=()):
    def expect(o, t):
        e = _dense_chain(o, t, ["Dense_0", "Dense_1"], [None, np.asarray(src), None])
        for name in extra:
            e[name] = place_vec(t[name], o[name], src)
        return e

    return expect


def expect_outputs(out_map, extra=None):
    def expect(o, t):
        e = _dense_chain(o, t, ["Dense_0", "Dense_1"], [None, None, out_map])
        for j, (kernel, bias) in (extra or (lambda o: {}))(o).items():
            e["Dense_1/kernel"][:, j], e["Dense_1/bias"][j] = kernel, bias
        return e

    return expect


def identity_layer(o, t, layer, n):
    return {f"{layer}/kernel": np.eye(n), f"{layer}/bias": np.zeros(n)}


def renamed(o, pairs):
    leaves = ("kernel", "bias")
    return {f"{new}/{leaf}": o[f"{old}/{leaf}"] for new, old in pairs for leaf in leaves}


def expect_batchnorm(o, t):
    src, share = round_robin(4, 9)
    e = _dense_chain(o, t, ["Dense_0", "Dense_1"], [None, src, None], scales={1: share})
    for name in (
        "BatchNorm_0/scale",
        "BatchNorm_0/bias",
        "batch_stats/BatchNorm_0/mean",
        "batch_stats/BatchNorm_0/var",
    ):
        e[name] = place_vec(t[name], o[name], src)
    return e


def expect_cnn_channels(src, positions, n_old, scale=None, zero=False):
    """One conv layer whose channels follow `src`, then a Dense layer reading them flattened."""

    def expect(o, t):
        rows = flattened(np.asarray(src), positions, n_old)
        row_scale = None if scale is None else np.tile(scale, positions)
        return {
            "Conv_0/kernel": place(t["Conv_0/kernel"], o["Conv_0/kernel"], None, src),
            "Conv_0/bias": place_vec(t["Conv_0/bias"], o["Conv_0/bias"], src),
            "Dense_0/kernel": place(
                t["Dense_0/kernel"],
                o["Dense_0/kernel"],
                rows,
                None,
                zero_in=zero,
                scale_in=row_scale,
            ),
            "Dense_0/bias": o["Dense_0/bias"],
        }

    return expect


def expect_cnn_net2net_flatten(o, t):
    src0, share0 = round_robin(3, 5)
    src1, share1 = round_robin(4, 7)
    return {
        "Conv_0/kernel": place(t["Conv_0/kernel"], o["Conv_0/kernel"], None, src0),
        "Conv_0/bias": place_vec(t["Conv_0/bias"], o["Conv_0/bias"], src0),
        "Conv_1/kernel": place(t["Conv_1/kernel"], o["Conv_1/kernel"], src0, src1, scale_in=share0),
        "Conv_1/bias": place_vec(t["Conv_1/bias"], o["Conv_1/bias"], src1),
        "Dense_0/kernel": place(
            t["Dense_0/kernel"],
            o["Dense_0/kernel"],
            flattened(src1, 36, 4),
            None,
            scale_in=np.tile(share1, 36),
        ),
        **_same(o, t, ["Dense_0/bias", "Dense_1/kernel", "Dense_1/bias"]),
    }


def expect_dirac(at):
    def expect(o, t):
        kernel = np.zeros_like(t["Conv_1/kernel"])
        for c in range(4):
            kernel[(*at, c, c)] = 1.0
        return {
            **_same(o, t, ["Conv_0/kernel", "Conv_0/bias", "Dense_1/kernel", "Dense_1/bias"]),
            "Conv_1/kernel": kernel,
            "Conv_1/bias": np.zeros(4),
            "Dense_0/kernel": o["Dense_0/kernel"],
            "Dense_0/bias": o["Dense_0/bias"],
        }

    return expect


def _mean_output(o, pessimism):
    return {0: (o["Dense_1/kernel"].mean(axis=1), o["Dense_1/bias"].mean() - pessimism)}


def _widened_then_identity(o, t):
    src, share = round_robin(4, 8)
    e = _dense_chain(o, t, ["Dense_0"], [None, src])
    e["Dense_2/kernel"] = place(t["Dense_2/kernel"], o["Dense_1/kernel"], src, None, scale_in=share)
    e["Dense_2/bias"] = o["Dense_1/bias"]
    return {**e, **identity_layer(o, t, "Dense_1", 8)}


EXPECTED = {
    "mlp-inputs-added-zeros": expect_mlp_inputs(by_ids(["x_dot", "theta"], IN4)),
    "mlp-inputs-permuted": expect_mlp_inputs(by_ids(IN4, IN4[::-1])),
    "mlp-inputs-removed-and-added": expect_mlp_inputs(by_ids(list("abc"), list("cda"))),
    "mlp-hidden-zero-fanout": expect_widened(4, 16, "zero_fanout"),
    "mlp-hidden-net2net": expect_widened(4, 16, "net2net"),
    "mlp-hidden-net2net-noise": expect_widened(4, 16, "net2net"),
    "mlp-hidden-template": expect_widened(4, 16, "template"),
    "mlp-hidden-permuted-by-ids": expect_hidden_map(by_ids([0, 1, 2, 3], [3, 1, 0, 2])),
    "mlp-hidden-removed": expect_hidden_map(np.arange(5)),
    "mlp-outputs-added-zeros": expect_outputs(
        by_ids(["left", "right"], ["noop", "left", "main", "right"]),
        lambda o: {0: (0.0, 0.0), 2: (0.0, 0.0)},
    ),
    "mlp-outputs-added-pessimistic": expect_outputs(
        by_ids(["torque+1", "noop"], ["torque-1", "noop", "torque+1"]),
        lambda o: _mean_output(o, pessimism=1.0),  # make_plan's default pessimism
    ),
    "mlp-outputs-removed": expect_outputs(by_ids(list("abc"), list("ca"))),
    "mlp-layer-inserted-identity": lambda o, t: {
        **_same(o, t, ["Dense_0/kernel", "Dense_0/bias"]),
        **identity_layer(o, t, "Dense_1", 8),
        **renamed(o, [("Dense_2", "Dense_1")]),
    },
    "mlp-layer-inserted-two": lambda o, t: {
        **_same(o, t, ["Dense_0/kernel", "Dense_0/bias"]),
        **identity_layer(o, t, "Dense_1", 8),
        **identity_layer(o, t, "Dense_2", 8),
        **renamed(o, [("Dense_3", "Dense_1")]),
    },
    "mlp-layer-inserted-widened": _widened_then_identity,
    "mlp-layer-removed": lambda o, t: {
        **_same(o, t, ["Dense_0/kernel", "Dense_0/bias"]),
        **renamed(o, [("Dense_1", "Dense_2")]),  # the output layer keeps its weights
    },
    "mlp-layernorm-permuted": expect_hidden_map(
        by_ids(list("abcdef"), list("fedcba")), extra=("LayerNorm_0/scale", "LayerNorm_0/bias")
    ),
    "mlp-batchnorm-net2net": expect_batchnorm,
    "cnn-input-channel-added": lambda o, t: {
        "Conv_0/kernel": place(
            t["Conv_0/kernel"], o["Conv_0/kernel"], [0, 1, -1], None, zero_in=True
        ),
        **_same(o, t, ["Conv_0/bias", "Dense_0/kernel", "Dense_0/bias"]),
    },
    "cnn-channels-net2net-flatten": expect_cnn_net2net_flatten,
    "cnn-channels-permuted-flatten": expect_cnn_channels(
        by_ids([0, 1, 2, 3], [2, 0, 3, 1]), positions=25, n_old=4
    ),
    "cnn-channels-removed-flatten": expect_cnn_channels(np.arange(3), positions=25, n_old=4),
    "cnn-conv-inserted-dirac": expect_dirac((1, 1)),
    "cnn-conv-inserted-corner": expect_dirac((0, 2)),  # top-right corner of the 3x3 window
    "cnn-conv1d-net2net": expect_cnn_channels(
        round_robin(3, 6)[0], positions=7, n_old=3, scale=round_robin(3, 6)[1]
    ),
    "cnn-conv3d-zero-fanout": expect_cnn_channels(
        np.array([0, 1, -1, -1]), positions=27, n_old=2, zero=True
    ),
}
#: Leaves with Net2Net noise: the new units' incoming weights, within a few noise scales.
NOISY = {"mlp-hidden-net2net-noise": (("Dense_0/kernel", "Dense_1/kernel"), 0.01)}


def test_every_case_has_expected_values():
    assert set(EXPECTED) == {c[0] for c in CASES}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_transplanted_values_follow_the_unit_ids(case):
    name = case[0]
    _, _, old, new, plan, _, _ = _build(case)
    out = _flat(jsurgery.transplant(old, new, plan))
    expected = EXPECTED[name](_flat(old), _flat(new))
    assert set(expected) == set(out), name  # every leaf is checked
    noisy, noise = NOISY.get(name, ((), 0.0))
    for path, value in expected.items():
        value = np.broadcast_to(np.asarray(value, np.float64), out[path].shape)
        if path in noisy:
            tol = 6 * noise * np.abs(value) + 1e-6
            assert np.all(np.abs(out[path] - value) <= tol), path
            assert not np.allclose(out[path], value, atol=1e-7), f"{path}: no noise"
        else:
            np.testing.assert_allclose(out[path], value, atol=1e-6, err_msg=f"{name}: {path}")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_function_preserved_where_promised(case):
    old_m, new_m, old, new, plan, exact, old_in = _build(case)
    out = jsurgery.transplant(old, new, plan)
    assert jax.tree.structure(out) == jax.tree.structure(new)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(new), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    shape = (8, *old_in) if isinstance(old_in, tuple) else (8, old_in)
    report = jsurgery.check_preservation(
        apply_fn(old_m), old, apply_fn(new_m), out, rand(shape), plan
    )
    if exact:
        assert report.max_abs_diff < 1e-5, str(report)
    else:  # the values are checked in test_transplanted_values_follow_the_unit_ids
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
    from jsurgery.execute.transplant import _apply

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
    plan = jsurgery.make_plan(
        one(olds), one(news), **jsurgery.PRESERVING, inputs=(["x_dot", "theta"], IN4)
    )
    batched = jax.vmap(lambda o, t: jsurgery.transplant(o, t, plan))(olds, news)
    fixed = jax.vmap(lambda o: jsurgery.transplant(o, one(news), plan))(olds)
    for s in range(3):
        pick = lambda t, s=s: jax.tree.map(lambda x: x[s], t)
        single = jsurgery.transplant(pick(olds), pick(news), plan)
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), pick(batched), single
        )
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
    np.testing.assert_allclose(
        apply_fn(new_m)({"params": out}, x), apply_fn(old_m)({"params": old}, x), atol=1e-5
    )
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
