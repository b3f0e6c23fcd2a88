"""Leaf plans: how each axis of a new leaf is filled from the old leaf, unit by unit."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


@dataclass(frozen=True, eq=False)
class LeafPlan:
    """The plan for one leaf of the new tree."""

    path: tuple
    old_path: tuple | None
    old_index: int  # position of the old leaf in the old flat tree, -1 when none
    shape: tuple
    old_shape: tuple | None
    source: str  # "old", "template", "identity"
    axes: tuple[AxisMap, ...] = ()
    offset: np.ndarray | None = None  # added along the only axis (pessimistic bias)
    identity: tuple | None = None  # indices of the ones for source "identity"
    note: str = ""
    template_scale: float = 1.0  # factor on the template at the axes' `scaled` positions


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
