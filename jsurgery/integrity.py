"""Damage found, not restored as data: a checksum per saved array and per file, and metadata
read strictly. Shared by the surgery core's checkpoints and the RL side's saved agents; it imports
no other jsurgery module.

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

__all__ = [
    "CHECKSUMS",
    "DamagedError",
    "check_metadata_files",
    "checksum",
    "file_checksum",
    "read_checksums",
    "verify_files",
    "verify_leaves",
    "write_checksums",
]

CHECKSUMS = "checksums.json"
ORBAX_JSON = ("_CHECKPOINT_METADATA", "_METADATA", "_sharding", "array_metadatas/process_*")


class DamagedError(ValueError):
    """A checkpoint file or array whose bytes differ from the ones saved, or that cannot be
    decoded. The checkpoint readers raise it as their own error (``CheckpointError``,
    ``DamagedFileError``)."""


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


def file_checksum(path: Path) -> str:
    """CRC-32 (8 hex digits) of a file's bytes, read in chunks."""
    crc = 0
    with path.open("rb") as file:
        while chunk := file.read(1 << 22):
            crc = zlib.crc32(chunk, crc)
    return f"{crc:08x}"


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != CHECKSUMS)


def write_checksums(directory: str | os.PathLike, state: Any) -> None:
    """Writes ``checksums.json`` into ``directory``: ``{"crc32": {path: {crc32, dtype, shape}}}``
    for every leaf of ``state``, by its path as orbax stores it, and ``{"files": {name: crc32}}``
    for every file already in ``directory``."""
    directory = Path(directory)
    files = {p.relative_to(directory).as_posix(): file_checksum(p) for p in _files(directory)}
    leaves = {}
    for keypath, leaf in jax.tree_util.tree_flatten_with_path(jax.device_get(state))[0]:
        array = np.asarray(leaf)
        leaves["/".join(disk_path(keypath))] = {
            "crc32": checksum(array),
            "dtype": str(array.dtype),
            "shape": list(array.shape),
        }
    (directory / CHECKSUMS).write_text(json.dumps({"crc32": leaves, "files": files}, indent=1))


def _read_json(path: Path, directory: Path) -> Any:
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedError(
            f"checkpoint file {path} is damaged ({error}); "
            "restore the checkpoint from a good copy or save it again."
        ) from None


def _damaged_table(directory: Path) -> DamagedError:
    return DamagedError(
        f"checkpoint file {directory / CHECKSUMS} is damaged (not the checksum table saved); "
        "restore the checkpoint from a good copy or save it again."
    )


def _valid_entry(entry: Any) -> bool:
    if not isinstance(entry, dict) or not isinstance(entry.get("crc32"), str):
        return False
    if not isinstance(entry.get("dtype"), str):
        return False
    try:
        jnp.dtype(entry.get("dtype"))
    except TypeError:
        return False
    return True


def _read_table(directory: Path) -> dict | None:
    path = directory / CHECKSUMS
    if not path.is_file():
        return None
    data = _read_json(path, directory)
    if not isinstance(data, dict) or not isinstance(data.get("crc32"), dict):
        raise _damaged_table(directory)
    if not all(_valid_entry(v) for v in data["crc32"].values()):
        raise _damaged_table(directory)
    files = data.get("files", {})
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise _damaged_table(directory)
    return data


def read_checksums(directory: str | os.PathLike) -> dict[str, dict] | None:
    """``{path: {crc32, dtype, shape}}`` from ``checksums.json``; None when there is none."""
    data = _read_table(Path(directory))
    return None if data is None else data["crc32"]


def check_metadata_files(directory: str | os.PathLike) -> None:
    """Parses every JSON file orbax keeps in ``directory``; a damaged one is a DamagedError
    naming it."""
    directory = Path(directory)
    for pattern in ORBAX_JSON:
        for path in sorted(directory.glob(pattern)):
            if path.is_file():
                _read_json(path, directory)


def _array_data(name: str) -> bool:
    """Whether a checkpoint file holds array data (``ocdbt.process_N/d/...``)."""
    parts = Path(name).parts
    pairs = zip(parts[:-1], parts[1:], strict=True)
    return any(a.startswith("ocdbt.process_") and b == "d" for a, b in pairs)


def verify_files(directory: str | os.PathLike, *, data: bool = False) -> None:
    """Compares every file recorded in ``checksums.json`` with its CRC-32 (nothing to do without
    one), the array data only with ``data`` (it is checked leaf by leaf as it is read, which
    names the leaf), then parses orbax's JSON files.

    Raises:
        DamagedError: naming the first file that is missing or differs from the one saved, or
            a damaged ``checksums.json``.
    """
    directory = Path(directory)
    table = _read_table(directory)
    for name, crc in ({} if table is None else table.get("files", {})).items():
        if _array_data(name) and not data:
            continue  # each leaf read is checked, and named, on its own
        path = directory / name
        if not path.is_file():
            raise DamagedError(
                f"checkpoint file {path} is missing (or {CHECKSUMS} is damaged); restore "
                "the checkpoint from a good copy or save it again."
            )
        got = file_checksum(path)
        if got != crc:
            raise DamagedError(
                f"checkpoint file {path} is damaged (its bytes differ from the ones "
                f"saved: CRC-32 {got}, saved {crc}, or {CHECKSUMS} is damaged); "
                "restore the checkpoint from a good copy or save it again."
            )
    check_metadata_files(directory)


def verify_leaves(directory: str | os.PathLike, values: dict[tuple[str, ...], Any]) -> None:
    """Compares each restored leaf ``{path: value}`` with its recorded checksum.

    Raises:
        DamagedError: naming the first leaf whose bytes differ from the ones saved.
    """
    recorded = read_checksums(directory)
    if recorded is None:
        return
    for path, value in values.items():
        entry = recorded.get("/".join(path))
        if entry is None:
            continue
        got = checksum(value, jnp.dtype(entry["dtype"]))
        if got != entry["crc32"]:
            raise DamagedError(
                f"checkpoint {directory}: leaf {'/'.join(path)} is damaged (its bytes differ "
                f"from the ones saved: CRC-32 {got}, saved {entry['crc32']}); restore the "
                "checkpoint from a good copy or save it again."
            )
