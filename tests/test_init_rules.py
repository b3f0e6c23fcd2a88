"""Init rules (`jsurgery.init`): the protocol's contract over every rule class, what each rule
promises checked by running the old and new networks, names and objects giving the same plan,
and a rule given where it does not fit.

Expected outputs are computed here from the old network's outputs, never by jsurgery.
"""

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from surgery_models import MLP, apply_fn, forward, init, rand, randomise_biases

import jsurgery
from jsurgery.init.base import (
    CARRIED,
    HIDDEN,
    INPUT,
    OUTPUT,
    OUTPUT_READERS,
    LayerRule,
    NewUnits,
    UnitRule,
)
from jsurgery.init.resolve import names

OBS3, OBS4 = ["a", "b", "c"], ["a", "d", "b", "c"]
A2, A3 = ["l", "r"], ["l", "r", "n"]
OLD_M, NEW_M = MLP((4, 5), 2), MLP((6, 6, 7), 3)
#: Dense_1 of the new network is inserted; Dense_0 and Dense_2 widen; an input and an output are
#: added.
LAYERS = {"Dense_0": "Dense_0", "Dense_2": "Dense_1", "Dense_3": "Dense_2"}
OLD = randomise_biases(init(OLD_M, 3, 0), 1)
TEMPLATE = randomise_biases(init(NEW_M, 4, 2), 3)
X = rand((32, 3), 4)
#: The old inputs in the new input space, the new feature 'd' (position 1) random.
X_NEW = np.insert(X, 1, rand((32,), 5), axis=1)
#: ... and the new feature at zero.
X_ZERO = np.insert(X, 1, 0.0, axis=1)
#: Per `make_plan` argument, the kinds of space its rule is asked about.
KINDS = {
    "new_inputs": (INPUT,),
    "new_hidden": (HIDDEN, CARRIED, OUTPUT_READERS),
    "new_outputs": (OUTPUT,),
}
#: A base whose every choice keeps the old outputs exact; each case changes one argument.
EXACT = dict(
    new_inputs=jsurgery.init.zeros(),
    new_hidden=jsurgery.init.zero_fanout(),
    new_layers=jsurgery.init.identity(),
    new_outputs=jsurgery.init.mean(),
)


def _plan(**rules):
    kw = {**EXACT, **rules}
    return jsurgery.make_plan(
        OLD, TEMPLATE, inputs=(OBS3, OBS4), outputs=(A2, A3), layers=LAYERS, **kw
    )


def _run(x_new=X_NEW, **rules):
    """The old outputs on `X`, the new ones on `x_new`, and the plan."""
    plan = _plan(**rules)
    new = jsurgery.transplant(OLD, TEMPLATE, plan)
    jax.tree.map(lambda a, b: np.testing.assert_equal(a.shape, b.shape), new, TEMPLATE)
    y_old = np.asarray(apply_fn(OLD_M)(OLD, X), np.float64)
    y_new = np.asarray(apply_fn(NEW_M)(new, x_new), np.float64)
    return y_old, y_new, plan


# The protocol, on every rule.


def _rule_classes() -> list:
    """Every rule class defined in a module of `jsurgery/init/`, found by walking the package."""
    found = []
    for info in pkgutil.iter_modules(jsurgery.init.__path__):
        module = importlib.import_module(f"jsurgery.init.{info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            is_rule = issubclass(cls, (UnitRule, LayerRule)) and cls not in (UnitRule, LayerRule)
            if is_rule and cls.__module__ == module.__name__:
                found.append(cls)
    return found


RULE_CLASSES = _rule_classes()
UNIT_CASES = [
    (cls, arg, kind)
    for cls in RULE_CLASSES
    if issubclass(cls, UnitRule)
    for arg in sorted(cls.fits & set(KINDS))
    for kind in KINDS[arg]
]


def test_every_rule_class_is_found():
    found = {cls.__name__ for cls in RULE_CLASSES}
    assert {"Template", "Zeros", "ZeroFanout", "Net2Net", "SmallRandom", "Mean"} <= found
    assert {"Pessimistic", "Identity", "ById"} <= found
    assert all(cls.fits for cls in RULE_CLASSES), "a rule fits no argument"


def _check_contract(rule: UnitRule, kind: str) -> None:
    """A unit rule's map: one entry per new unit, indices in range, and the old units written
    and read as they were (a rule may only share their fan-out, `read_mul`)."""
    src = np.array([2, -1, 0, -1, 1, -1])
    units = NewUnits(src, ("a", "b", "c"), ("c", "x", "a", "y", "b", "z"), kind, "space", [])
    sm = rule.space_map(units)
    old = src >= 0
    assert sm.n_old == 3 and np.array_equal(sm.src, src)
    for name in ("write_idx", "read_idx"):
        idx = getattr(sm, name)
        assert idx.shape == src.shape and np.all((idx >= -1) & (idx < 3)), name
        assert np.array_equal(idx[old], src[old]), name
    for name in ("write_zero", "read_zero", "write_mean", "write_noise", "write_scaled"):
        mask = getattr(sm, name)
        assert mask is None or (mask.shape == src.shape and not mask[old].any()), name
    assert sm.read_scaled is None or not sm.read_scaled[old].any()
    assert sm.offset is None or not sm.offset[old].any()
    assert sm.read_mul is None or np.all(sm.read_mul > 0)
    assert isinstance(sm.how, str) and sm.how


@pytest.mark.parametrize(
    "cls,arg,kind", UNIT_CASES, ids=[f"{c.__name__}-{a}-{k}" for c, a, k in UNIT_CASES]
)
def test_unit_rules_keep_the_old_units(cls, arg, kind):
    _check_contract(cls(), kind)


# What each rule promises.


def _exact(y_old, y_new):
    np.testing.assert_allclose(y_new[:, :2], y_old, atol=1e-5)


PROMISES = {
    "inputs-zeros": (dict(new_inputs=jsurgery.init.zeros()), _exact),
    "hidden-zero-fanout": (dict(new_hidden=jsurgery.init.zero_fanout()), _exact),
    "hidden-net2net": (dict(new_hidden=jsurgery.init.net2net()), _exact),
    "layers-identity": (dict(new_layers=jsurgery.init.identity()), _exact),
    "layers-identity-corner": (dict(new_layers=jsurgery.init.identity_corner()), _exact),
    "outputs-zeros": (
        dict(new_outputs=jsurgery.init.zeros()),
        lambda y_old, y_new: (_exact(y_old, y_new), np.testing.assert_array_equal(y_new[:, 2], 0)),
    ),
    "outputs-mean": (
        dict(new_outputs=jsurgery.init.mean()),
        lambda y_old, y_new: np.testing.assert_allclose(
            y_new, np.c_[y_old, y_old.mean(axis=1)], atol=1e-5
        ),
    ),
    "outputs-pessimistic": (
        dict(new_outputs=jsurgery.init.pessimistic(margin=2.0)),
        lambda y_old, y_new: np.testing.assert_allclose(
            y_new, np.c_[y_old, y_old.mean(axis=1) - 2.0], atol=1e-5
        ),
    ),
    "outputs-copy-by-id": (
        dict(new_outputs={"n": "l"}),
        lambda y_old, y_new: np.testing.assert_allclose(y_new, y_old[:, [0, 1, 0]], atol=1e-5),
    ),
    "outputs-per-id-rule": (
        dict(new_outputs={"n": jsurgery.init.pessimistic(margin=0.5)}),
        lambda y_old, y_new: np.testing.assert_allclose(
            y_new, np.c_[y_old, y_old.mean(axis=1) - 0.5], atol=1e-5
        ),
    ),
}


@pytest.mark.parametrize("name", list(PROMISES))
def test_rules_keep_their_promise(name):
    rules, check = PROMISES[name]
    y_old, y_new, _ = _run(**rules)
    check(y_old, y_new)


def test_template_inputs_are_exact_only_where_new_features_are_zero():
    y_old, y_zero, _ = _run(X_ZERO, new_inputs=jsurgery.init.template())
    _exact(y_old, y_zero)
    _, y_new, _ = _run(new_inputs=jsurgery.init.template())
    assert np.abs(y_new[:, :2] - y_old).max() > 1e-3


@pytest.mark.parametrize(
    "rules",
    [dict(new_hidden=jsurgery.init.template()), dict(new_layers=jsurgery.init.template())],
    ids=["hidden", "layers"],
)
def test_template_promises_nothing_and_moves_the_outputs(rules):
    y_old, y_new, _ = _run(**rules)
    assert np.abs(y_new[:, :2] - y_old).max() > 1e-3


@pytest.mark.parametrize("rule", ["zeros", "template"])
def test_zero_and_template_outputs_warn(rule):
    _, _, plan = _run(new_outputs=getattr(jsurgery.init, rule)())
    assert any("'n'" in w and "argmax" in w for w in plan.warnings), plan.warnings


def test_small_random_change_is_bounded_and_shrinks_with_the_scale():
    diffs = []
    for scale in (0.1, 0.01):
        y_old, y_new, _ = _run(new_hidden=jsurgery.init.small_random(scale=scale))
        diffs.append(np.abs(y_new[:, :2] - y_old).max())
    assert 0 < diffs[0] < 0.1 * np.abs(y_old).max()
    assert diffs[1] <= diffs[0] / 10 * 1.01, diffs


def test_net2net_noise_moves_only_the_copies():
    y_old, y_new, plan = _run(new_hidden=jsurgery.init.net2net(noise=0.05, seed=1))
    assert (plan.noise, plan.seed) == (0.05, 1)
    assert 0 < np.abs(y_new[:, :2] - y_old).max() < 0.5


# Names and objects.


SAME = [
    ("inputs-template", dict(new_inputs="template"), dict(new_inputs=jsurgery.init.template())),
    ("inputs-zeros", dict(new_inputs="zeros"), dict(new_inputs=jsurgery.init.zeros())),
    ("hidden-template", dict(new_hidden="template"), dict(new_hidden=jsurgery.init.template())),
    (
        "hidden-zero-fanout",
        dict(new_hidden="zero_fanout"),
        dict(new_hidden=jsurgery.init.zero_fanout()),
    ),
    (
        "hidden-net2net",
        dict(new_hidden="net2net", net2net_noise=0.05, seed=3),
        dict(new_hidden=jsurgery.init.net2net(noise=0.05, seed=3)),
    ),
    (
        "hidden-small-random",
        dict(new_hidden="small_random", init_scale=0.05),
        dict(new_hidden=jsurgery.init.small_random(scale=0.05)),
    ),
    ("layers-identity", dict(new_layers="identity"), dict(new_layers=jsurgery.init.identity())),
    (
        "layers-identity-corner",
        dict(new_layers="identity_corner"),
        dict(new_layers=jsurgery.init.identity_corner()),
    ),
    ("layers-template", dict(new_layers="template"), dict(new_layers=jsurgery.init.template())),
    ("outputs-template", dict(new_outputs="template"), dict(new_outputs=jsurgery.init.template())),
    ("outputs-zeros", dict(new_outputs="zeros"), dict(new_outputs=jsurgery.init.zeros())),
    ("outputs-mean", dict(new_outputs="mean"), dict(new_outputs=jsurgery.init.mean())),
    (
        "outputs-pessimistic",
        dict(new_outputs="pessimistic", pessimism=2.5),
        dict(new_outputs=jsurgery.init.pessimistic(margin=2.5)),
    ),
    (
        "outputs-per-id",
        dict(new_outputs={"n": "pessimistic"}, pessimism=2.5),
        dict(new_outputs={"n": jsurgery.init.pessimistic(margin=2.5)}),
    ),
]


def _report(plan) -> list:
    return [line for line in str(plan).splitlines() if not line.startswith("  options:")]


@pytest.mark.parametrize("by_name,by_object", [c[1:] for c in SAME], ids=[c[0] for c in SAME])
def test_a_name_and_its_object_give_the_same_plan(by_name, by_object):
    plans = [_plan(**by_name), _plan(**by_object)]
    assert _report(plans[0]) == _report(plans[1])
    assert (plans[0].noise, plans[0].seed) == (plans[1].noise, plans[1].seed)
    leaves = [jax.tree.leaves(jsurgery.transplant(OLD, TEMPLATE, p)) for p in plans]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_array_equal(a, b)


def test_presets_keep_their_names_in_the_report():
    plan = jsurgery.make_plan(
        OLD, TEMPLATE, inputs=(OBS3, OBS4), outputs=(A2, A3), layers=LAYERS, **jsurgery.PRESERVING
    )
    line = (
        "  options: new_inputs='zeros', new_hidden='net2net', new_layers='identity', "
        "new_outputs='pessimistic'"
    )
    assert line in str(plan).splitlines()
    changed = {**jsurgery.PRESERVING, "new_hidden": jsurgery.init.small_random(scale=0.5)}
    assert "new_hidden=SmallRandom(scale=0.5)" in str(_plan(**changed))


# Rules in the wrong place.


WRONG = [
    ("pessimistic-as-hidden", dict(new_hidden=jsurgery.init.pessimistic()), "new_hidden"),
    ("net2net-as-outputs", dict(new_outputs=jsurgery.init.net2net()), "new_outputs"),
    ("zeros-as-layers", dict(new_layers=jsurgery.init.zeros()), "new_layers"),
    ("identity-as-inputs", dict(new_inputs=jsurgery.init.identity()), "new_inputs"),
    ("per-id-hidden-rule", dict(new_outputs={"n": jsurgery.init.zero_fanout()}), "new_outputs"),
]


@pytest.mark.parametrize("rules,arg", [c[1:] for c in WRONG], ids=[c[0] for c in WRONG])
def test_a_rule_where_it_does_not_fit_is_refused(rules, arg):
    with pytest.raises(jsurgery.PlanError) as info:
        _plan(**rules)
    text = str(info.value)
    assert f"`{arg}`" in text and "rules that fit" in text, text
    for name in names()[arg]:
        assert f"jsurgery.init.{name}()" in text, (name, text)


@pytest.mark.parametrize(
    "rules,keyword",
    [
        (dict(new_hidden=jsurgery.init.net2net(), net2net_noise=0.1), "net2net_noise"),
        (dict(new_hidden=jsurgery.init.net2net(), seed=4), "seed"),
        (dict(new_hidden=jsurgery.init.small_random(), init_scale=0.5), "init_scale"),
        (dict(new_outputs=jsurgery.init.pessimistic(), pessimism=3.0), "pessimism"),
    ],
    ids=["noise", "seed", "scale", "pessimism"],
)
def test_a_keyword_beside_a_rule_object_is_refused(rules, keyword):
    with pytest.raises(jsurgery.PlanError, match=f"`{keyword}`.*carries its own parameters"):
        _plan(**rules)


@pytest.mark.parametrize(
    "make,arg",
    [
        (lambda: jsurgery.init.small_random(scale=0.0), "scale"),
        (lambda: jsurgery.init.small_random(scale="big"), "scale"),
        (lambda: jsurgery.init.pessimistic(margin=float("nan")), "margin"),
    ],
    ids=["scale-zero", "scale-text", "margin-nan"],
)
def test_a_factory_refuses_a_bad_parameter(make, arg):
    with pytest.raises(jsurgery.PlanError, match=f"`{arg}`"):
        make()


def test_a_bad_name_keeps_its_message():
    with pytest.raises(jsurgery.PlanError) as info:
        _plan(new_hidden="net2wider")
    assert str(info.value) == (
        "`new_hidden`: 'net2wider' is not one of "
        "['template', 'zero_fanout', 'net2net', 'small_random']."
    )


def test_per_output_rules_warn_for_their_own_outputs():
    outs = ["l", "r", "n", "m"]
    template = randomise_biases(init(MLP((6, 6, 7), 4), 4, 6), 7)
    plan = jsurgery.make_plan(
        OLD,
        template,
        inputs=(OBS3, OBS4),
        outputs=(A2, outs),
        layers=LAYERS,
        new_outputs={"n": "zeros", "m": jsurgery.init.mean()},
    )
    zero = [w for w in plan.warnings if "zero-initialised" in w]
    assert len(zero) == 1 and "output 'n'" in zero[0], plan.warnings
    assert not any("template-initialised" in w for w in plan.warnings), plan.warnings
    assert "2 new (mean, zeros)" in str(plan)


# The development guide's rule.


def _guide_rule() -> dict:
    """Runs the code block of "Adding an init rule" in docs/development.md."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "development.md").read_text()
    section = text.split("## Adding an init rule", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```python\n(.*?)```", section, re.S)
    namespace: dict = {}
    exec(compile(block, "docs/development.md", "exec"), namespace)
    return namespace


def test_the_guide_rule_keeps_the_contract():
    rule = _guide_rule()["scaled_fanout"](0.2)
    for kind in KINDS["new_hidden"]:
        _check_contract(rule, kind)


def test_the_guide_rule_scales_the_fan_out_of_new_units():
    factor = 0.2
    new_m = MLP((6, 7), 2)
    template = randomise_biases(init(new_m, 3, 8), 9)
    plan = jsurgery.make_plan(OLD, template, new_hidden=_guide_rule()["scaled_fanout"](factor))
    assert f"template in, template x {factor:g} out" in str(plan)
    out = jsurgery.transplant(OLD, template, plan)["params"]
    old, tmpl = OLD["params"], template["params"]
    want = {}
    for layer, n_rows in (("Dense_0", 3), ("Dense_1", 4), ("Dense_2", 5)):
        kernel = np.array(tmpl[layer]["kernel"], np.float64)
        bias = np.array(tmpl[layer]["bias"], np.float64)
        o_kernel, o_bias = (np.asarray(old[layer][k], np.float64) for k in ("kernel", "bias"))
        kernel[: o_kernel.shape[0], : o_kernel.shape[1]] = o_kernel
        kernel[n_rows:] *= factor  # rows reading new units of the layer before
        bias[: len(o_bias)] = o_bias
        want[layer] = {"kernel": kernel, "bias": bias}
        for name, value in want[layer].items():
            np.testing.assert_allclose(out[layer][name], value, rtol=1e-6, err_msg=layer)
    y = np.asarray(apply_fn(new_m)(jsurgery.transplant(OLD, template, plan), X), np.float64)
    np.testing.assert_allclose(y, forward(want, X), rtol=1e-5, atol=1e-5)
