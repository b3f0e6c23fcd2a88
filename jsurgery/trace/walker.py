"""The walker: a jaxpr's equations, in order, each handed to the rule of its primitive.

For each variable it keeps the unit-space node of every axis (`nodes`), which parameter leaves it
views and through which of their axes (`origin`), which integer input it carries (`values`, for
token IDs), what it is computed from (`tags`: parameters, inputs, or neither for a constant),
the value of a scalar constant passed into a nested jaxpr (`constants`) and the axis an `iota`
counts along (`iotas`, for one-hot encodings), and where integer values were changed by
arithmetic (`shifted`). It knows no rule: it asks the `rule_for` it is
given (`registry.rule_for`) for each equation's rule, so that the registry, whose `Rule` type
names the walker, imports it and not the other way round.
"""

from __future__ import annotations

from collections.abc import Callable

from jax.extend import core as jcore

from jsurgery.errors import PlanError
from jsurgery.graph.unit_graph import READ, Graph, Role
from jsurgery.trace.layer_outputs import LayerOutputs
from jsurgery.trace.sources import origin

#: The tags of what a variable is computed from (`Walker.tags`).
PARAM, INPUT = "param", "input"


def shape(v) -> tuple:
    """The shape of a jaxpr variable or literal (`()` for a scalar without one)."""
    return tuple(getattr(v.aval, "shape", ()))


class Walker:
    """Walks jaxprs, keeping for each variable its axis nodes, which parameter leaf it views
    (`origin`: per axis, the leaf axes it holds), which integer input it carries (`values`),
    what it is computed from (`tags`), the value of a scalar constant (`constants`), the
    axis an iota counts along (`iotas`) and the arithmetic that changed integer values
    (`shifted`: variable -> the operation, for messages).

    Args:
        graph: the graph the walk fills.
        rule_for: the rule of an equation (`jsurgery.trace.registry.rule_for`); a rule is called
            as `rule(walker, eqn, where)`.
    """

    def __init__(
        self,
        graph: Graph,
        rule_for: Callable[[jcore.JaxprEqn], Callable[[Walker, jcore.JaxprEqn, str], None]],
    ):
        self.g = graph
        self.rule_for = rule_for
        self.nodes: dict = {}
        self.origin: dict = {}
        self.values: dict = {}
        self.tags: dict = {}
        self.constants: dict = {}
        self.iotas: dict = {}
        self.shifted: dict = {}
        self.squares: dict = {}
        self.layer_outputs = LayerOutputs(graph)
        self.step = 0
        self.context = ""  # where the call a nested jaxpr came from is (`origin`)
        self.scope = ""  # the name stack of that call
        self.layer_names: frozenset = frozenset()  # `sources.path_runs` of the leaves' paths

    # -- variables -----------------------------------------------------------------------------
    def of(self, v) -> list:
        """The nodes of `v`'s axes (new ones for a literal or a variable not seen yet)."""
        if isinstance(v, jcore.Literal):
            return [self.g.node(d) for d in getattr(v.aval, "shape", ())]
        if v not in self.nodes:
            self.nodes[v] = [self.g.node(d) for d in v.aval.shape]
        return self.nodes[v]

    def fresh(self, v) -> list:
        """Gives `v` new nodes, one per axis, and returns them."""
        self.nodes[v] = [self.g.node(d) for d in v.aval.shape]
        return self.nodes[v]

    def bind(self, inner, outer) -> None:
        """Binds an inner jaxpr variable to an outer one (same nodes, origin, values, tags,
        constant value and iota axis)."""
        self.nodes[inner] = self.of(outer)
        self.tags[inner] = self.depends(outer)
        self.layer_outputs.bind(inner, outer)
        if isinstance(outer, jcore.Literal):
            if not getattr(outer.aval, "shape", ()):
                self.constants[inner] = outer.val
            return
        for table in (self.origin, self.values, self.constants, self.iotas, self.shifted):
            if outer in table:
                table[inner] = table[outer]

    def mix_tags(self, inner: list, outer: list) -> None:
        """Tags each inner variable with what any outer one is computed from (a loop's body,
        whose carry after one step holds what the consts and inputs make of it)."""
        tags = frozenset().union(*(self.depends(v) for v in outer))
        for v in inner:
            self.tags[v] = tags

    def depends(self, v) -> frozenset:
        """What `v` is computed from: `PARAM`, `INPUT`, both, or neither (a constant)."""
        if isinstance(v, jcore.Literal):
            return frozenset()
        return self.tags.get(v, frozenset())

    def constant(self, v):
        """The value of a scalar constant (a literal, or one passed into a nested jaxpr), or
        None."""
        if isinstance(v, jcore.Literal):
            return v.val if not getattr(v.aval, "shape", ()) else None
        return self.constants.get(v)

    def carry_values(self, out, v) -> None:
        """`out` carries the integer input `v` carries (token IDs cut, padded or moved)."""
        if not isinstance(v, jcore.Literal) and v in self.values:
            self.values[out] = self.values[v]
            if v in self.shifted:
                self.shifted[out] = self.shifted[v]

    def opaque(self, eqn: jcore.JaxprEqn, where: str) -> None:
        """Marks every axis of the equation's operands and results as opaque; on constants
        only (a table built inside the function with `.at[].set`), its results are a constant
        instead (`Graph.constant`): new axes whose entries do not follow units."""
        if not any(self.depends(v) for v in eqn.invars):
            for out in eqn.outvars:
                for n in self.fresh(out):
                    self.g.mark_constant(n, eqn.primitive.name, where)
            return
        for v in eqn.invars:
            for n in self.of(v):
                self.g.mark_opaque(n, eqn.primitive.name, where)
        for out in eqn.outvars:
            for n in self.fresh(out):
                self.g.mark_opaque(n, eqn.primitive.name, where)

    def source(self, eqn: jcore.JaxprEqn) -> str:
        """Where an equation comes from in the user's code (`sources.origin`: its source line,
        or the user's layer and line for one made inside a library), or "" when unknown."""
        return origin(eqn, self.layer_names, self.scope)

    # -- walking -------------------------------------------------------------------------------
    def walk(self, jaxpr, invars_outer: list, loop: bool = False) -> list:
        """Walks `jaxpr` with its invars bound to `invars_outer`; returns its outvars. The
        body of a loop (`loop`) is walked once: each of its invars may then hold what any
        operand is computed from (`tags`)."""
        if isinstance(jaxpr, jcore.ClosedJaxpr):
            jaxpr = jaxpr.jaxpr
        for c in jaxpr.constvars:
            self.fresh(c)
        if len(jaxpr.invars) != len(invars_outer):
            raise PlanError("internal tracing error: a nested jaxpr has a different arity.")
        for inner, outer in zip(jaxpr.invars, invars_outer, strict=True):
            self.bind(inner, outer)
        if loop:
            self.mix_tags(jaxpr.invars, invars_outer)
        for eqn in jaxpr.eqns:
            self.equation(eqn)
        return list(jaxpr.outvars)

    def equation(self, eqn: jcore.JaxprEqn) -> None:
        """Records the first use of the leaves the equation reads, applies its rule, then
        records what it applies to a layer's output (`LayerOutputs`)."""
        self.step += 1
        for v in eqn.invars:
            for _, leaf in self.origins(v):
                if self.g.first_use[leaf] is None:
                    self.g.first_use[leaf] = self.step
        name = eqn.primitive.name
        where = f"{name} {self.source(eqn) or self.context or 'at an unknown source'}"
        self.rule_for(eqn)(self, eqn, where)
        tags = frozenset().union(*(self.depends(v) for v in eqn.invars))
        for out in eqn.outvars:
            self.tags[out] = self.tags.get(out, frozenset()) | tags
        self.layer_outputs.step(self.origins, eqn, where)

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

    def set_role(self, v, axis: int, role: Role) -> None:
        """Sets the role of the leaf axes `v`'s axis holds, unless they already read."""
        for per_axis, leaf in self.origins(v):
            for a in per_axis[axis]:
                if self.g.leaf_roles[leaf][a] != READ:
                    self.g.leaf_roles[leaf][a] = role
