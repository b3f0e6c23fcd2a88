"""`zeros()`: new input features are read with zero weights; new outputs are zero."""

from __future__ import annotations

from dataclasses import dataclass

from jsurgery.init.base import INPUT, NewUnits, UnitRule
from jsurgery.plan.data import SpaceMap

ZERO_WARNING = (
    "zero-initialised new Q-output is likely to be picked by argmax under negative rewards"
)


@dataclass(frozen=True)
class Zeros(UnitRule):
    """New inputs: zero rows in every layer that reads them, so the new network computes exactly
    the old function of the old features, whatever the new features hold. New outputs: zero
    weights and bias, so the new output is 0 everywhere and the old outputs are exact; the plan
    warns that argmax picks a zero output under negative rewards."""

    fits = frozenset({"new_inputs", "new_outputs"})

    def space_map(self, units: NewUnits) -> SpaceMap:
        if units.kind == INPUT:
            sm = units.template("zeros")
            sm.read_zero = units.mask()
            return sm
        units.warn_outputs(ZERO_WARNING)
        sm = units.template(units.output_how("zeros"))
        sm.write_zero = units.mask()
        return sm


def zeros() -> Zeros:
    """Zero weights for new inputs (`new_inputs`), zero new outputs (`new_outputs`).

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn, jsurgery
        >>> old = nn.Dense(2).init(jax.random.key(0), jnp.ones((1, 2)))
        >>> new = nn.Dense(2).init(jax.random.key(1), jnp.ones((1, 3)))
        >>> plan = jsurgery.make_plan(old, new, inputs=(["a", "b"], ["a", "c", "b"]),
        ...                           new_inputs=jsurgery.init.zeros())
        >>> jsurgery.transplant(old, new, plan)["params"]["kernel"][1]
        Array([0., 0.], dtype=float32)
    """
    return Zeros()
