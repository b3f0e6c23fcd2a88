"""Tracer rules for contractions: `dot_general` and `conv_general_dilated`.

A contraction ties the axes it contracts (a kernel's input axis and the activation's features) and
gives the kernel's axes their roles: READ where it is contracted, WINDOW for a convolution's
spatial axes. A contraction of two activations (attention logits) mixes the units it sums over.
"""

from __future__ import annotations

from jax.extend import core as jcore

from jsurgery.graph.unit_graph import READ, WINDOW
from jsurgery.trace.registry import register
from jsurgery.trace.walker import PARAM, Walker


@register("dot_general")
def dot_general(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Ties contracting and batch axes; the result's axes are the batch axes, then the free axes
    of the left operand, then those of the right one."""
    lhs, rhs = eqn.invars
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    ln, rn = w.of(lhs), w.of(rhs)
    weighted = bool(w.origins(lhs) or w.origins(rhs))
    for a, b in zip(lc, rc, strict=True):
        w.g.tie(ln[a], rn[b], where)
        w.set_role(lhs, a, READ)
        w.set_role(rhs, b, READ)
        if not weighted:
            w.g.mark_cross(ln[a], _unweighted(w, lhs, rhs), where)
    for a, b in zip(lb, rb, strict=True):
        w.g.tie(ln[a], rn[b], where)
    lfree = [a for a in range(len(ln)) if a not in lc and a not in lb]
    rfree = [b for b in range(len(rn)) if b not in rc and b not in rb]
    w.nodes[eqn.outvars[0]] = [ln[a] for a in lb] + [ln[a] for a in lfree] + [rn[b] for b in rfree]


def _unweighted(w: Walker, lhs, rhs) -> str:
    """What a contraction that reads no parameter as is sums over: a kernel computed from
    parameters (an operand that depends on parameters and on no input), or two activations."""
    if any(w.depends(v) == {PARAM} for v in (lhs, rhs)):
        return (
            "dot_general with a kernel computed from parameters by operations the planner "
            "cannot follow as a read of the parameter (only scaling by a constant and sums of "
            "parameters of one shape are), so the rows copies share are not divided"
        )
    return (
        "dot_general of two activations (attention logits q.k sum over head_dim, and their "
        "1/sqrt(head_dim) scale moves with it)"
    )


@register("conv_general_dilated")
def conv_general_dilated(w: Walker, eqn: jcore.JaxprEqn, where: str) -> None:
    """Ties the input's features to the kernel's input axis, the output's batch to the input's
    and its features to the kernel's output axis; the spatial axes are windows (a grouped
    convolution is opaque)."""
    lhs, rhs = eqn.invars
    p = eqn.params
    if p["feature_group_count"] != 1 or p["batch_group_count"] != 1:
        w.opaque(eqn, f"{where} (grouped convolution)")
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
