"""The unit-space graph: every axis of every parameter, input and output belongs to a space.

A *node* stands for one axis of one array in a traced computation. Nodes that must hold the same
units (the two operands of an add, a kernel's input axis and the activation it contracts with, a
norm's scale and the features it scales) are *tied*: they fall in one class of a union-find, and
such a class is a **unit space**. A space can also be *composite*: a `concat` of segments (a
concatenation, the slices of a fused kernel) or a `product` of factors (a flatten of
`(h, w, channel)`, rows in that order).

The graph also records, per space, the operations that mix its units (a sum, a max, a softmax over
them: `cross`), the operations the planner could not give axis roles to (`opaque`), and per
parameter axis whether the parameter *reads* the space (it is contracted there, like a kernel's
input axis), *writes* it (a kernel's output axis, a bias, a scale) or is a convolution *window*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from jsurgery.errors import PlanError


class Role(StrEnum):
    """What a parameter axis does with the unit space it lies in."""

    READ = "read"  # contracted with an activation there (a kernel's input axis)
    WRITE = "write"  # writes the space's units (a kernel's output axis, a bias, a norm's scale)
    WINDOW = "window"  # a convolution's window: positions, not units


READ, WRITE, WINDOW = Role.READ, Role.WRITE, Role.WINDOW

#: How a composite space is made of others: segments side by side, or factors in C order.
CompositeKind = Literal["concat", "product"]


@dataclass
class Graph:
    """A traced unit-space graph.

    Attributes:
        leaf_axes: per parameter leaf (flat order), the node of each axis.
        leaf_roles: per parameter leaf, READ / WRITE / WINDOW for each axis.
        first_use: per parameter leaf, the index of the first equation that reads it (None when
            the function never reads it).
        additive: parameter leaves that are added to an activation (biases).
        input_axes: per input leaf, the node of each axis.
        input_values: `{input index: node}` of integer inputs used as indices (token IDs) or
            one-hot encoded (actions).
        value_constants: `{input index: [(value, source)]}` constant IDs the function puts
            among an integer input's values (the pad token of a shifted sequence).
        shifted_one_hots: `{input index: (operation, width)}` one-hot encodings of an integer
            input whose values were changed by arithmetic first (`one_hot(a - 1, n)`), left
            by position.
        output_axes: per output leaf, the node of each axis.
        cross: `{node: [(primitive, source)]}` operations that mix the units of a space.
        moments: `{node: {(moment, activated)}}` sums over a space's units: of the values
            ("first") or their squares ("second"), and whether the values went through an
            activation after the layer that wrote them (a norm's statistics; `norm_kind`).
        layer_biases: parameter leaves added to a layer's contraction (a Dense's bias), as
            opposed to other added leaves (a norm's bias).
        opaque: `{node: (primitive, source)}` operations the planner cannot follow.
        constant: `{node: (primitive, source)}` arrays built inside the function from
            constants only (a positional table made with `.at[].set`) that reach a space: their
            entries are fixed per position, so they do not follow units that move.
        out_tree: the pytree structure of the function's output.
        carry: the function's carry (`jsurgery.graph.carry.Carry`: an argument returned as one of
            its outputs, a recurrent cell's step), or None.
        carried: the nodes of the carry's axes, once tied across the step
            (`jsurgery.graph.carry.tie_carry`).
        applied: `{leaf: [Applied]}`, per parameter leaf of a layer (a kernel contracted, a bias
            added), the operations applied to the layer's output before the next layer reads it
            (`jsurgery.graph.follows`).
        split: nodes made by a reshape that splits one axis into several (GroupNorm's groups and
            group width, heads and head width), as opposed to axes merged by a flatten.
    """

    parent: list = field(default_factory=list)
    size: list = field(default_factory=list)
    composite: dict = field(default_factory=dict)
    leaf_axes: list = field(default_factory=list)
    leaf_roles: list = field(default_factory=list)
    first_use: list = field(default_factory=list)
    additive: set = field(default_factory=set)
    input_axes: list = field(default_factory=list)
    input_values: dict = field(default_factory=dict)
    value_constants: dict = field(default_factory=dict)
    shifted_one_hots: dict = field(default_factory=dict)
    output_axes: list = field(default_factory=list)
    cross: dict = field(default_factory=dict)
    moments: dict = field(default_factory=dict)
    layer_biases: set = field(default_factory=set)
    opaque: dict = field(default_factory=dict)
    constant: dict = field(default_factory=dict)
    out_tree: object = None
    carry: object = None
    carried: list = field(default_factory=list)
    split: set = field(default_factory=set)
    applied: dict = field(default_factory=dict)

    @property
    def carry_leaves(self) -> int:
        """How many leaves the carry has (0 without one)."""
        return len(self.carry.input_leaves) if self.carry is not None else 0

    def node(self, size: int) -> int:
        """A new node for an axis of `size` entries."""
        self.parent.append(len(self.parent))
        self.size.append(int(size))
        return len(self.parent) - 1

    def find(self, n: int) -> int:
        root = n
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[n] != root:
            self.parent[n], n = root, self.parent[n]
        return root

    def tie(self, a: int, b: int, where: str = "") -> None:
        """Puts `a` and `b` in one space (merging their segmentations, if any)."""
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return
        if self.size[ra] != self.size[rb]:
            raise PlanError(
                f"internal tracing error at {where}: tied axes of {self.size[ra]} and "
                f"{self.size[rb]} units."
            )
        ca, cb = self.composite.pop(ra, None), self.composite.pop(rb, None)
        self.parent[rb] = ra
        if rb in self.cross:
            self.cross.setdefault(ra, []).extend(self.cross.pop(rb))
        if rb in self.moments:
            self.moments.setdefault(ra, set()).update(self.moments.pop(rb))
        for marks in (self.opaque, self.constant):
            if rb in marks:
                marks.setdefault(ra, marks.pop(rb))
        self._merge_composites(ra, ca, cb, where)

    def _merge_composites(self, root: int, ca, cb, where: str) -> None:
        if ca is None or cb is None:
            if ca or cb:
                self.composite[root] = ca or cb
            return
        self.composite[root] = ca
        same = ca[0] == cb[0] and [self.size[p] for p in ca[1]] == [self.size[p] for p in cb[1]]
        if not same:
            self.opaque.setdefault(root, ("incompatible segmentations", where))
            return
        for pa, pb in zip(ca[1], cb[1], strict=True):
            self.tie(pa, pb, where)

    def define(self, n: int, kind: CompositeKind, parts: list, where: str = "") -> None:
        """Declares the space of `n` a `concat` of segments or a `product` of factors."""
        parts = [p for p in parts if self.size[p] != 1] if kind == "product" else parts
        if len(parts) == 1:
            self.tie(n, parts[0], where)
            return
        r = self.find(n)
        old = self.composite.pop(r, None)
        self._merge_composites(r, (kind, tuple(parts)), old, where)

    def mark_cross(self, n: int, primitive: str, source: str) -> None:
        self.cross.setdefault(self.find(n), []).append((primitive, source))

    def mark_moment(self, n: int, moment: str, activated: bool) -> None:
        self.moments.setdefault(self.find(n), set()).add((moment, activated))

    def norm_kind(self, n: int) -> str | None:
        """"layer" or "rms" for a space a norm reads straight from the layers that write it
        (LayerNorm: a sum of the values and of their squares; RMSNorm: of the squares only),
        None otherwise: no norm, another op mixing the units (a softmax's max), or a norm
        reading the values through an activation (relu, then a norm), whose statistics no
        choice of new weights keeps."""
        root = self.find(n)
        moments = self.moments.get(root, set())
        if not any(m == "second" for m, _ in moments):
            return None
        if any(p != "reduce_sum" for p, _ in self.cross.get(root, [])):
            return None
        first = [activated for m, activated in moments if m == "first"]
        if first:
            return None if any(first) else "layer"
        return None if any(a for _, a in moments) else "rms"

    def mark_opaque(self, n: int, primitive: str, source: str) -> None:
        self.opaque.setdefault(self.find(n), (primitive, source))

    def mark_constant(self, n: int, primitive: str, source: str) -> None:
        self.constant.setdefault(self.find(n), (primitive, source))

    def split_product(self, parts) -> bool:
        """Whether a composite `(kind, parts)` is a product of factors that a reshape split out
        of one axis (groups x group width, heads x head width), not a flatten."""
        split = {self.find(n) for n in self.split}
        return parts[0] == "product" and all(self.find(p) in split for p in parts[1])

    def parts(self, n: int):
        """`(kind, part nodes)` of a composite space, or None."""
        return self.composite.get(self.find(n))

    def crosses(self, n: int) -> list:
        return self.cross.get(self.find(n), [])

    def opaque_at(self, n: int):
        return self.opaque.get(self.find(n))

    def constant_at(self, n: int):
        return self.constant.get(self.find(n))

    def param_spaces(self) -> set:
        """The roots of the spaces that some parameter axis lies in directly (windows excluded)."""
        return {
            self.find(a)
            for axes, roles in zip(self.leaf_axes, self.leaf_roles, strict=True)
            for a, r in zip(axes, roles, strict=True)
            if r != WINDOW
        }
