"""The unit IDs of the spaces the user named: inputs, outputs and hidden layers, checked against
the spaces they name."""

from __future__ import annotations

from collections.abc import Mapping

import jax

from jsurgery import ids, trees
from jsurgery.errors import PlanError
from jsurgery.graph import factors
from jsurgery.graph.side import Side, Traced
from jsurgery.match.layers import GraphLayer
from jsurgery.plan.sides import input_axis, output_axis


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


def _id_pairs(spec, side: Side, arg: str) -> dict:
    """`{index: (old_ids, new_ids)}` from a pair (one input / output) or a dict."""
    g = side.graph
    count = len(g.input_axes if arg == "inputs" else g.output_axes)
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        for k in spec:
            if not isinstance(k, int) or not 0 <= k < count:
                layout = key_layout(side, arg)
                raise PlanError(
                    f"`{arg}`: key {k!r} is not the index of one of the function's {count} "
                    f"{arg} (0 to {count - 1})" + (f"; {layout}." if layout else ".")
                )
        return {k: ids.check_pair(f"{arg}[{k}]", v) for k, v in spec.items()}
    if count != 1:
        raise PlanError(
            f"`{arg}`: the function has {count} {arg}; name the one the IDs are for: "
            f"{arg}={{index: (old_ids, new_ids)}}."
        )
    return {0: ids.check_pair(arg, spec)}


def io_ids(old: Traced, new: Traced, inputs, outputs) -> tuple[dict, dict, tuple, tuple]:
    """IDs given per space root (old side, new side) and the input / output specs of the plan."""
    go, gn = old.side.graph, new.side.graph
    if len(go.input_axes) != len(gn.input_axes):
        raise PlanError(
            f"`example`: the old function takes {len(go.input_axes)} input arrays, the new one "
            f"{len(gn.input_axes)}; give both the same inputs."
        )
    for t in (old, new):
        if not t.side.graph.output_axes:
            raise PlanError(
                f"`apply`: the {t.side.name} function returned no arrays; the planner follows "
                "the network from its parameters to what it returns, so `apply` must return the "
                "network's outputs (a missing `return`?)."
            )
    if go.out_tree != gn.out_tree:
        raise PlanError(
            f"`apply`: the old function returns {go.out_tree}, the new one {gn.out_tree}; they "
            "must return the same structure (one array per output)."
        )
    given_old, given_new = {}, {}
    in_pairs = _id_pairs(inputs, new.side, "inputs")
    out_pairs = _id_pairs(outputs, new.side, "outputs")
    single_in = inputs is not None and not isinstance(inputs, Mapping)
    single_out = outputs is not None and not isinstance(outputs, Mapping)
    _refuse_shifted_one_hots(old, new, in_pairs)
    in_specs = []
    for k in range(len(gn.input_axes)):
        (no, _), (nn, axis) = input_axis(old.side, k), input_axis(new.side, k)
        in_specs.append(
            _given(k, nn, no, axis, in_pairs, "inputs", old, new, given_old, given_new, single_in)
        )
    _check_value_constants(old, new, in_specs)
    out_specs = [None] * len(gn.output_axes)
    for k in sorted(range(len(gn.output_axes)), key=lambda k: k not in out_pairs):  # named first
        (no, _), (nn, axis) = output_axis(old.side, k), output_axis(new.side, k)
        out_specs[k] = _given(
            k, nn, no, axis, out_pairs, "outputs", old, new, given_old, given_new, single_out
        )
    return given_old, given_new, tuple(in_specs), tuple(out_specs)


def _refuse_shifted_one_hots(old: Traced, new: Traced, in_pairs: dict) -> None:
    """Refuses a one-hot of an argument's values changed by arithmetic first (`one_hot(a - 1,
    n)`) whose width changes or whose values are named: which value each entry stands for is
    not followed, so the entries are left by position."""
    go, gn = old.side.graph, new.side.graph
    for k in sorted(set(go.shifted_one_hots) | set(gn.shifted_one_hots)):
        (where, n_old), (_, n_new) = (g.shifted_one_hots.get(k, (None, None)) for g in (go, gn))
        where = where or gn.shifted_one_hots[k][0]
        if n_old == n_new and k not in in_pairs:
            continue
        raise PlanError(
            f"`inputs[{k}]`: argument {k} is one-hot encoded after arithmetic on its values "
            f"({where}), so the planner cannot tell which value each one-hot entry stands for "
            f"(width {n_old} -> {n_new}); one-hot encode the argument itself "
            f"(`jax.nn.one_hot(a, n)`, its values renumbered outside the function), whose "
            "entries then follow the values named by inputs={" + f"{k}: (old_ids, new_ids)}}."
        )


def _check_value_constants(old: Traced, new: Traced, in_specs: list) -> None:
    """Refuses token IDs the function pads with a constant (a shifted sequence's pad token)
    when the constant names different tokens in the old and new IDs: the new network would
    read another token where the old one read the pad."""
    for k, spec in enumerate(in_specs):
        if spec is None or spec[0] != "values":
            continue
        _, old_ids, new_ids = spec
        for side in (old.side, new.side):
            for value, where in side.graph.value_constants.get(k, []):
                ok = 0 <= value < min(len(old_ids), len(new_ids))
                if ok and old_ids[value] == new_ids[value]:
                    continue
                names = [list(ids)[value] if 0 <= value < len(ids) else None for ids in spec[1:]]
                raise PlanError(
                    f"`inputs[{k}]`: the {side.name} function's token IDs are padded with the "
                    f"constant {value} ({where}), which is the token {names[0]!r} among the old "
                    f"IDs and {names[1]!r} among the new ones; keep the pad token at position "
                    f"{value} of the new IDs, so both networks read the same token there."
                )


def _given(k, nn, no, axis, pairs, arg, old, new, given_old, given_new, single=False):
    """The `(axis, old_ids, new_ids)` spec of input or output `k`; IDs the user named are
    recorded per space (`given_old`, `given_new`), checked against the space's size and
    against IDs named for the same space before. An unnamed one whose space has IDs named (the
    logits and Q-values of one head's actions) takes those."""
    if nn is None or no is None:
        if k in pairs:
            raise PlanError(_split_output(new, k) or _no_units(arg, k, old, new, pairs[k]))
        return None
    named = k in pairs
    ro, rn = old.side.root(no), new.side.root(nn)
    if not named and ro in given_old and rn in given_new:
        return (axis, given_old[ro][0], given_new[rn][0])
    pair = pairs.get(k, (ids.positions(old.side.size(no)), ids.positions(new.side.size(nn))))
    for given, side, node, j in ((given_old, old.side, no, 0), (given_new, new.side, nn, 1)):
        root = side.root(node)
        label = f"{arg}[{j}]" if single else f"{arg}[{k}][{j}]"
        label += f" ({side.name} IDs)"
        if named and root in given and given[root][0] != pair[j]:
            raise PlanError(
                f"`{label}`: this space already has the IDs given as `{given[root][1]}` "
                f"({list(given[root][0])[:8]}); the two must be the same units."
                + _key_hint(arg, k, old, new, pair)
            )
        where = f"the {arg} of the {side.name} network" if single else f"{arg} {k}"
        try:
            ids.check_count(
                label, pair[j], side.size(node), where + _touched_by(side, node, arg, axis)
            )
        except PlanError as e:
            raise PlanError(str(e) + (_key_hint(arg, k, old, new, pair) if named else "")) from None
        if named:
            given[root] = (pair[j], label)
    return (axis, pair[0], pair[1])


def _no_units(arg: str, k: int, old: Traced, new: Traced, pair: tuple) -> str:
    return (
        f"`{arg}[{k}]`: no axis of this {arg[:-1]} carries units of a parameter (a scalar or a "
        "squeezed value); it has no units to name." + _key_hint(arg, k, old, new, pair)
    )


def _split_output(t: Traced, k: int) -> str | None:
    """The refusal for IDs named for output `k` whose axes hold only inner factors that a reshape
    splits out of one layer's output units (a distributional head's atoms of `(actions,
    atoms)`)."""
    g = t.side.graph
    spaces = g.param_spaces()
    for a, node in enumerate(g.output_axes[k]):
        for root, composite in g.composite.items():
            parts = [g.find(p) for p in composite[1]]
            if g.find(node) not in parts or root not in spaces or not g.split_product(composite):
                continue
            leaf = _first_leaf(t.side, root)
            layer = next(
                (L.path for L in t.layers if leaf in {v[0] for v in L.leaves.values()}), ""
            )
            sizes = [g.size[p] for p in parts]
            return (
                f"`outputs[{k}]`: the units of this output (axis {a}, {g.size[g.find(node)]} "
                f"units) are an inner factor that a reshape splits out of the {g.size[root]} "
                f"output units of layer {layer!r} (into {sizes}: a distributional head's "
                "(actions, atoms)); only the leading factor (the actions) takes `outputs` IDs, "
                "the inner ones stay by position: name an output that holds the leading factor, "
                f"or drop `outputs[{k}]`."
            )
    return None


def _first_leaf(side: Side, root: int) -> int | None:
    """The first-used parameter leaf with an axis in the space `root`."""
    g = side.graph
    hits = [
        (g.first_use[i], i)
        for i, axes in enumerate(g.leaf_axes)
        if g.first_use[i] is not None and any(g.find(n) == root for n in axes)
    ]
    return min(hits)[1] if hits else None


def _key_hint(arg: str, k: int, old: Traced, new: Traced, pair: tuple) -> str:
    """What key `k` of `inputs` / `outputs` names when the keys are not the arguments or
    outputs themselves (a carry `(c, h)` takes two keys), and the one key whose old and new
    sizes the IDs given fit."""
    locate = input_axis if arg == "inputs" else output_axis
    count = len(new.side.graph.input_axes if arg == "inputs" else new.side.graph.output_axes)
    fits = []
    for j in range(count):
        nodes = [(t.side, locate(t.side, j)[0]) for t in (old, new)]
        sizes = [side.size(n) if n is not None else None for side, n in nodes]
        if j != k and sizes == [len(pair[0]), len(pair[1])]:
            fits.append(j)
    parts = [key_layout(new.side, arg, k)]
    if len(fits) == 1:
        parts.append(
            f"the IDs given fit key {fits[0]} ({_key_names(new.side, arg)[fits[0]][1]}): "
            f"{arg}={{{fits[0]}: (old_ids, new_ids)}}"
        )
    text = "; ".join(p for p in parts if p)
    return f" {text[0].upper()}{text[1:]}." if text else ""


def _key_names(side: Side, arg: str) -> list:
    """Per key of `inputs` / `outputs`: its top-level argument or output and, within it, the
    array leaf's path (`jax.tree.leaves` order)."""
    if arg == "inputs":
        paths = side.input_paths
        top = [f"argument {kp[0].idx}" for kp in paths]
    else:
        tree = side.graph.out_tree
        shaped = jax.tree_util.tree_unflatten(tree, list(range(tree.num_leaves)))
        paths = [kp for kp, _ in jax.tree_util.tree_flatten_with_path(shaped)[0]]
        top = [f"output {jax.tree_util.keystr(kp[:1])}" if kp else "the output" for kp in paths]
    names = []
    for kp, owner in zip(paths, top, strict=True):
        inner = jax.tree_util.keystr(tuple(kp[1:]))
        names.append((owner, f"leaf `{inner}` of {owner}" if inner else owner))
    return names


def key_layout(side: Side, arg: str, k: int | None = None) -> str:
    """`"keys of inputs count array leaves, not arguments: argument 0 is keys 0-1, ..."`, or ""
    when every argument (output) is one array, so that keys and arguments agree."""
    names = _key_names(side, arg)
    owners = [owner for owner, _ in names]
    if all(owners.count(o) == 1 for o in owners):
        return ""
    spans = []
    for owner in dict.fromkeys(owners):
        hit = [j for j, o in enumerate(owners) if o == owner]
        spans.append(
            f"{owner} is key {hit[0]}"
            if len(hit) == 1
            else f"{owner} is keys {hit[0]}-{hit[-1]} ({len(hit)} arrays)"
        )
    what = "the example arguments" if arg == "inputs" else "the function's output"
    named = f"key {k} is {names[k][1]}; " if k is not None and k < len(names) else ""
    return (
        f"the keys of `{arg}` count the array leaves of {what} (`jax.tree.leaves`), not "
        f"{'arguments' if arg == 'inputs' else 'output elements'}: {named}{', '.join(spans)}"
    )


def _touched_by(side: Side, node: int, arg: str, axis: int | None = None) -> str:
    """`" (read by 'leaf')"`: the first parameter leaf with an axis in the space of `node`; for
    the leading factor of a leaf's axis split by a reshape (a distributional head's actions),
    the output's axis and the split."""
    split = factors.split_whole(side.graph, node)
    if split is not None:
        whole, parts = split
        leaf = _first_leaf(side, whole)
        sizes = tuple(side.graph.size[p] for p in parts)
        return (
            f" (axis {axis}: the leading factor of the {side.graph.size[whole]} units written "
            f"by {side.paths[leaf]!r}, which a reshape splits into {sizes}, a distributional "
            "head's (actions, atoms))"
        )
    leaf = _first_leaf(side, side.graph.find(node))
    if leaf is None:
        return f" of the {side.name} function"
    verb = "read" if arg == "inputs" else "written"
    return f" ({verb} by {side.paths[leaf]!r})"


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
