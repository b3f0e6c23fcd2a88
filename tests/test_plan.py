"""Plans: the report, layer matching, and the experiment recipes as make_plan one-liners."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from surgery_models import MLP, apply_fn, init, rand

import jsurgery

CARTPOLE = (["x_dot", "theta"], ["x", "x_dot", "theta", "theta_dot"])
ACROBOT = (["torque+1", "noop"], ["torque-1", "noop", "torque+1"])
LUNAR = (["left", "right"], ["noop", "left", "main", "right"])


class MnistCNN(nn.Module):
    classes: int
    width: int = 100

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(32, (3, 3))(x))
        x = nn.relu(nn.Conv(16, (3, 3))(x))
        x = nn.max_pool(x, (2, 2), (2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.width)(x))
        return nn.Dense(self.classes)(x)


# (id, old model, new model, old n_in, new n_in, recipe kwargs, preserving arm is exact)
EXPERIMENTS = [
    ("a-cartpole-inputs", MLP((16,), 2), MLP((16,), 2), 2, 4, dict(inputs=CARTPOLE)),
    ("b-hidden-4-to-16", MLP((4, 4), 2), MLP((16, 16), 2), 4, 4, {}),
    ("c-layer-inserted", MLP((8,), 2), MLP((8, 8), 2), 4, 4, {}),
    ("d-acrobot-actions", MLP((16,), 2), MLP((16,), 3), 6, 6, dict(outputs=ACROBOT)),
    ("e-lunar-actions", MLP((16,), 2), MLP((16,), 4), 8, 8, dict(outputs=LUNAR)),
]


@pytest.mark.parametrize("arm", ["transplant", "preserving"])
@pytest.mark.parametrize("exp", EXPERIMENTS, ids=[e[0] for e in EXPERIMENTS])
def test_experiment_recipes_are_one_liners(exp, arm):
    _, old_m, new_m, n_old, n_new, kwargs = exp
    old, new = init(old_m, n_old, 0), init(new_m, n_new, 1)
    options = jsurgery.TRANSPLANT if arm == "transplant" else jsurgery.PRESERVING
    plan = jsurgery.make_plan(old, new, **kwargs, **options)
    out = jsurgery.transplant(old, new, plan)
    report = jsurgery.check_preservation(
        apply_fn(old_m), old, apply_fn(new_m), out, rand((16, n_old)), plan
    )
    # On the old input subspace only new hidden units with template init change the function.
    if arm == "preserving" or exp[0] != "b-hidden-4-to-16":
        assert report.ok(1e-5), str(report)
    else:
        assert not report.ok(1e-5)
    if exp[0] == "a-cartpole-inputs":  # with the new features switched on
        x = rand((16, n_new))
        y_old = apply_fn(old_m)(old, x[:, 1:3])
        same = np.allclose(apply_fn(new_m)(out, x), y_old, atol=1e-5)
        assert same == (arm == "preserving")


def test_experiment_c_matches_from_both_ends():
    old, new = init(MLP((8,), 2), 4, 0), init(MLP((8, 8), 2), 4, 1)
    plan = jsurgery.make_plan(old, new)
    assert plan.layer_map == {"Dense_0": "Dense_0", "Dense_1": None, "Dense_2": "Dense_1"}
    out = jsurgery.transplant(old, new, plan)
    np.testing.assert_array_equal(out["params"]["Dense_1"]["kernel"], np.eye(8))
    np.testing.assert_array_equal(out["params"]["Dense_1"]["bias"], 0.0)
    assert "new layer: identity" in str(plan)


@pytest.mark.parametrize("arm", ["transplant", "preserving"])
def test_experiment_f_copies_only_the_convs(arm):
    old_m, new_m = MnistCNN(4, 16), MnistCNN(6, 16)
    old, new = init(old_m, (8, 8, 1), 0), init(new_m, (8, 8, 1), 1)
    options = jsurgery.TRANSPLANT if arm == "transplant" else jsurgery.PRESERVING
    plan = jsurgery.make_plan(
        old,
        new,
        outputs=([0, 1, 2, 3], [4, 5, 6, 7, 8, 9]),
        layers={"Dense_0": None, "Dense_1": None},
        **options,
    )
    out = jsurgery.transplant(old, new, plan)
    for layer in ("Conv_0", "Conv_1"):
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(out["params"][layer][leaf], old["params"][layer][leaf])
    for layer in ("Dense_0", "Dense_1"):
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(out["params"][layer][leaf], new["params"][layer][leaf])
    text = str(plan)
    assert "new layer: template init" in text and "old layers not carried over" in text


def test_experiment_f_full_size_plan_from_shapes_only():
    old = jax.eval_shape(MnistCNN(4).init, jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    new = jax.eval_shape(MnistCNN(6).init, jax.random.key(0), jnp.ones((1, 28, 28, 1)))
    plan = jsurgery.make_plan(
        old,
        new,
        outputs=([0, 1, 2, 3], list(range(4, 10))),
        layers={"Dense_0": None, "Dense_1": None},
    )
    assert [lp.source for lp in plan.leaves] == ["old"] * 4 + ["template"] * 4


def test_report_shows_shapes_units_and_warnings():
    old, new = init(MLP((4,), 2), 2, 0), init(MLP((6,), 3), 4, 1)
    plan = jsurgery.make_plan(
        old,
        new,
        inputs=CARTPOLE,
        outputs=(["l", "r"], ["l", "r", "n"]),
        new_outputs="zeros",
        new_hidden="zero_fanout",
    )
    text = str(plan)
    assert "params/Dense_0/kernel" in text and "(2, 4) -> (4, 6)" in text
    assert "in: 2 copied, 2 new (template); out: 4 copied, 2 new (template in, zero out)" in text
    assert "in: 4 copied, 2 new (template in, zero out); out: 2 copied, 1 new (zeros)" in text
    assert (
        "zero-initialised new Q-output is likely to be picked by argmax under negative "
        "rewards" in text
    )
    shrink = jsurgery.make_plan(
        new, old, inputs=CARTPOLE[::-1], outputs=(["l", "r", "n"], ["r", "l"])
    )
    assert "2 dropped" in str(shrink)
    widened = jsurgery.make_plan(old, init(MLP((8,), 2), 2, 1), new_hidden="net2net")
    assert "in: 4 copied, 4 new (net2net); out: 2 copied" in str(widened)
    assert "layers matched by name" in str(widened)


def test_layers_override_maps_renamed_layers():
    class Named(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2, name="head")(nn.relu(nn.Dense(4, name="body")(x)))

    old, new = init(MLP((4,), 2), 3, 0), init(Named(), 3, 1)
    plan = jsurgery.make_plan(old, new, layers={"body": "Dense_0", "head": "Dense_1"})
    out = jsurgery.transplant(old, new, plan)
    np.testing.assert_array_equal(
        out["params"]["head"]["kernel"], old["params"]["Dense_1"]["kernel"]
    )


def test_layer_removed_from_the_middle():
    old, new = init(MLP((8, 8, 8), 2), 3, 0), init(MLP((8, 8), 2), 3, 1)
    with pytest.raises(jsurgery.PlanError, match="more than one equally small way.*layers="):
        jsurgery.make_plan(old, new)  # any of the three equal hidden layers could be the one
    plan = jsurgery.make_plan(old, new, layers={"Dense_2": "Dense_3"})
    assert plan.layer_map == {"Dense_0": "Dense_0", "Dense_1": "Dense_1", "Dense_2": "Dense_3"}
    assert any("Dense_2" in w for w in plan.warnings)


def test_the_error_of_a_tied_matching_carries_layers_that_settle_it():
    old, new = init(MLP((8, 8, 8), 2), 3, 0), init(MLP((8, 8, 8, 8), 2), 3, 1)
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(old, new)
    settle = info.value.layers
    assert settle and str(settle) in str(info.value)
    plan = jsurgery.make_plan(old, new, layers=settle)
    assert settle.items() <= plan.layer_map.items()


class MaybeNormed(nn.Module):
    norm: bool

    @nn.compact
    def __call__(self, x):
        x = nn.Dense(4)(x)
        return nn.Dense(2)(nn.relu(nn.LayerNorm()(x) if self.norm else x))


def test_an_inserted_norm_layer_on_the_params_only_path_is_named_in_the_warnings():
    old, new = init(MaybeNormed(False), 3, 0), init(MaybeNormed(True), 3, 1)
    plan = jsurgery.make_plan(old, new, **jsurgery.PRESERVING)
    assert plan.layer_map["LayerNorm_0"] is None
    assert any("LayerNorm_0" in w and "not exact" in w for w in plan.warnings), plan.warnings
    x = rand((5, 3), 2)
    out = jsurgery.transplant(old, new, plan)
    gap = np.abs(MaybeNormed(True).apply(out, x) - MaybeNormed(False).apply(old, x)).max()
    assert float(gap) > 1e-3  # the warning is warranted


def test_transplant_chain_through_three_architectures():
    a, b, c = init(MLP((4,), 2), 2, 0), init(MLP((6,), 3), 3, 1), init(MLP((9,), 3), 4, 2)
    ids_a, ids_b, ids_c = ["p", "q"], ["q", "r", "p"], ["s", "q", "p", "r"]
    kw = dict(new_hidden="net2net", new_inputs="zeros", new_outputs="mean")
    ab = jsurgery.make_plan(
        a, b, inputs=(ids_a, ids_b), outputs=(["u", "v"], ["u", "v", "w"]), **kw
    )
    bc = jsurgery.make_plan(b, c, inputs=(ids_b, ids_c), outputs=(["u", "v", "w"],) * 2, **kw)
    x = rand((7, 2))
    via_b = jsurgery.transplant(jsurgery.transplant(a, b, ab), c, bc)
    ac = jsurgery.make_plan(
        a, c, inputs=(ids_a, ids_c), outputs=(["u", "v"], ["u", "v", "w"]), **kw
    )
    direct = jsurgery.transplant(a, c, ac)
    m_c = apply_fn(MLP((9,), 3))
    np.testing.assert_allclose(
        m_c(via_b, ac.embed_inputs(x)), m_c(direct, ac.embed_inputs(x)), atol=1e-5
    )


def test_a_plan_checks_its_own_fields():
    from jsurgery.plan import AxisMap, LeafPlan

    old, new = init(MLP((4,), 2), 2, 0), init(MLP((6,), 2), 2, 1)
    plan = jsurgery.make_plan(old, new, new_hidden="net2net")
    fields = {f: getattr(plan, f) for f in plan.__dataclass_fields__}
    with pytest.raises(jsurgery.PlanError, match="one per new leaf"):
        jsurgery.Plan(**{**fields, "leaves": plan.leaves[:-1]})
    with pytest.raises(jsurgery.PlanError, match="matching 'by guess'"):
        jsurgery.Plan(**{**fields, "matching": "by guess"})
    short = AxisMap(1, np.arange(5), np.arange(5))  # 5 entries for an axis of 6
    with pytest.raises(jsurgery.PlanError, match="5 entries for"):
        LeafPlan(("params", "Dense_0", "kernel"), ("k",), 0, (2, 6), (2, 4), "old", (short,))
    past = AxisMap(1, np.arange(6), np.arange(6))  # reads old entries 4 and 5 of 4
    with pytest.raises(jsurgery.PlanError, match="reads past the old leaf"):
        LeafPlan(("params", "Dense_0", "kernel"), ("k",), 0, (2, 6), (2, 4), "old", (past,))
    with pytest.raises(jsurgery.PlanError, match="source 'copied'"):
        LeafPlan(("b",), None, -1, (6,), None, "copied")
