"""Loaders of data sets in their real on-disk formats, each verified as it is read.

scikit-learn's digits (bundled), MNIST / Fashion-MNIST IDX files (raw or .gz), the CIFAR-10/100
python batches, ``.npz`` arrays and folders of images. Nothing read is trusted: compressed files
are read to their end so that gzip checks their CRC and length, headers are checked against the
real file size before anything is allocated, CIFAR's pickles are read by an unpickler that builds
only arrays and lists, and every error is a :class:`~cscore_lab.dataset.DataError` naming the file.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle  # only to read CIFAR's official python batches, see _read_cifar_batch
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .dataset import MAX_CLASSES, DataError, Dataset, from_arrays

__all__ = ["load_digits", "read_idx", "load_mnist", "load_fashion_mnist", "load_cifar10", "load_cifar100", "load_npz",
           "load_image_folder", "FASHION_CLASSES", "IMAGE_SUFFIXES"]

#: Compressed data cannot expand more than this (deflate's limit is about 1032:1).
_MAX_DEFLATE_RATIO = 1100


def load_digits() -> Dataset:
    """scikit-learn's 8x8 handwritten digits (1,797 examples, 10 classes); ships with scikit-learn."""
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    images = np.round(bunch.images / 16.0 * 255.0).astype(np.uint8)
    return Dataset(
        inputs=bunch.data.astype(np.float32),
        labels=bunch.target.astype(np.int64),
        images=images,
        class_names=tuple(str(i) for i in range(10)),
        name="digits",
        value_range=16.0,
        source="sklearn.datasets.load_digits",
        scaling_note="value range 16: the digits' pixels count 4x4 blocks (0..16)",
    )


def read_idx(path: str | os.PathLike, *, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip), as used by MNIST and Fashion-MNIST, and verify it.

    The header's claimed shape is checked against the real file size before anything is
    allocated (for gzip, against what the compressed size can hold, then while reading in
    bounded chunks), the whole file is read so that gzip verifies its CRC and length, and
    data beyond what the header claims is an error too.

    Raises
    ------
    DataError
        For a missing file, a wrong magic number, a header that does not match the file's
        size, a truncated, altered or over-long body; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path}")
    compressed = False
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            compressed = fh.read(2) == b"\x1f\x8b"
        with (gzip.open(path, "rb") if compressed else open(path, "rb")) as fh:
            return _read_idx_stream(fh, path, size, compressed, expect_magic)
    except (OSError, EOFError, zlib.error) as exc:  # corrupt gzip stream, CRC or length mismatch
        what = "corrupt or truncated gzip file" if compressed else "cannot read"
        raise DataError(f"{path}: {what} ({type(exc).__name__}: {exc})") from None


def _read_idx_stream(fh: Any, path: Path, size: int, compressed: bool, expect_magic: int | None) -> np.ndarray:
    header = fh.read(4)
    if len(header) < 4:
        raise DataError(f"{path}: file is too short to be IDX ({len(header)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", header)
    magic = struct.unpack(">I", header)[0]
    if zero != 0 or dtype_code != 0x08 or ndim == 0:
        raise DataError(
            f"{path}: magic number 0x{magic:08x} is not an unsigned-byte IDX file "
            f"(expected 0x00000801 for labels or 0x00000803 for images)"
        )
    if expect_magic is not None and magic != expect_magic:
        raise DataError(f"{path}: magic number 0x{magic:08x}, expected 0x{expect_magic:08x}")
    dims_raw = fh.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    dims = struct.unpack(f">{ndim}I", dims_raw)
    expected = math.prod(dims)  # a Python int: no overflow for 2**32 x 2**32
    head = 4 + 4 * ndim
    claim = f"header claims shape {tuple(dims)}, i.e. {expected:,} bytes of data"
    if not compressed:
        body = size - head
        if body < expected:
            raise DataError(f"{path}: truncated: {claim}, but the file holds {body:,} bytes after the header")
        if body > expected:
            raise DataError(f"{path}: {claim}, but the file holds {body:,} bytes after the header "
                            f"({body - expected:,} bytes too many): not a well-formed IDX file")
        data = fh.read(expected)
        if len(data) != expected:
            raise DataError(f"{path}: truncated while reading: {claim}, read {len(data):,}")
        return np.frombuffer(data, dtype=np.uint8).reshape(dims)
    if expected + head > _MAX_DEFLATE_RATIO * size + 1024:
        raise DataError(f"{path}: {claim}, but a gzip file of {size:,} bytes cannot hold that much "
                        f"(at most ~{_MAX_DEFLATE_RATIO * size:,}): the header is corrupt")
    buf = bytearray()
    chunk = 1 << 20
    while True:  # to the end of the stream, so gzip checks its CRC and length
        part = fh.read(chunk)
        if not part:
            break
        buf += part
        if len(buf) > expected:
            raise DataError(f"{path}: {claim}, but the decompressed file holds more: not a well-formed IDX file")
    if len(buf) < expected:
        raise DataError(f"{path}: truncated: {claim}, but the decompressed file holds {len(buf):,}")
    return np.frombuffer(buf, dtype=np.uint8).reshape(dims)


def _find_file(folder: Path, stems: Sequence[str]) -> Path:
    for stem in stems:
        for cand in (folder / stem, folder / f"{stem}.gz"):
            if cand.is_file():
                return cand
    raise DataError(f"none of {', '.join(stems)} (optionally .gz) found in {folder}")


FASHION_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)


def load_mnist(path: str | os.PathLike, *, split: str = "train", kind: str = "mnist") -> Dataset:
    """MNIST (or Fashion-MNIST, ``kind="fashion-mnist"``) from a folder of IDX files, raw or .gz.

    The folder holds ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
    (``t10k-…`` for ``split="test"``), as distributed. Every file is verified (see :func:`read_idx`).
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if kind not in ("mnist", "fashion-mnist"):
        raise DataError(f"kind must be 'mnist' or 'fashion-mnist', got {kind!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{kind} folder not found: {folder}")
    prefix = "train" if split == "train" else "t10k"
    image_file = _find_file(folder, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"])
    label_file = _find_file(folder, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"])
    images = read_idx(image_file, expect_magic=0x803)
    labels = read_idx(label_file, expect_magic=0x801)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        i = int(np.argmax(labels))
        raise DataError(f"{label_file}: label {labels[i]} at index {i}; {kind} labels are 0..9")
    names = FASHION_CLASSES if kind == "fashion-mnist" else tuple(str(i) for i in range(10))
    return Dataset(
        inputs=images.reshape(images.shape[0], -1).astype(np.float32),
        labels=labels.astype(np.int64),
        images=images,
        class_names=names,
        name=kind if split == "train" else f"{kind}-test",
        value_range=255.0,
        source=str(folder),
        scaling_note="value range 255: 8-bit pixels (IDX unsigned bytes)",
    )


def load_fashion_mnist(path: str | os.PathLike, *, split: str = "train") -> Dataset:
    """Fashion-MNIST from a folder of IDX files (same layout as MNIST)."""
    return load_mnist(path, split=split, kind="fashion-mnist")


class _CifarUnpickler(pickle.Unpickler):
    """Unpickler that only builds plain containers and NumPy arrays.

    CIFAR's official python batches are pickles; this refuses any other class so a
    malicious file cannot run code.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to load {module}.{name} from a CIFAR batch: only arrays and lists are expected")


def _read_cifar_batch(path: Path) -> dict:
    """One official CIFAR python batch as a dict with str keys; a truncated or garbage file is a DataError."""
    if not path.is_file():
        raise DataError(f"CIFAR batch not found: {path}")
    try:
        raw = path.read_bytes()  # then unpickle from memory: a garbage length field cannot make us allocate more
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    try:
        d = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt pickle can raise almost anything; all mean "not a batch"
        raise DataError(f"{path}: not a CIFAR python batch: truncated or corrupt ({type(exc).__name__}: {exc})") from None
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a CIFAR python batch (top level is {type(d).__name__}, expected a dict)")
    return {(k.decode(errors="replace") if isinstance(k, bytes) else str(k)): v for k, v in d.items()}


def _cifar_arrays(batch: dict, path: Path, label_key: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    if "data" not in batch or label_key not in batch:
        raise DataError(f"{path}: a CIFAR batch needs 'data' and '{label_key}' entries; found {sorted(batch)}")
    try:
        x = np.asarray(batch["data"])
        y = np.asarray(batch[label_key])
    except (ValueError, TypeError) as exc:
        raise DataError(f"{path}: batch entries are not arrays ({exc})") from None
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
        raise DataError(f"{path}: batch data has shape {x.shape} and dtype {x.dtype}, expected uint8 [n, 3072]")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"{path}: '{label_key}' has shape {y.shape} and dtype {y.dtype}, expected a list of integers")
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{path}: batch has {x.shape[0]} images but {y.shape[0]} labels")
    bad = np.flatnonzero((y < 0) | (y >= k))
    if bad.size:
        raise DataError(f"{path}: label {y[bad[0]]} at index {bad[0]} is outside 0..{k - 1}")
    return x, y.astype(np.int64)


def _cifar_names(meta: Path, key: str, k: int) -> list[str]:
    if not meta.is_file():
        return [str(i) for i in range(k)]
    d = _read_cifar_batch(meta)
    if key not in d:
        raise DataError(f"{meta}: no '{key}' entry; found {sorted(d)}")
    try:
        names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in d[key]]
    except TypeError:
        raise DataError(f"{meta}: '{key}' is not a list of names") from None
    if len(names) != k:
        raise DataError(f"{meta}: {len(names)} class names in '{key}', expected {k}")
    return names


def _cifar_dataset(x: np.ndarray, y: np.ndarray, names: Sequence[str], name: str, folder: Path) -> Dataset:
    chw = x.reshape(-1, 3, 32, 32)
    return Dataset(
        inputs=chw.astype(np.float32),
        labels=y,
        images=np.ascontiguousarray(chw.transpose(0, 2, 3, 1)),
        class_names=tuple(names),
        name=name,
        value_range=255.0,
        source=str(folder),
        scaling_note="value range 255: 8-bit pixels (CIFAR batches)",
    )


def _load_cifar(path: str | os.PathLike, split: str, name: str, title: str, meta: tuple[str, str], label_key: str,
                k: int, files: Sequence[str]) -> Dataset:
    """One of the official python releases: class names from ``meta`` (file, key), the ``files`` of ``split``."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{title} folder not found: {folder}")
    names = _cifar_names(folder / meta[0], meta[1], k)
    parts = [_cifar_arrays(_read_cifar_batch(folder / f), folder / f, label_key, k) for f in files]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return _cifar_dataset(x, y, names, name if split == "train" else f"{name}-test", folder)


def load_cifar10(path: str | os.PathLike, *, split: str = "train") -> Dataset:
    """CIFAR-10 from the official python batches folder (``cifar-10-batches-py``)."""
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    return _load_cifar(path, split, "cifar10", "CIFAR-10", ("batches.meta", "label_names"), "labels", 10, files)


def load_cifar100(path: str | os.PathLike, *, split: str = "train") -> Dataset:
    """CIFAR-100 (fine labels) from the official python folder (``cifar-100-python``)."""
    files = ["train" if split == "train" else "test"]
    return _load_cifar(path, split, "cifar100", "CIFAR-100", ("meta", "fine_label_names"), "fine_labels", 100, files)


def load_npz(path: str | os.PathLike, *, inputs_key: str | None = None, labels_key: str | None = None) -> Dataset:
    """A Dataset from an ``.npz`` holding inputs (key ``x``/``inputs``/``images``/``data``) and labels
    (``y``/``labels``/``targets``), optionally ``class_names`` and ``images``. Loaded without pickle;
    a truncated or corrupt file is a :class:`DataError` naming it. The value range is inferred as in
    :func:`from_arrays`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f".npz file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            ik = inputs_key or next((k for k in ("x", "inputs", "data", "images") if k in keys), None)
            lk = labels_key or next((k for k in ("y", "labels", "targets", "label") if k in keys), None)
            if ik is None or ik not in keys or lk is None or lk not in keys:
                raise DataError(
                    f"{path}: need an inputs array (x, inputs, data or images) and a labels array "
                    f"(y, labels or targets); found keys {sorted(keys)}"
                )
            x = z[ik]
            y = z[lk]
            names = [str(s) for s in z["class_names"]] if "class_names" in keys else None
            images = z["images"] if ("images" in keys and ik != "images") else None
    except DataError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as exc:
        raise DataError(f"{path}: not a readable .npz without pickle ({type(exc).__name__}: {exc})") from None
    return from_arrays(x, y, class_names=names, images=images, name=path.stem)


IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_image_folder(path: str | os.PathLike, *, size: tuple[int, int] | None = None, grayscale: bool | None = None) -> Dataset:
    """A folder with one subfolder per class, each holding image files (read with Pillow).

    Images are resized to ``size`` (default: the first image's size) and converted to
    greyscale when all are greyscale (or as ``grayscale`` says).
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(path)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root}: expected one subfolder per class (at least 2), found {len(classes)}")
    if len(classes) > MAX_CLASSES:
        raise DataError(f"{root}: {len(classes)} class folders; at most MAX_CLASSES = {MAX_CLASSES} are supported")
    files: list[tuple[Path, int]] = []
    for ci, c in enumerate(classes):
        cf = sorted(p for p in (root / c).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not cf:
            raise DataError(f"{root}: class folder {c!r} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += [(p, ci) for p in cf]
    pics = []
    for p, _ in files:
        try:
            with Image.open(p) as im:
                im.load()
                pics.append(im.copy())
        except (UnidentifiedImageError, OSError) as exc:
            raise DataError(f"cannot read image {p}: {exc}") from exc
    if grayscale is None:
        grayscale = all(im.mode in ("L", "1", "I", "I;16", "LA") for im in pics)
    mode = "L" if grayscale else "RGB"
    size = size or pics[0].size
    arr = np.stack([np.asarray(im.convert(mode).resize(size)) for im in pics]).astype(np.uint8)
    inputs = arr.reshape(len(arr), -1) if grayscale else arr.transpose(0, 3, 1, 2)
    return Dataset(
        inputs=inputs.astype(np.float32),
        labels=np.array([ci for _, ci in files], dtype=np.int64),
        images=arr,
        class_names=tuple(classes),
        name=root.name,
        value_range=255.0,
        source=str(root),
        scaling_note=f"value range 255: 8-bit {mode} pixels (Pillow)",
    )
