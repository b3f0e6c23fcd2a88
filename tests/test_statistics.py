"""Curve summaries and bootstrap comparisons."""

import doctest

import numpy as np
import pytest

from jsurgery.experiments import statistics


def test_doctests():
    assert doctest.testmod(statistics).failed == 0


def test_area_under_curve_is_mean_value_over_training():
    x = np.array([0, 10, 20, 40])
    assert statistics.area_under_curve(x, np.full((3, 4), 2.5)) == pytest.approx([2.5] * 3)
    # linear ramp 0 -> 1 averages to 0.5 whatever the spacing
    ramp = (x / 40.0)[None]
    assert statistics.area_under_curve(x, ramp) == pytest.approx([0.5])
    assert statistics.area_under_curve([5], [[3.0], [4.0]]).tolist() == [3.0, 4.0]
    with pytest.raises(ValueError, match="points"):
        statistics.area_under_curve([0, 1], [[1.0, 2.0, 3.0]])


def test_final_values():
    assert statistics.final_values([[1, 2, 3], [4, 5, 6]]).tolist() == [3.0, 6.0]


def test_compare_is_seeded_and_detects_a_shift():
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 20), rng.normal(0.0, 1.0, 20)
    first, second = statistics.compare(a, b, seed=3), statistics.compare(a, b, seed=3)
    assert first == second
    assert first["ci_low"] < first["mean_difference"] < first["ci_high"]
    assert first["significant"]
    same = statistics.compare(a, a + rng.normal(0, 1e-3, 20))
    assert not same["significant"]


def test_bootstrap_mean_brackets_the_mean():
    curves = np.random.default_rng(0).normal(size=(20, 5))
    mean, low, high = statistics.bootstrap_mean(curves)
    assert mean.shape == low.shape == high.shape == (5,)
    assert np.all(low <= mean) and np.all(mean <= high)
