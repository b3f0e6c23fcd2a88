"""new_hidden="small_random" (OpenAI Five, Berner et al. 2019, appendix B): every weight touching
a new hidden unit is the template's value times `init_scale`; old units keep their weights.

Expected leaves are built here by index arithmetic from the unit IDs, never by jsurgery.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from surgery_models import MLP

import jsurgery

OBS3, OBS4 = ["a", "b", "c"], ["a", "d", "b", "c"]
SMALL = {**jsurgery.TRANSPLANT, "new_hidden": "small_random"}


def _models(seed=0):
    old_m, new_m = MLP((4, 5), 2), MLP((6, 7), 2)
    rng = np.random.default_rng(seed)
    old = old_m.init(jax.random.key(0), jnp.ones((1, 3)))
    old = jax.tree.map(lambda v: v + jnp.asarray(0.3 * rng.normal(size=v.shape), v.dtype), old)
    new = new_m.init(jax.random.key(1), jnp.ones((1, 4)))
    new = jax.tree.map(lambda v: v + jnp.asarray(0.3 * rng.normal(size=v.shape), v.dtype), new)
    return old_m, new_m, old, new


def _plan(old_m, new_m, old, new, traced: bool, scale: float):
    kw = {}
    if traced:
        kw = dict(
            apply=(old_m.apply, new_m.apply), example=((jnp.ones((1, 3)),), (jnp.ones((1, 4)),))
        )
    return jsurgery.make_plan(old, new, inputs=(OBS3, OBS4), init_scale=scale, **kw, **SMALL)


def _expected(old, tmpl, rows, new_rows, new_cols, scale):
    """Old values at (old row, old col) pairs, the template elsewhere, times `scale` in new
    rows or columns (a new input row at an old column keeps the plain template)."""
    out = np.array(tmpl, np.float64)
    old = np.asarray(old, np.float64)
    if out.ndim == 1:
        out[: len(old)] = old
        out[new_cols] *= scale
        return out
    out[np.ix_(rows, range(old.shape[1]))] = old
    out[new_rows, :] *= scale
    out[:, new_cols] *= scale
    out[np.ix_(new_rows, new_cols)] /= scale  # scaled once, not twice
    return out


@pytest.mark.parametrize("traced", [False, True], ids=["params-only", "traced"])
def test_new_positions_are_template_times_scale_and_old_ones_are_copied(traced):
    old_m, new_m, old, new = _models()
    scale = 0.05
    out = jsurgery.transplant(old, new, _plan(old_m, new_m, old, new, traced, scale))
    p, o, t = out["params"], old["params"], new["params"]
    rows_in = [OBS4.index(u) for u in OBS3]
    cases = {  # layer: (rows of old inputs, new rows (scaled), new columns (scaled))
        "Dense_0": (rows_in, [], [4, 5]),
        "Dense_1": (list(range(4)), [4, 5], [5, 6]),
        "Dense_2": (list(range(5)), [5, 6], []),
    }
    for layer, (rows, new_rows, new_cols) in cases.items():
        for leaf in ("kernel", "bias"):
            want = _expected(o[layer][leaf], t[layer][leaf], rows, new_rows, new_cols, scale)
            np.testing.assert_allclose(
                p[layer][leaf], want, rtol=1e-6, atol=0, err_msg=f"{layer}/{leaf}"
            )


def test_the_plan_names_the_option_and_its_scale():
    old_m, new_m, old, new = _models()
    text = str(_plan(old_m, new_m, old, new, False, 0.02))
    assert "init_scale=0.02" in text and "small random: template x 0.02" in text, text


@pytest.mark.parametrize("traced", [False, True], ids=["params-only", "traced"])
def test_output_change_shrinks_with_the_scale(traced):
    old_m, new_m, old, new = _models()
    x = np.random.default_rng(2).normal(size=(16, 3)).astype(np.float32)
    x_new = np.insert(x, 1, 0.0, axis=1)  # the new input 'd' reads 0
    y_old = np.asarray(old_m.apply(old, x))
    diffs = []
    for scale in (0.1, 0.01):
        out = jsurgery.transplant(old, new, _plan(old_m, new_m, old, new, traced, scale))
        diffs.append(np.abs(np.asarray(new_m.apply(out, x_new)) - y_old).max())
    assert diffs[0] > 0  # not exact
    assert diffs[1] <= diffs[0] / 10 * 1.01, diffs  # at least in proportion to the scale


@pytest.mark.parametrize("scale", [0.0, -1.0, float("nan"), "big"])
def test_a_bad_scale_is_refused(scale):
    old_m, new_m, old, new = _models()
    with pytest.raises(jsurgery.PlanError, match="init_scale"):
        _plan(old_m, new_m, old, new, False, scale)
