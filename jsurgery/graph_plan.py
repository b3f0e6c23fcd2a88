"""`make_plan(..., apply=...)`: a plan read off the traced graphs of the old and new functions.

Steps: trace both functions (`jsurgery.trace`), refuse axes the trace could not follow, match
layers (`jsurgery.graph_match`), put every new unit space in correspondence with an old one
(`jsurgery.spaces`), give each space its IDs and its init rule (`jsurgery.init`), and write one
`LeafPlan` per new leaf (`jsurgery.graph_leaves`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery import ids, trees
from jsurgery.carry import carried_roots, check_same_carry, check_stays_zero, tie_carry
from jsurgery.errors import PlanError
from jsurgery.graph import READ, WINDOW, WRITE
from jsurgery.graph_match import GraphLayer, ambiguity, candidate_matchings
from jsurgery.spaces import Correspondence, Side
from jsurgery.trace import trace

ROOT = "(root)"


@dataclass
class Traced:
    """One side: its flat tree, graph, leaf paths and layers."""

    flat: trees.FlatTree
    side: Side
    paths: list  # graph leaf index -> path tuple
    layers: list  # GraphLayer, in order of first use
    fn: Callable | None = None  # fn(leaves, *args), leaves in graph order
    leaves: list | None = None  # the leaves fn takes


def _function(tree, apply: Callable | None, arg: str):
    """The tree's leaves (flat order), their paths and `fn(leaves, *args)`.

    An NNX module is its own function (or `apply(module, *args)`): each trace merges a fresh
    copy in eval mode (Dropout off, BatchNorm on its running statistics), so the user's module
    is never changed, whatever mode it is in. An Equinox module is its own function too, over
    its array leaves.
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
        pairs, treedef = jax.tree_util.tree_flatten_with_path(tree)

        def fn(ps, *args):
            return apply(jax.tree_util.tree_unflatten(treedef, ps), *args)

    return [leaf for _, leaf in pairs], [trees.keypath(kp) for kp, _ in pairs], fn


def trace_side(tree, apply, example: tuple, arg: str, name: str, carry=None) -> Traced:
    flat = trees.flatten(tree, arg, any_pytree=True)
    leaves, paths, fn = _function(tree, apply, arg)
    graph = trace(fn, leaves, tuple(example), name, carry, [trees.path_str(p) for p in paths])
    side = Side(graph, [trees.path_str(p) for p in paths], name)
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


def _refuse_opaque_ids(old: Traced, new: Traced, in_specs: tuple, out_specs: tuple) -> None:
    """Refuses changed input or output units whose axis passes through an operation without a
    rule (features picked by an index array): which unit a parameter reads is then unknown."""
    for arg, specs, locate in (
        ("inputs", in_specs, input_axis),
        ("outputs", out_specs, output_axis),
    ):
        for k, spec in enumerate(specs):
            if spec is None or tuple(spec[1]) == tuple(spec[2]):
                continue
            for side in (old.side, new.side):
                node, _ = locate(side, k)
                hit = side.graph.opaque_at(node) if node is not None else None
                if hit is not None:
                    raise PlanError(
                        f"`{arg}[{k}]`: in the {side.name} function this axis passes through "
                        f"`{hit[0]}` ({hit[1]}), which the planner cannot follow, so it cannot "
                        f"tell which units each parameter reads while they change "
                        f"({list(spec[1])[:8]} -> {list(spec[2])[:8]}); select them with slices, "
                        "or keep these units unchanged."
                    )


def _id_pairs(spec, count: int, arg: str) -> dict:
    """`{index: (old_ids, new_ids)}` from a pair (one input / output) or a dict."""
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        for k in spec:
            if not isinstance(k, int) or not 0 <= k < count:
                raise PlanError(
                    f"`{arg}`: key {k!r} is not the index of one of the function's {count} "
                    f"{arg} (0 to {count - 1})."
                )
        return {k: ids.check_pair(f"{arg}[{k}]", v) for k, v in spec.items()}
    if count != 1:
        raise PlanError(
            f"`{arg}`: the function has {count} {arg}; name the one the IDs are for: "
            f"{arg}={{index: (old_ids, new_ids)}}."
        )
    return {0: ids.check_pair(arg, spec)}


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
    writes, else its last axis when several do, else none (a squeezed value, a scalar)."""
    g = side.graph
    axes = g.output_axes[k]
    spaces = g.param_spaces()
    hits = [a for a, n in enumerate(axes) if _holds_units(g, n, spaces)]
    if not hits:
        return None, None
    a = hits[0] if len(hits) == 1 else len(axes) - 1
    return axes[a], a


def io_ids(old: Traced, new: Traced, inputs, outputs) -> tuple[dict, dict, tuple, tuple]:
    """IDs given per space root (old side, new side) and the input / output specs of the plan."""
    go, gn = old.side.graph, new.side.graph
    if len(go.input_axes) != len(gn.input_axes):
        raise PlanError(
            f"`example`: the old function takes {len(go.input_axes)} input arrays, the new one "
            f"{len(gn.input_axes)}; give both the same inputs."
        )
    if go.out_tree != gn.out_tree:
        raise PlanError(
            f"`apply`: the old function returns {go.out_tree}, the new one {gn.out_tree}; they "
            "must return the same structure (one array per output)."
        )
    given_old, given_new = {}, {}
    in_pairs = _id_pairs(inputs, len(gn.input_axes), "inputs")
    out_pairs = _id_pairs(outputs, len(gn.output_axes), "outputs")
    single_in = inputs is not None and not isinstance(inputs, Mapping)
    single_out = outputs is not None and not isinstance(outputs, Mapping)
    in_specs = []
    for k in range(len(gn.input_axes)):
        (no, _), (nn, axis) = input_axis(old.side, k), input_axis(new.side, k)
        in_specs.append(
            _given(k, nn, no, axis, in_pairs, "inputs", old, new, given_old, given_new, single_in)
        )
    out_specs = []
    for k in range(len(gn.output_axes)):
        (no, _), (nn, axis) = output_axis(old.side, k), output_axis(new.side, k)
        out_specs.append(
            _given(
                k, nn, no, axis, out_pairs, "outputs", old, new, given_old, given_new, single_out
            )
        )
    return given_old, given_new, tuple(in_specs), tuple(out_specs)


def _given(k, nn, no, axis, pairs, arg, old, new, given_old, given_new, single=False):
    """The `(axis, old_ids, new_ids)` spec of input or output `k`; IDs the user named are
    recorded per space (`given_old`, `given_new`), checked against the space's size and
    against IDs named for the same space before."""
    if nn is None or no is None:
        if k in pairs:
            raise PlanError(
                f"`{arg}[{k}]`: no axis of this {arg[:-1]} carries units of a parameter (a "
                "scalar or a squeezed value); it has no units to name."
            )
        return None
    named = k in pairs
    pair = pairs.get(k, (ids.positions(old.side.size(no)), ids.positions(new.side.size(nn))))
    for given, side, node, j in ((given_old, old.side, no, 0), (given_new, new.side, nn, 1)):
        root = side.root(node)
        label = f"{arg}[{j}]" if single else f"{arg}[{k}][{j}]"
        label += f" ({side.name} IDs)"
        if named and root in given and given[root][0] != pair[j]:
            raise PlanError(
                f"`{label}`: this space already has the IDs given as `{given[root][1]}` "
                f"({list(given[root][0])[:8]}); the two must be the same units."
            )
        where = f"the {arg} of the {side.name} network" if single else f"{arg} {k}"
        ids.check_count(label, pair[j], side.size(node), where + _touched_by(side, node, arg))
        if named:
            given[root] = (pair[j], label)
    return (axis, pair[0], pair[1])


def _touched_by(side: Side, node: int, arg: str) -> str:
    """`" (read by 'leaf')"`: the first parameter leaf with an axis in the space of `node`."""
    g = side.graph
    root = g.find(node)
    hits = [
        (g.first_use[i], i)
        for i, axes in enumerate(g.leaf_axes)
        if g.first_use[i] is not None and any(g.find(n) == root for n in axes)
    ]
    if not hits:
        return f" of the {side.name} function"
    verb = "read" if arg == "inputs" else "written"
    return f" ({verb} by {side.paths[min(hits)[1]]!r})"


def hidden_ids(old: Traced, new: Traced, layer_map: dict, hidden, given_old, given_new) -> None:
    """Adds `hidden={layer: (old_ids, new_ids)}` to the given IDs (the layer's output units)."""
    by_new = {layer.path: layer for layer in new.layers}
    by_old = {layer.path: layer for layer in old.layers}
    for key, pair in (hidden or {}).items():
        lpath = trees.path_str(key)
        if lpath not in by_new:
            raise PlanError(
                f"`hidden`: {lpath!r} is not a layer of the new template; layers: {list(by_new)}."
            )
        h_old, h_new = ids.check_pair(f"hidden[{lpath!r}]", pair)
        given_new[new.side.root(_output_node(new, by_new[lpath]))] = (
            h_new,
            f"hidden[{lpath!r}][1] (new IDs)",
        )
        opath = layer_map.get(lpath)
        if opath is not None:
            given_old[old.side.root(_output_node(old, by_old[opath]))] = (
                h_old,
                f"hidden[{lpath!r}][0] (old IDs)",
            )


def _output_node(t: Traced, layer: GraphLayer) -> int:
    g = t.side.graph
    ranked = sorted(layer.leaves.values(), key=lambda v: -len(v[2]))
    for i, _, _ in ranked:
        writes = [a for a, r in enumerate(g.leaf_roles[i]) if r == "write"]
        if writes:
            return g.leaf_axes[i][writes[-1]]
    raise PlanError(f"`hidden`: layer {layer.path!r} writes no units.")


def correspond(
    old: Traced, new: Traced, leaf_pairs: list, bridged: dict | None = None
) -> Correspondence:
    """New space -> old space, from the functions' inputs and outputs and the matched leaves;
    `bridged` labels the old spaces that removed layers connect (`removed_bridges`)."""
    corr = Correspondence(old.side, new.side, bridged)
    go, gn = old.side.graph, new.side.graph
    for kind, o_axes, n_axes in (
        ("input", go.input_axes, gn.input_axes),
        ("output", go.output_axes, gn.output_axes),
    ):
        for k, (oa, na) in enumerate(zip(o_axes, n_axes, strict=True)):
            if len(oa) != len(na):
                raise PlanError(
                    f"{kind} {k}: {len(oa)} axes in the old function, {len(na)} in the new one."
                )
            for a, (o, n) in enumerate(zip(oa, na, strict=True)):
                corr.add(n, o, f"{kind} {k} axis {a}")
    for k, node in gn.input_values.items():
        if k in go.input_values:
            corr.add(node, go.input_values[k], f"token values of input {k}")
    for ni, oi in leaf_pairs:
        for a, (n, o) in enumerate(zip(gn.leaf_axes[ni], go.leaf_axes[oi], strict=True)):
            if gn.leaf_roles[ni][a] != WINDOW:
                corr.add(n, o, new.side.where(ni, a))
    return corr


def _functions(apply) -> tuple:
    if apply is None or callable(apply):
        return apply, apply
    if isinstance(apply, (tuple, list)) and len(apply) == 2 and all(map(callable, apply)):
        return tuple(apply)
    raise PlanError(
        f"`apply`: expected a function or a pair (old_apply, new_apply), got {apply!r}."
    )


def _examples(example) -> tuple:
    if not isinstance(example, (tuple, list)) or len(example) != 2:
        raise PlanError(
            "`example`: expected a pair of argument tuples ((x_old, ...), (x_new, ...)), got "
            f"{type(example).__name__}; the apply functions are traced on them."
        )
    return tuple(x if isinstance(x, (tuple, list)) else (x,) for x in example)


def _leaf_pairs(old: Traced, new: Traced, layer_map: dict) -> dict:
    """`{new path: old path}` of the leaves of matched layers; an old leaf of a matched layer that
    the new layer lacks is refused (it would be dropped silently)."""
    old_by = {layer.path: layer for layer in old.layers}
    new_by = {layer.path: layer for layer in new.layers}
    pairs = {}
    for npath, opath in layer_map.items():
        if opath is None:
            continue
        nl, ol = new_by[npath], old_by[opath]
        for name, (_, path, _) in nl.leaves.items():
            if name in ol.leaves:
                pairs[path] = ol.leaves[name][1]
        lost = sorted(set(ol.leaves) - set(nl.leaves))
        if lost:
            raise PlanError(
                f"old layer {opath!r} has leaves {lost} that new layer {npath!r} lacks; they "
                f"would be dropped silently. Pass layers={{{npath!r}: None}} to start it fresh."
            )
    return pairs


def _leaf_plans(
    old: Traced,
    new: Traced,
    pairs: dict,
    units,
    layer_map: dict,
    layers,
    rules,
    allow_cast: bool,
) -> list:
    from jsurgery.graph_leaves import matched_leaf, new_leaf, unused_leaf

    o_index = {p: i for i, p in enumerate(old.paths)}
    n_index = {p: i for i, p in enumerate(new.paths)}
    o_pos = {p: i for i, p in enumerate(old.flat.leaves)}
    explicit = {trees.path_str(k) for k, v in (layers or {}).items() if v is None}
    go, gn = old.side.graph, new.side.graph
    out = []
    for path, leaf in new.flat.leaves.items():
        ni, opath = n_index[path], pairs.get(path)
        shape = tuple(leaf.shape)
        lname = trees.path_str(new.flat.split(path)[1]) or ROOT
        oleaf = old.flat.leaves[opath] if opath is not None else None
        if oleaf is not None and np.dtype(oleaf.dtype) != np.dtype(leaf.dtype) and not allow_cast:
            raise PlanError(
                f"leaf {trees.path_str(path)!r}: old dtype {oleaf.dtype} differs from the "
                f"template's {leaf.dtype}; pass allow_dtype_change=True to cast."
            )
        old_shape = tuple(oleaf.shape) if oleaf is not None else None
        if gn.first_use[ni] is None or (opath is not None and go.first_use[o_index[opath]] is None):
            out.append(unused_leaf(path, opath, o_pos.get(opath, -1), shape, old_shape))
        elif opath is None:
            kept = lname in explicit or layer_map.get(lname) is not None
            rule = None if kept else rules.new_layers
            out.append(new_leaf(units, ni, path, shape, rule, ni in gn.additive))
        else:
            out.append(
                matched_leaf(
                    units,
                    ni,
                    o_index[opath],
                    path,
                    opath,
                    o_pos[opath],
                    shape,
                    old_shape,
                    ni in gn.additive,
                )
            )
    return out


def _correspond_matching(old: Traced, new: Traced, layer_map: dict):
    pairs = _leaf_pairs(old, new, layer_map)
    o_index = {p: i for i, p in enumerate(old.paths)}
    n_index = {p: i for i, p in enumerate(new.paths)}
    used = [
        (n_index[n], o_index[o])
        for n, o in pairs.items()
        if new.side.graph.first_use[n_index[n]] is not None
        and old.side.graph.first_use[o_index[o]] is not None
    ]
    return pairs, correspond(old, new, used, removed_bridges(old, layer_map))


def _kernel_roots(g, leaf: int) -> tuple | None:
    """`(read root, write root)` of a leaf that reads one space and writes one (a kernel)."""
    axes, roles = g.leaf_axes[leaf], g.leaf_roles[leaf]
    reads = [g.find(n) for n, r in zip(axes, roles, strict=True) if r == READ]
    writes = [g.find(n) for n, r in zip(axes, roles, strict=True) if r == WRITE]
    return (reads[0], writes[0]) if len(reads) == 1 and len(writes) == 1 else None


def removed_bridges(old: Traced, layer_map: dict) -> dict:
    """Old space root -> a label shared by the spaces that old layers no new layer continues
    connect, in to out: with such a layer removed, the new network reads its output space
    where the old one read the layer's input, unit by unit in order."""
    g = old.side.graph
    kept = {v for v in layer_map.values() if v is not None}
    label: dict = {}
    for layer in old.layers:
        if layer.path in kept:
            continue
        for i, _, _ in layer.leaves.values():
            ends = _kernel_roots(g, i)
            if ends is not None:
                a, b = (label.get(r, r) for r in ends)
                label.update({r: a for r, v in list(label.items()) if v == b})
                label[ends[0]], label[ends[1]] = a, a
    return label


def continue_through_inserted(new: Traced, inserted: set, corr, given_new: dict) -> None:
    """New spaces between layers inserted in a row (each reading one space and writing one of
    the same size) continue the old space the row starts and ends in, with the IDs of its
    start, so every layer of the row can start as an identity. A row that ends where it starts
    (a new residual branch added back to its input) is left alone."""
    g = new.side.graph
    edges: dict = {}
    for layer in new.layers:
        if layer.path in inserted:
            for i, _, _ in layer.leaves.values():
                ends = _kernel_roots(g, i)
                if ends is not None and g.size[ends[0]] == g.size[ends[1]]:
                    edges.setdefault(ends[0], set()).add(ends[1])
    for start, old_root in list(corr.to_old.items()):
        for between in _rows(edges, start, corr.to_old, old_root):
            corr.add(between, old_root, f"a layer inserted after {new.side.name} space {start}")
            if start in given_new:
                given_new[between] = given_new[start]


def _rows(edges: dict, start: int, to_old: dict, old_root: int) -> list:
    """Spaces without an old counterpart on a path of `edges` from `start` to another space
    that continues `old_root`."""
    found, stack = [], [(start, ())]
    while stack:
        root, path = stack.pop()
        for nxt in edges.get(root, ()):
            if nxt in path or nxt == start:
                continue
            if nxt not in to_old:
                stack.append((nxt, (*path, nxt)))
            elif to_old[nxt] == old_root:
                found.extend(r for r in path if r not in found)
    return found


def _choose_matching(old: Traced, new: Traced, layers):
    """The smallest-edit layer matching whose spaces correspond with the fewest new spaces
    sharing an old one (an inserted layer makes one such split); a tie is refused."""
    choices, how = candidate_matchings(old.layers, new.layers, layers)
    scored, error = [], None
    for layer_map in choices:
        try:
            pairs, corr = _correspond_matching(old, new, layer_map)
        except PlanError as e:
            error = error or e
            continue
        splits = len(corr.to_old) - len(set(corr.to_old.values())) + len(corr.merged)
        scored.append((splits, layer_map, pairs, corr))
    if not scored:
        raise error
    fewest = min(s[0] for s in scored)
    best = [s for s in scored if s[0] == fewest]
    if len(best) > 1:
        raise ambiguity([s[1] for s in best])
    return best[0][1], how, best[0][2], best[0][3]


def _check_carry(new: Traced, units, leaf_plans: list, example: tuple, in_specs: tuple) -> None:
    """With zero-in carried spaces that have new units, one step on random weights must keep
    those units at zero (`jsurgery.carry.check_stays_zero`)."""
    g = new.side.graph
    grown = [r for r in units.carried if r in units.maps and units.maps[r].write_zero is not None]
    if g.carry is None or not grown:
        return
    by_path = {lp.path: lp for lp in leaf_plans}
    check_stays_zero(
        new.fn,
        [(tuple(x.shape), x.dtype) for x in new.leaves],
        [by_path[p] for p in new.paths],
        example,
        in_specs,
        g.carry,
    )


def build(
    old_tree,
    new_tree,
    *,
    apply,
    example,
    inputs,
    outputs,
    layers,
    hidden,
    rules,
    allow_dtype_change: bool,
    carry=None,
) -> dict:
    """The fields of a `Plan` made from the traced graphs of the old and new functions, new
    parts started by `rules` (`jsurgery.init.Rules`); `carry` is None (detect), False (none) or
    `(arg_index, output_index)`."""
    from jsurgery.graph_leaves import UnitMaps

    old_fn, new_fn = _functions(apply)
    old_ex, new_ex = _examples(example)
    old = trace_side(old_tree, old_fn, old_ex, "old", "old", carry)
    new = trace_side(new_tree, new_fn, new_ex, "new_template", "new", carry)
    check_same_carry(old.side, new.side)
    given_old, given_new, in_specs, out_specs = io_ids(old, new, inputs, outputs)
    _refuse_opaque_ids(old, new, in_specs, out_specs)
    layer_map, how, pairs, corr = _choose_matching(old, new, layers)
    hidden_ids(old, new, layer_map, hidden, given_old, given_new)
    if rules.new_layers.continue_rows:
        explicit = {trees.path_str(k) for k, v in (layers or {}).items() if v is None}
        inserted = {k for k, v in layer_map.items() if v is None and k not in explicit}
        continue_through_inserted(new, inserted, corr, given_new)
    warnings: list = []
    ends = _end_spaces(new.side)
    units = UnitMaps(
        corr,
        given_old,
        given_new,
        ends["input"],
        ends["output"],
        rules,
        warnings,
        carried_roots(new.side),
    )
    leaves = _leaf_plans(old, new, pairs, units, layer_map, layers, rules, allow_dtype_change)
    units.cross_warnings()
    _check_carry(new, units, leaves, new_ex, in_specs)
    mapped = {v for v in layer_map.values() if v is not None}
    dropped = [layer.path for layer in old.layers if layer.path not in mapped]
    if dropped:
        warnings.append(f"old layers not carried over: {dropped}.")
    first = lambda specs: (specs[0][1], specs[0][2]) if specs and specs[0] else ((), ())  # noqa: E731
    return dict(
        leaves=tuple(leaves),
        old_leaves=tuple((p, *trees.shape_dtype(v)) for p, v in old.flat.leaves.items()),
        new_leaves=tuple((p, *trees.shape_dtype(v)) for p, v in new.flat.leaves.items()),
        old_kind=old.flat.kind,
        new_kind=new.flat.kind,
        inputs=first(in_specs),
        outputs=first(out_specs),
        layer_map=layer_map,
        matching=how,
        warnings=tuple(warnings),
        input_specs=in_specs,
        output_specs=out_specs,
        carry=new.side.graph.carry,
    )
