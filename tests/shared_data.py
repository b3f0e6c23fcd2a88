"""Where the tests find MNIST: first where the library looks
(:func:`jsurgery.data.mnist.default_data_dir`: ``$JSURGERY_DATA/mnist``, else
``~/.cache/jsurgery/mnist``), then ``shared/data/mnist`` beside the repository (the layout of a
checkout next to its ``shared`` folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from jsurgery.data import mnist

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO.parent / "shared" / "data" / "mnist"


def holds_mnist(folder: Path) -> bool:
    """Whether ``folder`` has the MNIST test images and labels (all the experiments need)."""
    return all((folder / name).exists() for name in (mnist.TEST_IMAGES, mnist.TEST_LABELS))


def find_mnist_dir(fallback: Path = SHARED_MNIST) -> Path:
    """The library's own folder when it holds MNIST, else ``fallback`` when that does, else the
    library's folder (where a test that needs MNIST says the files are missing)."""
    candidates = (mnist.default_data_dir(), fallback)
    return next((folder for folder in candidates if holds_mnist(folder)), candidates[0])


MNIST_DIR = find_mnist_dir()
DATA_ROOT = MNIST_DIR.parent
"""The folder holding ``mnist/``: what ``JSURGERY_DATA`` is set to for code that reads MNIST."""
HAS_MNIST = holds_mnist(MNIST_DIR)
SKIP_REASON = (
    f"MNIST files are absent from {mnist.default_data_dir()} and {SHARED_MNIST}: set "
    "JSURGERY_DATA to a folder holding mnist/ (see jsurgery.data.mnist)"
)
needs_mnist = pytest.mark.skipif(not HAS_MNIST, reason=SKIP_REASON)
