"""`new_outputs={new_id: old_id or rule}`: each new output starts its own way."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, replace

import numpy as np

from jsurgery.errors import PlanError
from jsurgery.init.base import NewUnits, UnitRule
from jsurgery.init.template import template
from jsurgery.plan.data import SpaceMap

WRITE_MASKS = ("write_zero", "write_mean", "write_noise", "write_scaled")


@dataclass(frozen=True)
class ById(UnitRule):
    """New outputs started per ID: a value that is an old output ID copies that output exactly
    (`{"noop": "left"}`), a rule (or a rule's name) starts the output as that rule says; IDs not
    given start as "template". Old outputs are kept exactly.

    Attributes:
        starts: `(new_id, value)` pairs as the user gave them.
        named: `(name, rule)`: the rule each name among the values stands for, unless an old
            output has that ID ("template" is `template()` unless given).
        names: every name `new_outputs` takes, for messages.
        elsewhere: the new IDs of the function's other outputs (`outputs={index: pair}`): a key
            among them starts a unit of that output and is not an error in this one.
    """

    starts: tuple = ()
    named: tuple = ()
    names: tuple = ()
    elsewhere: tuple = ()
    fits = frozenset({"new_outputs"})

    def space_map(self, units: NewUnits) -> SpaceMap:
        self._check_keys(units)
        starts, named = dict(self.starts), {"template": template(), **dict(self.named)}
        idx, hows, groups = units.src.copy(), [], []
        for p in np.flatnonzero(units.new):
            value = starts.get(units.new_ids[p], "template")
            if not isinstance(value, UnitRule) and value in units.old_ids:
                idx[p] = units.old_ids.index(value)
                hows.append(f"copy of {value!r}")
                continue
            rule = value if isinstance(value, UnitRule) else _named(named, value)
            if rule is None:
                raise PlanError(
                    f"`new_outputs`[{units.new_ids[p]!r}]: {value!r} is neither an old output "
                    f"ID {list(units.old_ids)} nor one of {list(self.names)}."
                )
            group = next((g for g in groups if g[0] == rule), None)
            if group is None:
                groups.append(group := (rule, np.zeros(len(units.src), bool)))
            group[1][p] = True
        parts = [(mask, rule.space_map(replace(units, new=mask))) for rule, mask in groups]
        hows += [m.how for _, m in parts]
        return _merge(units.template(", ".join(sorted(set(hows))) or "-"), idx, parts)

    def _check_keys(self, units: NewUnits) -> None:
        for key, _ in self.starts:
            if key in self.elsewhere and key not in units.new_ids:
                continue
            if key not in units.new_ids:
                every = [*units.new_ids, *(i for i in self.elsewhere if i not in units.new_ids)]
                raise PlanError(
                    f"`new_outputs`: {key!r} is not a new output ID; new outputs: {every}."
                )
            if key in units.old_ids:
                raise PlanError(
                    f"`new_outputs`: {key!r} exists in the old network and is copied; only new "
                    "outputs take an init."
                )


def _named(named: dict, value):
    return named.get(value) if isinstance(value, Hashable) else None


def _merge(sm: SpaceMap, idx: np.ndarray, parts: list) -> SpaceMap:
    """`sm` writing the copies of `idx`, and at each `(mask, map)` part's positions what its
    map writes."""
    sm.write_idx = idx
    offset = np.zeros(len(idx), np.float64)
    for name in WRITE_MASKS:
        merged = np.zeros(len(idx), bool)
        for mask, m in parts:
            if getattr(m, name) is not None:
                merged[mask] = getattr(m, name)[mask]
        setattr(sm, name, merged if merged.any() else None)
    for mask, m in parts:
        sm.write_idx[mask] = m.write_idx[mask]
        if m.offset is not None:
            offset[mask] = m.offset[mask]
    sm.offset = offset if offset.any() else None
    scales = {m.scale for _, m in parts if m.write_scaled is not None}
    if len(scales) > 1:
        raise PlanError(
            f"`new_outputs`: the rules scale the template by {sorted(scales)}; give them one scale."
        )
    sm.scale = scales.pop() if scales else 1.0
    return sm
