"""`make_plan`: unit IDs + matched layers + init choices -> a `Plan` of index arrays (NumPy)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
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


@dataclass(frozen=True, eq=False)
class Plan:
    """A static surgery plan; hashable by identity, so `transplant` compiles once per plan.

    `print(plan)` gives the leaf-by-leaf report.

    Attributes:
        leaves: one `LeafPlan` per leaf of the new tree, in forward order.
        old_leaves: `(path, shape, dtype)` of each old leaf.
        inputs: `(old_ids, new_ids)` of the input features.
        outputs: `(old_ids, new_ids)` of the output units.
        layer_map: `{new layer: old layer or None}`.
        warnings: things the user should know before training.
        input_specs: per input of a traced plan, `(axis, old_ids, new_ids)` (axis "values" for
            token inputs), or None for an input without units.
        output_specs: per output of a traced plan, `(axis, old_ids, new_ids)` (the axis its
            units lie on) or None for an output without units.
    """

    leaves: tuple[LeafPlan, ...]
    old_leaves: tuple
    new_leaves: tuple
    old_kind: str
    new_kind: str
    inputs: tuple
    outputs: tuple
    layer_map: dict
    matching: str
    options: dict
    noise: float
    seed: int
    warnings: tuple[str, ...] = field(default=())
    input_specs: tuple = field(default=())
    output_specs: tuple = field(default=())

    def __str__(self) -> str:
        from jsurgery.report import render

        return render(self)

    def embed_inputs(self, *x_old):
        """Places old inputs in the new input space: old features at their new positions (on
        each input's unit axis; token IDs renumbered), zeros for new features. With several
        inputs, pass them all and get a tuple back."""
        specs = self.input_specs or ((-1, *self.inputs),)
        if len(x_old) != len(specs):
            raise PlanError(f"`embed_inputs`: expected {len(specs)} inputs, got {len(x_old)}.")
        out = tuple(_embed(x, spec) for x, spec in zip(x_old, specs, strict=True))
        return out[0] if len(out) == 1 else out


def _embed(x_old, spec):
    import jax.numpy as jnp

    x_old = jnp.asarray(x_old)
    if spec is None:
        return x_old
    axis, old_ids, new_ids = spec
    if axis == "values":
        where = ids.index_of(old_ids, new_ids)
        return jnp.asarray(where)[x_old]
    src = ids.index_of(new_ids, old_ids)
    x = jnp.take(x_old, np.where(src >= 0, src, 0), axis=axis)
    shape = [-1 if a == axis % x.ndim else 1 for a in range(x.ndim)]
    return jnp.where(np.reshape(src >= 0, shape), x, jnp.zeros((), x.dtype))


def _layers(flat: trees.FlatTree, arg: str, order: Sequence | None, n_inputs: int | None,
            n_outputs: int | None) -> list[Layer]:
    groups: dict[str, dict] = {}
    for i, (path, leaf) in enumerate(flat.leaves.items()):
        _, layer, name = flat.split(path)
        lname = trees.path_str(layer) or ROOT
        if name in groups.setdefault(lname, {}):
            raise PlanError(f"`{arg}`: layer {lname!r} has two leaves named {name!r}.")
        groups[lname][name] = (i, path, *trees.shape_dtype(leaf))
    if order is not None:
        wanted = ["/".join(map(str, p)) if not isinstance(p, str) else p for p in order]
        groups = {k: groups[k] for k in wanted if k in groups} | groups
    out = []
    for lname, leaves in groups.items():
        shapes = {n: v[2] for n, v in leaves.items()}
        kind = axes.layer_kind(lname, shapes)
        n_in, n_out = axes.in_out_sizes(kind, shapes)
        out.append(Layer(lname, kind, leaves, n_in, n_out))
    if order is None:
        out = forward_order(out, flat.creation_order, n_inputs, n_outputs)
    _check_chain(out, arg)
    return out


_TRACE_HINT = "pass apply= and example= so the planner traces the network's real graph"


def _check_chain(layers: list[Layer], arg: str) -> None:
    """Refuses what the params-only path cannot verify as one chain: layers of more than one
    sub-module before the last (separate or shared torsos with heads), and a width change between
    consecutive layers other than a Conv -> Dense flatten."""
    compute = [layer for layer in layers if layer.kind != "norm"]
    parents = {layer.path.rpartition("/")[0] for layer in compute[:-1]}
    if len(parents) > 1:
        raise PlanError(
            f"`{arg}`: its layers sit in several sub-modules {sorted(parents)}; from the "
            f"parameters alone they could be branches (an actor and a critic, heads on a "
            f"torso), which the params-only path cannot tell from a chain; {_TRACE_HINT}."
        )
    for prev, layer in zip(compute, compute[1:], strict=False):
        if layer.n_in != prev.n_out and not (prev.kind == "conv" and layer.kind == "dense"):
            raise PlanError(
                f"`{arg}`: layer {layer.path!r} takes {layer.n_in} inputs but {prev.path!r} "
                f"gives {prev.n_out}; only a Conv -> Dense flatten may change the width between "
                f"layers on the params-only path; {_TRACE_HINT}."
            )

def _flat_factor(layer: Layer, width: int, arg: str) -> int:
    if width == 0 or layer.n_in % width:
        raise PlanError(
            f"layer {layer.path!r} in `{arg}`: takes {layer.n_in} inputs, which is not a multiple "
            f"of the {width} units flowing into it; the layers do not form a chain this plan can "
            "follow (check `inputs`, `order` or `layers`)."
        )
    return layer.n_in // width

def make_plan(
    old,
    new_template,
    *,
    apply=None,
    example=None,
    inputs: tuple[Sequence[Hashable], Sequence[Hashable]] | Mapping | None = None,
    outputs: tuple[Sequence[Hashable], Sequence[Hashable]] | Mapping | None = None,
    layers: Mapping | None = None,
    hidden: Mapping | None = None,
    new_inputs: str = "template",
    new_hidden: str = "template",
    new_layers: str = "identity",
    new_outputs: str | Mapping = "template",
    pessimism: float = 1.0,
    net2net_noise: float = 0.0,
    seed: int = 0,
    order: Sequence | None = None,
    allow_dtype_change: bool = False,
) -> Plan:
    """Plans moving the weights of `old` into a network shaped like `new_template`.

    Only shapes and dtypes are read, so either tree may hold `jax.ShapeDtypeStruct` leaves.
    Layers are chained in forward order (creation order, numbered names in numeric order, or
    `order`); units flow from each layer's outputs into the next layer's inputs, through norm
    layers and through a Conv -> flatten -> Dense boundary (Dense rows `(h, w, channel)`).

    Args:
        old: the trained tree (linen variables, params dict, nnx.State or nnx.Module).
        new_template: a freshly initialised tree of the new architecture.
        inputs: `(old_ids, new_ids)` of the input features (channels for a CNN); by position
            when None.
        outputs: `(old_ids, new_ids)` of the output units (actions, classes); by position when None.
        layers: `{new_layer_path: old_layer_path or None}` overriding the matching; None keeps
            the template's init for that whole layer.
        hidden: `{new_layer_path: (old_ids, new_ids)}` naming the output units of hidden layers;
            hidden units are matched by position otherwise.
        new_inputs: "template" or "zeros" (see `jsurgery.init`).
        new_hidden: "template", "zero_fanout" or "net2net".
        new_layers: "identity", "identity_corner" or "template" for inserted layers.
        new_outputs: "template", "zeros", "mean", "pessimistic", or `{new_id: old_id or option}`.
        pessimism: how far below the old outputs' mean a "pessimistic" output starts.
        net2net_noise: relative noise on the incoming weights of Net2Net copies (0: exact).
        seed: seed of that noise.
        order: layer paths in forward order, for trees whose key order is not the forward order
            (an nnx.State sorts its keys); layers not listed follow in their own order.
        allow_dtype_change: cast old leaves to the template's dtype instead of raising.

    Returns:
        A `Plan`; `print(plan)` shows it leaf by leaf.

    Raises:
        PlanError: for duplicate IDs, IDs that do not match a parameter's size, layers that
            cannot be matched, a flatten boundary whose spatial size changed, unsupported leaves,
            or dtype and shape surprises.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn, jsurgery
        >>> old = nn.Dense(2).init(jax.random.key(0), jnp.ones((1, 2)))
        >>> new = nn.Dense(2).init(jax.random.key(1), jnp.ones((1, 3)))
        >>> plan = jsurgery.make_plan(old, new, inputs=(["a", "b"], ["a", "c", "b"]),
        ...                           new_inputs="zeros")
        >>> jsurgery.transplant(old, new, plan)["params"]["kernel"].shape
        (3, 2)
    """
    init.check_choice("new_inputs", new_inputs, init.NEW_INPUTS)
    init.check_choice("new_hidden", new_hidden, init.NEW_HIDDEN)
    init.check_choice("new_layers", new_layers, init.NEW_LAYERS)
    if not isinstance(new_outputs, Mapping):
        init.check_choice("new_outputs", new_outputs, init.NEW_OUTPUTS)
    options = {"new_inputs": new_inputs, "new_hidden": new_hidden, "new_layers": new_layers,
               "new_outputs": new_outputs}
    if apply is not None or example is not None:
        return _traced_plan(old, new_template, apply, example, inputs, outputs, layers, hidden,
                            options, pessimism, net2net_noise, seed, allow_dtype_change)
    if isinstance(inputs, Mapping) or isinstance(outputs, Mapping):
        raise PlanError(
            "`inputs`/`outputs` as {index: pair} name one of several inputs or outputs of a "
            "function; pass apply= and example= so the planner can trace it."
        )
    old_flat = trees.flatten(old, "old")
    new_flat = trees.flatten(new_template, "new_template")
    sizes = [None, None, None, None]
    for k, pair in ((0, inputs), (2, outputs)):
        if isinstance(pair, (tuple, list)) and len(pair) == 2:
            for j in (0, 1):
                if isinstance(pair[j], (Sequence, np.ndarray)) and not isinstance(pair[j], str):
                    sizes[k + j] = len(pair[j]) or None
    old_layers = _layers(old_flat, "old", order, sizes[0], sizes[2])
    new_layers_ = _layers(new_flat, "new_template", order, sizes[1], sizes[3])
    layer_map, how = match_layers(old_layers, new_layers_, layers)
    explicit_new = {
        (k if isinstance(k, str) else "/".join(map(str, k)))
        for k, v in (layers or {}).items()
        if v is None
    }
    old_by = {layer.path: (i, layer) for i, layer in enumerate(old_layers)}
    warnings: list[str] = []

    # Unit IDs of the old chain and of the matched outputs.
    old_out_ids: dict[str, tuple] = {}
    new_out_ids: dict[str, tuple] = {}
    old_last = [lay for lay in old_layers if lay.kind != "norm"][-1]
    new_last = [lay for lay in new_layers_ if lay.kind != "norm"][-1]
    if outputs is not None:
        o_old, o_new = ids.check_pair("outputs", outputs)
        ids.check_count("outputs[0] (old IDs)", o_old, old_last.n_out,
                        f"old layer {old_last.path!r}")
        ids.check_count("outputs[1] (new IDs)", o_new, new_last.n_out,
                        f"new layer {new_last.path!r}")
        old_out_ids[old_last.path], new_out_ids[new_last.path] = o_old, o_new
    else:
        o_old, o_new = ids.positions(old_last.n_out), ids.positions(new_last.n_out)
    for key, pair in (hidden or {}).items():
        lpath = key if isinstance(key, str) else "/".join(map(str, key))
        layer = next((lay for lay in new_layers_ if lay.path == lpath), None)
        if layer is None or layer.kind == "norm" or layer is new_last:
            hidden_layers = [lay.path for lay in new_layers_
                             if lay.kind != "norm" and lay is not new_last]
            raise PlanError(
                f"`hidden`: {lpath!r} is not a hidden layer of the new template; hidden layers: "
                f"{hidden_layers}."
            )
        h_old, h_new = ids.check_pair(f"hidden[{lpath!r}]", pair)
        ids.check_count(f"hidden[{lpath!r}][1] (new IDs)", h_new, layer.n_out, f"layer {lpath!r}")
        new_out_ids[lpath] = h_new
        opath = layer_map[lpath]
        if opath is not None:
            ids.check_count(
                f"hidden[{lpath!r}][0] (old IDs)", h_old, old_by[opath][1].n_out, f"old {opath!r}"
            )
            old_out_ids[opath] = h_old
    if inputs is not None:
        i_old, i_new = ids.check_pair("inputs", inputs)
    else:
        i_old, i_new = ids.positions(old_layers[0].n_in), ids.positions(new_layers_[0].n_in)
    for arg, got, layer in (("inputs[0] (old IDs)", i_old, old_layers[0]),
                            ("inputs[1] (new IDs)", i_new, new_layers_[0])):
        if not got or layer.n_in % len(got):
            ids.check_count(arg, got, layer.n_in, f"the inputs of layer {layer.path!r}")
    old_in_ids: dict[str, tuple] = {}
    stream_ids = i_old
    for layer in old_layers:
        old_in_ids[layer.path] = stream_ids
        if layer.kind != "norm":
            stream_ids = old_out_ids.setdefault(layer.path, ids.positions(layer.n_out))
        else:
            _flat_factor(layer, len(stream_ids), "old")
            old_out_ids[layer.path] = stream_ids

    leaf_plans: dict[tuple, LeafPlan] = {}
    stream = Stream(i_new, ["zeros" if new_inputs == "zeros" else "template"] * len(i_new))
    hidden_fill = "template" if new_hidden == "template" else "zeros"
    for layer in new_layers_:
        opath = layer_map[layer.path]
        old_layer = old_by[opath][1] if opath is not None else None
        k = _flat_factor(layer, len(stream.new_ids), "new_template")
        if layer.kind == "norm":
            if k != 1:
                raise PlanError(
                    f"norm layer {layer.path!r} has {layer.n_in} features but {len(stream.new_ids)}"
                    " units flow into it."
                )
            if old_layer is None:
                for _, path, shape, _ in layer.leaves.values():
                    leaf_plans[path] = LeafPlan(path, None, -1, shape, None, "template",
                                                note="new layer: template init")
                continue
            old_in = old_in_ids[opath]
            src = ids.index_of(stream.new_ids, old_in)
            idx = src.copy()
            old_pos = {u: q for q, u in enumerate(old_in)}
            for p in np.flatnonzero(src < 0):
                f = stream.fill[p]
                if isinstance(f, tuple) and f[1] in old_pos:
                    idx[p] = old_pos[f[1]]
            amap = AxisMap(0, idx, src)
            note = "features: " + summary(src, len(old_in), "template")
            leaves_from_old(leaf_plans, layer, old_layer, {"features": amap}, None, note,
                             allow_dtype_change)
            continue

        is_last = layer is new_last
        if layer.path in new_out_ids:
            out_new = new_out_ids[layer.path]
        elif is_last:
            out_new = o_new
        elif old_layer is not None:
            out_new = ids.positions(layer.n_out)
        elif k == 1 and layer.kind != "embed":
            out_new = tuple(stream.new_ids[: layer.n_out]) + tuple(
                ids.FreshId(layer.path, j) for j in range(len(stream.new_ids), layer.n_out)
            )
        else:
            out_new = tuple(ids.FreshId(layer.path, j) for j in range(layer.n_out))

        if old_layer is None:
            source = "template"
            if layer.path not in explicit_new and new_layers != "template":
                source = new_layers
            out_pos = {u: q for q, u in enumerate(out_new)}
            pairs = [(p, out_pos[u]) for p, u in enumerate(stream.new_ids)
                     if k == 1 and u in out_pos]
            if source != "template" and (layer.kind == "embed" or not pairs):
                warnings.append(
                    f"{layer.path}: no unit passes through this new layer, so it keeps the "
                    "template init instead of an identity."
                )
                source = "template"
            if source != "template" and layer.n_in != layer.n_out:
                warnings.append(
                    f"{layer.path}: identity init of a {layer.n_in} -> {layer.n_out} layer is not "
                    "an exact identity."
                )
            if source == "identity_corner":
                warnings.append(
                    f"{layer.path}: the corner Dirac kernel shifts feature maps by a pixel; it is "
                    "offered for comparison with the original work only."
                )
            for name, (_, path, shape, _) in layer.leaves.items():
                if source != "template" and name == "kernel":
                    index = init.identity_index(layer.path, shape, pairs,
                                                source == "identity_corner")
                    leaf_plans[path] = LeafPlan(path, None, -1, shape, None, "identity",
                                                identity=index, note=f"new layer: {source}")
                elif source != "template":
                    leaf_plans[path] = LeafPlan(path, None, -1, shape, None, "identity",
                                                identity=(), note="new layer: zeros")
                else:
                    leaf_plans[path] = LeafPlan(path, None, -1, shape, None, "template",
                                                note="new layer: template init")
            where = {u: p for p, u in enumerate(stream.new_ids)} if k == 1 else {}
            fill = [stream.fill[where[u]] if u in where else hidden_fill for u in out_new]
            share = None
            if stream.share is not None and k == 1:
                share = np.asarray([stream.share[where[u]] if u in where else 1.0
                                    for u in out_new])
            stream = Stream(out_new, fill, share)
            continue

        # A matched Dense / Conv / Embed layer.
        old_in = old_in_ids[opath]
        if layer.kind == "embed":
            k_old = 1
        else:
            k_old = _flat_factor(old_layer, len(old_in), "old")
        if k_old != k:
            raise PlanError(
                f"layer {layer.path!r}: the flatten boundary changed its spatial size from "
                f"{k_old} (old {opath!r}: {old_layer.n_in} rows / {len(old_in)} channels) to {k} "
                f"({layer.n_in} rows / {len(stream.new_ids)} channels); keep the feature map size "
                "or give this layer layers={...: None}."
            )
        in_map, in_src = in_axis(stream, old_in, k, -2 if layer.kind != "embed" else 0)
        if layer.kind == "embed":
            in_map = AxisMap(0, in_map.idx, in_map.src, zero=in_map.zero)
        out_old = old_out_ids[opath]
        src = ids.index_of(out_new, out_old)
        idx = src.copy()
        new_pos = np.flatnonzero(src < 0)
        zero = np.zeros(len(src), bool)
        mean = np.zeros(len(src), bool)
        noise = np.zeros(len(src), bool)
        offset = np.zeros(len(src), np.float64)
        fill: list = [None] * len(src)
        share = None
        if is_last:
            how_new = output_inits(out_new, out_old, src, new_outputs, idx, zero, mean, offset,
                                    pessimism, warnings, layer.path)
        elif new_hidden == "net2net" and len(new_pos):
            copied = np.flatnonzero(src >= 0)
            if len(copied) == 0:
                warnings.append(f"{layer.path}: no unit to replicate; new units get zero fan-out.")
                fill = ["zeros" if s < 0 else None for s in src]
            else:
                reps = init.replicas(copied, len(new_pos))
                idx[new_pos] = src[reps]
                noise[new_pos] = net2net_noise > 0
                for p, r in zip(new_pos, reps, strict=True):
                    fill[p] = ("replica", out_old[src[r]])
                counts = np.bincount(idx[idx >= 0], minlength=len(out_old))
                share = np.where(idx >= 0, 1.0 / np.maximum(counts[np.maximum(idx, 0)], 1), 1.0)
                share = None if np.all(share == 1.0) else share
            how_new = "net2net"
        else:
            fill = [hidden_fill if s < 0 else None for s in src]
            how_new = "template in" + (", zero out" if hidden_fill == "zeros" else "")
        out_map = AxisMap(
            -1, idx, src,
            zero=zero if zero.any() else None,
            mean=mean if mean.any() else None,
            noise=noise if noise.any() else None,
        )
        if any(isinstance(f, tuple) for f in stream.fill):
            how_in = "net2net, fan-out shared"
        else:
            how_in = "zeros" if in_map.zero is not None else "template"
        note = (f"in: {summary(in_src, len(old_in), how_in)}"
                + (f" (x{k} flattened)" if k > 1 else "")
                + f"; out: {summary(src, len(out_old), how_new)}")
        roles = {"in": in_map, "out": out_map}
        leaves_from_old(leaf_plans, layer, old_layer, roles,
                         offset if offset.any() else None, note, allow_dtype_change)
        stream = Stream(out_new, fill, share)

    plan_leaves = tuple(leaf_plans[p] for p in new_flat.leaves)
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
    return Plan(
        leaves=plan_leaves,
        old_leaves=tuple((p, *trees.shape_dtype(v)) for p, v in old_flat.leaves.items()),
        new_leaves=tuple((p, *trees.shape_dtype(v)) for p, v in new_flat.leaves.items()),
        old_kind=old_flat.kind,
        new_kind=new_flat.kind,
        inputs=(i_old, i_new),
        outputs=(o_old, o_new),
        layer_map=layer_map,
        matching=how,
        options={
            "new_inputs": new_inputs, "new_hidden": new_hidden, "new_layers": new_layers,
            "new_outputs": new_outputs,
        },
        noise=float(net2net_noise),
        seed=int(seed),
        warnings=tuple(warnings),
    )


def _traced_plan(old, new_template, apply, example, inputs, outputs, layers, hidden, options,
                 pessimism, net2net_noise, seed, allow_dtype_change) -> Plan:
    from jsurgery import graph_plan

    if example is None:
        raise PlanError("`example`: a traced plan needs example inputs ((x_old,), (x_new,)).")
    fields = graph_plan.build(
        old, new_template, apply=apply, example=example, inputs=inputs, outputs=outputs,
        layers=layers, hidden=hidden, allow_dtype_change=allow_dtype_change,
        options=dict(options, pessimism=pessimism, net2net_noise=net2net_noise),
    )
    return Plan(options=options, noise=float(net2net_noise), seed=int(seed), **fields)
