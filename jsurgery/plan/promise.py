"""What a plan promises for the outputs of the new network, as data, derived from its unit maps,
its inserted layers and its warnings.

A promise is about the new network run on old inputs placed in the new input space (new features
zero, `Plan.embed_inputs`), with the transplanted weights: for the old units of an output, that
they equal the old network's (exact), move at most to first order in a scale, or nothing (and
why); for new units, the value they start at (a copy of a named old unit, the old units' mean
plus an offset, zero) or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np

#: What a promise says of its units.
Kind = Literal["exact", "first order", "start", "nothing"]
#: For a "start" promise, the value the units start at: a copy, the old units' mean or zero (plus
#: an offset), constant atom logits, or at most every old unit ("below").
Start = Literal["copy", "mean", "zero", "logits", "below"]
_STRENGTH = {"exact": 0, "first order": 1, "nothing": 2}


#: What a plan that widens a space under a norm is exact up to (`jsurgery.init.normalised`).
NORM_EPSILON = "the norm's epsilon"


class NewUnitsNote(str):
    """A warning about new units only (a new output's start): the old outputs are not affected,
    so it does not lower the promise for them."""


@dataclass(frozen=True)
class Promise:
    """What the plan promises for some units of one output of the function.

    Attributes:
        output: the output's index among the leaves of the function's result (0 for one output).
        units: the new IDs of the units it covers; () for an output without units (compared as
            a whole).
        kind: "exact", "first order" (in `scale`), "start" (new units) or "nothing".
        start: for "start": "copy" (of `copies`, old IDs per unit), "mean" (of the old units,
            plus `offset`), "zero" (plus `offset`), "logits" (the constant atom logits `values`
            along the output's axis `along`: a distributional head's new action) or "below"
            (at most every old unit: its expected value).
        copies: for a "copy" start, the old ID each unit copies.
        offset: for a "mean" or "zero" start, the offset added (minus a pessimistic margin).
        scale: for "first order", the scale the change is first order in.
        values: for a "logits" start, the logit of each atom.
        along: for a "logits" start, the output's axis of the atoms.
        reason: why the promise is no stronger.
        new: whether the units are new (the old network lacks them).
        measured: the largest difference found by running both networks (None: not run).
        tolerance: the largest difference an exact or start promise allows on those outputs
            (relative to their magnitude; float rounding).
        up_to: for "exact", what it is exact up to ("the norm's epsilon": a LayerNorm or
            RMSNorm over widened units, whose epsilon then acts as epsilon * D / d).
        held: `(old_id, value)` of each removed input the promise holds at its value
            (`make_plan(removed_inputs=...)`): the old network is compared with them there.
    """

    output: int
    units: tuple
    kind: Kind
    start: Start | None = None
    copies: tuple = ()
    offset: float = 0.0
    scale: float = 0.0
    values: tuple = ()
    along: int | None = None
    reason: str = ""
    new: bool = False
    measured: float | None = field(default=None, compare=False)
    tolerance: float | None = field(default=None, compare=False)
    up_to: str = ""
    held: tuple = ()

    @property
    def broken(self) -> bool:
        """Whether it was measured, is exact or a start value, and did not hold."""
        if self.measured is None or self.kind not in ("exact", "start"):
            return False
        return not self.measured <= self.tolerance

    def __str__(self) -> str:
        what = _units_text(self)
        text = f"output {self.output}, {what}: {self.describe()}"
        if self.measured is not None:
            text += f" (measured: {amount(self.measured)})"
        return text

    def describe(self) -> str:
        """The promise in words, without its output and units."""
        held = _held_text(self.held) if self.kind != "nothing" else ""
        return self._kind_text() + held

    def _kind_text(self) -> str:
        if self.kind == "start":
            if self.start == "copy":
                return "start as copies of " + ", ".join(map(repr, self.copies))
            if self.start == "logits":
                return (
                    f"start at the atom logits [{_runs(self.values)}] along axis {self.along} (the "
                    "probability on atom 0, the lowest of an ascending support)"
                )
            if self.start == "below":
                return (
                    "start at or below every old unit (the expected value of the lowest atom, "
                    "atom 0, of an ascending support)"
                )
            base = "the old units' mean" if self.start == "mean" else "0"
            return f"start at {base}{_signed(self.offset)}"
        if self.kind == "first order":
            return f"move at most to first order in {self.scale:g} ({self.reason})"
        if self.kind == "nothing":
            return f"no promise ({self.reason})"
        return f"exact up to {self.up_to}" if self.up_to else "exact"


def _held_text(held: tuple) -> str:
    if not held:
        return ""
    values = ", ".join(f"{uid!r} = {value:g}" for uid, value in held)
    return f" with the removed inputs held at their values ({values})"


def amount(x: float) -> str:
    """A measured difference for reading: below float32 rounding (1e-6), zero included, shown
    as such, since its digits are rounding noise that differs between machines and versions."""
    return "< 1e-6" if x < 1e-6 else f"{x:.3g}"


def _runs(values: tuple) -> str:
    """`(0, -30, -30, -30)` as "0, -30 x3"."""
    runs: list = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1][1] += 1
        else:
            runs.append([v, 1])
    return ", ".join(f"{v:g}" + (f" x{n}" if n > 1 else "") for v, n in runs)


def _units_text(p: Promise) -> str:
    if not p.units:
        return "whole output"
    shown = ", ".join(map(repr, p.units[:6])) + (", ..." if len(p.units) > 6 else "")
    label = "new" if p.new else "old"
    return f"{label} unit{'s' if len(p.units) > 1 else ''} [{shown}]"


def _signed(x: float) -> str:
    return "" if x == 0 else f" - {-x:g}" if x < 0 else f" + {x:g}"


@dataclass(frozen=True)
class OldUnits:
    """The promise for the old units of every output: one kind for the whole plan."""

    kind: Kind = "exact"
    scale: float = 0.0
    reason: str = ""
    up_to: str = ""

    def weaker(self, kind: Kind, reason: str, scale: float = 0.0) -> OldUnits:
        """This promise or the weaker `kind`, whichever is weaker."""
        if _STRENGTH[kind] > _STRENGTH[self.kind]:
            return OldUnits(kind, scale, reason)
        if kind == self.kind == "first order":
            return OldUnits(kind, max(self.scale, scale), self.reason)
        return self


def old_units_promise(
    hidden_maps: dict, labels: dict, leaf_plans, inserted, warnings, carried=frozenset()
) -> OldUnits:
    """The promise for old output units: weakened by each hidden or carried space whose new
    units feed later layers with weights the plan does not zero or divide, by each inserted
    layer leaf left at its template init, and by every warning about the old outputs. New units
    of a `carried` space that start at zero and stay there (checked when planning) feed nothing."""
    normalised = any(sm.normalised for sm in hidden_maps.values())
    promise = OldUnits(up_to=NORM_EPSILON if normalised else "")
    for root, sm in hidden_maps.items():
        kind, scale = _hidden_effect(sm, root in carried)
        if kind != "exact":
            why = f"the new units of {labels.get(root, 'a hidden space')} ({sm.how}) feed it"
            promise = promise.weaker(kind, why, scale)
    for lp in leaf_plans:
        if lp.old_path is None and lp.source == "template" and lp.path in inserted:
            why = f"inserted {'/'.join(map(str, lp.path))} keeps its template init"
            promise = promise.weaker("nothing", why)
    about_old = [w for w in warnings if not isinstance(w, NewUnitsNote)]
    if about_old:
        promise = promise.weaker("nothing", "see plan.warnings: " + _short(about_old[0]))
    return promise


def _short(text: str, n: int = 120) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _hidden_effect(sm, carried: bool = False) -> tuple[Kind, float]:
    """How the new units of a hidden space affect the old outputs through the layers that
    read them: not at all (zero fan-out, Net2Net replicas whose readers are divided, carried
    units that stay zero), to first order (noisy replicas or norm-kept means, in their noise;
    scaled template weights, in their scale), or unknown (template weights)."""
    new = np.flatnonzero(sm.src < 0)
    if not len(new):
        return "exact", 0.0
    if sm.normalised:
        noisy = _mask(sm.write_noise, new).any()
        return ("first order", float(sm.scale)) if noisy else ("exact", 0.0)
    zero = _mask(sm.read_zero, new) | (carried & _mask(sm.write_zero, new))
    copied = (sm.read_idx[new] >= 0) & ~zero
    scaled = _mask(sm.read_scaled, new) & ~zero & ~copied
    if not np.all(zero | copied | scaled):
        return "nothing", 0.0
    noisy = copied & _mask(sm.write_noise, new)
    if scaled.any():
        return "first order", float(sm.scale)
    return ("first order", float(sm.scale)) if noisy.any() else ("exact", 0.0)


def _mask(mask, where) -> np.ndarray:
    return np.zeros(len(where), bool) if mask is None else np.asarray(mask)[where]


@dataclass(frozen=True, eq=False)
class Atoms:
    """How an output holds the actions of a distributional head (a layer's units split by a
    reshape into `(actions, atoms)`).

    Attributes:
        axis: the output's axis of the atoms (logits or probabilities), or None.
        reduced: whether the output is reduced over the atoms (Q-values, their expectation).
        logits: `{position of a new action: its atom logits}` for the new actions started with
            constant logits (a pessimistic start).
    """

    axis: int | None
    reduced: bool
    logits: dict = field(default_factory=dict)


def output_promises(
    k: int, spec, sm, old: OldUnits, carried: bool, atoms: Atoms | None = None
) -> list[Promise]:
    """The promises for output `k`, with `spec` `(axis, old_ids, new_ids)` or None (no units),
    `sm` the `SpaceMap` of its unit space (None: unchanged) and `atoms` how the output holds a
    distributional head's actions (None: it does not)."""
    base = dict(output=k, kind=old.kind, scale=old.scale, reason=old.reason, up_to=old.up_to)
    if spec is None:
        return [Promise(units=(), **base)]
    _, old_ids, new_ids = spec
    src = _src(new_ids, old_ids, sm)
    kept = tuple(new_ids[q] for q in np.flatnonzero(src >= 0))
    out = [Promise(units=kept, **base)] if kept else []
    fresh = np.flatnonzero(src < 0)
    if not len(fresh):
        return out
    if old.kind != "exact":
        why = "the old units are not kept exactly, so new ones have no start value"
        units = tuple(new_ids[q] for q in fresh)
        return [*out, Promise(k, units, "nothing", reason=why, new=True)]
    return out + _starts(k, new_ids, old_ids, fresh, sm, carried, atoms)


def _src(new_ids, old_ids, sm) -> np.ndarray:
    if sm is not None:
        return sm.src
    where = {u: i for i, u in enumerate(old_ids)}
    return np.array([where.get(u, -1) for u in new_ids], np.int64)


def _starts(k, new_ids, old_ids, fresh, sm, carried, atoms=None) -> list[Promise]:
    """One promise per kind of start among the new units `fresh` of an output."""
    groups: dict = {}
    for q in fresh:
        key = _start_of(sm, q, carried) if atoms is None else _atom_start(sm, q, atoms)
        groups.setdefault(key[:2], []).append((new_ids[q], key[2]))
    out = []
    for (start, value), members in groups.items():
        units = tuple(u for u, _ in members)
        if start is None:
            out.append(Promise(k, units, "nothing", reason=value or "template init", new=True))
        elif start == "copy":
            copies = tuple(old_ids[i] for _, i in members)
            out.append(Promise(k, units, "start", start="copy", copies=copies, new=True))
        elif start == "logits":
            along = atoms.axis
            out.append(Promise(k, units, "start", start=start, values=value, along=along, new=True))
        else:
            out.append(Promise(k, units, "start", start=start, offset=value, new=True))
    return out


def _atom_start(sm, q: int, atoms: Atoms) -> tuple:
    """`(start, value, old position)` of new action `q` of an output holding a distributional
    head's actions: a copy of an old action's block of atoms is a copy wherever the output
    holds it; constant atom logits are a "logits" start where the output holds the atoms and a
    "below" start (its expected value) where it is reduced over them; zero logits start the
    logits at zero. Otherwise `(None, reason, -1)`."""
    base = _start_of(sm, q, False)
    if q in atoms.logits and atoms.axis is not None:
        return "logits", tuple(float(v) for v in atoms.logits[q]), -1
    if q in atoms.logits and atoms.reduced:
        return "below", 0.0, -1
    if base[0] == "copy" or (base[0] == "zero" and atoms.axis is not None):
        return base
    if base[0] is None:
        return None, "template init", -1
    return None, f"a value computed from its atom logits ({sm.how})", -1


def _start_of(sm, q: int, carried: bool) -> tuple:
    """`(start, offset, old position)` of new unit `q` of an output space from its map."""
    if sm is None:
        return None, 0.0, -1
    offset = float(sm.offset[q]) if sm.offset is not None else 0.0
    masks = [
        (name, getattr(sm, name) is not None and bool(getattr(sm, name)[q]))
        for name in ("write_zero", "write_mean", "write_scaled", "write_noise")
    ]
    on = {name for name, hit in masks if hit}
    if carried:
        zero_in = sm.write_zero is not None and bool(sm.write_zero[q])
        return ("zero", 0.0, -1) if zero_in else (None, 0.0, -1)
    if on == {"write_mean"}:
        return "mean", offset, -1
    if on == {"write_zero"}:
        return "zero", offset, -1
    if not on and sm.write_idx[q] >= 0:
        return "copy", 0.0, int(sm.write_idx[q])
    return None, 0.0, -1


def with_measured(promises: tuple, measured: list) -> tuple:
    """The promises with their `(difference, tolerance)` measured."""
    return tuple(
        replace(p, measured=d, tolerance=t) for p, (d, t) in zip(promises, measured, strict=True)
    )
