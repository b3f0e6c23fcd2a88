"""Files written atomically: JSON results and ``.npz`` parameters (temporary file, then rename).

A reader never sees half a file: each writer writes a temporary file in the target's folder,
flushes it to disk and renames it over the target with ``os.replace``
(:func:`jsurgery.atomic.write_file`); if writing fails, the temporary file is removed and the
target keeps its previous content. Readers name a damaged file (:class:`DamagedFileError`) instead
of passing on a decoder's error.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from flax import traverse_util

from jsurgery.atomic import write_file

__all__ = [
    "DamagedFileError",
    "load_params",
    "read_json",
    "save_params",
    "write_atomic",
    "write_json",
]


class DamagedFileError(ValueError):
    """A saved file that cannot be decoded (truncated, overwritten, not what was written)."""


def write_atomic(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> None:
    """Calls ``write(file)`` on a temporary file beside ``path``, then renames it to ``path``."""
    write_file(path, write, mode)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Writes ``data`` as JSON (indent 1) to ``path`` atomically."""
    write_atomic(path, lambda f: json.dump(data, f, indent=1))


def save_params(path: str | os.PathLike, params) -> None:
    """Saves a nested dict of arrays atomically as ``.npz`` with ``/``-joined keys."""
    flat = traverse_util.flatten_dict(params, sep="/")
    flat = {key: np.asarray(value) for key, value in flat.items()}
    write_atomic(path, lambda f: np.savez(f, **flat), mode="wb")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``.

    Raises:
        DamagedFileError: the file is not UTF-8 JSON (truncated, say), naming it.
    """
    try:
        return json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedFileError(f"{path} is damaged: not JSON ({error})") from None


def load_params(path: str | os.PathLike) -> dict:
    """Loads what :func:`save_params` wrote, as nested dicts of NumPy arrays.

    Raises:
        DamagedFileError: the file is not a complete ``.npz`` (truncated, say), naming it.
    """
    try:
        with np.load(path) as data:
            flat = {key: data[key] for key in data.files}
    except (zipfile.BadZipFile, EOFError, ValueError) as error:
        raise DamagedFileError(f"{path} is damaged: not a complete .npz file ({error})") from None
    return traverse_util.unflatten_dict(flat, sep="/")
