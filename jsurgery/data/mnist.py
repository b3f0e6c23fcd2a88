"""MNIST from its original IDX files, checked against the official md5 sums.

Where the files live, first match wins:

1. the ``data_dir`` argument (the folder holding the ``.gz`` files);
2. ``$JSURGERY_DATA/mnist`` when the ``JSURGERY_DATA`` environment variable is set;
3. ``~/.cache/jsurgery/mnist``.

Missing files are downloaded from a public mirror when the machine is online. Which split is used:

- ``"official"``: all four files are present (or could be downloaded): the 60,000 training images
  and the 10,000 test images;
- ``"test-split"``: only the test images and labels are present and the training images cannot be
  had. The 10,000 test images are then split deterministically by index: every image whose index is
  a multiple of 5 (``0, 5, 10, ...``, 2,000 images) is held out for evaluation and the other 8,000
  are the training part. The interleaving keeps both halves of the test set (its two writer
  populations) in both parts, and it does not depend on any random number generator.

Example:
    >>> from jsurgery.data.mnist import load_mnist
    >>> data = load_mnist("../shared/data/mnist")  # a folder of IDX files  # doctest: +SKIP
    >>> data.split, data.train_images.shape  # doctest: +SKIP
    ('test-split', (8000, 28, 28))
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"

#: The official md5 sums of the four MNIST files.
MD5 = {
    TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
    TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
    TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
}

#: Public mirrors tried in order when a file is missing.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
)

#: In the ``"test-split"``, test images whose index is a multiple of this are held out.
HELD_OUT_EVERY = 5


class MnistError(ValueError):
    """An MNIST file is corrupt (wrong md5 or malformed IDX content)."""


@dataclasses.dataclass(frozen=True)
class Mnist:
    """Images as ``uint8`` arrays ``(n, 28, 28)``, labels as ``int32`` arrays ``(n,)``.

    Attributes:
        train_images, train_labels: the training part.
        test_images, test_labels: the held-out part used for evaluation.
        split: ``"official"`` or ``"test-split"`` (see the module docstring).
        data_dir: the folder the files were read from.
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    split: str
    data_dir: Path


def default_data_dir() -> Path:
    """``$JSURGERY_DATA/mnist`` when ``JSURGERY_DATA`` is set, else ``~/.cache/jsurgery/mnist``."""
    root = os.environ.get("JSURGERY_DATA")
    if root:
        return Path(root).expanduser() / "mnist"
    return Path("~/.cache/jsurgery/mnist").expanduser()


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path) -> None:
    actual = _md5(path)
    if actual != MD5[path.name]:
        raise MnistError(
            f"{path}: md5 is {actual}, expected {MD5[path.name]}; the file is corrupt or "
            f"incomplete. Delete it and load again to re-download it."
        )


def _download(name: str, data_dir: Path) -> bool:
    """Fetch ``name`` into ``data_dir`` (atomically); True when it worked."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    for mirror in MIRRORS:
        try:
            with urllib.request.urlopen(mirror + name, timeout=30) as response:
                fd, tmp = tempfile.mkstemp(dir=data_dir, prefix=f".{name}.")
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(response, out)
        except (urllib.error.URLError, OSError, TimeoutError):
            continue
        if _md5(Path(tmp)) != MD5[name]:
            os.remove(tmp)
            continue
        os.replace(tmp, data_dir / name)
        return True
    return False


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + ndim:
        raise MnistError(f"{path}: not an IDX file of {ndim} dimension(s) (magic {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise MnistError(f"{path}: {len(raw) - offset} bytes of data, expected {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def _available(name: str, data_dir: Path, download: bool) -> bool:
    path = data_dir / name
    if not path.exists() and download:
        _download(name, data_dir)
    return path.exists()


def load_mnist(data_dir: str | os.PathLike | None = None, *, download: bool = True) -> Mnist:
    """Loads MNIST, checking every file's md5 before reading it.

    Args:
        data_dir: folder with the IDX ``.gz`` files; default :func:`default_data_dir`.
        download: try the public mirrors for missing files.

    Returns:
        An :class:`Mnist` with the official split when the training images are available, else the
        deterministic ``"test-split"`` of the 10,000 test images (see the module docstring).

    Raises:
        FileNotFoundError: the test images or labels are missing and could not be downloaded; the
            message names the file and the folder.
        MnistError: a file's md5 does not match the official one, or its content is malformed.
    """
    data_dir = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    for name in (TEST_IMAGES, TEST_LABELS):
        if not _available(name, data_dir, download):
            where = "the mirrors could not be reached" if download else "download=False"
            raise FileNotFoundError(
                f"MNIST file {name} is missing from {data_dir} and {where}. Put the official "
                f"file there (md5 {MD5[name]}), pass data_dir=..., or set JSURGERY_DATA to a "
                f"folder that holds mnist/{name}."
            )
    official = all(_available(name, data_dir, download) for name in (TRAIN_IMAGES, TRAIN_LABELS))
    names = (TEST_IMAGES, TEST_LABELS) + ((TRAIN_IMAGES, TRAIN_LABELS) if official else ())
    for name in names:
        _check(data_dir / name)
    test_images = _read_idx(data_dir / TEST_IMAGES, 3)
    test_labels = _read_idx(data_dir / TEST_LABELS, 1).astype(np.int32)
    if official:
        return Mnist(
            _read_idx(data_dir / TRAIN_IMAGES, 3),
            _read_idx(data_dir / TRAIN_LABELS, 1).astype(np.int32),
            test_images,
            test_labels,
            "official",
            data_dir,
        )
    held_out = np.arange(len(test_labels)) % HELD_OUT_EVERY == 0
    return Mnist(
        test_images[~held_out],
        test_labels[~held_out],
        test_images[held_out],
        test_labels[held_out],
        "test-split",
        data_dir,
    )
