"""How one new leaf is computed from its old leaf, inside the jitted transplant.

The last axis of a leaf is cut into segments (a run of old positions read in order is a slice, a
run of new units reads nothing, anything else is a take); every segment is computed from the old
leaf on its own, with the other axes' gathers, factors and masks applied to it, and the segments
are joined at the end. Every intermediate is then read once by one consumer, so XLA fuses each
segment into one loop over the new leaf: the common cases (units appended, Net2Net replicas,
units dropped) cost one pass over memory, about what a plain copy costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.plan.data import AxisMap, LeafPlan

MAX_SEGMENTS = 8  # beyond this many runs the last axis is one take (a permutation, say)


@dataclass(frozen=True)
class Segment:
    """New positions `[start, stop)` of the last axis and where they come from."""

    start: int
    stop: int
    kind: str  # "slice" (old positions lo, lo + 1, ...), "take" (old positions idx), "none"
    lo: int = 0
    idx: np.ndarray | None = None


def segments(idx: np.ndarray) -> list[Segment]:
    """Cuts an index array (-1: not read) into runs of slices, takes and unread positions."""
    n = len(idx)
    if n == 0:
        return []
    neg = idx < 0
    cut = (neg[1:] != neg[:-1]) | (~neg[1:] & (np.diff(idx) != 1))
    starts = [0, *(np.flatnonzero(cut) + 1).tolist()]
    stops = [*starts[1:], n]
    runs = [
        Segment(a, b, "none") if neg[a] else Segment(a, b, "slice", lo=int(idx[a]))
        for a, b in zip(starts, stops, strict=True)
    ]
    if len(runs) <= MAX_SEGMENTS:
        return runs
    return [Segment(0, n, "take", idx=np.maximum(idx, 0).astype(np.int32))]


def _read(x, seg: Segment, axis: int):
    """The old values a segment of `axis` reads (zeros of the right size where it reads none)."""
    if seg.kind == "slice":
        return jax.lax.slice_in_dim(x, seg.lo, seg.lo + seg.stop - seg.start, axis=axis)
    if seg.kind == "take":
        return jnp.take(x, seg.idx, axis=axis, mode="clip")
    shape = list(x.shape)
    shape[axis] = seg.stop - seg.start
    return jnp.zeros(shape, x.dtype)


def _along(vec: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    return np.reshape(vec, [-1 if a == axis else 1 for a in range(ndim)])


def _gather_axis(x, am: AxisMap, axis: int, moments: bool):
    """One non-last axis: mean positions, gather, Net2Net factors (what a copy reads)."""
    idx = am.src if moments else am.idx
    mean = None if moments else am.mean
    m = jnp.mean(x, axis=axis, keepdims=True) if mean is not None else None
    n = len(idx)
    if not (n == x.shape[axis] and np.array_equal(idx, np.arange(n))):
        runs = segments(idx)
        if len(runs) <= 2 and all(s.kind != "take" for s in runs):
            x = jnp.concatenate([_read(x, s, axis) for s in runs], axis=axis)
        else:
            x = jnp.take(x, np.maximum(idx, 0).astype(np.int32), axis=axis, mode="clip")
    if m is not None:
        x = jnp.where(_along(mean, axis, x.ndim), m, x)
    if am.mul is not None and not moments:
        x = x * jnp.asarray(_along(am.mul, axis, x.ndim), x.dtype)
    return x


def _undefined(am: AxisMap, moments: bool) -> np.ndarray:
    """Positions of an axis that read nothing from the old leaf (template, or zero moments)."""
    defined = (am.src if moments else am.idx) >= 0
    if am.mean is not None and not moments:
        defined = defined | am.mean
    return ~defined


def _masks(lp: LeafPlan, last: AxisMap | None, sl: slice, moments: bool, blocked) -> dict:
    """Per-axis position masks (undefined, zero, noise, scaled) of a segment of the last axis,
    as `(axis, vector)` lists; the undefined positions of `blocked` axes are written afterwards,
    as blocks."""
    ndim = len(lp.shape)
    undefined = [
        (am.axis % ndim, _undefined(am, moments)[sl if am is last else slice(None)])
        for am in lp.axes
        if am.axis % ndim not in blocked
    ]
    if moments:
        return {"undefined": undefined, "zero": [], "noise": [], "scaled": []}
    cut = {name: _restrict(lp, name, ndim - 1, sl.start, sl.stop) for name in _VALUE_MASKS}
    return {"undefined": undefined, **cut}


_VALUE_MASKS = ("zero", "noise", "scaled")


def _scaled(block, lp: LeafPlan, axis_masks: list):
    """The template `block` times the leaf's `template_scale` where a new unit asks for it
    (new_hidden="small_random")."""
    scaled = _mask(axis_masks, len(lp.shape))
    if scaled is None or lp.template_scale == 1.0:
        return block
    return jnp.where(scaled, block * jnp.asarray(lp.template_scale, block.dtype), block)


def _mask(axis_masks: list, ndim: int) -> jax.Array | None:
    """OR of per-axis position masks, broadcast inside the computation (the full-size mask is
    never a constant)."""
    out = None
    for axis, m in axis_masks:
        if m is None or not m.any():
            continue
        b = jnp.asarray(_along(m, axis, ndim))
        out = b if out is None else (out | b)
    return out


def _segment(
    lp: LeafPlan, old, tmpl, eps, last: AxisMap | None, seg: Segment, moments: bool, blocked: dict
):
    """The new values at one segment of the last axis, computed from the old leaf alone."""
    ndim = len(lp.shape)
    sl = slice(seg.start, seg.stop)
    x = _read(old, seg, ndim - 1) if last is not None else old
    if last is not None and not moments and last.mean is not None and last.mean[sl].any():
        x = jnp.where(last.mean[sl], jnp.mean(old, axis=-1, keepdims=True), x)
    for am in lp.axes:
        if am is not last:
            x = _gather_axis(x, am, am.axis % ndim, moments)
    if last is not None and last.mul is not None and not moments:
        x = x * jnp.asarray(last.mul[sl], x.dtype)
    x = x.astype(tmpl.dtype)
    masks = _masks(lp, last, sl, moments, blocked)
    missing = _mask(masks["undefined"], ndim)
    if moments:
        return x if missing is None else jnp.where(missing, jnp.zeros((), x.dtype), x)
    noisy = _mask(masks["noise"], ndim)
    if noisy is not None and eps is not None:
        x = jnp.where(noisy, x * (1 + eps[..., sl]), x)
    if missing is not None:
        x = jnp.where(missing, _scaled(tmpl[..., sl], lp, masks["scaled"]), x)
    zeroed = _mask(masks["zero"], ndim)
    x = x if zeroed is None else jnp.where(zeroed, jnp.zeros((), x.dtype), x)
    if lp.offset is not None:
        x = x + jnp.asarray(lp.offset[sl] if last is not None else lp.offset, x.dtype)
    return x


def _identity_leaf(lp: LeafPlan, dtype, moments: bool):
    zeros = jnp.zeros(lp.shape, dtype)
    if moments or not lp.identity:
        return zeros
    return zeros.at[lp.identity].set(jnp.ones((), dtype))


def new_leaf(lp: LeafPlan, old, tmpl, key, moments: bool, noise_scale: float):
    """The new leaf `lp` describes, from the old leaf `old` and the template's `tmpl`.

    With `moments`, copied units keep their values and every other position is zero (optimizer
    statistics); otherwise new units start as the plan says (template, zeros, Net2Net replicas
    with their fan-out factors, means, offsets, noise).
    """
    if lp.source == "template":
        return jnp.zeros_like(tmpl) if moments else tmpl
    if lp.source == "identity":
        return _identity_leaf(lp, tmpl.dtype, moments)
    ndim = len(lp.shape)
    if ndim == 0:
        return old.astype(tmpl.dtype)
    last = next((am for am in lp.axes if am.axis % ndim == ndim - 1), None)
    eps = None
    if key is not None and not moments and any(am.noise is not None for am in lp.axes):
        eps = noise_scale * jax.random.normal(key, lp.shape, tmpl.dtype)
    blocked = _template_blocks(lp, last, moments)
    if last is None:
        runs = [Segment(0, lp.shape[-1], "slice")]
        out = _segment(lp, old, tmpl, eps, None, runs[0], moments, blocked)
    else:
        runs = segments(last.src if moments else last.idx)
        parts = [_segment(lp, old, tmpl, eps, last, seg, moments, blocked) for seg in runs]
        out = _join(parts, runs, lp.shape[-1])
    return _write_blocks(out, lp, tmpl, blocked, moments)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """`[start, stop)` of each run of True in `mask`."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _template_blocks(lp: LeafPlan, last: AxisMap | None, moments: bool) -> dict:
    """`{axis: runs}` of the unread positions of each axis but the last, where they form few
    runs (units appended, a feature inserted): those rows are written from the template as
    blocks, so the rest of the leaf never reads the template."""
    ndim = len(lp.shape)
    blocked = {}
    for am in lp.axes:
        runs = _runs(_undefined(am, moments)) if am is not last else []
        if 0 < len(runs) <= MAX_SEGMENTS:
            blocked[am.axis % ndim] = runs
    return blocked


def _write_blocks(out, lp: LeafPlan, tmpl, blocked: dict, moments: bool):
    """Writes the template (zeros for moments) into the blocked rows, in place; zero masks
    still apply there."""
    ndim = len(lp.shape)
    for axis, runs in blocked.items():
        for a, b in runs:
            if moments:
                shape = list(lp.shape)
                shape[axis] = b - a
                block = jnp.zeros(shape, out.dtype)
            else:
                block = jax.lax.slice_in_dim(tmpl, a, b, axis=axis)
                block = _scaled(block, lp, _restrict(lp, "scaled", axis, a, b))
                zeroed = _mask(_restrict(lp, "zero", axis, a, b), ndim)
                if zeroed is not None:
                    block = jnp.where(zeroed, jnp.zeros((), block.dtype), block)
            out = jax.lax.dynamic_update_slice_in_dim(out, block, a, axis=axis)
    return out


def _restrict(lp: LeafPlan, name: str, axis: int, a: int, b: int) -> list:
    """The `name` masks of every axis, as `(axis, vector)`, cut to `[a, b)` on `axis`."""
    ndim = len(lp.shape)
    out = []
    for am in lp.axes:
        m = getattr(am, name)
        out.append((am.axis % ndim, None if m is None else m[a:b] if am.axis % ndim == axis else m))
    return out


def _join(parts: list, runs: list[Segment], n: int):
    """The segments side by side on the last axis: the widest padded to the full width (one
    fused pass), the others written into it in place."""
    if len(parts) == 1:
        return parts[0]
    widest = max(range(len(runs)), key=lambda i: runs[i].stop - runs[i].start)
    base = parts[widest]
    pad = [(0, 0)] * (base.ndim - 1) + [(runs[widest].start, n - runs[widest].stop)]
    out = jnp.pad(base, pad)
    for part, seg in zip(parts, runs, strict=True):
        if part is not base:
            out = jax.lax.dynamic_update_slice_in_dim(out, part, seg.start, axis=-1)
    return out
