"""Tracer rules for primitives that move, cut or join axes: reshape, squeeze, broadcast,
transpose, concatenate, split, slice, pad, dynamic slice, windowed reductions and gathers.

Each rule takes the walker, the equation and its source for messages. Axes that keep their units
keep their nodes; a reshape groups axes into products, a concatenation or slice makes segments,
and what no rule can follow is opaque.
"""

from __future__ import annotations

from collections.abc import Callable

from jax.extend import core as jcore

from jsurgery.graph.unit_graph import READ
from jsurgery.trace.registry import register
from jsurgery.trace.walker import Walker, shape


@register("reshape")
def reshape(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Groups the operand's axes and the result's into runs of equal products: one axis to
    one is a tie, several to one a product (a flatten), one to several a split product (heads);
    a reshape with `dimensions` (a transposing reshape) is opaque."""
    (v,) = eqn.invars[:1]
    (out,) = eqn.outvars
    a, b = shape(v), shape(out)
    if eqn.params.get("dimensions") is not None:
        w.opaque(eqn, where)
        return
    ins = w.of(v)
    nodes = w.fresh(out)
    n = min(len(a), len(b))
    if a[len(a) - n :] == b[len(b) - n :] and all(
        d == 1 for d in a[: len(a) - n] + b[: len(b) - n]
    ):
        _expand_or_squeeze(w, v, out, ins, nodes, n, where)
        return
    w.carry_values(out, v)
    ai = [k for k in range(len(a)) if a[k] != 1]
    bi = [k for k in range(len(b)) if b[k] != 1]
    source: list = [[] for _ in b]
    i = j = 0
    while i < len(ai) and j < len(bi):
        gi, gj = [ai[i]], [bi[j]]
        pa, pb = a[ai[i]], b[bi[j]]
        i, j = i + 1, j + 1
        while pa != pb:
            if pa < pb:
                gi.append(ai[i])
                pa, i = pa * a[ai[i]], i + 1
            else:
                gj.append(bi[j])
                pb, j = pb * b[bi[j]], j + 1
        _group(w, [ins[k] for k in gi], [nodes[k] for k in gj], where, eqn)
        if len(gj) == 1:
            source[gj[0]] = gi
    w.view(out, v, source)


def _expand_or_squeeze(w: Walker, v, out, ins: list, nodes: list, n: int, where: str) -> None:
    """A reshape that only adds or drops leading axes of size 1: the trailing axes keep their
    units (a bias of one unit reshaped to (1, 1) still holds that unit)."""
    da, db = len(ins) - n, len(nodes) - n
    for k in range(n):
        w.g.tie(ins[da + k], nodes[db + k], where)
    w.view(out, v, [[]] * db + [[da + k] for k in range(n)])
    w.carry_values(out, v)
    if v in w.iotas and w.iotas[v] >= da:
        w.iotas[out] = w.iotas[v] - da + db


def _group(w: Walker, ins: list, outs: list, where: str, eqn: jcore.JaxprEqn) -> None:
    """Ties, defines a product or a split, or marks opaque one group of a reshape."""
    if len(ins) == 1 and len(outs) == 1:
        w.g.tie(ins[0], outs[0], where)
    elif len(outs) == 1:
        w.g.define(outs[0], "product", ins, where)
    elif len(ins) == 1:
        w.g.define(ins[0], "product", outs, where)
        w.g.split.update(outs)
    else:
        for n in ins + outs:
            w.g.mark_opaque(n, eqn.primitive.name, where)


@register("squeeze")
def squeeze(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Drops axes of size 1; the others keep their nodes."""
    (v,), (out,) = eqn.invars, eqn.outvars
    dims = {d % len(shape(v)) for d in eqn.params["dimensions"]}
    keep = [a for a in range(len(shape(v))) if a not in dims]
    w.nodes[out] = [w.of(v)[a] for a in keep]
    w.view(out, v, [[a] for a in keep])
    w.carry_values(out, v)


@register("broadcast_in_dim")
def broadcast_in_dim(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """The operand's axes keep their nodes where the sizes agree; broadcast axes are new."""
    v, out = eqn.invars[0], eqn.outvars[0]
    out_shape, dims = shape(out), eqn.params["broadcast_dimensions"]
    nodes = w.fresh(out)
    source: list = [[] for _ in out_shape]
    for a, d in enumerate(dims):
        if shape(v)[a] == out_shape[d]:
            nodes[d] = w.of(v)[a]
            source[d] = [a]
    w.view(out, v, source)
    w.carry_values(out, v)
    if not isinstance(v, jcore.Literal) and v in w.iotas and source[dims[w.iotas[v]]]:
        w.iotas[out] = dims[w.iotas[v]]


@register("transpose")
def transpose(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Permutes the nodes."""
    (v,), (out,) = eqn.invars, eqn.outvars
    perm = eqn.params["permutation"]
    w.nodes[out] = [w.of(v)[p] for p in perm]
    w.view(out, v, [[p] for p in perm])
    w.carry_values(out, v)


@register("concatenate")
def concatenate(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Ties the other axes; the joined axis is a `concat` of the operands' axes."""
    d = eqn.params["dimension"]
    out = w.fresh(eqn.outvars[0])
    for v in eqn.invars:
        w.view(eqn.outvars[0], v, [[a] for a in range(len(out))])
        for a, n in enumerate(w.of(v)):
            if a != d:
                w.g.tie(n, out[a], where)
    w.g.define(out[d], "concat", [w.of(v)[d] for v in eqn.invars], where)
    carried = {w.values.get(v) for v in eqn.invars if not isinstance(v, jcore.Literal)}
    if len(carried) == 1 and None not in carried:
        w.carry_values(eqn.outvars[0], eqn.invars[0])


@register("split")
def split(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """The split axis is a `concat` of the results' axes; the others keep their nodes."""
    (v,) = eqn.invars
    d = eqn.params["axis"]
    parts = []
    for out in eqn.outvars:
        nodes = [n if a != d else w.g.node(shape(out)[a]) for a, n in enumerate(w.of(v))]
        w.nodes[out] = nodes
        parts.append(nodes[d])
    w.g.define(w.of(v)[d], "concat", parts, where)


@register("slice")
def slice_(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """A cut axis is a `concat` of the kept piece and the cut-off ends; a strided cut is
    opaque."""
    (v,), (out,) = eqn.invars, eqn.outvars
    p = eqn.params
    strides = p["strides"] or (1,) * len(shape(v))
    nodes = []
    for a, n in enumerate(w.of(v)):
        size, lo, hi = shape(v)[a], p["start_indices"][a], p["limit_indices"][a]
        if lo == 0 and hi == size and strides[a] == 1:
            nodes.append(n)
            continue
        piece = w.g.node(shape(out)[a])
        nodes.append(piece)
        if strides[a] != 1:
            w.g.mark_opaque(n, "slice with a stride", where)
            w.g.mark_opaque(piece, "slice with a stride", where)
            continue
        parts = (
            ([w.g.node(lo)] if lo else []) + [piece] + ([w.g.node(size - hi)] if hi < size else [])
        )
        w.g.define(n, "concat", parts, where)
    w.nodes[out] = nodes
    w.carry_values(out, v)


def _same_or_opaque(w: Walker, eqn: jcore.JaxprEqn, where: str, full: Callable) -> None:
    """Axes that keep their full size keep their nodes; the others are opaque."""
    v, out = eqn.invars[0], eqn.outvars[0]
    nodes = w.fresh(out)
    for a, n in enumerate(w.of(v)):
        if full(a):
            w.g.tie(n, nodes[a], where)
        else:
            w.g.mark_opaque(n, eqn.primitive.name, where)
            w.g.mark_opaque(nodes[a], eqn.primitive.name, where)


@register("pad")
def pad(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Axes without padding keep their nodes; padded ones are opaque. Token IDs padded with a
    constant (lm1b's `shift_right`) stay token IDs, the constant recorded among the input's
    values (`Graph.value_constants`: it must name the same token on both sides)."""
    cfg = [tuple(c) for c in eqn.params["padding_config"]]
    (v, fill), (out,) = eqn.invars, eqn.outvars
    value = w.constant(fill)
    if value is None or isinstance(v, jcore.Literal) or v not in w.values:
        _same_or_opaque(w, eqn, where, lambda a: cfg[a] == (0, 0, 0))
        return
    nodes = w.fresh(out)
    for a, (lo, hi, _) in enumerate(cfg):
        if cfg[a] == (0, 0, 0):
            w.g.tie(w.of(v)[a], nodes[a], where)
        elif _grows(cfg[a]):
            ends = [w.g.node(lo)] * bool(lo), [w.g.node(hi)] * bool(hi)
            w.g.define(nodes[a], "concat", [*ends[0], w.of(v)[a], *ends[1]], where)
        else:
            w.g.mark_opaque(w.of(v)[a], "pad", where)
            w.g.mark_opaque(nodes[a], "pad", where)
    w.carry_values(out, v)
    w.g.value_constants.setdefault(w.values[v], []).append((int(value), where))


def _grows(config: tuple) -> bool:
    """Whether a pad's `(low, high, interior)` only adds entries at the ends."""
    return config[0] >= 0 and config[1] >= 0 and config[2] == 0


@register("dynamic_slice")
def dynamic_slice(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Axes taken whole keep their nodes; cut ones are opaque. A cut of token IDs holds token
    IDs."""
    v = eqn.invars[0]
    sizes = eqn.params["slice_sizes"]
    _same_or_opaque(w, eqn, where, lambda a: sizes[a] == shape(v)[a])
    w.carry_values(eqn.outvars[0], v)


@register("reduce_window_max", "reduce_window_min", "reduce_window_sum", "reduce_window")
def reduce_window(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Axes with a window of 1 (stride 1, no padding) keep their nodes; windowed ones are
    opaque."""
    p = eqn.params
    padding = p.get("padding") or ((0, 0),) * len(p["window_dimensions"])

    def full(a):
        return (
            p["window_dimensions"][a] == 1
            and p["window_strides"][a] == 1
            and tuple(padding[a]) == (0, 0)
        )

    _same_or_opaque(w, eqn, where, full)


@register("gather")
def gather(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Axes taken whole keep their nodes and the indices' batch axes tie to the result's; an
    embedding lookup (a parameter's rows indexed by an integer input) ties the rows to the
    input's token space; other indexed axes are opaque."""
    operand, indices = eqn.invars
    dn = eqn.params["dimension_numbers"]
    sizes = eqn.params["slice_sizes"]
    op_nodes, idx_nodes = w.of(operand), w.of(indices)
    out = w.fresh(eqn.outvars[0])
    kept = [a for a in range(len(op_nodes)) if a not in dn.collapsed_slice_dims]
    batch_out = [a for a in range(len(out)) if a not in dn.offset_dims]
    for a, d in zip(kept, dn.offset_dims, strict=True):
        if sizes[a] == shape(operand)[a]:
            w.g.tie(op_nodes[a], out[d], where)
        else:
            w.g.mark_opaque(op_nodes[a], "gather", where)
            w.g.mark_opaque(out[d], "gather", where)
    for a, d in zip(range(len(idx_nodes) - 1), batch_out, strict=False):
        w.g.tie(idx_nodes[a], out[d], where)
    value = w.values.get(indices) if not isinstance(indices, jcore.Literal) else None
    embedding = (
        w.leaf_axes(operand) is not None
        and tuple(dn.start_index_map) == (0,)
        and tuple(dn.collapsed_slice_dims) == (0,)
        and value is not None
    )
    if embedding:
        token = w.g.input_values.setdefault(value, op_nodes[0])
        w.g.tie(token, op_nodes[0], where)
        w.set_role(operand, 0, READ)
        return
    for a in dn.start_index_map:
        w.g.mark_opaque(op_nodes[a], "gather (indexing by data)", where)
