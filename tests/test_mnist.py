"""MNIST loading: checksums, the deterministic test split, and clear errors."""

import gzip
import shutil

import numpy as np
import pytest
from shared_data import MNIST_DIR, find_mnist_dir, needs_mnist

from jsurgery.data import mnist


def _copy_test_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    for name in (mnist.TEST_IMAGES, mnist.TEST_LABELS):
        shutil.copy(MNIST_DIR / name, folder / name)
    return folder


@needs_mnist
def test_test_split_is_deterministic_and_disjoint(tmp_path):
    data = mnist.load_mnist(_copy_test_files(tmp_path), download=False)  # no training images
    assert data.split == "test-split"
    assert data.train_images.shape == (8000, 28, 28)
    assert data.test_images.shape == (2000, 28, 28)
    assert data.train_images.dtype == np.uint8 and data.train_labels.dtype == np.int32
    assert set(np.unique(data.train_labels)) == set(range(10))
    again = mnist.load_mnist(tmp_path, download=False)
    np.testing.assert_array_equal(data.test_labels, again.test_labels)
    # held out: indices 0, 5, 10, ... of the test file
    full = mnist._read_idx(MNIST_DIR / mnist.TEST_LABELS, 1)
    np.testing.assert_array_equal(data.test_labels, full[::5])


@needs_mnist
def test_env_var_names_the_data_root(monkeypatch):
    monkeypatch.setenv("JSURGERY_DATA", str(MNIST_DIR.parent))
    assert mnist.default_data_dir() == MNIST_DIR
    assert mnist.load_mnist(download=False).data_dir == MNIST_DIR


def test_the_tests_look_where_the_library_looks_first(tmp_path, monkeypatch):
    library, shared, empty = tmp_path / "data" / "mnist", tmp_path / "shared", tmp_path / "empty"
    for folder in (library, shared):
        folder.mkdir(parents=True)
        for name in (mnist.TEST_IMAGES, mnist.TEST_LABELS):
            (folder / name).touch()
    monkeypatch.setenv("JSURGERY_DATA", str(library.parent))
    assert find_mnist_dir(fallback=shared) == library
    monkeypatch.setenv("JSURGERY_DATA", str(empty))
    assert find_mnist_dir(fallback=shared) == shared
    assert find_mnist_dir(fallback=empty / "neither") == empty / "mnist"


def test_missing_file_names_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"{mnist.TEST_IMAGES}.*{tmp_path}"):
        mnist.load_mnist(tmp_path, download=False)


@needs_mnist
def test_corrupt_file_names_the_file(tmp_path):
    _copy_test_files(tmp_path)
    with gzip.open(tmp_path / mnist.TEST_LABELS, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + b"\x00" * 8)
    with pytest.raises(mnist.MnistError, match=f"{mnist.TEST_LABELS}: md5"):
        mnist.load_mnist(tmp_path, download=False)
