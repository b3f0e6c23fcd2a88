"""Plots and tables from ``results.json``: ``curves.png`` and the markdown results tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jsurgery.experiments import statistics

#: The original study's colours (red old, blue scratch, green transplant), then the other arms.
COLOURS = {
    "old": "tab:red",
    "scratch": "tab:blue",
    "transplant": "tab:green",
    "preserving": "tab:orange",
    "naive-load": "tab:purple",
}
OTHER_COLOURS = ("tab:brown", "tab:pink", "tab:olive", "tab:cyan", "tab:gray")

#: Size of ``curves.png`` in inches and its resolution: 1000 x 600 pixels.
FIGSIZE = (10, 6)
DPI = 100

#: Arms shown in the README table, in order.
TABLE_ARMS = ("transplant", "preserving", "naive-load")


def arm_colour(arm: str, arms) -> str:
    if arm in COLOURS:
        return COLOURS[arm]
    others = [a for a in arms if a not in COLOURS]
    return OTHER_COLOURS[others.index(arm) % len(OTHER_COLOURS)]


def plot_curves(results: dict, path: str | Path) -> Path:
    """Draws every arm's mean curve with a shaded 95% bootstrap interval and thin per-seed lines.

    Args:
        results: the content of ``results.json``.
        path: where to write the PNG (``FIGSIZE`` at ``DPI``).

    Returns:
        The path written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    arms = results["arms"]
    fig, ax = plt.subplots(figsize=FIGSIZE, dpi=DPI)
    for name, arm in arms.items():
        colour = arm_colour(name, arms)
        x = np.asarray(arm["x"])
        curves = np.asarray(arm["curves"])
        for curve in curves:
            ax.plot(x, curve, color=colour, linewidth=0.5, alpha=0.25)
        mean, low, high = statistics.bootstrap_mean(curves, resamples=2000)
        ax.fill_between(x, low, high, color=colour, alpha=0.2, linewidth=0)
        label = name
        if name != "old":
            label += f" (AUC {np.mean(arm['auc']):.3g})"
        ax.plot(x, mean, color=colour, linewidth=2, label=label)
    ax.set_xlabel(results["x_label"])
    ax.set_ylabel(results["y_label"])
    ax.set_title(
        f"{results['experiment']} ({results['protocol']} protocol, {results['seeds']} seeds; "
        f"mean and 95% CI)"
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
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
    ``scratch`` with the 95% bootstrap interval of the difference and whether it excludes zero.
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
        for arm in TABLE_ARMS:
            comparison = results.get("comparisons", {}).get(f"{arm}_vs_scratch")
            if arm not in arms or comparison is None:
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


def arm_table(results: dict) -> str:
    """A plain-text table of every arm of one experiment, for the terminal."""
    rows = [("arm", "AUC mean [95% CI]", "final", "step 0", "AUC diff vs scratch [95% CI]")]
    for name, arm in results["arms"].items():
        comparison = results.get("comparisons", {}).get(f"{name}_vs_scratch")
        rows.append(
            (
                name,
                _interval(arm["auc"]),
                f"{np.mean(arm['final']):.3g}",
                f"{np.mean(arm['first_eval']):.3g}",
                _difference(comparison["auc"]) if comparison else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)
