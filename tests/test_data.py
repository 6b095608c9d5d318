"""Loaders read the real on-disk formats; bad data gets a specific error."""

import gzip
import pickle
import struct

import numpy as np
import pytest
import torch

from cscore_lab.data import (
    DataError, Dataset, from_arrays, inject_label_noise, load_cifar10, load_cifar100, load_dataset, load_digits,
    load_fashion_mnist, load_image_folder, load_mnist, load_npz, read_idx,
)


def write_idx(path, arr, *, gz=False, magic=None):
    arr = np.asarray(arr, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    if magic is not None:
        header = struct.pack(">I", magic) + header[4:]
    data = header + arr.tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def make_mnist_folder(folder, n=12, gz=False, rng=None):
    rng = rng or np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n) % 10
    sfx = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{sfx}", images, gz=gz)
    write_idx(folder / f"train-labels-idx1-ubyte{sfx}", labels, gz=gz)
    return images, labels


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_raw_and_gz(tmp_path, gz):
    images, labels = make_mnist_folder(tmp_path, gz=gz)
    ds = load_mnist(tmp_path)
    assert len(ds) == 12 and ds.input_shape == (784,) and ds.value_range == 255.0
    np.testing.assert_array_equal(ds.labels, labels)
    np.testing.assert_array_equal(ds.images, images)
    np.testing.assert_array_equal(ds.inputs[3], images[3].reshape(-1).astype(np.float32))
    fm = load_fashion_mnist(tmp_path)
    assert fm.class_names[9] == "Ankle boot" and fm.name == "fashion-mnist"


def test_idx_errors(tmp_path):
    with pytest.raises(DataError, match="IDX file not found"):
        read_idx(tmp_path / "nope")
    write_idx(tmp_path / "bad", np.zeros((3, 2, 2)), magic=0x00000903)
    with pytest.raises(DataError, match="magic number 0x00000903"):
        read_idx(tmp_path / "bad")
    write_idx(tmp_path / "lab", np.zeros(3))
    with pytest.raises(DataError, match="magic number 0x00000801, expected 0x00000803"):
        read_idx(tmp_path / "lab", expect_magic=0x803)
    write_idx(tmp_path / "t", np.zeros((5, 4, 4)))
    raw = (tmp_path / "t").read_bytes()
    (tmp_path / "t").write_bytes(raw[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "t")


def test_mnist_folder_errors(tmp_path):
    with pytest.raises(DataError, match="folder not found"):
        load_mnist(tmp_path / "missing")
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_mnist(tmp_path)
    rng = np.random.default_rng(1)
    write_idx(tmp_path / "train-images-idx3-ubyte", rng.integers(0, 255, (5, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(4))
    with pytest.raises(DataError, match="5 images but 4 labels"):
        load_mnist(tmp_path)


def _write_pickle(path, obj):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)


def make_cifar10_folder(folder, per_batch=4):
    rng = np.random.default_rng(2)
    all_x, all_y = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        y = [(per_batch * (i - 1) + j) % 10 for j in range(per_batch)]
        _write_pickle(folder / f"data_batch_{i}", {b"data": x, b"labels": y, b"batch_label": b"x"})
        all_x.append(x)
        all_y += y
    _write_pickle(folder / "batches.meta", {b"label_names": [f"c{i}".encode() for i in range(10)]})
    return np.concatenate(all_x), np.array(all_y)


def test_cifar10_batches(tmp_path):
    x, y = make_cifar10_folder(tmp_path)
    ds = load_cifar10(tmp_path)
    assert len(ds) == 20 and ds.input_shape == (3, 32, 32) and ds.images.shape == (20, 32, 32, 3)
    np.testing.assert_array_equal(ds.labels, y)
    assert ds.class_names[3] == "c3"
    # channel-first input and channel-last image show the same pixel
    assert ds.inputs[0, 1, 2, 3] == ds.images[0, 2, 3, 1] == x[0, 1024 + 2 * 32 + 3]


def test_cifar100_fine_labels(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (200, 3072), dtype=np.uint8)
    fine = np.arange(200) % 100
    _write_pickle(tmp_path / "train", {b"data": x, b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()})
    _write_pickle(tmp_path / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)]})
    ds = load_cifar100(tmp_path)
    assert ds.num_classes == 100 and ds.class_names[42] == "f42"
    np.testing.assert_array_equal(ds.labels, fine)


def test_cifar_refuses_foreign_pickles_and_missing_batches(tmp_path):
    with pytest.raises(DataError, match="CIFAR batch not found"):
        load_cifar10(tmp_path)
    make_cifar10_folder(tmp_path)
    _write_pickle(tmp_path / "data_batch_2", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2], b"evil": Dataset})
    with pytest.raises(DataError, match="refusing to load"):
        load_cifar10(tmp_path)


def test_npz_and_arrays_and_tensors(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.random((30, 6)).astype(np.float32)
    y = np.arange(30) % 3
    np.savez(tmp_path / "d.npz", x=x, y=y, class_names=np.array(["a", "b", "c"]))
    ds = load_npz(tmp_path / "d.npz")
    assert ds.class_names == ("a", "b", "c") and ds.name == "d" and ds.value_range == 1.0
    np.testing.assert_array_equal(ds.inputs, x)
    ts = from_arrays(torch.from_numpy(x), torch.from_numpy(y))
    assert ts.fingerprint == from_arrays(x, y).fingerprint
    assert ts.images.dtype == np.uint8 and len(ts.images) == 30
    np.savez(tmp_path / "bad.npz", a=x)
    with pytest.raises(DataError, match="found keys \\['a'\\]"):
        load_npz(tmp_path / "bad.npz")
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=[0])
    with pytest.raises(DataError, match="without pickle"):
        load_npz(tmp_path / "obj.npz")


def test_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(5)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    ds = load_image_folder(tmp_path)
    assert ds.class_names == ("cat", "dog") and len(ds) == 6
    assert ds.input_shape == (3, 10, 12) and ds.images.shape == (6, 10, 12, 3)
    np.testing.assert_array_equal(ds.labels, [0, 0, 0, 1, 1, 1])
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="'empty' holds no images"):
        load_image_folder(tmp_path)


def test_dataset_validation_errors():
    x = np.zeros((4, 3), np.float32)
    img = np.zeros((4, 2, 2), np.uint8)
    with pytest.raises(DataError, match="4 inputs but 3 labels"):
        Dataset(x, np.array([0, 1, 0]), img, ("a", "b"), "t")
    with pytest.raises(DataError, match="label 5 at index 2 is outside 0..1"):
        Dataset(x, np.array([0, 1, 5, 0]), img, ("a", "b"), "t")
    with pytest.raises(DataError, match="class 2 \\(c\\) has no examples"):
        Dataset(x, np.array([0, 1, 1, 0]), img, ("a", "b", "c"), "t")
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(DataError, match="NaN or infinite values in 1 examples \\(first at index 2\\)"):
        Dataset(bad, np.array([0, 1, 1, 0]), img, ("a", "b"), "t")
    bad[2, 1] = np.inf
    with pytest.raises(DataError, match="NaN or infinite"):
        from_arrays(bad, [0, 1, 1, 0])
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        load_dataset("imagenet")
    with pytest.raises(DataError, match="needs a path"):
        load_dataset("mnist")


def test_digits_default_and_fingerprint():
    ds = load_digits()
    assert len(ds) == 1797 and ds.num_classes == 10 and ds.value_range == 16.0
    assert ds.fingerprint == load_digits().fingerprint
    assert ds.fingerprint != ds.with_labels(np.roll(ds.labels, 1)).fingerprint


def test_label_noise_flips_exact_fraction_to_other_classes():
    ds = load_digits()
    noisy, mask = inject_label_noise(ds, 0.1, seed=3)
    assert mask.dtype == bool and mask.sum() == round(0.1 * len(ds))
    assert np.all(noisy.labels[mask] != ds.labels[mask])
    assert np.all(noisy.labels[~mask] == ds.labels[~mask])
    again, mask2 = inject_label_noise(ds, 0.1, seed=3)
    np.testing.assert_array_equal(again.labels, noisy.labels)
    np.testing.assert_array_equal(mask, mask2)
    assert not np.array_equal(inject_label_noise(ds, 0.1, seed=4)[1], mask)
    with pytest.raises(DataError, match="fraction must be in \\[0, 1\\], got 1.5"):
        inject_label_noise(ds, 1.5)
