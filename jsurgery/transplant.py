"""Applying a plan: a pure, jit-compiled gather/select on params, optimizer and train state."""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from functools import partial

import jax

from jsurgery import gather, trees
from jsurgery.errors import PlanError
from jsurgery.plan import Plan


@partial(jax.jit, static_argnums=(0, 1, 4))
def _apply(plan: Plan, mode: str, old_leaves: tuple, tmpl_leaves: tuple, shardings: tuple):
    base = jax.random.key(plan.seed)
    out = []
    for i, (lp, tmpl) in enumerate(zip(plan.leaves, tmpl_leaves, strict=True)):
        old = old_leaves[lp.old_index] if lp.old_index >= 0 else None
        key = jax.random.fold_in(base, i) if plan.noise else None
        x = gather.new_leaf(lp, old, tmpl, key, mode == "moments", plan.noise)
        if shardings[i] is not None:
            x = jax.lax.with_sharding_constraint(x, shardings[i])
        out.append(x)
    return tuple(out)


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
    return [flat.leaves[p] for p, _, _ in expected]


def _sharding(leaf):
    if isinstance(leaf, jax.core.Tracer) or not isinstance(leaf, jax.Array):
        return None
    sharding = leaf.sharding
    return sharding if len(sharding.device_set) > 1 else None


def _fit(tree, expected: tuple, arg: str, kind: str = "") -> tuple[trees.FlatTree, str]:
    """Flattens `tree`, accepting linen variables `{"params": p}` for a plan made on `p` and the
    inner params dict for a plan made on variables (and any pytree for a plan made on one, `kind`
    "pytree"). Returns the flat tree (with the plan's paths) and how the tree differs: "same",
    "inner" (tree lacks the collection) or "outer"."""
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
    old_flat, _ = _fit(old, plan.old_leaves, "old", plan.old_kind)
    tmpl_flat, how = _fit(new_template, plan.new_leaves, "new_template", plan.new_kind)
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
    parameters, every new unit and new layer starts at zero."""
    return _run(old, new_template, plan, "moments")


_SUBPLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # plan -> {collection: plan}


def _subplan(plan: Plan, collection: str) -> Plan | None:
    """The part of a plan made on linen variables that covers one collection (`params`,
    `batch_stats`), for states that keep the collections apart; None when it has no leaves.
    Made once per plan and collection (so `transplant` compiles it once)."""
    per_plan = _SUBPLANS.setdefault(plan, {})
    if collection not in per_plan:
        per_plan[collection] = _make_subplan(plan, collection)
    return per_plan[collection]


def _make_subplan(plan: Plan, collection: str) -> Plan | None:
    keep = [lp for lp in plan.leaves if lp.path[:1] == (collection,)]
    olds = [i for i, (p, _, _) in enumerate(plan.old_leaves) if p[:1] == (collection,)]
    if not keep or not olds:
        return None
    where = {i: j for j, i in enumerate(olds)}

    def strip(path):
        return path[1:]

    leaves = tuple(dataclasses.replace(lp, path=strip(lp.path), old_index=where.get(
        lp.old_index, -1), old_path=strip(lp.old_path) if lp.old_path else None) for lp in keep)
    return dataclasses.replace(
        plan, leaves=leaves,
        old_leaves=tuple((strip(plan.old_leaves[i][0]), *plan.old_leaves[i][1:]) for i in olds),
        new_leaves=tuple((strip(p), s, d) for p, s, d in plan.new_leaves
                         if p[:1] == (collection,)))


def _subplan_or_none(plan: Plan, collection: str) -> Plan | None:
    return _subplan(plan, collection) if plan.old_kind == "variables" else None


def _field_plan(node, plan: Plan) -> Plan | None:
    """A collection's sub-plan for a params-shaped part of a state that keeps the variables'
    collections apart (`state.params`, `state.batch_stats`, and the moments of `params`)."""
    for c in ("params", "batch_stats"):
        sub = _subplan_or_none(plan, c)
        if sub is not None and _params_like(node, sub.old_leaves):
            return sub
    return None


def _params_like(node, expected: tuple) -> bool:
    if not hasattr(node, "keys"):
        return False
    try:
        flat, _ = _fit(node, expected, "state")
    except PlanError:
        return False
    return set(flat.leaves) == {p for p, _, _ in expected}


def _is_optax_state(node) -> bool:
    return type(node).__module__.split(".")[0] == "optax"


def _moment_subtrees(state, expected: tuple, moment_keys: Sequence[str]) -> set:
    """`id`s of the params-shaped subtrees that are optimizer statistics: those inside an optax
    state (its NamedTuples hold Adam's `mu`/`nu`, traces, ...), and those under a path key in
    `moment_keys`."""
    found: set = set()

    def collect(node):
        pairs, _ = jax.tree_util.tree_flatten_with_path(
            node, is_leaf=lambda n: _params_like(n, expected))
        found.update(id(n) for _, n in pairs if _params_like(n, expected))

    optax_nodes, _ = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda n: _is_optax_state(n) or _params_like(n, expected))
    for kp, node in optax_nodes:
        keys = {str(trees._key(k)) for k in kp}
        if _is_optax_state(node) or (keys & set(moment_keys) and _params_like(node, expected)):
            collect(node)
    return found


def transplant_state(
    old_state,
    new_state,
    plan: Plan,
    *,
    moment_keys: Sequence[str] = (),
):
    """Applies `plan` to a whole training state in one call.

    Every subtree of `old_state` shaped like the plan's old params is transplanted: with
    `transplant` (params, target params) or, when it lies inside an optax state (found by the
    state's type, as `optax.tree_map_params` finds params-shaped parts) or under a path key in
    `moment_keys`, with `transplant_moments` (optimizer statistics: copied units keep their
    moments, new units start at zero). Every other leaf (step counts, Adam's `count`, RNG keys)
    is kept from `old_state`; a leaf outside the params-shaped subtrees whose shape or dtype
    changed is an error, never silently reset to `new_state`'s value. Works on a flax
    `TrainState` (the new `tx` and `apply_fn` are kept), an optax state, or any dict /
    dataclass holding params, target params and an optax state.

    Args:
        old_state: the trained state.
        new_state: a state freshly built around the new template params.
        plan: from `make_plan(old_params, new_params)`.
        moment_keys: extra path keys that mark optimizer statistics in states that do not use
            optax types (for example a hand-written `{"mu": params_like}` dict).

    Returns:
        A state of `new_state`'s kind.

    Raises:
        PlanError: when no subtree has the plan's structure, the two states differ in
            structure, or a leaf the plan does not cover changed its shape or dtype.
    """
    old_paths, new_paths = plan.old_leaves, plan.new_leaves
    subs = [sp for c in ("params", "batch_stats") if (sp := _subplan_or_none(plan, c))]
    moments = set().union(*(_moment_subtrees(old_state, p.old_leaves, moment_keys)
                            for p in [plan, *subs]))

    def covered(node, paths_of):
        return _params_like(node, paths_of(plan)) or any(
            _params_like(node, paths_of(sp)) for sp in subs)

    old_pairs, _ = jax.tree_util.tree_flatten_with_path(
        old_state, is_leaf=lambda n: covered(n, lambda p: p.old_leaves))
    new_pairs, treedef = jax.tree_util.tree_flatten_with_path(
        new_state, is_leaf=lambda n: covered(n, lambda p: p.new_leaves))
    if len(old_pairs) != len(new_pairs):
        raise PlanError(
            f"`new_state` has {len(new_pairs)} parts and `old_state` {len(old_pairs)}; they must "
            "have the same structure apart from the params-shaped subtrees."
        )
    out = []
    moved = 0
    for (_, old), (nkp, new) in zip(old_pairs, new_pairs, strict=True):
        if _params_like(old, old_paths) and _params_like(new, new_paths):
            out.append(_run(old, new, plan, "moments" if id(old) in moments else "params"))
            moved += 1
        elif (sub := _field_plan(old, plan)) is not None:
            out.append(_run(old, new, sub, "moments" if id(old) in moments else "params"))
            moved += 1
        elif hasattr(old, "shape") and hasattr(new, "shape"):
            if trees.shape_dtype(old) != trees.shape_dtype(new):
                raise PlanError(
                    f"state leaf {jax.tree_util.keystr(nkp)!r}: {trees.shape_dtype(old)} in "
                    f"`old_state`, {trees.shape_dtype(new)} in `new_state`, and the plan does not "
                    "cover it (it is not inside a subtree shaped like the plan's params); make "
                    "the plan on a tree that holds it (e.g. the variables with `batch_stats`)."
                )
            out.append(old)
        elif type(old) is type(new) and not hasattr(new, "shape"):
            out.append(old)
        else:
            out.append(new)
    if not moved:
        raise PlanError(
            "`old_state`/`new_state`: no subtree has the structure of the params the plan was "
            "made for; make the plan from the params stored in the state."
        )
    return jax.tree_util.tree_unflatten(treedef, out)
