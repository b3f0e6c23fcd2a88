"""A recurrent cell's carry: an argument the function returns as one of its outputs, found while
tracing and tied into one space across the step."""

from __future__ import annotations

from dataclasses import dataclass

import jax

from jsurgery.errors import PlanError
from jsurgery.graph.side import Side


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
        detect = "; to have the carry detected, leave `carry` out (None)" if carry is True else ""
        raise PlanError(
            f"`carry`: expected None (detect), False (no carry) or (arg_index, output_index), "
            f"got {carry!r}{detect}. A carry is the recurrent state of a traced plan (apply= "
            "and example=): None finds it as argument 0 when the function returns it as the "
            "first of two outputs (`apply(variables, carry, x) -> (carry, y)`); "
            "(arg_index, output_index) names another argument and output."
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
