"""The protocol of init rules: what a rule sees of a new unit space or a new leaf, what it returns.

A rule is a small frozen dataclass that carries its own parameters and has one method the planner
calls. A `UnitRule` answers `space_map(units)` for each unit space with new units (its `SpaceMap`
says, unit by unit, what every leaf touching the space reads); a `LayerRule` answers
`leaf_plan(leaf)` for each leaf of an inserted layer. `fits` names the `make_plan` arguments a
rule may be given to; `jsurgery.init.resolve` refuses it anywhere else.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar

import numpy as np

from jsurgery.errors import PlanError
from jsurgery.plan.data import LeafPlan, SpaceMap
from jsurgery.plan.promise import NewUnitsNote

#: The kinds of unit space a rule is asked about (`NewUnits.kind`).
INPUT, HIDDEN, CARRIED, OUTPUT = "input", "hidden", "carried", "output"
#: Asked of the `new_hidden` rule for an output space: how layers that read the outputs (a value
#: computed from logits) read its new units. Only the read side of that map is used.
OUTPUT_READERS = "output_readers"

READ_FIELDS = ("read_idx", "read_mul", "read_zero", "read_scaled")


@dataclass(frozen=True, eq=False)
class NewUnits:
    """One unit space of the new network, as a `UnitRule` sees it.

    Attributes:
        src: the old position of each new-space unit, -1 for a unit the old space lacks.
        old_ids: the unit IDs of the old space.
        new_ids: the unit IDs of the new space.
        kind: "input", "hidden", "carried" (a recurrent cell's carry), "output" or
            "output_readers" (see `OUTPUT_READERS`).
        label: where the space is, for messages.
        warnings: the plan's warnings; a rule appends what the user should know.
        new: the units this rule starts (every unit with `src` -1 unless a per-ID choice gives
            the rule a subset).
        norm: "layer" or "rms" for a hidden space that a LayerNorm or an RMSNorm reads straight
            from the layers writing it (`Graph.norm_kind`), else None.
        norm_bias: whether such a norm adds a bias of its own.
    """

    src: np.ndarray
    old_ids: tuple
    new_ids: tuple
    kind: str
    label: str
    warnings: list
    new: np.ndarray | None = None
    norm: str | None = None
    norm_bias: bool = False

    def __post_init__(self):
        if self.new is None:
            object.__setattr__(self, "new", self.src < 0)

    @property
    def n_old(self) -> int:
        return len(self.old_ids)

    def mask(self) -> np.ndarray | None:
        """The units this rule starts, or None when there are none (a map's masks)."""
        return self.new.copy() if self.new.any() else None

    def template(self, how: str) -> SpaceMap:
        """The map that copies old units and leaves every new one at the template's init; a
        rule changes the fields it needs. `how` is shown in `print(plan)`."""
        return SpaceMap(self.src, self.src.copy(), self.src.copy(), self.n_old, how)

    def output_how(self, how: str) -> str:
        """`how` of an output space: "-" when the rule starts no unit there."""
        return how if self.new.any() else "-"

    def warn_outputs(self, text: str) -> None:
        """Appends `text` for the new outputs this rule starts (none: nothing)."""
        started = [self.new_ids[p] for p in np.flatnonzero(self.new)]
        if started:
            which = f"output {started[0]!r}" if len(started) == 1 else f"outputs {started}"
            self.warnings.append(NewUnitsNote(f"{self.label}: {which}: {text}."))


class UnitRule:
    """How new units start. Subclasses are frozen dataclasses; the planner calls `space_map`.

    Attributes:
        fits: the `make_plan` arguments the rule may be given to.
        noise: relative noise the executor multiplies into the positions a map marks
            `write_noise` (1 + noise * N(0, 1)), read from the `new_hidden` rule.
        seed: the seed of that noise.
    """

    fits: ClassVar[frozenset[str]] = frozenset()
    noise: float = 0.0
    seed: int = 0

    def space_map(self, units: NewUnits) -> SpaceMap:
        """The `SpaceMap` of one unit space (see `NewUnits.kind` for which)."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class NewLeaf:
    """A leaf of an inserted layer, as a `LayerRule` sees it.

    Attributes:
        path: the leaf's path in the new tree.
        shape: its shape.
        roles: per axis, `READ`, `WRITE` or `WINDOW`.
        old_spaces: per axis, the old space it continues (a key to compare) or None.
        additive: whether the leaf is added to the space it writes (a bias).
        label: the leaf, for messages.
        warnings: the plan's warnings.
        unit_ids: `unit_ids(axis)`, the IDs of the units along a unit axis.
        applied: what the layer's output goes through before the next layer reads it (its
            activation), as `jsurgery.graph.follows.Applied` records.
        applied_before: what its input went through after the layer that wrote it (that
            layer's activation), or None where no layer wrote it (the network's inputs).
    """

    path: tuple
    shape: tuple
    roles: tuple
    old_spaces: tuple
    additive: bool
    label: str
    warnings: list
    unit_ids: Callable[[int], tuple]
    applied: tuple = ()
    applied_before: tuple | None = None

    def axes(self, role) -> list[int]:
        """The axes with `role` (`READ`, `WRITE` or `WINDOW`)."""
        return [a for a, r in enumerate(self.roles) if r == role]

    def template(self, note: str = "new layer: template init") -> LeafPlan:
        """The plan that keeps the template's init."""
        return LeafPlan(self.path, None, -1, self.shape, None, "template", note=note)


class LayerRule:
    """How the leaves of inserted layers start. The planner calls `leaf_plan` per leaf.

    Attributes:
        fits: the `make_plan` arguments the rule may be given to.
        continue_rows: whether the spaces between layers inserted in a row continue the old
            space the row starts and ends in (with its IDs), so each layer can pass it through.
    """

    fits: ClassVar[frozenset[str]] = frozenset({"new_layers"})
    continue_rows: ClassVar[bool] = False

    def leaf_plan(self, leaf: NewLeaf) -> LeafPlan:
        """The `LeafPlan` of one leaf of an inserted layer."""
        raise NotImplementedError


def output_map(units: NewUnits, written: SpaceMap, read: SpaceMap) -> SpaceMap:
    """An output space: written as the `new_outputs` rule says, read (by layers that read the
    outputs) as the `new_hidden` rule says for its `OUTPUT_READERS`."""
    scales = {written.scale} if written.write_scaled is not None else set()
    scales |= {read.scale} if read.read_scaled is not None else set()
    if len(scales) > 1:
        raise PlanError(
            f"{units.label}: the rules for its writers (`new_outputs`) and readers "
            f"(`new_hidden`) scale the template by {sorted(scales)}; give them one scale."
        )
    reads = {f: getattr(read, f) for f in READ_FIELDS}
    return replace(written, **reads, scale=scales.pop() if scales else 1.0)


def check_seed(value, arg: str = "seed") -> int:
    """`value` as a seed: an integer in [0, 2**32), refused (naming `arg`) otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise PlanError(f"`{arg}`: {value!r} is not an integer; a seed is an int such as 0.")
    if not 0 <= int(value) < 2**32:
        raise PlanError(
            f"`{arg}`: {value} is outside [0, 2**32); pass a seed in that range, such as 0."
        )
    return int(value)


def check_number(
    value, arg: str, what: str, positive: bool = False, non_negative: bool = False
) -> float:
    """`value` as a float, refused (naming `arg`, saying `what` it is) unless it is a finite
    number (not a bool), positive when `positive`, not negative when `non_negative`."""
    try:
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = math.nan
    low = (positive and number <= 0) or (non_negative and number < 0)
    if not math.isfinite(number) or low:
        kind = "positive" if positive else "non-negative" if non_negative else "finite"
        raise PlanError(f"`{arg}`: {value!r} is not a {kind} number; {what}")
    return number
