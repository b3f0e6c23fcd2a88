"""Parameter trees as flat `{path: array}` dicts, and back to the tree kind they came from.

Supported trees: Flax linen variables (`{"params": ..., "batch_stats": ...}`), a bare linen params
dict, an NNX `State`, an NNX `Module` (its `Param` and `BatchStat` variables) and an Equinox
`Module` (its array leaves). A path is a tuple
of keys; for linen variables the first key is the collection.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import jax
import numpy as np

from jsurgery.errors import PlanError

_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True)
class FlatTree:
    """A tree flattened to leaves, keyed by path, in forward (layer) order."""

    kind: str  # "variables", "params", "nnx_state", "nnx_module"
    leaves: dict  # path tuple -> array, in forward order
    has_collections: bool
    creation_order: bool = True  # False when the key order carries no creation order (sorted)

    def split(self, path: tuple) -> tuple[str, tuple, str]:
        """(collection, layer path, leaf name) of a full path."""
        if self.has_collections:
            return str(path[0]), path[1:-1], str(path[-1])
        return "params", path[:-1], str(path[-1])


def path_str(path: tuple | str) -> str:
    """A path as one "/"-joined string (a string is taken as already joined)."""
    return path if isinstance(path, str) else "/".join(str(k) for k in path)


def is_static(leaf) -> bool:
    """Whether a leaf is a Python number (a normaliser's epsilon kept in the tree): no array,
    so no units; a plan leaves it out and the new tree keeps its own."""
    return isinstance(leaf, (bool, int, float, complex)) and not hasattr(leaf, "dtype")


def is_nnx_module(tree) -> bool:
    """Whether `tree` is an `nnx.Module` (checked without importing flax.nnx for other trees)."""
    mod = type(tree).__module__
    if not mod.startswith("flax.nnx") and not hasattr(tree, "__nnx_repr__"):
        return False
    from flax import nnx

    return isinstance(tree, nnx.Module)


def is_eqx_module(tree) -> bool:
    """Whether `tree` is an Equinox module (checked only when equinox is already imported)."""
    eqx = sys.modules.get("equinox")
    return eqx is not None and isinstance(tree, eqx.Module)


def eqx_partition(module) -> tuple:
    """`(arrays, rest)` of an Equinox module: its array leaves, and everything else."""
    import equinox as eqx

    return eqx.partition(module, eqx.is_array)


def eqx_combine(arrays, rest):
    import equinox as eqx

    return eqx.combine(arrays, rest)


def _is_nnx_state(tree) -> bool:
    return type(tree).__module__.startswith("flax.nnx") and isinstance(tree, Mapping)


def key_name(k):
    """The name, key or index a `jax.tree_util` key entry stands for."""
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return getattr(k, attr)
    return str(k)


def keypath(kp) -> tuple:
    """A `jax.tree_util` key path as a tuple of names (an NNX variable's `.value` dropped)."""
    path = tuple(key_name(k) for k in kp)
    if len(kp) > 1 and isinstance(kp[-1], jax.tree_util.GetAttrKey) and kp[-1].name == "value":
        path = path[:-1]
    return path


def natural_order(keys: list) -> list:
    """Orders numbered siblings by number, keeping the slots of other keys.

    `Dense_0, Dense_1, Dense_10, Dense_2` (a dict that went through `jax.tree` and came back
    sorted) becomes `Dense_0, Dense_1, Dense_2, Dense_10`; `Conv_0, Dense_0` stays as it is.
    """
    groups: dict = {}
    for slot, k in enumerate(keys):
        if isinstance(k, int):
            groups.setdefault(("", int), []).append((k, slot, k))
            continue
        m = _NUMBERED.match(str(k))
        if m:
            groups.setdefault((m.group(1), str), []).append((int(m.group(2)), slot, k))
    out = list(keys)
    for members in groups.values():
        slots = [slot for _, slot, _ in members]
        for slot, (_, _, k) in zip(slots, sorted(members, key=lambda t: t[0]), strict=True):
            out[slot] = k
    return out


def _walk_order(node, prefix: tuple, out: list, sorted_levels: list) -> None:
    if isinstance(node, Mapping):
        keys = list(node.keys())
        if len(keys) > 1:
            sorted_levels.append(keys == sorted(keys, key=str))
        for k in natural_order(keys):
            _walk_order(node[k], prefix + (k,), out, sorted_levels)
    else:
        out.append(prefix)


def _module_order(module, prefix: str, out: list) -> None:
    """Leaf paths (as strings) of an NNX module in attribute definition order."""
    from flax import nnx

    items = [(k, v) for k, v in vars(module).items() if not str(k).startswith("_")]
    for k, v in items:
        path = f"{prefix}/{k}" if prefix else str(k)
        if isinstance(v, nnx.Module):
            _module_order(v, path, out)
        elif isinstance(v, nnx.Variable):
            out.append(path)


def _nnx_state(module):
    from flax import nnx

    return nnx.state(module, (nnx.Param, nnx.BatchStat))


def flatten(tree, arg: str, any_pytree: bool = False) -> FlatTree:
    """Flattens a supported tree; with `any_pytree`, any pytree of arrays (kind "pytree").
    Python numbers among the leaves (`is_static`) are left out.

    Raises:
        PlanError: for a tree or leaf kind that is not supported.
    """
    module_order = None
    if is_nnx_module(tree):
        module_order = []
        _module_order(tree, "", module_order)
        kind, tree = "nnx_module", _nnx_state(tree)
    elif is_eqx_module(tree):
        kind, tree = "eqx_module", eqx_partition(tree)[0]
    elif _is_nnx_state(tree):
        kind, tree = "nnx_state", _surgery_part(tree)[0]
    elif isinstance(tree, Mapping):
        kind = "variables" if isinstance(tree.get("params"), Mapping) else "params"
    elif any_pytree:
        kind = "pytree"
    else:
        raise PlanError(
            f"`{arg}`: a {type(tree).__name__} is not a supported tree; pass linen variables "
            "({'params': ...}), a params dict, an nnx.State or an nnx.Module."
        )
    pairs, _ = jax.tree_util.tree_flatten_with_path(tree)
    by_path = {}
    for kp, leaf in pairs:
        path = keypath(kp)
        if is_static(leaf):
            continue
        if not (hasattr(leaf, "shape") and hasattr(leaf, "dtype")):
            raise PlanError(
                f"`{arg}`: leaf {path_str(path)!r} is a {type(leaf).__name__}, not an array; "
                "only array leaves can be transplanted."
            )
        by_path[path] = leaf
    order: list = []
    sorted_levels: list = []
    _walk_order(tree, (), order, sorted_levels)
    if kind == "variables":
        sorted_levels = sorted_levels[1:]  # the collections level says nothing about layers
    creation = kind not in ("nnx_state",) and not all(sorted_levels)
    if module_order is not None:
        rank = {p: i for i, p in enumerate(module_order)}
        order.sort(key=lambda p: rank.get(path_str(p), len(rank)))
        creation = True
    ordered = {p: by_path[p] for p in order if p in by_path}
    ordered.update((p, leaf) for p, leaf in by_path.items() if p not in ordered)
    if not ordered:
        raise PlanError(f"`{arg}`: the tree has no array leaves.")
    return FlatTree(kind, ordered, kind == "variables", creation)


def _surgery_part(state) -> tuple:
    """An nnx.State split into what surgery moves (params, batch statistics: what a module
    gives the planner) and the rest (RNG keys and counts, kept from the new template)."""
    from flax import nnx

    return nnx.split_state(state, (nnx.Param, nnx.BatchStat), ...)


def rebuild(template, leaves: dict):
    """A tree of the template's kind with the given leaves (`{path: array}`); the template's
    Python numbers (`is_static`) stay as they are unless given, and so do an nnx.State's RNG
    keys and counts."""
    if _is_nnx_state(template):
        from flax import nnx

        moved, rest = _surgery_part(template)
        return nnx.merge_state(_rebuild_pytree(moved, leaves), rest)
    if is_nnx_module(template):
        from flax import nnx

        graphdef, state, rest = nnx.split(template, (nnx.Param, nnx.BatchStat), ...)
        return nnx.merge(graphdef, rebuild(state, leaves), rest)
    if is_eqx_module(template):
        arrays, rest = eqx_partition(template)
        return eqx_combine(_rebuild_pytree(arrays, leaves), rest)
    return _rebuild_pytree(template, leaves)


def _rebuild_pytree(template, leaves: dict):
    pairs, treedef = jax.tree_util.tree_flatten_with_path(template)
    return jax.tree_util.tree_unflatten(
        treedef,
        [
            leaves.get(keypath(kp), leaf) if is_static(leaf) else leaves[keypath(kp)]
            for kp, leaf in pairs
        ],
    )


def shape_dtype(leaf) -> tuple[tuple, np.dtype]:
    return tuple(leaf.shape), np.dtype(leaf.dtype)
