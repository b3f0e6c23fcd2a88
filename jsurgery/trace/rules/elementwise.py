"""Tracer rules for primitives that keep their axes: elementwise ops (and the views and additions
among them), reductions, cumulative ops, sources of new arrays, and the opaque default.

An elementwise op ties each axis of an operand to the same axis of its result when the sizes
agree; a reduction or a cumulative op mixes the units of the axes it runs over (`cross`); a source
(`iota`, random bits) starts new axes; a primitive without a rule is opaque.
"""

from __future__ import annotations

from jax.extend import core as jcore

from jsurgery.trace.registry import register, register_fallback, register_family
from jsurgery.trace.walker import Walker, shape

#: Ops applied entry by entry (operands of one shape, or scalars), other than views and additions.
ELEMENTWISE = frozenset(
    """
mul div rem pow max min nextafter atan2 and or xor not neg sign floor ceil round is_finite
exp exp2 log log1p expm1 tanh logistic sin cos tan asin acos atan sinh cosh asinh acosh atanh sqrt
rsqrt cbrt square integer_pow abs erf erfc erf_inv lgamma digamma select_n clamp eq ne lt le gt ge
shift_left shift_right_logical shift_right_arithmetic population_count imag real conj complex
igamma polygamma stop_gradient
""".split()
)
#: Elementwise ops whose result views its operand (a cast or a copy of a parameter).
VIEWS = frozenset({"convert_element_type", "copy", "reduce_precision"})
#: Elementwise additions: a parameter added to another array is a bias.
ADDITIVE = frozenset({"add", "sub", "add_any"})
#: Reductions over the axes in `params["axes"]`.
REDUCTIONS = frozenset(
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
#: Cumulative ops along `params["axis"]`.
CUMULATIVE = frozenset({"cumsum", "cumprod", "cummax", "cummin", "cumlogsumexp"})
#: Primitives that make new arrays (iota, random numbers): their results start new axes.
SOURCES = frozenset(
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


def elementwise(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Ties each axis of an operand of the result's rank to the result's axis of the same size;
    the result carries the integer input an operand carries."""
    (out,) = eqn.outvars
    out_shape = shape(out)
    nodes = w.fresh(out)
    for v in eqn.invars:
        s = shape(v)
        if len(s) != len(out_shape):
            continue
        for a, (d, n) in enumerate(zip(s, w.of(v), strict=True)):
            if d == out_shape[a]:
                w.g.tie(n, nodes[a], where)
    for v in eqn.invars:
        if not isinstance(v, jcore.Literal) and v in w.values:
            w.values[out] = w.values[v]


register_family(ELEMENTWISE, elementwise)


@register(*sorted(VIEWS))
def view(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """An elementwise op whose result views the parameter leaves its operand views."""
    elementwise(w, eqn, where)
    (out,) = eqn.outvars
    for v in eqn.invars:
        w.view(out, v, [[a] for a in range(len(shape(out)))])


@register(*sorted(ADDITIVE))
def additive(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """An elementwise addition: a parameter added to another array, not only to a constant (a
    variance's epsilon), is a bias (`Graph.additive`)."""
    elementwise(w, eqn, where)
    for v in eqn.invars:
        if any(not isinstance(u, jcore.Literal) for u in eqn.invars if u is not v):
            w.g.additive.update(leaf for _, leaf in w.origins(v))


def reduction(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Mixes the units of the reduced axes; the other axes keep their nodes."""
    v = eqn.invars[0]
    axes = {a % max(len(shape(v)), 1) for a in eqn.params["axes"]}
    nodes = w.of(v)
    for a in axes:
        w.g.mark_cross(nodes[a], eqn.primitive.name, where)
    w.nodes[eqn.outvars[0]] = [n for a, n in enumerate(nodes) if a not in axes]


register_family(REDUCTIONS, reduction)


def cumulative(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Mixes the units of the axis it runs along; the result keeps the operand's nodes."""
    (v,) = eqn.invars
    nodes = w.of(v)
    w.g.mark_cross(nodes[eqn.params["axis"]], eqn.primitive.name, where)
    w.nodes[eqn.outvars[0]] = list(nodes)


register_family(CUMULATIVE, cumulative)


def source(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """New arrays: each result axis is a new node, tied to nothing."""
    for out in eqn.outvars:
        w.fresh(out)


register_family(SOURCES, source)


@register_fallback("opaque")
def opaque(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """The default for a primitive without a rule: every axis it touches is opaque."""
    w.opaque(eqn, where)
