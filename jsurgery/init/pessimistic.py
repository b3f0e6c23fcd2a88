"""`pessimistic(margin)`: a new output starts `margin` below the mean of the old outputs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jsurgery.errors import PlanError
from jsurgery.init.base import NewUnits, UnitRule, check_number
from jsurgery.plan.data import SpaceMap

MARGIN = "it is how far below the old outputs' mean a new output starts, e.g. 1.0."


@dataclass(frozen=True)
class Pessimistic(UnitRule):
    """New outputs: the mean of the old outputs' weights and biases, the bias lowered by
    `margin`. A new output equals the mean of the old outputs minus `margin`, below the lowest
    old output wherever the old outputs lie within `margin` of their mean; the old outputs are
    exact."""

    margin: float = 1.0
    fits = frozenset({"new_outputs"})

    def space_map(self, units: NewUnits) -> SpaceMap:
        sm = units.template(units.output_how("pessimistic"))
        sm.write_mean = units.mask()
        offset = np.where(units.new, -self.margin, 0.0)
        sm.offset = offset if offset.any() else None
        return sm


def pessimistic(margin: float = 1.0) -> Pessimistic:
    """New outputs start `margin` below the mean of the old ones (`new_outputs`).

    Args:
        margin: how far below the old outputs' mean a new output starts.

    Raises:
        PlanError: when `margin` is not a finite number, or is negative (the new output would
            start above the old outputs' mean).

    Example:
        >>> import jsurgery
        >>> jsurgery.init.pessimistic(margin=2.0)
        Pessimistic(margin=2.0)
    """
    return Pessimistic(check_margin(margin, "margin"))


def check_margin(value, arg: str) -> float:
    """`value` as a margin: a finite number that is not negative, refused naming `arg`."""
    margin = check_number(value, arg, MARGIN)
    if margin < 0:
        raise PlanError(
            f"`{arg}`: {value!r} must not be negative: a new output would start above the old "
            f"outputs' mean, not below; {MARGIN}"
        )
    return margin
