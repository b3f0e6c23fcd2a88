"""Files written atomically: JSON results and ``.npz`` parameters (temporary file, then rename).

A reader never sees half a file: each writer writes a temporary file in the target's folder,
flushes it to disk and renames it over the target with ``os.replace``
(:func:`jsurgery.atomic.write_file`); if writing fails, the temporary file is removed and the
target keeps its previous content.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import numpy as np
from flax import traverse_util

from jsurgery.atomic import write_file

__all__ = ["load_params", "save_params", "write_atomic", "write_json"]


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


def load_params(path: str | os.PathLike) -> dict:
    """Loads what :func:`save_params` wrote, as nested dicts of NumPy arrays."""
    with np.load(path) as data:
        return traverse_util.unflatten_dict({key: data[key] for key in data.files}, sep="/")
