"""Tracer rules for nested jaxprs: calls (`jit`, custom derivatives), `cond`, `while`, `scan`.

The inner jaxpr is walked with its variables bound to the outer operands, so units flow through;
a loop's carry and the branches' results are tied into one space each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jax.extend import core as jcore

if TYPE_CHECKING:
    from jsurgery.trace import _Walker

_CALLS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _shape(v) -> tuple:
    return tuple(getattr(v.aval, "shape", ()))


def _call(w: _Walker, eqn, where: str) -> None:
    jaxpr = next(eqn.params[k] for k in _CALLS if k in eqn.params)
    if len(_inner(jaxpr).invars) != len(eqn.invars):
        w.opaque(eqn, where)
        return
    outer, w.context = w.context, w.source(eqn) or w.context
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
    consts_b, carry = list(eqn.invars[nc : nc + nb]), list(eqn.invars[nc + nb :])
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
    carry = list(eqn.invars[n_consts : n_consts + n_carry])
    xs = list(eqn.invars[n_consts + n_carry :])
    x_inner = jaxpr.invars[n_consts + n_carry :]
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
