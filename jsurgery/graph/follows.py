"""What a layer's output goes through before another layer reads it: the operations the trace
saw applied to it (`Graph.applied`), whether they are known to be idempotent, and their name.

An inserted layer started as an identity computes `f(x)` where the old network had `x`, `f`
being what follows the layer (its activation); `x` came out of the same activation one layer
earlier, so the start is exact only where `f(f(x)) == f(x)`: no activation (a linear layer),
relu, relu6, a clip. tanh, GELU, SiLU, sigmoid, ELU, leaky relu and norms are not.
"""

from __future__ import annotations

from dataclasses import dataclass

#: The name of the params-only path's stand-in activation (`jsurgery.params`): the parameters
#: do not say which activation the network uses.
STAND_IN = "unknown_activation"

#: Primitives that keep a value within a bound: a chain of them with constant bounds is a clip.
_BOUNDS = frozenset({"max", "min"})
#: Primitives and functions after which an identity start moves the outputs: curves that are
#: not the identity on their own range, and slopes other than one (leaky relu's negative side).
_MOVING = frozenset(
    "tanh logistic erf erfc exp expm1 log1p integer_pow gelu silu swish sigmoid elu selu celu "
    "leaky_relu softplus log_sigmoid mish".split()
)


@dataclass(frozen=True)
class Applied:
    """One operation applied to a layer's output.

    Attributes:
        op: the primitive's name, or the name of the function called (`jax.nn.silu` -> "silu").
        constant: the scalar constant it takes beside the output (`max(x, 0.0)`: 0.0), or None.
        where: the primitive and its source line, for messages.
        call: whether `op` names a called function rather than a primitive.
    """

    op: str
    constant: float | None
    where: str
    call: bool = False


def is_stand_in(applied) -> bool:
    """Whether the activation is the params-only path's stand-in: unknown."""
    return any(a.call and a.op == STAND_IN for a in applied)


def idempotent(applied) -> bool:
    """Whether applying the operations twice is known to equal applying them once: none (a
    linear layer), or maxima and minima with constants (relu, relu6, a clip)."""
    return all(a.op in _BOUNDS and a.constant is not None for a in applied if not a.call)


def known_to_move(applied) -> bool:
    """Whether the operations are known not to be idempotent (tanh, GELU, SiLU, sigmoid,
    ELU, leaky relu, softplus, a norm), not only not known to be."""
    return any(a.op in _MOVING or a.op.startswith("reduce_") for a in applied)


def describe(applied) -> str:
    """The activation's name: the function called (`relu6`, `silu`, `elu`), else one read from
    its primitives (erf: gelu; tanh with a cube: gelu's tanh approximation; logistic: sigmoid,
    times its input: silu; a reduction: a norm), else the primitives; with the source line."""
    named = [a for a in applied if a.call and not a.op.startswith("_")]
    prims = [a for a in applied if not a.call]
    ops = {a.op for a in prims}
    norm = any(op.startswith("reduce_") for op in ops)
    first = prims[0] if norm or not named else named[-1]
    if norm:
        name = "a norm (a reduction over the features)"
        name += f", then {named[-1].op}" if named else ""
    elif named:
        name = named[-1].op
    elif ops & {"erf", "erfc"}:
        name = "gelu"
    elif {"tanh", "integer_pow"} <= ops:
        name = "gelu (tanh approximation)"
    elif "tanh" in ops:
        name = "tanh"
    elif "logistic" in ops:
        name = "silu" if "mul" in ops else "sigmoid"
    else:
        name = ", ".join(f"`{op}`" for op in dict.fromkeys(a.op for a in prims))
    sources = [a.where.partition(" at ")[2] for a in (first, *applied)]
    source = next((s for s in sources if s and "site-packages" not in s), "")
    return f"{name} at {source}" if source else name
