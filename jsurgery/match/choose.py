"""The layer matching whose unit spaces correspond with the fewest splits; a tie is refused."""

from __future__ import annotations

from jsurgery.errors import PlanError
from jsurgery.graph.side import Traced
from jsurgery.match.correspondence import correspond, removed_bridges
from jsurgery.match.layers import ambiguity, candidate_matchings


def _leaf_pairs(old: Traced, new: Traced, layer_map: dict) -> dict:
    """`{new path: old path}` of the leaves of matched layers; an old leaf of a matched layer that
    the new layer lacks is refused (it would be dropped silently)."""
    old_by = {layer.path: layer for layer in old.layers}
    new_by = {layer.path: layer for layer in new.layers}
    pairs = {}
    for npath, opath in layer_map.items():
        if opath is None:
            continue
        nl, ol = new_by[npath], old_by[opath]
        for name, (_, path, _) in nl.leaves.items():
            if name in ol.leaves:
                pairs[path] = ol.leaves[name][1]
        lost = sorted(set(ol.leaves) - set(nl.leaves))
        if lost:
            raise PlanError(
                f"old layer {opath!r} has leaves {lost} that new layer {npath!r} lacks; they "
                f"would be dropped silently. Pass layers={{{npath!r}: None}} to start it fresh."
            )
    return pairs


def _correspond_matching(old: Traced, new: Traced, layer_map: dict):
    pairs = _leaf_pairs(old, new, layer_map)
    o_index = {p: i for i, p in enumerate(old.paths)}
    n_index = {p: i for i, p in enumerate(new.paths)}
    used = [
        (n_index[n], o_index[o])
        for n, o in pairs.items()
        if new.side.graph.first_use[n_index[n]] is not None
        and old.side.graph.first_use[o_index[o]] is not None
    ]
    return pairs, correspond(old, new, used, removed_bridges(old, layer_map))


def choose_matching(old: Traced, new: Traced, layers):
    """The smallest-edit layer matching whose spaces correspond with the fewest new spaces
    sharing an old one (an inserted layer makes one such split); a tie is refused."""
    choices, how = candidate_matchings(old.layers, new.layers, layers)
    scored, error = [], None
    for layer_map in choices:
        try:
            pairs, corr = _correspond_matching(old, new, layer_map)
        except PlanError as e:
            error = error or e
            continue
        splits = len(corr.to_old) - len(set(corr.to_old.values())) + len(corr.merged)
        scored.append((splits, layer_map, pairs, corr))
    if not scored:
        raise error
    fewest = min(s[0] for s in scored)
    best = [s for s in scored if s[0] == fewest]
    if len(best) > 1:
        raise ambiguity([s[1] for s in best])
    return best[0][1], how, best[0][2], best[0][3]
