"""Function-preservation checker: the largest output difference on the old input subspace."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from jsurgery import ids
from jsurgery.errors import PlanError
from jsurgery.plan.plan import Plan, old_input_problem
from jsurgery.plan.promise import with_measured
from jsurgery.verify import measure, spec_of


@dataclass(frozen=True)
class PreservationReport:
    """How far the new network is from the old one on old inputs and old outputs.

    Attributes:
        max_abs_diff: the largest |new - old| over the batch and the compared outputs.
        per_output: `{output_id: largest |new - old|}`.
        compared: output IDs present in both networks.
        new_outputs: output IDs only the new network has (not compared).
        batch: number of inputs checked.
        promises: the plan's promises (`Plan.promises`), each with the difference measured on
            these inputs.
    """

    max_abs_diff: float
    per_output: dict
    compared: tuple
    new_outputs: tuple
    batch: int
    promises: tuple = ()

    @property
    def broken(self) -> tuple:
        """The exact and start promises these inputs break (`Promise.broken`)."""
        return tuple(p for p in self.promises if p.broken)

    def ok(self, atol: float = 1e-5) -> bool:
        """True when every compared output is within `atol`."""
        return self.max_abs_diff <= atol

    def __str__(self) -> str:
        worst = max(self.per_output, key=self.per_output.get) if self.per_output else None
        text = (
            f"largest output difference {self.max_abs_diff:.3g} over {self.batch} inputs and "
            f"{len(self.compared)} old outputs"
        )
        if worst is not None:
            text += f" (worst: {worst!r})"
        if self.new_outputs:
            text += f"; new outputs not compared: {list(self.new_outputs)}"
        for p in self.broken:
            text += f"; broken promise: {p}"
        return text


def check_preservation(
    old_apply: Callable,
    old_params,
    new_apply: Callable,
    new_params,
    x_old,
    plan: Plan,
) -> PreservationReport:
    """Compares the old and new networks on a batch of old inputs.

    The new network sees `x_old` embedded in its input space (old features at their new positions,
    zeros for new features: the old input subspace); the old network sees it with the removed
    inputs held at their values (`make_plan(removed_inputs=...)`, `Plan.hold_removed`); the
    outputs whose IDs both networks have are compared.

    Args:
        old_apply: `old_apply(old_params, x) -> outputs`, features and outputs on the last axis.
        old_params: the old tree.
        new_apply: `new_apply(new_params, x) -> outputs`.
        new_params: the transplanted tree.
        x_old: a batch of inputs of the old network (features on the last axis: channels for
            images); for a traced plan, the old function's positional inputs (an array or a
            tuple), embedded on the unit axis the trace found, and every output (all heads)
            is compared, by ID on its last axis, as a whole where it has no unit axis.
        plan: the plan that made `new_params`.

    Returns:
        A `PreservationReport`; `report.ok(atol)` says whether the function was preserved.
    """
    _check_old_inputs(x_old, plan)
    if plan.output_specs:
        return _check_traced(old_apply, old_params, new_apply, new_params, x_old, plan)
    y_old = np.asarray(old_apply(old_params, _held(plan, jnp.asarray(x_old))))
    y_new = np.asarray(new_apply(new_params, plan.embed_inputs(x_old)))
    diff, per_output, compared, new_outputs = _compare(y_old, y_new, plan.outputs, None)
    return PreservationReport(
        max_abs_diff=max(per_output.values(), default=0.0),
        per_output=per_output,
        compared=compared,
        new_outputs=new_outputs,
        batch=int(np.prod(y_old.shape[:-1])),
        promises=_measured(plan, [y_old], [y_new]),
    )


def _measured(plan: Plan, y_old: list, y_new: list) -> tuple:
    """The plan's promises, each with the difference these outputs show."""
    found = [measure(p, y_old, y_new, spec_of(plan, p.output)) for p in plan.promises]
    return with_measured(plan.promises, [(d, t) for d, _, t in found])


def _check_old_inputs(x_old, plan: Plan) -> None:
    """Refuses `x_old` that is not the old network's inputs (inputs of the new width, say)."""
    several = plan.output_specs and isinstance(x_old, (tuple, list))
    problem = old_input_problem(plan, tuple(x_old) if several else (x_old,))
    if problem:
        raise PlanError(
            f"`check_preservation`: {problem}; `x_old` must be the old network's inputs: "
            "check_preservation runs the old network on them and embeds them in the new input "
            "space itself (`plan.embed_inputs`) for the new network."
        )


def _compare(y_old, y_new, spec, head, axis=-1):
    """Largest differences per shared output unit (or per whole output when it has no unit
    axis), keyed by ID, or by `(head, ID)` for a function with several outputs."""
    key = (lambda u: u) if head is None else (lambda u: (head, u))
    if spec is None:
        d = float(
            np.abs(np.asarray(y_new, np.float64) - np.asarray(y_old, np.float64)).max(initial=0.0)
        )
        return d, {key("all"): d}, (key("all"),), ()
    o_old, o_new = spec
    y_old, y_new = np.moveaxis(y_old, axis, -1), np.moveaxis(y_new, axis, -1)
    src = ids.index_of(o_new, o_old)
    keep = np.flatnonzero(src >= 0)
    diff = np.abs(y_new[..., keep].astype(np.float64) - y_old[..., src[keep]].astype(np.float64))
    diff = diff.reshape(-1, len(keep))
    per = {key(o_new[k]): float(diff[:, j].max(initial=0.0)) for j, k in enumerate(keep)}
    return (
        float(diff.max(initial=0.0)),
        per,
        tuple(key(o_new[k]) for k in keep),
        tuple(key(o_new[k]) for k in np.flatnonzero(src < 0)),
    )


def _held(plan: Plan, *x_old):
    """The old inputs with the plan's removed inputs held at their values (none: unchanged)."""
    if not plan.removed:
        return x_old[0] if len(x_old) == 1 else x_old
    return plan.hold_removed(*x_old)


def _check_traced(old_apply, old_params, new_apply, new_params, x_old, plan):
    import jax

    args = tuple(x_old) if isinstance(x_old, (tuple, list)) else (x_old,)
    embedded = plan.embed_inputs(*args)
    embedded = embedded if len(args) > 1 else (embedded,)
    held = _held(plan, *args) if len(args) > 1 else (_held(plan, *args),)
    y_old = jax.tree_util.tree_leaves(old_apply(old_params, *held))
    y_new = jax.tree_util.tree_leaves(new_apply(new_params, *embedded))
    if len(y_old) != len(y_new) or len(y_new) != len(plan.output_specs):
        raise PlanError(
            f"`check_preservation`: the functions return {len(y_old)} and {len(y_new)} arrays; "
            f"the plan was made for {len(plan.output_specs)}."
        )
    head = None if len(y_new) == 1 else 0
    per_output, compared, new_outputs = {}, (), ()
    for k, (a, b, spec) in enumerate(zip(y_old, y_new, plan.output_specs, strict=True)):
        pair = None if spec is None else spec[1:]
        _, per, comp, new = _compare(
            np.asarray(a), np.asarray(b), pair, None if head is None else k, spec[0] if spec else -1
        )
        per_output.update(per)
        compared += comp
        new_outputs += new
    return PreservationReport(
        max_abs_diff=max(per_output.values(), default=0.0),
        per_output=per_output,
        compared=compared,
        new_outputs=new_outputs,
        batch=int(np.asarray(y_old[0]).shape[0]) if np.ndim(y_old[0]) else 1,
        promises=_measured(plan, y_old, y_new),
    )
