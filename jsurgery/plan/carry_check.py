"""A plan-time check that new units of a carried space which start at zero stay at zero over one
step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery import ids
from jsurgery.errors import PlanError
from jsurgery.graph.carry import Carry


def check_stays_zero(
    fn, leaf_shapes: list, leaf_plans: dict, example: tuple, in_specs: tuple, carry: Carry
) -> None:
    """Runs one step of the new function on random weights shaped like the plan's result (zero
    wherever the plan writes zeros) and a carry that is zero on the new units, and refuses the
    plan when a new unit of the returned carry is not zero: the cell does not map a zero state
    to zero (a sigmoid candidate, a bias outside the plan), so "zero in" would not be exact.

    Args:
        fn: `fn(leaves, *args)`, the new function.
        leaf_shapes: `(shape, dtype)` per leaf, in the order `fn` takes them.
        leaf_plans: the `LeafPlan` per leaf, in the same order.
        example: the new function's example arguments (arrays or shapes).
        in_specs: the plan's input specs.
        carry: the new function's carry.

    Raises:
        PlanError: when a new carried unit leaves zero.
    """
    rng = np.random.default_rng(0)
    leaves = [
        _planned(rng, shape, dtype, lp)
        for (shape, dtype), lp in zip(leaf_shapes, leaf_plans, strict=True)
    ]
    arg_leaves, treedef = jax.tree_util.tree_flatten(tuple(example))
    args = []
    for k, x in enumerate(arg_leaves):
        value = _random(rng, tuple(x.shape), x.dtype)
        if k in carry.input_leaves and in_specs[k] is not None:
            value = _zero_new(value, in_specs[k])
        args.append(value)
    step = jax.jit(lambda ps, xs: fn(ps, *jax.tree_util.tree_unflatten(treedef, xs)))
    out = jax.tree_util.tree_leaves(step(leaves, args))
    for k, (ki, ko) in enumerate(zip(carry.input_leaves, carry.output_leaves, strict=True)):
        if in_specs[ki] is None:
            continue
        axis, old_ids, new_ids = in_specs[ki]
        new = np.flatnonzero(ids.index_of(new_ids, old_ids) < 0)
        moved = np.abs(np.take(np.asarray(out[ko], np.float64), new, axis=axis))
        if moved.size and moved.max() > 1e-6:
            raise PlanError(
                f"carry leaf {k}: its new units start with zero incoming weights, but one step "
                f"of the new cell from a carry that is zero there moves them to "
                f"{float(moved.max()):.3g}: the cell does not map a zero state to zero, so the "
                "preserving start is not exact for it. Pass new_hidden='zero_fanout' (new units "
                "take template incoming weights and nothing reads them: exact)."
            )


def _random(rng, shape: tuple, dtype):
    if np.issubdtype(np.dtype(dtype), np.integer):
        return jnp.zeros(shape, dtype)
    return jnp.asarray(rng.normal(size=shape), dtype)


def _zero_new(x, spec):
    axis, old_ids, new_ids = spec
    keep = ids.index_of(new_ids, old_ids) >= 0
    shape = [-1 if a == axis else 1 for a in range(x.ndim)]
    return jnp.where(np.reshape(keep, shape), x, jnp.zeros((), x.dtype))


def _planned(rng, shape: tuple, dtype, lp):
    """A random leaf, zero where the plan writes zeros (masks of its axes, a zero new layer)."""
    if lp.source == "identity":
        x = np.zeros(shape)
        if lp.identity:
            x[lp.identity] = 1.0
        return jnp.asarray(x, dtype)
    x = rng.normal(size=shape)
    for am in lp.axes:
        if am.zero is not None:
            mask = np.reshape(
                am.zero, [-1 if a == am.axis % len(shape) else 1 for a in range(len(shape))]
            )
            x = np.where(mask, 0.0, x)
    return jnp.asarray(x, dtype)
