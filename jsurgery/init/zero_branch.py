"""Whether the new leaves that start at zero hide the ones kept at their template init: a new
residual branch, x + block(x), computes the old function when block(x) is exactly zero, whatever
the layers inside the branch hold.

`branch_reach` runs the new function's jaxpr on three abstract values. A value is *old* when no
inserted leaf started at zero or at its template feeds it, *zero* when such leaves feed it but
it is exactly zero (a contraction with a zero kernel, a product with a zero, a norm of zeros),
and *branch* otherwise. Adding a zero to a value gives that value back; every other operation
that meets a branch or zero value gives one (a zero gate, `x * 0`, is not `x`). The new outputs
are the old function when every output is old.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
from jax.extend import core as jcore

#: Adding a zero returns the other operand.
_ADDS = frozenset({"add", "add_any"})
#: A product with a zero is zero (the other operand finite).
_PRODUCTS = frozenset({"mul", "dot_general", "conv_general_dilated"})
#: Zero in, zero out, on their first operand (the others, if any, are indices or shapes).
_KEEP_ZERO = frozenset(
    "neg reshape broadcast_in_dim transpose squeeze expand_dims convert_element_type copy copy_p "
    "reduce_precision reduce_sum reduce_max reduce_min cumsum slice dynamic_slice integer_pow "
    "square sqrt abs sign sin tanh erf".split()
)
#: Views of a parameter: a zero multiplied by one of the old network's weights stands where
#: the old network had a value, not beside it.
_VIEWS = frozenset(
    "reshape broadcast_in_dim transpose squeeze expand_dims convert_element_type copy "
    "copy_p".split()
)
#: Bounds (relu's max with 0): zero when every operand is zero.
_BOUNDS = frozenset({"max", "min", "concatenate"})
#: Calls of a jaxpr run once, on the operands as given (not loops, not conditionals).
_CALLS = frozenset(
    "pjit jit closed_call core_call custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr "
    "checkpoint remat".split()
)
_CALL_KEYS = ("jaxpr", "call_jaxpr", "fun_jaxpr")


@dataclass(frozen=True)
class Branch:
    """The abstract value of a jaxpr variable that inserted leaves feed.

    Attributes:
        zero: whether it is exactly zero.
        leaves: the indices of the inserted leaves that feed it.
    """

    zero: bool
    leaves: frozenset


def branch_reach(fn, leaves: list, example: tuple, zero: set, template: set) -> frozenset:
    """Which of the inserted leaves `zero` (started at zero) and `template` (kept at their
    template init) reach the outputs of `fn(leaves, *example)`.

    Args:
        fn: the new function, `fn(leaves, *args)`.
        leaves: its parameter leaves (arrays or ShapeDtypeStructs), in flat order.
        example: its positional arguments (arrays or ShapeDtypeStructs).
        zero: indices into `leaves` of the leaves that start at zero.
        template: indices of the inserted leaves that keep their template init.

    Returns:
        The indices of those that reach an output: none when the outputs are computed without
        them (their branches are added to the stream and start at zero). An operation the
        analysis does not know (a loop, a conditional) passes them on.

    Example:
        >>> import jax.numpy as jnp
        >>> from jsurgery.init.zero_branch import branch_reach
        >>> fn = lambda ps, x: x + (x @ ps[0]) @ ps[1]
        >>> branch_reach(fn, [jnp.ones((2, 3)), jnp.zeros((3, 2))], (jnp.ones(2),), {1}, {0})
        frozenset()
        >>> gate = lambda ps, x: x * ((x @ ps[0]) @ ps[1])
        >>> branch_reach(gate, [jnp.ones((2, 3)), jnp.zeros((3, 2))], (jnp.ones(2),), {1}, {0})
        frozenset({0, 1})
    """
    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    args = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tuple(example))
    closed = jax.make_jaxpr(fn)(specs, *args)
    jaxpr = closed.jaxpr
    env = {
        v: Branch(i in zero, frozenset({i}))
        for i, v in enumerate(jaxpr.invars[: len(specs)])
        if i in zero or i in template
    }
    weights = {v for v in jaxpr.invars[: len(specs)] if v not in env}
    outs = _run(jaxpr, env, weights)
    return frozenset().union(*(b.leaves for b in outs if b is not None))


def _run(jaxpr, env: dict, weights: set) -> list:
    """Runs `jaxpr` on the abstract values `env`; `weights`: the variables that are views of
    the old network's weights (inserted identities included)."""
    for eqn in jaxpr.eqns:
        ins = [_get(env, v) for v in eqn.invars]
        if _inner(eqn) is not None:
            outs = _call(eqn, ins, weights)
        elif all(b is None for b in ins):
            if eqn.primitive.name in _VIEWS and eqn.invars[0] in weights:
                weights.add(eqn.outvars[0])
            continue
        else:
            outs = [_step(eqn, ins, weights)] * len(eqn.outvars)
        for v, b in zip(eqn.outvars, outs, strict=True):
            if b is not None:
                env[v] = b
    return [_get(env, v) for v in jaxpr.outvars]


def _get(env: dict, v):
    return None if isinstance(v, jcore.Literal) else env.get(v)


def _inner(eqn):
    if eqn.primitive.name not in _CALLS:
        return None
    for key in _CALL_KEYS:
        inner = eqn.params.get(key)
        if inner is not None:
            return getattr(inner, "jaxpr", inner)
    return None


def _call(eqn, ins: list, weights: set) -> list:
    inner = _inner(eqn)
    if len(inner.invars) != len(ins):
        fed = frozenset().union(*(b.leaves for b in ins if b is not None))
        return [Branch(False, fed)] * len(eqn.outvars)
    pairs = list(zip(inner.invars, eqn.invars, ins, strict=True))
    weights |= {v for v, outer, _ in pairs if outer in weights}
    return _run(inner, {v: b for v, _, b in pairs if b is not None}, weights)


def _step(eqn, ins: list, weights: set) -> Branch | None:
    """The abstract value of the equation's outputs, some operand being a branch value."""
    name = eqn.primitive.name
    fed = frozenset().union(*(b.leaves for b in ins if b is not None))
    zeros = [b is not None and b.zero for b in ins]
    if name in _PRODUCTS and any(v in weights for v in eqn.invars if _variable(v)):
        return Branch(False, fed)
    if name in _ADDS:
        rest = [b for b in ins if b is None or not b.zero]
        if not rest:
            return Branch(True, fed)
        return None if all(b is None for b in rest) else Branch(False, fed)
    if name == "sub":
        if zeros[1]:
            return ins[0]
        return Branch(all(zeros), fed)
    if name in _PRODUCTS or (name == "div" and zeros[0] and not zeros[1]):
        return Branch(any(zeros), fed)
    if name in _KEEP_ZERO:
        return Branch(zeros[0] and all(b is None for b in ins[1:]), fed)
    if name in _BOUNDS:
        return Branch(all(z or _is_zero(v) for z, v in zip(zeros, eqn.invars, strict=True)), fed)
    return Branch(False, fed)


def _variable(v) -> bool:
    return not isinstance(v, jcore.Literal)


def _is_zero(v) -> bool:
    return isinstance(v, jcore.Literal) and getattr(v.aval, "shape", None) == () and v.val == 0


class KeptTemplate(str):
    """A warning that an inserted leaf keeps its template init in a space of the old network;
    `path` is the leaf's. `settle` withdraws it where the leaf's branch starts at zero."""

    path: tuple

    def __new__(cls, text: str, path: tuple):
        warning = super().__new__(cls, text)
        warning.path = path
        return warning


def settle(traced, example: tuple, leaf_plans: list, inserted: set, additive, warnings: list):
    """The inserted leaves kept at their template init that cannot move the old outputs, since
    every way from them to the outputs is a new branch added to the stream that starts at zero.

    Runs `branch_reach` when an inserted layer has a weight (not a bias) that starts at zero:
    where nothing reaches the outputs, withdraws the `KeptTemplate` warnings of those leaves;
    otherwise warns, naming the leaves that do.

    Args:
        traced: the new side (`jsurgery.graph.side.Traced`), with its function and leaves.
        example: the new function's positional arguments.
        leaf_plans: the plan's leaves, in the new tree's order.
        inserted: the paths of the leaves of inserted layers.
        additive: the graph indices of the leaves added to an activation (biases).
        warnings: the plan's warnings, changed in place.

    Returns:
        The paths of the template-init leaves that cannot move the old outputs.
    """
    index = {p: i for i, p in enumerate(traced.paths)}
    new = [lp for lp in leaf_plans if lp.path in inserted and lp.path in index]
    zero = {index[lp.path] for lp in new if lp.source == "identity" and lp.identity == ()}
    template = {index[lp.path] for lp in new if lp.source == "template"}
    if traced.fn is None or not zero - set(additive):
        return set()
    reached = branch_reach(traced.fn, traced.leaves, example, zero, template)
    if not reached:
        kept = {traced.paths[i] for i in template}
        warnings[:] = [w for w in warnings if not (isinstance(w, KeptTemplate) and w.path in kept)]
        return kept
    names = sorted("/".join(map(str, traced.paths[i])) for i in reached)
    warnings.append(
        f"new leaves {names} reach the outputs other than by adding zero to the stream: an "
        "inserted layer that starts at zero keeps the old function only when its output is "
        "added to the stream (x + block(x)), not when it gates, scales or replaces it or goes "
        "through a loop, so the new network is not known to be exact (check_preservation tells; "
        "parameters alone, without apply=, show no residual add: pass apply= and example=)."
    )
    return set()
