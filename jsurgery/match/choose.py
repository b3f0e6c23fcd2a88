"""The layer matching whose unit spaces correspond with the fewest splits; a tie is refused."""

from __future__ import annotations

from jsurgery.errors import PlanError
from jsurgery.graph.side import Traced
from jsurgery.graph.unit_graph import READ, WINDOW, WRITE
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
        raise _with_architectures(error, old, new)
    fewest = min(s[0] for s in scored)
    best = [s for s in scored if s[0] == fewest]
    if len(best) > 1:
        raise ambiguity([s[1] for s in best])
    return best[0][1], how, best[0][2], best[0][3]


def _layer_kind(t: Traced, layer) -> str | None:
    """ "a convolution" (a leaf with a window), "a dense layer" (a leaf that reads one space and
    writes another) or None (norms, embeddings, loose parameters)."""
    roles = [t.side.graph.leaf_roles[i] for i, _, _ in layer.leaves.values()]
    if any(WINDOW in r for r in roles):
        return "a convolution"
    if any(READ in r and WRITE in r for r in roles):
        return "a dense layer"
    return None


def _with_architectures(error: PlanError, old: Traced, new: Traced) -> PlanError:
    """`error`, led by what the two networks differ in when one has a kind of layer (a
    convolution, a dense layer) that the other lacks: the real cause of a matching that no
    space follows (old CNN parameters given with a new MLP template)."""
    kinds = [
        [(k, layer.path) for layer in t.layers if (k := _layer_kind(t, layer))] for t in (old, new)
    ]
    for a, b, name_a, name_b in ((0, 1, "old", "new"), (1, 0, "new", "old")):
        missing = [(k, p) for k, p in kinds[a] if k not in {kind for kind, _ in kinds[b]}]
        if not missing or not kinds[b]:
            continue
        (kind, path), (first, first_path) = missing[0], kinds[b][0]
        cause = str(error).rstrip(".")
        return PlanError(
            f"the old and new networks have different architectures: the {name_a} one has "
            f"{kind} ({path!r}) and the {name_b} one has none (its first layer, {first_path!r}, "
            f"is {first}). A plan moves weights between layers of the same kinds, so it cannot "
            f"follow this change ({cause}). Give the new template the old layers' kinds (widths "
            "may change, and layers may be inserted or removed), or check that `old` and "
            "`new_template` are the networks meant (a network of another architecture trains "
            "from its template, without a plan)."
        )
    return error
