"""The naive-load baseline: what it copies and what it says it copied agree."""

import numpy as np

from jsurgery.experiments.baselines import copied_paths, naive_load


def test_copies_leaves_of_same_path_shape_and_dtype_and_lists_exactly_those():
    old = {
        "Dense_0": {"kernel": np.ones((2, 3), np.float32), "bias": np.ones(3, np.float16)},
        "Dense_1": {"kernel": np.ones((3, 2), np.float32), "bias": np.ones(2, np.float32)},
        "gone": {"kernel": np.ones((1, 1), np.float32)},
    }
    template = {
        "Dense_0": {"kernel": np.zeros((4, 3), np.float32), "bias": np.zeros(3, np.float32)},
        "Dense_1": {"kernel": np.zeros((3, 2), np.float32), "bias": np.zeros(2, np.float32)},
        "Dense_2": {"kernel": np.zeros((2, 2), np.float32)},
    }
    out = naive_load(old, template)
    copied = {
        f"{layer}/{name}"
        for layer, leaves in out.items()
        for name, leaf in leaves.items()
        if np.all(leaf == 1)
    }
    assert copied == {"Dense_1/kernel", "Dense_1/bias"}  # shape (Dense_0/kernel), dtype (bias)
    assert copied_paths(old, template) == ["Dense_1/kernel", "Dense_1/bias"]
    assert set(out) == set(template) and out["Dense_0"]["bias"].dtype == np.float32
