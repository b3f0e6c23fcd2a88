"""One network as the planner sees it: its unit-space graph with the names of its leaves (`Side`),
and with its flat tree, layers and traced function (`Traced`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from jsurgery import trees
from jsurgery.graph.unit_graph import Graph


@dataclass
class Traced:
    """One side: its flat tree, graph, leaf paths and layers."""

    flat: trees.FlatTree
    side: Side
    paths: list  # graph leaf index -> path tuple
    layers: list  # GraphLayer, in order of first use
    fn: Callable | None = None  # fn(leaves, *args), leaves in graph order
    leaves: list | None = None  # the leaves fn takes


@dataclass
class Side:
    """One network's graph with the names of its leaves, for messages."""

    graph: Graph
    paths: list  # leaf index -> path string
    name: str  # "old" or "new"
    input_paths: list = field(default_factory=list)  # input leaf -> key path in the arguments

    def root(self, node: int) -> int:
        return self.graph.find(node)

    def size(self, node: int) -> int:
        return self.graph.size[self.graph.find(node)]

    def where(self, leaf: int, axis: int) -> str:
        return f"{self.name} leaf {self.paths[leaf]!r} axis {axis}"
