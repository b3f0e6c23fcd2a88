"""The unit-space graph of a network: every axis of every parameter, input and output in a space.

What the front-ends (`jsurgery.trace`, `jsurgery.params`) build and every later stage reads:
`Graph` (spaces as a union-find, composite spaces, roles of parameter axes), `Side` and `Traced`
(one network's graph with its leaf names, layers and function), the carry of a recurrent step
(`carry.py`), the factors of axes a reshape splits (`factors.py`) and what a layer's output
goes through before the next layer reads it (`follows.py`).
"""

from jsurgery.graph.side import Side, Traced
from jsurgery.graph.unit_graph import READ, WINDOW, WRITE, CompositeKind, Graph, Role

__all__ = ["READ", "WINDOW", "WRITE", "CompositeKind", "Graph", "Role", "Side", "Traced"]
