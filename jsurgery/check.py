"""Function-preservation checker: the largest output difference on the old input subspace."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from jsurgery import ids
from jsurgery.plan import Plan


@dataclass(frozen=True)
class PreservationReport:
    """How far the new network is from the old one on old inputs and old outputs.

    Attributes:
        max_abs_diff: the largest |new - old| over the batch and the compared outputs.
        per_output: `{output_id: largest |new - old|}`.
        compared: output IDs present in both networks.
        new_outputs: output IDs only the new network has (not compared).
        batch: number of inputs checked.
    """

    max_abs_diff: float
    per_output: dict
    compared: tuple
    new_outputs: tuple
    batch: int

    def ok(self, atol: float = 1e-5) -> bool:
        """True when every compared output is within `atol`."""
        return self.max_abs_diff <= atol

    def __str__(self) -> str:
        worst = max(self.per_output, key=self.per_output.get) if self.per_output else None
        text = (f"largest output difference {self.max_abs_diff:.3g} over {self.batch} inputs and "
                f"{len(self.compared)} old outputs")
        if worst is not None:
            text += f" (worst: {worst!r})"
        if self.new_outputs:
            text += f"; new outputs not compared: {list(self.new_outputs)}"
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
    zeros for new features: the old input subspace); the outputs whose IDs both networks have are
    compared.

    Args:
        old_apply: `old_apply(old_params, x) -> outputs`, features and outputs on the last axis.
        old_params: the old tree.
        new_apply: `new_apply(new_params, x) -> outputs`.
        new_params: the transplanted tree.
        x_old: a batch of inputs of the old network (features on the last axis: channels for
            images).
        plan: the plan that made `new_params`.

    Returns:
        A `PreservationReport`; `report.ok(atol)` says whether the function was preserved.
    """
    y_old = np.asarray(old_apply(old_params, jnp.asarray(x_old)))
    y_new = np.asarray(new_apply(new_params, plan.embed_inputs(x_old)))
    o_old, o_new = plan.outputs
    src = ids.index_of(o_new, o_old)
    keep = np.flatnonzero(src >= 0)
    diff = np.abs(y_new[..., keep].astype(np.float64) - y_old[..., src[keep]].astype(np.float64))
    diff = diff.reshape(-1, len(keep))
    per_output = {o_new[k]: float(diff[:, j].max(initial=0.0)) for j, k in enumerate(keep)}
    return PreservationReport(
        max_abs_diff=float(diff.max(initial=0.0)),
        per_output=per_output,
        compared=tuple(o_new[k] for k in keep),
        new_outputs=tuple(o_new[k] for k in np.flatnonzero(src < 0)),
        batch=int(np.prod(y_old.shape[:-1])),
    )
