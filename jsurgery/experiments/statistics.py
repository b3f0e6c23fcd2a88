"""Summaries of learning curves and bootstrap comparisons between arms (NumPy, seeded).

A curve is an array ``(seeds, points)`` of evaluation values (greedy return or test accuracy) at the
x positions ``(points,)`` (environment or gradient steps). Every function here is deterministic for
a given ``seed``.
"""

from __future__ import annotations

import numpy as np

#: Bootstrap resamples used by default.
RESAMPLES = 10_000


def area_under_curve(x, curves) -> np.ndarray:
    """Per-seed area under the curve, normalised by the x range: the mean value over training.

    The trapezoid rule over ``x`` divided by ``x[-1] - x[0]``, so the result is in the units of the
    curve (mean return, mean accuracy) and does not depend on the step budget. With one point, the
    value at that point.

    Args:
        x: ``(points,)`` increasing positions.
        curves: ``(seeds, points)`` values.

    Returns:
        ``(seeds,)`` float64.

    Example:
        >>> area_under_curve([0, 1, 2], [[0.0, 1.0, 1.0]]).tolist()
        [0.75]
    """
    x = np.asarray(x, dtype=np.float64)
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    if x.shape[0] != curves.shape[1]:
        raise ValueError(f"x has {x.shape[0]} points but the curves have {curves.shape[1]}")
    if x.shape[0] == 1:
        return curves[:, 0].copy()
    widths = np.diff(x)
    heights = (curves[:, 1:] + curves[:, :-1]) / 2
    return (heights * widths).sum(axis=1) / (x[-1] - x[0])


def final_values(curves) -> np.ndarray:
    """Per-seed value at the last evaluation, ``(seeds,)``."""
    return np.atleast_2d(np.asarray(curves, dtype=np.float64))[:, -1].copy()


def bootstrap_mean(curves, *, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0):
    """Mean over seeds with a percentile bootstrap interval, point by point.

    Args:
        curves: ``(seeds, points)`` (or ``(seeds,)``).

    Returns:
        ``(mean, low, high)``, each of shape ``(points,)`` (or scalars for ``(seeds,)`` input).
    """
    values = np.asarray(curves, dtype=np.float64)
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    idx = rng.integers(0, n, size=(resamples, n))
    means = values[idx].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha], axis=0)
    return values.mean(axis=0), low, high


def compare(a, b, *, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0) -> dict:
    """Difference of means ``mean(a) - mean(b)`` with a percentile bootstrap interval.

    The two groups are resampled independently (seeds of different arms are independent runs).
    The difference is called significant when the interval excludes zero.

    Args:
        a: per-seed values of the first arm, ``(n_a,)``.
        b: per-seed values of the arm it is compared with, ``(n_b,)``.

    Returns:
        ``{"mean_difference", "ci_low", "ci_high", "level", "significant"}`` with plain floats.

    Example:
        >>> r = compare([1.0, 1.1, 0.9, 1.0], [0.0, 0.1, -0.1, 0.0])
        >>> round(r["mean_difference"], 6), r["significant"]
        (1.0, True)
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    rng = np.random.default_rng(seed)
    diffs = a[rng.integers(0, a.size, size=(resamples, a.size))].mean(axis=1) - b[
        rng.integers(0, b.size, size=(resamples, b.size))
    ].mean(axis=1)
    alpha = (1 - level) / 2
    low, high = np.quantile(diffs, [alpha, 1 - alpha])
    return {
        "mean_difference": float(a.mean() - b.mean()),
        "ci_low": float(low),
        "ci_high": float(high),
        "level": level,
        "significant": bool(low > 0 or high < 0),
    }
