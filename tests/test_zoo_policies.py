"""PRESERVING surgeries on networks from public JAX RL and language-model code (`zoo_policies`):
each ends in exactly the outcome that is mathematically possible, judged by forward passes of
the old and new networks on the old inputs, never by what the plan says of itself.

- EXACT: the old outputs come back (|new - old| <= 1e-5 (1 + |old|));
- WARNED: `plan.warnings` is not empty and the old outputs move (by more than 1e-3 (1 + |old|)),
  so the warning is true;
- REFUSED: `make_plan` raises a `PlanError`.

Cases today's code gets wrong (it reports success while the outputs move, or refuses a network
it supports) are strict xfails naming issue 21: they fail once fixed, and the marker goes.
"""

import jax
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state
from graph_zoo import embed
from zoo_policies import (
    A2,
    A3,
    BY_ID,
    EXACT,
    OBS,
    REFUSED,
    SURGERIES,
    NnxTrainMLP,
    build,
    distance,
)

import jsurgery

EXACT_TOL, MOVED = 1e-5, 1e-3


def _marked(surgeries):
    return [
        pytest.param(s, id=s.id, marks=pytest.mark.xfail(strict=True, reason=s.xfail))
        if s.xfail
        else pytest.param(s, id=s.id)
        for s in surgeries
    ]


def judge(expect: str, plan, moved: float) -> None:
    """Asserts the outcome `expect` from the plan's warnings and the measured distance."""
    if expect == EXACT:
        assert moved <= EXACT_TOL, f"old outputs moved by {moved:.3g}; warnings: {plan.warnings}"
    else:
        assert plan.warnings, f"no warning, and the old outputs moved by {moved:.3g}"
        assert moved > MOVED, f"warned, but the old outputs moved only {moved:.3g}"


@pytest.mark.parametrize("surgery", _marked(SURGERIES))
def test_preserving_surgery_ends_in_its_one_possible_outcome(surgery):
    built = build(surgery)
    if surgery.expect == REFUSED:
        with pytest.raises(jsurgery.PlanError):
            built.plan()
        return
    plan = built.plan()
    out = jsurgery.transplant(built.old_vars, built.new_template, plan)
    moved = distance(built.old_outputs(), built.new_outputs(out), surgery.outputs)
    judge(surgery.expect, plan, moved)


# ----------------------------------------------------------------------------------------------
# NNX in train mode: BatchNorm on batch statistics, Dropout on
# ----------------------------------------------------------------------------------------------

NNX_CHANGES = {
    "inputs-added": ((2, (6,), 2), (4, (6,), 2), {"inputs": (["x", "theta"], OBS)}),
    "widened": ((4, (6, 5), 2), (4, (9, 8), 2), {}),
    "actions-added": ((4, (6,), 2), (4, (6,), 3), {"outputs": (A2, A3)}),
}


def _nnx_outputs(model, state, x, train: bool):
    """A forward pass of a copy of `model` holding `state`: in eval mode, or in train mode with
    BatchNorm on the batch's statistics and Dropout off (its masks are random)."""
    copy = nnx.merge(nnx.graphdef(model), state)
    if train:
        copy.drop.deterministic = True
    else:
        copy.eval()
    return np.asarray(copy(x))


@pytest.mark.parametrize("as_module", [True, False], ids=["module", "state"])
@pytest.mark.parametrize("change", list(NNX_CHANGES))
def test_nnx_train_mode_surgery_is_exact(change, as_module):
    old_shape, new_shape, kw = NNX_CHANGES[change]
    old_m, new_m = NnxTrainMLP(*old_shape, nnx.Rngs(0)), NnxTrainMLP(*new_shape, nnx.Rngs(1))
    for k, norm in enumerate(old_m.norms):
        norm.mean[...] = jax.random.normal(jax.random.key(3 + k), norm.mean.shape)
        norm.var[...] = jax.random.uniform(jax.random.key(9 + k), norm.var.shape) + 0.5
    x = np.random.default_rng(0).normal(size=(8, old_shape[0])).astype(np.float32)
    x_new = embed(x, *kw["inputs"]) if "inputs" in kw else x
    plan = jsurgery.make_plan(old_m, new_m, example=((x,), (x_new,)), **kw, **jsurgery.PRESERVING)
    if as_module:
        out = nnx.state(jsurgery.transplant(old_m, new_m, plan))
    else:
        out = jsurgery.transplant(nnx.state(old_m), nnx.state(new_m), plan)
    outputs = {0: kw["outputs"]} if "outputs" in kw else {}
    for train in (False, True):
        y_old = _nnx_outputs(old_m, nnx.state(old_m), x, train)
        judge(EXACT, plan, distance(y_old, _nnx_outputs(new_m, out, x_new, train), outputs))


# ----------------------------------------------------------------------------------------------
# Params in a flax.struct.dataclass, in a TrainState with Adam
# ----------------------------------------------------------------------------------------------


def test_transplant_state_with_dataclass_params_keeps_the_old_outputs():
    surgery = BY_ID["dataclass-params/widened"]
    built = build(surgery)
    plan = built.plan()
    tx = optax.adam(1e-2)
    grads = jax.tree.map(lambda p: 0.1 * p + 0.05, built.old_vars)

    def create(model, params):  # TrainState.create and apply_gradients look into a dict
        return train_state.TrainState(
            step=0, apply_fn=model.apply, params=params, tx=tx, opt_state=tx.init(params)
        )

    old_state = create(surgery.old, built.old_vars)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes int and float
        updates, opt_state = tx.update(grads, old_state.opt_state, old_state.params)
    params = optax.apply_updates(old_state.params, updates)
    old_state = old_state.replace(step=1, params=params, opt_state=opt_state)
    fresh = create(surgery.new, built.new_template)
    state = jsurgery.transplant_state(old_state, fresh, plan)
    assert int(state.step) == 1
    y_old = surgery.old.apply(old_state.params, *built.x_old)
    judge(EXACT, plan, distance(y_old, built.new_outputs(state.params), {}))


# ----------------------------------------------------------------------------------------------
# What the warnings say
# ----------------------------------------------------------------------------------------------


def test_layernorm_warning_names_the_users_layer_not_flax_internals():
    built = build(BY_ID["pqn/widened-under-layernorm"])
    replicas = {**built.kwargs, "new_hidden": jsurgery.init.net2net(normalised=False)}
    plan = jsurgery.make_plan(built.old_vars, built.new_template, **replicas)
    assert plan.warnings
    for warning in plan.warnings:
        assert "LayerNorm" in warning or "Dense" in warning, warning
        assert "site-packages" not in warning and "_compute_stats" not in warning, warning
