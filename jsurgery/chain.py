"""The params-only front-end: plans for plain chains of layers, read from names and shapes.

Layers are put in forward order (creation order, numbered names in numeric order, or `order`) and
units flow from each layer's outputs into the next layer's inputs, through norm layers and through
a Conv -> flatten -> Dense boundary (Dense rows `(h, w, channel)`). Whatever cannot be verified as
one chain is refused with a `PlanError` that says to pass `apply=`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from jsurgery import axes, ids, init, trees
from jsurgery.errors import PlanError
from jsurgery.leaves import (
    AxisMap,
    LeafPlan,
    Stream,
    in_axis,
    leaves_from_old,
    output_inits,
    summary,
)
from jsurgery.match import Layer, forward_order, match_layers

ROOT = "(root)"  # the layer name of leaves that sit at the top of the tree (a bare nn.Dense)
TRACE_HINT = "pass apply= and example= so the planner traces the network's real graph"


def chain_layers(
    flat: trees.FlatTree,
    arg: str,
    order: Sequence | None,
    n_inputs: int | None,
    n_outputs: int | None,
) -> list[Layer]:
    """The layers of `flat` in forward order, checked to form one chain."""
    groups: dict[str, dict] = {}
    for i, (path, leaf) in enumerate(flat.leaves.items()):
        _, layer, name = flat.split(path)
        lname = trees.path_str(layer) or ROOT
        if name in groups.setdefault(lname, {}):
            raise PlanError(f"`{arg}`: layer {lname!r} has two leaves named {name!r}.")
        groups[lname][name] = (i, path, *trees.shape_dtype(leaf))
    if order is not None:
        wanted = [trees.path_str(p) for p in order]
        groups = {k: groups[k] for k in wanted if k in groups} | groups
    out = []
    for lname, leaves in groups.items():
        shapes = {n: v[2] for n, v in leaves.items()}
        kind = axes.layer_kind(lname, shapes)
        n_in, n_out = axes.in_out_sizes(kind, shapes)
        out.append(Layer(lname, kind, leaves, n_in, n_out))
    if order is None:
        out = forward_order(out, flat.creation_order, n_inputs, n_outputs)
    check_chain(out, arg)
    return out


def check_chain(layers: list[Layer], arg: str) -> None:
    """Refuses what the params-only path cannot verify as one chain: layers of more than one
    sub-module before the last (separate or shared torsos with heads), and a width change between
    consecutive layers other than a Conv -> Dense flatten."""
    compute = [layer for layer in layers if layer.kind != "norm"]
    parents = {layer.path.rpartition("/")[0] for layer in compute[:-1]}
    if len(parents) > 1:
        raise PlanError(
            f"`{arg}`: its layers sit in several sub-modules {sorted(parents)}; from the "
            f"parameters alone they could be branches (an actor and a critic, heads on a "
            f"torso), which the params-only path cannot tell from a chain; {TRACE_HINT}."
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


def _id_counts(inputs, outputs) -> list:
    """How many IDs each side of `inputs` and `outputs` names (None where not given)."""
    sizes = [None, None, None, None]
    for k, pair in ((0, inputs), (2, outputs)):
        if isinstance(pair, (tuple, list)) and len(pair) == 2:
            for j in (0, 1):
                if isinstance(pair[j], (Sequence, np.ndarray)) and not isinstance(pair[j], str):
                    sizes[k + j] = len(pair[j]) or None
    return sizes


def _last(layers: list[Layer]) -> Layer:
    return [layer for layer in layers if layer.kind != "norm"][-1]


@dataclass
class UnitIds:
    """The unit IDs of both chains: inputs, outputs, and per layer what flows in and out."""

    inputs: tuple
    outputs: tuple
    old_in: dict = field(default_factory=dict)  # old layer -> IDs flowing into it
    old_out: dict = field(default_factory=dict)  # old layer -> IDs it gives
    new_out: dict = field(default_factory=dict)  # new layer -> IDs named for its outputs


def _output_ids(old_layers, new_layers, outputs, unit_ids: UnitIds) -> tuple:
    old_last, new_last = _last(old_layers), _last(new_layers)
    if outputs is None:
        return ids.positions(old_last.n_out), ids.positions(new_last.n_out)
    o_old, o_new = ids.check_pair("outputs", outputs)
    ids.check_count("outputs[0] (old IDs)", o_old, old_last.n_out, f"old layer {old_last.path!r}")
    ids.check_count("outputs[1] (new IDs)", o_new, new_last.n_out, f"new layer {new_last.path!r}")
    unit_ids.old_out[old_last.path], unit_ids.new_out[new_last.path] = o_old, o_new
    return o_old, o_new


def _hidden_ids(old_layers, new_layers, layer_map, hidden, unit_ids: UnitIds) -> None:
    old_by = {layer.path: layer for layer in old_layers}
    new_last = _last(new_layers)
    for key, pair in (hidden or {}).items():
        lpath = trees.path_str(key)
        layer = next((lay for lay in new_layers if lay.path == lpath), None)
        if layer is None or layer.kind == "norm" or layer is new_last:
            hidden_layers = [
                lay.path for lay in new_layers if lay.kind != "norm" and lay is not new_last
            ]
            raise PlanError(
                f"`hidden`: {lpath!r} is not a hidden layer of the new template; hidden layers: "
                f"{hidden_layers}."
            )
        h_old, h_new = ids.check_pair(f"hidden[{lpath!r}]", pair)
        ids.check_count(f"hidden[{lpath!r}][1] (new IDs)", h_new, layer.n_out, f"layer {lpath!r}")
        unit_ids.new_out[lpath] = h_new
        opath = layer_map[lpath]
        if opath is not None:
            ids.check_count(
                f"hidden[{lpath!r}][0] (old IDs)", h_old, old_by[opath].n_out, f"old {opath!r}"
            )
            unit_ids.old_out[opath] = h_old


def _input_ids(old_layers, new_layers, inputs) -> tuple:
    if inputs is not None:
        i_old, i_new = ids.check_pair("inputs", inputs)
    else:
        i_old, i_new = ids.positions(old_layers[0].n_in), ids.positions(new_layers[0].n_in)
    for arg, got, layer in (
        ("inputs[0] (old IDs)", i_old, old_layers[0]),
        ("inputs[1] (new IDs)", i_new, new_layers[0]),
    ):
        if not got or layer.n_in % len(got):
            ids.check_count(arg, got, layer.n_in, f"the inputs of layer {layer.path!r}")
    return i_old, i_new


def unit_ids(old_layers, new_layers, layer_map, inputs, outputs, hidden) -> UnitIds:
    """Checks the given IDs against the layers and follows them along the old chain."""
    found = UnitIds((), ())
    found.outputs = _output_ids(old_layers, new_layers, outputs, found)
    _hidden_ids(old_layers, new_layers, layer_map, hidden, found)
    found.inputs = _input_ids(old_layers, new_layers, inputs)
    stream_ids = found.inputs[0]
    for layer in old_layers:
        found.old_in[layer.path] = stream_ids
        if layer.kind != "norm":
            stream_ids = found.old_out.setdefault(layer.path, ids.positions(layer.n_out))
        else:
            flat_factor(layer, len(stream_ids), "old")
            found.old_out[layer.path] = stream_ids
    return found


@dataclass
class _Builder:
    """What planning one new layer at a time needs, and what it collects."""

    options: Mapping
    pessimism: float
    net2net_noise: float
    allow_dtype_change: bool
    explicit_new: set
    new_last: Layer
    unit_ids: UnitIds
    leaf_plans: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)

    @property
    def hidden_fill(self) -> str:
        """How the layer after a new hidden unit reads it: template, template x scale, or 0."""
        return {"template": "template", "small_random": "scaled"}.get(
            self.options["new_hidden"], "zeros"
        )

    @property
    def scale(self) -> float:
        return float(self.options.get("init_scale", 1.0))

    def template_leaves(self, layer: Layer, note: str = "new layer: template init") -> None:
        for _, path, shape, _ in layer.leaves.values():
            self.leaf_plans[path] = LeafPlan(path, None, -1, shape, None, "template", note=note)


def _plan_norm(b: _Builder, layer: Layer, old_layer: Layer | None, stream: Stream, k: int):
    """A norm layer: its features follow the units flowing through it."""
    if k != 1:
        raise PlanError(
            f"norm layer {layer.path!r} has {layer.n_in} features but {len(stream.new_ids)}"
            " units flow into it."
        )
    if old_layer is None:
        b.template_leaves(layer)
        b.warnings.append(
            f"{layer.path}: an inserted norm layer starts at its template init and is not an "
            "identity, so the new network is not exact."
        )
        return stream
    old_in = b.unit_ids.old_in[old_layer.path]
    src = ids.index_of(stream.new_ids, old_in)
    idx = src.copy()
    old_pos = {u: q for q, u in enumerate(old_in)}
    for p in np.flatnonzero(src < 0):
        f = stream.fill[p]
        if isinstance(f, tuple) and f[1] in old_pos:
            idx[p] = old_pos[f[1]]
    note = "features: " + summary(src, len(old_in), "template")
    leaves_from_old(
        b.leaf_plans,
        layer,
        old_layer,
        {"features": AxisMap(0, idx, src)},
        None,
        note,
        b.allow_dtype_change,
    )
    return stream


def _new_out_ids(b: _Builder, layer: Layer, matched: bool, stream: Stream, k: int) -> tuple:
    """The IDs of a new layer's outputs: named, the outputs', by position, or passed through."""
    if layer.path in b.unit_ids.new_out:
        return b.unit_ids.new_out[layer.path]
    if layer is b.new_last:
        return b.unit_ids.outputs[1]
    if matched:
        return ids.positions(layer.n_out)
    if k == 1 and layer.kind != "embed":
        return tuple(stream.new_ids[: layer.n_out]) + tuple(
            ids.FreshId(layer.path, j) for j in range(len(stream.new_ids), layer.n_out)
        )
    return tuple(ids.FreshId(layer.path, j) for j in range(layer.n_out))


def _inserted_source(b: _Builder, layer: Layer, pairs: list) -> str:
    """How an inserted layer starts ("template", "identity", "identity_corner"), with warnings."""
    source = "template"
    if layer.path not in b.explicit_new and b.options["new_layers"] != "template":
        source = b.options["new_layers"]
    if source != "template" and (layer.kind == "embed" or not pairs):
        b.warnings.append(
            f"{layer.path}: no unit passes through this new layer, so it keeps the "
            "template init instead of an identity."
        )
        return "template"
    if source != "template" and layer.n_in != layer.n_out:
        b.warnings.append(
            f"{layer.path}: identity init of a {layer.n_in} -> {layer.n_out} layer "
            "is not an exact identity."
        )
    if source == "identity_corner":
        b.warnings.append(
            f"{layer.path}: the corner Dirac kernel shifts feature maps by a pixel; "
            "it is offered for comparison with the original work only."
        )
    return source


def _plan_inserted(b: _Builder, layer: Layer, stream: Stream, k: int) -> Stream:
    """A layer with no old counterpart: identity (or Dirac) on the units it passes, or template."""
    out_new = _new_out_ids(b, layer, False, stream, k)
    out_pos = {u: q for q, u in enumerate(out_new)}
    pairs = [(p, out_pos[u]) for p, u in enumerate(stream.new_ids) if k == 1 and u in out_pos]
    source = _inserted_source(b, layer, pairs)
    if source == "template":
        b.template_leaves(layer)
    for name, (_, path, shape, _) in layer.leaves.items():
        if source != "template" and name == "kernel":
            index = init.identity_index(layer.path, shape, pairs, source == "identity_corner")
            b.leaf_plans[path] = LeafPlan(
                path, None, -1, shape, None, "identity", identity=index, note=f"new layer: {source}"
            )
        elif source != "template":
            b.leaf_plans[path] = LeafPlan(
                path, None, -1, shape, None, "identity", identity=(), note="new layer: zeros"
            )
    where = {u: p for p, u in enumerate(stream.new_ids)} if k == 1 else {}
    fill = [stream.fill[where[u]] if u in where else b.hidden_fill for u in out_new]
    share = None
    if stream.share is not None and k == 1:
        share = np.asarray([stream.share[where[u]] if u in where else 1.0 for u in out_new])
    return Stream(out_new, fill, share)


@dataclass
class _OutAxis:
    """The output axis of a matched layer being planned."""

    src: np.ndarray
    idx: np.ndarray
    zero: np.ndarray
    mean: np.ndarray
    noise: np.ndarray
    offset: np.ndarray
    fill: list
    share: np.ndarray | None = None
    scaled: np.ndarray | None = None

    @classmethod
    def copies(cls, src: np.ndarray) -> _OutAxis:
        n = len(src)
        return cls(
            src,
            src.copy(),
            np.zeros(n, bool),
            np.zeros(n, bool),
            np.zeros(n, bool),
            np.zeros(n, np.float64),
            [None] * n,
        )

    def axis_map(self) -> AxisMap:
        return AxisMap(
            -1,
            self.idx,
            self.src,
            zero=self.zero if self.zero.any() else None,
            mean=self.mean if self.mean.any() else None,
            noise=self.noise if self.noise.any() else None,
            scaled=self.scaled,
        )


def _net2net(b: _Builder, layer: Layer, out: _OutAxis, out_old: tuple) -> None:
    """New hidden units replicate copied ones; fan-out shares are recorded for the next layer."""
    new_pos = np.flatnonzero(out.src < 0)
    copied = np.flatnonzero(out.src >= 0)
    if len(copied) == 0:
        b.warnings.append(f"{layer.path}: no unit to replicate; new units get zero fan-out.")
        out.fill = ["zeros" if s < 0 else None for s in out.src]
        return
    reps = init.replicas(copied, len(new_pos))
    out.idx[new_pos] = out.src[reps]
    out.noise[new_pos] = b.net2net_noise > 0
    for p, r in zip(new_pos, reps, strict=True):
        out.fill[p] = ("replica", out_old[out.src[r]])
    counts = np.bincount(out.idx[out.idx >= 0], minlength=len(out_old))
    share = np.where(out.idx >= 0, 1.0 / np.maximum(counts[np.maximum(out.idx, 0)], 1), 1.0)
    out.share = None if np.all(share == 1.0) else share


def _plan_out_axis(b: _Builder, layer: Layer, out_new: tuple, out_old: tuple):
    """The output axis of a matched layer and how its new units start (for the report)."""
    out = _OutAxis.copies(ids.index_of(out_new, out_old))
    if layer is b.new_last:
        how = output_inits(
            out_new,
            out_old,
            out.src,
            b.options["new_outputs"],
            out.idx,
            out.zero,
            out.mean,
            out.offset,
            b.pessimism,
            b.warnings,
            layer.path,
        )
    elif b.options["new_hidden"] == "net2net" and (out.src < 0).any():
        _net2net(b, layer, out, out_old)
        how = "net2net"
    else:
        out.fill = [b.hidden_fill if s < 0 else None for s in out.src]
        how = "template in" + (", zero out" if b.hidden_fill == "zeros" else "")
        if b.hidden_fill == "scaled":
            out.scaled = out.src < 0 if (out.src < 0).any() else None
            how = f"small random: template x {b.scale:g} in and out"
    return out, how


def _plan_matched(b: _Builder, layer: Layer, old_layer: Layer, stream: Stream, k: int) -> Stream:
    """A Dense / Conv / Embed layer with an old counterpart: rows follow the stream, columns the
    layer's output IDs."""
    old_in = b.unit_ids.old_in[old_layer.path]
    k_old = 1 if layer.kind == "embed" else flat_factor(old_layer, len(old_in), "old")
    if k_old != k:
        raise PlanError(
            f"layer {layer.path!r}: the flatten boundary changed its spatial size from "
            f"{k_old} (old {old_layer.path!r}: {old_layer.n_in} rows / {len(old_in)} channels) "
            f"to {k} ({layer.n_in} rows / {len(stream.new_ids)} channels); keep the feature map "
            "size or give this layer layers={...: None}."
        )
    in_map, in_src = in_axis(stream, old_in, k, -2 if layer.kind != "embed" else 0)
    if layer.kind == "embed":
        in_map = AxisMap(0, in_map.idx, in_map.src, zero=in_map.zero)
    out_new = _new_out_ids(b, layer, True, stream, k)
    out_old = b.unit_ids.old_out[old_layer.path]
    out, how_new = _plan_out_axis(b, layer, out_new, out_old)
    if any(isinstance(f, tuple) for f in stream.fill):
        how_in = "net2net, fan-out shared"
    elif in_map.scaled is not None:
        how_in = f"template x {b.scale:g}"
    else:
        how_in = "zeros" if in_map.zero is not None else "template"
    note = (
        f"in: {summary(in_src, len(old_in), how_in)}"
        + (f" (x{k} flattened)" if k > 1 else "")
        + f"; out: {summary(out.src, len(out_old), how_new)}"
    )
    leaves_from_old(
        b.leaf_plans,
        layer,
        old_layer,
        {"in": in_map, "out": out.axis_map()},
        out.offset if out.offset.any() else None,
        note,
        b.allow_dtype_change,
        b.scale,
    )
    return Stream(out_new, out.fill, out.share)


def _plan_layers(b: _Builder, old_layers, new_layers, layer_map) -> None:
    old_by = {layer.path: layer for layer in old_layers}
    i_new = b.unit_ids.inputs[1]
    zeros = b.options["new_inputs"] == "zeros"
    stream = Stream(i_new, ["zeros" if zeros else "template"] * len(i_new))
    for layer in new_layers:
        opath = layer_map[layer.path]
        old_layer = old_by[opath] if opath is not None else None
        k = flat_factor(layer, len(stream.new_ids), "new_template")
        if layer.kind == "norm":
            stream = _plan_norm(b, layer, old_layer, stream, k)
        elif old_layer is None:
            stream = _plan_inserted(b, layer, stream, k)
        else:
            stream = _plan_matched(b, layer, old_layer, stream, k)


def _check_dropped(old_flat, old_layers, layer_map, plan_leaves, warnings) -> None:
    """Refuses an old leaf of a matched layer that no new leaf reads; lists unmatched layers."""
    used = {lp.old_path for lp in plan_leaves}
    for path in old_flat.leaves:
        if path not in used:
            _, layer, _ = old_flat.split(path)
            if (trees.path_str(layer) or ROOT) in layer_map.values():
                raise PlanError(
                    f"old leaf {trees.path_str(path)!r} has no counterpart in the new template; "
                    "its layer was matched but the leaf would be dropped silently."
                )
    mapped = [v for v in layer_map.values() if v is not None]
    dropped = [lay.path for lay in old_layers if lay.path not in mapped]
    if dropped:
        warnings.append(f"old layers not carried over: {dropped}.")


def build(
    old,
    new_template,
    *,
    inputs,
    outputs,
    layers,
    hidden,
    order,
    options: Mapping,
    pessimism: float,
    net2net_noise: float,
    allow_dtype_change: bool,
) -> dict:
    """The fields of a `Plan` for two chains of layers (see `jsurgery.make_plan`)."""
    if isinstance(inputs, Mapping) or isinstance(outputs, Mapping):
        raise PlanError(
            "`inputs`/`outputs` as {index: pair} name one of several inputs or outputs of a "
            f"function; {TRACE_HINT}."
        )
    old_flat = trees.flatten(old, "old")
    new_flat = trees.flatten(new_template, "new_template")
    sizes = _id_counts(inputs, outputs)
    old_layers = chain_layers(old_flat, "old", order, sizes[0], sizes[2])
    new_layers = chain_layers(new_flat, "new_template", order, sizes[1], sizes[3])
    layer_map, how = match_layers(old_layers, new_layers, layers)
    found = unit_ids(old_layers, new_layers, layer_map, inputs, outputs, hidden)
    explicit_new = {trees.path_str(k) for k, v in (layers or {}).items() if v is None}
    b = _Builder(
        options,
        pessimism,
        net2net_noise,
        allow_dtype_change,
        explicit_new,
        _last(new_layers),
        found,
    )
    _plan_layers(b, old_layers, new_layers, layer_map)
    plan_leaves = tuple(b.leaf_plans[p] for p in new_flat.leaves)
    _check_dropped(old_flat, old_layers, layer_map, plan_leaves, b.warnings)
    return dict(
        leaves=plan_leaves,
        old_leaves=tuple((p, *trees.shape_dtype(v)) for p, v in old_flat.leaves.items()),
        new_leaves=tuple((p, *trees.shape_dtype(v)) for p, v in new_flat.leaves.items()),
        old_kind=old_flat.kind,
        new_kind=new_flat.kind,
        inputs=found.inputs,
        outputs=found.outputs,
        layer_map=layer_map,
        matching=how,
        warnings=tuple(b.warnings),
    )
