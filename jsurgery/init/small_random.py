"""`small_random(scale)`: weights touching a new hidden unit are the template's times `scale`."""

from __future__ import annotations

from dataclasses import dataclass

from jsurgery.init.base import NewUnits, UnitRule, check_number
from jsurgery.plan.data import SpaceMap

SCALE = "it multiplies the template's weights of new hidden units, e.g. 0.01."


@dataclass(frozen=True)
class SmallRandom(UnitRule):
    """New hidden units: every weight touching one (its incoming weights and bias, its outgoing
    weights, in every gate of a recurrent cell) is the template's value times `scale` (OpenAI
    Five's choice, Berner et al. 2019, appendix B); norm scales and statistics keep the
    template's values. Layers that read new outputs read them with the template times `scale`.

    Not exact: the change in the old outputs is bounded by the scale (first order; second order
    where the activation maps 0 to 0, since a new unit's input and its outgoing weights are both
    scaled).
    """

    scale: float = 0.01
    fits = frozenset({"new_hidden"})

    def space_map(self, units: NewUnits) -> SpaceMap:
        sm = units.template(f"small random: template x {self.scale:g} in and out")
        sm.write_scaled = units.mask()
        sm.read_scaled = units.mask()
        sm.scale = self.scale
        return sm


def small_random(scale: float = 0.01) -> SmallRandom:
    """New hidden units whose weights, in and out, are the template's times `scale`
    (`new_hidden`).

    Args:
        scale: the factor on the template's weights (a positive number).

    Raises:
        PlanError: when `scale` is not a positive number.

    Example:
        >>> import jsurgery
        >>> jsurgery.init.small_random(scale=0.05)
        SmallRandom(scale=0.05)
    """
    return SmallRandom(check_number(scale, "scale", SCALE, positive=True))
