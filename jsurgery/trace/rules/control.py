"""Tracer rules for nested jaxprs: calls (`jit`, custom derivatives, remat), `cond`, `while`,
`scan`.

The inner jaxpr is walked with its variables bound to the outer operands, so units flow through;
a loop's carry and the branches' results are tied into one space each.
"""

from __future__ import annotations

from jax.extend import core as jcore

from jsurgery.trace.registry import CALL_KEYS, register, register_fallback
from jsurgery.trace.walker import Walker, shape


@register_fallback("call")
@register("jit", "closed_call", "call", "custom_jvp_call", "custom_vjp_call", "remat2")
def call(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Walks the called jaxpr (`params[k]` for the first of `CALL_KEYS` present) bound to the
    operands; the results are its outputs. A call whose jaxpr takes other operands than the
    equation's is opaque."""
    jaxpr = next((eqn.params[k] for k in CALL_KEYS if k in eqn.params), None)
    if jaxpr is None or len(_inner(jaxpr).invars) != len(eqn.invars):
        w.opaque(eqn, where)
        return
    outer = w.context, w.scope
    w.context = w.source(eqn) or w.context
    w.scope = "/".join(s for s in (w.scope, str(eqn.source_info.name_stack)) if s)
    outs = w.walk(jaxpr, list(eqn.invars))
    w.context, w.scope = outer
    for out, inner in zip(eqn.outvars, outs, strict=True):
        w.bind(out, inner)


def _inner(jaxpr):
    return jaxpr.jaxpr if isinstance(jaxpr, jcore.ClosedJaxpr) else jaxpr


def _tie_all(w: Walker, a: list, b: list, where: str) -> None:
    for va, vb in zip(a, b, strict=True):
        for na, nb in zip(w.of(va), w.of(vb), strict=True):
            w.g.tie(na, nb, where)


@register("cond")
def cond(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Walks every branch on the operands and ties the branches' results together."""
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


@register("while")
def while_loop(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Walks the body on the carry and ties what it returns to the carry; the results are the
    carry."""
    p = eqn.params
    nc, nb = p["cond_nconsts"], p["body_nconsts"]
    consts_b, carry = list(eqn.invars[nc : nc + nb]), list(eqn.invars[nc + nb :])
    outs = w.walk(p["body_jaxpr"], consts_b + carry, loop=True)
    _tie_all(w, carry, outs, where)
    w.walk(p["cond_jaxpr"], list(eqn.invars[:nc]) + carry, loop=True)
    for out, v in zip(eqn.outvars, carry, strict=True):
        w.bind(out, v)


@register("scan")
def scan(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Walks the body on the consts, the carry and one step of the scanned inputs (their leading
    axis dropped); ties the returned carry to the carry; stacked outputs gain a new leading
    axis."""
    p = eqn.params
    n_consts, n_carry = p["num_consts"], p["num_carry"]
    jaxpr = _inner(p["jaxpr"])
    consts = list(eqn.invars[:n_consts])
    carry = list(eqn.invars[n_consts : n_consts + n_carry])
    xs = list(eqn.invars[n_consts + n_carry :])
    x_inner = jaxpr.invars[n_consts + n_carry :]
    for inner, outer in zip(x_inner, xs, strict=True):
        w.nodes[inner] = w.of(outer)[1:]
        w.view(inner, outer, [[a] for a in range(1, len(shape(outer)))])
    body = consts + carry + list(x_inner)
    if isinstance(p["jaxpr"], jcore.ClosedJaxpr):
        for c in p["jaxpr"].jaxpr.constvars:
            w.fresh(c)
    for inner, outer in zip(jaxpr.invars[: n_consts + n_carry], body, strict=False):
        w.bind(inner, outer)
    w.mix_tags(jaxpr.invars, eqn.invars)
    for e in jaxpr.eqns:
        w.equation(e)
    outs = list(jaxpr.outvars)
    _tie_all(w, carry, outs[:n_carry], where)
    for out, v in zip(eqn.outvars[:n_carry], carry, strict=True):
        w.bind(out, v)
    for out, inner in zip(eqn.outvars[n_carry:], outs[n_carry:], strict=True):
        w.nodes[out] = [w.g.node(p["length"])] + list(w.of(inner))
