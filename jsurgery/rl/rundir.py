"""Run directories: written whole and switched in at once, named by a manifest, one writer at once.

A run directory (``jsurgery train --out``, ``jsurgery surgery --out``, :func:`save_agent`) is built
beside the old one and switched in by renames (:func:`jsurgery.atomic.replace_dir`), so it is only
ever seen complete-old or complete-new. ``manifest.json``, written last, names its files and what
made it. While ``jsurgery train`` runs, ``progress/`` inside it holds the training state saved so
far (:mod:`jsurgery.rl.snapshot`); the finished run replaces the directory, and with it the
progress.

:func:`open_out_dir` is how a command claims its output directory: it takes the lock, finishes a
switch a killed writer left half done, and refuses an existing run unless asked to replace
(``--force``) or continue (``--resume``) it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from jsurgery.atomic import current_dir, lock_dir, recover_dir, replace_dir
from jsurgery.rl.snapshot import read_identity, read_step

__all__ = [
    "MANIFEST",
    "PROGRESS",
    "OutDir",
    "RunDirError",
    "open_out_dir",
    "read_manifest",
    "save_run",
]

MANIFEST = "manifest.json"
PROGRESS = "progress"
COMPLETE_MARKERS = (MANIFEST, "agent.json")
"""Files only a complete run holds (``agent.json`` alone: a run saved before manifests existed)."""


class RunDirError(ValueError):
    """An output directory that cannot be written as asked; the message says what to pass."""


def save_run(
    directory: str | os.PathLike, write: Callable[[Path], None], identity: dict | None = None
) -> Path:
    """Replaces the run under ``directory`` by what ``write(staging)`` writes into an empty
    directory, with ``manifest.json`` naming those files (and ``identity``, what made the run).

    Returns:
        ``directory`` as an absolute path.
    """

    target = Path(directory).absolute()
    if target.is_dir() and any(target.iterdir()) and not _what(target):
        raise RunDirError(
            f"{target}: holds files that are not a jsurgery run, which saving a run there would "
            "delete; save it to a new or empty directory"
        )

    def build(stage: Path) -> None:
        write(stage)
        manifest = {"files": sorted(path.name for path in stage.iterdir()), "identity": identity}
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1))

    return replace_dir(target, build)


def read_manifest(directory: str | os.PathLike) -> dict | None:
    """The manifest of the run under ``directory``; None when there is none."""
    path = current_dir(directory) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            found += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            found.append(f"{prefix}{key} {a!r} -> {b!r}")
    return found


@dataclasses.dataclass
class OutDir:
    """An output directory claimed by :func:`open_out_dir`.

    Attributes:
        path: the directory (absolute).
        resume: there is saved progress of this same run to continue from.
        complete: the directory already holds this same run, finished (only with ``resume``).
    """

    path: Path
    resume: bool = False
    complete: bool = False

    @property
    def progress(self) -> Path:
        return self.path / PROGRESS


def _what(path: Path) -> str:
    step = read_step(path / PROGRESS)
    interrupted = f"an interrupted run (step {step:,} saved)" if step is not None else ""
    complete = any((path / name).exists() for name in COMPLETE_MARKERS)
    complete = "a complete run" if complete else ""
    return " and ".join(part for part in (complete, interrupted) if part)


def _check(
    path: Path, identity: dict, *, force: bool, resume: bool | None, argument: str
) -> OutDir:
    if path.exists() and not path.is_dir():
        raise RunDirError(
            f"{argument} {path}: is a file, not a directory; choose another {argument}"
        )
    if not path.exists() or not any(path.iterdir()):
        return OutDir(path)
    what = _what(path)
    if not what:
        raise RunDirError(
            f"{argument} {path}: exists and holds no jsurgery run; choose another {argument} (an "
            "empty or new directory)"
        )
    if force:
        return OutDir(path)
    if not resume:
        continue_it = " to continue it" if (path / PROGRESS).exists() else ""
        options = "" if resume is None else f"--resume{continue_it}, "
        raise RunDirError(
            f"{argument} {path}: holds {what}; pass {options}--force to replace it, or choose "
            f"another {argument}"
        )
    saved = read_identity(path / PROGRESS)
    if saved is None:
        saved = (read_manifest(path) or {}).get("identity")
        complete = True
    else:
        complete = False
    if saved is None:
        raise RunDirError(
            f"{argument} {path}: --resume: {what} there has no record of its arguments; pass "
            "--force to replace it, or choose another {argument}"
        )
    if saved != identity:
        diffs = _differences(saved or {}, identity)
        raise RunDirError(
            f"{argument} {path}: --resume: {what} there was started with other arguments "
            f"({'; '.join(diffs[:4])}); pass the same arguments, or --force to replace it"
        )
    return OutDir(path, resume=not complete, complete=complete)


def check_writable_dir(directory: str | os.PathLike, argument: str = "--out") -> Path:
    """``directory`` as an absolute path, once it is known that it can be made and written:
    neither it nor a folder above it is a file, and the nearest existing folder takes a new file.

    Raises:
        RunDirError: what stands in the way, named, with ``argument`` (the option that gave it).
    """
    path = Path(directory).absolute()
    existing = next(folder for folder in (path, *path.parents) if folder.exists())
    if not existing.is_dir():
        where = "is a file" if existing == path else f"lies under the file {existing}"
        raise RunDirError(f"{argument} {path}: {where}, not a directory; choose another {argument}")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise RunDirError(
            f"{argument} {path}: cannot write in {existing} ({error.strerror}); choose another "
            f"{argument}"
        ) from None
    return path


@contextlib.contextmanager
def open_out_dir(
    directory: str | os.PathLike,
    identity: dict,
    *,
    force: bool = False,
    resume: bool | None = False,
    argument: str = "--out",
) -> Iterator[OutDir]:
    """Claims ``directory`` for writing a run while the ``with`` block runs.

    Takes the directory's lock (:func:`jsurgery.atomic.lock_dir`), finishes a switch a killed
    writer left half done, then checks what is there: nothing (or an empty directory) is taken;
    a run (complete, or interrupted with saved progress) is taken only with ``force`` (replaced
    when the new one is complete) or ``resume`` (continued, if ``identity``, what the run is made
    with, is the one saved; None: the command cannot resume, and its messages do not offer it);
    anything else is refused.

    Raises:
        RunDirError: the directory cannot be taken as asked (the message says what to pass).
        LockedError: another process is writing it.
    """
    path = check_writable_dir(directory, argument)
    with lock_dir(directory):
        recover_dir(path)
        yield _check(path, identity, force=force, resume=resume, argument=argument)
