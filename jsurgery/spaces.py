"""Corresponding unit spaces of the old and new graphs, their unit IDs, and per-space index maps.

A matched pair of leaves says, axis by axis, which old space each new space continues; so do the
inputs and outputs of the two functions. Every new space then has at most one old counterpart,
unit IDs on both sides (from `inputs`, `outputs`, `hidden`, or by position), and a `SpaceMap`
built by the init rules of `jsurgery.init`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jsurgery import ids
from jsurgery.errors import PlanError
from jsurgery.graph import Graph
from jsurgery.leaves import AxisMap


@dataclass
class Side:
    """One network's graph with the names of its leaves, for messages."""

    graph: Graph
    paths: list  # leaf index -> path string
    name: str  # "old" or "new"

    def root(self, node: int) -> int:
        return self.graph.find(node)

    def size(self, node: int) -> int:
        return self.graph.size[self.graph.find(node)]

    def where(self, leaf: int, axis: int) -> str:
        return f"{self.name} leaf {self.paths[leaf]!r} axis {axis}"


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


@dataclass
class SpaceMap:
    """How the units of one new space are filled from its old counterpart.

    Arrays have one entry per new unit. `src` is the old position of the same unit (-1 when new);
    writers (kernel outputs, biases, scales) read `write_idx`, readers (contracted axes) read
    `read_idx` times `read_mul`; masks say which units are zero, the old mean, noisy, or take
    the template times `scale` (`write_scaled`, `read_scaled`: weights only, not norm scales
    or statistics).
    """

    src: np.ndarray
    write_idx: np.ndarray
    read_idx: np.ndarray
    n_old: int
    how: str
    read_mul: np.ndarray | None = None
    write_zero: np.ndarray | None = None
    read_zero: np.ndarray | None = None
    write_mean: np.ndarray | None = None
    write_noise: np.ndarray | None = None
    offset: np.ndarray | None = None
    write_scaled: np.ndarray | None = None
    read_scaled: np.ndarray | None = None
    scale: float = 1.0

    def axis_map(self, axis: int, role: str, kernel: bool, weight: bool = True) -> AxisMap:
        """The map of one leaf axis in this space; `weight` (a kernel or a bias, not a norm's
        scale or statistics) takes the scaled template where the space says so."""
        if role == "read":
            return AxisMap(
                axis,
                self.read_idx,
                self.src,
                self.read_mul,
                self.read_zero,
                scaled=self.read_scaled if weight else None,
            )
        return AxisMap(
            axis,
            self.write_idx,
            self.src,
            None,
            self.write_zero,
            self.write_mean,
            self.write_noise if kernel else None,
            self.write_scaled if weight else None,
        )


def combine(kind: str, maps: list[AxisMap], old_sizes: list[int], axis: int) -> AxisMap:
    """The map of a composite axis from the maps of its parts (a `concat` of segments, or a
    `product` of factors, rows in C order)."""
    if kind == "concat":
        offsets = np.cumsum([0, *old_sizes[:-1]])
        idx = np.concatenate(
            [np.where(m.idx >= 0, m.idx + o, -1) for m, o in zip(maps, offsets, strict=True)]
        )
        src = np.concatenate(
            [np.where(m.src >= 0, m.src + o, -1) for m, o in zip(maps, offsets, strict=True)]
        )
        return AxisMap(
            axis,
            idx.astype(np.int32),
            src.astype(np.int32),
            _cat(maps, "mul", 1.0),
            _cat(maps, "zero", False),
            scaled=_cat(maps, "scaled", False),
        )
    idx, src = maps[0].idx.astype(np.int64), maps[0].src.astype(np.int64)
    mul, zero = _field(maps[0], "mul", 1.0), _field(maps[0], "zero", False)
    scaled = _field(maps[0], "scaled", False)
    for m, size in zip(maps[1:], old_sizes[1:], strict=True):
        idx = _outer_index(idx, m.idx, size)
        src = _outer_index(src, m.src, size)
        mul = np.outer(mul, _field(m, "mul", 1.0)).ravel()
        zero = np.logical_or.outer(zero, _field(m, "zero", False)).ravel()
        scaled = np.logical_or.outer(scaled, _field(m, "scaled", False)).ravel()
    return AxisMap(
        axis,
        idx.astype(np.int32),
        src.astype(np.int32),
        None if np.all(mul == 1.0) else mul,
        zero if zero.any() else None,
        scaled=scaled if scaled.any() else None,
    )


def _outer_index(a: np.ndarray, b: np.ndarray, size_b: int) -> np.ndarray:
    out = np.add.outer(a * size_b, b)
    bad = np.logical_or.outer(a < 0, b < 0)
    return np.where(bad, -1, out).ravel()


def _field(m: AxisMap, name: str, default) -> np.ndarray:
    v = getattr(m, name)
    return np.full(len(m.idx), default) if v is None else v


def _cat(maps: list, name: str, default):
    if all(getattr(m, name) is None for m in maps):
        return None
    return np.concatenate([_field(m, name, default) for m in maps])


def identity_map(n: int, axis: int) -> AxisMap:
    """A data axis (a flattened spatial factor): read unchanged."""
    ar = np.arange(n, dtype=np.int32)
    return AxisMap(axis, ar, ar)


def unit_ids(given: dict, root: int, size: int, where: str) -> tuple:
    """The IDs of a space: given by the user, or by position."""
    if root in given:
        got, arg = given[root]
        ids.check_count(arg, got, size, where)
        return got
    return ids.positions(size)
