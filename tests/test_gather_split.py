"""The gather's bulk split (the copied run of an axis computed from slices alone, the other rows
written into it) gives bit for bit the leaves the per-segment gather gives, for parameters and
optimizer moments, on MLPs widened by Net2Net with an input and an action added."""

import jax
import jax.numpy as jnp
import numpy as np
from surgery_models import MLP

import jsurgery
from jsurgery.execute import gather

OBS, NEW_OBS = ["a", "b", "c"], ["a", "d", "b", "c", "e"]


def _transplanted(old, template, plan):
    params = jsurgery.transplant(old, template, plan)
    moments = jsurgery.transplant_moments(old, template, plan)
    return jax.device_get((params, moments))


SPLIT = gather._split


def _uses_split(plan) -> bool:
    for lp in plan.leaves:
        if lp.source != "old" or len(lp.shape) == 0:
            continue
        for moments in (False, True):
            blocked = gather._template_blocks(lp, gather._last(lp), moments)
            if SPLIT(lp, moments, blocked):
                return True
    return False


def _mlp_surgeries():
    """64 x 64 MLPs widened (Net2Net replicas with unequal shares), an input and an action added."""
    for widths in ((96, 80), (72, 70), (128, 65)):
        for norm in (None, "layer"):
            old_m, new_m = MLP((64, 64), 2, norm=norm), MLP(widths, 3, norm=norm)
            old = old_m.init(jax.random.key(0), jnp.ones((1, len(OBS))))
            new = new_m.init(jax.random.key(1), jnp.ones((1, len(NEW_OBS))))
            ids = dict(inputs=(OBS, NEW_OBS), outputs=(["l", "r"], ["l", "n", "r"]))
            yield f"mlp-{widths}-{norm}", old, new, {**ids, **jsurgery.PRESERVING}


def test_split_gather_is_bit_identical(monkeypatch):
    split_used = []
    for name, old, template, kwargs in _mlp_surgeries():
        plan = jsurgery.make_plan(old, template, **kwargs)
        if _uses_split(plan):
            split_used.append(name)
        monkeypatch.setattr(gather, "_split", SPLIT)
        jax.clear_caches()
        split = _transplanted(old, template, plan)
        monkeypatch.setattr(gather, "_split", lambda *args: None)
        jax.clear_caches()
        whole = _transplanted(old, template, plan)
        for a, b in zip(jax.tree.leaves(split), jax.tree.leaves(whole), strict=True):
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
    assert len(split_used) >= 3, split_used
