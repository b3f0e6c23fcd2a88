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


def interquartile_mean(values) -> float:
    """Mean of the middle half of ``values``: the interquartile mean (IQM).

    The lowest and the highest ``floor(n / 4)`` values are left out, as ``scipy.stats.trim_mean``
    does with ``proportiontocut=0.25``. Less sensitive to outlying runs than the mean and less
    wasteful than the median (Agarwal et al., *Deep Reinforcement Learning at the Edge of the
    Statistical Precipice*, NeurIPS 2021).

    Example:
        >>> interquartile_mean([0.0, 1.0, 2.0, 3.0, 4.0, 100.0, 5.0, 6.0])
        3.5
    """
    values = np.sort(np.asarray(values, dtype=np.float64).ravel())
    if values.size == 0:
        raise ValueError("the interquartile mean of no values is undefined")
    cut = values.size // 4
    return float(values[cut : values.size - cut].mean())


def stratified_bootstrap(
    groups, statistic, *, level: float = 0.95, resamples: int = RESAMPLES, seed: int = 0
):
    """A statistic of runs on several tasks, with a stratified percentile bootstrap interval: each
    resample draws, within every task, as many runs as it has, with replacement.

    Args:
        groups: a sequence of per-task arrays of run scores (each ``(runs,)``).
        statistic: a function of a list of per-task arrays to a float or an array, such as
            ``lambda groups: interquartile_mean(np.concatenate(groups))`` or
            ``lambda groups: score_profile(groups, thresholds)``.
        level: of the interval.
        resamples: number of bootstrap resamples.
        seed: of the resampling.

    Returns:
        ``(value, low, high)``: the statistic of all runs and its interval.

    Example:
        >>> pooled_mean = lambda groups: np.concatenate(groups).mean()
        >>> value, low, high = stratified_bootstrap([[1.0, 1.0], [3.0, 3.0]], pooled_mean)
        >>> float(value), float(low), float(high)
        (2.0, 2.0, 2.0)
    """
    groups = [np.asarray(g, dtype=np.float64).ravel() for g in groups]
    if not groups or any(g.size == 0 for g in groups):
        raise ValueError("every task needs at least one run")
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, g.size, size=(resamples, g.size)) for g in groups]
    values = np.array(
        [statistic([g[d[r]] for g, d in zip(groups, draws, strict=True)]) for r in range(resamples)]
    )
    alpha = (1 - level) / 2
    low, high = np.quantile(values, [alpha, 1 - alpha], axis=0)
    return statistic(groups), low, high


def score_profile(groups, thresholds) -> np.ndarray:
    """The performance profile: for each threshold ``t``, the fraction of runs scoring above
    ``t``, averaged over tasks (each task weighs the same, whatever its number of runs).

    Args:
        groups: a sequence of per-task arrays of run scores.
        thresholds: ``(k,)`` scores.

    Returns:
        ``(k,)`` fractions in ``[0, 1]``, non-increasing in the threshold.

    Example:
        >>> score_profile([[0.0, 1.0], [2.0, 2.0, 2.0, 0.0]], [0.5, 1.5]).tolist()
        [0.625, 0.375]
    """
    thresholds = np.asarray(thresholds, dtype=np.float64)
    per_task = [
        (np.asarray(g, dtype=np.float64).ravel()[:, None] > thresholds[None]).mean(axis=0)
        for g in groups
    ]
    return np.mean(per_task, axis=0)
