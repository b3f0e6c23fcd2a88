"""The Plan: a static surgery plan of index arrays, printable leaf by leaf."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

import numpy as np

from jsurgery import ids
from jsurgery.errors import PlanError
from jsurgery.graph.carry import Carry
from jsurgery.plan.data import Held, LeafPlan
from jsurgery.plan.promise import Promise
from jsurgery.plan.report import render

#: How layers were matched: by path name, or by the smallest edit of the layer sequences.
Matching = Literal["name", "structure"]


@dataclass(frozen=True, eq=False)
class Plan:
    """A static surgery plan; hashable by identity, so `transplant` compiles once per plan.

    `print(plan)` gives the leaf-by-leaf report.

    Attributes:
        leaves: one `LeafPlan` per leaf of the new tree, in forward order.
        old_leaves: `(path, shape, dtype)` of each old leaf.
        inputs: `(old_ids, new_ids)` of the input features.
        outputs: `(old_ids, new_ids)` of the output units.
        layer_map: `{new layer: old layer or None}`.
        warnings: things the user should know before training.
        input_specs: per input of a traced plan, `(axis, old_ids, new_ids)` (axis "values" for
            token inputs), or None for an input without units; a params-only plan has the
            spec of its one input only when it is tokens (its first layer an embedding).
        output_specs: per output of a traced plan, `(axis, old_ids, new_ids)` (the axis its
            units lie on) or None for an output without units.
        carry: the traced function's carry (`jsurgery.graph.carry.Carry`: which argument comes back
            as which output, and their leaves), or None; `transplant_carry` reads it.
        promises: per output, what the plan promises for its old and new units on old inputs
            placed in the new input space (`jsurgery.plan.promise.Promise`), with the
            difference measured when the plan was verified.
        verified: whether `make_plan` ran both networks to check the promises, and what it found
            (or why it could not).
        removed: the old inputs the new network lacks that are held at values and folded into
            the biases of the layers reading them (`jsurgery.plan.data.Held`, from
            `make_plan(removed_inputs=...)`); `hold_removed` sets them in old inputs.
    """

    leaves: tuple[LeafPlan, ...]
    old_leaves: tuple
    new_leaves: tuple
    old_kind: str
    new_kind: str
    inputs: tuple
    outputs: tuple
    layer_map: dict
    matching: Matching
    options: dict
    noise: float
    seed: int
    warnings: tuple[str, ...] = field(default=())
    input_specs: tuple = field(default=())
    output_specs: tuple = field(default=())
    carry: Carry | None = field(default=None)
    promises: tuple[Promise, ...] = field(default=())
    verified: str = field(default="not verified")
    removed: tuple[Held, ...] = field(default=())

    def __post_init__(self):
        problem = self._problem()
        if problem:
            raise PlanError(
                f"`Plan`: {problem}; the plan cannot be applied (a planner error: please report "
                "it with the call that made it)."
            )

    def _problem(self) -> str | None:
        """What makes this plan inconsistent with its own trees, or None."""
        if self.matching not in get_args(Matching):
            return f"matching {self.matching!r} is not one of {get_args(Matching)}"
        if [lp.path for lp in self.leaves] != [p for p, _, _ in self.new_leaves]:
            return "its leaf plans are not one per new leaf, in the new tree's order"
        for lp, (_, shape, _) in zip(self.leaves, self.new_leaves, strict=True):
            if tuple(lp.shape) != tuple(shape):
                return f"leaf plan {lp.path} has shape {lp.shape}, the new leaf {shape}"
            if lp.old_path is None:
                continue
            if not 0 <= lp.old_index < len(self.old_leaves):
                return f"leaf plan {lp.path} reads old leaf {lp.old_index}, which does not exist"
            old_path, old_shape, _ = self.old_leaves[lp.old_index]
            if (old_path, tuple(old_shape)) != (lp.old_path, tuple(lp.old_shape)):
                return f"leaf plan {lp.path} names old leaf {lp.old_path} but reads {old_path}"
        if not all(isinstance(w, str) for w in self.warnings):
            return "its warnings are not all text"
        if not all(isinstance(p, Promise) for p in self.promises):
            return "its promises are not all Promise records"
        if not all(isinstance(h, Held) for h in self.removed):
            return "its removed inputs are not all Held records"
        return None

    def __str__(self) -> str:
        return render(self)

    def embed_inputs(self, *x_old):
        """Places old inputs in the new input space: old features at their new positions (on
        each input's unit axis; token IDs renumbered), zeros for new features. With several
        inputs, pass them all and get a tuple back.

        Raises:
            PlanError: for an input that is not one of the old network's: another number of
                features on its unit axis, or token IDs outside the old vocabulary.
        """
        problem = old_input_problem(self, x_old)
        if problem:
            raise PlanError(
                f"`embed_inputs`: {problem}; pass the old network's inputs (it places them in "
                "the new input space)."
            )
        specs = _specs(self)
        out = tuple(_embed(x, spec) for x, spec in zip(x_old, specs, strict=True))
        return out[0] if len(out) == 1 else out

    def hold_removed(self, *x_old):
        """The old inputs with each removed input (`make_plan(removed_inputs=...)`) set to the
        value it is held at: the new network on the kept inputs computes the old function of
        these. Inputs come back unchanged where none was removed; with several inputs, pass
        them all and get a tuple back.

        Raises:
            PlanError: for an input that is not one of the old network's.

        Example:
            >>> import jax, jax.numpy as jnp, flax.linen as nn, jsurgery
            >>> old = nn.Dense(2).init(jax.random.key(0), jnp.ones((1, 3)))
            >>> new = nn.Dense(2).init(jax.random.key(1), jnp.ones((1, 2)))
            >>> plan = jsurgery.make_plan(old, new, inputs=(["a", "b", "c"], ["a", "c"]),
            ...                           removed_inputs={"b": 0.5})
            >>> plan.hold_removed(jnp.ones((1, 3)))
            Array([[1. , 0.5, 1. ]], dtype=float32)
        """
        import jax.numpy as jnp

        problem = old_input_problem(self, x_old)
        if problem:
            raise PlanError(f"`hold_removed`: {problem}; pass the old network's inputs.")
        out = [jnp.asarray(x) for x in x_old]
        for h in self.removed:
            x = out[h.input]
            where = [slice(None)] * x.ndim
            where[h.axis] = h.position
            out[h.input] = x.at[tuple(where)].set(jnp.asarray(h.value, x.dtype))
        return out[0] if len(out) == 1 else tuple(out)


def _specs(plan: Plan) -> tuple:
    """`(axis, old_ids, new_ids)` per input (a params-only plan's one input: the last axis)."""
    return plan.input_specs or ((-1, *plan.inputs),)


def old_input_problem(plan: Plan, x_old: tuple) -> str | None:
    """What makes the arrays `x_old` not the old network's inputs for `plan`, or None: their
    count, the width of an input's unit axis, token IDs that are not integers in the old
    vocabulary (checked where the values are known, not under `jit`)."""
    import jax

    specs = _specs(plan)
    if len(x_old) != len(specs):
        return f"expected {len(specs)} inputs, got {len(x_old)}"
    for k, (x, spec) in enumerate(zip(x_old, specs, strict=True)):
        if spec is None:
            continue
        axis, old_ids, _ = spec
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        which = f"input {k}" if len(specs) > 1 else "the input"
        if axis == "values":
            problem = _token_problem(x, len(old_ids))
            if problem:
                return f"{which}: {problem}"
        elif not -x.ndim <= axis < x.ndim or x.shape[axis] != len(old_ids):
            got = f"{x.shape[axis]}" if -x.ndim <= axis < x.ndim else "no"
            return (
                f"{which} has {got} features on axis {axis} (shape {tuple(x.shape)}); the old "
                f"network takes {len(old_ids)} there"
            )
    return None


def _token_problem(tokens, vocab: int) -> str | None:
    import jax

    if not np.issubdtype(tokens.dtype, np.integer):
        return f"token IDs are {tokens.dtype}; they must be integers in [0, {vocab})"
    if isinstance(tokens, jax.core.Tracer) or tokens.size == 0:
        return None
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab:
        bad = low if low < 0 else high
        return f"token ID {bad} is outside the old vocabulary [0, {vocab})"
    return None


def _embed(x_old, spec):
    import jax.numpy as jnp

    x_old = jnp.asarray(x_old)
    if spec is None:
        return x_old
    axis, old_ids, new_ids = spec
    if axis == "values":
        where = ids.index_of(old_ids, new_ids)
        return jnp.asarray(where)[x_old]
    src = ids.index_of(new_ids, old_ids)
    x = jnp.take(x_old, np.where(src >= 0, src, 0), axis=axis)
    shape = [-1 if a == axis % x.ndim else 1 for a in range(x.ndim)]
    return jnp.where(np.reshape(src >= 0, shape), x, jnp.zeros((), x.dtype))
