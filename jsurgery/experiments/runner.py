"""Runs an experiment arm by arm, saving each arm's results as soon as they exist.

An experiment (see :class:`Experiment`) knows its arms and how to run one arm for all seeds at once
(one jitted, vmapped call). The runner owns everything around that: the output folder, the
``results.json`` schema, atomic writes, resuming a killed run, the progress bar, the statistics and
the plot.

``DIR/EXPERIMENT/results.json`` holds:

- ``experiment``, ``description``, ``protocol``, ``seeds``, ``x_label``, ``y_label``;
- ``config``: everything that determines the numbers (budgets, hyperparameters, arms, surgery
  options). A rerun into the same folder with a different config is refused;
- ``arms``: per arm ``x`` (environment or gradient steps), ``curves`` (per seed), ``auc`` (per seed,
  the mean value over training), ``final`` (per seed, last evaluation), ``first_eval`` (per seed,
  the first evaluation: for a transplanted arm, the network right after surgery), ``wall_time_s``
  and ``notes`` (what the arm did, e.g. its surgery options);
- ``old_final``: the old network's final performance on its own task (per seed and mean);
- ``comparisons``: for each arm other than ``old`` and ``scratch``, ``"<arm>_vs_scratch"`` with the
  mean difference of ``auc`` and of ``final`` and their 95% bootstrap intervals;
- ``software``, ``device``, ``wall_time_s`` (sum over arms, across resumed runs), ``complete``.

The old arm's trained parameters (batched over seeds) are kept in ``old_params.npz`` beside it, so
a resumed run can transplant them without training the old network again.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jsurgery.atomic import lock_dir
from jsurgery.experiments import statistics
from jsurgery.rl.files import DamagedFileError, load_params, read_json, save_params, write_json
from jsurgery.rl.suggest import did_you_mean

RESULTS = "results.json"
OLD_PARAMS = "old_params.npz"
PLOT = "curves.png"


class ExperimentError(ValueError):
    """An experiment cannot run as asked (unknown name or protocol, a config that changed)."""


@dataclasses.dataclass
class ArmRun:
    """What one arm produced, for all seeds.

    Attributes:
        x: ``(points,)`` environment or gradient steps of the evaluations.
        curves: ``(seeds, points)`` evaluation values.
        params: the trained parameters batched over seeds (kept for the ``old`` arm only).
        notes: JSON-able description of what the arm did.
    """

    x: Any
    curves: Any
    params: Any = None
    notes: dict = dataclasses.field(default_factory=dict)


class Experiment(Protocol):
    """The interface the runner needs from an experiment.

    ``run_arm("old", ...)`` is called first and must return the trained ``params``; every other arm
    receives them as ``old_params``. With ``progress`` an arm may show its own progress bar.
    """

    name: str
    description: str
    x_label: str
    y_label: str
    arms: tuple[str, ...]
    protocols: tuple[str, ...]

    def config(self, protocol: str, seeds: int) -> dict: ...

    def run_arm(
        self, arm: str, *, protocol: str, seeds: int, old_params: Any, progress: bool = False
    ) -> ArmRun: ...


# ---------------------------------------------------------------------------------------------
# environment description


def software_versions() -> dict:
    """Versions of Python and of the packages that determine the numbers."""
    versions = {"python": platform.python_version()}
    for name in ("jsurgery", "jax", "jaxlib", "flax", "optax", "numpy", "gymnax"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def device_description() -> dict:
    import jax

    devices = jax.devices()
    return {
        "platform": devices[0].platform,
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
    }


def _canonical(config: dict) -> dict:
    return json.loads(json.dumps(config))


def _config_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    diffs = []
    for key in keys:
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += _config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            diffs.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return diffs


# ---------------------------------------------------------------------------------------------
# the run


def summarise_arm(run: ArmRun, wall_time_s: float) -> dict:
    x = np.asarray(run.x, dtype=np.float64)
    curves = np.asarray(run.curves, dtype=np.float64)
    return {
        "x": x.tolist(),
        "curves": curves.tolist(),
        "auc": statistics.area_under_curve(x, curves).tolist(),
        "final": statistics.final_values(curves).tolist(),
        "first_eval": curves[:, 0].tolist(),
        "wall_time_s": wall_time_s,
        "notes": run.notes,
    }


def comparisons(arms: dict) -> dict:
    """``"<arm>_vs_scratch"`` for every arm other than ``old`` and ``scratch``: AUC and final."""
    if "scratch" not in arms:
        return {}
    result = {}
    for name, arm in arms.items():
        if name in ("old", "scratch"):
            continue
        result[f"{name}_vs_scratch"] = {
            metric: statistics.compare(arm[metric], arms["scratch"][metric])
            for metric in ("auc", "final")
        }
    return result


def _summary(results: dict) -> dict:
    arms = results["arms"]
    if "old" in arms:
        final = arms["old"]["final"]
        results["old_final"] = {"per_seed": final, "mean": float(np.mean(final))}
    results["comparisons"] = comparisons(arms)
    results["wall_time_s"] = float(sum(arm["wall_time_s"] for arm in arms.values()))
    return results


def _read_saved(path: Path, read, folder: Path):
    """``read(path)``, a damaged file being an ExperimentError that names it and the fix."""
    try:
        return read(path)
    except DamagedFileError as error:
        raise ExperimentError(
            f"{error}; delete it to rerun the arms it held, or delete {folder} to start again"
        ) from None


def run_experiment(
    experiment: Experiment,
    *,
    seeds: int,
    protocol: str,
    out: str | os.PathLike,
    progress: bool = True,
    plot: bool = True,
) -> dict:
    """Runs every arm of ``experiment`` not already finished in ``out/<name>/``.

    Each finished arm is written to ``results.json`` at once (atomically), so a killed run loses at
    most the arm in progress; rerunning the same command skips the finished arms. One process at a
    time writes a folder (:func:`jsurgery.atomic.lock_dir`).

    Args:
        experiment: the experiment.
        seeds: seeds per arm (all seeds of an arm run in one compiled call).
        protocol: one of ``experiment.protocols``.
        out: output root; results go to ``out/<experiment.name>/``.
        progress: show a progress bar over the arms.
        plot: write ``curves.png`` when all arms are done.

    Returns:
        The ``results.json`` content.

    Raises:
        ExperimentError: unknown protocol, or ``results.json`` in the folder was made with another
            config (the message lists the differences and the fix).
        LockedError: another process is running the experiment into the same folder.
    """
    if protocol not in experiment.protocols:
        raise ExperimentError(
            f"protocol {protocol!r} is not one of {experiment.name}'s protocols "
            f"{list(experiment.protocols)}{did_you_mean(protocol, experiment.protocols)}"
        )
    if seeds < 1:
        raise ExperimentError(f"seeds must be at least 1, got {seeds}")
    folder = Path(out) / experiment.name
    folder.mkdir(parents=True, exist_ok=True)
    with lock_dir(folder):
        return _run_arms(experiment, seeds, protocol, folder, progress, plot)


def _run_arms(
    experiment: Experiment, seeds: int, protocol: str, folder: Path, progress: bool, plot: bool
) -> dict:
    from jsurgery.rl.progress import progress_bar

    config = _canonical(experiment.config(protocol, seeds))
    path = folder / RESULTS
    if path.exists():
        results = _read_saved(path, read_json, folder)
        if results.get("config") != config:
            diffs = _config_differences(results.get("config") or {}, config)
            raise ExperimentError(
                f"{path} was made with another config ({'; '.join(diffs[:5])}). Its finished arms "
                f"cannot be reused: pass another --out, or delete {folder} to start again."
            )
    else:
        results = {
            "experiment": experiment.name,
            "description": experiment.description,
            "protocol": protocol,
            "seeds": seeds,
            "x_label": experiment.x_label,
            "y_label": experiment.y_label,
            "config": config,
            "arms": {},
        }
    results["software"] = software_versions()
    results["device"] = device_description()

    old_params = None
    params_path = folder / OLD_PARAMS
    todo = [arm for arm in experiment.arms if arm not in results["arms"]]
    if "old" in results["arms"] and todo:
        if params_path.exists():
            old_params = _read_saved(params_path, load_params, folder)
        else:
            del results["arms"]["old"]
            todo.insert(0, "old")
    bar = progress_bar(
        iterable=experiment.arms,
        desc=experiment.name,
        unit="arm",
        disable=not progress,
        initial=len(experiment.arms) - len(todo),
        total=len(experiment.arms),
    )
    with bar:
        for arm in todo:
            bar.set_postfix_str(arm)
            start = time.perf_counter()
            run = experiment.run_arm(
                arm, protocol=protocol, seeds=seeds, old_params=old_params, progress=progress
            )
            wall = time.perf_counter() - start
            if arm == "old":
                old_params = run.params
                save_params(params_path, old_params)
            results["arms"][arm] = summarise_arm(run, wall)
            results["complete"] = all(a in results["arms"] for a in experiment.arms)
            write_json(path, _summary(results))
            bar.update(1)
    results["complete"] = all(a in results["arms"] for a in experiment.arms)
    results = _summary(results)
    write_json(path, results)
    if plot and results["complete"]:
        from jsurgery.experiments.report import plot_curves

        plot_curves(results, folder / PLOT)
    return results
