"""Traced plans for models that are not Flax: Equinox modules (weights `(out, in)`, NCHW convs,
attention with a head added), Haiku-style `{"w", "b"}` dicts and a plain dict of arrays, each with
its own apply function.

The trace alone gives the axis roles (no layout table); references are NumPy forward passes and
the index arithmetic of `graph_zoo` (`embed`, `kept`, `check_leaf`).
"""

import equinox as eqx
import jax
import numpy as np
import pytest
from graph_zoo import LeafCheck, check_leaf, compare_outputs, embed, pos

import jsurgery

OBS3, OBS4 = ["a", "b", "c"], ["a", "d", "b", "c"]
ACT2, ACT3 = ["left", "right"], ["left", "noop", "right"]
RGB, RGBD = ["r", "g", "b"], ["r", "depth", "g", "b"]


def _rand(shape, seed):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# Equinox: partition into arrays and the rest; the arrays are the tree, `combine` the function
# ----------------------------------------------------------------------------------------------


class EqxCNN(eqx.Module):
    """NCHW: conv 3x3 stride 2, conv 3x3 SAME, flatten (channel, h, w), Linear."""

    c1: eqx.nn.Conv2d
    c2: eqx.nn.Conv2d
    fc: eqx.nn.Linear

    def __init__(self, cin, channels, n_out, key):
        k = jax.random.split(key, 3)
        self.c1 = eqx.nn.Conv2d(cin, channels[0], 3, stride=2, key=k[0])
        self.c2 = eqx.nn.Conv2d(channels[0], channels[1], 3, padding=1, key=k[1])
        self.fc = eqx.nn.Linear(channels[1] * 9, n_out, key=k[2])

    def __call__(self, x):
        x = jax.nn.relu(self.c1(x))
        x = jax.nn.relu(self.c2(x))
        return self.fc(x.reshape(-1))


def _eqx(model):
    """`({"net": arrays}, apply)`: the arrays of an Equinox module and a batched apply."""
    params, static = eqx.partition(model, eqx.is_array)
    apply = jax.jit(lambda p, x: jax.vmap(eqx.combine(p["net"], static))(x))
    return {"net": params}, apply


def _eqx_surgery(old_model, new_model, x_old, x_new_shape, preset, **kw):
    old, old_apply = _eqx(old_model)
    new, new_apply = _eqx(new_model)
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(old_apply, new_apply),
        example=((x_old,), (jax.ShapeDtypeStruct(x_new_shape, "float32"),)),
        **preset,
        **kw,
    )
    return old, new, old_apply, new_apply, plan, jsurgery.transplant(old, new, plan)


def _mlp(n_in, width, n_out, seed):
    return eqx.nn.MLP(n_in, n_out, width, 2, key=jax.random.key(seed))


def _np_mlp(p, x):
    for k, layer in enumerate(p["net"].layers):
        x = x @ np.asarray(layer.weight, np.float64).T + np.asarray(layer.bias, np.float64)
        x = np.maximum(x, 0.0) if k < len(p["net"].layers) - 1 else x
    return x


def test_equinox_mlp_inputs_actions_widened_is_exact():
    x = _rand((7, 3), 0)
    old, _, old_apply, new_apply, plan, out = _eqx_surgery(
        _mlp(3, 4, 2, 0),
        _mlp(4, 6, 3, 1),
        x,
        (7, 4),
        jsurgery.PRESERVING,
        inputs=(OBS3, OBS4),
        outputs=(ACT2, ACT3),
    )
    x_new = embed(x, OBS3, OBS4)
    compare_outputs(_np_mlp(old, x), _np_mlp(out, x_new), {0: (ACT2, ACT3)}, 1e-5)
    compare_outputs(old_apply(old, x), new_apply(out, x_new), {0: (ACT2, ACT3)}, 1e-5)
    # weights are (out, in): the trace found the input axis on axis 1
    w0 = np.asarray(out["net"].layers[0].weight)
    np.testing.assert_array_equal(w0[:4, 1], 0.0)


def test_equinox_mlp_transplant_moves_weights_by_ids_on_out_in_axes():
    x = _rand((7, 3), 0)
    old, new, _, _, _, out = _eqx_surgery(
        _mlp(3, 4, 2, 0),
        _mlp(4, 6, 3, 1),
        x,
        (7, 4),
        jsurgery.TRANSPLANT,
        inputs=(OBS3, OBS4),
        outputs=(ACT2, ACT3),
    )
    layer = lambda k, leaf: ("net", "layers", k, leaf)  # noqa: E731
    for check in (
        LeafCheck(layer(0, "weight"), {0: pos(4, 6), 1: (OBS3, OBS4)}),
        LeafCheck(layer(1, "weight"), {0: pos(4, 6), 1: pos(4, 6)}),
        LeafCheck(layer(2, "weight"), {0: (ACT2, ACT3), 1: pos(4, 6)}),
        LeafCheck(layer(2, "bias"), {0: (ACT2, ACT3)}),
    ):
        check_leaf(check, _tree(old), _tree(out), _tree(new))


def _tree(p):
    """An Equinox params tree as nested dicts, for `check_leaf` paths."""
    layers = p["net"].layers
    return {
        "net": {
            "layers": {k: {"weight": lay.weight, "bias": lay.bias} for k, lay in enumerate(layers)}
        }
    }


def _np_cnn(p, x):
    net = p["net"]

    def conv(layer, x, stride, pad):
        w = np.asarray(layer.weight, np.float64)
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
        h = (x.shape[2] - 3) // stride + 1
        out = np.zeros((x.shape[0], w.shape[0], h, h))
        for i in range(h):
            for j in range(h):
                patch = x[:, :, i * stride : i * stride + 3, j * stride : j * stride + 3]
                out[:, :, i, j] = np.einsum("bchw,ochw->bo", patch, w)
        return out + np.asarray(layer.bias, np.float64)[None]

    x = np.maximum(conv(net.c1, np.asarray(x, np.float64), 2, 0), 0.0)
    x = np.maximum(conv(net.c2, x, 1, 1), 0.0)
    return x.reshape(len(x), -1) @ np.asarray(net.fc.weight, np.float64).T + np.asarray(
        net.fc.bias, np.float64
    )


def test_equinox_cnn_channel_added_widened_action_added_is_exact():
    x = _rand((5, 3, 7, 7), 2)
    old, _, old_apply, new_apply, plan, out = _eqx_surgery(
        EqxCNN(3, (4, 4), 2, jax.random.key(0)),
        EqxCNN(4, (6, 5), 3, jax.random.key(1)),
        x,
        (5, 4, 7, 7),
        jsurgery.PRESERVING,
        inputs=(RGB, RGBD),
        outputs=(ACT2, ACT3),
    )
    assert plan.input_specs[0][0] == 1  # channels: axis 1 of NCHW, found by the trace
    x_new = np.moveaxis(embed(np.moveaxis(x, 1, -1), RGB, RGBD), -1, 1)
    compare_outputs(_np_cnn(old, x), _np_cnn(out, x_new), {0: (ACT2, ACT3)}, 1e-5)
    report = jsurgery.check_preservation(old_apply, old, new_apply, out, x, plan)
    assert report.ok(1e-5), report


def test_equinox_cnn_flatten_moves_channel_rows_together():
    """Linear rows are (channel, h, w): a channel's 9 rows move with it."""
    x = _rand((2, 3, 7, 7), 2)
    old, new, *_, out = _eqx_surgery(
        EqxCNN(3, (4, 4), 2, jax.random.key(0)),
        EqxCNN(3, (4, 5), 2, jax.random.key(1)),
        x,
        (2, 3, 7, 7),
        jsurgery.TRANSPLANT,
    )
    w_old, w_new = np.asarray(old["net"].fc.weight), np.asarray(out["net"].fc.weight)
    np.testing.assert_array_equal(w_new.reshape(2, 5, 9)[:, :4], w_old.reshape(2, 4, 9))
    np.testing.assert_array_equal(
        w_new.reshape(2, 5, 9)[:, 4], np.asarray(new["net"].fc.weight).reshape(2, 5, 9)[:, 4]
    )


def test_equinox_module_itself_as_the_tree():
    old_m, new_m = _mlp(3, 4, 2, 0), _mlp(3, 6, 2, 1)
    (old, old_static), (new, new_static) = (eqx.partition(m, eqx.is_array) for m in (old_m, new_m))

    def applier(static):
        return lambda p, x: jax.vmap(eqx.combine(p, static))(x)

    x = _rand((4, 3), 0)
    plan = jsurgery.make_plan(
        old,
        new,
        apply=(applier(old_static), applier(new_static)),
        example=((x,), (x,)),
        **jsurgery.PRESERVING,
    )
    out = jsurgery.transplant(old, new, plan)
    assert isinstance(out, eqx.nn.MLP)
    np.testing.assert_allclose(applier(new_static)(out, x), jax.vmap(old_m)(x), atol=1e-5)
    # hidden units 4, 5 of the first layer replicate units 0, 1 (rows of the (out, in) weight)
    np.testing.assert_array_equal(out.layers[0].weight[4:], old_m.layers[0].weight[:2])


def _mha(heads, seed):
    return eqx.nn.MultiheadAttention(
        heads, 6, qk_size=4, vo_size=4, use_query_bias=True, key=jax.random.key(seed)
    )


def test_equinox_attention_head_added_is_exact_and_replicates_a_whole_head():
    """Equinox projects to `heads * size` and reshapes to `(heads, size)`: a split axis."""
    old_m, new_m = _mha(2, 0), _mha(3, 1)
    (old, old_static), (new, new_static) = (eqx.partition(m, eqx.is_array) for m in (old_m, new_m))

    def applier(static):
        return lambda p, x: eqx.combine(p["net"], static)(x, x, x)

    x = _rand((5, 6), 0)
    plan = jsurgery.make_plan(
        {"net": old},
        {"net": new},
        apply=(applier(old_static), applier(new_static)),
        example=((x,), (x,)),
        **jsurgery.PRESERVING,
    )
    out = jsurgery.transplant({"net": old}, {"net": new}, plan)
    np.testing.assert_allclose(applier(new_static)(out, x), old_m(x, x, x), atol=1e-5, rtol=0)
    assert not plan.warnings, plan.warnings
    q_old = np.asarray(old_m.query_proj.weight).reshape(2, 4, 6)  # (heads, size, features)
    q_new = np.asarray(out["net"].query_proj.weight).reshape(3, 4, 6)
    np.testing.assert_array_equal(q_new[:2], q_old)
    assert any(np.array_equal(q_new[2], q_old[h]) for h in (0, 1))


# ----------------------------------------------------------------------------------------------
# Haiku-style {"module/~/linear_i": {"w", "b"}} and a flat dict of arrays
# ----------------------------------------------------------------------------------------------


def _haiku(sizes, seed):
    rng = np.random.default_rng(seed)
    return {
        f"mlp/~/linear_{k}": {
            "w": (rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32),
            "b": (0.3 * rng.normal(size=(b,))).astype(np.float32),
        }
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False))
    }


def _haiku_apply(p, x, xp=jax.numpy):
    n = len(p)
    for k in range(n):
        layer = p[f"mlp/~/linear_{k}"]
        x = x @ xp.asarray(layer["w"]) + xp.asarray(layer["b"])
        x = xp.tanh(x) if k < n - 1 else x
    return x


def _np_haiku(p, x):
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), p)
    return _haiku_apply(p, np.asarray(x, np.float64), np)


@pytest.mark.parametrize("preset", ["preserving", "transplant"])
def test_haiku_dict_inputs_actions_widened(preset):
    old, new = _haiku([3, 4, 5, 2], 0), _haiku([4, 6, 5, 3], 1)
    x = _rand((6, 3), 3)
    options = jsurgery.PRESERVING if preset == "preserving" else jsurgery.TRANSPLANT
    plan = jsurgery.make_plan(
        old,
        new,
        apply=_haiku_apply,
        example=((x,), (jax.ShapeDtypeStruct((6, 4), "float32"),)),
        inputs=(OBS3, OBS4),
        outputs=(ACT2, ACT3),
        **options,
    )
    out = jsurgery.transplant(old, new, plan)
    if preset == "preserving":
        compare_outputs(
            _np_haiku(old, x), _np_haiku(out, embed(x, OBS3, OBS4)), {0: (ACT2, ACT3)}, 1e-5
        )
        return
    for check in (
        LeafCheck(("mlp/~/linear_0", "w"), {0: (OBS3, OBS4), 1: pos(4, 6)}),
        LeafCheck(("mlp/~/linear_1", "w"), {0: pos(4, 6)}),
        LeafCheck(("mlp/~/linear_2", "w"), {1: (ACT2, ACT3)}),
        LeafCheck(("mlp/~/linear_2", "b"), {0: (ACT2, ACT3)}),
    ):
        check_leaf(check, old, out, new)


def _flat(sizes, seed):
    rng = np.random.default_rng(seed)
    out = {}
    for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=False)):
        out[f"w{k}"] = (rng.normal(size=(a, b)) / np.sqrt(a)).astype(np.float32)
        out[f"b{k}"] = (0.3 * rng.normal(size=(b,))).astype(np.float32)
    return out


def _flat_apply(p, x):
    return jax.numpy.tanh(x @ p["w0"] + p["b0"]) @ p["w1"] + p["b1"]


def test_plain_dict_of_arrays_inputs_actions_widened_is_exact():
    old, new = _flat([3, 4, 2], 0), _flat([4, 7, 3], 1)
    x = _rand((6, 3), 4)
    plan = jsurgery.make_plan(
        old,
        new,
        apply=_flat_apply,
        example=((x,), (jax.ShapeDtypeStruct((6, 4), "float32"),)),
        inputs=(OBS3, OBS4),
        outputs=(ACT2, ACT3),
        **jsurgery.PRESERVING,
    )
    out = jsurgery.transplant(old, new, plan)

    def np_apply(p, x):
        p = {k: np.asarray(v, np.float64) for k, v in p.items()}
        return np.tanh(x @ p["w0"] + p["b0"]) @ p["w1"] + p["b1"]

    compare_outputs(np_apply(old, x), np_apply(out, embed(x, OBS3, OBS4)), {0: (ACT2, ACT3)}, 1e-5)
    w0 = np.asarray(out["w0"])
    np.testing.assert_array_equal(w0[OBS4.index("d")], 0.0)


def test_equinox_module_is_its_own_function():
    """A whole Equinox module (activation functions and all) with `example=` and no `apply`:
    traced as the function it is, transplanted back into an Equinox module."""
    old_m, new_m = _mlp(3, 4, 2, 0), _mlp(3, 6, 2, 1)
    x = _rand((3,), 0)
    plan = jsurgery.make_plan(old_m, new_m, example=((x,), (x,)), **jsurgery.PRESERVING)
    out = jsurgery.transplant(old_m, new_m, plan)
    assert isinstance(out, eqx.nn.MLP) and out.activation is new_m.activation
    xs = _rand((8, 3), 1)
    np.testing.assert_allclose(jax.vmap(out)(xs), jax.vmap(old_m)(xs), atol=1e-5)
    np.testing.assert_array_equal(out.layers[0].weight[4:], old_m.layers[0].weight[:2])
