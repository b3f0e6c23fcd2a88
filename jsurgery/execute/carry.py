"""transplant_carry: a recurrent state moved into the new cell's units."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery import ids
from jsurgery.errors import PlanError


def transplant_carry(carry, plan):
    """Moves a live carry of the old network into the new network's hidden space.

    Copied hidden units keep their values at their new positions, and new units start at zero:
    with the function-preserving plan (`**jsurgery.PRESERVING`), new units of a carried space
    then stay at zero, so the new cell continues every running episode exactly where the old
    one was.

    Args:
        carry: the old cell's carry (any pytree of arrays: `(c, h)` for an LSTM, `h` for a GRU),
            batched or not.
        plan: a traced plan of the cell's step, `apply(variables, carry, x) -> (carry, y)`.

    Returns:
        The carry in the new network's space, the same structure.

    Raises:
        PlanError: for a plan without inputs, or a carry that does not fit the plan's.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn, jsurgery
        >>> old_cell, new_cell = nn.GRUCell(3), nn.GRUCell(5)
        >>> x, h3, h5 = jnp.ones((1, 2)), jnp.zeros((1, 3)), jnp.zeros((1, 5))
        >>> old = old_cell.init(jax.random.key(0), h3, x)
        >>> new = new_cell.init(jax.random.key(1), h5, x)
        >>> plan = jsurgery.make_plan(old, new, apply=(old_cell.apply, new_cell.apply),
        ...                           example=((h3, x), (h5, x)), **jsurgery.PRESERVING)
        >>> jsurgery.transplant_carry(jnp.ones((1, 3)), plan)
        Array([[1., 1., 1., 0., 0.]], dtype=float32)
    """
    leaves, treedef = jax.tree_util.tree_flatten(carry)
    spec = getattr(plan, "carry", None)
    if spec is None:
        raise PlanError(
            "`plan`: it has no carry (a params-only plan, carry=False, or a function that does "
            "not return its state); make the plan with apply= and example= on the cell's step "
            "apply(variables, carry, x) -> (carry, y), or name it with carry=(arg, output)."
        )
    if len(leaves) != len(spec.input_leaves):
        raise PlanError(
            f"`carry`: {len(leaves)} leaves, but the plan's carry ({spec}) has "
            f"{len(spec.input_leaves)}; pass the old cell's whole carry."
        )
    specs = [plan.input_specs[k] for k in spec.input_leaves]
    pairs = zip(leaves, specs, strict=True)
    out = [_move(jnp.asarray(x), spec, k) for k, (x, spec) in enumerate(pairs)]
    return jax.tree_util.tree_unflatten(treedef, out)


def _move(x, spec, k: int):
    if spec is None:
        return x
    axis, old_ids, new_ids = spec
    if axis == "values" or x.ndim == 0:
        raise PlanError(f"`carry`: leaf {k} is not a carry of hidden units (axis {axis}).")
    if x.shape[axis] != len(old_ids):
        raise PlanError(
            f"`carry`: leaf {k} has shape {tuple(x.shape)}, but the old cell's carry leaf {k} has "
            f"{len(old_ids)} units on axis {axis}; pass the carry of the network the plan was "
            "made from."
        )
    src = ids.index_of(new_ids, old_ids)
    moved = jnp.take(x, np.maximum(src, 0), axis=axis)
    shape = [-1 if a == axis % x.ndim else 1 for a in range(x.ndim)]
    return jnp.where(np.reshape(src >= 0, shape), moved, jnp.zeros((), x.dtype))
