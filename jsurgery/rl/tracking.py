"""Experiment tracking: the scalars of ``metrics.json`` and ``results.json`` in CSV, TensorBoard
or Weights & Biases.

Every backend is a :class:`ScalarWriter`: it takes :class:`Scalar` records (a run such as
``seed_0`` or ``mean``, a tag such as ``eval_return``, an environment step and a value) and
writes them its own way. CSV needs nothing; TensorBoard needs the ``tensorboard`` extra
(tensorboardX) and W&B the ``wandb`` extra.

    >>> summary = {"seeds": [0, 1], "eval_steps": [0, 100], "eval_return": [[1.0, 3.0], [2.0, 5.0]]}
    >>> [(s.run, s.step, s.value) for s in training_scalars(summary) if s.run == "mean"]
    [('mean', 0, 1.5), ('mean', 100, 4.0)]
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from itertools import groupby
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from jsurgery.rl.suggest import did_you_mean

__all__ = [
    "BACKENDS",
    "CSV_FILE",
    "TENSORBOARD_DIR",
    "Scalar",
    "ScalarWriter",
    "TrackingError",
    "check_backends",
    "experiment_scalars",
    "parse_backends",
    "training_scalars",
    "write_scalars",
]

CSV_FILE = "scalars.csv"
TENSORBOARD_DIR = "tensorboard"
SPEED_KEYS = ("steps_per_second", "compile_seconds", "run_seconds")


class TrackingError(ValueError):
    """An unknown tracking backend, or one whose extra is not installed."""


@dataclasses.dataclass(frozen=True)
class Scalar:
    """One value to track: ``run`` (``seed_0``, ``mean``, ``scratch/seed_3``), ``tag``, ``step``."""

    run: str
    tag: str
    step: int
    value: float


class ScalarWriter(Protocol):
    """What every tracking backend does: write scalars (sorted by step), then close."""

    def write(self, scalars: Sequence[Scalar]) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# the backends


class CsvWriter:
    """``scalars.csv`` in ``directory``: one row per scalar, columns ``run,tag,step,value``."""

    def __init__(self, directory: Path, **_: Any):
        self.path = Path(directory) / CSV_FILE
        self.rows: list[Scalar] = []

    def write(self, scalars: Sequence[Scalar]) -> None:
        self.rows += scalars

    def close(self) -> None:
        from jsurgery.rl.files import write_atomic

        text = io.StringIO()
        table = csv.writer(text, lineterminator="\n")
        table.writerow(("run", "tag", "step", "value"))
        table.writerows((s.run, s.tag, s.step, repr(s.value)) for s in self.rows)
        write_atomic(self.path, lambda f: f.write(text.getvalue()))


class TensorBoardWriter:
    """Event files under ``directory/tensorboard/RUN/``: TensorBoard overlays the seeds' curves.

    The folder is written anew each time (its content comes from the run's metrics).
    """

    def __init__(self, directory: Path, **_: Any):
        from tensorboardX import SummaryWriter

        self.root = Path(directory) / TENSORBOARD_DIR
        shutil.rmtree(self.root, ignore_errors=True)
        self.summary_writer = SummaryWriter
        self.writers: dict[str, Any] = {}

    def write(self, scalars: Sequence[Scalar]) -> None:
        for scalar in scalars:
            if scalar.run not in self.writers:
                self.writers[scalar.run] = self.summary_writer(str(self.root / scalar.run))
            self.writers[scalar.run].add_scalar(scalar.tag, scalar.value, scalar.step)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()


class WandbWriter:
    """One Weights & Biases run, with keys ``RUN/TAG`` (``seed_0/eval_return``) over steps.

    The project is ``$WANDB_PROJECT`` (default ``jsurgery``); ``WANDB_MODE=offline`` keeps the
    run in ``directory/wandb`` until ``wandb sync``.
    """

    def __init__(self, directory: Path, *, name: str, config: dict):
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "jsurgery"),
            name=name,
            dir=str(directory),
            config=config,
        )

    def write(self, scalars: Sequence[Scalar]) -> None:
        for step, group in groupby(scalars, key=lambda s: s.step):
            self.run.log({f"{s.run}/{s.tag}": s.value for s in group}, step=step)

    def close(self) -> None:
        self.run.finish()


BACKENDS: dict[str, tuple[Callable[..., ScalarWriter], str | None, str | None]] = {
    "csv": (CsvWriter, None, None),
    "tensorboard": (TensorBoardWriter, "tensorboardX", "tensorboard"),
    "wandb": (WandbWriter, "wandb", "wandb"),
}
"""Each backend: its writer, the module it imports and the extra that installs it."""


def parse_backends(text: str) -> tuple[str, ...]:
    """``"csv,tensorboard"`` -> ``("csv", "tensorboard")``; an unknown name is a TrackingError."""
    names = tuple(dict.fromkeys(name.strip().lower() for name in text.split(",") if name.strip()))
    if not names:
        raise TrackingError(f"expected backends such as csv,tensorboard, got {text!r}")
    for name in names:
        if name not in BACKENDS:
            raise TrackingError(
                f"unknown backend {name!r}{did_you_mean(name, BACKENDS)}; choose from "
                f"{', '.join(BACKENDS)}"
            )
    return names


def check_backends(names: Iterable[str]) -> None:
    """Raises a TrackingError naming the extra to install for each backend that lacks its module."""
    import importlib

    for name in names:
        _, module, extra = BACKENDS[name]
        if module is None:
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            raise TrackingError(
                f"--log {name} needs {module}, which is not installed; install it with "
                f"pip install 'jsurgery[{extra}]'"
            ) from None


def write_scalars(
    backends: Iterable[str],
    directory: str | os.PathLike,
    scalars: Iterable[Scalar],
    *,
    name: str,
    config: dict,
) -> None:
    """Writes ``scalars`` (sorted by step) with every backend, into ``directory``."""
    ordered = sorted(scalars, key=lambda s: s.step)
    for backend in backends:
        writer = BACKENDS[backend][0](Path(directory), name=name, config=config)
        try:
            writer.write(ordered)
        finally:
            writer.close()


# ---------------------------------------------------------------------------------------------
# what is tracked


def _curve(run: str, tag: str, steps: Sequence[int], values: Iterable[Any]) -> list[Scalar]:
    return [
        Scalar(run, tag, int(step), float(value))
        for step, value in zip(steps, values, strict=True)
        if value is not None and np.isfinite(value)
    ]


def _per_seed_and_mean(
    runs: Sequence[str], mean_run: str, tag: str, steps: Sequence[int], rows: Sequence[Sequence]
) -> list[Scalar]:
    scalars = []
    for run, row in zip(runs, rows, strict=True):
        scalars += _curve(run, tag, steps, row)
    values = np.array([[np.nan if v is None else v for v in row] for row in rows], np.float64)
    seen = np.isfinite(values).any(axis=0)
    mean = np.full(values.shape[1], np.nan)
    mean[seen] = np.nanmean(values[:, seen], axis=0)
    return scalars + _curve(mean_run, tag, steps, mean)


def training_scalars(summary: dict) -> list[Scalar]:
    """The scalars of a ``metrics.json`` (``jsurgery train``): per seed (run ``seed_N``) and
    their mean over seeds (run ``mean``): ``eval_return`` at ``eval_steps``, ``episode_return``
    at ``episode_steps`` (where a seed has finished an episode), and the speed figures."""
    runs = [f"seed_{seed}" for seed in summary["seeds"]]
    scalars = _per_seed_and_mean(
        runs, "mean", "eval_return", summary["eval_steps"], summary["eval_return"]
    )
    if "episode_return" in summary:
        scalars += _per_seed_and_mean(
            runs, "mean", "episode_return", summary["episode_steps"], summary["episode_return"]
        )
    last = int(summary["eval_steps"][-1])
    speed = [key for key in SPEED_KEYS if key in summary]
    scalars += [Scalar("mean", key, last, float(summary[key])) for key in speed]
    return scalars


def experiment_scalars(results: dict) -> list[Scalar]:
    """The scalars of an experiment's ``results.json`` (``jsurgery run``): for each arm, each seed
    (run ``ARM/seed_N``) and their mean (run ``ARM/mean``), the ``curve`` of evaluations over the
    arm's steps, and ``auc`` and ``final`` at its last step."""
    scalars = []
    for arm, data in results["arms"].items():
        runs = [f"{arm}/seed_{i}" for i in range(len(data["curves"]))]
        scalars += _per_seed_and_mean(runs, f"{arm}/mean", "curve", data["x"], data["curves"])
        last = [int(data["x"][-1])]
        for tag in ("auc", "final"):
            rows = [[value] for value in data[tag]]
            scalars += _per_seed_and_mean(runs, f"{arm}/mean", tag, last, rows)
    return scalars
