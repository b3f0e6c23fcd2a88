"""Inputs removed and held at values (`make_plan(removed_inputs={old_id: value})`): each is folded
into the bias of every layer that reads it, `bias[o] += sum_r kernel[r, o] * value[r]`, so the
new network on the kept inputs computes what the old one computed with the removed inputs held.

The fold is exact only for affine first layers: `jsurgery.plan.input_readers` finds them in the
old function's jaxpr and refuses any other use of the input. The sums are computed from the old
weights inside `transplant` (`jsurgery.execute.gather.folded`); the plan holds which kernel,
which rows and which values (`jsurgery.plan.data.Fold`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from jsurgery import ids
from jsurgery.errors import PlanError
from jsurgery.plan.data import Fold, Held
from jsurgery.plan.input_readers import readers
from jsurgery.plan.sides import input_axis


def fold_removed(fields: dict, sides, removed: dict) -> dict:
    """The plan's fields with the removed inputs folded into the biases that read them, every
    promise made with them held, and `removed` set (`Plan.removed`).

    Args:
        fields: the fields `jsurgery.plan.build.build` returned (traced input specs).
        sides: the traced sides `(old, new, old_example, new_example)`.
        removed: `{old_id: value}`, values checked (`jsurgery.plan.options.check_removed`).

    Raises:
        PlanError: for an ID that is not an old input, or still a new one; for an input that
            reaches anything but affine first layers, or a first layer without a bias.
    """
    if not removed:
        return fields
    old, _, old_ex, _ = sides
    held = held_inputs(removed, fields["input_specs"], old, old_ex)
    leaves = list(fields["leaves"])
    for k in sorted({h.input for h in held}):
        mine = [h for h in held if h.input == k]
        what = f"`removed_inputs` {[h.id for h in mine]}"
        n = len(fields["input_specs"][k][1])
        for reader in readers(old.fn, old.leaves, old_ex, k, old.side.paths, what):
            leaves = _fold_into_bias(leaves, old, reader, (mine, n), what)
    values = tuple((h.id, h.value) for h in held)
    promises = tuple(replace(p, held=values) for p in fields["promises"])
    return dict(fields, leaves=tuple(leaves), promises=promises, removed=held)


def held_inputs(removed: dict, specs: tuple, old, old_ex) -> tuple[Held, ...]:
    """One `Held` per removed ID, found among the old IDs of the inputs' feature axes.

    Raises:
        PlanError: for an ID that no old input has, that several have, that the new network
            still has, that is a token value, or whose input has its features on another axis
            than the last.
    """
    arg_leaves = _arg_leaves(old_ex)
    out = []
    for uid, value in removed.items():
        k = _input_of(uid, specs)
        _, old_ids, new_ids = specs[k]
        if ids.index_of([uid], new_ids)[0] >= 0:
            raise PlanError(
                f"`removed_inputs`: {uid!r} is still an input of the new network "
                f"({list(new_ids)}); only an input the new network lacks can be held at a value: "
                "remove it from the new IDs or from removed_inputs."
            )
        axis, ndim = input_axis(old.side, k)[1], len(arg_leaves[k].shape)
        if axis != ndim - 1:
            raise PlanError(
                f"`removed_inputs`: {uid!r} lies on axis {axis} of input {k}, not its last axis; "
                "removed inputs are folded into dense first layers reading the last axis."
            )
        out.append(Held(k, -1, int(ids.index_of([uid], old_ids)[0]), uid, value))
    return tuple(out)


def _arg_leaves(example) -> list:
    import jax

    return jax.tree_util.tree_leaves(tuple(example))


def _input_of(uid, specs: tuple) -> int:
    """The input whose old feature IDs hold `uid`."""
    found = [k for k, s in enumerate(specs) if s is not None and ids.index_of([uid], s[1])[0] >= 0]
    if not found:
        named = {k: list(s[1]) for k, s in enumerate(specs) if s is not None and s[0] != "values"}
        raise PlanError(
            f"`removed_inputs`: {uid!r} is not an old input ID; the old inputs' IDs are "
            f"{named.get(0) if list(named) == [0] else named} (IDs compare by value and type: "
            "1 and '1' differ)."
        )
    if len(found) > 1:
        raise PlanError(
            f"`removed_inputs`: {uid!r} is an ID of inputs {found}; give the inputs distinct IDs."
        )
    if specs[found[0]][0] == "values":
        raise PlanError(
            f"`removed_inputs`: {uid!r} is a token ID of input {found[0]}; removed inputs are "
            "features held at a value, not token values."
        )
    return found[0]


def _fold_into_bias(leaves: list, old, reader, inputs: tuple, what: str) -> list:
    """`leaves` with the removed inputs folded into the bias that `reader`'s kernel feeds, in
    every new leaf that continues that bias (`inputs`: the `Held` inputs and how many features
    their input has)."""
    held, n = inputs
    kernel_path = old.side.paths[reader.kernel]
    if reader.bias is None:
        raise PlanError(
            f"{what}: layer kernel {kernel_path!r} reads them and has no bias to fold them into "
            "(no bias is added to its product); give the layer a bias, or drop the removal."
        )
    bias_path = old.paths[reader.bias]
    flat = list(old.flat.leaves)
    fold = Fold(
        flat.index(old.paths[reader.kernel]),
        reader.axis,
        np.asarray([r for h in held for r in reader.rows(h.position, n)], np.int32),
        np.asarray([h.value for h in held for _ in range(reader.blocks)], np.float64),
    )
    note = (
        "; folds removed inputs "
        + ", ".join(f"{h.id!r} = {h.value:g}" for h in held)
        + f" (rows of {kernel_path})"
    )
    hits = [i for i, lp in enumerate(leaves) if lp.old_path == bias_path and lp.source == "old"]
    if not hits:
        raise PlanError(
            f"{what}: they are folded into the bias {old.side.paths[reader.bias]!r} of layer "
            f"kernel {kernel_path!r}, and no leaf of the new network continues that bias (its "
            "layer was removed or starts new); keep the layer, or drop the removal."
        )
    for i in hits:
        lp = leaves[i]
        leaves[i] = replace(lp, fold=(*lp.fold, fold), note=lp.note + note)
    return leaves
