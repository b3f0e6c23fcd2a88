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
rsqrt cbrt square integer_pow abs erf erfc erf_inv lgamma digamma select_n clamp ne lt le gt ge
shift_left shift_right_logical shift_right_arithmetic population_count imag real conj complex
igamma polygamma stop_gradient
""".split()
)
#: Elementwise ops whose result views its operand (a cast or a copy of a parameter).
VIEWS = frozenset({"convert_element_type", "copy", "reduce_precision"})
#: Elementwise ops that keep the integer values they choose among (token IDs, actions).
KEEP_VALUES = frozenset({"select_n", "clamp", "max", "min"}) | VIEWS
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
    _carry_values(w, eqn, where)
    _note_square(w, eqn)


def _note_square(w: Walker, eqn: jcore.JaxprEqn) -> None:
    """Records a result that squares its operand (`square`, `x ** 2`, `x * x`) in
    `Walker.squares`, so that a sum over it reads as a second moment (a norm's variance)."""
    name, ins = eqn.primitive.name, eqn.invars
    if isinstance(ins[0], jcore.Literal):
        return
    squared = (
        name == "square"
        or (name == "integer_pow" and eqn.params.get("y") == 2)
        or (name == "mul" and len(ins) == 2 and ins[0] is ins[1])
    )
    if squared:
        w.squares[eqn.outvars[0]] = ins[0]


def _carry_values(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """The result carries the integer input an operand carries (not a comparison's booleans);
    arithmetic on the values (`a - 1`) shifts them (`Walker.shifted`), while a selection keeps
    them unless every choice is shifted (`jnp.take`'s wrap of negative indices keeps them)."""
    (out,) = eqn.outvars
    name = eqn.primitive.name
    carried = [v for v in eqn.invars if not isinstance(v, jcore.Literal) and v in w.values]
    if name == "select_n":
        carried = [v for v in eqn.invars[1:] if v in carried]
    if not carried or str(getattr(out.aval, "dtype", "")) == "bool":
        return
    w.values[out] = w.values[carried[0]]
    if name not in KEEP_VALUES:
        w.shifted[out] = where
    elif all(v in w.shifted for v in carried):
        w.shifted[out] = w.shifted[carried[0]]


register_family(ELEMENTWISE - {"mul", "div", "neg"}, elementwise)


def _view_all(w: Walker, out, operands: list) -> None:
    for v in operands:
        w.view(out, v, [[a] for a in range(len(shape(out)))])


def _reads(w: Walker, v, out) -> bool:
    """Whether `v` views a parameter with the result's shape (entry for entry)."""
    return bool(w.origins(v)) and shape(v) == shape(out)


@register("mul", "div", "neg")
def scaling(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """An elementwise op; a parameter scaled by a constant (`k * 1.0`, `sigma * 0.0`, `k / c`,
    `-k`) is still that parameter, read with the same axes: the result views it, so the matmul
    it feeds gives the parameter's axes their roles (the scaling is linear, so whatever divides
    the parameter's rows divides the result's)."""
    elementwise(w, eqn, where)
    (out,) = eqn.outvars
    name, ins = eqn.primitive.name, list(eqn.invars)
    scaled = ins[:1] if name == "div" else [v for v in ins if _reads(w, v, out)]
    rest = [v for v in ins if all(v is not u for u in scaled)]
    if len(scaled) == 1 and _reads(w, scaled[0], out) and not any(map(w.depends, rest)):
        _view_all(w, out, scaled)


@register(*sorted(VIEWS))
def view(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """An elementwise op whose result views the parameter leaves its operand views (and holds
    the constant, or counts along the axis of the iota, its operand is)."""
    elementwise(w, eqn, where)
    (out,) = eqn.outvars
    _view_all(w, out, eqn.invars)
    (v,) = eqn.invars[:1]
    if w.constant(v) is not None:
        w.constants[out] = w.constant(v)
    if not isinstance(v, jcore.Literal) and v in w.iotas:
        w.iotas[out] = w.iotas[v]


@register(*sorted(ADDITIVE))
def additive(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """An elementwise addition. A parameter added to an array that views no parameter and is
    not only a constant (a variance's epsilon) is a bias (`Graph.additive`); the sum of
    parameters of one shape (NoisyNet's `mu + 0 * sigma`) views them all, each read with the
    same axes as the sum."""
    elementwise(w, eqn, where)
    (out,) = eqn.outvars
    ins = list(eqn.invars)
    if all(_reads(w, v, out) for v in ins):
        _view_all(w, out, ins)
        return
    for v in ins:
        if any(not isinstance(u, jcore.Literal) and not w.origins(u) for u in ins if u is not v):
            w.g.additive.update(leaf for _, leaf in w.origins(v))


@register("eq")
def equal(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """An elementwise comparison; an integer input compared with an iota along an axis where
    the input has one entry (`jax.nn.one_hot(a, n)`: `a[..., None] == iota(n)`) makes that
    axis a one-hot of the input's values: entry j is value j, the unit space of the input's
    values (as for the token IDs of an embedding). A one-hot of shifted values (`a - 1`) is
    recorded (`Graph.shifted_one_hots`), its axis left by position."""
    (out,) = eqn.outvars
    one_hot = _one_hot_axis(w, eqn)
    if one_hot is None or one_hot[2] is not None:
        elementwise(w, eqn, where)
        if one_hot is not None:
            k, axis, shifted = one_hot
            w.g.shifted_one_hots.setdefault(k, (shifted, shape(out)[axis]))
        return
    k, axis, _ = one_hot
    nodes = w.fresh(out)
    for v in eqn.invars:
        for a, (d, n) in enumerate(zip(shape(v), w.of(v), strict=True)):
            if d == shape(out)[a]:
                w.g.tie(n, nodes[a], where)
    token = w.g.input_values.setdefault(k, nodes[axis])
    w.g.tie(token, nodes[axis], where)


def _one_hot_axis(w: Walker, eqn: jcore.JaxprEqn):
    """`(input index, axis, shift)` when `eqn` compares an integer input with an iota counting
    along an axis of the result where the input has one entry (`shift`: the arithmetic on the
    input's values, or None), else None."""
    out_shape = shape(eqn.outvars[0])
    for v, u in (eqn.invars, eqn.invars[::-1]):
        if isinstance(v, jcore.Literal) or isinstance(u, jcore.Literal):
            continue
        axis = w.iotas.get(u)
        if v not in w.values or axis is None or len(shape(v)) != len(out_shape):
            continue
        if shape(v)[axis] == 1 and shape(u)[axis] == out_shape[axis] > 1:
            return w.values[v], axis, w.shifted.get(v)
    return None


def reduction(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Mixes the units of the reduced axes; the other axes keep their nodes. A sum is also
    recorded as a moment of the space (`Graph.moments`): of the values, or of their squares,
    and whether those values came out of a layer through an activation."""
    v = eqn.invars[0]
    axes = {a % max(len(shape(v)), 1) for a in eqn.params["axes"]}
    nodes = w.of(v)
    for a in axes:
        w.g.mark_cross(nodes[a], eqn.primitive.name, where)
        if eqn.primitive.name == "reduce_sum" and not isinstance(v, jcore.Literal):
            base = w.squares.get(v, v)
            moment = "second" if v in w.squares else "first"
            w.g.mark_moment(nodes[a], moment, base in w.layer_outputs.activated)
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


@register("iota")
def iota(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """A new array counting 0, 1, 2, ... along `params["dimension"]` (kept in `Walker.iotas`,
    for one-hot encodings)."""
    (out,) = eqn.outvars
    w.fresh(out)
    w.iotas[out] = eqn.params["dimension"]


@register_fallback("opaque")
def opaque(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """The default for a primitive without a rule: every axis it touches is opaque."""
    w.opaque(eqn, where)
