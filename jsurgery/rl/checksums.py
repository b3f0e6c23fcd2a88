"""Saved agents checked on load: a CRC-32 per array, and orbax's metadata files read strictly.

:func:`jsurgery.rl.save_agent` writes ``checksums.json`` (``{"crc32": {path: {crc32, dtype,
shape}}}``, the format :func:`jsurgery.checkpoint.save_state` uses) into the run's
``checkpoint/``; :func:`jsurgery.rl.load_run` compares every restored array with it and names the
one that differs. A run saved before checksums existed has no ``checksums.json`` and loads
unverified.
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.rl.files import DamagedFileError, read_json, write_json

__all__ = ["CHECKSUMS", "check_orbax_metadata", "verify_checksums", "write_checksums"]

CHECKSUMS = "checksums.json"
ORBAX_JSON = ("_CHECKPOINT_METADATA", "_METADATA", "_sharding", "array_metadatas/process_*")


def _path(keypath) -> str:
    keys = (getattr(k, a) for k in keypath for a in ("key", "name", "idx") if hasattr(k, a))
    return "/".join(str(key) for key in keys)


def _crc32(value: Any, dtype=None) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(np.asarray(value, dtype=dtype)).tobytes()):08x}"


def write_checksums(directory: str | os.PathLike, state: Any) -> None:
    """Writes ``checksums.json`` for every leaf of ``state`` into ``directory``."""
    leaves = {}
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]:
        array = np.asarray(leaf)
        leaves[_path(keypath)] = {
            "crc32": _crc32(array),
            "dtype": str(array.dtype),
            "shape": list(array.shape),
        }
    write_json(Path(directory) / CHECKSUMS, {"crc32": leaves})


def check_orbax_metadata(directory: str | os.PathLike) -> None:
    """Parses the JSON files orbax keeps in ``directory``; a damaged one is named."""
    for pattern in ORBAX_JSON:
        for path in sorted(Path(directory).glob(pattern)):
            if path.is_file():
                read_json(path)


def verify_checksums(directory: str | os.PathLike, state: Any) -> None:
    """Compares every leaf of a restored ``state`` with ``checksums.json`` (if there is one).

    Raises:
        DamagedFileError: naming the first leaf whose bytes differ from the ones saved, or a
            damaged ``checksums.json``.
    """
    path = Path(directory) / CHECKSUMS
    if not path.is_file():
        return
    recorded = read_json(path)
    if not isinstance(recorded, dict) or not isinstance(recorded.get("crc32"), dict):
        raise DamagedFileError(f"{path} is damaged (no checksum table); save the run again")
    recorded = recorded["crc32"]
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        entry = recorded.get(_path(keypath))
        if entry is not None and _crc32(leaf, jnp.dtype(entry["dtype"])) != entry["crc32"]:
            raise DamagedFileError(
                f"{directory}: leaf {_path(keypath)} is damaged (its bytes differ from the ones "
                "saved); restore the run from a good copy or train it again"
            )
