"""`identity()`, `identity_corner()`: an inserted layer passes its input through."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jsurgery.errors import PlanError
from jsurgery.graph.follows import describe, idempotent, is_stand_in, known_to_move
from jsurgery.graph.unit_graph import READ, WINDOW, WRITE
from jsurgery.init.base import LayerRule, NewLeaf
from jsurgery.init.zero_branch import KeptTemplate
from jsurgery.plan.data import LeafPlan

#: What keeps the old function where an identity start does not.
EXACT_INSTEAD = (
    "Exact instead: a zero residual branch (an inserted layer whose output is added to the "
    "stream, x + layer(x), its last layer starting at zero), or growing width with "
    "new_hidden='zero_fanout' rather than inserting depth."
)


def activation_warning(leaf: NewLeaf) -> str | None:
    """Why an identity kernel is not known to be exact: the layer's output goes through `f`
    where the old network had its input `x`, itself the output of `f` one layer earlier, so
    the start is exact only where `f(f(x)) == f(x)` (no activation, relu, a clip)."""
    if is_stand_in(leaf.applied):
        return (
            f"{leaf.label}: its identity start is exact only if the activation after it is "
            "idempotent (relu: relu(relu(x)) == relu(x)) or the layer is linear; the parameters "
            "alone do not say which activation the network uses, and before tanh, GELU, SiLU, "
            "sigmoid or ELU the old outputs move. Pass apply= and example= to have it checked. "
            + EXACT_INSTEAD
        )
    if idempotent(leaf.applied):
        return _input_warning(leaf)
    name = describe(leaf.applied)
    if known_to_move(leaf.applied):
        why = "which applied twice is not applied once (f(f(x)) != f(x)), so the old outputs move"
        head = "is not exact"
    else:
        why = "which the planner cannot tell to be idempotent (f(f(x)) == f(x))"
        head = "is not known to be exact"
    return (
        f"{leaf.label}: its identity start {head}: the layer's output goes through {name}, "
        f"{why}; an identity start is exact before relu, a clip or no activation (check_"
        "preservation tells). " + EXACT_INSTEAD
    )


def _input_warning(leaf: NewLeaf) -> str | None:
    """With an idempotent activation `f` after the layer, the start is exact only where its
    inputs are already outputs of `f` (relu after relu): not where they come from another
    activation (relu after tanh or a norm) or from the network's inputs."""
    after = _signature(leaf.applied)
    if not after or (leaf.applied_before is not None and _signature(leaf.applied_before) == after):
        return None
    source = (
        "the network's inputs"
        if leaf.applied_before is None
        else "the previous layer, without activation"
        if not leaf.applied_before
        else f"the previous layer through {describe(leaf.applied_before)}"
    )
    return (
        f"{leaf.label}: its identity start is not known to be exact: the layer's output goes "
        f"through {describe(leaf.applied)}, which keeps only the values it would produce "
        f"itself, and the layer's inputs come from {source}, which may lie outside them, so the "
        "old outputs may move. " + EXACT_INSTEAD
    )


def _signature(applied) -> tuple:
    return tuple((a.op, a.constant) for a in applied if not a.call)


def _writes_back(leaf: NewLeaf) -> bool:
    """Whether a weight writes only spaces of the old network, reading none of them (the last
    layer of a new residual branch: its output is added to the stream it does not read)."""
    reads, writes, old = leaf.axes(READ), leaf.axes(WRITE), leaf.old_spaces
    written = {old[w] for w in writes}
    return (
        bool(reads)
        and bool(writes)
        and None not in written
        and not written & {old[r] for r in reads}
    )


def _zeros(leaf: NewLeaf, note: str) -> LeafPlan:
    return LeafPlan(leaf.path, None, -1, leaf.shape, None, "identity", identity=(), note=note)


@dataclass(frozen=True)
class Identity(LayerRule):
    """Inserted layers: a Dense kernel is the identity on the units it passes through, a Conv
    kernel a centred Dirac (odd windows), a bias zero. Exact for ReLU networks (inputs to the
    inserted layer are non-negative) with 'SAME' padding for convolutions, and for a layer
    without activation; before an activation that is not idempotent (tanh, GELU, SiLU) the plan
    warns, naming it (`activation_warning`).

    A new residual branch, x + block(x), starts at zero: every weight that writes into a space
    of the old network without reading that space (an attention block's output projection,
    `(heads, head_dim, features)`, an MLP's last Dense, a norm's bias at the branch's end)
    starts at zero, and the layers inside the branch (query, key and value projections, an MLP's
    first Dense, the norms before them) keep their template init, so the branch can learn. The
    planner checks on the traced function that these leaves reach the outputs only through
    zeros added to the stream (`jsurgery.init.zero_branch`), and warns where they do not (a
    zero gate, `x * block(x)`, is not `x`).

    `corner`: the Dirac one in the top-right window corner, as in the original work; it shifts
    feature maps by a pixel and is offered only for comparison.
    """

    corner: bool = False
    continue_rows = True

    def leaf_plan(self, leaf: NewLeaf) -> LeafPlan:
        reads, writes, windows = leaf.axes(READ), leaf.axes(WRITE), leaf.axes(WINDOW)
        old = leaf.old_spaces
        if len(reads) == 1 and len(writes) == 1 and 2 + len(windows) == len(leaf.shape):
            r, w = reads[0], writes[0]
            if old[w] is not None and old[w] == old[r]:
                return self._identity(leaf, r, w)
        if _writes_back(leaf):
            return _zeros(leaf, "new layer: zeros (adds nothing to an old space)")
        if leaf.additive and old and all(o is not None for o in old):
            return _zeros(leaf, "new layer: zeros")
        if any(old[w] is not None for w in writes):
            leaf.warnings.append(
                KeptTemplate(
                    f"{leaf.label} keeps its template init in a space of the old network; the "
                    "new network is not exact there.",
                    leaf.path,
                )
            )
        return leaf.template()

    def _identity(self, leaf: NewLeaf, r: int, w: int) -> LeafPlan:
        shape = leaf.shape
        where = {u: q for q, u in enumerate(leaf.unit_ids(w))}
        pairs = [(p, where[u]) for p, u in enumerate(leaf.unit_ids(r)) if u in where]
        if not pairs:
            leaf.warnings.append(f"{leaf.label}: no unit passes through it; template init.")
            return leaf.template()
        if shape[r] != shape[w]:
            leaf.warnings.append(
                f"{leaf.label}: identity init of a {shape[r]} -> {shape[w]} layer is not an "
                "exact identity."
            )
        warning = activation_warning(leaf)
        if warning:
            leaf.warnings.append(warning)
        if self.corner:
            leaf.warnings.append(
                f"{leaf.label}: the corner Dirac kernel shifts feature maps by a pixel; it is "
                "offered for comparison with the original work only."
            )
        windows = leaf.axes(WINDOW)
        index = []
        for axis in range(len(shape)):
            if axis in windows:
                index.append(np.full(len(pairs), self._at(leaf, axis, windows), np.int32))
            else:
                col = 0 if axis == r else 1
                index.append(np.asarray([pq[col] for pq in pairs], np.int32))
        source = "identity_corner" if self.corner else "identity"
        return LeafPlan(
            leaf.path,
            None,
            -1,
            shape,
            None,
            "identity",
            identity=tuple(index),
            note=f"new layer: {source}",
        )

    def _at(self, leaf: NewLeaf, axis: int, windows: list) -> int:
        """The position of the one along a window axis: the centre, or the corner."""
        size = leaf.shape[axis]
        if self.corner:
            return size - 1 if axis == windows[-1] else 0
        if size % 2 == 0:
            raise PlanError(
                f"{leaf.label}: a centred Dirac kernel needs odd windows, got {size} on axis "
                f"{axis}; pass new_layers='template' or layers={{...: None}}."
            )
        return size // 2


def identity() -> Identity:
    """Inserted layers start as identities (`new_layers`): identity kernels, centred Dirac
    convolutions, zero biases; in a new residual branch, every weight that writes into the
    stream without reading it starts at zero and the layers inside keep their template init.

    Example:
        >>> import jsurgery
        >>> jsurgery.init.identity()
        Identity(corner=False)
    """
    return Identity()


def identity_corner() -> Identity:
    """Like `identity`, with the Dirac one in the top-right window corner (the original work's
    choice, which shifts feature maps by a pixel; for comparison only).

    Example:
        >>> import jsurgery
        >>> jsurgery.init.identity_corner()
        Identity(corner=True)
    """
    return Identity(corner=True)
