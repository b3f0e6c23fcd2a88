"""Corresponding unit spaces of the old and new graphs: which old space each new space continues."""

from __future__ import annotations

from jsurgery.errors import PlanError
from jsurgery.graph.side import Side, Traced
from jsurgery.graph.unit_graph import READ, WINDOW, WRITE


class Correspondence:
    """New space root -> old space root, built pair by pair and checked for conflicts."""

    def __init__(self, old: Side, new: Side, bridged: dict | None = None):
        """`bridged`: old space root -> a label shared by the old spaces that removed layers
        connect (a removed layer's input and output); a new space may continue several old
        spaces with one label, unit by unit in their order."""
        self.old, self.new = old, new
        self.to_old: dict = {}
        self.seen_at: dict = {}
        self.bridged = bridged or {}
        self.merged: set = set()

    def add(self, new_node: int, old_node: int, where: str) -> None:
        rn, ro = self.new.root(new_node), self.old.root(old_node)
        if rn in self.to_old:
            if self.to_old[rn] != ro and self._bridges(self.to_old[rn], ro):
                self.merged.add(frozenset((self.to_old[rn], ro)))
            elif self.to_old[rn] != ro:
                raise PlanError(
                    f"{where}: this axis continues two different old spaces (also reached at "
                    f"{self.seen_at[rn]}); the structure changed in a way the plan cannot follow: "
                    "check `layers`, or keep the old connections."
                )
            return
        self.to_old[rn] = ro
        self.seen_at[rn] = where
        self._parts(rn, ro, where)

    def _bridges(self, a: int, b: int) -> bool:
        """Whether a removed layer connects old spaces `a` and `b` (of one size, plain)."""
        g = self.old.graph
        label = self.bridged.get(a)
        return (
            label is not None
            and label == self.bridged.get(b)
            and g.size[a] == g.size[b]
            and g.parts(a) is None
            and g.parts(b) is None
        )

    def _parts(self, rn: int, ro: int, where: str) -> None:
        pn, po = self.new.graph.parts(rn), self.old.graph.parts(ro)
        if pn is None and po is None:
            return
        new_only = po is None and self.new.graph.split_product(pn)
        old_only = pn is None and self.old.graph.split_product(po)
        if new_only or old_only:
            return  # split on one side only (a GroupNorm added or removed): the axis is one space
        if pn is None or po is None or pn[0] != po[0] or len(pn[1]) != len(po[1]):
            raise PlanError(
                f"{where}: the old axis is {_kind(po)}, the new one {_kind(pn)}; the "
                "segments of a concatenation or flatten must stay the same in number."
            )
        for a, b in zip(pn[1], po[1], strict=True):
            self.add(a, b, where)


def _kind(parts) -> str:
    if parts is None:
        return "one space"
    return f"a {parts[0]} of {len(parts[1])} parts"


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


def kernel_roots(g, leaf: int) -> tuple | None:
    """`(read root, write root)` of a leaf that reads one space and writes one (a kernel)."""
    axes, roles = g.leaf_axes[leaf], g.leaf_roles[leaf]
    reads = [g.find(n) for n, r in zip(axes, roles, strict=True) if r == READ]
    writes = [g.find(n) for n, r in zip(axes, roles, strict=True) if r == WRITE]
    return (reads[0], writes[0]) if len(reads) == 1 and len(writes) == 1 else None


def removed_bridges(old: Traced, layer_map: dict) -> dict:
    """Old space root -> a label shared by the old spaces that removed layers (old layers no
    new layer continues) connect, input to output: with such a layer gone, the new network
    reads the space the layer read where the old one read the layer's output, unit by unit in
    order."""
    g = old.side.graph
    kept = {v for v in layer_map.values() if v is not None}
    label: dict = {}
    for layer in old.layers:
        if layer.path in kept:
            continue
        for i, _, _ in layer.leaves.values():
            ends = kernel_roots(g, i)
            if ends is not None:
                a, b = (label.get(r, r) for r in ends)
                label.update({r: a for r, v in list(label.items()) if v == b})
                label[ends[0]], label[ends[1]] = a, a
    return label
