"""``jsurgery train``: train seeds, save the agents, write ``metrics.json`` and ``curves.png``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jsurgery import stopping
from jsurgery.atomic import current_dir
from jsurgery.experiments.report import plot_training
from jsurgery.rl.agent import AGENT_JSON, CHECKPOINT, SavedRun, load_run, write_agent
from jsurgery.rl.algorithms import algorithm_named, algorithm_of
from jsurgery.rl.config import DQNConfig
from jsurgery.rl.config_overrides import (
    Override,
    apply_overrides,
    config_field_types,
    format_config,
    parse_value,
    read_config_file,
)
from jsurgery.rl.environments import make_env
from jsurgery.rl.files import write_json
from jsurgery.rl.ppo_config import PPOConfig
from jsurgery.rl.rundir import PROGRESS, open_out_dir, save_run
from jsurgery.rl.runner import TrainResult, train_seeds
from jsurgery.rl.snapshot import Snapshots, read_step
from jsurgery.rl.tracking import training_scalars, write_scalars
from jsurgery.stopping import Stopped

__all__ = [
    "CommandError",
    "load_init_run",
    "result_metrics",
    "train_command",
    "train_config",
]


class CommandError(ValueError):
    """A bad command-line argument; the message names it and says the fix, on one line."""


MAX_CURVE_POINTS = 1000
METRICS = "metrics.json"
DEFAULT_SAVE_EVERY = 120.0
"""Seconds between saves of the training state by default: a kill loses at most about this."""


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
        "algo": algorithm_of(result.config).name,
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


def load_init_run(directory: str | os.PathLike, argument: str = "--init") -> SavedRun:
    """The saved run under ``directory``, or a :class:`CommandError` saying what is there."""
    directory = Path(directory)
    found = current_dir(directory)
    if not found.is_dir():
        what = "is a file, not a directory" if found.exists() else "no such directory"
        raise CommandError(
            f"{argument} {directory}: {what}; pass a run directory written by "
            "'jsurgery train --out' or 'jsurgery surgery --out'"
        )
    if not (found / AGENT_JSON).exists() or not (found / CHECKPOINT).is_dir():
        raise CommandError(
            f"{argument} {directory}: not a saved run (it has no {AGENT_JSON} and "
            f"{CHECKPOINT}/); pass a run directory written by 'jsurgery train --out' or "
            "'jsurgery surgery --out'"
        )
    return load_run(directory)


def train_config(
    env_id: str,
    steps: int | None = None,
    hidden: Sequence[int] | None = None,
    *,
    algo: str = "dqn",
    init: SavedRun | None = None,
    exploration_start: float | None = None,
    learning_rate: float | None = None,
    overrides: Sequence[Override] = (),
) -> DQNConfig | PPOConfig:
    """The configuration ``jsurgery train`` uses: the environment's preset for ``algo``
    (``"dqn"`` or ``"ppo"``; with ``init``, the run's algorithm), with the options given.

    ``overrides`` (from ``--config FILE`` and ``--set key=value``) change any field; the flags
    (``steps``, ``hidden``, ``exploration_start``, ``learning_rate``) win over a file, and a flag
    and ``--set`` on the same field are refused. When continuing from a saved run (``init``), the
    network's shape (``hidden``, ``layer_norm``) is the run's, and exploration starts at the final
    epsilon (``exploration_end``) instead of 1.0 unless ``exploration_start`` is given: the
    transplanted network already acts, and exploring from 1.0 would replace its policy by a random
    one for the first part of the run. PPO explores by sampling its policy and takes no
    ``exploration_start``.

    Raises:
        CommandError: steps that are not a multiple of the preset's block, or a bad value.
        ConfigError: an unknown key or a bad value in ``overrides``.
    """
    algorithm = algorithm_named(algo) if init is None else algorithm_of(init.config)
    if algorithm.name == "ppo" and exploration_start is not None:
        raise CommandError(
            f"--exploration-start {exploration_start}: PPO explores by sampling its policy, it "
            "has no epsilon; drop --exploration-start (a DQN option)"
        )
    flags = [
        Override(key, value, flag)
        for key, value, flag in (
            ("total_steps", steps, "--steps"),
            ("hidden", hidden, "--hidden"),
            ("exploration_start", exploration_start, "--exploration-start"),
            ("learning_rate", learning_rate, "--learning-rate"),
        )
        if value is not None
    ]
    _refuse_flag_and_set(flags, overrides)
    flagged = {flag.key for flag in flags}
    changes = [override for override in overrides if override.key not in flagged] + flags
    if init is not None:
        _refuse_network_changes(changes, init)
        changes += [Override("hidden", init.config.hidden, "--init"),
                    Override("layer_norm", init.config.layer_norm, "--init")]  # fmt: skip
    config = apply_overrides(algorithm.preset(env_id), changes)
    explores = algorithm.name == "dqn" and init is not None
    if explores and not any(change.key == "exploration_start" for change in changes):
        config = config.replace(exploration_start=config.exploration_end)
    return config


def _refuse_flag_and_set(flags: Sequence[Override], overrides: Sequence[Override]) -> None:
    flagged = {flag.key: flag for flag in flags}
    for override in overrides:
        if override.source == "--set" and override.key in flagged:
            raise CommandError(
                f"{flagged[override.key].describe()} and {override.describe()} both set "
                f"{override.key}; give one of them"
            )


def _refuse_network_changes(changes: Sequence[Override], init: SavedRun) -> None:
    """A file or --set may repeat the saved network's shape, not change it."""
    types = config_field_types(type(init.config))
    for change in changes:
        if change.key not in ("hidden", "layer_norm") or change.source == "--hidden":
            continue
        try:
            same = parse_value(types[change.key], change.value) == getattr(init.config, change.key)
        except ValueError:
            same = False
        if not same:
            raise CommandError(
                f"{change.describe()}: the network under --init is the run's "
                f"(hidden {','.join(map(str, init.config.hidden))}, layer_norm "
                f"{str(init.config.layer_norm).lower()}); drop {change.key}, or change the network "
                "with 'jsurgery surgery RUN_DIR --hidden ... --out NEW_DIR' first"
            )


def _check_init_algo(algo: str | None, run: SavedRun, init: str | os.PathLike) -> None:
    saved = algorithm_of(run.config).name
    if algo is not None and algo != saved:
        raise CommandError(
            f"--algo {algo}: the run under --init {init} is a {saved} run; drop --algo (it is "
            "the run's)"
        )


def _check_init_view(
    env_id: str,
    run: SavedRun,
    seeds: int | None,
    obs: Sequence[str] | None,
    actions: Sequence[str] | None,
    init: str | os.PathLike,
) -> None:
    if run.env.env_id != env_id:
        raise CommandError(
            f"--init {init}: the run was trained on {run.env.env_id}, not {env_id}; "
            f"train it with 'jsurgery train {run.env.env_id} --init {init}'"
        )
    for flag, given, saved in (
        ("--obs", obs, run.env.obs_ids),
        ("--actions", actions, run.env.action_ids),
    ):
        if given is not None and tuple(given) != tuple(saved):
            raise CommandError(
                f"{flag} {','.join(given)}: the run under --init {init} sees "
                f"{','.join(saved)}; drop {flag} (it is the run's), or change the network with "
                f"'jsurgery surgery {init} {flag} {','.join(given)} --out NEW_DIR' first"
            )
    if seeds is not None and seeds != len(run.seeds):
        raise CommandError(
            f"--seeds {seeds}: the run under --init {init} holds {len(run.seeds)} "
            f"seed{'s' if len(run.seeds) > 1 else ''} "
            f"{list(run.seeds)}; drop --seeds to continue all of them"
        )


def train_command(
    env_id: str,
    seeds: int | None = None,
    steps: int | None = None,
    hidden: Sequence[int] | None = None,
    obs: Sequence[str] | None = None,
    actions: Sequence[str] | None = None,
    out: str | os.PathLike = "runs/train",
    *,
    init: str | os.PathLike | None = None,
    exploration_start: float | None = None,
    learning_rate: float | None = None,
    force: bool = False,
    resume: bool = False,
    save_every: float = DEFAULT_SAVE_EVERY,
    config_file: str | os.PathLike | None = None,
    set_values: Sequence[Override] = (),
    print_config: bool = False,
    log: Sequence[str] = (),
    algo: str | None = None,
) -> dict[str, Any] | None:
    """Train ``seeds`` agents with the environment's default hyperparameters and save them.

    Writes under ``out``: ``checkpoint/`` and ``agent.json`` (read back by
    :func:`jsurgery.rl.load_agent`), ``metrics.json`` (see :func:`result_metrics`),
    ``curves.png`` and ``manifest.json``, all switched in at once when training ends
    (:mod:`jsurgery.rl.rundir`). While training, the whole training state is saved to
    ``out/progress/`` every ``save_every`` seconds and when a stop signal arrives (the command
    line then exits 130 or 143); the same call with ``resume=True`` continues from there and ends
    with exactly the numbers of an uninterrupted run.

    Args:
        env_id: environment ID, e.g. ``CartPole-v1``.
        seeds: number of seeds, ``0 .. seeds-1``, trained together (default 1; with ``init``,
            the run's seeds).
        steps: environment steps per seed (default: the environment's preset).
        hidden: hidden widths (default: the environment's preset).
        obs: observation IDs the network sees (default: all).
        actions: action IDs the network chooses among (default: all).
        out: output directory.
        init: a saved run (from ``jsurgery surgery`` or ``jsurgery train``) to continue: its
            params, target params and optimizer state, its seeds, network and IDs. See
            :func:`train_config` for the exploration and step-size defaults then.
        exploration_start: epsilon at step 0 (default 1.0; with ``init``, the preset's final one).
        learning_rate: Adam's step size (default: the preset's).
        force: replace the run already under ``out`` (it stays until the new one is complete).
        resume: continue the interrupted run under ``out`` (made with the same arguments); a
            complete one is reported as it is.
        save_every: seconds between saves of the training state (0: after every compiled
            chunk).
        config_file: a TOML or YAML file of configuration keys (:class:`DQNConfig` fields); the
            arguments above win over it.
        set_values: ``--set key=value`` overrides (:func:`jsurgery.rl.config_overrides.
            parse_assignment`), applied after the file.
        print_config: print the resolved configuration as TOML and return None, training nothing.
        log: tracking backends (``csv``, ``tensorboard``, ``wandb``) that also receive the
            scalars of ``metrics.json`` (see :mod:`jsurgery.rl.tracking`).
        algo: ``"dqn"`` (default) or ``"ppo"``; with ``init``, the run's (a different one is
            refused).

    Returns:
        The contents of ``metrics.json`` (None with ``print_config``).

    Raises:
        CommandError: a bad argument, with the fix (also ValueError for unknown IDs).
        RunDirError: ``out`` holds a run and neither ``force`` nor ``resume`` is given, or
            ``resume`` finds a run made with other arguments.
        LockedError: another process is writing ``out``.
        Stopped: a stop signal arrived (its ``kept`` says what was saved).
    """
    if seeds is not None and seeds <= 0:
        raise CommandError(f"--seeds {seeds}: expected a positive number of seeds, e.g. --seeds 4")
    run = None
    if init is not None:
        run = load_init_run(init)
        _check_init_algo(algo, run, init)
        _check_init_view(env_id, run, seeds, obs, actions, init)
        if hidden is not None and tuple(hidden) != run.config.hidden:
            raise CommandError(
                f"--hidden {','.join(map(str, hidden))}: the network under --init {init} has "
                f"hidden {','.join(map(str, run.config.hidden))}; drop --hidden, or change it "
                f"with 'jsurgery surgery {init} --hidden ... --out NEW_DIR' first"
            )
        env, seed_list = run.env, run.seeds
    else:
        env = make_env(env_id, obs, actions)
        seed_list = tuple(range(1 if seeds is None else seeds))
    overrides = [*(read_config_file(config_file) if config_file else ()), *set_values]
    config = train_config(
        env_id, steps, hidden, algo=algo or "dqn", init=run, exploration_start=exploration_start,
        learning_rate=learning_rate, overrides=overrides,
    )  # fmt: skip
    if print_config:
        title = f"{type(config).__name__} for {env_id}; read by jsurgery train --config"
        print(format_config(config, title))
        return None
    if not save_every >= 0.0:
        raise CommandError(
            f"--save-every {save_every}: expected seconds >= 0, e.g. --save-every 60"
        )
    identity = {
        "command": "train",
        "algo": algorithm_of(config).name,
        "env_id": env.env_id,
        "obs_ids": list(env.obs_ids),
        "action_ids": list(env.action_ids),
        "seeds": list(seed_list),
        "config": config.to_dict(),
        "init": None if init is None else str(Path(init).absolute()),
    }
    with open_out_dir(out, identity, force=force, resume=resume) as target:
        if target.complete:
            summary = json.loads((target.path / METRICS).read_text())
            _report(summary, out, "already complete: ")
            return summary
        snapshots = Snapshots(target.progress, save_every, identity, resume=target.resume)
        try:
            result = train_seeds(
                config, env, seed_list, init=None if run is None else run.state, progress=True,
                snapshots=snapshots,
            )  # fmt: skip
        except Stopped as stop:
            stop.kept = _kept(Path(out) / PROGRESS, config)
            raise
        summary = result_metrics(result)
        if init is not None:
            summary["init"] = str(init)

        def write(stage: Path) -> None:
            write_agent(stage, config, env, result.state, result.seeds)
            write_json(stage / METRICS, summary)
            plot_training(summary, stage / "curves.png")
            if log:
                name = f"{env.env_id} {Path(out).name}"
                scalars = training_scalars(summary)
                write_scalars(log, stage, scalars, name=name, config=summary["config"])

        with stopping.deferred():
            save_run(target.path, write, identity)
        stopping.raise_if_stopped(f"the finished run was saved first in {out}")
    _report(summary, out)
    return summary


def _kept(progress: Path, config: DQNConfig | PPOConfig) -> str:
    step = read_step(progress)
    if step is None:
        return "stopped before the first save, nothing kept"
    return (
        f"kept step {step:,} of {config.total_steps:,} of every seed in {progress}; continue with "
        "the same command and --resume"
    )


def _report(summary: dict[str, Any], out: str | os.PathLike, prefix: str = "") -> None:
    final = np.asarray(summary["final_eval_return"])
    start = np.asarray(summary["eval_return"])[:, 0]
    seeds = f"{final.size} seed{'s' if final.size > 1 else ''}"
    print(
        f"{prefix}{summary['env_id']}: greedy return {start.mean():.1f} at step 0, final "
        f"{final.mean():.1f} (mean of {seeds}; final min {final.min():.1f}, max "
        f"{final.max():.1f}); {summary['steps_per_second']:,.0f} steps/s, compile "
        f"{summary['compile_seconds']:.1f} s; wrote {out}/"
    )
