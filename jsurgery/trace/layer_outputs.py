"""The operations applied to each layer's output before another layer reads it, recorded in
`Graph.applied` as the walker goes (`jsurgery.graph.follows` says what they are).

A layer's output is the result of a contraction with a parameter (`dot_general`, a convolution)
plus its bias; what an operation computes from it, entry by entry, belongs to the layer's
activation, until a contraction with the next layer's parameter reads it. Views of the output
(reshapes, casts, concatenations) carry it unchanged; a called function (`jax.nn.relu`) is
recorded by its name, and what it calls by the primitives it runs.
"""

from __future__ import annotations

from jax.extend import core as jcore

from jsurgery.graph.follows import Applied
from jsurgery.graph.unit_graph import Graph

CONTRACTIONS = frozenset({"dot_general", "conv_general_dilated"})
#: Operations that carry a value without computing on it.
CARRIES = frozenset(
    {
        "reshape",
        "broadcast_in_dim",
        "convert_element_type",
        "copy",
        "copy_p",
        "squeeze",
        "expand_dims",
        "transpose",
        "concatenate",
        "reduce_precision",
    }
)
BIAS_ADDS = frozenset({"add", "add_any"})
CALL_KEYS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


def _shape(v) -> tuple:
    return tuple(getattr(v.aval, "shape", ()))


class LayerOutputs:
    """Per jaxpr variable, the parameter leaves whose layer's output it holds: `bare` (the
    contraction and its bias) or `activated` (computed from it entry by entry); and the scalar
    constants a called jaxpr was given (`constants`)."""

    def __init__(self, graph: Graph):
        self.g = graph
        self.bare: dict = {}
        self.activated: dict = {}
        self.constants: dict = {}

    def bind(self, inner, outer) -> None:
        """A called jaxpr's variable bound to the outer operand: the same layer outputs, or
        the scalar constant a literal operand holds (`jnp.clip`'s bounds)."""
        if isinstance(outer, jcore.Literal):
            if _shape(outer) == ():
                self.constants[inner] = outer.val
            return
        for table in (self.bare, self.activated, self.constants):
            if outer in table:
                table[inner] = table[outer]

    def step(self, origins, eqn: jcore.JaxprEqn, where: str) -> None:
        """Follows one equation, after its rule: `origins(v)` lists the parameter leaves `v`
        views."""
        name = eqn.primitive.name
        ins = [v for v in eqn.invars if not isinstance(v, jcore.Literal)]
        params = {leaf for v in ins for _, leaf in origins(v)}
        if name in CONTRACTIONS and params:
            for out in eqn.outvars:
                self.bare[out] = frozenset(params)
            return
        if name in CARRIES and len(ins) == 1 and ins[0] in self.constants:
            self.constants[eqn.outvars[0]] = self.constants[ins[0]]
        bare = frozenset().union(*(self.bare.get(v, ()) for v in ins))
        activated = frozenset().union(*(self.activated.get(v, ()) for v in ins))
        if not bare and not activated:
            return
        if any(k in eqn.params for k in CALL_KEYS):
            if isinstance(eqn.params.get("name"), str):
                self._record(bare | activated, Applied(eqn.params["name"], None, where, True))
            return
        biased = all(v in self.bare or origins(v) for v in ins)
        if name in BIAS_ADDS and bare and not activated and biased:
            self.g.layer_biases.update(params)
            self._mark(eqn, self.bare, bare | params)
        elif name in CARRIES:
            self._mark(eqn, self.activated if activated else self.bare, bare | activated)
        else:
            self._record(bare | activated, Applied(name, self._constant(eqn), where))
            tracked = [v for v in ins if v in self.bare or v in self.activated]
            if all(_shape(out) == _shape(tracked[0]) for out in eqn.outvars):
                self._mark(eqn, self.activated, bare | activated)

    def _constant(self, eqn: jcore.JaxprEqn) -> float | None:
        """The scalar constant an operation takes beside its other operand, or None."""
        for v in eqn.invars:
            if isinstance(v, jcore.Literal) and _shape(v) == ():
                value = v.val
            elif not isinstance(v, jcore.Literal) and v in self.constants:
                value = self.constants[v]
            else:
                continue
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
        return None

    def _mark(self, eqn: jcore.JaxprEqn, table: dict, leaves: frozenset) -> None:
        for out in eqn.outvars:
            table[out] = leaves

    def _record(self, leaves, applied: Applied) -> None:
        for leaf in leaves:
            self.g.applied.setdefault(leaf, []).append(applied)
