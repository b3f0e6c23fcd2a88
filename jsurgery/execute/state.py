"""Training states: finding the params-shaped parts of a state, and transplanting all of them.

A state (a flax `TrainState`, an optax state, a dict or dataclass of several models' variables)
holds params, target params, `batch_stats` and optimizer statistics. Its params-shaped parts are
found by structure (they have the leaves the plan was made for, or one collection of them), and
optimizer statistics by the optax state types that hold them, as `optax.tree_map_params` finds
them, never by key names alone.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Sequence
from typing import Any, Literal

import jax

from jsurgery import trees
from jsurgery.errors import PlanError
from jsurgery.execute.transplant import fit, transplant, transplant_moments
from jsurgery.plan.plan import Plan

COLLECTIONS = ("params", "batch_stats")

_SUBPLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # plan -> {collection: plan}


@dataclasses.dataclass(frozen=True)
class StatePart:
    """One part of a state: a params-shaped subtree with the plan that covers it, or one leaf.

    Attributes:
        keypath: where the part sits in the state (a `jax.tree_util` key path).
        node: the subtree or leaf.
        plan: the plan (or the plan of one collection, such as `params` or `batch_stats`) whose
            leaves this subtree has; None for a part no plan covers.
        moments: whether the part is optimizer statistics (inside an optax state, or under a
            key in `moment_keys`): copied units keep their values, new units start at zero.
    """

    keypath: tuple
    node: Any
    plan: Plan | None
    moments: bool


def collection_plan(plan: Plan, collection: str) -> Plan | None:
    """The part of a plan made on linen variables that covers one collection (`params`,
    `batch_stats`), for states that keep the collections apart; None when it has no leaves or
    the plan was not made on variables. Made once per plan and collection, so `transplant`
    compiles it once."""
    if plan.old_kind != "variables":
        return None
    per_plan = _SUBPLANS.setdefault(plan, {})
    if collection not in per_plan:
        per_plan[collection] = _make_collection_plan(plan, collection)
    return per_plan[collection]


def _make_collection_plan(plan: Plan, collection: str) -> Plan | None:
    keep = [lp for lp in plan.leaves if lp.path[:1] == (collection,)]
    olds = [i for i, (p, _, _) in enumerate(plan.old_leaves) if p[:1] == (collection,)]
    if not keep or not olds:
        return None
    where = {i: j for j, i in enumerate(olds)}

    def strip(path):
        return path[1:]

    leaves = tuple(
        dataclasses.replace(
            lp,
            path=strip(lp.path),
            old_index=where.get(lp.old_index, -1),
            old_path=strip(lp.old_path) if lp.old_path else None,
        )
        for lp in keep
    )
    return dataclasses.replace(
        plan,
        leaves=leaves,
        old_leaves=tuple((strip(plan.old_leaves[i][0]), *plan.old_leaves[i][1:]) for i in olds),
        new_leaves=tuple((strip(p), s, d) for p, s, d in plan.new_leaves if p[:1] == (collection,)),
    )


def _plans(plan: Plan) -> list[Plan]:
    subs = (collection_plan(plan, c) for c in COLLECTIONS)
    return [plan, *(sub for sub in subs if sub is not None)]


def params_like(node, expected: tuple, kind: str = "") -> bool:
    """Whether `node` is a subtree with exactly the leaves `expected` lists (`(path, shape,
    dtype)` triples, as `Plan.old_leaves` and `Plan.new_leaves` hold them): a dict-like one, or
    for a plan made on any pytree (`kind` "pytree": a dataclass of params) any pytree."""
    if kind != "pytree" and not hasattr(node, "keys"):
        return False
    try:
        flat, _ = fit(node, expected, "state", kind)
    except PlanError:
        return False
    return set(flat.leaves) == {p for p, _, _ in expected}


def _is_optax_state(node) -> bool:
    return type(node).__module__.split(".")[0] == "optax"


def _optimizer_kinds(state) -> list[str]:
    """The names of the optax state types in `state` that hold arrays (Adam's
    `ScaleByAdamState`, a momentum's `TraceState`, a schedule's count), in flattening order."""
    found: list[str] = []

    def visit(node) -> bool:
        if _is_optax_state(node) and jax.tree_util.tree_leaves(node):
            found.append(type(node).__name__)
        return False

    jax.tree_util.tree_flatten(state, is_leaf=visit)
    return found


def _check_same_optimizer(old_state, new_state) -> None:
    """Refuses moving one optimizer's statistics into another's state."""
    old, new = _optimizer_kinds(old_state), _optimizer_kinds(new_state)
    if old != new:
        raise PlanError(
            f"`old_state` holds the optimizer state {', '.join(old) or 'of no optax optimizer'} "
            f"and `new_state` {', '.join(new) or 'none'}: one optimizer's statistics are not "
            "another's (Adam's moments are no momentum trace). Build `new_state` with the old "
            "optimizer (the same optax transformation; its settings may differ), or start the "
            "new optimizer's state fresh with `tx.init(new_params)` and transplant the params "
            "alone."
        )


def _moment_subtrees(state, expected: tuple, moment_keys: Sequence[str], kind: str) -> set:
    """`id`s of the params-shaped subtrees that are optimizer statistics: those inside an optax
    state (its NamedTuples hold Adam's `mu`/`nu`, traces, ...), and those under a path key in
    `moment_keys`."""
    found: set = set()

    def shaped(node) -> bool:
        return params_like(node, expected, kind)

    def collect(node):
        pairs, _ = jax.tree_util.tree_flatten_with_path(node, is_leaf=shaped)
        found.update(id(n) for _, n in pairs if shaped(n))

    optax_nodes, _ = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda n: _is_optax_state(n) or shaped(n)
    )
    for kp, node in optax_nodes:
        keys = {str(trees.key_name(k)) for k in kp}
        if _is_optax_state(node) or (keys & set(moment_keys) and shaped(node)):
            collect(node)
    return found


def state_parts(
    state, plan: Plan, *, side: Literal["old", "new"], moment_keys: Sequence[str] = ()
) -> tuple[list[StatePart], Any]:
    """Splits a state into its parts: the subtrees shaped like the plan's params (the whole
    plan, or the plan of one collection where the state keeps `params` and `batch_stats`
    apart), and every other leaf.

    Args:
        state: the state.
        plan: from `make_plan`.
        side: "old" to match the plan's old leaves, "new" its new leaves.
        moment_keys: path keys that also mark optimizer statistics (states without optax types).

    Returns:
        The parts in flattening order, and the treedef that `jax.tree_util.tree_unflatten`
        rebuilds the state from (one entry per part).
    """
    plans = _plans(plan)

    def leaves_of(p: Plan) -> tuple:
        return p.old_leaves if side == "old" else p.new_leaves

    def kind_of(p: Plan) -> str:
        return p.old_kind if side == "old" else p.new_kind

    def plan_of(node) -> Plan | None:
        return next((p for p in plans if params_like(node, leaves_of(p), kind_of(p))), None)

    moments = set().union(
        *(_moment_subtrees(state, leaves_of(p), moment_keys, kind_of(p)) for p in plans)
    )
    pairs, treedef = jax.tree_util.tree_flatten_with_path(
        state, is_leaf=lambda n: plan_of(n) is not None
    )
    parts = [StatePart(kp, node, plan_of(node), id(node) in moments) for kp, node in pairs]
    return parts, treedef


def _moved_part(old: StatePart, new: StatePart):
    """The new value of one part of the state."""
    where = jax.tree_util.keystr(new.keypath)
    if old.plan is not None or new.plan is not None:
        if old.plan is not new.plan:
            raise PlanError(
                f"state part {where!r} is shaped like the plan's params in only one of "
                "`old_state` and `new_state`; make both states from the plan's trees."
            )
        move = transplant_moments if old.moments else transplant
        return move(old.node, new.node, old.plan)
    if hasattr(old.node, "shape") and hasattr(new.node, "shape"):
        if trees.shape_dtype(old.node) != trees.shape_dtype(new.node):
            raise PlanError(
                f"state leaf {where!r}: {trees.shape_dtype(old.node)} in `old_state`, "
                f"{trees.shape_dtype(new.node)} in `new_state`, and the plan does not cover it "
                "(it is not inside a subtree shaped like the plan's params); make the plan on a "
                "tree that holds it (e.g. the variables with `batch_stats`)."
            )
        return old.node
    return old.node if type(old.node) is type(new.node) else new.node


def transplant_state(old_state, new_state, plan: Plan, *, moment_keys: Sequence[str] = ()):
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
            structure or hold the states of different optimizers, or a leaf the plan does not
            cover changed its shape or dtype.
    """
    _check_same_optimizer(old_state, new_state)
    old_parts, _ = state_parts(old_state, plan, side="old", moment_keys=moment_keys)
    new_parts, treedef = state_parts(new_state, plan, side="new", moment_keys=moment_keys)
    if len(old_parts) != len(new_parts):
        raise PlanError(
            f"`new_state` has {len(new_parts)} parts and `old_state` {len(old_parts)}; they must "
            "have the same structure apart from the params-shaped subtrees."
        )
    if not any(part.plan is not None for part in old_parts):
        raise PlanError(
            "`old_state`/`new_state`: no subtree has the structure of the params the plan was "
            "made for; make the plan from the params stored in the state."
        )
    out = [_moved_part(o, n) for o, n in zip(old_parts, new_parts, strict=True)]
    return jax.tree_util.tree_unflatten(treedef, out)
