"""`make_plan`'s option values checked for their kind before any tracing or planning."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from jsurgery import ids
from jsurgery.errors import PlanError


def check_options(inputs, outputs, order, allow_dtype_change) -> None:
    """Refuses an option of the wrong kind: IDs that are neither an `(old_ids, new_ids)` pair
    nor `{index: pair}`, an `order` that is not a list of layer paths, an `allow_dtype_change`
    that is not True or False. (Which indices and layers exist is checked where the networks
    are read.)

    Raises:
        PlanError: naming the option and what it takes.
    """
    for arg, spec in (("inputs", inputs), ("outputs", outputs)):
        if isinstance(spec, Mapping):
            for k, pair in spec.items():
                if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 0:
                    raise PlanError(
                        f"`{arg}`: key {k!r} is not an index; {arg}={{index: (old_ids, "
                        f"new_ids)}} names the function's {arg} by their indices 0, 1, ..."
                    )
                ids.check_pair(f"{arg}[{k}]", pair)
        elif spec is not None:
            ids.check_pair(arg, spec)
    if order is not None and (
        isinstance(order, str)
        or not isinstance(order, Sequence)
        or not all(isinstance(path, str | tuple) for path in order)
    ):
        raise PlanError(
            f"`order`: expected a list of layer paths in forward order, got "
            f"{type(order).__name__} {order!r}; for example order=['Dense_0', 'Dense_1']."
        )
    if not isinstance(allow_dtype_change, bool | np.bool_):
        raise PlanError(
            f"`allow_dtype_change`: {allow_dtype_change!r} is not True or False; True casts old "
            "leaves to the template's dtypes."
        )


def check_removed(removed_inputs) -> dict:
    """`removed_inputs` as `{old_id: float}`, refused when it is not a dict of finite numbers.
    (Whether each ID is an old input that the new network lacks is checked where the inputs'
    IDs are known.)

    Raises:
        PlanError: naming the argument, or the ID whose value is not a finite number.
    """
    if removed_inputs is None:
        return {}
    if not isinstance(removed_inputs, Mapping):
        raise PlanError(
            f"`removed_inputs`: expected a dict {{old_input_id: value}}, got "
            f"{type(removed_inputs).__name__} {removed_inputs!r}; each removed input is held at "
            "its value, for example removed_inputs={'wind': 0.0}."
        )
    return {uid: _value(uid, v) for uid, v in removed_inputs.items()}


def _value(uid, v) -> float:
    """The value a removed input is held at, as a float."""
    a = np.asarray(v) if not isinstance(v, str) else None
    if a is None or a.ndim != 0 or a.dtype.kind not in "iuf" or not np.isfinite(a):
        raise PlanError(
            f"`removed_inputs`: the value of {uid!r} is {v!r}, not a finite number; a removed "
            "input is held at one number, its value in the old network's inputs."
        )
    return float(a)
