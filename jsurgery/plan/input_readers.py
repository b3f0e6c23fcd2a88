"""The layers that read an input's features first: each kernel contracted with the feature axis,
and the bias added to its product, read from the function's jaxpr.

Folding an input held at a value into a bias is exact only where the input reaches nothing but
kernels (an affine first layer): the walk follows the input through casts, through reshapes that
keep whole blocks of its features on the last axis (a stack of frames flattened: feature `r` of
`n` is then at `r + n * j`), through calls (`jit`, custom derivatives), and refuses any other
use, naming the operation and where it is. From each product it follows sums to the add of a
bias.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
from jax.extend import core as jcore

from jsurgery.errors import PlanError
from jsurgery.trace.registry import CALL_KEYS
from jsurgery.trace.sources import origin, path_runs

#: Operations that pass a value through with its values unchanged.
_PASS = frozenset({"convert_element_type", "copy", "copy_p", "reshape"})
#: Operations that place a bias on a product's trailing axes.
_PLACE = frozenset({"convert_element_type", "reshape", "broadcast_in_dim"})
#: Calls whose jaxpr is inlined (run once on the call's operands).
_CALLS = frozenset(
    "jit pjit closed_call call core_call custom_jvp_call custom_vjp_call custom_vjp_call_jaxpr "
    "remat2 checkpoint".split()
)


@dataclass(frozen=True)
class Reader:
    """A layer that reads an input's features.

    Attributes:
        kernel: the kernel's leaf index (in the function's leaf order).
        axis: the kernel's axis contracted with the features.
        bias: the bias leaf added to the product, or None when there is none.
        blocks: how many blocks of the input's features the read axis holds (a stack of frames
            flattened): feature `r` of `n` is read at rows `r + n * j`, `j < blocks`.
    """

    kernel: int
    axis: int
    bias: int | None
    blocks: int = 1

    def rows(self, position: int, n: int):
        """The rows of the read axis that hold feature `position` of `n`."""
        return [position + n * j for j in range(self.blocks)]


@dataclass(frozen=True)
class _Eqn:
    """An equation of the inlined jaxpr, its operands and results as keys (None: a literal)."""

    prim: str
    ins: tuple
    outs: tuple
    eqn: jcore.JaxprEqn
    scope: str  # the name stack of the call it was inlined from
    runs: frozenset  # the names layers may have (`path_runs`)

    @property
    def where(self) -> str:
        """Where it is, in the user's words (`jsurgery.trace.sources.origin`)."""
        return origin(self.eqn, self.runs, self.scope)


def readers(fn: Callable, leaves: list, args: tuple, k: int, names: list, what: str) -> list:
    """The layers that read input `k`'s features (its last axis) directly.

    Args:
        fn: `fn(leaves, *args)`.
        leaves: the parameter leaves (arrays or shapes), in `fn`'s order.
        args: example positional arguments.
        k: the input's index among the leaves of `args`.
        names: the leaves' paths, for messages.
        what: the removed inputs, for messages ("`removed_inputs` 'wind'").

    Returns:
        One `Reader` per contraction of the features with a kernel.

    Raises:
        PlanError: when the input reaches anything else (an elementwise op, a norm, a
            concatenation, a convolution, the function's result) before a kernel.
    """
    specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
    arg_leaves, arg_def = jax.tree_util.tree_flatten(tuple(args))
    arg_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in arg_leaves]
    closed = jax.make_jaxpr(lambda ps, xs: fn(ps, *jax.tree_util.tree_unflatten(arg_def, xs)))(
        specs, arg_specs
    )
    jaxpr = closed.jaxpr
    n = len(specs)
    keys = itertools.count()
    env = {v: next(keys) for v in [*jaxpr.constvars, *jaxpr.invars]}
    eqns: list[_Eqn] = []
    outs = _inline(jaxpr, env, keys, eqns, path_runs(names), "")
    leaf_of = {env[v]: i for i, v in enumerate(jaxpr.invars[:n])}
    found = _walk(eqns, env[jaxpr.invars[n + k]], set(outs), leaf_of, (what, names))
    return [
        Reader(leaf, axis, _bias(eqns, y, outs, leaf_of, leaves, (leaf, axis), names), blocks)
        for leaf, axis, y, blocks in found
    ]


def _inline(jaxpr, env: dict, keys: itertools.count, out: list, runs, scope: str) -> list:
    """Appends the equations of `jaxpr` to `out`, calls inlined, variables as keys (`env` binds
    the jaxpr's inputs); returns the keys of its results."""
    for e in jaxpr.eqns:
        ins = tuple(env.get(v) if not isinstance(v, jcore.Literal) else None for v in e.invars)
        inner = next((e.params[c] for c in CALL_KEYS if c in e.params), None)
        inner = inner if e.primitive.name in _CALLS else None
        inner_jaxpr = inner.jaxpr if isinstance(inner, jcore.ClosedJaxpr) else inner
        if inner_jaxpr is not None and len(inner_jaxpr.invars) == len(ins):
            bound = {v: next(keys) for v in inner_jaxpr.constvars}
            bound.update(zip(inner_jaxpr.invars, ins, strict=True))
            stack = "/".join(s for s in (scope, str(e.source_info.name_stack)) if s)
            results = _inline(inner_jaxpr, bound, keys, out, runs, stack)
            env.update(zip(e.outvars, results, strict=True))
            continue
        for v in e.outvars:
            env[v] = next(keys)
        outs = tuple(env[v] for v in e.outvars)
        out.append(_Eqn(e.primitive.name, ins, outs, e, scope, runs))
    return [env.get(v) if not isinstance(v, jcore.Literal) else None for v in jaxpr.outvars]


_CAST = frozenset({"convert_element_type"})


def _walk(eqns: list, start: int, results: set, leaf_of: dict, said: tuple) -> list:
    """`(kernel leaf, read axis, product key, blocks)` per contraction the input reaches;
    refuses any other use (`said`: the removed inputs and the leaves' names, for messages).
    `derived` holds, per value computed from the input, how many blocks of its features its
    last axis holds."""
    what, names = said
    derived, found = {start: 1}, []
    for e in eqns:
        hit = [i for i, key in enumerate(e.ins) if key in derived]
        if not hit:
            continue
        blocks = _blocks(e, derived[e.ins[hit[0]]]) if e.prim in _PASS and hit == [0] else None
        if blocks is not None:
            derived[e.outs[0]] = blocks
        elif e.prim == "dot_general" and hit == [0]:
            kernel, axis = _contraction(eqns, e, leaf_of, what)
            found.append((kernel, axis, e.outs[0], derived[e.ins[0]]))
        else:
            kernel = _placed(eqns, e.ins[1], leaf_of, _CAST) if len(e.ins) > 1 else None
            raise PlanError(_refusal(e, what, names[kernel] if kernel is not None else None))
    if derived.keys() & results:
        raise PlanError(
            f"{what}: the function returns the input itself; folding a removed input into a "
            "bias is exact only when it reaches nothing but a first layer's kernel."
        )
    return found


def _blocks(e: _Eqn, blocks: int) -> int | None:
    """How many blocks of the features the result's last axis holds, when the operation keeps
    whole blocks there (its last axis is the operand's, several of its trailing axes merged,
    or a split of it into whole blocks); None otherwise."""
    shape_in = tuple(e.eqn.invars[0].aval.shape)
    shape_out = tuple(e.eqn.outvars[0].aval.shape)
    if not shape_in or not shape_out:
        return None
    n = shape_in[-1] // blocks
    last = shape_out[-1]
    merged = [math.prod(shape_in[len(shape_in) - t :]) for t in range(1, len(shape_in) + 1)]
    if last in merged or (shape_in[-1] % last == 0 and last % n == 0):
        return last // n
    return None


def _contraction(eqns: list, e: _Eqn, leaf_of: dict, what: str) -> tuple[int, int]:
    """`(kernel leaf, read axis)` of a product of the input's features with a kernel."""
    (lhs_c, rhs_c), (lhs_b, _) = e.eqn.params["dimension_numbers"]
    ndim = len(e.eqn.invars[0].aval.shape)
    leaf = _placed(eqns, e.ins[1], leaf_of, _CAST)
    if leaf is None or tuple(lhs_c) != (ndim - 1,) or tuple(lhs_b):
        raise PlanError(
            f"{what}: the input reaches a product (`dot_general` {e.where}) that is not its "
            "features contracted with a parameter kernel; folding a removed input into a bias "
            "is exact only for a dense first layer reading it."
        )
    return leaf, int(rhs_c[0])


def _refusal(e: _Eqn, what: str, kernel: str | None) -> str:
    if e.prim.startswith("conv_general"):
        of = f" with kernel {kernel!r}" if kernel else ""
        return (
            f"{what}: a convolution{of} reads the input ({e.where}); holding a removed channel "
            "at a value and folding it into the bias is exact only away from the border (with "
            "zero padding the border sees fewer pixels), so it is refused: drop the removal, "
            "or keep the channel as an input of the new network."
        )
    return (
        f"{what}: the input goes through `{e.prim}` ({e.where}) before the first layer; "
        "folding a removed input into a bias is exact only when the input reaches nothing but "
        "the kernels of affine first layers (a dense layer); drop the removal, or keep the "
        "input in the new network."
    )


def _bias(eqns: list, y: int, results: list, leaf_of: dict, leaves: list, read, names: list):
    """The bias leaf added to the product `y` (after sums with other terms) of the kernel
    `read` (leaf, read axis), or None.

    Raises:
        PlanError: for a bias that is also read elsewhere (folding would change it there).
    """
    kernel, axis = read
    shape = tuple(d for a, d in enumerate(leaves[kernel].shape) if a != axis)
    while y not in results:
        users = [e for e in eqns if y in e.ins]
        if len(users) != 1 or users[0].prim != "add":
            return None
        e = users[0]
        other = e.ins[1 - e.ins.index(y)]
        leaf = _placed(eqns, other, leaf_of, _PLACE)
        if leaf is not None and tuple(leaves[leaf].shape) == shape:
            key = next(k for k, i in leaf_of.items() if i == leaf)
            if sum(key in u.ins for u in eqns) > 1:
                raise PlanError(
                    f"bias {names[leaf]!r} of kernel {names[kernel]!r}, which reads removed "
                    "inputs, is also read elsewhere; folding the inputs into it would change "
                    "that use too, so `removed_inputs` is refused here."
                )
            return leaf
        y = e.outs[0]
    return None


def _placed(eqns: list, key, leaf_of: dict, ops: frozenset) -> int | None:
    """The leaf that `key` is, through the operations `ops` keeping its axes trailing, or
    None."""
    producer = {out: e for e in eqns for out in e.outs}
    while key is not None and key not in leaf_of:
        e = producer.get(key)
        if e is None or e.prim not in ops or not _trailing(e):
            return None
        key = e.ins[0]
    return leaf_of.get(key)


def _trailing(e: _Eqn) -> bool:
    """Whether `e` keeps its operand's axes as the trailing axes of its result."""
    shape_in = tuple(e.eqn.invars[0].aval.shape)
    shape_out = tuple(e.eqn.outvars[0].aval.shape)
    if e.prim == "broadcast_in_dim":
        n = len(shape_out)
        return tuple(e.eqn.params["broadcast_dimensions"]) == tuple(range(n - len(shape_in), n))
    core = shape_out[len(shape_out) - len(shape_in) :] if shape_in else ()
    return core == shape_in and all(d == 1 for d in shape_out[: len(shape_out) - len(shape_in)])
