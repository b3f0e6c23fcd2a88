"""Orbax checkpoints in and out through a plan (imported by path, so `import jsurgery` stays
light): `save_state`, `read_structure`, `restore_transplanted`. See `jsurgery.execute.checkpoint`.
"""

from jsurgery.execute.checkpoint import (
    CheckpointError,
    read_structure,
    restore_transplanted,
    save_state,
)

__all__ = ["CheckpointError", "read_structure", "restore_transplanted", "save_state"]
