"""Training progress saved between compiled chunks, so a stopped or killed run continues exactly.

A progress directory (``RUN_DIR/progress/`` for ``jsurgery train``) is replaced as a whole by each
save (:func:`jsurgery.atomic.replace_dir`) and holds:

- ``state.npz``: every leaf of the training carry of every seed (network, target network, optimizer
  state, replay buffer, environment states, running returns, random keys) and the learning curves
  so far;
- ``progress.json``: the step reached, the timings, the carry's leaf paths, shapes and dtypes, and
  ``identity``, what the run was started with (configuration, environment, seeds), which a resumed
  run must repeat.

Training restarted from it with the same configuration runs the same compiled chunks on the same
arrays, so it ends with exactly the numbers of a run that was never stopped.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jsurgery.atomic import current_dir, replace_dir

__all__ = ["Progress", "Snapshots", "read_identity", "read_step"]

STATE = "state.npz"
INFO = "progress.json"


class ProgressError(ValueError):
    """A progress directory that does not fit the run resuming from it."""


@dataclasses.dataclass
class Progress:
    """A run's state between two compiled chunks.

    Attributes:
        step: environment steps done per seed.
        carry: the training carry, a leading seed axis on every leaf (NumPy arrays when loaded).
        curves: ``episode_return``, ``episode_valid``, ``episode_steps``, ``loss`` of shape
            ``(seeds, blocks so far)`` and ``eval_return`` ``(seeds, evaluations so far)``, the one
            at step 0 included.
        compile_seconds: time spent compiling so far (over every resumed part).
        run_seconds: time spent running so far.
    """

    step: int
    carry: Any
    curves: dict[str, np.ndarray]
    compile_seconds: float
    run_seconds: float


def _leaf_names(tree: Any) -> list[str]:
    return [jax.tree_util.keystr(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


class Snapshots:
    """Where and how often :func:`jsurgery.rl.train_seeds` saves its progress.

    Args:
        directory: the progress directory (replaced as a whole by every save).
        every: seconds between saves; 0 saves after every compiled chunk.
        identity: JSON-able description of the run (configuration, environment, seeds, ...),
            stored with every save; :meth:`load` refuses progress saved with another.
        resume: continue from the progress in ``directory`` if there is one.
    """

    def __init__(
        self, directory: str | os.PathLike, every: float, identity: dict, resume: bool = False
    ):
        self.directory = Path(directory).absolute()
        self.every, self.resume = float(every), resume
        self.identity = json.loads(json.dumps(identity))
        self._last = time.monotonic()

    def due(self) -> bool:
        """Whether ``every`` seconds have passed since the last save (or since creation)."""
        return time.monotonic() - self._last >= self.every

    def save(self, progress: Progress) -> None:
        """Writes ``progress`` (its arrays fetched from the devices) and switches it in at once."""
        leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(jax.device_get(progress.carry))]
        info = {
            "step": int(progress.step),
            "compile_seconds": progress.compile_seconds,
            "run_seconds": progress.run_seconds,
            "identity": self.identity,
            "leaves": [
                {"path": name, "shape": list(leaf.shape), "dtype": str(leaf.dtype)}
                for name, leaf in zip(_leaf_names(progress.carry), leaves, strict=True)
            ],
            "curves": sorted(progress.curves),
        }
        arrays = {f"leaf_{i}": leaf for i, leaf in enumerate(leaves)}
        arrays.update({f"curve_{name}": np.asarray(v) for name, v in progress.curves.items()})

        def build(stage: Path) -> None:
            with open(stage / STATE, "wb") as file:
                np.savez(file, **arrays)
            (stage / INFO).write_text(json.dumps(info, indent=1))

        replace_dir(self.directory, build)
        self._last = time.monotonic()

    def load(self, template: Any) -> Progress | None:
        """The saved progress, its carry shaped as ``template`` (a tree of arrays or
        ``jax.ShapeDtypeStruct``); None when ``resume`` is off or nothing was saved.

        Raises:
            ProgressError: the progress was saved by a run with another identity, or its carry
                does not fit ``template``.
        """
        if not self.resume:
            return None
        directory = current_dir(self.directory)
        if not (directory / INFO).exists():
            return None
        info = json.loads((directory / INFO).read_text())
        if info["identity"] != self.identity:
            raise ProgressError(
                f"{self.directory} was saved by a run started with other arguments; resume it "
                "with the arguments it was started with"
            )
        names, treedef = _leaf_names(template), jax.tree.structure(template)
        saved = [(leaf["path"], tuple(leaf["shape"]), leaf["dtype"]) for leaf in info["leaves"]]
        wanted = [
            (name, tuple(leaf.shape), str(np.dtype(leaf.dtype)))
            for name, leaf in zip(names, jax.tree.leaves(template), strict=True)
        ]
        if saved != wanted:
            pairs = zip(saved + [None], wanted + [None], strict=False)
            mismatch = next((s, w) for s, w in pairs if s != w)
            raise ProgressError(
                f"{directory / STATE} does not fit this run's training state (saved {mismatch[0]}, "
                f"expected {mismatch[1]}); start the run again with --force"
            )
        with np.load(directory / STATE) as data:
            leaves = [data[f"leaf_{i}"] for i in range(len(wanted))]
            curves = {name: data[f"curve_{name}"] for name in info["curves"]}
        return Progress(
            step=info["step"],
            carry=jax.tree.unflatten(treedef, leaves),
            curves=curves,
            compile_seconds=info["compile_seconds"],
            run_seconds=info["run_seconds"],
        )


def _info(directory: str | os.PathLike) -> dict | None:
    path = current_dir(directory) / INFO
    return json.loads(path.read_text()) if path.exists() else None


def read_identity(directory: str | os.PathLike) -> dict | None:
    """The ``identity`` of the progress saved in ``directory``; None when there is none."""
    info = _info(directory)
    return None if info is None else info["identity"]


def read_step(directory: str | os.PathLike) -> int | None:
    """The step per seed the progress in ``directory`` reached; None when there is none."""
    info = _info(directory)
    return None if info is None else info["step"]
