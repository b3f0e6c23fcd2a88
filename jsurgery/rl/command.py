"""``jsurgery train``: train seeds, save the agents, write ``metrics.json`` and ``curves.png``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jsurgery.experiments.files import write_json
from jsurgery.rl.agent import save_agent
from jsurgery.rl.environments import make_env
from jsurgery.rl.presets import default_config
from jsurgery.rl.runner import TrainResult, train_seeds

__all__ = ["plot_curves", "result_metrics", "train_command"]

MAX_CURVE_POINTS = 1000


def result_metrics(result: TrainResult) -> dict[str, Any]:
    """The JSON-ready summary of a run: config, speed, per-seed curves and final greedy returns.

    Training curves are thinned to at most ``MAX_CURVE_POINTS`` points per seed (every
    ``episode_stride``-th block); points before a seed's first finished episode are ``null``.
    """
    metrics = result.metrics
    num_blocks = metrics["episode_return"].shape[1]
    stride = max(1, -(-num_blocks // MAX_CURVE_POINTS))
    picked = slice(stride - 1, None, stride)
    episode = np.where(metrics["episode_valid"], metrics["episode_return"], np.nan)[:, picked]
    final = metrics["eval_return"][:, -1]
    return {
        "env_id": result.env.env_id,
        "obs_ids": list(result.env.obs_ids),
        "action_ids": list(result.env.action_ids),
        "seeds": list(result.seeds),
        "config": result.config.to_dict(),
        "steps_per_second": result.steps_per_second,
        "compile_seconds": result.compile_seconds,
        "run_seconds": result.run_seconds,
        "final_eval_return": final.tolist(),
        "final_eval_return_mean": float(final.mean()),
        "eval_steps": metrics["eval_steps"][0].tolist(),
        "eval_return": metrics["eval_return"].tolist(),
        "episode_stride": stride,
        "episode_steps": metrics["episode_steps"][0, picked].tolist(),
        "episode_return": [[None if np.isnan(v) else float(v) for v in row] for row in episode],
    }


def plot_curves(summary: dict[str, Any], path: str | os.PathLike) -> None:
    """Training-episode and greedy-evaluation returns of every seed, with their mean."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    panels = (
        (axes[0], summary["episode_steps"], summary["episode_return"], "training episodes"),
        (axes[1], summary["eval_steps"], summary["eval_return"], "greedy evaluation"),
    )
    for axis, steps, curves, title in panels:
        values = np.array([[np.nan if v is None else v for v in row] for row in curves], float)
        for row in values:
            axis.plot(steps, row, color="tab:blue", alpha=0.15, linewidth=0.8)
        with np.errstate(all="ignore"):
            axis.plot(
                steps, np.nanmean(values, axis=0), color="tab:blue", linewidth=2, label="mean"
            )
        axis.set_title(title)
        axis.set_xlabel("environment steps per seed")
        axis.grid(alpha=0.3)
    axes[0].set_ylabel("return")
    axes[1].legend()
    obs = ", ".join(summary["obs_ids"])
    actions = ", ".join(summary["action_ids"])
    fig.suptitle(
        f"{summary['env_id']}, {len(summary['seeds'])} seeds, hidden {summary['config']['hidden']}"
        f"\nobs: {obs}; actions: {actions}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def train_command(
    env_id: str,
    seeds: int = 1,
    steps: int | None = None,
    hidden: Sequence[int] | None = None,
    obs: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
    out: str | os.PathLike = "runs/train",
) -> dict[str, Any]:
    """Train ``seeds`` agents with the environment's default hyperparameters and save them.

    Writes under ``out``: ``checkpoint/`` and ``agent.json`` (read back by
    :func:`jsurgery.rl.load_agent`), ``metrics.json`` (see :func:`result_metrics`) and
    ``curves.png``.

    Args:
        env_id: environment ID, e.g. ``CartPole-v1``.
        seeds: number of seeds, ``0 .. seeds-1``, trained together.
        steps: environment steps per seed (default: the environment's preset).
        hidden: hidden widths (default: the environment's preset).
        obs: observation IDs the network sees (default: all).
        actions: action IDs the network chooses among (default: all).
        out: output directory.

    Returns:
        The contents of ``metrics.json``.
    """
    env = make_env(env_id, obs, actions)
    config = default_config(env_id, total_steps=steps, hidden=hidden)
    result = train_seeds(config, env, seeds, progress=True)
    out = Path(out)
    save_agent(out, config, env, result.state, result.seeds)
    summary = result_metrics(result)
    write_json(out / "metrics.json", summary)
    plot_curves(summary, out / "curves.png")
    final = np.asarray(summary["final_eval_return"])
    print(
        f"{env_id}: final greedy return {final.mean():.1f} (mean of {final.size} seeds; "
        f"min {final.min():.1f}, max {final.max():.1f}); {result.steps_per_second:,.0f} steps/s, "
        f"compile {result.compile_seconds:.1f} s; wrote {out}/"
    )
    return summary
