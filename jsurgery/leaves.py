"""Leaf plans: how each axis of a new leaf is filled from the old leaf, unit by unit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from jsurgery import init
from jsurgery.errors import PlanError


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


def output_inits(
    out_new, out_old, src, spec, idx, zero, mean, offset, pessimism, warnings, path
) -> str:
    per_id = dict(spec) if isinstance(spec, Mapping) else {}
    for key in per_id:
        if key not in out_new:
            raise PlanError(
                f"`new_outputs`: {key!r} is not a new output ID; new outputs: {list(out_new)}."
            )
        if key in out_old:
            raise PlanError(
                f"`new_outputs`: {key!r} exists in the old network and is copied; only new "
                "outputs take an init."
            )
    used = []
    warn: dict[str, list] = {"zeros": [], "template": []}
    for p in np.flatnonzero(src < 0):
        choice = per_id.get(out_new[p], "template") if per_id else spec
        if per_id and choice in out_old:
            idx[p] = out_old.index(choice)
            used.append(f"copy of {choice!r}")
            continue
        if choice not in init.NEW_OUTPUTS:
            raise PlanError(
                f"`new_outputs`[{out_new[p]!r}]: {choice!r} is neither an old output ID "
                f"{list(out_old)} nor one of {list(init.NEW_OUTPUTS)}."
            )
        used.append(choice)
        if choice == "zeros":
            zero[p] = True
            warn["zeros"].append(out_new[p])
        elif choice in ("mean", "pessimistic"):
            mean[p] = True
            if choice == "pessimistic":
                offset[p] = -pessimism
        elif choice == "template":
            warn["template"].append(out_new[p])
    for choice, text in (("zeros", init.ZERO_WARNING), ("template", init.TEMPLATE_WARNING)):
        if warn[choice]:
            which = (
                f"output {warn[choice][0]!r}"
                if len(warn[choice]) == 1
                else f"outputs {warn[choice]}"
            )
            warnings.append(f"{path}: {which}: {text}.")
    kinds = sorted(set(used))
    return ", ".join(kinds) if kinds else "-"
