"""What users do today without jsurgery, as the baseline arm ``naive-load``."""

from __future__ import annotations

from flax import traverse_util

from jsurgery.trees import path_str


def naive_load(old, template):
    """Copies every leaf of ``old`` whose path, shape and dtype match a leaf of ``template``.

    Every other leaf of ``template`` keeps its initial value, and leaves of ``old`` with no match
    are dropped without a word: what PyTorch's ``load_state_dict(strict=False)`` (after removing
    the mismatched keys) or stable-baselines3's ``set_parameters(exact_match=False)`` amount to.
    Units are matched by position only, so a leaf whose shape happens to match is copied even when
    its units now mean something else.

    Args:
        old: nested dict of trained arrays (e.g. linen variables).
        template: nested dict of freshly initialised arrays of the new network.

    Returns:
        A nested dict with the structure of ``template``.

    Example:
        >>> import numpy as np
        >>> old = {"Dense_0": {"kernel": np.ones((2, 3))}, "Dense_1": {"kernel": np.ones((3, 2))}}
        >>> new = {"Dense_0": {"kernel": np.zeros((4, 3))}, "Dense_1": {"kernel": np.zeros((3, 2))}}
        >>> out = naive_load(old, new)
        >>> float(out["Dense_0"]["kernel"].sum()), float(out["Dense_1"]["kernel"].sum())
        (0.0, 6.0)
    """
    new_flat = traverse_util.flatten_dict(dict(template))
    return traverse_util.unflatten_dict({**new_flat, **_matching(old, template)})


def copied_paths(old, template) -> list[str]:
    """The ``/``-joined paths :func:`naive_load` copies, for the results' notes."""
    return [path_str(path) for path in _matching(old, template)]


def _matching(old, template) -> dict:
    """Path -> leaf of ``old`` for each leaf of ``template`` with the same path, shape and dtype."""
    old_flat = traverse_util.flatten_dict(dict(old))
    return {
        path: old_flat[path]
        for path, leaf in traverse_util.flatten_dict(dict(template)).items()
        if path in old_flat
        and old_flat[path].shape == leaf.shape
        and old_flat[path].dtype == leaf.dtype
    }
