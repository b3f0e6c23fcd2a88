"""A plan's promises, checked by running the networks in the test, and `make_plan` refusing a
plan whose promise the networks break."""

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jsurgery
from jsurgery.errors import PlanError
from jsurgery.init import NewUnits, UnitRule


class MLP(nn.Module):
    hidden: int
    out: int

    @nn.compact
    def __call__(self, x):
        h = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.out)(h)


X4, X5 = jnp.ones((3, 4)), jnp.ones((3, 5))
OLD_M, NEW_M = MLP(8, 3), MLP(12, 4)
OLD = OLD_M.init(jax.random.key(0), X4)
NEW = NEW_M.init(jax.random.key(1), X5)
IDS = dict(inputs=([0, 1, 2, 3], [0, 9, 1, 2, 3]), outputs=(["a", "b", "c"], ["a", "b", "c", "d"]))
TRACED = dict(apply=(OLD_M.apply, NEW_M.apply), example=((X4,), (X5,)), **IDS)
X_OLD = jax.random.normal(jax.random.key(7), (64, 4))


def _embed(x_old):
    """Old inputs in the new input space, written here: feature 9 is new (zero)."""
    return jnp.concatenate([x_old[:, :1], jnp.zeros((len(x_old), 1)), x_old[:, 1:]], axis=1)


def _outputs(plan, **kw):
    new = jsurgery.transplant(OLD, NEW, plan)
    return np.asarray(OLD_M.apply(OLD, X_OLD)), np.asarray(NEW_M.apply(new, _embed(X_OLD)))


def _promise(plan, new: bool):
    (found,) = [p for p in plan.promises if p.new == new]
    return found


def test_preserving_promises_exact_old_units_and_a_pessimistic_start_and_keeps_them():
    plan = jsurgery.make_plan(OLD, NEW, **TRACED, **jsurgery.PRESERVING, pessimism=2.0)
    old_units, new_unit = _promise(plan, False), _promise(plan, True)
    assert (old_units.kind, old_units.units) == ("exact", ("a", "b", "c"))
    assert (new_unit.kind, new_unit.start, new_unit.offset) == ("start", "mean", -2.0)
    y_old, y_new = _outputs(plan)
    np.testing.assert_allclose(y_new[:, :3], y_old, atol=1e-5)
    np.testing.assert_allclose(y_new[:, 3], y_old.mean(axis=1) - 2.0, atol=1e-5)
    assert plan.verified.startswith("verified") and "promises on old inputs" in str(plan)


def test_a_copy_start_is_promised_and_kept():
    plan = jsurgery.make_plan(
        OLD, NEW, **TRACED, **{**jsurgery.PRESERVING, "new_outputs": {"d": "b"}}
    )
    new_unit = _promise(plan, True)
    assert (new_unit.start, new_unit.copies) == ("copy", ("b",))
    y_old, y_new = _outputs(plan)
    np.testing.assert_allclose(y_new[:, 3], y_old[:, 1], atol=1e-5)


def test_template_hidden_units_promise_nothing_and_do_move_the_outputs():
    plan = jsurgery.make_plan(OLD, NEW, **TRACED)
    assert _promise(plan, False).kind == "nothing"
    y_old, y_new = _outputs(plan)
    assert np.abs(y_new[:, :3] - y_old).max() > 1e-3


def _small_random_gap(scale: float) -> float:
    plan = jsurgery.make_plan(
        OLD, NEW, **TRACED, new_inputs="zeros", new_hidden="small_random", init_scale=scale
    )
    assert (_promise(plan, False).kind, _promise(plan, False).scale) == ("first order", scale)
    y_old, y_new = _outputs(plan)
    return float(np.abs(y_new[:, :3] - y_old).max())


def test_a_first_order_promise_shrinks_at_least_linearly_with_its_scale():
    big, small = _small_random_gap(1e-2), _small_random_gap(1e-3)
    assert 0 < small <= 0.11 * big


@dataclass(frozen=True)
class UndividedCopies(UnitRule):
    """A user's rule that copies old units into new ones without dividing their readers: the
    plan's maps say "replica", which promises exact, but the outputs move."""

    fits = frozenset({"new_hidden"})

    def space_map(self, units: NewUnits):
        sm = units.template("undivided copies")
        new = np.flatnonzero(units.src < 0)
        sm.write_idx[new] = 0
        sm.read_idx[new] = 0
        return sm


def test_a_broken_promise_is_refused_naming_the_output_units_and_layers():
    kw = dict(TRACED, new_inputs="zeros", new_hidden=UndividedCopies())
    with pytest.raises(PlanError) as caught:
        jsurgery.make_plan(OLD, NEW, **kw)
    text = str(caught.value)
    assert "output 0" in text and "'a'" in text and "Dense_0" in text and "verify=False" in text
    plan = jsurgery.make_plan(OLD, NEW, **kw, verify=False)
    assert plan.verified == "not verified (verify=False)"
    y_old, y_new = _outputs(plan)
    assert np.abs(y_new[:, :3] - y_old).max() > 1e-2


def test_check_preservation_reports_against_the_promises():
    kw = dict(TRACED, new_inputs="zeros", new_hidden=UndividedCopies())
    plan = jsurgery.make_plan(OLD, NEW, **kw, verify=False)
    new = jsurgery.transplant(OLD, NEW, plan)
    report = jsurgery.check_preservation(OLD_M.apply, OLD, NEW_M.apply, new, X_OLD, plan)
    assert [p.units for p in report.broken] == [("a", "b", "c")]
    assert "broken promise" in str(report)
    good = jsurgery.make_plan(OLD, NEW, **TRACED, **jsurgery.PRESERVING)
    new = jsurgery.transplant(OLD, NEW, good)
    report = jsurgery.check_preservation(OLD_M.apply, OLD, NEW_M.apply, new, X_OLD, good)
    assert report.broken == () and len(report.promises) == 2


def test_plans_that_cannot_run_say_they_were_not_verified():
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), (OLD, NEW))
    plan = jsurgery.make_plan(*shapes, **TRACED, **jsurgery.PRESERVING)
    assert plan.verified == "not verified: made from shapes alone"
    params_only = jsurgery.make_plan(OLD, NEW, **IDS, **jsurgery.PRESERVING)
    assert params_only.verified.startswith("not verified: the params-only path")
    assert [p.kind for p in params_only.promises] == ["exact", "start"]


def test_verify_must_be_a_bool():
    with pytest.raises(PlanError, match="`verify`"):
        jsurgery.make_plan(OLD, NEW, **TRACED, verify="yes")


def test_a_widened_cell_promises_exact_old_units_and_zero_new_ones_at_every_step():
    old_cell, new_cell = nn.GRUCell(3), nn.GRUCell(5)
    x, h3, h5 = jnp.ones((2, 2)), jnp.zeros((2, 3)), jnp.zeros((2, 5))
    old = old_cell.init(jax.random.key(0), h3, x)
    new = new_cell.init(jax.random.key(1), h5, x)
    example = ((h3, x), (h5, x))
    plan = jsurgery.make_plan(
        old, new, apply=(old_cell.apply, new_cell.apply), example=example, **jsurgery.PRESERVING
    )
    kinds = {(p.output, p.new): (p.kind, p.start) for p in plan.promises}
    assert kinds == {(k, False): ("exact", None) for k in (0, 1)} | {
        (k, True): ("start", "zero") for k in (0, 1)
    }
    out = jsurgery.transplant(old, new, plan)
    h_old = jax.random.normal(jax.random.key(3), (2, 3))
    h_new = jnp.concatenate([h_old, jnp.zeros((2, 2))], axis=1)  # written here, not by the plan
    for t in range(5):
        xt = jax.random.normal(jax.random.key(10 + t), (2, 2))
        h_old, _ = old_cell.apply(old, h_old, xt)
        h_new, _ = new_cell.apply(out, h_new, xt)
        np.testing.assert_allclose(h_new[:, :3], h_old, atol=1e-5)
        np.testing.assert_array_equal(h_new[:, 3:], 0.0)
