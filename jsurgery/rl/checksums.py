"""Saved agents checked on load, with the checkpoint checks of :mod:`jsurgery.integrity`.

:func:`jsurgery.rl.save_agent` writes ``checksums.json`` (a CRC-32 per array and per file, the
format :func:`jsurgery.checkpoint.save_state` uses) into the run's ``checkpoint/``;
:func:`jsurgery.rl.load_run` compares every file before restoring and every restored array after,
and names the one that differs as a :class:`jsurgery.rl.files.DamagedFileError`. A run saved
before checksums existed has no ``checksums.json`` and loads unverified.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import jax

from jsurgery import integrity
from jsurgery.rl.files import DamagedFileError

__all__ = ["CHECKSUMS", "check_files", "verify_checksums", "write_checksums"]

CHECKSUMS = integrity.CHECKSUMS
write_checksums = integrity.write_checksums


@contextlib.contextmanager
def _as_damaged_file() -> Iterator[None]:
    try:
        yield
    except integrity.DamagedError as error:
        message = str(error).replace("restore the checkpoint", "restore the run")
        raise DamagedFileError(message) from None


def check_files(directory: str | os.PathLike, *, data: bool = False) -> None:
    """Compares the files of the checkpoint ``directory`` (the array data too with ``data``) with
    their checksums and parses orbax's JSON files; a damaged one is a :class:`DamagedFileError`
    naming it."""
    with _as_damaged_file():
        integrity.verify_files(directory, data=data)


def verify_checksums(directory: str | os.PathLike, state: Any) -> None:
    """Compares every leaf of a restored ``state`` with ``checksums.json`` (if there is one).

    Raises:
        DamagedFileError: naming the first leaf whose bytes differ from the ones saved, or a
            damaged ``checksums.json``.
    """
    pairs = jax.tree_util.tree_flatten_with_path(state)[0]
    values = {integrity.disk_path(keypath): leaf for keypath, leaf in pairs}
    with _as_damaged_file():
        integrity.verify_leaves(directory, values)
