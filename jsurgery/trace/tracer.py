"""`trace`: an apply function and example inputs -> a unit-space `Graph`, and the error raised
when the function fails on its example inputs.

`jax.make_jaxpr` of the function, then the walker (`jsurgery.trace.walker.Walker`) over its
equations, each with the rule `jsurgery.trace.registry.rule_for` finds for its primitive.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from jsurgery.errors import PlanError
from jsurgery.graph.carry import find_carry
from jsurgery.graph.unit_graph import WRITE, Graph
from jsurgery.trace.registry import RULES, rule_for
from jsurgery.trace.sources import path_runs
from jsurgery.trace.walker import INPUT, PARAM, Walker


def trace(
    fn: Callable, leaves: list, args: tuple, arg: str, carry=None, names: list | None = None
) -> Graph:
    """Traces `fn(leaves, *args)` and builds its unit-space graph.

    Args:
        fn: takes the list of parameter leaves and the example arguments.
        leaves: the parameter leaves (arrays or ShapeDtypeStructs), in flat order.
        args: the example positional arguments (pytrees of arrays or ShapeDtypeStructs).
        arg: the argument's name, for messages.
        carry: None (detect: argument 0 returned as the first of two outputs), False (no
            carry) or `(arg_index, output_index)`.
        names: the leaves' paths, for messages.

    Raises:
        PlanError: when the function cannot be traced on the example inputs, or the `carry`
            named does not come back with the same structure, shapes and dtypes.
    """
    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    arg_leaves, arg_def = jax.tree_util.tree_flatten(args)
    arg_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in arg_leaves]

    traced: list = []

    def flat(ps, xs):
        traced[:] = ps
        return fn(ps, *jax.tree_util.tree_unflatten(arg_def, xs))

    try:
        closed, out_shape = jax.make_jaxpr(flat, return_shape=True)(specs, arg_specs)
    except PlanError:
        raise
    except Exception as e:  # noqa: BLE001 -- the user's function failed on the example
        raise _trace_error(e, arg, traced, names, tuple(args), carry) from e
    g = Graph()
    walker = Walker(g, rule_for)
    walker.layer_names = path_runs(list(names or []))
    jaxpr = closed.jaxpr
    n = len(specs)
    g.first_use = [None] * n
    g.leaf_roles = [[WRITE] * len(s.shape) for s in specs]
    for c in jaxpr.constvars:
        walker.fresh(c)
    for i, v in enumerate(jaxpr.invars):
        walker.fresh(v)
        walker.tags[v] = frozenset({PARAM if i < n else INPUT})
        if i < n:
            walker.origin[v] = [([(a,) for a in range(len(v.aval.shape))], i)]
        elif jax.numpy.issubdtype(v.aval.dtype, jax.numpy.integer):
            walker.values[v] = i - n
    for eqn in jaxpr.eqns:
        walker.equation(eqn)
    g.leaf_axes = [walker.of(v) for v in jaxpr.invars[:n]]
    g.input_axes = [walker.of(v) for v in jaxpr.invars[n:]]
    g.output_axes = [walker.of(v) for v in jaxpr.outvars]
    g.out_tree = jax.tree_util.tree_structure(out_shape)

    g.carry = find_carry(tuple(args), out_shape, carry, arg)
    return g


def _failing_leaf(e: Exception, traced: list) -> int | None:
    """The parameter leaf an operation was applied to when it raised: the innermost frame of
    the traceback holding one of the traced leaves."""
    where = {id(p): i for i, p in enumerate(traced)}
    found, tb = None, e.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if id(value) in where:
                found = where[id(value)]
        tb = tb.tb_next
    return found


def _trace_error(e: Exception, arg: str, traced: list, names, args: tuple, carry) -> PlanError:
    """The PlanError for a function that fails on its example inputs: the primitive and the
    parameter leaf it failed at, when known, and the carry's shapes when a carry may be the
    cause (a carry of the wrong size)."""
    text = str(e).split("\n")[0].rstrip(".")
    first = text.split(" ", 2)
    at = ""
    if first[0] in RULES:
        at = f" at `{first[0]}`"
    elif "split" in first[:2]:
        at = " at `split`"
    leaf = _failing_leaf(e, traced)
    if leaf is not None:
        name = names[leaf] if names else f"leaf {leaf}"
        at += f" on leaf {name!r} {tuple(traced[leaf].shape)}"
    hints = []
    if at.startswith(" at `split`"):
        hints.append(
            "a fused kernel's width must be a multiple of the number of gates it is split into"
        )
    k = 0 if carry is None else carry[0] if carry else None
    if k is not None and len(args) >= 2 and k < len(args):
        shapes = [tuple(x.shape) for x in jax.tree_util.tree_leaves(args[k])]
        hints.append(
            f"if argument {k} is the cell's carry, its example {shapes} must have the "
            f"{arg} cell's own hidden size"
        )
    hints.append("check `example` and `apply`")
    return PlanError(
        f"`example`: tracing the {arg} function on its example inputs failed{at} with "
        f"{type(e).__name__}: {text}; {'; '.join(hints)}."
    )
