"""The tracer front-end: an apply function and example inputs -> a unit-space `Graph`.

`jax.make_jaxpr` of the function, then a walk over the equations, primitive by primitive: each
rule says which axes of its operands and results hold the same units (ties), which are segments or
factors of another (concatenate, slice, split, reshape), and which units it mixes (reductions).
Nested jaxprs (`jit`, `custom_jvp_call`, `custom_vjp_call`, `cond`, `while`, `scan`) are walked
inside, bound to their operands. A primitive without a rule marks every axis it touches as opaque;
`jsurgery.graph_plan` refuses a plan when an opaque axis carries a parameter's units. Rules for
axis moves (reshape, slice, gather, ...) live in `jsurgery.trace_shapes`, for nested jaxprs in
`jsurgery.trace_control`.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
from jax.extend import core as jcore

from jsurgery.errors import PlanError
from jsurgery.graph import READ, WINDOW, WRITE, Graph

_ELEMENTWISE = frozenset(
    """
add sub mul div rem pow max min nextafter atan2 and or xor not neg sign floor ceil round is_finite
exp exp2 log log1p expm1 tanh logistic sin cos tan asin acos atan sinh cosh asinh acosh atanh sqrt
rsqrt cbrt square integer_pow abs erf erfc erf_inv lgamma digamma convert_element_type copy copy_p
select_n clamp eq ne lt le gt ge shift_left shift_right_logical shift_right_arithmetic
population_count imag real conj complex add_any reduce_precision igamma polygamma stop_gradient
""".split()
)
_VIEWS = frozenset({"convert_element_type", "copy", "copy_p", "reduce_precision"})
_ADDITIVE = frozenset({"add", "sub", "add_any"})
_REDUCTIONS = frozenset(
    {
        "reduce_sum",
        "reduce_max",
        "reduce_min",
        "reduce_prod",
        "reduce_and",
        "reduce_or",
        "reduce_xor",
        "argmax",
        "argmin",
    }
)
_CUMULATIVE = frozenset({"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"})
_SOURCES = frozenset(
    {
        "iota",
        "random_seed",
        "random_bits",
        "random_split",
        "random_fold_in",
        "random_wrap",
        "random_unwrap",
        "threefry2x32",
        "rng_bit_generator",
        "rng_uniform",
    }
)


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

    def opaque(self, eqn, where: str) -> None:
        """Marks every axis of the equation's operands and results as opaque."""
        for v in eqn.invars:
            for n in self.of(v):
                self.g.mark_opaque(n, eqn.primitive.name, where)
        for out in eqn.outvars:
            for n in self.fresh(out):
                self.g.mark_opaque(n, eqn.primitive.name, where)

    @staticmethod
    def source(eqn) -> str:
        return _source(eqn)

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
        if name in _ADDITIVE and any(
            not isinstance(u, jcore.Literal) for u in eqn.invars if u is not v
        ):
            # added to another array (a bias), not only to a constant (a variance's epsilon)
            w.g.additive.update(leaf for _, leaf in w.origins(v))
        if not isinstance(v, jcore.Literal) and v in w.values:
            w.values[out] = w.values[v]


def _source_op(w: _Walker, eqn, where: str) -> None:
    for out in eqn.outvars:
        w.fresh(out)


def _opaque(w: _Walker, eqn, where: str) -> None:
    w.opaque(eqn, where)


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
            w.g.mark_cross(
                ln[a],
                "dot_general of two activations (attention logits q.k sum "
                "over head_dim, and their 1/sqrt(head_dim) scale moves with it)",
                where,
            )
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
    for a in ls[2:]:
        w.g.mark_cross(ln[a], "conv_general_dilated (a window over this axis)", where)
    out = w.fresh(eqn.outvars[0])
    w.g.tie(out[os_[0]], ln[ls[0]], where)
    w.g.tie(out[os_[1]], rn[rs[0]], where)


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


from jsurgery.trace_control import _CALLS, _call, _cond, _scan, _while  # noqa: E402
from jsurgery.trace_shapes import (  # noqa: E402
    _broadcast_in_dim,
    _concatenate,
    _dynamic_slice,
    _gather,
    _pad,
    _reduce_window,
    _reshape,
    _slice,
    _split,
    _squeeze,
    _transpose,
)

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


def trace(
    fn: Callable, leaves: list, args: tuple, arg: str, carry=None, names: list | None = None
) -> Graph:
    """Traces `fn(leaves, *args)` and builds its unit-space graph.

    Args:
        fn: takes the list of parameter leaves and the example arguments.
        leaves: the parameter leaves (arrays or ShapeDtypeStructs), in flat order.
        args: the example positional arguments (pytrees of arrays or ShapeDtypeStructs).
        arg: the argument's name, for messages.
        carry: None (detect: argument 0 returned as the first of two outputs), False (no
            carry) or `(arg_index, output_index)`.
        names: the leaves' paths, for messages.

    Raises:
        PlanError: when the function cannot be traced on the example inputs, or the `carry`
            named does not come back with the same structure, shapes and dtypes.
    """
    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    arg_leaves, arg_def = jax.tree_util.tree_flatten(args)
    arg_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in arg_leaves]

    traced: list = []

    def flat(ps, xs):
        traced[:] = ps
        return fn(ps, *jax.tree_util.tree_unflatten(arg_def, xs))

    try:
        closed, out_shape = jax.make_jaxpr(flat, return_shape=True)(specs, arg_specs)
    except PlanError:
        raise
    except Exception as e:  # noqa: BLE001 -- the user's function failed on the example
        raise _trace_error(e, arg, traced, names, tuple(args), carry) from e
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
    from jsurgery.carry import find_carry

    g.carry = find_carry(tuple(args), out_shape, carry, arg)
    return g


def _failing_leaf(e: Exception, traced: list) -> int | None:
    """The parameter leaf an operation was applied to when it raised: the innermost frame of
    the traceback holding one of the traced leaves."""
    where = {id(p): i for i, p in enumerate(traced)}
    found, tb = None, e.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if id(value) in where:
                found = where[id(value)]
        tb = tb.tb_next
    return found


def _trace_error(e: Exception, arg: str, traced: list, names, args: tuple, carry) -> PlanError:
    """The PlanError for a function that fails on its example inputs: the primitive and the
    parameter leaf it failed at, when known, and the carry's shapes when a carry may be the
    cause (a carry of the wrong size)."""
    text = str(e).split("\n")[0].rstrip(".")
    first = text.split(" ", 2)
    at = ""
    if first[0] in _RULES or first[0] in _ELEMENTWISE or first[0] in _REDUCTIONS:
        at = f" at `{first[0]}`"
    elif "split" in first[:2]:
        at = " at `split`"
    leaf = _failing_leaf(e, traced)
    if leaf is not None:
        name = names[leaf] if names else f"leaf {leaf}"
        at += f" on leaf {name!r} {tuple(traced[leaf].shape)}"
    hints = []
    if at.startswith(" at `split`"):
        hints.append(
            "a fused kernel's width must be a multiple of the number of gates it is split into"
        )
    k = 0 if carry is None else carry[0] if carry else None
    if k is not None and len(args) >= 2 and k < len(args):
        shapes = [tuple(x.shape) for x in jax.tree_util.tree_leaves(args[k])]
        hints.append(
            f"if argument {k} is the cell's carry, its example {shapes} must have the "
            f"{arg} cell's own hidden size"
        )
    hints.append("check `example` and `apply`")
    return PlanError(
        f"`example`: tracing the {arg} function on its example inputs failed{at} with "
        f"{type(e).__name__}: {text}; {'; '.join(hints)}."
    )
