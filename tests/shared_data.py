"""Where the tests find the shared data: ``$JSURGERY_DATA``, else ``shared/data`` beside the
repository (the layout of a checkout next to its ``shared`` folder)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from jsurgery.data import mnist

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$JSURGERY_DATA`` when set, else ``../shared/data`` relative to the repository root."""
    root = os.environ.get("JSURGERY_DATA")
    return Path(root).expanduser() if root else REPO.parent / "shared" / "data"


DATA_ROOT = data_root()
MNIST_DIR = DATA_ROOT / "mnist"
HAS_MNIST = (MNIST_DIR / mnist.TEST_IMAGES).exists()
SKIP_REASON = (
    f"MNIST files are absent from {MNIST_DIR}: set JSURGERY_DATA to a folder holding "
    "mnist/ (see jsurgery.data.mnist)"
)
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason=SKIP_REASON)
