"""Leaf plans: how each axis of a new leaf is filled from the old leaf, unit by unit."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from jsurgery import axes, ids, init, trees
from jsurgery.errors import PlanError


@dataclass(frozen=True, eq=False)
class AxisMap:
    """How one unit axis of a new leaf is filled, position by position.

    Attributes:
        axis: the axis of the leaf.
        idx: old position read for each new position (copies, Net2Net replicas, copied outputs),
            -1 where the value is not read from the old leaf.
        src: old position of the same unit (copies only), -1 for new units.
        mul: factor per new position (Net2Net fan-out division) or None.
        zero: new positions set to zero, or None.
        mean: new positions set to the mean over the old axis, or None.
        noise: new positions that get symmetry-breaking noise, or None.
        scaled: new positions whose template value is multiplied by the leaf's
            `template_scale` (new_hidden="small_random"), or None.
    """

    axis: int
    idx: np.ndarray
    src: np.ndarray
    mul: np.ndarray | None = None
    zero: np.ndarray | None = None
    mean: np.ndarray | None = None
    noise: np.ndarray | None = None
    scaled: np.ndarray | None = None

    def is_copy(self, n_old: int) -> bool:
        """True when this axis reads the old axis unchanged."""
        return (
            len(self.idx) == n_old
            and np.array_equal(self.idx, np.arange(n_old))
            and self.mul is None
            and self.zero is None
            and self.mean is None
            and self.scaled is None
        )


@dataclass(frozen=True, eq=False)
class LeafPlan:
    """The plan for one leaf of the new tree."""

    path: tuple
    old_path: tuple | None
    old_index: int  # position of the old leaf in the old flat tree, -1 when none
    shape: tuple
    old_shape: tuple | None
    source: str  # "old", "template", "identity"
    axes: tuple[AxisMap, ...] = ()
    offset: np.ndarray | None = None  # added along the only axis (pessimistic bias)
    identity: tuple | None = None  # indices of the ones for source "identity"
    note: str = ""
    template_scale: float = 1.0  # factor on the template at the axes' `scaled` positions


@dataclass
class Stream:
    """Units flowing out of a layer in the new network."""

    new_ids: tuple
    fill: list  # per position: None (copy by ID), "template", "zeros", "scaled" (template x
    # init_scale), ("replica", old_id)
    share: np.ndarray | None = None  # Net2Net: 1/copies per position


def summary(src: np.ndarray, n_old: int, how: str) -> str:
    copied = int((src >= 0).sum())
    new = len(src) - copied
    dropped = n_old - len(set(src[src >= 0].tolist()))
    text = f"{copied} copied"
    if new:
        text += f", {new} new ({how})"
    if dropped:
        text += f", {dropped} dropped"
    return text


def expand(arr: np.ndarray | None, k: int, c_old: int, is_index: bool) -> np.ndarray | None:
    """Repeats channel-level entries over `k` flattened spatial positions (rows (s, c))."""
    if arr is None or k == 1:
        return arr
    if is_index:
        s = np.repeat(np.arange(k), len(arr)) * c_old
        tiled = np.tile(arr, k)
        return np.where(tiled >= 0, s + tiled, -1).astype(np.int32)
    return np.tile(arr, k)


def in_axis(stream: Stream, old_in: tuple, k: int, axis: int) -> tuple[AxisMap, np.ndarray]:
    src = ids.index_of(stream.new_ids, old_in)
    idx = src.copy()
    zero = np.zeros(len(src), bool)
    scaled = np.zeros(len(src), bool)
    old_pos = {u: q for q, u in enumerate(old_in)}
    for p in np.flatnonzero(src < 0):
        f = stream.fill[p]
        if isinstance(f, tuple):
            q = old_pos.get(f[1], -1)
            idx[p] = q
            zero[p] = q < 0
        elif f == "zeros":
            zero[p] = True
        elif f == "scaled":
            scaled[p] = True
    mul = stream.share
    c_old = len(old_in)
    amap = AxisMap(
        axis,
        expand(idx, k, c_old, True),
        expand(src, k, c_old, True),
        mul=expand(mul, k, c_old, False),
        zero=expand(zero, k, c_old, False) if zero.any() else None,
        scaled=expand(scaled, k, c_old, False) if scaled.any() else None,
    )
    return amap, src


def output_inits(
    out_new, out_old, src, spec, idx, zero, mean, offset, pessimism, warnings, path
) -> str:
    per_id = dict(spec) if isinstance(spec, Mapping) else {}
    for key in per_id:
        if key not in out_new:
            raise PlanError(
                f"`new_outputs`: {key!r} is not a new output ID; new outputs: {list(out_new)}."
            )
        if key in out_old:
            raise PlanError(
                f"`new_outputs`: {key!r} exists in the old network and is copied; only new "
                "outputs take an init."
            )
    used = []
    warn: dict[str, list] = {"zeros": [], "template": []}
    for p in np.flatnonzero(src < 0):
        choice = per_id.get(out_new[p], "template") if per_id else spec
        if per_id and choice in out_old:
            idx[p] = out_old.index(choice)
            used.append(f"copy of {choice!r}")
            continue
        if choice not in init.NEW_OUTPUTS:
            raise PlanError(
                f"`new_outputs`[{out_new[p]!r}]: {choice!r} is neither an old output ID "
                f"{list(out_old)} nor one of {list(init.NEW_OUTPUTS)}."
            )
        used.append(choice)
        if choice == "zeros":
            zero[p] = True
            warn["zeros"].append(out_new[p])
        elif choice in ("mean", "pessimistic"):
            mean[p] = True
            if choice == "pessimistic":
                offset[p] = -pessimism
        elif choice == "template":
            warn["template"].append(out_new[p])
    for choice, text in (("zeros", init.ZERO_WARNING), ("template", init.TEMPLATE_WARNING)):
        if warn[choice]:
            which = (
                f"output {warn[choice][0]!r}"
                if len(warn[choice]) == 1
                else f"outputs {warn[choice]}"
            )
            warnings.append(f"{path}: {which}: {text}.")
    kinds = sorted(set(used))
    return ", ".join(kinds) if kinds else "-"


def leaves_from_old(
    leaf_plans, layer, old_layer, roles_map, offset, note, allow_cast, scale: float = 1.0
) -> None:
    for name, (_, path, shape, dtype) in layer.leaves.items():
        if name not in old_layer.leaves:
            leaf_plans[path] = LeafPlan(
                path,
                None,
                -1,
                shape,
                None,
                "template",
                note=f"not in old layer {old_layer.path!r}: template init",
            )
            continue
        oi, opath, oshape, odtype = old_layer.leaves[name]
        if odtype != dtype and not allow_cast:
            raise PlanError(
                f"leaf {trees.path_str(path)!r}: old dtype {odtype} differs from the template's "
                f"{dtype}; pass allow_dtype_change=True to cast."
            )
        leaf_roles = axes.roles(layer.kind, name, len(shape))
        maps = []
        for axis, role in enumerate(leaf_roles):
            if role == "window":
                if oshape[axis] != shape[axis]:
                    raise PlanError(
                        f"leaf {trees.path_str(path)!r}: window {shape[:-2]} differs from the old "
                        f"{oshape[:-2]} ({trees.path_str(opath)!r}); windows cannot be resized."
                    )
                continue
            amap = roles_map[role]
            amap = AxisMap(
                axis,
                amap.idx,
                amap.src,
                amap.mul,
                amap.zero,
                amap.mean,
                amap.noise
                if name == "kernel" or layer.kind != "dense" and layer.kind != "conv"
                else None,
                amap.scaled,
            )
            if name == "bias":
                amap = AxisMap(
                    axis, amap.idx, amap.src, None, amap.zero, amap.mean, None, amap.scaled
                )
            if len(amap.idx) != shape[axis]:
                raise PlanError(
                    f"leaf {trees.path_str(path)!r}: axis {axis} has {shape[axis]} entries but "
                    f"the plan has {len(amap.idx)} units for it."
                )
            if amap.is_copy(oshape[axis]):
                continue
            maps.append(amap)
        scaled = any(am.scaled is not None for am in maps)
        leaf_plans[path] = LeafPlan(
            path,
            opath,
            oi,
            shape,
            oshape,
            "old",
            tuple(maps),
            offset=offset if name == "bias" else None,
            note=note if name != "bias" or "in:" not in note else note.split("; ")[-1],
            template_scale=scale if scaled else 1.0,
        )
