"""Bad input to the traced planner: each case is a PlanError naming the leaf, ID or primitive."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest
from surgery_models import MLP

import jsurgery


class Net(nn.Module):
    hidden: int = 4
    actions: int = 2
    sort_hidden: bool = False
    groups: int = 0

    @nn.compact
    def __call__(self, x):
        if self.groups:
            x = nn.Conv(4, (3,), feature_group_count=self.groups)(x).reshape(x.shape[0], -1)
        h = nn.relu(nn.Dense(self.hidden)(x))
        if self.sort_hidden:
            h = jnp.sort(h, axis=-1)
        return nn.Dense(self.actions, name="pi")(h), nn.Dense(1, name="v")(h)[..., 0]


X3, X4 = jnp.ones((2, 3)), jnp.ones((2, 4))


def _vars(model, x, seed=0):
    return jax.eval_shape(lambda: model.init(jax.random.key(seed), x))


DEFAULT = Net()


def _plan(old_m=DEFAULT, new_m=DEFAULT, x_old=X3, x_new=X3, **kw):
    kw.setdefault("apply", (old_m.apply, new_m.apply))
    kw.setdefault("example", ((x_old,), (x_new,)))
    return jsurgery.make_plan(_vars(old_m, x_old), _vars(new_m, x_new, 1), **kw)


CASES = [
    (
        "unknown-primitive",
        dict(new_m=Net(sort_hidden=True)),
        ["sort", "Dense_0", "test_graph_errors.py"],
    ),
    (
        "grouped-conv",
        dict(
            old_m=Net(groups=2),
            new_m=Net(groups=2),
            x_old=jnp.ones((2, 5, 2)),
            x_new=jnp.ones((2, 5, 2)),
        ),
        ["grouped convolution", "Conv_0"],
    ),
    ("pair-for-two-outputs", dict(outputs=(["l", "r"], ["l", "r"])), ["outputs", "index"]),
    ("output-index-range", dict(outputs={5: (["l", "r"], ["l", "r"])}), ["outputs", "5"]),
    ("naming-a-squeezed-value", dict(outputs={1: ([0], [0])}), ["outputs[1]", "no units"]),
    (
        "input-id-count",
        dict(inputs=(["a", "b"], ["a", "b", "c"])),
        ["`inputs[0] (old IDs)`", "2 IDs", "3"],
    ),
    ("duplicate-ids", dict(inputs=(["a", "a", "b"], ["a", "b", "c"])), ["duplicates", "'a'"]),
    ("example-not-a-pair", dict(example=X3), ["example", "pair"]),
    ("apply-not-callable", dict(apply=(1, 2)), ["apply", "pair"]),
    ("function-fails", dict(example=((X3,), (X4,))), ["apply", "tracing", "new"]),
    (
        "different-output-structure",
        dict(apply=(Net().apply, lambda v, x: Net().apply(v, x)[0])),
        ["returns", "same structure"],
    ),
    ("layers-unknown-path", dict(layers={"nope": None}), ["layers", "'nope'"]),
    ("hidden-unknown-layer", dict(hidden={"nope": ([0], [0])}), ["hidden", "'nope'"]),
    (
        "new-outputs-unknown-id",
        dict(
            new_m=Net(actions=3), new_outputs={"x": "l"}, outputs={0: (["l", "r"], ["l", "r", "n"])}
        ),
        ["new_outputs", "'x'"],
    ),
    ("bad-option", dict(new_hidden="random"), ["new_hidden", "'random'"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_traced_plan_errors_name_what_is_wrong(case):
    _, kwargs, words = case
    with pytest.raises(jsurgery.PlanError) as info:
        _plan(**kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_equally_small_insertions_are_refused_and_settled_by_layers():
    old_m, new_m = MLP((4, 4), 2), MLP((4, 4, 4), 2)
    with pytest.raises(jsurgery.PlanError, match="equally small.*layers="):
        _plan(old_m, new_m)
    plan = _plan(old_m, new_m, layers={"Dense_2": "Dense_1", "Dense_3": "Dense_2"})
    assert plan.layer_map == {
        "Dense_0": "Dense_0",
        "Dense_1": None,
        "Dense_2": "Dense_1",
        "Dense_3": "Dense_2",
    }


def test_unused_leaf_that_changed_shape_is_refused():
    def apply(v, x):
        params = {k: v["params"][k] for k in ("Dense_0", "Dense_1")}
        return MLP((4,), 2).apply({"params": params}, x)

    old = {"params": {**_vars(MLP((4,), 2), X3)["params"], "extra": jnp.zeros(3)}}
    new = {"params": {**_vars(MLP((4,), 2), X3)["params"], "extra": jnp.zeros(5)}}
    with pytest.raises(jsurgery.PlanError, match="extra.*never reads it"):
        jsurgery.make_plan(old, new, apply=apply, example=((X3,), (X3,)))


def test_params_only_path_refuses_separate_actor_and_critic():
    v = _vars(Net(), X3)
    with pytest.raises(jsurgery.PlanError, match="apply="):
        jsurgery.make_plan(v, _vars(Net(), X3, 1), inputs=(["a", "b", "c"], ["c", "b", "a"]))


# ----------------------------------------------------------------------------------------------
# Recurrent cells and kernels the trace cannot follow: each names the leaf and the primitive
# ----------------------------------------------------------------------------------------------


def _dict_cell(v, h, x):
    h = jnp.tanh(x @ v["wx"] + h @ v["wh"])
    return h, h


def _cell_vars(hidden):
    return {"wx": jnp.ones((2, hidden)), "wh": jnp.ones((hidden, hidden))}


def _fused_cell(v, h, x):
    """A GRU-like cell with one fused input kernel (in, 3 * hidden), split into its gates."""
    r, z, n = jnp.split(x @ v["w"], 3, axis=-1)
    r, z = nn.sigmoid(r), nn.sigmoid(z)
    h = (1 - z) * jnp.tanh(n + r * (h @ v["u"])) + z * h
    return h, h


def _mixed(v, x):
    """A kernel read through a reshape that mixes its two axes: no roles to give."""
    return nn.relu(x @ v["w"].reshape(6, 4)) @ v["out"]


X2 = jnp.ones((2, 2))
CELL_CASES = [
    (
        "carry-of-the-wrong-size",
        _dict_cell,
        _cell_vars(3),
        _cell_vars(5),
        ((jnp.zeros((2, 3)), X2), (jnp.zeros((2, 3)), X2)),
        ["dot_general", "'wh'", "argument 0", "[(2, 3)]", "hidden size"],
    ),
    (
        "gate-count-does-not-divide",
        _fused_cell,
        {"w": jnp.ones((2, 9)), "u": jnp.ones((3, 3))},
        {"w": jnp.ones((2, 16)), "u": jnp.ones((5, 5))},
        ((jnp.zeros((2, 3)), X2), (jnp.zeros((2, 5)), X2)),
        ["split", "multiple of the number of gates", "new"],
    ),
    (
        "kernel-axes-without-roles",
        _mixed,
        {"w": jnp.ones((4, 6)), "out": jnp.ones((4, 2))},
        {"w": jnp.ones((4, 6)), "out": jnp.ones((4, 2))},
        ((jnp.ones((2, 6)),), (jnp.ones((2, 6)),)),
        ["'w'", "reshape", "axis roles"],
    ),
]


@pytest.mark.parametrize("case", CELL_CASES, ids=[c[0] for c in CELL_CASES])
def test_cell_and_kernel_errors_name_the_leaf_and_the_primitive(case):
    _, apply, old, new, example, words = case
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(old, new, apply=apply, example=example)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_a_flax_cell_given_a_carry_of_the_wrong_size_names_its_kernel_and_the_carry():
    old_c, new_c = nn.GRUCell(3), nn.GRUCell(5)
    h3, h5 = jnp.zeros((2, 3)), jnp.zeros((2, 5))
    old, new = old_c.init(jax.random.key(0), h3, X2), new_c.init(jax.random.key(1), h5, X2)
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(old, new, apply=(old_c.apply, new_c.apply), example=((h3, X2), (h3, X2)))
    for word in ("kernel", "/ir", "argument 0", "hidden size"):
        assert word in str(info.value), (word, str(info.value))


def _picked(p, x):
    """Features picked by an index array: which ones a kernel reads moves with the layout."""
    return x[..., jnp.array([0, 2])] @ p["w"]


@pytest.mark.parametrize(
    "ids, refused", [((list("abcd"), list("xabcd")), True), ((list("abcd"), list("abcd")), False)]
)
def test_changed_inputs_picked_by_an_index_array_are_refused(ids, refused):
    params = {"w": jnp.ones((2, 2))}
    x_old, x_new = jnp.ones((3, 4)), jnp.ones((3, len(ids[1])))
    kw = dict(apply=_picked, example=((x_old,), (x_new,)), inputs=ids)
    if not refused:  # unchanged features: nothing to follow, the plan copies
        assert jsurgery.make_plan(params, params, **kw).leaves[0].source == "old"
        return
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(params, params, **kw)
    for word in ("inputs[0]", "gather", "test_graph_errors.py", "'x'"):
        assert word in str(info.value), (word, str(info.value))
