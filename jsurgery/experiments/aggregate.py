"""Across experiments: each arm's scores normalised per experiment, their interquartile mean (IQM)
with stratified bootstrap intervals, and performance profiles, as Agarwal et al. recommend for
reporting RL results over several tasks (*Deep Reinforcement Learning at the Edge of the
Statistical Precipice*, NeurIPS 2021).

A run's score is normalised so that 0 is where learning starts in that experiment (the ``scratch``
arm's mean first evaluation: an untrained network) and 1 is the task's reference score
(:data:`REFERENCE_SCORES`, gymnasium's ``reward_threshold`` for the environments that have one,
perfect accuracy for MNIST). Arms that play the same role under other names (``template`` and
``exact`` in ``cartpole-ln-widen``) are pooled with ``transplant`` and ``preserving``
(:data:`ARM_ROLES`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jsurgery.atomic import write_file
from jsurgery.experiments import statistics

#: The score that counts as solving each environment: gymnasium's ``reward_threshold``, and for
#: Pendulum-v1, which has none, -200 (a swing-up held upright from most starts).
REFERENCE_SCORES = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "LunarLander-v3": 200.0,
    "Pendulum-v1": -200.0,
}

#: The reference of an experiment that measures test accuracy.
ACCURACY_REFERENCE = 1.0

#: Arms named after what they do in one experiment, pooled with the arm of the same role.
ARM_ROLES = {"template": "transplant", "exact": "preserving"}

#: The arms aggregated by default, each over every experiment.
DEFAULT_ROLES = ("scratch", "transplant", "preserving")

#: The per-run summaries aggregated: area under the curve and final value.
METRICS = ("auc", "final")


def reference_score(results: dict) -> float:
    """The score that normalises to 1 in one experiment's ``results.json``."""
    env_id = results.get("config", {}).get("env_id")
    if env_id is not None:
        if env_id not in REFERENCE_SCORES:
            raise ValueError(
                f"{results['experiment']}: no reference score for {env_id!r}; known: "
                f"{', '.join(REFERENCE_SCORES)}"
            )
        return REFERENCE_SCORES[env_id]
    if results.get("y_label") == "test accuracy":
        return ACCURACY_REFERENCE
    raise ValueError(f"{results['experiment']}: neither an environment nor test accuracy")


def normalised_scores(results: dict, metric: str = "final") -> dict[str, np.ndarray]:
    """Each arm's per-seed ``metric`` (``"auc"`` or ``"final"``) of one experiment, normalised
    (0: the ``scratch`` arm's mean first evaluation, 1: :func:`reference_score`), keyed by role.

    The ``old`` arm ran on the old task and is left out.
    """
    arms = results["arms"]
    if "scratch" not in arms:
        raise ValueError(f"{results['experiment']}: no scratch arm to normalise by")
    zero = float(np.mean(arms["scratch"]["first_eval"]))
    one = reference_score(results)
    if one == zero:
        raise ValueError(f"{results['experiment']}: the untrained network already scores {one}")
    scores = {}
    for name, arm in arms.items():
        if name != "old":
            values = np.asarray(arm[metric], dtype=np.float64)
            scores[ARM_ROLES.get(name, name)] = (values - zero) / (one - zero)
    return scores


def aggregate(
    all_results: list[dict],
    *,
    roles=DEFAULT_ROLES,
    thresholds=None,
    resamples: int = statistics.RESAMPLES,
    seed: int = 0,
) -> dict:
    """IQM and mean of each role's normalised scores over the experiments that have every role,
    with 95% stratified bootstrap intervals, and the performance profile of final scores.

    Args:
        all_results: the ``results.json`` of each experiment.
        roles: the arms to aggregate (names after :data:`ARM_ROLES`).
        thresholds: normalised scores at which the profile is taken (default 0 to 1.2).
        resamples: bootstrap resamples.
        seed: of the bootstrap.

    An experiment on an environment without a reference score (e.g. a MinAtar game) is left out
    like one that lacks a role.

    Returns:
        A JSON-ready dict: ``experiments`` (used), ``left_out`` (experiment and the missing role,
        or ``"reference score"``),
        ``thresholds``, and per role ``{"auc": {"iqm": [v, lo, hi], "mean": [...]}, "final":
        {...}, "profile": [...], "profile_low": [...], "profile_high": [...]}``.
    """
    thresholds = np.linspace(0.0, 1.2, 61) if thresholds is None else np.asarray(thresholds)
    used, left_out = [], []
    for results in all_results:
        missing = _missing(results, roles)
        (left_out if missing else used).append((results, results["experiment"], missing))
    if not used:
        raise ValueError(f"no experiment has every arm of {list(roles)} and a reference score")
    scores = {m: [normalised_scores(r, m) for r, _, _ in used] for m in METRICS}

    def groups(metric, role):
        return [by_role[role] for by_role in scores[metric]]

    def bootstrap(values, statistic):
        estimate = statistics.stratified_bootstrap(
            values, statistic, resamples=resamples, seed=seed
        )
        return [np.asarray(v, dtype=np.float64).tolist() for v in estimate]

    summary = {
        "experiments": [name for _, name, _ in used],
        "left_out": {name: missing for _, name, missing in left_out},
        "thresholds": thresholds.tolist(),
        "roles": {},
    }
    for role in roles:
        entry = {
            metric: {
                "iqm": bootstrap(
                    groups(metric, role), lambda g: statistics.interquartile_mean(np.concatenate(g))
                ),
                "mean": bootstrap(groups(metric, role), lambda g: np.concatenate(g).mean()),
            }
            for metric in METRICS
        }
        profile = bootstrap(
            groups("final", role), lambda g: statistics.score_profile(g, thresholds)
        )
        entry["profile"], entry["profile_low"], entry["profile_high"] = profile
        summary["roles"][role] = entry
    return summary


def _missing(results: dict, roles) -> list[str]:
    """What keeps one experiment out of the aggregate: ``["reference score"]`` for an environment
    without one (:data:`REFERENCE_SCORES`), else the roles it has no arm for."""
    env_id = results.get("config", {}).get("env_id")
    if env_id is not None and env_id not in REFERENCE_SCORES:
        return ["reference score"]
    present = {ARM_ROLES.get(name, name) for name in results["arms"] if name != "old"}
    return [role for role in roles if role not in present]


def _cell(estimate) -> str:
    value, low, high = estimate
    return f"{value:.2f} [{low:.2f}, {high:.2f}]"


def aggregate_table(summary: dict) -> str:
    """A markdown table of :func:`aggregate`: one row per role."""
    lines = [
        "| arm | IQM of final [95% CI] | mean of final [95% CI] | IQM of AUC [95% CI] | "
        "mean of AUC [95% CI] |",
        "| --- | --- | --- | --- | --- |",
    ]
    for role, entry in summary["roles"].items():
        cells = [
            _cell(entry["final"]["iqm"]),
            _cell(entry["final"]["mean"]),
            _cell(entry["auc"]["iqm"]),
            _cell(entry["auc"]["mean"]),
        ]
        lines.append(f"| {role} | " + " | ".join(cells) + " |")
    note = f"\nNormalised scores over {len(summary['experiments'])} experiments"
    if summary["left_out"]:
        gone = "; ".join(f"{n} (no {', '.join(m)})" for n, m in summary["left_out"].items())
        note += f"; left out: {gone}"
    return "\n".join(lines) + note + "."


def plot_aggregate(summary: dict, path: str | Path) -> Path:
    """``aggregate.png``: left, each role's IQM of normalised final scores and AUC with its 95%
    stratified bootstrap interval; right, the performance profile of final scores (the fraction
    of runs above each normalised score) with its band."""
    from jsurgery.experiments.report import COLOURS, _pyplot, arm_colour

    plt = _pyplot()
    path = Path(path)
    roles = list(summary["roles"])
    fig, (iqm_ax, profile_ax) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    for row, role in enumerate(roles):
        colour = COLOURS.get(role) or arm_colour(role, roles)
        for metric, marker, shift in (("auc", "o", -0.13), ("final", "s", 0.13)):
            value, low, high = summary["roles"][role][metric]["iqm"]
            iqm_ax.errorbar(
                value,
                row + shift,
                xerr=[[value - low], [high - value]],
                fmt=marker,
                color=colour,
                markersize=7,
                capsize=3,
            )
        entry = summary["roles"][role]
        thresholds = summary["thresholds"]
        profile_ax.plot(thresholds, entry["profile"], color=colour, linewidth=2, label=role)
        profile_ax.fill_between(
            thresholds, entry["profile_low"], entry["profile_high"], color=colour, alpha=0.15
        )
    iqm_ax.set_yticks(range(len(roles)), roles)
    iqm_ax.set_ylim(len(roles) - 0.5, -0.5)
    iqm_ax.set_xlabel("normalised score (0: untrained, 1: solved)")
    iqm_ax.set_title(
        f"IQM over {len(summary['experiments'])} experiments, 95% CI\n(o AUC, s final)"
    )
    iqm_ax.grid(axis="x", alpha=0.3)
    profile_ax.set_xlabel("normalised final score t")
    profile_ax.set_ylabel("fraction of runs above t")
    profile_ax.set_title("performance profile, 95% CI band")
    profile_ax.grid(alpha=0.3)
    profile_ax.legend(loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, lambda file: fig.savefig(file, format="png"), mode="wb")
    plt.close(fig)
    return path
