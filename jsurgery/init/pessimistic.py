"""`pessimistic(margin)`: a new output starts `margin` below the mean of the old outputs; a new
action of a distributional head starts with its probability on the lowest atom."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from jsurgery.errors import PlanError
from jsurgery.init.base import NewUnits, UnitRule, check_number
from jsurgery.plan.data import SpaceMap

MARGIN = "it is how far below the old outputs' mean a new output starts, e.g. 1.0."
#: How far below its first atom's logit a pessimistic new action of a distributional head
#: starts the logits of its other atoms: each of them holds less than e^-30 of its probability.
ATOM_MARGIN = 30.0
ATOM_HOW = "pessimistic (its probability on atom 0, the lowest of an ascending support)"


@dataclass(frozen=True)
class Pessimistic(UnitRule):
    """New outputs: the mean of the old outputs' weights and biases, the bias lowered by
    `margin`. A new output equals the mean of the old outputs minus `margin`, below the lowest
    old output wherever the old outputs lie within `margin` of their mean; the old outputs are
    exact. A new action of a distributional head (`(actions, atoms)`) starts instead with its
    probability on atom 0, taken as the lowest of an ascending support (`on_atoms`; `margin`
    only says that it is lowered)."""

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


def on_atoms(sm: SpaceMap, atoms: int) -> tuple[SpaceMap, np.ndarray | None]:
    """The distributional variant of a pessimistic start, for the actions of a head whose
    `actions * atoms` units a reshape splits into `(actions, atoms)` (C51), given the map of the
    actions that the rules made (`sm`, its `offset` negative where a new action is lowered).

    Lowering every atom logit of an action by one margin leaves its softmax unchanged, so a
    lowered action instead starts with zero weights and a bias that keeps its other atoms
    `ATOM_MARGIN` below its first: (almost) all its probability lies on atom 0. Atom 0 is the
    lowest value of the support when the support ascends (C51's `jnp.linspace(v_min, v_max,
    atoms)`), which the planner assumes; its expected value is then the support's lowest, at
    most every old action's, and `make_plan`'s verification checks that where the function
    returns it.

    Args:
        sm: the map of the action space; its `offset` marks the actions to lower.
        atoms: how many atoms each action has.

    Returns:
        The map of the actions (lowered ones zero) and the offset of the head's bias over
        `(actions, atoms)` in C order, or None when no action is lowered.

    Example:
        >>> import numpy as np
        >>> from jsurgery.plan.data import SpaceMap
        >>> src = np.array([0, -1, 1])
        >>> sm = SpaceMap(src, src, src, 2, "pessimistic", offset=np.array([0.0, -1.0, 0.0]))
        >>> _, bias = on_atoms(sm, 3)
        >>> bias.reshape(3, 3)[1]
        array([  0., -30., -30.])
    """
    if sm.offset is None:
        return sm, None
    lowered = sm.offset < 0
    per_atom = np.full(atoms, -ATOM_MARGIN)
    per_atom[0] = 0.0
    mean = None if sm.write_mean is None else sm.write_mean & ~lowered
    zero = lowered if sm.write_zero is None else sm.write_zero | lowered
    how = sm.how.replace("pessimistic", ATOM_HOW) if "pessimistic" in sm.how else sm.how
    kept = replace(
        sm,
        write_mean=mean if mean is not None and mean.any() else None,
        write_zero=zero,
        offset=None,
        how=how,
    )
    return kept, np.outer(lowered, per_atom).ravel()
