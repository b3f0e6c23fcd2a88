"""Composite unit spaces seen whole: the factors of a split axis as unit spaces, and the
operations that mix a composite's units.

A reshape that splits one axis of units into several (a GroupNorm's `(groups, group width)`, a
projection reshaped to `(heads, head width)`) makes a `product` space whose factors hold no
parameter axis of their own. Planning each factor by position lets such a space grow by whole
groups or heads: a new group is a new entry of the leading factor, and the statistics of every
old group (or the dot products of every old head) see the same units as before.
"""

from __future__ import annotations

import numpy as np

from jsurgery.errors import PlanError
from jsurgery.graph.unit_graph import Graph


def unit_factors(graph: Graph, units: set) -> set:
    """The factor roots of every product space that is a unit space, was split out of one axis,
    and has no factor that is a unit space itself (a flatten's `(height, width, channel)` keeps
    its spatial factors as data)."""
    found: set = set()
    for root, composite in graph.composite.items():
        roots = {graph.find(p) for p in composite[1]}
        if root in units and graph.split_product(composite) and not roots & units:
            found |= roots
    return found


def changed(sm) -> bool:
    """Whether a space map adds or drops units."""
    kept = set(sm.src[sm.src >= 0].tolist())
    return bool((sm.src < 0).any()) or len(kept) < sm.n_old


def part_roots(graph: Graph, root: int, planned) -> list:
    """The roots of a composite's parts, nested composites opened unless `planned` (a space
    planned whole, its IDs given) holds them."""
    root = graph.find(root)
    parts = graph.parts(root)
    if parts is None or root in planned:
        return [root]
    return [r for p in parts[1] for r in part_roots(graph, p, planned)]


def mixed_composites(graph: Graph, maps: dict, labels: dict) -> list[str]:
    """Warnings for operations over a whole composite space (a LayerNorm over a concatenation)
    one of whose parts gains or loses units."""
    found = []
    for root in graph.composite:
        if root in maps:
            continue
        ops = graph.crosses(root)
        parts = [labels[r] for r in part_roots(graph, root, maps) if r in maps and changed(maps[r])]
        if ops and parts:
            names = sorted({f"{p} ({s})" for p, s in ops})
            found.append(
                f"{', '.join(names)} mixes the units of a composite space whose part "
                f"{parts[0]} has new or dropped units, so old outputs may move unless the new "
                "units leave it unchanged."
            )
    return found


def moved_constants(graph: Graph, maps: dict, labels: dict) -> list[str]:
    """Warnings for arrays built inside the function from constants only (a sinusoidal
    positional table made with `.at[].set`) that reach a space whose units move, are added or
    are dropped: the table's entries stay at their positions, computed anew by the new
    function, so they do not follow the units."""
    found = []
    for root, sm in maps.items():
        hit = graph.constant_at(root)
        if hit is None or np.array_equal(sm.src, np.arange(sm.n_old)):
            continue
        change = f"{sm.n_old} -> {len(sm.src)} units" if len(sm.src) != sm.n_old else "reordered"
        found.append(
            f"{labels[root]}: a constant array built inside the function ({hit[1]}) reaches "
            f"this space, whose units change ({change}); its "
            "entries are fixed per position (a positional table) and do not follow the units, "
            "so old outputs may move."
        )
    return found


def blocks_kept(write_idx: np.ndarray, new_block: int, old_block: int) -> bool:
    """Whether every run of `new_block` consecutive new units is either all new or exactly the
    units of one old run of `old_block` (in any order): a GroupNorm's groups kept whole."""
    if new_block != old_block or len(write_idx) % new_block:
        return False
    whole = list(range(old_block))
    for row in write_idx.reshape(-1, new_block):
        if (row < 0).all():
            continue
        if (row < 0).any() or len(set((row // old_block).tolist())) != 1:
            return False
        if sorted((row % old_block).tolist()) != whole:
            return False
    return True


def broken_groups(new: Graph, old: Graph, root: int, old_root: int, sm) -> str | None:
    """For a product space planned whole (its IDs given) on both sides, the operations over its
    inner factors (a GroupNorm's statistics over each group) when the IDs break its groups
    apart."""
    pn, po = new.parts(root), old.parts(old_root)
    if pn is None or po is None or pn[0] != "product" or po[0] != "product":
        return None  # a norm on the new side only starts fresh, and its leaves say so
    ops = sorted({f"{p} ({s})" for n in pn[1][1:] for p, s in new.crosses(n)})
    if not ops:
        return None
    inner_new = int(np.prod([new.size[new.find(n)] for n in pn[1][1:]]))
    inner_old = int(np.prod([old.size[old.find(n)] for n in po[1][1:]]))
    if blocks_kept(sm.write_idx, inner_new, inner_old):
        return None
    return (
        f"{', '.join(ops)} works on groups of {inner_new} units, and the given IDs do not keep "
        "every group whole (each new group must be one old group, or all new), so old outputs "
        "may move."
    )


def inherit_segments(graph: Graph, old: Graph, to_old: dict, given: tuple, kinds: list) -> None:
    """The segments of a concatenated input, output or named space (an observation sliced between
    two encoders, logits concatenated from two heads) take the space's kind (each set in `kinds`)
    and their slice of its IDs (`given`: the new and the old side's given IDs), so each segment's
    leaves follow the IDs the user gave for the whole."""
    given_new, given_old = given
    pending = [r for r, (kind, _) in graph.composite.items() if kind == "concat"]
    for root in pending:
        parts = [graph.find(p) for p in graph.composite[root][1]]
        for kind in kinds:
            if root in kind:
                kind.update(parts)
        _slice_ids(graph, root, parts, given_new)
        old_root = to_old.get(root)
        old_parts = old.parts(old_root) if old_root is not None else None
        if old_parts is not None:
            _slice_ids(old, old_root, [old.find(p) for p in old_parts[1]], given_old)
        pending.extend(
            p for p in parts if p in graph.composite and graph.composite[p][0] == "concat"
        )


def _slice_ids(graph: Graph, root: int, parts: list, given: dict) -> None:
    if root not in given:
        return
    ids, label = given[root]
    offset = 0
    for p in parts:
        size = graph.size[p]
        piece = (tuple(ids[offset : offset + size]), f"{label}[{offset}:{offset + size}]")
        if p in given and tuple(given[p][0]) != piece[0]:
            raise PlanError(
                f"`{piece[1]}` and `{given[p][1]}` give different IDs to one segment "
                f"({list(piece[0])[:8]} and {list(given[p][0])[:8]}); they must be the same units."
            )
        given.setdefault(p, piece)
        offset += size


def check_named_products(graph: Graph, given: dict, units: set) -> None:
    """Refuses IDs given for a whole axis that a reshape splits into factors which parameters
    read on their own (a projection reshaped to heads that an output kernel `(heads, head_dim,
    features)` reads per head): the IDs cannot say where a unit goes in each factor."""
    for root, (_, label) in given.items():
        parts = graph.parts(root)
        if parts is None or parts[0] != "product":
            continue
        sizes = [graph.size[graph.find(p)] for p in parts[1]]
        read = [graph.size[graph.find(p)] for p in parts[1] if graph.find(p) in units]
        if read:
            raise PlanError(
                f"`{label}` names the {graph.size[root]} units of an axis that a reshape splits "
                f"into factors of sizes {sizes}, and other parameters read the factor(s) of size "
                f"{read} on their own, so IDs for the whole axis cannot say where a unit goes in "
                "each factor; leave this axis by position (drop these IDs)."
            )


def split_whole(graph: Graph, node: int) -> tuple[int, list] | None:
    """`(whole, factors)` when `node` is the leading factor of a parameter's axis that a reshape
    splits (a distributional head's actions, split with its atoms out of the head's
    `actions * atoms` units), else None. The leading factor carries the units an output names
    (`outputs=` IDs); the others are read by position."""
    root, spaces = graph.find(node), graph.param_spaces()
    for whole, composite in graph.composite.items():
        parts = [graph.find(p) for p in composite[1]]
        if parts[0] == root and whole in spaces and graph.split_product(composite):
            return whole, parts
    return None
