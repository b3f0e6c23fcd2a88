"""Leaf plans on traced graphs: each new leaf axis reads the map of the unit space it lies in."""

from __future__ import annotations

import numpy as np

from jsurgery import factors, ids, policies, trees
from jsurgery.errors import PlanError
from jsurgery.graph import READ, WINDOW, WRITE
from jsurgery.leaves import AxisMap, LeafPlan, summary
from jsurgery.spaces import SpaceMap, combine, identity_map, unit_ids


class UnitMaps:
    """The `SpaceMap` of every new unit space, built on first use with the space's policy."""

    def __init__(
        self,
        corr,
        given_old,
        given_new,
        input_roots,
        output_roots,
        options,
        warnings,
        carried_roots=frozenset(),
    ):
        self.old, self.new = corr.old, corr.new
        self.corr, self.given_old, self.given_new = corr, given_old, given_new
        self.options, self.warnings = options, warnings
        g = self.new.graph
        self.inputs = set(input_roots)
        self.outputs = set(output_roots)
        self.carried = set(carried_roots)
        factors.inherit_segments(
            g,
            self.old.graph,
            corr.to_old,
            (given_new, given_old),
            [self.inputs, self.outputs, self.carried],
        )
        self.units = g.param_spaces() | self.inputs | self.outputs | set(given_new) | self.carried
        factors.check_named_products(g, given_new, self.units)
        split = factors.unit_factors(g, self.units)
        self.output_factors = split & {g.find(n) for axes in g.output_axes for n in axes}
        self.units |= split
        self.maps: dict = {}
        self.labels: dict = {}

    def new_ids(self, root: int) -> tuple:
        return unit_ids(self.given_new, root, self.new.graph.size[root], "a new space")

    def space(self, root: int, label: str) -> SpaceMap:
        if root in self.maps:
            return self.maps[root]
        o = self.corr.to_old[root]
        new_ids = self.new_ids(root)
        old_ids = unit_ids(self.given_old, o, self.old.graph.size[o], "an old space")
        src = ids.index_of(new_ids, old_ids)
        opt = self.options
        scale = float(opt.get("init_scale", 1.0))
        if root in self.carried:
            sm = policies.carried_space(src, len(old_ids), opt["new_hidden"], scale)
        elif root in self.outputs:
            sm = policies.output_space(src, old_ids, new_ids, opt, self.warnings, label)
        elif root in self.inputs:
            sm = policies.input_space(src, len(old_ids), opt["new_inputs"])
        else:
            sm = policies.hidden_space(
                src,
                len(old_ids),
                opt["new_hidden"],
                opt["net2net_noise"],
                self.warnings,
                label,
                scale,
            )
        if root in self.output_factors and factors.changed(sm):
            raise PlanError(
                f"{label}: an output axis split out of one layer's units by a reshape (a "
                "distributional head's (actions, atoms)) gains or loses units; such outputs take "
                "no `outputs` IDs or `new_outputs` start yet: keep this axis, or give the layer "
                "layers={...: None}."
            )
        self.maps[root], self.labels[root] = sm, label
        return sm

    def axis_map(
        self, node: int, role: str, axis: int, kernel: bool, label: str, weight: bool = True
    ) -> AxisMap:
        root = self.new.root(node)
        parts = self.new.graph.parts(root)
        if parts is not None and root not in self.given_new and not self._whole_on_old_side(root):
            maps = [self.axis_map(p, role, axis, kernel, label, weight) for p in parts[1]]
            old_sizes = [self.old.graph.size[self.corr.to_old[self.new.root(p)]] for p in parts[1]]
            return combine(parts[0], maps, old_sizes, axis)
        if root in self.units:
            return self.space(root, label).axis_map(axis, role, kernel, weight)
        n_new, n_old = self.new.graph.size[root], self.old.graph.size[self.corr.to_old[root]]
        if n_new != n_old:
            raise PlanError(
                f"{label}: a factor of a reshaped axis changed from {n_old} to {n_new} entries "
                "(a feature map's height or width before a flatten, which the planner cannot "
                "widen); keep that size or give this layer layers={...: None}."
            )
        return identity_map(n_new, axis)

    def _whole_on_old_side(self, root: int) -> bool:
        """Whether the old counterpart of a composite space is one space (an axis a new
        GroupNorm splits into groups): the two are then planned whole."""
        old = self.corr.to_old.get(root)
        return old is not None and self.old.graph.parts(old) is None

    def how(self, root: int) -> str:
        """How the new units of a space start, for the plan's notes."""
        if root in self.maps:
            return self.maps[root].how
        roots = factors.part_roots(self.new.graph, root, self.maps)
        hows = {self.maps[r].how for r in roots if r in self.maps and factors.changed(self.maps[r])}
        return ", ".join(sorted(hows)) or "flattened or concatenated"

    def cross_warnings(self) -> None:
        g = self.new.graph
        for root, sm in self.maps.items():
            ops = g.crosses(root)
            n_new = int((sm.src < 0).sum())
            n_drop = sm.n_old - len(set(sm.src[sm.src >= 0].tolist()))
            if ops and (n_new or n_drop):
                names = sorted({f"{p} ({s})" for p, s in ops})
                self.warnings.append(
                    f"{self.labels[root]}: {', '.join(names)} mixes the units of this space, "
                    f"which has {n_new} new and {n_drop} dropped units, so old outputs may move "
                    "unless the new units leave it unchanged."
                )
            broken = factors.broken_groups(g, self.old.graph, root, self.corr.to_old[root], sm)
            if broken:
                self.warnings.append(f"{self.labels[root]}: {broken}")
        self.warnings.extend(factors.mixed_composites(g, self.maps, self.labels))


def matched_leaf(
    units: UnitMaps, ni: int, oi: int, path, opath, old_index: int, shape, old_shape, additive: bool
) -> LeafPlan:
    """The plan of a new leaf that continues an old one."""
    g = units.new.graph
    maps, notes, offset = [], [], None
    weight = len(shape) >= 2 or additive  # kernels and biases, not norm scales or statistics
    for axis, (node, role) in enumerate(zip(g.leaf_axes[ni], g.leaf_roles[ni], strict=True)):
        label = units.new.where(ni, axis)
        if role == WINDOW:
            if shape[axis] != old_shape[axis]:
                raise PlanError(
                    f"leaf {trees.path_str(path)!r}: window axis {axis} has {shape[axis]} "
                    f"entries, the old {trees.path_str(opath)!r} {old_shape[axis]}; windows "
                    "cannot be resized."
                )
            continue
        am = units.axis_map(node, role, axis, len(shape) >= 2, label, weight)
        root = units.new.root(node)
        how = units.how(root)
        notes.append(f"{'in' if role == READ else 'out'}: {summary(am.src, old_shape[axis], how)}")
        if not am.is_copy(old_shape[axis]):
            maps.append(am)
        if len(shape) == 1 and additive and root in units.outputs:
            offset = units.maps[root].offset
    scaled = any(am.scaled is not None for am in maps)
    return LeafPlan(
        path,
        opath,
        old_index,
        shape,
        old_shape,
        "old",
        tuple(maps),
        offset=offset,
        note="; ".join(notes),
        template_scale=float(units.options.get("init_scale", 1.0)) if scaled else 1.0,
    )


def new_leaf(
    units: UnitMaps, ni: int, path, shape, template: bool, additive: bool, corner: bool
) -> LeafPlan:
    """The plan of a leaf of an inserted layer: identity where its input and output continue
    the same old space, zero where it writes into an old space (a new residual branch adds
    nothing), template init inside a new block."""
    g = units.new.graph
    if template:
        return LeafPlan(path, None, -1, shape, None, "template", note="new layer: template init")
    roles = g.leaf_roles[ni]
    roots = [units.new.root(n) for n in g.leaf_axes[ni]]
    old_of = [units.corr.to_old.get(r) for r in roots]
    reads = [a for a, r in enumerate(roles) if r == READ]
    writes = [a for a, r in enumerate(roles) if r == WRITE]
    label = f"new leaf {trees.path_str(path)!r}"
    if (
        len(reads) == 1
        and len(writes) == 1
        and len(reads) + len(writes) + roles.count(WINDOW) == len(shape)
    ):
        r, w = reads[0], writes[0]
        if old_of[w] is not None and old_of[w] == old_of[r]:
            return _identity_leaf(units, path, shape, roles, r, w, roots, corner, label)
        if old_of[w] is not None:
            units.warnings.append(
                f"{label} writes into a space of the old network and starts at zero: exact when "
                "its output is added there (a new residual branch); if it gates or replaces "
                "that space instead, the new network is not exact (check_preservation tells)."
            )
            return LeafPlan(
                path,
                None,
                -1,
                shape,
                None,
                "identity",
                identity=(),
                note="new layer: zeros (adds nothing to an old space)",
            )
    if len(shape) == 1 and additive and old_of[0] is not None:
        return LeafPlan(
            path, None, -1, shape, None, "identity", identity=(), note="new layer: zeros"
        )
    if any(o is not None for o in old_of):
        units.warnings.append(
            f"{label} keeps its template init in a space of the old network; the new network "
            "is not exact there."
        )
    return LeafPlan(path, None, -1, shape, None, "template", note="new layer: template init")


def _identity_leaf(units, path, shape, roles, r, w, roots, corner, label) -> LeafPlan:
    in_ids, out_ids = units.new_ids(roots[r]), units.new_ids(roots[w])
    where = {u: q for q, u in enumerate(out_ids)}
    pairs = [(p, where[u]) for p, u in enumerate(in_ids) if u in where]
    if not pairs:
        units.warnings.append(f"{label}: no unit passes through it; template init.")
        return LeafPlan(path, None, -1, shape, None, "template", note="new layer: template init")
    if shape[r] != shape[w]:
        units.warnings.append(
            f"{label}: identity init of a {shape[r]} -> {shape[w]} layer is not an exact identity."
        )
    if corner:
        units.warnings.append(
            f"{label}: the corner Dirac kernel shifts feature maps by a pixel; it is offered for "
            "comparison with the original work only."
        )
    index = []
    for axis, role in enumerate(roles):
        if role == WINDOW:
            if not corner and shape[axis] % 2 == 0:
                raise PlanError(
                    f"{label}: a centred Dirac kernel needs odd windows, got {shape[axis]} on "
                    f"axis {axis}; pass new_layers='template' or layers={{...: None}}."
                )
            last_window = axis == max(a for a, x in enumerate(roles) if x == WINDOW)
            at = (shape[axis] - 1 if last_window else 0) if corner else shape[axis] // 2
            index.append(np.full(len(pairs), at, np.int32))
        else:
            col = 0 if axis == r else 1
            index.append(np.asarray([pq[col] for pq in pairs], np.int32))
    source = "identity_corner" if corner else "identity"
    return LeafPlan(
        path, None, -1, shape, None, "identity", identity=tuple(index), note=f"new layer: {source}"
    )


def unused_leaf(path, opath, old_index: int, shape, old_shape) -> LeafPlan:
    """A leaf the new function never reads: copied when unchanged, else refused."""
    if opath is None:
        return LeafPlan(path, None, -1, shape, None, "template", note="not read by apply: template")
    if tuple(shape) != tuple(old_shape):
        raise PlanError(
            f"leaf {trees.path_str(path)!r}: `apply` never reads it, so the trace cannot give its "
            f"axes roles, and its shape changed ({old_shape} -> {shape}); pass an apply that "
            "uses it, or layers={its layer: None}."
        )
    return LeafPlan(
        path, opath, old_index, shape, old_shape, "old", note="not read by apply: copied unchanged"
    )
