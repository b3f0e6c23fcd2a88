"""Plots and tables from ``results.json``: ``curves.png`` and the markdown results tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jsurgery.atomic import write_file
from jsurgery.experiments import statistics

#: The original study's colours (red old, blue scratch, green transplant), then the other arms.
COLOURS = {
    "old": "tab:red",
    "scratch": "tab:blue",
    "transplant": "tab:green",
    "preserving": "tab:orange",
    "naive-load": "tab:purple",
    "template": "tab:green",
    "exact": "tab:orange",
}
OTHER_COLOURS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")

#: Size of ``curves.png`` in inches and its resolution: 1400 x 600 pixels.
FIGSIZE = (14, 6)
DPI = 100

#: Arms shown in the README table, in order.
TABLE_ARMS = ("transplant", "preserving", "naive-load")

#: Arms shown in a :data:`TABLE_ARMS` column of another name: the chains' recipes.
TABLE_ROLES = {"chain-transplant": "transplant", "chain-preserving": "preserving"}

#: Bootstrap resamples for the plotted bands (the tables use :data:`statistics.RESAMPLES`).
PLOT_RESAMPLES = 2000


def arm_colour(arm: str, arms) -> str:
    if arm in COLOURS:
        return COLOURS[arm]
    others = [a for a in arms if a not in COLOURS]
    return OTHER_COLOURS[others.index(arm) % len(OTHER_COLOURS)]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def draw_curves(ax, x, curves, *, colour: str, label: str, linestyle: str = "-"):
    """One group of runs on ``ax``: the mean over seeds as a line, its 95% bootstrap interval as a
    band, and each seed as a faint thin line.

    Points where a seed has no value (``NaN``, e.g. before its first finished episode) get no mean
    and no band.

    Args:
        ax: a matplotlib axis.
        x: ``(points,)`` positions.
        curves: ``(seeds, points)`` values.
        colour, label, linestyle: of the mean line (the band and the seeds share the colour).

    Returns:
        ``(low, high)``: the lowest and highest point of the band, for :func:`fit_to_bands`.
    """
    x = np.asarray(x, dtype=np.float64)
    curves = np.atleast_2d(np.asarray(curves, dtype=np.float64))
    mean, low, high = (np.full(x.shape, np.nan) for _ in range(3))
    complete = np.all(np.isfinite(curves), axis=0)
    if complete.any():
        m, lo, hi = statistics.bootstrap_mean(curves[:, complete], resamples=PLOT_RESAMPLES)
        mean[complete], low[complete], high[complete] = m, lo, hi
    for curve in curves:
        ax.plot(x, curve, color=colour, linewidth=0.5, alpha=0.06, linestyle=linestyle)
    ax.fill_between(x, low, high, color=colour, alpha=0.12, linewidth=0)
    ax.plot(x, mean, color=colour, linewidth=2.2, label=label, linestyle=linestyle)
    if not complete.any():
        return np.nan, np.nan
    return float(np.nanmin(low)), float(np.nanmax(high))


def fit_to_bands(ax, bands, margin: float = 0.08) -> None:
    """Sets the y-range to the union of the ``(low, high)`` bands plus ``margin`` of its height,
    so that single seeds far outside the bands do not squash the means together."""
    bands = np.asarray([b for b in bands if np.all(np.isfinite(b))], dtype=np.float64)
    if not len(bands):
        return
    low, high = bands[:, 0].min(), bands[:, 1].max()
    pad = margin * (high - low) if high > low else max(abs(high), 1.0) * margin
    ax.set_ylim(low - pad, high + pad)


def draw_differences(ax, results: dict) -> None:
    """Each arm's difference from ``scratch`` with its 95% bootstrap interval: the area under the
    curve (mean over training) as a circle, the final value as a square; filled when the interval
    excludes zero. The zero line is ``scratch``."""
    comparisons = results.get("comparisons", {})
    arms = [a for a in results["arms"] if f"{a}_vs_scratch" in comparisons]
    for row, arm in enumerate(arms):
        colour = arm_colour(arm, results["arms"])
        for metric, marker, shift in (("auc", "o", -0.13), ("final", "s", 0.13)):
            c = comparisons[f"{arm}_vs_scratch"][metric]
            mean = c["mean_difference"]
            ax.errorbar(
                mean,
                row + shift,
                xerr=[[mean - c["ci_low"]], [c["ci_high"] - mean]],
                fmt=marker,
                color=colour,
                markerfacecolor=colour if c["significant"] else "white",
                markersize=7,
                capsize=3,
                linewidth=1.8 if metric == "auc" else 1.0,
            )
    ax.axvline(0.0, color=COLOURS["scratch"], linewidth=1.2)
    ax.set_yticks(range(len(arms)), arms)
    ax.set_ylim(len(arms) - 0.5, -0.5)
    ax.set_xlabel(f"difference from scratch, {results['y_label']}")
    ax.set_title("vs scratch: mean and 95% CI\n(o AUC, s final; filled: CI excludes 0)")
    ax.grid(axis="x", alpha=0.3)


def plot_curves(results: dict, path: str | Path) -> Path:
    """``curves.png`` of one experiment, two panels.

    Left: every arm's mean curve with its 95% bootstrap band over seeds, single seeds faint, the
    y-range set by the bands (``old`` is dashed: it ran on the old task). Right: each surgery arm's
    difference from ``scratch`` in area under the curve and in final value, with the 95% bootstrap
    intervals of ``results["comparisons"]``.

    Args:
        results: the content of ``results.json``.
        path: where to write the PNG (``FIGSIZE`` at ``DPI``).

    Returns:
        The path written.
    """
    plt = _pyplot()
    path = Path(path)
    arms = results["arms"]
    fig, (ax, diff_ax) = plt.subplots(
        1, 2, figsize=FIGSIZE, dpi=DPI, gridspec_kw={"width_ratios": [2.3, 1]}
    )
    bands = []
    for name, arm in arms.items():
        label = name if name == "old" else f"{name} (AUC {np.mean(arm['auc']):.3g})"
        bands.append(
            draw_curves(
                ax,
                arm["x"],
                arm["curves"],
                colour=arm_colour(name, arms),
                label=label,
                linestyle="--" if name == "old" else "-",
            )
        )
    fit_to_bands(ax, bands)
    ax.set_xlabel(results["x_label"])
    ax.set_ylabel(results["y_label"])
    ax.set_title(
        f"{results['experiment']} ({results['protocol']} protocol, {results['seeds']} "
        f"seed{'s' if results['seeds'] > 1 else ''}): "
        "mean, 95% CI band, faint seeds"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    draw_differences(diff_ax, results)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, lambda file: fig.savefig(file, dpi=DPI, format="png"), mode="wb")
    plt.close(fig)
    return path


def plot_training(summary: dict, path: str | Path) -> Path:
    """``curves.png`` of ``jsurgery train``: training-episode and greedy-evaluation returns, each
    the mean over seeds with its 95% bootstrap band and faint single seeds, on one y-range set by
    the bands.

    Args:
        summary: the content of ``metrics.json``
            (see :func:`jsurgery.commands.train.result_metrics`).
        path: where to write the PNG.

    Returns:
        The path written.
    """
    plt = _pyplot()
    path = Path(path)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    panels = (
        (axes[0], summary["episode_steps"], summary["episode_return"], "training episodes"),
        (axes[1], summary["eval_steps"], summary["eval_return"], "greedy evaluation"),
    )
    bands = []
    for axis, steps, curves, title in panels:
        values = np.array([[np.nan if v is None else v for v in row] for row in curves], float)
        bands.append(draw_curves(axis, steps, values, colour="tab:blue", label="mean, 95% CI"))
        axis.set_title(title)
        axis.set_xlabel("environment steps per seed")
        axis.grid(alpha=0.3)
    fit_to_bands(axes[0], bands)
    axes[0].set_ylabel("return")
    axes[1].legend(loc="best", fontsize="small")
    obs = ", ".join(summary["obs_ids"])
    actions = ", ".join(summary["action_ids"])
    seeds = len(summary["seeds"])
    fig.suptitle(
        f"{summary['env_id']}, {seeds} seed{'s' if seeds > 1 else ''}, "
        f"hidden {summary['config']['hidden']}"
        f"\nobs: {obs}; actions: {actions}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, lambda file: fig.savefig(file, dpi=120, format="png"), mode="wb")
    plt.close(fig)
    return path


def _interval(values) -> str:
    mean, low, high = statistics.bootstrap_mean(np.asarray(values), resamples=2000)
    return f"{mean:.3g} [{low:.3g}, {high:.3g}]"


def _difference(comparison: dict) -> str:
    mark = "yes" if comparison["significant"] else "no"
    return (
        f"{comparison['mean_difference']:+.3g} [{comparison['ci_low']:+.3g}, "
        f"{comparison['ci_high']:+.3g}] {mark}"
    )


def markdown_table(all_results: list[dict]) -> str:
    """The README's results table: one row per experiment.

    ``scratch`` shows the mean area under the curve (mean value over training) with its 95%
    bootstrap interval over seeds; each surgery arm shows its mean AUC and the difference to
    ``scratch`` with the 95% bootstrap interval of the difference and whether it excludes zero
    (a chain's ``chain-transplant`` and ``chain-preserving`` in the recipes' columns).
    """
    header = (
        "| experiment | protocol | seeds | old final | scratch AUC | "
        + " | ".join(f"{arm} AUC; diff vs scratch [95% CI] signif." for arm in TABLE_ARMS)
        + " |"
    )
    lines = [header, "|" + " --- |" * (5 + len(TABLE_ARMS))]
    for results in all_results:
        arms = results["arms"]
        old = results.get("old_final", {}).get("mean")
        cells = [
            results["experiment"],
            results["protocol"],
            str(results["seeds"]),
            f"{old:.3g}" if old is not None else "",
            _interval(arms["scratch"]["auc"]) if "scratch" in arms else "",
        ]
        for role in TABLE_ARMS:
            arm = next((name for name in arms if TABLE_ROLES.get(name, name) == role), None)
            comparison = results.get("comparisons", {}).get(f"{arm}_vs_scratch")
            if arm is None or comparison is None:
                cells.append("")
                continue
            cells.append(f"{np.mean(arms[arm]['auc']):.3g}; {_difference(comparison['auc'])}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def surgery_table(all_results: list[dict]) -> str:
    """Did the surgery keep what was learned? The old network's final value next to each arm's
    first evaluation (right after surgery; for ``scratch``, the untrained network)."""
    arms_shown = ("scratch",) + TABLE_ARMS
    lines = [
        "| experiment | old final | " + " | ".join(f"{a} at step 0" for a in arms_shown) + " |",
        "|" + " --- |" * (2 + len(arms_shown)),
    ]
    for results in all_results:
        arms = results["arms"]
        old = results.get("old_final", {}).get("mean")
        cells = [results["experiment"], f"{old:.3g}" if old is not None else ""]
        for arm in arms_shown:
            cells.append(f"{np.mean(arms[arm]['first_eval']):.3g}" if arm in arms else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _shift(arm: dict) -> tuple[str, str]:
    """How far the surgery moved the old agent, as the means over seeds (with the largest) and
    the fraction of states with the old greedy action; empty where not measured. DQN: the
    Q-values' relative change (:mod:`jsurgery.experiments.shift`); PPO: the value's relative
    change and the policy's (:mod:`jsurgery.experiments.ppo_shift`)."""
    shift = arm["notes"].get("at_surgery")
    if shift is None:
        return "", ""
    agreement = shift.get("greedy_agreement")
    agreement = f"{np.mean(agreement):.3g}" if agreement is not None else ""
    if "q_change" in shift:
        return _largest(shift["q_change"]), agreement
    value, policy = _largest(shift["value_change"]), _largest(shift["policy_change"])
    return f"V {value}; policy {policy}", agreement


def _largest(values) -> str:
    values = np.asarray(values)
    return f"{values.mean():.2g} (max {values.max():.2g})"


def arm_table(results: dict) -> str:
    """A plain-text table of every arm of one experiment, for the terminal."""
    rows = [
        (
            "arm",
            "AUC mean [95% CI]",
            "final",
            "step 0",
            "AUC diff vs scratch [95% CI]",
            "change at surgery",
            "same action",
        )
    ]
    for name, arm in results["arms"].items():
        comparison = results.get("comparisons", {}).get(f"{name}_vs_scratch")
        rows.append(
            (
                name,
                _interval(arm["auc"]),
                f"{np.mean(arm['final']):.3g}",
                f"{np.mean(arm['first_eval']):.3g}",
                _difference(comparison["auc"]) if comparison else "",
                *_shift(arm),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def arms_markdown(results: dict) -> str:
    """A markdown table of every arm of one experiment: AUC and final value with their 95%
    bootstrap intervals (for surgery arms, of the difference from ``scratch``), the first
    evaluation, and, where measured, how far the surgery moved the Q-values
    (:mod:`jsurgery.experiments.shift`) or the value and the policy
    (:mod:`jsurgery.experiments.ppo_shift`)."""
    lines = [
        "| arm | AUC [95% CI] | AUC diff vs scratch [95% CI] signif. | final [95% CI] | "
        "final diff vs scratch [95% CI] signif. | step 0 | change at surgery | same action |",
        "|" + " --- |" * 8,
    ]
    for name, arm in results["arms"].items():
        comparison = results.get("comparisons", {}).get(f"{name}_vs_scratch")
        cells = [
            name,
            _interval(arm["auc"]),
            _difference(comparison["auc"]) if comparison else "",
            _interval(arm["final"]),
            _difference(comparison["final"]) if comparison else "",
            f"{np.mean(arm['first_eval']):.3g}",
            *_shift(arm),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
