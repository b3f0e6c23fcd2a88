"""Unit IDs: validation and the old -> new index arrays that follow from them."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from jsurgery.errors import PlanError


class FreshId:
    """The ID of a unit that exists only in the new network (never equal to any user ID)."""

    __slots__ = ("layer", "position")

    def __init__(self, layer: str, position: int):
        self.layer = layer
        self.position = position

    def __repr__(self) -> str:
        return f"<new {self.layer}[{self.position}]>"


def check_ids(arg: str, ids: Sequence[Hashable]) -> tuple:
    """Returns `ids` as a tuple after checking they form a sequence of unique hashables.

    Raises:
        PlanError: when `ids` is a string or not a sequence, holds an unhashable item or one
            that does not equal itself (NaN), or repeats an ID.
    """
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (Sequence, np.ndarray)):
        raise PlanError(
            f"`{arg}`: expected a sequence of unit IDs, got {type(ids).__name__} {ids!r}; "
            "pass a list such as ['x', 'theta']."
        )
    ids = tuple(i.item() if isinstance(i, np.generic) else i for i in ids)
    seen, dups = set(), []
    for i in ids:
        try:
            hash(i)
        except TypeError:
            raise PlanError(
                f"`{arg}`: unit ID {i!r} is not hashable; use strings or ints."
            ) from None
        if i != i:
            raise PlanError(
                f"`{arg}`: unit ID {i!r} does not equal itself, so no unit could ever match it; "
                "use strings or ints."
            )
        if i in seen and i not in dups:
            dups.append(i)
        seen.add(i)
    if dups:
        raise PlanError(
            f"`{arg}`: IDs contain duplicates {dups}; unit IDs must be unique within a layer."
        )
    return ids


def check_pair(arg: str, pair) -> tuple[tuple, tuple]:
    """Checks an `(old_ids, new_ids)` pair and returns it as two tuples."""
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise PlanError(
            f"`{arg}`: expected a pair (old_ids, new_ids), got {pair!r}; "
            f"for example {arg}=(['a', 'b'], ['a', 'b', 'c'])."
        )
    return check_ids(f"{arg}[0] (old IDs)", pair[0]), check_ids(f"{arg}[1] (new IDs)", pair[1])


def check_count(arg: str, ids: tuple, size: int, where: str) -> None:
    """Raises a PlanError when `len(ids)` differs from the parameter size it must describe."""
    if len(ids) != size:
        shown = list(ids) if len(ids) <= 12 else [*ids[:12], "..."]
        raise PlanError(
            f"`{arg}`: {len(ids)} IDs {shown} for {size} units at {where}; "
            "give exactly one ID per unit."
        )


def positions(n: int) -> tuple[int, ...]:
    """The default IDs of `n` units matched by position."""
    return tuple(range(n))


def index_of(new_ids: Sequence[Hashable], old_ids: Sequence[Hashable]) -> np.ndarray:
    """For each new ID, its position among `old_ids`, or -1 when it is new."""
    where = {i: k for k, i in enumerate(old_ids)}
    return np.asarray([where.get(i, -1) for i in new_ids], dtype=np.int32).reshape(-1)
