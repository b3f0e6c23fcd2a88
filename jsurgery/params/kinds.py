"""Layer kinds of the params-only path, read from leaf names and shapes, and their unit counts."""

from __future__ import annotations

from typing import Literal

from jsurgery.errors import PlanError

#: The layers the params-only path reads.
LayerKind = Literal["dense", "conv", "embed", "norm"]

#: Leaf names each layer kind may hold, by kind.
LAYER_LEAVES = {
    "dense": {"kernel", "bias"},
    "conv": {"kernel", "bias"},
    "embed": {"embedding"},
    "norm": {"scale", "bias", "mean", "var"},
}

SUPPORTED = (
    "Dense/Linear (kernel (in, out), bias (out,)); Conv 1-D/2-D/3-D (kernel (*window, in, out), "
    "bias); LayerNorm/BatchNorm (scale, bias, mean, var of shape (features,)); "
    "Embed (embedding (vocab, features))"
)

_UNSUPPORTED_PREFIXES = (
    "DenseGeneral",
    "LinearGeneral",
    "ConvTranspose",
    "ConvLocal",
    "MultiHead",
    "Attention",
    "Einsum",
    "GroupNorm",
    "RMSNorm",
    "LSTM",
    "GRU",
    "OptimizedLSTM",
    "SimpleCell",
)


def layer_kind(layer: str, leaves: dict[str, tuple]) -> LayerKind:
    """Classifies a layer from its leaf names and shapes.

    Args:
        layer: the layer path, for messages.
        leaves: leaf name -> shape.

    Returns:
        "dense", "conv", "embed" or "norm".

    Raises:
        PlanError: for a leaf kind the library cannot give axis roles to.
    """
    name = layer.rsplit("/", 1)[-1]
    if name.startswith(_UNSUPPORTED_PREFIXES):
        raise PlanError(
            f"layer {layer!r}: {name.split('_')[0]} layers are not supported; "
            f"supported: {SUPPORTED}."
        )
    names = set(leaves)
    if "kernel" in names:
        ndim = len(leaves["kernel"])
        kind = "dense" if ndim == 2 else "conv" if ndim >= 3 else None
        if kind is None:
            raise PlanError(
                f"layer {layer!r}: a kernel of shape {leaves['kernel']} has no axis roles."
            )
    elif "embedding" in names:
        kind = "embed"
    elif names <= LAYER_LEAVES["norm"]:
        kind = "norm"
    else:
        kind = None
    if kind is None or not names <= LAYER_LEAVES[kind]:
        extra = sorted(names - LAYER_LEAVES.get(kind, set()))
        raise PlanError(
            f"layer {layer!r}: unsupported leaves {extra} (leaves {sorted(names)}); "
            f"supported: {SUPPORTED}."
        )
    for leaf, shape in leaves.items():
        want = {"bias": 1, "scale": 1, "mean": 1, "var": 1, "embedding": 2}.get(leaf)
        if want is not None and len(shape) != want:
            raise PlanError(
                f"leaf {layer}/{leaf}: shape {shape} has {len(shape)} axes, expected {want}."
            )
    if kind == "norm":
        sizes = {shape[0] for shape in leaves.values()}
        if len(sizes) != 1:
            raise PlanError(f"layer {layer!r}: norm leaves of different sizes {leaves}.")
    if kind in ("dense", "conv") and "bias" in leaves and leaves["bias"][0] != leaves["kernel"][-1]:
        raise PlanError(
            f"layer {layer!r}: bias {leaves['bias']} does not match kernel {leaves['kernel']}."
        )
    return kind


def in_out_sizes(kind: LayerKind, leaves: dict[str, tuple]) -> tuple[int, int]:
    """The number of input and output units of a layer of the given kind."""
    if kind in ("dense", "conv"):
        return leaves["kernel"][-2], leaves["kernel"][-1]
    if kind == "embed":
        return leaves["embedding"]
    size = next(iter(leaves.values()))[0]
    return size, size
