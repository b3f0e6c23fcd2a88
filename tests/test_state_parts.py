"""`jsurgery.execute.state.state_parts`: which parts of a training state a plan covers, found by
structure; and the refusal of a new state that does not fit the plan."""

import jax
import optax
import pytest
from flax.training import train_state
from surgery_models import MLP, init

import jsurgery
from jsurgery.execute.state import state_parts


def _state(model, variables, tx):
    return train_state.TrainState.create(apply_fn=model.apply, params=variables["params"], tx=tx)


@pytest.fixture(scope="module")
def setup():
    old_m, new_m = MLP((4,), 2), MLP((6,), 2)
    old, new = init(old_m, 2, 0), init(new_m, 2, 1)
    plan = jsurgery.make_plan(old["params"], new["params"], **jsurgery.PRESERVING)
    tx = optax.adam(1e-3)
    return plan, _state(old_m, old, tx), _state(new_m, new, tx)


def _named(parts):
    return {jax.tree_util.keystr(p.keypath): p for p in parts}


@pytest.mark.parametrize("side", ["old", "new"])
def test_params_and_adam_moments_are_found_by_structure(setup, side):
    plan, old_state, new_state = setup
    parts, _ = state_parts(old_state if side == "old" else new_state, plan, side=side)
    named = _named(parts)
    covered = {k for k, p in named.items() if p.plan is not None}
    assert covered == {".params", ".opt_state[0].mu", ".opt_state[0].nu"}
    assert not named[".params"].moments
    assert named[".opt_state[0].mu"].moments and named[".opt_state[0].nu"].moments
    assert named[".opt_state[0].count"].plan is None and named[".step"].plan is None


def test_a_state_whose_params_do_not_fit_the_plan_is_refused(setup):
    plan, old_state, new_state = setup
    narrow = new_state.replace(params=jax.tree.map(lambda x: x[..., :1], new_state.params))
    with pytest.raises(jsurgery.PlanError, match=r"leaf 'Dense_0/bias' is \(1,\) float32"):
        jsurgery.transplant_state(old_state, narrow, plan)
    fewer = new_state.replace(params={"Dense_0": new_state.params["Dense_0"]})
    with pytest.raises(jsurgery.PlanError, match="same structure"):
        jsurgery.transplant_state(old_state, fewer, plan)
