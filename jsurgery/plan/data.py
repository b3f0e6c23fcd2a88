"""What a plan is made of, as data: per leaf axis an `AxisMap`, per leaf a `LeafPlan`, per unit
space a `SpaceMap`, and how composite axes combine their parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from jsurgery import ids
from jsurgery.errors import PlanError

#: Where a new leaf's values come from: the old leaf (through its axis maps), the template, or
#: zeros with ones at `identity` (an inserted layer's identity or Dirac kernel).
LeafSource = Literal["old", "template", "identity"]
_MASKS = ("mul", "zero", "mean", "noise", "scaled")


@dataclass(frozen=True, eq=False)
class AxisMap:
    """How one unit axis of a new leaf is filled, position by position.

    Attributes:
        axis: the axis of the leaf.
        idx: old position read for each new position (copies, Net2Net replicas, copied outputs),
            -1 where the value is not read from the old leaf.
        src: old position of the same unit (copies only), -1 for new units.
        mul: factor per new position (Net2Net fan-out division) or None.
        zero: new positions set to zero, or None.
        mean: new positions set to the mean over the old axis, or None.
        noise: new positions that get symmetry-breaking noise, or None.
        scaled: new positions whose template value is multiplied by the leaf's
            `template_scale` (new_hidden="small_random"), or None.
    """

    axis: int
    idx: np.ndarray
    src: np.ndarray
    mul: np.ndarray | None = None
    zero: np.ndarray | None = None
    mean: np.ndarray | None = None
    noise: np.ndarray | None = None
    scaled: np.ndarray | None = None

    def is_copy(self, n_old: int) -> bool:
        """True when this axis reads the old axis unchanged."""
        return (
            len(self.idx) == n_old
            and np.array_equal(self.idx, np.arange(n_old))
            and self.mul is None
            and self.zero is None
            and self.mean is None
            and self.scaled is None
        )


@dataclass(frozen=True)
class Held:
    """An old input the new network lacks, held at a value (`make_plan(removed_inputs=...)`):
    the new network on the kept inputs computes the old function with this input there.

    Attributes:
        input: the input's index among the leaves of the function's arguments (0 for one).
        axis: its feature axis, counted from the end (-1: the last).
        position: its position on that axis in the old input.
        id: its ID.
        value: the value it is held at.
    """

    input: int
    axis: int
    position: int
    id: object
    value: float


@dataclass(frozen=True, eq=False)
class Fold:
    """Removed inputs held at values, folded into a bias: before the bias is gathered, its old
    value gets `sum_r values[r] * kernel[rows[r]]`, the kernel's rows taken on its read axis.

    Attributes:
        kernel: position of the old kernel in the old flat tree.
        axis: the kernel's read axis (the one contracted with the input's features).
        rows: the removed inputs' rows on that axis.
        values: the value each removed input is held at.
    """

    kernel: int
    axis: int
    rows: np.ndarray
    values: np.ndarray


@dataclass(frozen=True, eq=False)
class LeafPlan:
    """The plan for one leaf of the new tree."""

    path: tuple
    old_path: tuple | None
    old_index: int  # position of the old leaf in the old flat tree, -1 when none
    shape: tuple
    old_shape: tuple | None
    source: LeafSource
    axes: tuple[AxisMap, ...] = ()
    offset: np.ndarray | None = None  # added last along the only axis (a pessimistic or norm bias)
    identity: tuple | None = None  # indices of the ones for source "identity"
    note: str = ""
    template_scale: float = 1.0  # factor on the template at the axes' `scaled` positions
    fold: tuple[Fold, ...] = ()  # removed inputs folded into this bias (`removed_inputs`)

    def __post_init__(self):
        problem = self._problem()
        if problem:
            raise PlanError(
                f"leaf {'/'.join(map(str, self.path))!r}: {problem}; the plan cannot be applied "
                "(a planner error: please report it with the call that made it)."
            )

    def _problem(self) -> str | None:
        """What makes this leaf plan inconsistent, or None."""
        if self.source not in get_args(LeafSource):
            return f"source {self.source!r} is not one of {get_args(LeafSource)}"
        reads_old = self.source == "old"
        if reads_old != (self.old_path is not None and self.old_shape is not None):
            return f"source {self.source!r} with old leaf {self.old_path!r}"
        if self.source == "identity" and self.identity is None:
            return "an identity leaf without the positions of its ones"
        if self.fold and not reads_old:
            return "removed inputs folded into a leaf that does not read its old value"
        if any(len(f.rows) != len(f.values) for f in self.fold):
            return "a fold with different numbers of rows and values"
        for am in self.axes:
            if not 0 <= am.axis < len(self.shape) or len(am.idx) != self.shape[am.axis]:
                return f"axis map of axis {am.axis} has {len(am.idx)} entries for {self.shape}"
            if len(am.src) != len(am.idx) or any(
                getattr(am, m) is not None and len(getattr(am, m)) != len(am.idx) for m in _MASKS
            ):
                return f"axis map of axis {am.axis} has arrays of different lengths"
            if reads_old and am.idx.size and am.idx.max() >= self.old_shape[am.axis]:
                return f"axis {am.axis} reads past the old leaf's {self.old_shape[am.axis]} entries"
        return None


def summary(src: np.ndarray, n_old: int, how: str) -> str:
    copied = int((src >= 0).sum())
    new = len(src) - copied
    dropped = n_old - len(set(src[src >= 0].tolist()))
    text = f"{copied} copied"
    if new:
        text += f", {new} new ({how})"
    if dropped:
        text += f", {dropped} dropped"
    return text


@dataclass
class SpaceMap:
    """How the units of one new space are filled from its old counterpart.

    Arrays have one entry per new unit. `src` is the old position of the same unit (-1 when new);
    writers (kernel outputs, biases, scales) read `write_idx`, readers (contracted axes) read
    `read_idx` times `read_mul`; masks say which units are zero, the old mean, noisy, or take
    the template times `scale` (`write_scaled`, `read_scaled`: weights only, not norm scales
    or statistics); where units are noisy, `scale` is the rule's relative noise. In a space a
    norm reads (`normalised`: "layer" or "rms"), the norm's scales are multiplied by
    `norm_gain` (per new unit: its old unit's factor, 1 for new units) and its biases take
    `norm_offset` at the new units.
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
    normalised: str | None = None
    norm_gain: np.ndarray | None = None
    norm_offset: np.ndarray | None = None

    def axis_map(
        self, axis: int, role: str, kernel: bool, weight: bool = True, norm: str | None = None
    ) -> AxisMap:
        """The map of one leaf axis in this space; `weight` (a kernel or a bias, not a norm's
        scale or statistics) takes the scaled template where the space says so; `norm`
        ("scale" or "bias") marks a norm's leaf, kept per unit (new units: template, biases
        zero plus `norm_offset`) where the space is `normalised`."""
        if norm is not None and self.normalised is not None:
            new = self.src < 0
            if norm == "scale":
                return AxisMap(axis, self.src, self.src, mul=self.norm_gain)
            return AxisMap(axis, self.src, self.src, zero=new if new.any() else None)
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
