"""`zero_fanout()`: new hidden units read like the template and are read with zero weights."""

from __future__ import annotations

from dataclasses import dataclass

from jsurgery.init.base import NewUnits, UnitRule
from jsurgery.plan.data import SpaceMap


@dataclass(frozen=True)
class ZeroFanout(UnitRule):
    """New hidden units: template incoming weights, zero outgoing weights, so nothing downstream
    sees them and the new network computes exactly the old function. The same for a recurrent
    carry and for layers that read new outputs."""

    fits = frozenset({"new_hidden"})

    def space_map(self, units: NewUnits) -> SpaceMap:
        sm = units.template("template in, zero out")
        sm.read_zero = units.mask()
        return sm


def zero_fanout() -> ZeroFanout:
    """New hidden units with zero fan-out (`new_hidden`); exact.

    Example:
        >>> import jsurgery
        >>> jsurgery.init.zero_fanout()
        ZeroFanout()
    """
    return ZeroFanout()
