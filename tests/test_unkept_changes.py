"""Changes that cannot keep the old function say so: units or inputs dropped, IDs that match
nothing, IDs that never equal themselves; option values that would start new units wrongly are
refused before any planning."""

import numpy as np
import pytest
from surgery_models import MLP, apply_fn, init, rand

import jsurgery


def _moved(old_m, new_m, old, new, plan, n_in):
    out = jsurgery.transplant(old, new, plan)
    x = rand((16, n_in), 3)
    y_old = np.asarray(apply_fn(old_m)(old, x))
    y_new = np.asarray(apply_fn(new_m)(out, plan.embed_inputs(x)))
    return float(np.abs(y_old - y_new).max())


def test_hidden_units_narrowed_are_named_and_the_outputs_move():
    old_m, new_m = MLP((8,), 2), MLP((5,), 2)
    old, new = init(old_m, 3, 0), init(new_m, 3, 1)
    plan = jsurgery.make_plan(old, new, **jsurgery.PRESERVING)
    assert _moved(old_m, new_m, old, new, plan, 3) > 1e-3
    (warning,) = [w for w in plan.warnings if "dropped" in w]
    assert "3 of 8" in warning and "Dense_0" in warning


def test_an_input_removed_is_named_and_the_outputs_move():
    old_m, new_m = MLP((8,), 2), MLP((8,), 2)
    old, new = init(old_m, 3, 0), init(new_m, 2, 1)
    plan = jsurgery.make_plan(old, new, inputs=(["a", "b", "c"], ["a", "c"]), **jsurgery.PRESERVING)
    x = rand((16, 3), 3)
    out = jsurgery.transplant(old, new, plan)
    y_new = np.asarray(apply_fn(new_m)(out, x[:, [0, 2]]))
    assert float(np.abs(np.asarray(apply_fn(old_m)(old, x)) - y_new).max()) > 1e-3
    (warning,) = [w for w in plan.warnings if "dropped" in w]
    assert "1 of 3" in warning and "'b'" in warning


def test_ids_that_match_nothing_say_why():
    old, new = init(MLP((8,), 2), 3, 0), init(MLP((8,), 2), 4, 1)
    plan = jsurgery.make_plan(
        old, new, inputs=([1, 2, 3], ["1", "2", "3", "4"]), new_inputs="zeros"
    )
    (warning,) = [w for w in plan.warnings if "dropped" in w]
    assert "3 of 3" in warning and "none of the new IDs" in warning and "type" in warning
    kernel = jsurgery.transplant(old, new, plan)["params"]["Dense_0"]["kernel"]
    np.testing.assert_array_equal(kernel, np.zeros_like(kernel))  # what the warning warns of


def test_an_unchanged_network_has_no_dropped_warning():
    old, new = init(MLP((8,), 2), 3, 0), init(MLP((8,), 2), 3, 1)
    assert not jsurgery.make_plan(old, new, **jsurgery.PRESERVING).warnings


def test_outputs_removed_are_not_a_dropped_warning():
    """The outputs kept are exact; the removed ones are gone on purpose."""
    old, new = init(MLP((8,), 3), 3, 0), init(MLP((8,), 2), 3, 1)
    plan = jsurgery.make_plan(old, new, outputs=(["l", "n", "r"], ["l", "r"]))
    assert not [w for w in plan.warnings if "dropped" in w]


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(inputs=([float("nan"), 1.0], [float("nan"), 1.0])), ["nan", "equal itself"]),
        (dict(new_outputs="pessimistic", pessimism=-5), ["pessimism", "-5", "not be negative"]),
        (dict(new_hidden="net2net", seed="abc"), ["seed", "'abc'", "integer"]),
        (dict(new_hidden="net2net", seed=2**70), ["seed", "2**32"]),
        (dict(layers=["Dense_0"]), ["layers", "dict"]),
        (dict(hidden=[("a", "b")]), ["hidden", "dict"]),
    ],
    ids=[
        "nan-ids",
        "negative-pessimism",
        "seed-text",
        "seed-too-large",
        "layers-list",
        "hidden-list",
    ],
)
def test_bad_values_are_refused_before_planning(kwargs, words):
    old, new = init(MLP((8,), 2), 2, 0), init(MLP((8,), 2), 2, 1)
    with pytest.raises(jsurgery.PlanError) as info:
        jsurgery.make_plan(old, new, **kwargs)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


def test_the_pessimistic_output_starts_below_the_old_ones_with_margin_zero_allowed():
    old, new = init(MLP((8,), 2), 2, 0), init(MLP((8,), 3), 2, 1)
    pairs = (["l", "r"], ["l", "r", "n"])
    plan = jsurgery.make_plan(old, new, outputs=pairs, new_outputs="pessimistic", pessimism=0.0)
    out = jsurgery.transplant(old, new, plan)
    y = np.asarray(apply_fn(MLP((8,), 3))(out, rand((8, 2), 1)))
    np.testing.assert_allclose(y[:, 2], y[:, :2].mean(axis=1), atol=1e-5)
