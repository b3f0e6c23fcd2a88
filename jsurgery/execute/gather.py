"""How one new leaf is computed from its old leaf, inside the jitted transplant.

The last axis of a leaf is cut into segments (a run of old positions read in order is a slice, a
run of new units reads nothing, anything else is a take); every segment is computed from the old
leaf on its own, with the other axes' gathers, factors and masks applied to it, and the segments
are joined at the end. Every intermediate is then read once by one consumer, so XLA fuses each
segment into one loop over the new leaf: the common cases (units appended, Net2Net replicas,
units dropped) cost one pass over memory, about what a plain copy costs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.plan.data import AxisMap, Fold, LeafPlan

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


def folded(old, folds: tuple[Fold, ...], old_leaves: tuple):
    """The old bias `old` with removed inputs folded in: for each fold, the kernel's removed
    rows (on its read axis) times the values they are held at, summed over the rows and added
    (computed in at least float32, returned in the bias's dtype)."""
    dtype = jnp.promote_types(old.dtype, jnp.float32)
    out = old.astype(dtype)
    for f in folds:
        rows = jnp.take(old_leaves[f.kernel], f.rows, axis=f.axis).astype(dtype)
        out = out + jnp.tensordot(jnp.asarray(f.values, dtype), rows, axes=([0], [f.axis]))
    return out.astype(old.dtype)


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
    if len(lp.shape) == 0:
        return old.astype(tmpl.dtype)
    last = _last(lp)
    eps = None
    if key is not None and not moments and any(am.noise is not None for am in lp.axes):
        eps = noise_scale * jax.random.normal(key, lp.shape, tmpl.dtype)
    blocked = _template_blocks(lp, last, moments)
    out = _rows(lp, old, tmpl, eps, moments, blocked)
    return _write_blocks(out, lp, tmpl, blocked, moments)


def _last(lp: LeafPlan) -> AxisMap | None:
    """The map of the leaf's last axis, or None when that axis is read unchanged."""
    ndim = len(lp.shape)
    return next((am for am in lp.axes if am.axis % ndim == ndim - 1), None)


def _columns(lp: LeafPlan, old, tmpl, eps, moments: bool, blocked: dict):
    """The leaf (template blocks aside) from the segments of its last axis."""
    last = _last(lp)
    if last is None:
        whole = Segment(0, lp.shape[-1], "slice")
        return _segment(lp, old, tmpl, eps, None, whole, moments, blocked)
    runs = segments(last.src if moments else last.idx)
    parts = [_segment(lp, old, tmpl, eps, last, seg, moments, blocked) for seg in runs]
    return _join(parts, runs, lp.shape[-1])


def _rows(lp: LeafPlan, old, tmpl, eps, moments: bool, blocked: dict):
    """The leaf (template blocks aside). Where an axis but the last reads most of its positions
    as one run of old positions, unscaled (the bulk: every copied row of a Net2Net kernel but
    the shared ones), the bulk is computed alone, from slices only, and padded to the full axis,
    and the other rows (replicas, rows with fan-out factors, means, zeros) are computed on their
    own and written into it in place; so the bulk costs what a copy costs. Otherwise the
    segments of the last axis, and always with noise (`eps`), whose draws are computed where
    they are used."""
    split = None if eps is not None else _split(lp, moments, blocked)
    if split is None:
        return _columns(lp, old, tmpl, eps, moments, blocked)
    axis, (a, b), others = split
    rest = {k: runs for k, runs in blocked.items() if k != axis}

    def rows(start: int, stop: int):
        part = _cut(lp, axis, start, stop)
        t = jax.lax.slice_in_dim(tmpl, start, stop, axis=axis)
        return _rows(part, old, t, None, moments, rest)

    pad = [(0, 0)] * len(lp.shape)
    pad[axis] = (a, lp.shape[axis] - b)
    out = jnp.pad(rows(a, b), pad)
    for start, stop in others:
        out = jax.lax.dynamic_update_slice_in_dim(out, rows(start, stop), start, axis=axis)
    return out


def _plain(am: AxisMap, moments: bool) -> np.ndarray:
    """Positions of an axis that read an old position, times a factor at most (no mask or mean):
    the factors of a run of them are one elementwise product fused into its copy."""
    plain = (am.src if moments else am.idx) >= 0
    if moments:
        return plain
    for mask in (am.zero, am.mean, am.noise, am.scaled):
        if mask is not None:
            plain = plain & ~mask
    return plain


def _widest_slice(idx: np.ndarray, plain: np.ndarray) -> tuple[int, int] | None:
    """`[start, stop)` of the longest run of plain positions reading consecutive old positions."""
    if not plain.any():
        return None
    goes_on = np.concatenate([[False], plain[:-1] & plain[1:] & (np.diff(idx) == 1)])
    starts = np.flatnonzero(plain & ~goes_on)
    label = np.cumsum(plain & ~goes_on)
    lengths = np.bincount(label[plain], minlength=len(starts) + 1)[1:]
    best = int(np.argmax(lengths))
    return int(starts[best]), int(starts[best] + lengths[best])


def _split(lp: LeafPlan, moments: bool, blocked: dict):
    """`(axis, bulk, others)` for the first axis but the last whose plain positions hold a run
    of at least half the axis (and not all of it), with the `[start, stop)` of the other
    positions that are not template blocks; None when no axis has one."""
    ndim = len(lp.shape)
    for am in lp.axes:
        axis = am.axis % ndim
        if axis == ndim - 1:
            continue
        n = lp.shape[axis]
        bulk = _widest_slice(am.src if moments else am.idx, _plain(am, moments))
        if bulk is None or bulk == (0, n) or 2 * (bulk[1] - bulk[0]) < n:
            continue
        rest = np.ones(n, dtype=bool)
        rest[bulk[0] : bulk[1]] = False
        for a, b in blocked.get(axis, []):
            rest[a:b] = False
        others = _runs(rest)
        if others and len(others) <= MAX_SEGMENTS:
            return axis, bulk, others
    return None


def _cut(lp: LeafPlan, axis: int, a: int, b: int) -> LeafPlan:
    """The plan of positions `[a, b)` of `axis` of the leaf (factors of 1 dropped)."""
    ndim = len(lp.shape)
    axes = tuple(_cut_map(am, a, b) if am.axis % ndim == axis else am for am in lp.axes)
    shape = (*lp.shape[:axis], b - a, *lp.shape[axis + 1 :])
    return replace(lp, shape=shape, axes=axes, fold=())


def _cut_map(am: AxisMap, a: int, b: int) -> AxisMap:
    cut = {f: getattr(am, f) for f in ("mul", "zero", "mean", "noise", "scaled")}
    cut = {f: None if v is None else v[a:b] for f, v in cut.items()}
    if cut["mul"] is not None and np.all(cut["mul"] == 1.0):
        cut["mul"] = None
    return AxisMap(am.axis, am.idx[a:b], am.src[a:b], **cut)


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
