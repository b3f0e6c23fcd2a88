"""Damage found, not restored as data: a checksum per saved array, and metadata read strictly.

:func:`jsurgery.checkpoint.save_state` records a CRC-32 of every leaf's bytes, with its dtype and
shape, in ``checksums.json`` inside the orbax checkpoint; restores compare each leaf they read and
name the one that differs. A checkpoint written by another program has no ``checksums.json`` and
is read unverified. The JSON files orbax keeps beside the data (``_METADATA``, ``_sharding``, ...)
are parsed first, so a damaged one is named instead of surfacing as a raw decoding error.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jsurgery.errors import PlanError

__all__ = [
    "CHECKSUMS",
    "CheckpointError",
    "check_metadata_files",
    "checksum",
    "read_checksums",
    "verify_leaves",
    "write_checksums",
]

CHECKSUMS = "checksums.json"
ORBAX_JSON = ("_CHECKPOINT_METADATA", "_METADATA", "_sharding", "array_metadatas/process_*")


class CheckpointError(PlanError):
    """A checkpoint that does not hold what the new state and the plan expect, or is damaged."""


def disk_key(key) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def disk_path(keypath) -> tuple[str, ...]:
    """A leaf's path as orbax stores it: dict keys, attribute names and indices as strings."""
    return tuple(disk_key(k) for k in keypath)


def checksum(value: Any, dtype: np.dtype | None = None) -> str:
    """CRC-32 (8 hex digits) of an array's bytes in C order, as ``dtype`` when given."""
    array = np.ascontiguousarray(np.asarray(value, dtype=dtype))
    return f"{zlib.crc32(array.tobytes()):08x}"


def write_checksums(directory: str | os.PathLike, state: Any) -> None:
    """Writes ``checksums.json`` (``{"crc32": {path: {crc32, dtype, shape}}}``) into
    ``directory``, for every leaf of ``state``, by its path as orbax stores it."""
    leaves = {}
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]:
        array = np.asarray(leaf)
        leaves["/".join(disk_path(keypath))] = {
            "crc32": checksum(array),
            "dtype": str(array.dtype),
            "shape": list(array.shape),
        }
    (Path(directory) / CHECKSUMS).write_text(json.dumps({"crc32": leaves}, indent=1))


def _read_json(path: Path, directory: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(
            f"checkpoint {directory}: {path.relative_to(directory)} is damaged ({error}); "
            "restore the checkpoint from a good copy or save it again."
        ) from None


def read_checksums(directory: str | os.PathLike) -> dict[str, dict] | None:
    """``{path: {crc32, dtype, shape}}`` from ``checksums.json``; None when there is none."""
    directory = Path(directory)
    path = directory / CHECKSUMS
    if not path.is_file():
        return None
    data = _read_json(path, directory)
    leaves = data.get("crc32") if isinstance(data, dict) else None
    if not isinstance(leaves, dict) or not all(
        isinstance(v, dict) and {"crc32", "dtype"} <= set(v) for v in leaves.values()
    ):
        raise CheckpointError(
            f"checkpoint {directory}: {CHECKSUMS} is damaged (no checksum table); restore the "
            "checkpoint from a good copy or save it again."
        )
    return leaves


def check_metadata_files(directory: str | os.PathLike) -> None:
    """Parses every JSON file orbax keeps in ``directory``; a damaged one is a CheckpointError
    naming it."""
    directory = Path(directory)
    for pattern in ORBAX_JSON:
        for path in sorted(directory.glob(pattern)):
            if path.is_file():
                _read_json(path, directory)


def verify_leaves(directory: str | os.PathLike, values: dict[tuple[str, ...], Any]) -> None:
    """Compares each restored leaf ``{path: value}`` with its recorded checksum.

    Raises:
        CheckpointError: naming the first leaf whose bytes differ from the ones saved.
    """
    recorded = read_checksums(directory)
    if recorded is None:
        return
    for path, value in values.items():
        entry = recorded.get("/".join(path))
        if entry is None:
            continue
        if checksum(value, jnp.dtype(entry["dtype"])) != entry["crc32"]:
            raise CheckpointError(
                f"checkpoint {directory}: leaf {'/'.join(path)} is damaged (its bytes differ "
                f"from the ones saved: CRC-32 {checksum(value, jnp.dtype(entry['dtype']))}, "
                f"saved {entry['crc32']}); restore the checkpoint from a good copy or save it "
                "again."
            )
