"""Checks a plan's promises by running the old and new networks on random old inputs.

`make_plan` calls `verify` whenever it has both functions and concrete arrays: the old network
runs on a small batch of random old inputs, the new one with the transplanted weights on the
same inputs placed in its input space (`Plan.embed_inputs`), and each promise is measured. A
broken promise is a `PlanError`: the plan is never returned.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery import ids, trees
from jsurgery.errors import PlanError
from jsurgery.execute.transplant import apply_leaves
from jsurgery.plan.plan import Plan
from jsurgery.plan.promise import Promise, amount, with_measured

#: How many random old inputs verification draws.
DRAWS = 8
#: A kept promise differs by at most this much, relative to (1 + the output's largest magnitude).
RTOL = 1e-4
#: The same for a promise exact up to a norm's epsilon (`Promise.up_to`): the epsilon, acting as
#: epsilon * D / d over widened units, moves the old units by about epsilon * (D / d - 1) / 2
#: relative to the variance the norm sees, more on inputs whose variance is near epsilon.
NORM_RTOL = 1e-3


@dataclass(frozen=True)
class Network:
    """One side as verification runs it: `fn(leaves, *args)`, its leaves in `fn`'s order, its
    flat tree's leaves in the plan's order, and the example arguments."""

    fn: object
    leaves: list
    flat_leaves: list
    paths: list
    flat_paths: list
    example: tuple


PARAMS_ONLY = (
    "not verified: the params-only path reads layers, not the function (its activations are "
    "unknown); pass apply= and example= to verify"
)


def checked(plan: Plan, sides, verify_plan: bool) -> Plan:
    """`plan` with its promises verified (`verify`), or saying why they were not."""
    if sides is None:
        return replace(plan, verified=PARAMS_ONLY)
    if not verify_plan:
        return replace(plan, verified="not verified (verify=False)")
    old, new, old_ex, new_ex = sides
    if not (concrete(old.flat.leaves.values()) and concrete(new.flat.leaves.values())):
        return replace(plan, verified="not verified: made from shapes alone")
    promises, text = verify(plan, network(old, old_ex), network(new, new_ex))
    return replace(plan, promises=promises, verified=text)


def network(side, example) -> Network:
    """A traced side (`jsurgery.graph.side.Traced`) as verification runs it."""
    return Network(
        side.fn,
        list(side.leaves),
        list(side.flat.leaves.values()),
        list(side.paths),
        list(side.flat.leaves),
        tuple(example),
    )


def concrete(leaves) -> bool:
    """True when every leaf holds values (not shapes alone, not traced)."""
    return all(
        not isinstance(x, (jax.ShapeDtypeStruct, jax.core.Tracer))
        and (isinstance(x, (np.ndarray, jax.Array, np.generic, int, float)))
        for x in leaves
    )


def verify(plan: Plan, old: Network, new: Network) -> tuple[tuple, str]:
    """Measures every promise of `plan`; returns the promises with their measurements and the
    line `print(plan)` shows.

    Raises:
        PlanError: for an exact or start promise the networks do not keep, naming the output,
            the units, the difference and the layers the plan started or changed.
    """
    draws = random_inputs(plan, old.example)
    weights = transplanted(plan, old, new)
    try:
        pairs = _run(plan, old, new, weights, draws)
    except Exception as e:  # noqa: BLE001 - the user's function on random inputs
        return plan.promises, f"not verified: the functions failed on random inputs ({e!r:.200})"
    if any(len(y_old) != len(y_new) for y_old, y_new in pairs):
        return plan.promises, "not verified: the two functions return different numbers of arrays"
    measured = [
        _worst([measure(p, *pair, spec_of(plan, p.output)) for pair in pairs])
        for p in plan.promises
    ]
    promises = with_measured(plan.promises, [(d, t) for d, _, t in measured])
    for p, (_, worst, _) in zip(promises, measured, strict=True):
        if p.broken:
            raise PlanError(_broken(plan, p, worst))
    return promises, _summary(promises, len(draws))


def _summary(promises: tuple, draws: int) -> str:
    """What verification found, in one line: the promises kept, and how far the units without
    an exact promise moved."""
    kept = [p.measured for p in promises if p.kind in ("exact", "start") and p.measured is not None]
    loose = [p.measured for p in promises if p.kind in ("first order", "nothing") and p.measured]
    text = f"verified on {draws} random old inputs: every promise kept"
    if kept:
        text += f" (largest difference {amount(max(kept))})"
    if loose:
        text += f"; old units without an exact promise move by up to {amount(max(loose))}"
    return text


def random_inputs(plan: Plan, example: tuple, draws: int = DRAWS) -> list[tuple]:
    """`draws` argument tuples shaped like the old example: normal floats; integer token inputs
    drawn from the old vocabulary; other integers and booleans as the example gives them (zeros
    for shapes)."""
    rng = np.random.default_rng(0)
    arg_leaves, treedef = jax.tree_util.tree_flatten(tuple(example))
    specs = plan.input_specs or ((-1, *plan.inputs),)
    out = []
    for _ in range(draws):
        leaves = [
            _draw(rng, x, specs[k] if k < len(specs) else None) for k, x in enumerate(arg_leaves)
        ]
        out.append(tuple(jax.tree_util.tree_unflatten(treedef, leaves)))
    return out


def _draw(rng, x, spec):
    dtype, shape = np.dtype(x.dtype), tuple(x.shape)
    if np.issubdtype(dtype, np.floating):
        return jnp.asarray(rng.normal(size=shape), dtype)
    if spec is not None and spec[0] == "values" and len(spec[1]):
        return jnp.asarray(rng.integers(0, len(spec[1]), size=shape), dtype)
    return jnp.zeros(shape, dtype) if isinstance(x, jax.ShapeDtypeStruct) else jnp.asarray(x)


def _run(plan: Plan, old: Network, new: Network, weights: list, draws: list) -> list:
    """`(old outputs, new outputs)` per draw: all draws in one batched (vmapped) call of each
    function, or one call per draw where the function cannot be batched."""
    try:
        stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *draws)
        y_old = jax.vmap(lambda *a: _leaves(old.fn(old.leaves, *a)))(*stacked)
        y_new = jax.vmap(lambda *a: _leaves(new.fn(weights, *embedded(plan, a))))(*stacked)
        return [([y[d] for y in y_old], [y[d] for y in y_new]) for d in range(len(draws))]
    except Exception:  # noqa: BLE001 - not batchable: run each draw
        return [
            (_leaves(old.fn(old.leaves, *a)), _leaves(new.fn(weights, *embedded(plan, a))))
            for a in draws
        ]


def _worst(found: list) -> tuple:
    """The draw with the largest difference (measured promises: `(difference, unit, tolerance)`)."""
    if found[0][0] is None:
        return found[0]
    return max(found, key=lambda f: f[0] - f[2])


def embedded(plan: Plan, args: tuple) -> tuple:
    """`args` placed in the new input space, leaf by leaf (a carry too: new units zero)."""
    arg_leaves, treedef = jax.tree_util.tree_flatten(args)
    moved = plan.embed_inputs(*arg_leaves)
    moved = moved if len(arg_leaves) > 1 else (moved,)
    return tuple(jax.tree_util.tree_unflatten(treedef, list(moved)))


def transplanted(plan: Plan, old: Network, new: Network) -> list:
    """The new leaves the plan makes, in the order `new.fn` takes them."""
    out = apply_leaves(plan, "params", tuple(old.flat_leaves), tuple(new.flat_leaves))
    by_path = dict(zip(new.flat_paths, out, strict=True))
    return [by_path[p] for p in new.paths]


def spec_of(plan: Plan, k: int):
    """The `(axis, old_ids, new_ids)` of output `k` (params-only plans: the last axis)."""
    if plan.output_specs:
        return plan.output_specs[k]
    return (-1, *plan.outputs)


def measure(p: Promise, y_old: list, y_new: list, spec) -> tuple:
    """`(difference, worst unit, tolerance)`: the largest difference between what `p` promises
    and what the new network gives, the unit where it is largest, and the largest an exact or
    start promise allows (`RTOL` times one plus the old output's magnitude)."""
    if p.new and p.kind != "start":
        return None, None, None
    a = np.asarray(y_old[p.output], np.float64)
    b = np.asarray(y_new[p.output], np.float64)
    diff, worst = _difference(p, a, b, spec)
    return diff, worst, (NORM_RTOL if p.up_to else RTOL) * (1 + _magnitude(a))


def _difference(p: Promise, a: np.ndarray, b: np.ndarray, spec) -> tuple[float, object]:
    if not p.units:
        if a.shape != b.shape:
            return np.inf, "shape"
        return _largest(np.abs(b - a)), None
    axis, old_ids, new_ids = spec
    a, b = np.moveaxis(a, axis, -1), np.moveaxis(b, axis, -1)
    new_pos = ids.index_of(list(p.units), list(new_ids))
    got = b[..., new_pos]
    want = _expected(p, a, old_ids)
    if got.shape != want.shape:
        return np.inf, "shape"
    diff = np.abs(got - want).reshape(-1, len(p.units))
    diff = np.where(np.isnan(got) & np.isnan(want), 0.0, diff.reshape(got.shape)).reshape(
        diff.shape
    )
    worst = p.units[int(np.nanargmax(diff.max(axis=0)))] if diff.size else None
    return _largest(diff), worst


def _expected(p: Promise, a: np.ndarray, old_ids) -> np.ndarray:
    """What the promise says the new units of `p` hold, from the old outputs `a` (units last)."""
    n = len(p.units)
    if p.kind == "start" and p.start == "copy":
        return a[..., ids.index_of(list(p.copies), list(old_ids))]
    if p.kind == "start":
        base = (
            a.mean(axis=-1, keepdims=True) if p.start == "mean" else np.zeros(a.shape[:-1] + (1,))
        )
        return np.repeat(base + p.offset, n, axis=-1)
    return a[..., ids.index_of(list(p.units), list(old_ids))]


def _largest(x: np.ndarray) -> float:
    x = np.asarray(x)
    return float(np.nanmax(x)) if x.size and not np.all(np.isnan(x)) else 0.0


def _magnitude(y) -> float:
    y = np.abs(np.asarray(y, np.float64))
    return float(np.nanmax(y)) if y.size and not np.all(np.isnan(y)) else 0.0


def _leaves(out) -> list:
    return jax.tree_util.tree_leaves(out)


def _broken(plan: Plan, p: Promise, worst) -> str:
    unit = f" (worst: unit {worst!r})" if worst is not None else ""
    what = str(replace(p, measured=None)).split(": ", 1)[0]
    text = (
        f"the plan promises for {what}: {p.describe()}; but on random old inputs the new "
        f"network differs from that by up to {p.measured:.3g}{unit}. Layers the plan started or "
        f"changed, in forward order: {_listed(changed_layers(plan))}. "
    )
    if p.kind == "start":
        return text + (
            "A start value is set through the weights of the layer that writes the output, so "
            "it holds only where the output is that layer's affine result; here something lies "
            "between (an activation, a recurrent cell's state, a tied embedding, a softmax). "
            "Start these units with new_outputs='template', or per ID {new_id: old_id} where a "
            "copy is meant; make_plan(..., verify=False) returns the plan unchecked."
        )
    if p.up_to:
        text += (
            f"Exact up to {p.up_to} means the norm's epsilon acts as epsilon * D / d over the "
            "widened units, which moves outputs most where the variance the norm sees is near "
            "epsilon; random inputs may reach that where trained inputs do not. "
        )
    return text + (
        "This plan would have reported success while wrong, so it is refused: please report "
        "it with the call that made it; make_plan(..., verify=False) returns it unchecked."
    )


def _listed(names: list[str], n: int = 8) -> str:
    if not names:
        return "none"
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def changed_layers(plan: Plan) -> list[str]:
    """The layers whose leaves the plan starts new or fills other than by copying."""
    out = []
    for lp in plan.leaves:
        if lp.note.startswith("not read"):
            continue
        name = trees.path_str(lp.path[:-1]) or trees.path_str(lp.path)
        changed = lp.source != "old" or lp.old_shape != lp.shape or lp.offset is not None
        changed = changed or any(not am.is_copy(len(am.idx)) for am in lp.axes)
        if changed and name not in out:
            out.append(name)
    return out
