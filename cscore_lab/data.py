"""Labeled data sets and the loaders that read them from their real on-disk formats.

A :class:`Dataset` holds what both training and display need: float32 model inputs
(in the data's own units; the recipe decides how to scale them), int64 labels,
uint8 images for galleries, class names, a name and a content fingerprint that the
run store uses to refuse mixing results from different data.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle  # only to read CIFAR's official python batches, see _read_cifar_batch
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "Dataset",
    "DATASETS",
    "load_dataset",
    "load_digits",
    "load_mnist",
    "load_fashion_mnist",
    "load_cifar10",
    "load_cifar100",
    "load_npz",
    "from_arrays",
    "load_image_folder",
    "inject_label_noise",
    "DataError",
]


class DataError(ValueError):
    """Raised when data on disk or in memory is not what a loader expects."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labeled data set, validated on construction.

    Parameters
    ----------
    inputs : float32 array [N, ...]
        Model inputs in the data's own units (pixels 0..``value_range``).
    labels : int64 array [N]
        Class indices in ``0 .. len(class_names) - 1``; every class has an example.
    images : uint8 array [N, H, W] or [N, H, W, 3]
        Pictures for display.
    class_names : tuple of str
    name : str
    value_range : float
        The largest possible input value (16 for digits, 255 for 8-bit images);
        the recipe's ``input_scaling="range"`` divides by it.
    """

    inputs: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    class_names: tuple[str, ...]
    name: str
    value_range: float = 1.0
    source: str = ""

    def __post_init__(self) -> None:
        inputs = np.ascontiguousarray(self.inputs, dtype=np.float32)
        labels = np.asarray(self.labels)
        if inputs.ndim < 2:
            raise DataError(f"{self.name}: inputs must have shape [N, ...] with N examples, got shape {inputs.shape}")
        n = inputs.shape[0]
        if n == 0:
            raise DataError(f"{self.name}: the data set is empty")
        if labels.ndim != 1:
            raise DataError(f"{self.name}: labels must be 1-D, got shape {labels.shape}")
        if labels.shape[0] != n:
            raise DataError(
                f"{self.name}: {n} inputs but {labels.shape[0]} labels; they must have the same length"
            )
        if not np.issubdtype(labels.dtype, np.integer):
            if np.issubdtype(labels.dtype, np.floating) and np.all(np.isfinite(labels)) and np.all(labels == np.round(labels)):
                labels = labels.astype(np.int64)
            else:
                raise DataError(f"{self.name}: labels must be integers, got dtype {labels.dtype}")
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        k = len(self.class_names)
        if k < 2:
            raise DataError(f"{self.name}: need at least 2 classes, got {k}")
        bad = np.flatnonzero((labels < 0) | (labels >= k))
        if bad.size:
            raise DataError(
                f"{self.name}: label {labels[bad[0]]} at index {bad[0]} is outside 0..{k - 1} "
                f"({bad.size} labels out of range; {k} class names given)"
            )
        counts = np.bincount(labels, minlength=k)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            names = ", ".join(f"{i} ({self.class_names[i]})" for i in empty[:5])
            which = f"class {names} has" if empty.size == 1 else f"classes {names}{' ...' if empty.size > 5 else ''} have"
            raise DataError(f"{self.name}: {which} no examples; every class needs at least one")
        finite = np.isfinite(inputs.reshape(n, -1)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DataError(
                f"{self.name}: inputs contain NaN or infinite values in {bad.size} examples (first at index {bad[0]})"
            )
        images = np.asarray(self.images)
        if images.shape[0] != n:
            raise DataError(f"{self.name}: {n} inputs but {images.shape[0]} display images")
        if images.dtype != np.uint8:
            raise DataError(f"{self.name}: display images must be uint8, got {images.dtype}")
        if not (np.isfinite(self.value_range) and self.value_range > 0):
            raise DataError(f"{self.name}: value_range must be positive and finite, got {self.value_range}")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "images", np.ascontiguousarray(images))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, examples={len(self)}, input_shape={self.input_shape}, "
            f"classes={self.num_classes}, fingerprint={self.fingerprint[:12]})"
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.inputs.shape[1:])

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=self.num_classes)

    @cached_property
    def fingerprint(self) -> str:
        """SHA-256 of the inputs, labels and their shapes: equal data, equal fingerprint."""
        h = hashlib.sha256()
        h.update(repr((self.inputs.shape, self.num_classes)).encode())
        h.update(self.inputs.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()

    def with_labels(self, labels: np.ndarray, *, name: str | None = None) -> "Dataset":
        """The same examples with other labels (e.g. after label-noise injection)."""
        return Dataset(self.inputs, labels, self.images, self.class_names, name or self.name, self.value_range, self.source)

    def subset(self, index: np.ndarray | Sequence[int], *, name: str | None = None) -> "Dataset":
        """The examples at ``index``, in that order."""
        index = np.asarray(index)
        return Dataset(
            self.inputs[index], self.labels[index], self.images[index], self.class_names,
            name or f"{self.name}[{len(index)}]", self.value_range, self.source,
        )


# --------------------------------------------------------------------------- loaders


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
    )


def _open_maybe_gz(path: Path):
    with open(path, "rb") as fh:
        head = fh.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def read_idx(path: str | os.PathLike, *, expect_magic: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip), as used by MNIST and Fashion-MNIST.

    Raises :class:`DataError` for a missing file, a wrong magic number or a truncated body.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file not found: {path}")
    try:
        with _open_maybe_gz(path) as fh:
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
            expected = int(np.prod(dims))
            body = fh.read(expected + 1)
    except (OSError, EOFError) as exc:  # corrupt gzip stream
        raise DataError(f"{path}: cannot read ({exc})") from exc
    if len(body) < expected:
        raise DataError(f"{path}: truncated: header promises {expected} bytes of data for shape {dims}, found {len(body)}")
    return np.frombuffer(body[:expected], dtype=np.uint8).reshape(dims)


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
    (``t10k-…`` for ``split="test"``), as distributed.
    """
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if kind not in ("mnist", "fashion-mnist"):
        raise DataError(f"kind must be 'mnist' or 'fashion-mnist', got {kind!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{kind} folder not found: {folder}")
    prefix = "train" if split == "train" else "t10k"
    images = read_idx(_find_file(folder, [f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"]), expect_magic=0x803)
    labels = read_idx(_find_file(folder, [f"{prefix}-labels-idx1-ubyte", f"{prefix}-labels.idx1-ubyte"]), expect_magic=0x801)
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{folder}: {images.shape[0]} images but {labels.shape[0]} labels")
    names = FASHION_CLASSES if kind == "fashion-mnist" else tuple(str(i) for i in range(10))
    return Dataset(
        inputs=images.reshape(images.shape[0], -1).astype(np.float32),
        labels=labels.astype(np.int64),
        images=images,
        class_names=names,
        name=kind if split == "train" else f"{kind}-test",
        value_range=255.0,
        source=str(folder),
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
    if not path.is_file():
        raise DataError(f"CIFAR batch not found: {path}")
    try:
        with open(path, "rb") as fh:
            d = _CifarUnpickler(fh, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise DataError(f"{path}: not a CIFAR python batch ({exc})") from exc
    if not isinstance(d, dict):
        raise DataError(f"{path}: not a CIFAR python batch (top level is {type(d).__name__})")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _cifar_from_batches(batches: list[dict], label_key: str, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    data, labels = [], []
    for b in batches:
        if "data" not in b or label_key not in b:
            raise DataError(f"{folder}: batch lacks 'data' or '{label_key}' entries")
        x = np.asarray(b["data"], dtype=np.uint8)
        if x.ndim != 2 or x.shape[1] != 3072:
            raise DataError(f"{folder}: batch data has shape {x.shape}, expected [n, 3072]")
        y = np.asarray(b[label_key], dtype=np.int64)
        if y.shape[0] != x.shape[0]:
            raise DataError(f"{folder}: batch has {x.shape[0]} images but {y.shape[0]} labels")
        data.append(x)
        labels.append(y)
    return np.concatenate(data), np.concatenate(labels)


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
    )


def _decode_names(raw: Sequence[Any]) -> list[str]:
    return [n.decode() if isinstance(n, bytes) else str(n) for n in raw]


def load_cifar10(path: str | os.PathLike, *, split: str = "train") -> Dataset:
    """CIFAR-10 from the official python batches folder (``cifar-10-batches-py``)."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 folder not found: {folder}")
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    x, y = _cifar_from_batches([_read_cifar_batch(folder / f) for f in files], "labels", folder)
    meta = folder / "batches.meta"
    names = _decode_names(_read_cifar_batch(meta)["label_names"]) if meta.is_file() else [str(i) for i in range(10)]
    return _cifar_dataset(x, y, names, "cifar10" if split == "train" else "cifar10-test", folder)


def load_cifar100(path: str | os.PathLike, *, split: str = "train") -> Dataset:
    """CIFAR-100 (fine labels) from the official python folder (``cifar-100-python``)."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"CIFAR-100 folder not found: {folder}")
    fname = "train" if split == "train" else "test"
    x, y = _cifar_from_batches([_read_cifar_batch(folder / fname)], "fine_labels", folder)
    meta = folder / "meta"
    names = _decode_names(_read_cifar_batch(meta)["fine_label_names"]) if meta.is_file() else [str(i) for i in range(100)]
    return _cifar_dataset(x, y, names, "cifar100" if split == "train" else "cifar100-test", folder)


def _images_for_display(inputs: np.ndarray, value_range: float) -> np.ndarray:
    """uint8 pictures from inputs: square greyscale for flat vectors, HWC for CHW colour."""
    n = inputs.shape[0]
    x = inputs
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        if side * side == x.shape[1]:
            x = x.reshape(n, side, side)
        else:
            x = x.reshape(n, 1, -1)
    elif x.ndim == 4 and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
        if x.shape[-1] == 1:
            x = x[..., 0]
    elif x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    lo, hi = (0.0, value_range)
    scaled = np.clip((x.astype(np.float64) - lo) / (hi - lo), 0, 1) * 255
    return np.round(scaled).astype(np.uint8)


def from_arrays(
    inputs: Any,
    labels: Any,
    *,
    class_names: Sequence[str] | None = None,
    images: Any | None = None,
    name: str = "arrays",
    value_range: float | None = None,
) -> Dataset:
    """A Dataset from in-memory NumPy arrays or torch tensors.

    ``value_range`` defaults to 255 when the inputs are uint8 or exceed 1, else 1.
    """
    x = _to_numpy(inputs, "inputs")
    y = _to_numpy(labels, "labels")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim < 2:
        raise DataError(f"{name}: inputs must have shape [N, ...], got {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{name}: labels must be 1-D, got shape {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels; they must have the same length")
    if class_names is None:
        if y.size and np.issubdtype(y.dtype, np.number) and np.all(np.isfinite(y)):
            k = int(np.max(y)) + 1 if y.size else 0
        else:
            raise DataError(f"{name}: labels must be integers, got dtype {y.dtype}")
        class_names = [str(i) for i in range(max(k, 2))]
    if value_range is None:
        finite = x[np.isfinite(x)] if np.issubdtype(x.dtype, np.floating) else x
        value_range = 255.0 if x.dtype == np.uint8 or (finite.size and float(np.max(finite)) > 1.0) else 1.0
    xf = x.astype(np.float32)
    if images is None:
        safe = np.nan_to_num(xf) if not np.all(np.isfinite(xf)) else xf
        images = _images_for_display(safe, value_range)
    else:
        images = _to_numpy(images, "images").astype(np.uint8)
    return Dataset(xf, y, images, tuple(class_names), name, float(value_range), "arrays")


def _to_numpy(a: Any, what: str) -> np.ndarray:
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    arr = np.asarray(a)
    if arr.dtype == object:
        raise DataError(f"{what} must be a numeric array, got dtype object")
    return arr


def load_npz(path: str | os.PathLike, *, inputs_key: str | None = None, labels_key: str | None = None) -> Dataset:
    """A Dataset from an ``.npz`` holding inputs (key ``x``/``inputs``/``images``/``data``) and labels
    (``y``/``labels``/``targets``), optionally ``class_names`` and ``images``. Loaded without pickle."""
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
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz without pickle ({exc})") from exc
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
    )


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class DatasetSpec:
    """How to load a named data set: a loader and whether it needs a path."""

    name: str
    loader: Callable[..., Dataset]
    needs_path: bool
    description: str


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("digits", lambda path=None: load_digits(), False, "scikit-learn 8x8 digits, 1,797 examples (bundled)"),
        DatasetSpec("mnist", load_mnist, True, "MNIST IDX files folder (raw or .gz)"),
        DatasetSpec("fashion-mnist", load_fashion_mnist, True, "Fashion-MNIST IDX files folder"),
        DatasetSpec("cifar10", load_cifar10, True, "CIFAR-10 python batches folder (cifar-10-batches-py)"),
        DatasetSpec("cifar100", load_cifar100, True, "CIFAR-100 python folder (cifar-100-python), fine labels"),
        DatasetSpec("npz", load_npz, True, ".npz file with inputs and labels arrays"),
        DatasetSpec("folder", load_image_folder, True, "folder of images, one subfolder per class"),
    ]
}


def load_dataset(name: str, path: str | os.PathLike | None = None) -> Dataset:
    """Load a data set by name (see :data:`DATASETS`); ``path`` is required for all but ``digits``."""
    spec = DATASETS.get(name)
    if spec is None:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    if spec.needs_path and path is None:
        raise DataError(f"dataset {name!r} needs a path (--data PATH): {spec.description}")
    return spec.loader(path) if spec.needs_path else spec.loader()


# --------------------------------------------------------------------------- label noise


def inject_label_noise(dataset: Dataset, fraction: float, *, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """Flip ``round(fraction * N)`` labels, chosen uniformly, each to a uniformly chosen *other* class.

    Returns the noisy dataset (named ``<name>-noise<fraction>``) and the boolean mask of flipped examples.
    """
    if not (isinstance(fraction, (int, float)) and 0.0 <= float(fraction) <= 1.0):
        raise DataError(f"label-noise fraction must be in [0, 1], got {fraction!r}")
    n, k = len(dataset), dataset.num_classes
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x4E01]))
    n_flip = int(round(float(fraction) * n))
    idx = rng.choice(n, size=n_flip, replace=False)
    labels = dataset.labels.copy()
    shift = rng.integers(1, k, size=n_flip)
    labels[idx] = (labels[idx] + shift) % k
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    # Dataset validates again: a tiny set could lose a class, which is reported clearly.
    noisy = Dataset(dataset.inputs, labels, dataset.images, dataset.class_names,
                    f"{dataset.name}-noise{float(fraction):g}", dataset.value_range, dataset.source)
    return noisy, mask
