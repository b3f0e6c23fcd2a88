"""`template()`: new units and layers keep the template's random init (the original recipe)."""

from __future__ import annotations

from dataclasses import dataclass

from jsurgery.init.base import INPUT, OUTPUT, LayerRule, NewLeaf, NewUnits, UnitRule
from jsurgery.plan.data import LeafPlan, SpaceMap

TEMPLATE_WARNING = (
    "template-initialised new Q-output starts near zero and is likely to be picked by argmax "
    "under negative rewards"
)


@dataclass(frozen=True)
class Template(UnitRule, LayerRule):
    """New units read and write the template's weights; an inserted layer keeps its init.

    No promise: the old outputs move wherever a new unit feeds them. A new output starts near
    zero, which argmax picks under negative rewards; the plan warns.
    """

    fits = frozenset({"new_inputs", "new_hidden", "new_layers", "new_outputs"})

    def space_map(self, units: NewUnits) -> SpaceMap:
        if units.kind == OUTPUT:
            units.warn_outputs(TEMPLATE_WARNING)
            return units.template(units.output_how("template"))
        if units.kind == INPUT:
            return units.template("template")
        return units.template("template in, template out")

    def leaf_plan(self, leaf: NewLeaf) -> LeafPlan:
        return leaf.template()


def template() -> Template:
    """New units and inserted layers keep the template's init, for any of `new_inputs`,
    `new_hidden`, `new_layers` and `new_outputs`.

    Example:
        >>> import jsurgery
        >>> jsurgery.init.template()
        Template()
    """
    return Template()
