"""The tracer front-end: an apply function and example inputs -> a unit-space `Graph`.

`jax.make_jaxpr` of the function, then a walk over the equations, primitive by primitive: each
rule says which axes of its operands and results hold the same units (ties), which are segments or
factors of another (concatenate, slice, split, reshape), and which units it mixes (reductions).
Nested jaxprs (`jit`, `custom_jvp_call`, `custom_vjp_call`, `cond`, `while`, `scan`) are walked
inside, bound to their operands. A primitive without a rule marks every axis it touches as opaque;
`jsurgery.graph_plan` refuses a plan when an opaque axis carries a parameter's units.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax.extend import core as jcore

from jsurgery.errors import PlanError
from jsurgery.graph import READ, WINDOW, WRITE, Graph

_ELEMENTWISE = frozenset("""
add sub mul div rem pow max min nextafter atan2 and or xor not neg sign floor ceil round is_finite
exp exp2 log log1p expm1 tanh logistic sin cos tan asin acos atan sinh cosh asinh acosh atanh sqrt
rsqrt cbrt square integer_pow abs erf erfc erf_inv lgamma digamma convert_element_type copy copy_p
select_n clamp eq ne lt le gt ge shift_left shift_right_logical shift_right_arithmetic
population_count imag real conj complex add_any reduce_precision igamma polygamma stop_gradient
""".split())
_VIEWS = frozenset({"convert_element_type", "copy", "copy_p", "reduce_precision"})
_ADDITIVE = frozenset({"add", "sub", "add_any"})
_REDUCTIONS = frozenset({
    "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "reduce_and", "reduce_or",
    "reduce_xor", "argmax", "argmin",
})
_CUMULATIVE = frozenset({"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"})
_SOURCES = frozenset({
    "iota", "random_seed", "random_bits", "random_split", "random_fold_in", "random_wrap",
    "random_unwrap", "threefry2x32", "rng_bit_generator", "rng_uniform",
})
_CALLS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _source(eqn) -> str:
    try:
        from jax._src import source_info_util

        return source_info_util.summarize(eqn.source_info)
    except Exception:  # noqa: BLE001 -- a missing source line must not stop a plan
        return ""


class _Walker:
    """Walks jaxprs, keeping for each variable its axis nodes, which parameter leaf it views
    (`origin`: per axis, the leaf axes it holds) and which integer input it carries (`values`)."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.nodes: dict = {}
        self.origin: dict = {}
        self.values: dict = {}
        self.step = 0
        self.context = ""  # the source line of the call a nested jaxpr came from

    # -- variables -----------------------------------------------------------------------------
    def of(self, v) -> list:
        if isinstance(v, jcore.Literal):
            return [self.g.node(d) for d in getattr(v.aval, "shape", ())]
        if v not in self.nodes:
            self.nodes[v] = [self.g.node(d) for d in v.aval.shape]
        return self.nodes[v]

    def fresh(self, v) -> list:
        self.nodes[v] = [self.g.node(d) for d in v.aval.shape]
        return self.nodes[v]

    def bind(self, inner, outer) -> None:
        """Binds an inner jaxpr variable to an outer one (same nodes, origin and values)."""
        self.nodes[inner] = self.of(outer)
        for table in (self.origin, self.values):
            if not isinstance(outer, jcore.Literal) and outer in table:
                table[inner] = table[outer]

    # -- walking -------------------------------------------------------------------------------
    def walk(self, jaxpr, invars_outer: list) -> list:
        """Walks `jaxpr` with its invars bound to `invars_outer`; returns its outvars."""
        if isinstance(jaxpr, jcore.ClosedJaxpr):
            jaxpr = jaxpr.jaxpr
        for c in jaxpr.constvars:
            self.fresh(c)
        if len(jaxpr.invars) != len(invars_outer):
            raise PlanError("internal tracing error: a nested jaxpr has a different arity.")
        for inner, outer in zip(jaxpr.invars, invars_outer, strict=True):
            self.bind(inner, outer)
        for eqn in jaxpr.eqns:
            self.equation(eqn)
        return list(jaxpr.outvars)

    def equation(self, eqn) -> None:
        self.step += 1
        for v in eqn.invars:
            for _, leaf in self.origins(v):
                if self.g.first_use[leaf] is None:
                    self.g.first_use[leaf] = self.step
        name = eqn.primitive.name
        where = f"{name} at {_source(eqn) or self.context or 'unknown source'}"
        rule = _RULES.get(name)
        if rule is None:
            if name in _ELEMENTWISE:
                rule = _elementwise
            elif name in _REDUCTIONS:
                rule = _reduction
            elif name in _CUMULATIVE:
                rule = _cumulative
            elif name in _SOURCES:
                rule = _source_op
            elif any(k in eqn.params for k in _CALLS):
                rule = _call
            else:
                rule = _opaque
        rule(self, eqn, where)

    def origins(self, v) -> list:
        """`[(per axis of v: the tuple of leaf axes it holds, leaf), ...]`: the parameter leaves
        `v` views (several for a concatenation of kernels)."""
        if isinstance(v, jcore.Literal):
            return []
        return self.origin.get(v, [])

    def leaf_axes(self, v) -> list | None:
        """Per axis of `v`, the tuple of leaf axes it holds, when `v` views one parameter."""
        found = self.origins(v)
        return found[0][0] if found else None

    def view(self, out, src, source_axes: list) -> None:
        """Records that `out` views the leaves `src` views; `source_axes[j]` lists the axes of
        `src` that axis j of `out` holds."""
        for per_axis, leaf in self.origins(src):
            mapped = [tuple(x for k in ks for x in per_axis[k]) for ks in source_axes]
            self.origin.setdefault(out, []).append((mapped, leaf))

    def set_role(self, v, axis: int, role: str) -> None:
        for per_axis, leaf in self.origins(v):
            for a in per_axis[axis]:
                if self.g.leaf_roles[leaf][a] != READ:
                    self.g.leaf_roles[leaf][a] = role


def _shape(v) -> tuple:
    return tuple(getattr(v.aval, "shape", ()))


def _elementwise(w: _Walker, eqn, where: str) -> None:
    (out,) = eqn.outvars
    shape = _shape(out)
    nodes = w.fresh(out)
    for v in eqn.invars:
        s = _shape(v)
        if len(s) != len(shape):
            continue
        for a, (d, n) in enumerate(zip(s, w.of(v), strict=True)):
            if d == shape[a]:
                w.g.tie(n, nodes[a], where)
    name = eqn.primitive.name
    for v in eqn.invars:
        if name in _VIEWS:
            w.view(out, v, [[a] for a in range(len(shape))])
        if name in _ADDITIVE:
            w.g.additive.update(leaf for _, leaf in w.origins(v))
        if not isinstance(v, jcore.Literal) and v in w.values:
            w.values[out] = w.values[v]


def _source_op(w: _Walker, eqn, where: str) -> None:
    for out in eqn.outvars:
        w.fresh(out)


def _opaque(w: _Walker, eqn, where: str) -> None:
    for v in eqn.invars:
        for n in w.of(v):
            w.g.mark_opaque(n, eqn.primitive.name, where)
    for out in eqn.outvars:
        for n in w.fresh(out):
            w.g.mark_opaque(n, eqn.primitive.name, where)


def _dot_general(w: _Walker, eqn, where: str) -> None:
    lhs, rhs = eqn.invars
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    ln, rn = w.of(lhs), w.of(rhs)
    weighted = bool(w.origins(lhs) or w.origins(rhs))
    for a, b in zip(lc, rc, strict=True):
        w.g.tie(ln[a], rn[b], where)
        w.set_role(lhs, a, READ)
        w.set_role(rhs, b, READ)
        if not weighted:
            w.g.mark_cross(ln[a], "dot_general of two activations (attention logits q.k sum "
                           "over head_dim, and their 1/sqrt(head_dim) scale moves with it)",
                           where)
    for a, b in zip(lb, rb, strict=True):
        w.g.tie(ln[a], rn[b], where)
    lfree = [a for a in range(len(ln)) if a not in lc and a not in lb]
    rfree = [b for b in range(len(rn)) if b not in rc and b not in rb]
    w.nodes[eqn.outvars[0]] = [ln[a] for a in lb] + [ln[a] for a in lfree] + [rn[b] for b in rfree]


def _conv(w: _Walker, eqn, where: str) -> None:
    lhs, rhs = eqn.invars
    p = eqn.params
    if p["feature_group_count"] != 1 or p["batch_group_count"] != 1:
        _opaque(w, eqn, f"{where} (grouped convolution)")
        return
    ls, rs, os_ = p["dimension_numbers"]
    ln, rn = w.of(lhs), w.of(rhs)
    w.g.tie(ln[ls[1]], rn[rs[1]], where)
    w.set_role(rhs, rs[1], READ)
    for a in rs[2:]:
        w.set_role(rhs, a, WINDOW)
    out = w.fresh(eqn.outvars[0])
    w.g.tie(out[os_[0]], ln[ls[0]], where)
    w.g.tie(out[os_[1]], rn[rs[0]], where)


def _reshape(w: _Walker, eqn, where: str) -> None:
    (v,) = eqn.invars[:1]
    (out,) = eqn.outvars
    a, b = _shape(v), _shape(out)
    if eqn.params.get("dimensions") is not None:
        _opaque(w, eqn, where)
        return
    ins = w.of(v)
    nodes = w.fresh(out)
    n = min(len(a), len(b))
    if a[len(a) - n:] == b[len(b) - n:] and all(d == 1 for d in a[:len(a) - n] + b[:len(b) - n]):
        _expand_or_squeeze(w, v, out, ins, nodes, n, where)
        return
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


def _expand_or_squeeze(w: _Walker, v, out, ins: list, nodes: list, n: int, where: str) -> None:
    """A reshape that only adds or drops leading axes of size 1: the trailing axes keep their
    units (a bias of one unit reshaped to (1, 1) still holds that unit)."""
    da, db = len(ins) - n, len(nodes) - n
    for k in range(n):
        w.g.tie(ins[da + k], nodes[db + k], where)
    w.view(out, v, [[]] * db + [[da + k] for k in range(n)])


def _group(w: _Walker, ins: list, outs: list, where: str, eqn) -> None:
    if len(ins) == 1 and len(outs) == 1:
        w.g.tie(ins[0], outs[0], where)
    elif len(outs) == 1:
        w.g.define(outs[0], "product", ins, where)
    elif len(ins) == 1:
        w.g.define(ins[0], "product", outs, where)
    else:
        for n in ins + outs:
            w.g.mark_opaque(n, eqn.primitive.name, where)


def _squeeze(w: _Walker, eqn, where: str) -> None:
    (v,), (out,) = eqn.invars, eqn.outvars
    dims = {d % len(_shape(v)) for d in eqn.params["dimensions"]}
    keep = [a for a in range(len(_shape(v))) if a not in dims]
    w.nodes[out] = [w.of(v)[a] for a in keep]
    w.view(out, v, [[a] for a in keep])


def _broadcast_in_dim(w: _Walker, eqn, where: str) -> None:
    v, out = eqn.invars[0], eqn.outvars[0]
    shape, dims = _shape(out), eqn.params["broadcast_dimensions"]
    nodes = w.fresh(out)
    source: list = [[] for _ in shape]
    for a, d in enumerate(dims):
        if _shape(v)[a] == shape[d]:
            nodes[d] = w.of(v)[a]
            source[d] = [a]
    w.view(out, v, source)
    if not isinstance(v, jcore.Literal) and v in w.values:
        w.values[out] = w.values[v]


def _transpose(w: _Walker, eqn, where: str) -> None:
    (v,), (out,) = eqn.invars, eqn.outvars
    perm = eqn.params["permutation"]
    w.nodes[out] = [w.of(v)[p] for p in perm]
    w.view(out, v, [[p] for p in perm])


def _concatenate(w: _Walker, eqn, where: str) -> None:
    d = eqn.params["dimension"]
    out = w.fresh(eqn.outvars[0])
    for v in eqn.invars:
        w.view(eqn.outvars[0], v, [[a] for a in range(len(out))])
        for a, n in enumerate(w.of(v)):
            if a != d:
                w.g.tie(n, out[a], where)
    w.g.define(out[d], "concat", [w.of(v)[d] for v in eqn.invars], where)


def _split(w: _Walker, eqn, where: str) -> None:
    (v,) = eqn.invars
    d = eqn.params["axis"]
    parts = []
    for out in eqn.outvars:
        nodes = [n if a != d else w.g.node(_shape(out)[a]) for a, n in enumerate(w.of(v))]
        w.nodes[out] = nodes
        parts.append(nodes[d])
    w.g.define(w.of(v)[d], "concat", parts, where)


def _slice(w: _Walker, eqn, where: str) -> None:
    (v,), (out,) = eqn.invars, eqn.outvars
    p = eqn.params
    strides = p["strides"] or (1,) * len(_shape(v))
    nodes = []
    for a, n in enumerate(w.of(v)):
        size, lo, hi = _shape(v)[a], p["start_indices"][a], p["limit_indices"][a]
        if lo == 0 and hi == size and strides[a] == 1:
            nodes.append(n)
            continue
        piece = w.g.node(_shape(out)[a])
        nodes.append(piece)
        if strides[a] != 1:
            w.g.mark_opaque(n, "slice with a stride", where)
            w.g.mark_opaque(piece, "slice with a stride", where)
            continue
        parts = ([w.g.node(lo)] if lo else []) + [piece] + ([w.g.node(size - hi)] if hi < size
                                                             else [])
        w.g.define(n, "concat", parts, where)
    w.nodes[out] = nodes


def _same_or_opaque(w: _Walker, eqn, where: str, full: Callable) -> None:
    """Axes that keep their full size keep their nodes; the others are opaque."""
    v, out = eqn.invars[0], eqn.outvars[0]
    nodes = w.fresh(out)
    for a, n in enumerate(w.of(v)):
        if full(a):
            w.g.tie(n, nodes[a], where)
        else:
            w.g.mark_opaque(n, eqn.primitive.name, where)
            w.g.mark_opaque(nodes[a], eqn.primitive.name, where)


def _pad(w: _Walker, eqn, where: str) -> None:
    cfg = eqn.params["padding_config"]
    _same_or_opaque(w, eqn, where, lambda a: tuple(cfg[a]) == (0, 0, 0))


def _dynamic_slice(w: _Walker, eqn, where: str) -> None:
    v = eqn.invars[0]
    sizes = eqn.params["slice_sizes"]
    _same_or_opaque(w, eqn, where, lambda a: sizes[a] == _shape(v)[a])


def _reduce_window(w: _Walker, eqn, where: str) -> None:
    p = eqn.params
    pad = p.get("padding") or ((0, 0),) * len(p["window_dimensions"])

    def full(a):
        return p["window_dimensions"][a] == 1 and p["window_strides"][a] == 1 and \
            tuple(pad[a]) == (0, 0)

    _same_or_opaque(w, eqn, where, full)


def _reduction(w: _Walker, eqn, where: str) -> None:
    v = eqn.invars[0]
    axes = {a % max(len(_shape(v)), 1) for a in eqn.params["axes"]}
    nodes = w.of(v)
    for a in axes:
        w.g.mark_cross(nodes[a], eqn.primitive.name, where)
    w.nodes[eqn.outvars[0]] = [n for a, n in enumerate(nodes) if a not in axes]


def _cumulative(w: _Walker, eqn, where: str) -> None:
    (v,) = eqn.invars
    nodes = w.of(v)
    w.g.mark_cross(nodes[eqn.params["axis"]], eqn.primitive.name, where)
    w.nodes[eqn.outvars[0]] = list(nodes)


def _gather(w: _Walker, eqn, where: str) -> None:
    operand, indices = eqn.invars
    dn = eqn.params["dimension_numbers"]
    sizes = eqn.params["slice_sizes"]
    op_nodes, idx_nodes = w.of(operand), w.of(indices)
    out = w.fresh(eqn.outvars[0])
    kept = [a for a in range(len(op_nodes)) if a not in dn.collapsed_slice_dims]
    batch_out = [a for a in range(len(out)) if a not in dn.offset_dims]
    for a, d in zip(kept, dn.offset_dims, strict=True):
        if sizes[a] == _shape(operand)[a]:
            w.g.tie(op_nodes[a], out[d], where)
        else:
            w.g.mark_opaque(op_nodes[a], "gather", where)
            w.g.mark_opaque(out[d], "gather", where)
    for a, d in zip(range(len(idx_nodes) - 1), batch_out, strict=False):
        w.g.tie(idx_nodes[a], out[d], where)
    value = w.values.get(indices) if not isinstance(indices, jcore.Literal) else None
    embedding = (w.leaf_axes(operand) is not None and tuple(dn.start_index_map) == (0,)
                 and tuple(dn.collapsed_slice_dims) == (0,) and value is not None)
    if embedding:
        token = w.g.input_values.setdefault(value, op_nodes[0])
        w.g.tie(token, op_nodes[0], where)
        w.set_role(operand, 0, READ)
        return
    for a in dn.start_index_map:
        w.g.mark_opaque(op_nodes[a], "gather (indexing by data)", where)


def _call(w: _Walker, eqn, where: str) -> None:
    jaxpr = next(eqn.params[k] for k in _CALLS if k in eqn.params)
    if len(_inner(jaxpr).invars) != len(eqn.invars):
        _opaque(w, eqn, where)
        return
    outer, w.context = w.context, _source(eqn) or w.context
    outs = w.walk(jaxpr, list(eqn.invars))
    w.context = outer
    for out, inner in zip(eqn.outvars, outs, strict=True):
        w.bind(out, inner)


def _inner(jaxpr):
    return jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr


def _tie_all(w: _Walker, a: list, b: list, where: str) -> None:
    for va, vb in zip(a, b, strict=True):
        for na, nb in zip(w.of(va), w.of(vb), strict=True):
            w.g.tie(na, nb, where)


def _cond(w: _Walker, eqn, where: str) -> None:
    operands = list(eqn.invars[1:])
    first = None
    for branch in eqn.params["branches"]:
        outs = w.walk(branch, operands)
        if first is None:
            first = outs
        else:
            _tie_all(w, first, outs, where)
    for out, inner in zip(eqn.outvars, first, strict=True):
        w.bind(out, inner)


def _while(w: _Walker, eqn, where: str) -> None:
    p = eqn.params
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    consts_b, carry = list(eqn.invars[nc:nc + nb]), list(eqn.invars[nc + nb:])
    outs = w.walk(p["body_jaxpr"], consts_b + carry)
    _tie_all(w, carry, outs, where)
    w.walk(p["cond_jaxpr"], list(eqn.invars[:nc]) + carry)
    for out, v in zip(eqn.outvars, carry, strict=True):
        w.bind(out, v)


def _scan(w: _Walker, eqn, where: str) -> None:
    p = eqn.params
    n_consts, n_carry = p["num_consts"], p["num_carry"]
    jaxpr = _inner(p["jaxpr"])
    consts = list(eqn.invars[:n_consts])
    carry = list(eqn.invars[n_consts:n_consts + n_carry])
    xs = list(eqn.invars[n_consts + n_carry:])
    x_inner = jaxpr.invars[n_consts + n_carry:]
    for inner, outer in zip(x_inner, xs, strict=True):
        w.nodes[inner] = w.of(outer)[1:]
        w.view(inner, outer, [[a] for a in range(1, len(_shape(outer)))])
    body = consts + carry + list(x_inner)
    if isinstance(p["jaxpr"], jcore.ClosedJaxpr):
        for c in p["jaxpr"].jaxpr.constvars:
            w.fresh(c)
    for inner, outer in zip(jaxpr.invars[: n_consts + n_carry], body, strict=False):
        w.bind(inner, outer)
    for e in jaxpr.eqns:
        w.equation(e)
    outs = list(jaxpr.outvars)
    _tie_all(w, carry, outs[:n_carry], where)
    for out, v in zip(eqn.outvars[:n_carry], carry, strict=True):
        w.bind(out, v)
    for out, inner in zip(eqn.outvars[n_carry:], outs[n_carry:], strict=True):
        w.nodes[out] = [w.g.node(p["length"])] + list(w.of(inner))


_RULES: dict[str, Callable] = {
    "dot_general": _dot_general,
    "conv_general_dilated": _conv,
    "reshape": _reshape,
    "squeeze": _squeeze,
    "broadcast_in_dim": _broadcast_in_dim,
    "transpose": _transpose,
    "concatenate": _concatenate,
    "split": _split,
    "slice": _slice,
    "pad": _pad,
    "dynamic_slice": _dynamic_slice,
    "reduce_window_max": _reduce_window,
    "reduce_window_min": _reduce_window,
    "reduce_window_sum": _reduce_window,
    "reduce_window": _reduce_window,
    "gather": _gather,
    "cond": _cond,
    "while": _while,
    "scan": _scan,
}


def trace(fn: Callable, leaves: list, args: tuple, arg: str) -> Graph:
    """Traces `fn(leaves, *args)` and builds its unit-space graph.

    Args:
        fn: takes the list of parameter leaves and the example arguments.
        leaves: the parameter leaves (arrays or ShapeDtypeStructs), in flat order.
        args: the example positional arguments (pytrees of arrays or ShapeDtypeStructs).
        arg: the argument's name, for messages.

    Raises:
        PlanError: when the function cannot be traced on the example inputs.
    """
    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    arg_leaves, arg_def = jax.tree_util.tree_flatten(args)
    arg_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in arg_leaves]

    def flat(ps, xs):
        return fn(ps, *jax.tree_util.tree_unflatten(arg_def, xs))

    try:
        closed, out_shape = jax.make_jaxpr(flat, return_shape=True)(specs, arg_specs)
    except PlanError:
        raise
    except Exception as e:  # noqa: BLE001 -- the user's function failed on the example
        raise PlanError(
            f"`apply`: tracing the {arg} function on the example inputs failed with "
            f"{type(e).__name__}: {e}; check `example` and `apply`."
        ) from e
    g = Graph()
    walker = _Walker(g)
    jaxpr = closed.jaxpr
    n = len(specs)
    g.first_use = [None] * n
    g.leaf_roles = [[WRITE] * len(s.shape) for s in specs]
    for c in jaxpr.constvars:
        walker.fresh(c)
    for i, v in enumerate(jaxpr.invars):
        walker.fresh(v)
        if i < n:
            walker.origin[v] = [([(a,) for a in range(len(v.aval.shape))], i)]
        elif jax.numpy.issubdtype(v.aval.dtype, jax.numpy.integer):
            walker.values[v] = i - n
    for eqn in jaxpr.eqns:
        walker.equation(eqn)
    g.leaf_axes = [walker.of(v) for v in jaxpr.invars[:n]]
    g.input_axes = [walker.of(v) for v in jaxpr.invars[n:]]
    g.output_axes = [walker.of(v) for v in jaxpr.outvars]
    g.out_tree = jax.tree_util.tree_structure(out_shape)
    g.carry_leaves = _carry_leaves(tuple(args), out_shape)
    return g


def _carry_leaves(args: tuple, out) -> int:
    """The number of leaves of a carry: `fn(carry, x, ...) -> (carry, y)` with the returned
    carry of the same structure, shapes and dtypes as the argument (the Flax cell convention);
    0 when the function has no such carry."""
    if len(args) < 2 or not isinstance(out, (tuple, list)) or len(out) != 2:
        return 0
    arg, ret = jax.tree_util.tree_flatten(args[0]), jax.tree_util.tree_flatten(out[0])
    if arg[1] != ret[1] or not arg[0]:
        return 0
    same = all(tuple(a.shape) == tuple(r.shape) and a.dtype == r.dtype
               for a, r in zip(arg[0], ret[0], strict=True))
    return len(arg[0]) if same else 0
