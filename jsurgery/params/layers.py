"""Layers of a parameter tree: kinds from leaf names and shapes, in forward order, one chain.

Layers are put in forward order (creation order, numbered names in numeric order, or `order`);
units flow from each layer's outputs into the next layer's inputs, through norm layers and through
a Conv -> flatten -> Dense boundary. Whatever cannot be verified as one chain is refused with a
`PlanError` that says to pass `apply=`.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from jsurgery import trees
from jsurgery.errors import PlanError
from jsurgery.params import kinds

ROOT = "(root)"  # the layer name of leaves that sit at the top of the tree (a bare nn.Dense)
TRACE_HINT = "pass apply= and example= so the planner traces the network's real graph"
_SEARCH_BUDGET = 20000


@dataclass(frozen=True)
class Layer:
    """A layer of a flat tree: its path (a "/"-joined string), kind and unit counts."""

    path: str
    kind: kinds.LayerKind
    leaves: dict  # leaf name -> (flat index, full path, shape, dtype)
    n_in: int
    n_out: int


def chain_layers(
    flat: trees.FlatTree,
    arg: str,
    order: Sequence | None,
    n_inputs: int | None,
    n_outputs: int | None,
) -> list[Layer]:
    """The layers of `flat` in forward order, checked to form one chain.

    Args:
        flat: the flattened tree.
        arg: the argument's name, for messages.
        order: layer paths in forward order, or None to read it from the tree.
        n_inputs: how many input IDs were given (the first layer takes a multiple), or None.
        n_outputs: how many output IDs were given (the last layer gives them), or None.

    Raises:
        PlanError: for unsupported leaves, layers that form no chain in any order, or a chain
            the params-only path cannot tell from a branching network.
    """
    groups: dict[str, dict] = {}
    for i, (path, leaf) in enumerate(flat.leaves.items()):
        lname, name = _layer_name(flat, path), flat.split(path)[2]
        if name in groups.setdefault(lname, {}):
            raise PlanError(f"`{arg}`: layer {lname!r} has two leaves named {name!r}.")
        groups[lname][name] = (i, path, *trees.shape_dtype(leaf))
    if order is not None:
        wanted = [trees.path_str(p) for p in order]
        groups = {k: groups[k] for k in wanted if k in groups} | groups
    out = []
    for lname, leaves in groups.items():
        shapes = {n: v[2] for n, v in leaves.items()}
        kind = kinds.layer_kind(lname, shapes)
        n_in, n_out = kinds.in_out_sizes(kind, shapes)
        out.append(Layer(lname, kind, leaves, n_in, n_out))
    if order is None:
        out = forward_order(out, flat.creation_order, n_inputs, n_outputs)
    check_chain(out, arg)
    return out


def _layer_name(flat: trees.FlatTree, path: tuple) -> str:
    """The "/"-joined path of the layer a leaf belongs to (`ROOT` at the top of the tree)."""
    return trees.path_str(flat.split(path)[1]) or ROOT


def check_order(order: Sequence | None, old, new_template) -> None:
    """Refuses a path in `order` that names no layer of `old` nor of `new_template` (a layer
    only one network has is a layer): ignored, a typo would leave the layers in another order.

    Raises:
        PlanError: naming the path and the closest layer paths.
    """
    if order is None:
        return
    known = set()
    for tree, arg in ((old, "old"), (new_template, "new_template")):
        flat = trees.flatten(tree, arg)
        known.update(_layer_name(flat, path) for path in flat.leaves)
    for path in map(trees.path_str, order):
        if path not in known:
            close = difflib.get_close_matches(path, sorted(known), n=3, cutoff=0.5)
            hint = f"the closest layers are {close}" if close else f"the layers are {sorted(known)}"
            raise PlanError(
                f"`order`: {path!r} names no layer of `old` or `new_template`; {hint} (a layer "
                "path joins its keys with '/')."
            )


def check_chain(layers: list[Layer], arg: str) -> None:
    """Refuses what the params-only path cannot verify as one chain: layers of more than one
    sub-module before the last (separate or shared torsos with heads), an embedding after the
    first layer, and a width change between consecutive layers other than a Conv -> Dense
    flatten."""
    compute = [layer for layer in layers if layer.kind != "norm"]
    parents = {layer.path.rpartition("/")[0] for layer in compute[:-1]}
    if len(parents) > 1:
        raise PlanError(
            f"`{arg}`: its layers sit in several sub-modules {sorted(parents)}; from the "
            f"parameters alone they could be branches (an actor and a critic, heads on a "
            f"torso), which the params-only path cannot tell from a chain; {TRACE_HINT}."
        )
    for layer in compute[1:]:
        if layer.kind == "embed":
            raise PlanError(
                f"`{arg}`: embedding {layer.path!r} is not the first layer; the params-only path "
                f"reads an embedding only as the first layer of a chain; {TRACE_HINT}."
            )
    for prev, layer in zip(compute, compute[1:], strict=False):
        if layer.n_in != prev.n_out and not (prev.kind == "conv" and layer.kind == "dense"):
            raise PlanError(
                f"`{arg}`: layer {layer.path!r} takes {layer.n_in} inputs but {prev.path!r} "
                f"gives {prev.n_out}; only a Conv -> Dense flatten may change the width between "
                f"layers on the params-only path; {TRACE_HINT}."
            )


def flat_factor(layer: Layer, width: int, arg: str) -> int:
    """How many rows of `layer` each of the `width` units flowing into it has (a flatten)."""
    if width == 0 or layer.n_in % width:
        raise PlanError(
            f"layer {layer.path!r} in `{arg}`: takes {layer.n_in} inputs, which is not a multiple "
            f"of the {width} units flowing into it; the layers do not form a chain this plan can "
            "follow (check `inputs`, `order` or `layers`)."
        )
    return layer.n_in // width


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


def _families(layers: list[Layer]) -> list[list[Layer]]:
    """Layers grouped by numbered family (`Dense_0, Dense_1, ...`), each in its own order."""
    families: dict[str, list[Layer]] = {}
    for layer in layers:
        head, _, name = layer.path.rpartition("/")
        stem = name.rstrip("0123456789").rstrip("_") if not name.isdigit() else ""
        families.setdefault(f"{head}/{stem}", []).append(layer)
    return list(families.values())


class _Merge:
    """A depth-first merge of the families into one chain, within a step budget."""

    def __init__(self, queues: list, n_inputs: int | None, n_outputs: int | None):
        self.queues, self.n_inputs, self.n_outputs = queues, n_inputs, n_outputs
        self.budget = _SEARCH_BUDGET

    def search(self, pos: tuple, width, out: list):
        if all(p == len(q) for p, q in zip(pos, self.queues, strict=True)):
            last = [lay for lay in out if lay.kind != "norm"]
            if self.n_outputs is not None and last and last[-1].n_out != self.n_outputs:
                return None
            return out
        self.budget -= 1
        if self.budget < 0:
            return None
        heads = [(f, self.queues[f][p]) for f, p in enumerate(pos) if p < len(self.queues[f])]
        need = width if width is not None else self.n_inputs
        fits = [(f, h) for f, h in heads if _fits(h, need)]
        if width is None:
            fits.sort(key=lambda fh: (fh[1].kind == "norm", not fh[1].path.endswith("0")))
        else:  # a norm right after the layer whose units it normalises, not after a norm
            after_norm = out[-1].kind == "norm"
            fits.sort(key=lambda fh: (fh[1].kind == "norm") == after_norm)
        for f, h in fits:
            nxt = tuple(p + (i == f) for i, p in enumerate(pos))
            found = self.search(nxt, h.n_out, out + [h])
            if found is not None:
                return found
        return None


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
    queues = _families(layers)
    start = tuple(0 for _ in queues)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 4 * len(layers) + 100))
    try:
        found = _Merge(queues, n_inputs, n_outputs).search(start, None, [])
        if found is None and (n_inputs is not None or n_outputs is not None):
            # a chain that misfits the IDs: the ID check says so
            found = _Merge(queues, None, None).search(start, None, [])
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
