"""Leaf plans on traced graphs: each new leaf axis reads the map of the unit space it lies in."""

from __future__ import annotations

import numpy as np

from jsurgery import ids, trees
from jsurgery.errors import PlanError
from jsurgery.graph import factors
from jsurgery.graph.unit_graph import READ, WINDOW, WRITE
from jsurgery.init import CARRIED, HIDDEN, INPUT, OUTPUT, LayerRule, NewLeaf, NewUnits, Rules
from jsurgery.plan.data import AxisMap, LeafPlan, SpaceMap, combine, identity_map, summary, unit_ids
from jsurgery.plan.promise import NewUnitsNote


class UnitMaps:
    """The `SpaceMap` of every new unit space, built on first use by the space's init rule."""

    def __init__(
        self,
        corr,
        given_old,
        given_new,
        input_roots,
        output_roots,
        rules: Rules,
        warnings,
        carried_roots=frozenset(),
    ):
        self.old, self.new = corr.old, corr.new
        self.corr, self.given_old, self.given_new = corr, given_old, given_new
        self.rules, self.warnings = rules, warnings
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
        kind = self._kind(root)
        norm = self.new.graph.norm_kind(root) if kind == HIDDEN else None
        norm = norm if norm == self.old.graph.norm_kind(o) else None
        sm = self.rules.space_map(
            NewUnits(
                src,
                old_ids,
                new_ids,
                kind,
                label,
                self.warnings,
                norm=norm,
                norm_bias=norm is not None and bool(self.norm_leaves(root)["bias"]),
            )
        )
        if root in self.output_factors and factors.changed(sm):
            raise PlanError(
                f"{label}: an output axis split out of one layer's units by a reshape (a "
                "distributional head's (actions, atoms)) gains or loses units; such outputs take "
                "no `outputs` IDs or `new_outputs` start yet: keep this axis, or give the layer "
                "layers={...: None}."
            )
        self._lower_without_bias(root, sm, label)
        self.maps[root], self.labels[root] = sm, label
        return sm

    def _lower_without_bias(self, root: int, sm: SpaceMap, label: str) -> None:
        """A pessimistic start lowers new outputs by the margin through the bias that writes
        them. Where no bias writes the outputs (a tied embedding's table read by `attend`, a
        layer without a bias) the margin cannot be applied: the new outputs start at the old
        outputs' mean, exactly, and the plan says so."""
        if sm.offset is None or self._has_bias(root):
            return
        new_ids = self.new_ids(root)
        started = [new_ids[p] for p in np.flatnonzero(sm.offset)]
        margin = -float(sm.offset[np.flatnonzero(sm.offset)[0]])
        sm.offset, sm.how = None, "mean"
        which = f"output {started[0]!r}" if len(started) == 1 else f"outputs {started}"
        self.warnings.append(
            NewUnitsNote(
                f"{label}: {which}: a pessimistic start lowers a new output by the margin "
                f"({margin:g}) through a bias, and no bias writes these outputs (a tied embedding "
                "read by `attend`, or an output layer without a bias), so the margin cannot be "
                "applied; the new output starts at the mean of the old outputs instead (exactly, "
                "never above the largest). Pass new_outputs='mean' for that start without this "
                "warning, a per-ID copy {new_id: old_id}, or give the output layer a bias."
            )
        )

    def norm_leaves(self, root: int) -> dict:
        """`{"scale": leaves, "bias": leaves}`: the one-axis leaves in space `root` that belong
        to a norm reading it, multiplied (its scales) or added (its biases, not a layer's)."""
        g = self.new.graph
        found = {"scale": set(), "bias": set()}
        if g.norm_kind(root) is None:
            return found
        for i, axes in enumerate(g.leaf_axes):
            if len(axes) == 1 and g.first_use[i] is not None and g.find(axes[0]) == root:
                if i not in g.additive:
                    found["scale"].add(i)
                elif i not in g.layer_biases:
                    found["bias"].add(i)
        return found

    def norm_role(self, leaf: int) -> str | None:
        """"scale" or "bias" for a norm's one-axis leaf, else None."""
        axes = self.new.graph.leaf_axes[leaf]
        if len(axes) != 1:
            return None
        found = self.norm_leaves(self.new.root(axes[0]))
        return next((role for role, leaves in found.items() if leaf in leaves), None)

    def _has_bias(self, root: int) -> bool:
        """Whether a used one-axis leaf is added into the space `root` (a bias)."""
        g = self.new.graph
        return any(
            i in g.additive and g.first_use[i] is not None and g.find(axes[0]) == root
            for i, axes in enumerate(g.leaf_axes)
            if len(axes) == 1
        )

    def writer_role(self, node: int, role: str) -> str:
        """The role an axis is planned with: an embedding's rows looked up by token (READ)
        that are also the weights of the outputs (the table read by `attend`, tied input and
        output embeddings) are written as the outputs' rule says, since the old function reads
        no new token."""
        g = self.new.graph
        root = g.find(node)
        tokens = {g.find(n) for n in g.input_values.values()}
        return WRITE if role == READ and root in self.outputs and root in tokens else role

    def _kind(self, root: int) -> str:
        if root in self.carried:
            return CARRIED
        if root in self.outputs:
            return OUTPUT
        return INPUT if root in self.inputs else HIDDEN

    def template_scale(self, roots, path) -> float:
        """The factor on the template at the scaled positions of the spaces `roots` (the unit
        axes of the leaf at `path`): one per leaf."""
        g = self.new.graph
        found = {
            self.maps[r].scale
            for root in roots
            for r in factors.part_roots(g, root, self.maps)
            if r in self.maps
            and (self.maps[r].write_scaled is not None or self.maps[r].read_scaled is not None)
        }
        if len(found) > 1:
            raise PlanError(
                f"leaf {trees.path_str(path)!r}: the rules of its spaces scale the template by "
                f"{sorted(found)}, and a leaf takes one scale; give those rules one scale."
            )
        return found.pop() if found else 1.0

    def axis_map(
        self,
        node: int,
        role: str,
        axis: int,
        kernel: bool,
        label: str,
        weight: bool = True,
        norm: str | None = None,
    ) -> AxisMap:
        root = self.new.root(node)
        parts = self.new.graph.parts(root)
        if parts is not None and root not in self.given_new and not self._whole_on_old_side(root):
            maps = [self.axis_map(p, role, axis, kernel, label, weight) for p in parts[1]]
            old_sizes = [self.old.graph.size[self.corr.to_old[self.new.root(p)]] for p in parts[1]]
            return combine(parts[0], maps, old_sizes, axis)
        if root in self.units:
            return self.space(root, label).axis_map(axis, role, kernel, weight, norm)
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
            if ops and (n_new or n_drop) and not (sm.normalised and not n_drop):
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
        self.warnings.extend(factors.moved_constants(g, self.maps, self.labels))
        self.warnings.extend(self._dropped(root) for root in self.maps if self._dropped(root))

    def _dropped(self, root: int) -> str | None:
        """What is lost where old input, hidden or carried units have no new counterpart: the
        old outputs depend on them, so they move (dropped outputs are simply gone)."""
        sm = self.maps[root]
        kept = set(sm.src[sm.src >= 0].tolist())
        if (root in self.outputs and root not in self.carried) or len(kept) == sm.n_old:
            return None
        old_ids = unit_ids(self.given_old, self.corr.to_old[root], sm.n_old, "an old space")
        lost = [u for q, u in enumerate(old_ids) if q not in kept]
        text = (
            f"{self.labels[root]}: {len(lost)} of {sm.n_old} old {self._kind(root)} units are "
            f"dropped ({lost[:8]}{' ...' if len(lost) > 8 else ''}); the old outputs depend on "
            "them, so they move"
        )
        if not kept and sm.n_old:
            text += (
                "; none of the new IDs is an old ID (IDs compare by value and type: 1 and '1' "
                "differ)"
            )
        return text + "."


def matched_leaf(
    units: UnitMaps, ni: int, oi: int, path, opath, old_index: int, shape, old_shape, additive: bool
) -> LeafPlan:
    """The plan of a new leaf that continues an old one."""
    g = units.new.graph
    maps, notes, offset, scaled = [], [], None, []
    weight = len(shape) >= 2 or additive  # kernels and biases, not norm scales or statistics
    norm = units.norm_role(ni)
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
        role = units.writer_role(node, role)
        am = units.axis_map(node, role, axis, len(shape) >= 2, label, weight, norm)
        root = units.new.root(node)
        how = units.how(root)
        notes.append(f"{'in' if role == READ else 'out'}: {summary(am.src, old_shape[axis], how)}")
        if not am.is_copy(old_shape[axis]):
            maps.append(am)
        if am.scaled is not None:
            scaled.append(root)
        if len(shape) == 1 and additive and root in units.outputs:
            offset = units.maps[root].offset
        elif norm == "bias" and root in units.maps:
            offset = units.maps[root].norm_offset
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
        template_scale=units.template_scale(scaled, path),
    )


def new_leaf(
    units: UnitMaps, ni: int, path, shape, rule: LayerRule | None, additive: bool
) -> LeafPlan:
    """The plan of a leaf of an inserted layer, as the `new_layers` rule says (None: the
    template's init, for a layer given `layers={path: None}` or a leaf a matched layer gained)."""
    g = units.new.graph
    roots = [units.new.root(n) for n in g.leaf_axes[ni]]
    leaf = NewLeaf(
        path,
        tuple(shape),
        tuple(g.leaf_roles[ni]),
        tuple(units.corr.to_old.get(r) for r in roots),
        additive,
        f"new leaf {trees.path_str(path)!r}",
        units.warnings,
        lambda axis: units.new_ids(roots[axis]),
        tuple(g.applied.get(ni, ())),
        _applied_before(units, ni, roots),
    )
    return leaf.template() if rule is None else rule.leaf_plan(leaf)


def _applied_before(units: UnitMaps, ni: int, roots: list) -> tuple | None:
    """What leaf `ni`'s input went through after the layer that wrote it (another layer's
    `Graph.applied`), or None when no layer writes the space it reads."""
    g = units.new.graph
    reads = {roots[a] for a, role in enumerate(g.leaf_roles[ni]) if role == READ}
    for leaf, ops in g.applied.items():
        writes = {
            units.new.root(n)
            for n, role in zip(g.leaf_axes[leaf], g.leaf_roles[leaf], strict=True)
            if role == WRITE
        }
        if leaf != ni and writes & reads:
            return tuple(ops)
    return None


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
