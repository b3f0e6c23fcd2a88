"""What the new units of a space start as: one small function per kind of space.

Each function takes the new units' old positions (`src`, -1 for a new unit) and returns a
`SpaceMap` that every leaf touching the space reads: writers (a kernel's output axis, a bias, a
scale, a loose parameter) and readers (a contracted axis) alike, so a space tied across a residual
add or read by two heads is filled the same way everywhere.
"""

from __future__ import annotations

import numpy as np

from jsurgery import init
from jsurgery.leaves import output_inits
from jsurgery.spaces import SpaceMap


def _base(src: np.ndarray, n_old: int, how: str) -> SpaceMap:
    return SpaceMap(src, src.copy(), src.copy(), n_old, how)


def _new(src: np.ndarray) -> np.ndarray | None:
    new = src < 0
    return new if new.any() else None


def input_space(src: np.ndarray, n_old: int, new_inputs: str) -> SpaceMap:
    """Input features: new ones are read with zero weights ("zeros") or template weights."""
    sm = _base(src, n_old, new_inputs)
    if new_inputs == "zeros":
        sm.read_zero = _new(src)
    return sm


def small_random(src: np.ndarray, n_old: int, scale: float) -> SpaceMap:
    """Hidden units (carried or not) whose weights, in and out, are the template's times
    `scale`."""
    sm = _base(src, n_old, f"small random: template x {scale:g} in and out")
    sm.write_scaled = sm.read_scaled = _new(src)
    return sm


def hidden_space(
    src: np.ndarray,
    n_old: int,
    new_hidden: str,
    noise: float,
    warnings: list,
    label: str,
    scale: float = 1.0,
) -> SpaceMap:
    """Hidden units: template, zero fan-out, small random, or Net2Net replicas with shared
    fan-out."""
    if new_hidden == "template":
        return _base(src, n_old, "template in, template out")
    if new_hidden == "small_random":
        return small_random(src, n_old, scale)
    sm = _base(src, n_old, "template in, zero out")
    new_pos = np.flatnonzero(src < 0)
    copied = np.flatnonzero(src >= 0)
    if new_hidden == "zero_fanout" or not len(new_pos):
        sm.read_zero = _new(src)
        return sm
    if not len(copied):
        warnings.append(f"{label}: no unit to replicate; new units get zero fan-out.")
        sm.read_zero = _new(src)
        return sm
    reps = init.replicas(copied, len(new_pos))
    sm.write_idx[new_pos] = src[reps]
    sm.read_idx[new_pos] = src[reps]
    counts = np.bincount(sm.read_idx[sm.read_idx >= 0], minlength=n_old)
    sm.read_mul = np.where(
        sm.read_idx >= 0, 1.0 / np.maximum(counts[np.maximum(sm.read_idx, 0)], 1), 1.0
    )
    if noise > 0:
        sm.write_noise = src < 0
    sm.how = "net2net"
    return sm


def carried_space(src: np.ndarray, n_old: int, new_hidden: str, scale: float = 1.0) -> SpaceMap:
    """Hidden units of a recurrent cell's carry: with "net2net" (the preserving choice) new units
    get zero incoming weights and biases in every gate and template outgoing weights, so from a
    carry that is zero on them (a new episode, or `transplant_carry`) they stay exactly zero and
    every step matches the old cell (Net2Net replicas would need their carry replicated too);
    "zero_fanout", "small_random" and "template" as for any hidden space."""
    if new_hidden == "template":
        return _base(src, n_old, "template in, template out")
    if new_hidden == "small_random":
        return small_random(src, n_old, scale)
    sm = _base(src, n_old, "template in, zero out")
    if new_hidden == "zero_fanout":
        sm.read_zero = _new(src)
        return sm
    sm.write_zero = _new(src)
    sm.how = "zero in, template out: stays 0 (carried)"
    return sm


def output_space(
    src: np.ndarray, old_ids: tuple, new_ids: tuple, options: dict, warnings: list, label: str
) -> SpaceMap:
    """Output units (actions, classes): `new_outputs` per new unit; readers of a new output (a
    value computed from the logits) see it with zero weights unless `new_hidden` is
    "template" (template weights) or "small_random" (template weights times `init_scale`)."""
    n = len(src)
    idx = src.copy()
    zero, mean = np.zeros(n, bool), np.zeros(n, bool)
    offset = np.zeros(n, np.float64)
    how = output_inits(
        new_ids,
        old_ids,
        src,
        options["new_outputs"],
        idx,
        zero,
        mean,
        offset,
        options["pessimism"],
        warnings,
        label,
    )
    sm = SpaceMap(src, idx, src.copy(), len(old_ids), how)
    sm.write_zero = zero if zero.any() else None
    sm.write_mean = mean if mean.any() else None
    sm.offset = offset if offset.any() else None
    if options["new_hidden"] == "small_random":
        sm.read_scaled = _new(src)
    elif options["new_hidden"] != "template":
        sm.read_zero = _new(src)
    return sm
