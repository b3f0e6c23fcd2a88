"""Recurrent cells: a carry that crosses the function's boundary, and moving a live carry.

A cell's step, `apply(variables, carry, x) -> (carry, y)` (the Flax convention), takes its state
as the first argument and returns the next state first. Within one step the trace cannot see that
the returned carry is the argument of the next step; `tie_carry` puts each carry leaf's axes in
the same unit spaces as the returned leaf's, so the hidden space of the cell is one space read
and written by every gate. Those spaces are *carried*: their new units start as
`jsurgery.policies.carried_space` says, and `transplant_carry` moves a live carry (the hidden
state of running episodes) into the new network's space.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery import ids
from jsurgery.errors import PlanError
from jsurgery.spaces import Side


@dataclass(frozen=True)
class Carry:
    """A function's carry: argument `argument` comes back as output `output`.

    Attributes:
        argument: the index of the carry among the positional arguments (after the variables).
        output: the index of the returned carry in the function's output tuple.
        input_leaves: the carry's leaves among the flattened arguments (`Plan.input_specs`).
        output_leaves: the returned carry's leaves among the flattened outputs.
    """

    argument: int
    output: int
    input_leaves: tuple[int, ...]
    output_leaves: tuple[int, ...]

    def __str__(self) -> str:
        n = len(self.input_leaves)
        return (
            f"argument {self.argument} -> output {self.output} ({n} lea{'f' if n == 1 else 'ves'})"
        )


def _leaves(tree) -> list:
    return jax.tree_util.tree_leaves(tree)


def _shapes(tree) -> list:
    return [(tuple(x.shape), str(x.dtype)) for x in _leaves(tree)]


def find_carry(args: tuple, out, carry, name: str) -> Carry | None:
    """The carry of `fn(*args) -> out`.

    Args:
        args: the example positional arguments.
        out: the traced output (shapes).
        carry: None (argument 0 is the carry when it comes back as the first of two outputs
            with the same structure, shapes and dtypes: the Flax cell convention), False (no
            carry), or `(arg_index, output_index)` (that argument must come back as that output).
        name: the function's name, for messages.

    Raises:
        PlanError: for an index out of range, or a named carry that does not come back the same.
    """
    if carry is False:
        return None
    if carry is None:
        if len(args) < 2 or not isinstance(out, (tuple, list)) or len(out) != 2:
            return None
        arg, ret = jax.tree_util.tree_flatten(args[0]), jax.tree_util.tree_flatten(out[0])
        if arg[1] != ret[1] or not arg[0] or _shapes(args[0]) != _shapes(out[0]):
            return None
        return _carry(args, out, 0, 0)
    i, j = check_carry_arg(carry)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    if i >= len(args) or j >= len(outs):
        raise PlanError(
            f"`carry`: {carry!r} names argument {i} and output {j}, but the {name} function "
            f"takes {len(args)} example arguments and returns {len(outs)} outputs."
        )
    same = jax.tree_util.tree_structure(args[i]) == jax.tree_util.tree_structure(outs[j])
    if not same or _shapes(args[i]) != _shapes(outs[j]) or not _leaves(args[i]):
        raise PlanError(
            f"`carry`: argument {i} of the {name} function, {_shapes(args[i])}, comes back as "
            f"output {j} {_shapes(outs[j])}: a carry comes back with the same structure, shapes "
            "and dtypes; give the example carry the cell's own hidden size."
        )
    return _carry(args, outs, i, j)


def check_carry_arg(carry) -> tuple[int, int]:
    """`carry=(arg_index, output_index)` as two ints, or a PlanError."""
    ok = (
        isinstance(carry, (tuple, list))
        and len(carry) == 2
        and all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in carry)
    )
    if not ok:
        raise PlanError(
            f"`carry`: expected None (detect), False (no carry) or (arg_index, output_index), "
            f"got {carry!r}."
        )
    return int(carry[0]), int(carry[1])


def _carry(args, outs, i: int, j: int) -> Carry:
    a0 = sum(len(_leaves(x)) for x in args[:i])
    o0 = sum(len(_leaves(x)) for x in outs[:j])
    n = len(_leaves(args[i]))
    return Carry(i, j, tuple(range(a0, a0 + n)), tuple(range(o0, o0 + n)))


def tie_carry(side: Side) -> None:
    """Ties every axis of the carry argument to the same axis of the returned carry."""
    g = side.graph
    if g.carry is None:
        return
    pairs = zip(g.carry.input_leaves, g.carry.output_leaves, strict=True)
    for k, (ki, ko) in enumerate(pairs):
        for a, (i, o) in enumerate(zip(g.input_axes[ki], g.output_axes[ko], strict=True)):
            g.tie(i, o, f"carry leaf {k} axis {a} of the {side.name} function")
            g.carried.append(i)


def check_same_carry(old: Side, new: Side) -> None:
    """Both functions have the same carry (argument, output, number of leaves), or neither."""
    a, b = old.graph.carry, new.graph.carry
    if a != b:

        def says(c):
            return f"a carry ({c})" if c else "no carry"

        raise PlanError(
            f"`example`: the old function has {says(a)}, the new one {says(b)} (a carry is an "
            "argument returned as an output with the same structure and shapes, by default the "
            "first argument returned first of two: apply(variables, carry, x) -> (carry, y)); "
            "give both functions a carry of their own hidden size, or neither, or pass "
            "carry=False (no carry) or carry=(arg_index, output_index)."
        )


def carried_roots(side: Side) -> set:
    g = side.graph
    return {g.find(n) for n in g.carried}


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
