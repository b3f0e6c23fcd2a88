"""Replacing files and directories so that a reader sees the old version or the new, never a mix.

A file is written to a temporary sibling, flushed to disk and renamed over the target
(``os.replace``). A directory is built in a staging sibling ``.NAME.building-PID-XXXX``, flushed to
disk and renamed ``.NAME.new-PID-XXXX`` once complete; then the switch: the old directory is renamed
aside (``.NAME.old-PID-XXXX``), the new one renamed in and the old one deleted. Between those two
renames (and after a crash there) ``NAME`` does not exist; :func:`current_dir` then names the
complete directory a reader should use, and :func:`recover_dir` (called by the next writer)
finishes the switch.

Writers of one target are kept apart by :func:`lock_dir`, a ``fcntl.flock`` on ``.NAME.lock``
beside the target, which holds the writer's process ID and command line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "LockedError",
    "ReplacedError",
    "current_dir",
    "lock_dir",
    "lock_path",
    "read_whole",
    "recover_dir",
    "replace_dir",
    "write_file",
]


class LockedError(ValueError):
    """Another process is writing the same directory; the message names it."""


class ReplacedError(ValueError):
    """A directory was replaced at every attempt to read it whole."""


READ_ATTEMPTS = 5


def _fsync_dir(path: Path) -> None:
    if os.name == "nt":  # Windows cannot open a directory to flush it
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_file(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, flushes it to disk and renames it
    to ``path`` (with the mode ``open`` would give it under the umask); if ``write`` fails,
    ``path`` keeps its previous content."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private
        with os.fdopen(fd, mode) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _sync_tree(root: Path) -> None:
    for folder, _, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(folder))


def _siblings(target: Path, kind: str) -> list[Path]:
    """``.NAME.<kind>-*`` beside ``target``, oldest first."""
    found = []
    for path in target.parent.glob(f".{target.name}.{kind}-*"):
        with contextlib.suppress(FileNotFoundError):
            found.append((path.stat().st_mtime_ns, path))
    return [path for _, path in sorted(found)]


def replace_dir(target: str | os.PathLike, build: Callable[[Path], None]) -> Path:
    """Replaces the directory ``target`` by one that ``build(staging)`` fills.

    ``build`` receives an empty directory beside ``target`` and writes the new content there; only
    when it returns is the old ``target`` (if any) switched for it, so a failure or a kill while
    building leaves the old one as it was.

    Returns:
        ``target`` as an absolute path.
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    recover_dir(target)
    prefix = f".{target.name}.building-{os.getpid()}-"
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=prefix))
    os.chmod(stage, 0o777 & ~_umask())  # as mkdir would make it; mkdtemp makes it private
    token = stage.name.removeprefix(f".{target.name}.building-")
    new = target.parent / f".{target.name}.new-{token}"
    try:
        build(stage)
        _sync_tree(stage)
        os.rename(stage, new)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    _fsync_dir(target.parent)
    _switch(target, new, target.parent / f".{target.name}.old-{token}")
    return target


def _switch(target: Path, new: Path, old: Path) -> None:
    if target.exists():
        os.rename(target, old)
    os.rename(new, target)
    _fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)


def current_dir(target: str | os.PathLike) -> Path:
    """The complete directory to read for ``target``: ``target`` itself, or, in the instant a
    writer switches versions (or after a writer was killed there), the complete new or old one
    beside it. ``target`` (absolute) when there is none."""
    target = Path(target).absolute()
    for _ in range(3):
        if target.exists():
            return target
        for kind in ("new", "old"):
            found = _siblings(target, kind)
            if found and found[-1].exists():
                return found[-1]
    return target


def _inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def read_whole(target: str | os.PathLike, read: Callable[[Path], T]) -> T:
    """``read(current_dir(target))``, read again if a writer switched ``target`` meanwhile, so
    that what is returned comes from one version, never from two.

    A switch replaces the directory at the path (a new inode), so the read was whole if the path
    names the same directory before and after it. An error (``FileNotFoundError``,
    ``ValueError``) raised while nothing was switched is the version's own and is raised.

    Raises:
        ReplacedError: ``target`` was replaced during each of :data:`READ_ATTEMPTS` reads.
    """
    for _ in range(READ_ATTEMPTS):
        found = current_dir(target)
        before = _inode(found)
        try:
            result = read(found)
        except (FileNotFoundError, ValueError):
            if before is not None and _inode(current_dir(target)) == before:
                raise
            continue
        if _inode(current_dir(target)) == before:
            return result
    raise ReplacedError(
        f"{Path(target)}: replaced {READ_ATTEMPTS} times while being read; read it when its "
        "writer is done"
    )


def _pid_alive(name: str, kind: str, target: Path) -> bool:
    pid = name.removeprefix(f".{target.name}.{kind}-").split("-")[0]
    if not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover_dir(target: str | os.PathLike) -> Path:
    """Finishes a switch a killed writer left half done and removes what dead writers left.

    Only what processes that no longer run left is touched, so it is safe beside a live writer
    (:func:`replace_dir` calls it first). If ``target`` is missing but a dead writer's complete
    new version is beside it (killed between its two renames), that one is renamed in; the dead
    writers' other new versions (never switched in), versions set aside and staging directories
    are deleted.

    Returns:
        ``target`` as an absolute path.
    """
    target = Path(target).absolute()
    dead = {
        kind: [p for p in _siblings(target, kind) if not _pid_alive(p.name, kind, target)]
        for kind in ("new", "old", "building")
    }
    if not target.exists():
        for kind in ("new", "old"):
            if dead[kind]:
                os.rename(dead[kind].pop(), target)
                break
    for path in dead["new"] + dead["old"] + dead["building"]:
        shutil.rmtree(path, ignore_errors=True)
    return target


def lock_path(target: str | os.PathLike) -> Path:
    """The lock file of ``target``: ``.NAME.lock`` beside it."""
    target = Path(target).absolute()
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def lock_dir(target: str | os.PathLike) -> Iterator[Path]:
    """Holds an exclusive lock on writing ``target`` while the ``with`` block runs.

    The lock is a ``fcntl.flock`` on :func:`lock_path`, released when the block ends or the process
    dies; the file holds the holder's process ID and command line, for the message another writer
    gets.

    Raises:
        LockedError: another process holds the lock (the message names it).
    """
    import fcntl

    path = lock_path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 1000).decode(errors="replace").strip() or "a process"
            raise LockedError(
                f"{Path(target)} is being written by another process ({holder}); wait for it to "
                "end or stop it, or write elsewhere"
            ) from None
        command = " ".join(sys.argv)[:200]
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"pid {os.getpid()}: {command}".encode())
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
