"""Layers inserted in a row: the spaces between them continue the old space the row starts and ends
in."""

from __future__ import annotations

from jsurgery.graph.side import Traced
from jsurgery.match.correspondence import kernel_roots


def continue_through_inserted(new: Traced, inserted: set, corr, given_new: dict) -> None:
    """New spaces between layers inserted in a row (each reading one space and writing one of
    the same size) continue the old space the row starts and ends in, with the IDs of its
    start, so every layer of the row can start as an identity. A row that ends where it starts
    (a new residual branch added back to its input) is left alone."""
    g = new.side.graph
    edges: dict = {}
    for layer in new.layers:
        if layer.path in inserted:
            for i, _, _ in layer.leaves.values():
                ends = kernel_roots(g, i)
                if ends is not None and g.size[ends[0]] == g.size[ends[1]]:
                    edges.setdefault(ends[0], set()).add(ends[1])
    for start, old_root in list(corr.to_old.items()):
        for between in _rows(edges, start, corr.to_old, old_root):
            corr.add(between, old_root, f"a layer inserted after {new.side.name} space {start}")
            if start in given_new:
                given_new[between] = given_new[start]


def _rows(edges: dict, start: int, to_old: dict, old_root: int) -> list:
    """Spaces without an old counterpart on a path of `edges` from `start` to another space
    that continues `old_root`."""
    found, stack = [], [(start, ())]
    while stack:
        root, path = stack.pop()
        for nxt in edges.get(root, ()):
            if nxt in path or nxt == start:
                continue
            if nxt not in to_old:
                stack.append((nxt, (*path, nxt)))
            elif to_old[nxt] == old_root:
                found.extend(r for r in path if r not in found)
    return found
