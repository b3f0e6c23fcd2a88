"""Which new layer comes from which old one, on traced graphs.

Layers are the groups of leaves under one path, in the order the traced function first reads them.
They are matched by path where the names agree; where auto-generated names shifted (a layer or
block inserted or removed), by the smallest edit: the alignment of the two layer sequences with
the fewest inserted, removed and reshaped layers. A tie between distinct equally small alignments
is a `PlanError` asking for `layers=`; it is never decided by a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from jsurgery import trees
from jsurgery.errors import PlanError

_INF = float("inf")


@dataclass(frozen=True)
class GraphLayer:
    """A layer of a traced tree: its path, leaves and the step of its first use."""

    path: str
    leaves: dict  # leaf name -> (graph index, full path, shape)
    roles: tuple  # ((leaf name, roles per axis), ...) sorted by name
    first_use: float

    def compatible(self, other: GraphLayer) -> bool:
        """Same leaf names, each with the same axis roles."""
        return self.roles == other.roles


def _cost(old: GraphLayer, new: GraphLayer):
    """0 for an unchanged layer, else the fraction of its leaves' axes that changed size (so a
    layer widened on one side is a smaller change than one reshaped on both); infinite for
    layers of different kinds. Exact fractions, so equal edits tie exactly."""
    if not old.compatible(new):
        return _INF
    pairs = [
        (a, b) for k in new.leaves for a, b in zip(old.leaves[k][2], new.leaves[k][2], strict=True)
    ]
    changed = sum(a != b for a, b in pairs)
    return Fraction(changed, max(len(pairs), 1))


def _signatures(layers: list) -> list[int]:
    """One number per distinct (roles, leaf shapes) of `layers`: layers alike cost alike."""
    seen: dict = {}
    return [
        seen.setdefault((x.roles, tuple((k, v[2]) for k, v in x.leaves.items())), len(seen))
        for x in layers
    ]


def _cost_table(old: list, new: list) -> tuple[list, int]:
    """`_cost` of every (old, new) pair as integers over one common denominator (exact, and
    fast to add and compare), and that denominator; layers alike are costed once."""
    sig_old, sig_new = _signatures(old), _signatures(new)
    first_old = {s: x for s, x in zip(sig_old, old, strict=True)}
    first_new = {s: x for s, x in zip(sig_new, new, strict=True)}
    memo = {(a, b): _cost(first_old[a], first_new[b]) for a in first_old for b in first_new}
    finite = [c for c in memo.values() if c != _INF]
    scale = math.lcm(*(c.denominator for c in finite)) if finite else 1
    scaled = {key: c if c == _INF else int(c * scale) for key, c in memo.items()}
    return [[scaled[a, b] for b in sig_new] for a in sig_old], scale


def _align(old: list, new: list, cap: int = 64) -> tuple[float, list]:
    """Smallest-edit alignments: (cost, up to `cap` distinct optimal matchings, each
    {new path: old path or None})."""
    m, k = len(old), len(new)
    cost, one = _cost_table(old, new)  # an insertion or a deletion costs `one`
    # best[i][j][s]: cheapest edit of old[:i] into new[:j] whose last step is a match or a
    # deletion (s = 0) or an insertion (s = 1). A deletion never follows an insertion, so each
    # set of matched pairs has exactly one path.
    best = [[[_INF, _INF] for _ in range(k + 1)] for _ in range(m + 1)]
    best[0][0][0] = 0
    for i in range(m + 1):
        for j in range(k + 1):
            if i and j:
                best[i][j][0] = min(best[i][j][0], min(best[i - 1][j - 1]) + cost[i - 1][j - 1])
            if i:
                best[i][j][0] = min(best[i][j][0], best[i - 1][j][0] + one)
            if j:
                best[i][j][1] = min(best[i][j - 1]) + one
    total = min(best[m][k])
    found: list = []

    def back(i, j, s, pairs):
        if len(found) >= cap:
            return
        if i == 0 and j == 0:
            found.append(dict(pairs))
            return
        c = best[i][j][s]
        if s == 1:
            for t in (0, 1):
                if best[i][j - 1][t] == c - one:
                    back(i, j - 1, t, pairs)
            return
        if i and j and c - cost[i - 1][j - 1] == min(best[i - 1][j - 1]) < _INF:
            pairs.append((new[j - 1].path, old[i - 1].path))
            prev = min(best[i - 1][j - 1])
            for t in (0, 1):
                if best[i - 1][j - 1][t] == prev:
                    back(i - 1, j - 1, t, pairs)
            pairs.pop()
        if i and best[i - 1][j][0] == c - one:
            back(i - 1, j, 0, pairs)

    if total < _INF:
        for s in (0, 1):
            if best[m][k][s] == total:
                back(m, k, s, [])
    total = Fraction(total, one) if total < _INF else _INF
    return total, [{layer.path: d.get(layer.path) for layer in new} for d in found]


def _by_name(old: list, new: list) -> tuple[float, dict]:
    old_by = {layer.path: layer for layer in old}
    out, cost = {}, 0.0
    for layer in new:
        match = old_by.get(layer.path)
        lost = sorted(set(match.leaves) - set(layer.leaves)) if match is not None else []
        if lost:
            raise PlanError(
                f"old leaf {layer.path}/{lost[0]} has no counterpart in new layer "
                f"{layer.path!r}; it would be dropped silently. Pass layers={{{layer.path!r}: "
                "None}} to start that layer fresh."
            )
        if match is not None and match.compatible(layer):
            out[layer.path] = layer.path
            cost += _cost(match, layer)
        else:
            out[layer.path] = None
            cost += 1
    cost += len(old) - sum(v is not None for v in out.values())
    return cost, out


def _overrides(old: list, new: list, layers) -> dict:
    old_by = {layer.path: layer for layer in old}
    new_by = {layer.path: layer for layer in new}
    fixed: dict = {}
    for key, value in (layers or {}).items():
        npath = trees.path_str(key)
        if npath not in new_by:
            raise PlanError(
                f"`layers`: {npath!r} is not a layer of the new template; new layers: "
                f"{list(new_by)}."
            )
        if value is not None:
            value = trees.path_str(value)
            if value not in old_by:
                raise PlanError(
                    f"`layers`: {npath!r} -> {value!r}, but {value!r} is not a layer of the old "
                    f"network; old layers: {list(old_by)}."
                )
            if not old_by[value].compatible(new_by[npath]):
                raise PlanError(
                    f"`layers`: new {npath!r} ({_describe(new_by[npath])}) cannot take the "
                    f"weights of old {value!r} ({_describe(old_by[value])})."
                )
        fixed[npath] = value
    used = [v for v in fixed.values() if v is not None]
    if len(used) != len(set(used)):
        raise PlanError(f"`layers`: an old layer is used twice in {fixed}.")
    return fixed


def _describe(layer: GraphLayer) -> str:
    kind = f"{layer.roles[0]}: " if isinstance(layer.roles[0], str) else ""
    return kind + ", ".join(f"{k} {v[2]}" for k, v in layer.leaves.items())


def candidate_matchings(old: list, new: list, layers) -> tuple[list, str]:
    """The matchings of new layers to old ones that are smallest edits.

    Args:
        old, new: `GraphLayer`s in order of first use.
        layers: `{new_path: old_path or None}` overrides.

    Returns:
        `([{new path: old path or None}, ...], how)`: the by-name matching alone (how "name")
        when it is a smallest edit, else every distinct smallest alignment (how "structure");
        the caller keeps those whose spaces correspond.

    Raises:
        PlanError: for a bad override.
    """
    fixed = _overrides(old, new, layers)
    used = {v for v in fixed.values() if v is not None}
    rest_old = [layer for layer in old if layer.path not in used]
    rest_new = [layer for layer in new if layer.path not in fixed]
    name_cost, by_name = _by_name(rest_old, rest_new)
    agree = {layer.path for layer in rest_old} == set(by_name) and None not in by_name.values()
    cost, aligned = (0, []) if agree else _align(rest_old, rest_new)
    if agree or name_cost <= cost:
        aligned, how = [by_name], "name"
    else:
        how = "structure"
    return [
        {layer.path: fixed.get(layer.path, a.get(layer.path)) for layer in new} for a in aligned
    ], how


def ambiguity(choices: list) -> PlanError:
    """The error for two or more equally good matchings: shows the first two and the overrides
    that settle on the first (its pairs wherever any other matching differs; `error.layers`)."""
    a, b = choices[0], choices[1]
    settle = {
        n: o for n, o in a.items() if o is not None and any(c.get(n) != o for c in choices[1:])
    }
    differ = {n: f"{a[n]} or {b[n]}" for n in a if a[n] != b[n]}
    error = PlanError(
        f"the layers can be matched in more than one equally small way ({len(choices)} found); "
        f"the first two differ at {differ} (None: inserted). Pass layers= with the pairs that "
        f"settle it, e.g. layers={settle} (a new layer left out of the matching is an inserted "
        "layer and starts as `new_layers` says; a layer mapped to None keeps the template's init)."
    )
    error.layers = settle
    return error
