"""Each side of a traced plan: the function traced, its layers, the spaces of its inputs and
outputs, and the axes the trace could not follow."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from jsurgery import trees
from jsurgery.errors import PlanError
from jsurgery.graph import factors
from jsurgery.graph.carry import tie_carry
from jsurgery.graph.side import Side, Traced
from jsurgery.graph.unit_graph import WINDOW
from jsurgery.match.layers import GraphLayer
from jsurgery.trace import trace

ROOT = "(root)"


def _function(tree, apply: Callable | None, arg: str):
    """The tree's leaves (flat order), their paths and `fn(leaves, *args)`.

    An NNX module is its own function (or `apply(module, *args)`): each trace merges a fresh
    copy in eval mode (Dropout off, BatchNorm on its running statistics), so the user's module
    is never changed, whatever mode it is in. An Equinox module is its own function too, over
    its array leaves. Python numbers in a plain tree (`trees.is_static`) are not leaves of the
    function: it reads them as the constants they are.
    """
    if trees.is_nnx_module(tree):
        from flax import nnx

        graphdef, state, rest = nnx.split(tree, (nnx.Param, nnx.BatchStat), ...)
        pairs, treedef = jax.tree_util.tree_flatten_with_path(state)
        rest_leaves, rest_def = jax.tree_util.tree_flatten(rest)
        module_fn = apply

        def fn(ps, *args):
            module = nnx.merge(
                graphdef,
                jax.tree_util.tree_unflatten(treedef, ps),
                jax.tree_util.tree_unflatten(rest_def, [jnp.asarray(x) for x in rest_leaves]),
            )
            module.eval()
            return module(*args) if module_fn is None else module_fn(module, *args)
    elif trees.is_eqx_module(tree):
        arrays, rest = trees.eqx_partition(tree)
        pairs, treedef = jax.tree_util.tree_flatten_with_path(arrays)
        module_fn = apply

        def fn(ps, *args):
            module = trees.eqx_combine(jax.tree_util.tree_unflatten(treedef, ps), rest)
            return module(*args) if module_fn is None else module_fn(module, *args)
    else:
        if apply is None:
            raise PlanError(
                f"`apply`: no function for `{arg}`; pass apply=(old_fn, new_fn), or an NNX or "
                "Equinox module, which is its own function."
            )
        every, treedef = jax.tree_util.tree_flatten_with_path(tree)
        pairs = [(kp, leaf) for kp, leaf in every if not trees.is_static(leaf)]
        statics = [leaf if trees.is_static(leaf) else None for _, leaf in every]

        def fn(ps, *args):
            given = iter(ps)
            full = [next(given) if s is None else s for s in statics]
            return apply(jax.tree_util.tree_unflatten(treedef, full), *args)

    return [leaf for _, leaf in pairs], [trees.keypath(kp) for kp, _ in pairs], fn


def trace_side(tree, apply, example: tuple, arg: str, name: str, carry=None) -> Traced:
    flat = trees.flatten(tree, arg, any_pytree=True)
    leaves, paths, fn = _function(tree, apply, arg)
    graph = trace(fn, leaves, tuple(example), name, carry, [trees.path_str(p) for p in paths])
    arg_paths = [kp for kp, _ in jax.tree_util.tree_flatten_with_path(tuple(example))[0]]
    side = Side(graph, [trees.path_str(p) for p in paths], name, arg_paths)
    tie_carry(side)
    _refuse_opaque(side)
    return Traced(flat, side, paths, _layers(flat, side, paths), fn, leaves)


def _layers(flat: trees.FlatTree, side: Side, paths: list) -> list:
    groups: dict = {}
    index = {p: i for i, p in enumerate(paths)}
    for path, leaf in flat.leaves.items():
        _, layer, name = flat.split(path)
        lname = trees.path_str(layer) or ROOT
        if name in groups.setdefault(lname, {}):
            raise PlanError(f"layer {lname!r} has two leaves named {name!r}.")
        groups[lname][name] = (index[path], path, tuple(leaf.shape))
    g = side.graph
    ends = _end_spaces(side)
    out = []
    for lname, leaves in groups.items():
        uses = [g.first_use[i] for i, _, _ in leaves.values() if g.first_use[i] is not None]
        touches = tuple(
            sorted(
                {
                    kind
                    for i, _, _ in leaves.values()
                    for n in g.leaf_axes[i]
                    for kind, roots in ends.items()
                    if g.find(n) in roots
                }
            )
        )
        roles = (touches, *sorted((n, tuple(g.leaf_roles[i])) for n, (i, _, _) in leaves.items()))
        out.append(GraphLayer(lname, leaves, roles, min(uses) if uses else float("inf")))
    return sorted(out, key=lambda layer: layer.first_use)


def _end_spaces(side: Side) -> dict:
    """The spaces of the function's inputs and outputs: a layer that touches one only matches a
    layer that touches the same kind."""
    g = side.graph
    ins = {
        g.find(n)
        for n, _ in (input_axis(side, k) for k in range(len(g.input_axes)))
        if n is not None
    }
    outs = {
        g.find(n)
        for n, _ in (output_axis(side, k) for k in range(len(g.output_axes)))
        if n is not None
    }
    return {"input": ins, "output": outs}


def _refuse_opaque(side: Side) -> None:
    """Refuses every used leaf axis whose units pass through an operation without a rule,
    naming each such leaf axis and the first operation."""
    g = side.graph
    hits = []
    for leaf, (axes, roles) in enumerate(zip(g.leaf_axes, g.leaf_roles, strict=True)):
        for axis, (node, role) in enumerate(zip(axes, roles, strict=True)):
            hit = g.opaque_at(node) if role != WINDOW else None
            if hit is not None and g.first_use[leaf] is not None:
                hits.append((side.where(leaf, axis), hit))
    if hits:
        (where, hit), also = hits[0], [w for w, h in hits[1:] if h == hits[0][1]]
        more = f" (as do {'; '.join(also)})" if also else ""
        raise PlanError(
            f"{where}: its units pass through `{hit[0]}` ({hit[1]}){more}, which the planner "
            "cannot give axis roles to; supported are dot_general, conv_general_dilated "
            "(ungrouped), elementwise ops, reshape, transpose, broadcast, concatenate, "
            "slice/split, reductions, embedding gathers and nested jit/cond/scan/while."
        )


def input_axis(side: Side, k: int):
    """The node of input `k` that carries its units: the token values of an integer input used
    as indices, else its one axis that reaches a parameter, else its last axis."""
    g = side.graph
    if k in g.input_values:
        return g.input_values[k], "values"
    axes = g.input_axes[k]
    if not axes:
        return None, None
    spaces = g.param_spaces()
    hits = [a for a, n in enumerate(axes) if _holds_units(g, n, spaces)]
    a = hits[0] if len(hits) == 1 else len(axes) - 1
    return axes[a], a


def _holds_units(g, node: int, spaces: set) -> bool:
    """Whether an axis is a parameter's space, or a concatenation of such spaces (an observation
    sliced between encoders, logits concatenated from two heads)."""
    if g.find(node) in spaces:
        return True
    parts = g.parts(node)
    return (
        parts is not None
        and parts[0] == "concat"
        and any(_holds_units(g, p, spaces) for p in parts[1])
    )


def output_axis(side: Side, k: int):
    """The node and axis of output `k` that carry its units: its one axis that a parameter
    writes (or the leading factor of one split by a reshape: a distributional head's actions),
    else its last axis when several do, else none (a squeezed value, a scalar)."""
    g = side.graph
    axes = g.output_axes[k]
    spaces = g.param_spaces()
    hits = [
        a
        for a, n in enumerate(axes)
        if _holds_units(g, n, spaces) or factors.split_whole(g, n) is not None
    ]
    if not hits:
        return None, None
    a = hits[0] if len(hits) == 1 else len(axes) - 1
    return axes[a], a
