"""The params-only front-end: a plain chain of layers read from names and shapes, as a function.

Layers are read from the parameter tree (`layers.py`: kinds from leaf names and shapes, forward
order, refusal of what cannot be verified as one chain) and written as a function of the tree
(`function.py`: dense, conv, norm and embed layers in that order, a flatten before the first
dense after a conv). That function is traced like any other, so a params-only plan is made by the
same pipeline as a traced one.
"""

from jsurgery.params.function import ChainSide, chain_side, in_user_words
from jsurgery.params.layers import TRACE_HINT, Layer, chain_layers, check_order

__all__ = [
    "TRACE_HINT",
    "ChainSide",
    "Layer",
    "chain_layers",
    "chain_side",
    "check_order",
    "in_user_words",
]
