"""A plan's fields from the traced graphs of the old and new functions: trace, name units, match,
correspond, apply the init rules, write one leaf plan per new leaf."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from jsurgery import trees
from jsurgery.errors import PlanError
from jsurgery.graph.carry import carried_roots, check_same_carry
from jsurgery.graph.side import Traced
from jsurgery.init.zero_branch import settle
from jsurgery.match.choose import choose_matching
from jsurgery.match.inserted import continue_through_inserted
from jsurgery.plan.carry_check import check_stays_zero
from jsurgery.plan.leaves import UnitMaps, matched_leaf, new_leaf, unused_leaf
from jsurgery.plan.promise import old_units_promise, output_promises
from jsurgery.plan.sides import ROOT, _end_spaces, output_axis, trace_side
from jsurgery.plan.unit_ids import _refuse_opaque_ids, hidden_ids, io_ids


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
    """One `LeafPlan` per new leaf, in the new tree's order: unused by the function, from an
    inserted layer (its layer rule), or continuing an old leaf (its spaces' maps)."""
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


def _check_carry(new: Traced, units, leaf_plans: list, example: tuple, in_specs: tuple) -> None:
    """With zero-in carried spaces that have new units, one step on random weights must keep
    those units at zero (`jsurgery.plan.carry_check.check_stays_zero`)."""
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
    held=frozenset(),
) -> dict:
    """The fields of a `Plan` made from the traced graphs of the old and new functions, new
    parts started by `rules` (`jsurgery.init.Rules`); `carry` is None (detect), False (none) or
    `(arg_index, output_index)`; `held`: old input IDs folded into biases (`removed_inputs`),
    whose dropping moves no old output."""
    old_fn, new_fn = _functions(apply)
    old_ex, new_ex = _examples(example)
    old = trace_side(old_tree, old_fn, old_ex, "old", "old", carry)
    new = trace_side(new_tree, new_fn, new_ex, "new_template", "new", carry)
    check_same_carry(old.side, new.side)
    given_old, given_new, in_specs, out_specs = io_ids(old, new, inputs, outputs)
    _refuse_opaque_ids(old, new, in_specs, out_specs)
    layer_map, how, pairs, corr = choose_matching(old, new, layers)
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
    units.held = frozenset(held)
    leaves = _leaf_plans(old, new, pairs, units, layer_map, layers, rules, allow_dtype_change)
    units.cross_warnings()
    _check_carry(new, units, leaves, new_ex, in_specs)
    mapped = {v for v in layer_map.values() if v is not None}
    dropped = [layer.path for layer in old.layers if layer.path not in mapped]
    if dropped:
        warnings.append(f"old layers not carried over: {dropped}.")
    first = lambda specs: (specs[0][1], specs[0][2]) if specs and specs[0] else ((), ())  # noqa: E731
    inserted = _inserted_leaves(new, layer_map)
    settled = settle(new, new_ex, leaves, inserted, new.side.graph.additive, warnings)
    promises = _promises(new, units, leaves, inserted - settled, warnings, out_specs)
    fields = dict(
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
        promises=promises,
    )
    return fields, (old, new, old_ex, new_ex)


def _inserted_leaves(new: Traced, layer_map: dict) -> set:
    """The paths of the leaves of inserted layers."""
    return {
        path
        for path in new.flat.leaves
        if layer_map.get(trees.path_str(new.flat.split(path)[1]) or ROOT, "") is None
    }


def _promises(new: Traced, units, leaves, inserted: set, warnings, out_specs) -> tuple:
    """What the plan promises for each output (`jsurgery.plan.promise`); `inserted`: the
    paths of inserted leaves whose start can move the old outputs."""
    g = new.side.graph
    ends = units.inputs | units.outputs
    hidden = {r: sm for r, sm in units.maps.items() if r not in ends or r in units.carried}
    used = [lp for lp in leaves if not lp.note.startswith("not read")]
    old = old_units_promise(hidden, units.labels, used, inserted, warnings, units.carried)
    out = []
    for k, spec in enumerate(out_specs):
        node, _ = output_axis(new.side, k)
        root = g.find(node) if node is not None else None
        sm = units.maps.get(root)
        if sm is not None and sm.offset is not None and not _offset_written(new, leaves, root):
            sm = replace(sm, offset=None)  # no bias writes the space: the offset is not applied
        atoms = units.atoms(root, g.output_axes[k]) if root is not None else None
        out += output_promises(k, spec, sm, old, root in units.carried, atoms)
    return tuple(out)


def _offset_written(new: Traced, leaves, root: int) -> bool:
    """Whether a leaf that writes the unit space `root` carries the map's offset (a bias)."""
    g = new.side.graph
    index = {p: i for i, p in enumerate(new.paths)}
    return any(
        lp.offset is not None and root in {g.find(n) for n in g.leaf_axes[index[lp.path]]}
        for lp in leaves
    )
