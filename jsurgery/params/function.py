"""A chain of layers written as the function it computes, for the tracer to read.

Each kind of layer is applied the way Flax applies it: a dense layer contracts the last axis with
its kernel's rows, a convolution (stride 1, "SAME") its channels, an embedding gathers rows by
token, a norm layer with running statistics scales each feature on its own and one without them
normalises over the features (a LayerNorm). A dense layer after a convolution reads the feature
map flattened as `(h, w, channel)`. Compute layers after the first read a ReLU of what flows in.
The activation is a stand-in: the parameters do not say which one the network uses.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jsurgery import trees
from jsurgery.errors import PlanError
from jsurgery.graph.follows import STAND_IN
from jsurgery.params.layers import TRACE_HINT, Layer, chain_layers, flat_factor

_EPSILON = 1e-6


@dataclass(frozen=True)
class ChainSide:
    """One side of a params-only plan: its layers, its function and an example input.

    Attributes:
        layers: the layers in forward order.
        apply: `apply(tree, x)`, the chain's output for input `x`.
        example: the positional arguments `apply` is traced on.
    """

    layers: list[Layer]
    apply: Callable
    example: tuple


def chain_side(
    tree, arg: str, order: Sequence | None, n_inputs: int | None, n_outputs: int | None
) -> ChainSide:
    """Reads the chain of layers of `tree` and writes it as a function.

    Args:
        tree: linen variables, a params dict, an nnx.State or an nnx.Module.
        arg: the argument's name, for messages.
        order: layer paths in forward order, or None.
        n_inputs: how many input IDs were given for this side, or None.
        n_outputs: how many output IDs were given for this side, or None.

    Raises:
        PlanError: for what `chain_layers` refuses, and for a flatten boundary whose sizes do
            not divide.
    """
    flat = trees.flatten(tree, arg)
    layers = chain_layers(flat, arg, order, n_inputs, n_outputs)
    return ChainSide(layers, _function(layers, arg), (_example(layers, n_inputs, arg),))


def _function(layers: list[Layer], arg: str) -> Callable:
    first = next(layer.path for layer in layers if layer.kind != "norm")

    def apply(tree, x):
        leaves = trees.flatten(tree, arg).leaves
        h = x
        for layer in layers:
            params = {name: leaves[v[1]] for name, v in layer.leaves.items()}
            if layer.kind != "norm" and layer.path != first:
                h = _stand_in(h)
            h = _APPLY[layer.kind](h, params)
        return h

    return apply


def _relu(h):
    return jax.lax.max(h, jnp.zeros((), h.dtype))


_relu.__name__ = STAND_IN
#: The stand-in activation, a ReLU called by a name the planner reads as "unknown".
_stand_in = jax.jit(_relu)


def _example(layers: list[Layer], n_inputs: int | None, arg: str) -> jax.ShapeDtypeStruct:
    """An input of one example for the chain: token IDs for an embedding, a feature map whose
    flatten gives the first dense layer after the convolutions its rows, or feature vectors
    (`(k, n_inputs)` flattened when the first layer takes `k` rows per named input)."""
    first = layers[0]
    dtype = next(iter(first.leaves.values()))[3]
    if first.kind == "embed":
        return jax.ShapeDtypeStruct((1,), jnp.int32)
    if first.kind == "conv":
        rank = len(first.leaves["kernel"][2]) - 2
        spatial = (_flatten_size(layers, arg),) + (1,) * (rank - 1)
        return jax.ShapeDtypeStruct((1, *spatial, first.n_in), dtype)
    if first.kind == "dense" and n_inputs and first.n_in % n_inputs == 0:
        return jax.ShapeDtypeStruct((1, first.n_in // n_inputs, n_inputs), dtype)
    return jax.ShapeDtypeStruct((1, first.n_in), dtype)


def _flatten_size(layers: list[Layer], arg: str) -> int:
    """The positions of the feature map that the first dense layer after a convolution reads
    (its rows are positions x channels); 1 without such a layer. A later flatten boundary must
    read one position per channel."""
    size, last_conv = None, None
    for layer in layers:
        if layer.kind == "conv":
            last_conv = layer
        elif layer.kind == "dense" and last_conv is not None:
            k = flat_factor(layer, last_conv.n_out, arg)
            if size is not None and k != 1:
                raise PlanError(
                    f"`{arg}`: layer {layer.path!r} flattens a second feature map; the "
                    f"params-only path reads one Conv -> Dense flatten; {TRACE_HINT}."
                )
            size, last_conv = k if size is None else size, None
    return size or 1


def _dense(h, p):
    kernel = p["kernel"]
    if h.ndim > 2:
        h = h.reshape(h.shape[0], -1)
    y = jax.lax.dot_general(h.astype(kernel.dtype), kernel, (((1,), (0,)), ((), ())))
    return y + p["bias"].astype(y.dtype) if "bias" in p else y


def _conv(h, p):
    kernel = p["kernel"]
    rank = kernel.ndim - 2
    if h.ndim == 2:
        h = h.reshape((h.shape[0],) + (1,) * rank + (h.shape[1],))
    spatial = tuple(range(1, rank + 1))
    numbers = jax.lax.ConvDimensionNumbers(
        (0, rank + 1, *spatial), (rank + 1, rank, *range(rank)), (0, rank + 1, *spatial)
    )
    y = jax.lax.conv_general_dilated(
        h.astype(kernel.dtype), kernel, (1,) * rank, "SAME", dimension_numbers=numbers
    )
    return y + p["bias"].astype(y.dtype) if "bias" in p else y


def _embed(tokens, p):
    return jnp.take(p["embedding"], tokens, axis=0)


def _norm(h, p):
    dtype = next(iter(p.values())).dtype
    h = h.astype(dtype)
    if "mean" in p or "var" in p:
        y = h - p["mean"] if "mean" in p else h
        y = y * jax.lax.rsqrt(p["var"] + _EPSILON) if "var" in p else y
    else:
        centred = h - h.mean(-1, keepdims=True)
        y = centred * jax.lax.rsqrt((centred * centred).mean(-1, keepdims=True) + _EPSILON)
    y = y * p["scale"] if "scale" in p else y
    return y + p["bias"] if "bias" in p else y


_APPLY = {"dense": _dense, "conv": _conv, "embed": _embed, "norm": _norm}
_SOURCE = re.compile(re.escape(__file__.removesuffix("c")) + r":\d+(?::\d+)? \(_(\w+)\)")


_REPEATED = re.compile(r"(\w+ \(\w+ at a \w+ layer read from the parameters\))(?:, \1)+")


def in_user_words(message: str) -> str:
    """A message with the source lines of this module, which the user never wrote, replaced by
    the kind of layer they stand for ("reduce_sum at a norm layer read from the parameters")."""
    message = _SOURCE.sub(lambda m: f"a {m.group(1)} layer read from the parameters", message)
    return _REPEATED.sub(r"\1", message)
