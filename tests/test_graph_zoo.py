"""The traced graph planner on RL-shaped networks (`make_plan(..., apply=..., example=...)`).

Every reference value here comes from the index arithmetic in `graph_zoo` (where each old feature,
unit and action sits in the new network), never from jsurgery itself.
"""

from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.training import train_state
from graph_zoo import (
    A2,
    A3,
    BY_ID,
    CASES,
    PRESERVING_CASES,
    TRANSPLANT_CASES,
    Body,
    Case,
    DuelingQ,
    NormMLP,
    build,
    check_leaf,
    compare_outputs,
    forward,
    kept,
)

import jsurgery


def _ids(cases):
    return [c.id for c in cases]


def _surgery(case: Case):
    built = build(case)
    plan = jsurgery.make_plan(built.old_vars, built.new_template, **built.kwargs)
    return built, plan, jsurgery.transplant(built.old_vars, built.new_template, plan)


def _assert_like_template(out, template):
    assert jax.tree.structure(out) == jax.tree.structure(template)
    for a, b in zip(jax.tree.leaves(out), jax.tree.leaves(template), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_zoo_models_run_and_name_their_outputs(case):
    """The zoo itself: both sides run on their inputs, and the IDs fit the outputs they name."""
    built = build(case)
    y_old = jax.tree.leaves(built.old_outputs())
    y_new = jax.tree.leaves(built.new_outputs(built.new_template))
    assert len(y_old) == len(y_new)
    for k, (a, b) in enumerate(zip(y_old, y_new, strict=True)):
        if k in built.outputs:
            assert (a.shape[-1], b.shape[-1]) == tuple(map(len, built.outputs[k]))
        else:
            assert a.shape == b.shape
    for i, (old_ids, new_ids) in built.inputs.items():
        assert built.x_new[i].shape[-1] == len(new_ids)
        assert built.x_old[i].shape[-1] == len(old_ids)


@pytest.mark.parametrize("case", PRESERVING_CASES, ids=_ids(PRESERVING_CASES))
def test_preserving_keeps_every_head(case):
    built, _, out = _surgery(case)
    _assert_like_template(out, built.new_template)
    compare_outputs(built.old_outputs(), built.new_outputs(out), built.outputs, case.atol)


@pytest.mark.parametrize("case", TRANSPLANT_CASES, ids=_ids(TRANSPLANT_CASES))
def test_transplant_copies_by_ids_and_keeps_the_template_for_new_units(case):
    built, _, out = _surgery(case)
    _assert_like_template(out, built.new_template)
    for check in case.checks:
        check_leaf(check, built.old_vars, out, built.new_template)


@pytest.mark.parametrize("case", CASES, ids=_ids(CASES))
def test_params_only_path_refuses_or_agrees_with_the_traced_path(case):
    """Contract: without `apply`, make_plan raises a PlanError or transplants the same values."""
    built, _, traced = _surgery(case)
    try:
        plan = jsurgery.make_plan(built.old_vars, built.new_template, **built.params_only_kwargs())
    except jsurgery.PlanError:
        return
    direct = jsurgery.transplant(built.old_vars, built.new_template, plan)
    assert jax.tree.structure(direct) == jax.tree.structure(traced)
    for a, b in zip(jax.tree.leaves(direct), jax.tree.leaves(traced), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------------------------
# Cross-unit operations: the dueling mean, a LayerNorm over widened units
# ----------------------------------------------------------------------------------------------

DUELING_CHANGES = {"action-added": (A2, A3), "action-removed": (A3, ["right", "left"])}


@pytest.mark.parametrize("change", list(DUELING_CHANGES))
def test_dueling_mean_over_actions_is_named_in_the_warnings(change):
    old_ids, new_ids = DUELING_CHANGES[change]
    case = Case(
        change, DuelingQ(len(old_ids)), DuelingQ(len(new_ids)), ((4,),), outputs=(old_ids, new_ids)
    )
    built, plan, out = _surgery(case)
    assert any(word in w.lower() for w in plan.warnings for word in ("mean", "reduce")), (
        plan.warnings
    )
    # mean(A) moved, by the same amount for every action: the old Q-values' order is kept.
    new_pos, old_pos = kept(old_ids, new_ids)
    shift = (
        np.asarray(built.new_outputs(out))[:, new_pos] - np.asarray(built.old_outputs())[:, old_pos]
    )
    np.testing.assert_allclose(shift, np.broadcast_to(shift[:, :1], shift.shape), atol=1e-5)


def test_dueling_new_action_at_the_mean_is_exact():
    case = Case(
        "mean", DuelingQ(2), DuelingQ(3), ((4,),), outputs=(A2, A3), options={"new_outputs": "mean"}
    )
    built, _, out = _surgery(case)
    y_old, y_new = np.asarray(built.old_outputs()), np.asarray(built.new_outputs(out))
    compare_outputs(y_old, y_new, built.outputs, 1e-5)
    # the new advantage is the old ones' mean, so the new Q-value is the old Q-values' mean
    np.testing.assert_allclose(y_new[:, A3.index("noop")], y_old.mean(axis=-1), atol=1e-5)


def test_replicas_under_a_layernorm_are_named_in_the_warnings():
    """Net2Net replicas (`normalised=False`) change what a LayerNorm over them computes: the
    plan says so (the default keeps the norm's statistics: tests/test_normalised.py)."""
    case = Case("ln", NormMLP(4, 2, "layer"), NormMLP(6, 2, "layer"), ((3,),))
    built = build(case)
    replicas = {**built.kwargs, "new_hidden": jsurgery.init.net2net(normalised=False)}
    plan = jsurgery.make_plan(built.old_vars, built.new_template, **replicas)
    words = ("norm", "mean", "reduce")
    assert any(word in w.lower() for w in plan.warnings for word in words), plan.warnings


# ----------------------------------------------------------------------------------------------
# Layer matching: a tie asks for `layers=`; `layers={path: None}` resets only that layer
# ----------------------------------------------------------------------------------------------

TIE = (Body((4, 4), 2), Body((4, 4, 4), 2))  # a new Dense(4) fits at position 1 or 2


def test_equally_small_insertions_are_a_tie_that_asks_for_layers():
    built = build(Case("tie", *TIE, ((3,),)))
    with pytest.raises(jsurgery.PlanError, match="layers"):
        jsurgery.make_plan(built.old_vars, built.new_template, **built.kwargs)


@pytest.mark.parametrize("inserted", [1, 2], ids=["inserted-at-1", "inserted-at-2"])
def test_layers_settles_the_tie_and_is_exact(inserted):
    carried = 3 - inserted  # the new layer that takes the old Dense_1
    layers = {"Dense_0": "Dense_0", f"Dense_{carried}": "Dense_1", "Dense_3": "Dense_2"}
    built, _, out = _surgery(Case("tie", *TIE, ((3,),), layers=layers))
    compare_outputs(built.old_outputs(), built.new_outputs(out), {}, 1e-5)
    params, old = out["params"], built.old_vars["params"]
    for new_path, old_path in layers.items():
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(params[new_path][leaf], old[old_path][leaf])
    np.testing.assert_array_equal(params[f"Dense_{inserted}"]["kernel"], np.eye(4))


@pytest.mark.parametrize("preset", ["preserving", "transplant"])
def test_layers_none_keeps_that_layer_at_the_template_and_touches_nothing_else(preset):
    model = Body((4, 4), 2)
    case = Case("reset", model, model, ((3,),), layers={"Dense_1": None}, preset=preset)
    built, _, out = _surgery(case)
    for layer in ("Dense_0", "Dense_1", "Dense_2"):
        source = built.new_template if layer == "Dense_1" else built.old_vars
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(out["params"][layer][leaf], source["params"][layer][leaf])


# ----------------------------------------------------------------------------------------------
# check_preservation compares every head
# ----------------------------------------------------------------------------------------------


def _break(tree, head: str):
    def f(path, x):
        keys = [getattr(k, "key", None) for k in path]
        return x + 0.5 if keys[-3:] == [head, "Dense_0", "kernel"] else x

    return jax.tree_util.tree_map_with_path(f, tree)


@pytest.mark.parametrize("head", ["actor", "critic"])
def test_check_preservation_reports_a_broken_head(head):
    built, plan, out = _surgery(BY_ID["actor-critic/inputs-added-permuted"])
    apply = forward(built.case.old)
    report = jsurgery.check_preservation(apply, built.old_vars, apply, out, built.x_old, plan)
    assert report.ok(1e-5), str(report)
    broken = jsurgery.check_preservation(
        apply, built.old_vars, apply, _break(out, head), built.x_old, plan
    )
    assert not broken.ok(1e-5), str(broken)


# ----------------------------------------------------------------------------------------------
# Training state: split param trees in one TrainState, and batch_stats beside params
# ----------------------------------------------------------------------------------------------


class BNTrainState(train_state.TrainState):
    batch_stats: Any = None


TX = optax.adam(1e-2)
_ADAM_UPDATE = jax.jit(TX.update)


def _adam_state(params, steps: int = 2):
    """Adam's state after `steps` updates with random gradients (distinct, non-zero moments)."""
    rng = np.random.default_rng(5)
    opt = TX.init(params)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        for _ in range(steps):
            grads = jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), params)
            _, opt = _ADAM_UPDATE(grads, opt, params)
    return opt


def _check_moments(case, old_opt, new_opt, strip: int = 0):
    """Copied units keep their Adam moments at the new positions; new units start at zero."""
    old_adam, new_adam = old_opt[0], new_opt[0]
    assert int(new_adam.count) == int(old_adam.count)
    for check in case.checks:
        check = replace(check, path=check.path[strip:])
        for moment in ("mu", "nu"):
            check_leaf(check, getattr(old_adam, moment), getattr(new_adam, moment))


def test_transplant_state_moves_split_torso_actor_critic_params_and_adam_moments():
    case = BY_ID["split-torso/transplant"]
    built, plan, out = _surgery(case)
    old, model = built.old_vars, case.old
    old_state = {
        "train": train_state.TrainState(
            step=2, apply_fn=model.apply, params=old, tx=TX, opt_state=_adam_state(old)
        ),
        "target_params": jax.tree.map(lambda x: 0.5 * x, old),
    }
    fresh = {
        "train": train_state.TrainState.create(
            apply_fn=case.new.apply, params=built.new_template, tx=TX
        ),
        "target_params": built.new_template,
    }
    state = jsurgery.transplant_state(old_state, fresh, plan)
    assert state["train"].step == 2 and state["train"].apply_fn == case.new.apply
    jax.tree.map(np.testing.assert_array_equal, state["train"].params, out)
    target = jsurgery.transplant(old_state["target_params"], built.new_template, plan)
    jax.tree.map(np.testing.assert_array_equal, state["target_params"], target)
    for check in case.checks:
        check_leaf(check, old_state["target_params"], state["target_params"], built.new_template)
    _check_moments(case, old_state["train"].opt_state, state["train"].opt_state)


def test_transplant_state_moves_batch_stats_beside_params():
    case = BY_ID["bn-mlp/widened-inputs-actions"]
    built, plan, out = _surgery(case)
    old = built.old_vars

    def make(variables, model, opt, step):
        return BNTrainState(
            step=step,
            apply_fn=model.apply,
            params=variables["params"],
            batch_stats=variables["batch_stats"],
            tx=TX,
            opt_state=opt,
        )

    old_state = make(old, case.old, _adam_state(old["params"]), 2)
    fresh = make(built.new_template, case.new, TX.init(built.new_template["params"]), 0)
    state = jsurgery.transplant_state(old_state, fresh, plan)
    assert state.step == 2
    jax.tree.map(np.testing.assert_array_equal, state.params, out["params"])
    jax.tree.map(np.testing.assert_array_equal, state.batch_stats, out["batch_stats"])
    y_new = built.new_outputs({"params": state.params, "batch_stats": state.batch_stats})
    compare_outputs(built.old_outputs(), y_new, built.outputs, case.atol)
    _check_moments(case, old_state.opt_state, state.opt_state, strip=1)
