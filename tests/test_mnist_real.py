"""The MNIST loader against the real files in ../shared/data/mnist and the checks of its README.

Skipped, with the reason, when the reference data is absent.
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest

from cscore_lab.data import DataError, load_mnist, read_idx

MNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="module")
def train():
    if not MNIST.is_dir():
        pytest.skip(f"MNIST reference files not found at {MNIST}; these checks need ../shared/data/mnist")
    return load_mnist(MNIST)


def test_first_labels_and_counts(train) -> None:
    assert len(train) == 60_000 and train.num_classes == 10 and train.name == "mnist"
    np.testing.assert_array_equal(train.labels[:10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
    np.testing.assert_array_equal(train.class_counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949])


def test_pixels(train) -> None:
    assert train.inputs.shape == (60_000, 784) and train.inputs.dtype == np.float32
    assert train.images.shape == (60_000, 28, 28) and train.images.dtype == np.uint8
    assert int(train.images[0].astype(np.int64).sum()) == 27525
    np.testing.assert_array_equal(train.inputs[0], train.images[0].reshape(-1))
    assert train.value_range == 255.0
    scaled = train.inputs.astype(np.float64) / 255.0
    assert scaled.mean() == pytest.approx(0.1307, abs=5e-5)
    assert scaled.std() == pytest.approx(0.3081, abs=5e-5)


def test_uncompressed_image_file_md5() -> None:
    path = MNIST / "train-images-idx3-ubyte.gz"
    if not path.is_file():
        pytest.skip(f"{path} not found; this check needs ../shared/data/mnist")
    with gzip.open(path, "rb") as fh:
        assert hashlib.md5(fh.read()).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"


def test_test_split(train) -> None:
    test = load_mnist(MNIST, split="test")
    assert len(test) == 10_000 and test.name == "mnist-test"
    np.testing.assert_array_equal(np.bincount(test.labels), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])


def test_raw_and_gzip_read_alike_and_wrong_magic_is_refused(train, tmp_path: Path) -> None:
    raw = tmp_path / "train-labels-idx1-ubyte"
    with gzip.open(MNIST / "train-labels-idx1-ubyte.gz", "rb") as fh:
        raw.write_bytes(fh.read())
    np.testing.assert_array_equal(read_idx(raw), train.labels)
    with pytest.raises(DataError, match="magic number 0x00000801, expected 0x00000803"):
        read_idx(raw, expect_magic=0x803)
    truncated = tmp_path / "cut"
    truncated.write_bytes(raw.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated"):
        read_idx(truncated)
