"""Which new layer comes from which old one.

By path name when both networks have the same layer names; otherwise, for sequential models whose
auto-generated names shifted because a layer was inserted or removed, in order from both ends, the
extra layers in the middle being new (or removed). An explicit `layers={new_path: old_path or None}`
overrides both.
"""

from __future__ import annotations

from dataclasses import dataclass

from jsurgery.errors import PlanError


@dataclass(frozen=True)
class Layer:
    """A layer of a flat tree: its path (a "/"-joined string), kind and unit counts."""

    path: str
    kind: str
    leaves: dict  # leaf name -> (full path, shape, dtype)
    n_in: int
    n_out: int


def _fits(layer: Layer, width: int | None) -> bool:
    if width is None:
        return True
    if layer.kind == "norm":
        return layer.n_in == width
    return layer.n_in == width or (width > 0 and layer.n_in % width == 0)


def chain_ok(layers: list[Layer]) -> bool:
    """True when each layer takes the units the previous one gives (or a flattened multiple)."""
    width = None
    for layer in layers:
        if not _fits(layer, width):
            return False
        width = layer.n_out
    return True


def forward_order(
    layers: list[Layer],
    creation_order: bool,
    n_inputs: int | None = None,
    n_outputs: int | None = None,
) -> list[Layer]:
    """Puts layers in forward order.

    A tree that kept its creation order is trusted when its layers chain. Otherwise (a dict that
    went through `jax.tree` and came back with sorted keys, an nnx.State) the numbered families
    (`Dense_0, Dense_1, ...`; `LayerNorm_0, ...`) are merged so that each layer takes the units
    the previous one gives, a norm layer going right after the layer whose units it normalises,
    the first layer taking `n_inputs` (a multiple of) and the last giving `n_outputs` when known;
    a chain starts with a layer numbered 0 when it can.
    """
    if creation_order and chain_ok(layers):
        return layers
    families: dict[str, list[Layer]] = {}
    for layer in layers:
        head, _, name = layer.path.rpartition("/")
        stem = name.rstrip("0123456789").rstrip("_") if not name.isdigit() else ""
        families.setdefault(f"{head}/{stem}", []).append(layer)
    queues = list(families.values())
    budget = [20000]

    def search(pos: tuple, width, out: list):
        if all(p == len(q) for p, q in zip(pos, queues, strict=True)):
            last = [lay for lay in out if lay.kind != "norm"]
            if n_outputs is not None and last and last[-1].n_out != n_outputs:
                return None
            return out
        budget[0] -= 1
        if budget[0] < 0:
            return None
        heads = [(f, queues[f][p]) for f, p in enumerate(pos) if p < len(queues[f])]
        fits = [(f, h) for f, h in heads if _fits(h, width if width is not None else n_inputs)]
        if width is None:
            fits.sort(key=lambda fh: (fh[1].kind == "norm", not fh[1].path.endswith("0")))
        else:
            fits.sort(key=lambda fh: fh[1].kind != "norm")
        for f, h in fits:
            nxt = tuple(p + (i == f) for i, p in enumerate(pos))
            found = search(nxt, h.n_out, out + [h])
            if found is not None:
                return found
        return None

    import sys

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(layers) + 100))
    try:
        found = search(tuple(0 for _ in queues), None, [])
        if found is None and (n_inputs is not None or n_outputs is not None):
            budget[0] = 20000
            n_inputs = n_outputs = None  # a chain that misfits the IDs: the ID check says so
            found = search(tuple(0 for _ in queues), None, [])
    finally:
        sys.setrecursionlimit(limit)
    if found is None:
        raise PlanError(
            f"the layers {[layer.path for layer in layers]} do not form a chain in any order "
            "(each layer taking the units the previous one gives); the network branches or its "
            "layer order cannot be read from the parameters. Pass apply= and example= so the "
            "planner traces the network, or order=[...] for a chain."
        )
    return found


def _as_graph_layers(layers: list[Layer]) -> list:
    """Chain layers as `GraphLayer`s: kind and leaf names, plus whether the layer reads the
    network's inputs or writes its outputs (a first layer only matches a first layer)."""
    from jsurgery.graph_match import GraphLayer

    compute = [layer.path for layer in layers if layer.kind != "norm"]
    out = []
    for k, layer in enumerate(layers):
        ends = (
            bool(compute) and layer.path == compute[0],
            bool(compute) and layer.path == compute[-1],
        )
        roles = (layer.kind, ends, *sorted((n, len(v[2])) for n, v in layer.leaves.items()))
        leaves = {n: (i, v[1], tuple(v[2])) for i, (n, v) in enumerate(layer.leaves.items())}
        out.append(GraphLayer(layer.path, leaves, roles, float(k)))
    return out


def match_layers(
    old: list[Layer], new: list[Layer], overrides: dict | None
) -> tuple[dict[str, str | None], str]:
    """Matches new layers to old ones.

    Args:
        old: old layers in forward order.
        new: new layers in forward order.
        overrides: `{new_path: old_path or None}`; `None` marks a new layer.

    Returns:
        `({new_path: old_path or None}, how)` where `how` is "name" or "sequential".

    Raises:
        PlanError: for an override naming an unknown layer, an old layer used twice, or a pair of
            layers of different kinds; for two distinct equally small alignments.
    """
    from jsurgery.graph_match import ambiguity, candidate_matchings

    found, how = candidate_matchings(_as_graph_layers(old), _as_graph_layers(new), overrides)
    if len(found) > 1:
        raise ambiguity(found)
    return found[0], "name" if how == "name" else "sequential"
