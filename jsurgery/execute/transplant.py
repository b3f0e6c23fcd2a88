"""Applying a plan: a pure, jit-compiled gather/select on params, optimizer and train state."""

from __future__ import annotations

from functools import partial

import jax
import numpy as np

from jsurgery import trees
from jsurgery.errors import PlanError
from jsurgery.execute import gather
from jsurgery.plan.plan import Plan


def apply_leaves(
    plan: Plan, mode: str, old_leaves: tuple, tmpl_leaves: tuple, shardings: tuple | None = None
) -> tuple:
    """The new leaves, in the plan's order, from the old leaves and the template's (`mode`
    "params" or "moments"); not compiled: `transplant` compiles it once per plan."""
    base = jax.random.key(plan.seed)
    out = []
    for i, (lp, tmpl) in enumerate(zip(plan.leaves, tmpl_leaves, strict=True)):
        old = old_leaves[lp.old_index] if lp.old_index >= 0 else None
        if lp.fold and mode == "params":
            old = gather.folded(old, lp.fold, old_leaves)
        key = jax.random.fold_in(base, i) if plan.noise else None
        x = gather.new_leaf(lp, old, tmpl, key, mode == "moments", plan.noise)
        if shardings is not None and shardings[i] is not None:
            x = jax.lax.with_sharding_constraint(x, shardings[i])
        out.append(x)
    return tuple(out)


_apply = partial(jax.jit, static_argnums=(0, 1, 4))(apply_leaves)


def _check(plan: Plan, flat: trees.FlatTree, expected: tuple, arg: str) -> list:
    got = {p: trees.shape_dtype(v) for p, v in flat.leaves.items()}
    want = {p: (s, d) for p, s, d in expected}
    missing = [trees.path_str(p) for p in want if p not in got]
    extra = [trees.path_str(p) for p in got if p not in want]
    if missing or extra:
        raise PlanError(
            f"`{arg}` does not have the structure the plan was made for: missing leaves "
            f"{missing}, unexpected leaves {extra}; make a plan for this tree."
        )
    for p, (s, d) in want.items():
        if got[p] != (s, d):
            raise PlanError(
                f"`{arg}`: leaf {trees.path_str(p)!r} is {got[p][0]} {got[p][1]}, the plan was "
                f"made for {s} {d}; make a plan for this tree."
            )
    leaves = [flat.leaves[p] for p, _, _ in expected]
    for (p, _, _), leaf in zip(expected, leaves, strict=True):
        if not isinstance(leaf, jax.Array | np.ndarray | np.generic):
            raise PlanError(
                f"`{arg}`: leaf {trees.path_str(p)!r} is a {type(leaf).__name__}, not an array; "
                "transplant needs arrays: shapes alone make a plan, but they hold no values to "
                "move (pass the trained tree as `old` and an initialised one as `new_template`)."
            )
    return leaves


def _sharding(leaf):
    if isinstance(leaf, jax.core.Tracer) or not isinstance(leaf, jax.Array):
        return None
    sharding = leaf.sharding
    return sharding if len(sharding.device_set) > 1 else None


def fit(tree, expected: tuple, arg: str, kind: str = "") -> tuple[trees.FlatTree, str]:
    """Flattens `tree`, accepting linen variables `{"params": p}` for a plan made on `p` and the
    inner params dict for a plan made on variables (and any pytree for a plan made on one, `kind`
    "pytree"). Returns the flat tree (with the plan's paths) and how the tree differs: "same",
    "inner" (tree lacks the collection) or "outer".

    Raises:
        PlanError: for a tree of a kind `trees.flatten` does not take.
    """
    flat = trees.flatten(tree, arg, any_pytree=kind == "pytree")
    want = {p for p, _, _ in expected}
    if set(flat.leaves) == want:
        return flat, "same"
    prefixed = {("params", *p): leaf for p, leaf in flat.leaves.items()}
    if set(prefixed) == want:
        return trees.FlatTree(flat.kind, prefixed, True, flat.creation_order), "inner"
    if flat.has_collections and all(p[0] == "params" for p in flat.leaves):
        stripped = {p[1:]: leaf for p, leaf in flat.leaves.items()}
        if set(stripped) == want:
            return trees.FlatTree(flat.kind, stripped, False, flat.creation_order), "outer"
    return flat, "same"


def _run(old, new_template, plan: Plan, mode: str):
    if not isinstance(plan, Plan):
        raise PlanError(f"`plan`: expected a Plan from make_plan, got {type(plan).__name__}.")
    old_flat, _ = fit(old, plan.old_leaves, "old", plan.old_kind)
    tmpl_flat, how = fit(new_template, plan.new_leaves, "new_template", plan.new_kind)
    old_leaves = _check(plan, old_flat, plan.old_leaves, "old")
    tmpl_leaves = _check(plan, tmpl_flat, plan.new_leaves, "new_template")
    shardings = tuple(_sharding(t) for t in tmpl_leaves)
    out = _apply(plan, mode, tuple(old_leaves), tuple(tmpl_leaves), shardings)
    by_path = {lp.path: x for lp, x in zip(plan.leaves, out, strict=True)}
    if how == "inner":
        by_path = {p[1:]: x for p, x in by_path.items()}
    elif how == "outer":
        by_path = {("params", *p): x for p, x in by_path.items()}
    return trees.rebuild(new_template, by_path)


def transplant(old, new_template, plan: Plan):
    """Moves the weights of `old` into a tree shaped like `new_template`, as `plan` says.

    Pure and jit-compiled: the plan is static (hashed by identity), so a second call with the same
    plan and shapes does not retrace. Works under `jax.vmap` (e.g. over a seed axis of both trees)
    and `jax.jit`; dtypes are the template's, and a sharded template's sharding is kept.

    Args:
        old: the trained tree the plan was made from (or one of the same structure).
        new_template: the freshly initialised new tree; it supplies every value the plan does not
            read from `old`.
        plan: from `make_plan`.

    Returns:
        A tree of the template's kind (linen dict, nnx.State or nnx.Module).

    Raises:
        PlanError: when either tree does not have the structure the plan was made for.

    Example:
        >>> import jax, jax.numpy as jnp, flax.linen as nn, jsurgery
        >>> old = nn.Dense(2).init(jax.random.key(0), jnp.ones((1, 2)))
        >>> new = nn.Dense(3).init(jax.random.key(1), jnp.ones((1, 2)))
        >>> plan = jsurgery.make_plan(old, new, outputs=(["l", "r"], ["l", "noop", "r"]),
        ...                           new_outputs={"noop": "l"})
        >>> out = jsurgery.transplant(old, new, plan)
        >>> bool((out["params"]["kernel"][:, 1] == old["params"]["kernel"][:, 0]).all())
        True
    """
    return _run(old, new_template, plan, "params")


def transplant_moments(old, new_template, plan: Plan):
    """Moves per-parameter statistics (Adam's `mu`/`nu`, traces): copied units move with their
    parameters, every new unit and new layer starts at zero. A bias that removed inputs were
    folded into (`removed_inputs`) keeps its statistics: its gradient is the same function of
    the kept inputs."""
    return _run(old, new_template, plan, "moments")
