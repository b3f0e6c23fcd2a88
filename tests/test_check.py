"""The function-preservation checker."""

import jax
import numpy as np
from surgery_models import MLP, apply_fn, init, rand

import jsurgery


def test_checker_reports_zero_for_a_preserving_plan_and_names_the_worst_output():
    old_m, new_m = MLP((4,), 2), MLP((6,), 3)
    old, new = init(old_m, 2, 0), init(new_m, 3, 1)
    plan = jsurgery.make_plan(
        old,
        new,
        inputs=(["a", "b"], ["c", "a", "b"]),
        outputs=(["l", "r"], ["n", "l", "r"]),
        **jsurgery.PRESERVING,
    )
    out = jsurgery.transplant(old, new, plan)
    report = jsurgery.check_preservation(
        apply_fn(old_m), old, apply_fn(new_m), out, rand((9, 2)), plan
    )
    assert report.ok(1e-5) and report.compared == ("l", "r") and report.new_outputs == ("n",)
    assert report.batch == 9 and "largest output difference" in str(report)

    broken = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 1.0 if p[-1].key == "bias" and p[-2].key == "Dense_1" else x, out
    )
    bad = jsurgery.check_preservation(
        apply_fn(old_m), old, apply_fn(new_m), broken, rand((9, 2)), plan
    )
    assert not bad.ok(1e-5)
    np.testing.assert_allclose(bad.max_abs_diff, 1.0, atol=1e-5)
    assert set(bad.per_output) == {"l", "r"}


def test_template_arm_is_reported_as_not_preserving():
    old_m, new_m = MLP((4,), 2), MLP((6,), 2)
    old, new = init(old_m, 2, 0), init(new_m, 3, 1)
    plan = jsurgery.make_plan(old, new, inputs=(["a", "b"], ["c", "a", "b"]), **jsurgery.TRANSPLANT)
    out = jsurgery.transplant(old, new, plan)
    report = jsurgery.check_preservation(
        apply_fn(old_m), old, apply_fn(new_m), out, rand((9, 2)), plan
    )
    assert not report.ok(1e-5)
