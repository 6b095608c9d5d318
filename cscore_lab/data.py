"""Labeled data sets and the loaders that read them from their real on-disk formats.

A :class:`Dataset` holds what both training and display need: float32 model inputs
(in the data's own units; the recipe decides how to scale them), int64 labels,
uint8 images for galleries, class names, a name and a content fingerprint that the
run store uses to refuse mixing results from different data.

Nothing read is trusted: compressed files are read to their end so that gzip checks
their CRC and length, headers are checked against the real file size before anything
is allocated, and arrays of strings, objects or complex numbers, or labels that would
make an absurd number of classes, are refused with a message naming what was found.

Data enters from files (:func:`load_dataset` and the ``load_*`` loaders), from arrays
(:func:`from_arrays`), from a ``torch.utils.data.Dataset`` (:func:`from_torch`) or from a
Hugging Face ``datasets.Dataset`` (:func:`from_huggingface`). Wherever the value range of
the inputs is not known from the format, it is inferred (:func:`infer_value_range`) and
the rule that chose it is recorded in ``Dataset.scaling_note``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import os
import pickle  # only to read CIFAR's official python batches, see _read_cifar_batch
import struct
import zipfile
import zlib
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence

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
    "from_torch",
    "from_huggingface",
    "load_image_folder",
    "inject_label_noise",
    "infer_value_range",
    "InferredRange",
    "read_idx",
    "DataError",
    "MAX_CLASSES",
    "MAX_EXAMPLES",
    "RANGE_LADDER",
]

#: The most classes a data set may have. Labels are class indices ``0 .. K-1``; a label
#: beyond this (say 10⁹, which would mean 10⁹ class names and per-class tables of that size)
#: is refused at once. ImageNet-21k has about 21,800 classes.
MAX_CLASSES = 100_000

#: The most examples :func:`from_torch` / :func:`from_huggingface` will read (a broken
#: ``__len__`` must not make us allocate terabytes). ImageNet-21k has about 14 million.
MAX_EXAMPLES = 100_000_000

#: Candidate value ranges for non-negative, integer-valued inputs: 1 (binary), 16 (4-bit,
#: scikit-learn's digits), 255 (8-bit), 1023 and 4095 (10- and 12-bit sensors), 65535 (16-bit).
RANGE_LADDER: tuple[float, ...] = (1.0, 16.0, 255.0, 1023.0, 4095.0, 65535.0)

#: Compressed data cannot expand more than this (deflate's limit is about 1032:1).
_MAX_DEFLATE_RATIO = 1100

SCALINGS = ("range", "standardize")


class DataError(ValueError):
    """Raised when data on disk or in memory is not what a loader expects."""


# --------------------------------------------------------------------------- checks and value ranges


_KIND_NAMES = {"U": "strings", "S": "byte strings", "O": "Python objects", "c": "complex numbers",
               "V": "structured records", "M": "dates", "m": "time deltas"}


def _check_real(arr: np.ndarray, what: str) -> None:
    """Refuse arrays that are not real numbers (strings, objects, complex, records, dates)."""
    if arr.dtype.kind not in "biuf":
        kind = _KIND_NAMES.get(arr.dtype.kind, "not real numbers")
        raise DataError(f"{what} must be real numbers, got dtype {arr.dtype} ({kind})")


def _to_numpy(a: Any, what: str) -> np.ndarray:
    """``a`` (array, tensor, list) as a real-valued NumPy array; refuses strings, objects and complex."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):  # torch tensor, without importing torch
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:  # ragged lists
        raise DataError(f"{what} cannot be made into an array ({exc})") from None
    _check_real(arr, what)
    return arr


def _range_stats(x: np.ndarray) -> tuple[float, float, bool, bool]:
    """(min, max, all integer-valued, any non-finite) of ``x``, in bounded-memory chunks."""
    flat = x.reshape(-1)
    if flat.size == 0:
        return 0.0, 0.0, True, False
    if x.dtype.kind in "biu":
        return float(flat.min()), float(flat.max()), True, False
    lo, hi, integer, nonfinite = math.inf, -math.inf, True, False
    step = 1 << 22
    for start in range(0, flat.size, step):
        c = flat[start:start + step]
        ok = np.isfinite(c)
        if not ok.all():
            nonfinite = True
            c = c[ok]
            if c.size == 0:
                continue
        lo, hi = min(lo, float(c.min())), max(hi, float(c.max()))
        if integer:
            integer = bool(np.all(c == np.round(c)))
    if lo > hi:  # nothing finite
        return 0.0, 0.0, True, nonfinite
    return lo, hi, integer, nonfinite


class InferredRange(NamedTuple):
    """What :func:`infer_value_range` chose, and why."""

    value_range: float  #: the largest input value the data are taken to have
    scaling: str  #: "range" (pixel-like intensities: divide by value_range) or "standardize"
    note: str  #: one line saying which rule chose it, for summaries


def infer_value_range(inputs: Any) -> InferredRange:
    """Infer the value range of ``inputs`` and whether they should be scaled by it or standardized.

    The rule, in order:

    1. ``bool`` inputs: range 1; ``uint8`` inputs: range 255 (8-bit pixels).
    2. Inputs with negative values are not pixel intensities (standardized columns,
       embeddings): ``scaling="standardize"``, and the range is ``max |x|``.
    3. Non-negative, integer-valued inputs: the smallest of :data:`RANGE_LADDER`
       (1, 16, 255, 1023, 4095, 65535) that bounds them, so scikit-learn's digits (0..16)
       get 16 and 8-bit pixels held as floats get 255; above 65535 they are counts, not
       intensities: ``"standardize"``.
    4. Non-integer inputs in [0, 1]: range 1 (already scaled, e.g. torchvision's ``ToTensor``).
    5. Non-integer inputs above 1: not pixel intensities: ``"standardize"``, range = the maximum.

    Parameters
    ----------
    inputs : array-like of real numbers
        Non-finite values are ignored here (the :class:`Dataset` refuses them).

    Returns
    -------
    InferredRange
        ``(value_range, scaling, note)``; ``scaling`` is what the recipe's ``input_scaling``
        should be (``Dataset.suggested_scaling``).
    """
    x = _to_numpy(inputs, "inputs")
    if x.dtype == np.bool_:
        return InferredRange(1.0, "range", "value range 1: boolean inputs")
    if x.dtype == np.uint8:
        return InferredRange(255.0, "range", "value range 255: uint8 inputs (8-bit pixels)")
    lo, hi, integer, _ = _range_stats(x)
    if lo < 0:
        vr = max(abs(lo), abs(hi)) or 1.0
        return InferredRange(vr, "standardize",
                             f"inputs take negative values (min {lo:.4g}, max {hi:.4g}): not pixel intensities; "
                             f"value range set to max |x| = {vr:.4g}, standardize them (input_scaling='standardize')")
    if integer:
        for bound in RANGE_LADDER:
            if hi <= bound:
                return InferredRange(bound, "range",
                                     f"value range {bound:g} inferred: integer-valued inputs in {lo:g}..{hi:g}, "
                                     f"the smallest of {', '.join(f'{b:g}' for b in RANGE_LADDER)} that bounds them")
        return InferredRange(hi, "standardize",
                             f"integer-valued inputs up to {hi:g}, beyond 16-bit intensities: not pixel values; "
                             f"value range set to the maximum, standardize them (input_scaling='standardize')")
    if hi <= 1.0:
        return InferredRange(1.0, "range", f"value range 1 inferred: inputs in [{lo:.4g}, {hi:.4g}] within [0, 1]")
    return InferredRange(hi, "standardize",
                         f"non-integer inputs above 1 (max {hi:.4g}): not pixel intensities; value range set to the "
                         f"maximum, standardize them (input_scaling='standardize')")


# --------------------------------------------------------------------------- the Dataset


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labeled data set, validated on construction.

    Parameters
    ----------
    inputs : array [N, ...] of real numbers, stored as float32
        Model inputs in the data's own units (pixels 0..``value_range``). Greyscale images
        are flat vectors [N, H*W], colour images channel-first [N, C, H, W].
    labels : int64 array [N]
        Class indices in ``0 .. len(class_names) - 1``; every class has an example.
    images : uint8 array [N, H, W] or [N, H, W, 3]
        Pictures for display.
    class_names : tuple of str
        At most :data:`MAX_CLASSES`.
    name : str
    value_range : float, optional
        The largest possible input value (16 for digits, 255 for 8-bit images); the
        recipe's ``input_scaling="range"`` divides by it. When omitted it is inferred from
        the inputs by :func:`infer_value_range`.
    source : str
        Where the data came from (a folder, a loader), for summaries.
    scaling_note : str
        One line saying how ``value_range`` was chosen (filled in when empty). Not part of
        the fingerprint.
    suggested_scaling : {"range", "standardize"}, optional
        The recipe ``input_scaling`` that suits these inputs: ``"range"`` for pixel-like
        intensities, ``"standardize"`` for features that are not (negative values,
        non-integers above 1). Inferred with ``value_range``; ``"range"`` when
        ``value_range`` is given. Not part of the fingerprint.
    """

    inputs: np.ndarray
    labels: np.ndarray
    images: np.ndarray
    class_names: tuple[str, ...]
    name: str
    value_range: float | None = None
    source: str = ""
    scaling_note: str = ""
    suggested_scaling: str | None = None

    def __post_init__(self) -> None:
        raw = _to_numpy(self.inputs, f"{self.name}: inputs")
        labels = _to_numpy(self.labels, f"{self.name}: labels")
        if raw.ndim < 2:
            raise DataError(f"{self.name}: inputs must have shape [N, ...] with N examples, got shape {raw.shape}")
        n = raw.shape[0]
        if n == 0:
            raise DataError(f"{self.name}: the data set is empty")
        if labels.ndim != 1:
            raise DataError(f"{self.name}: labels must be 1-D, got shape {labels.shape}")
        if labels.shape[0] != n:
            raise DataError(
                f"{self.name}: {n} inputs but {labels.shape[0]} labels; they must have the same length"
            )
        labels = _integer_labels(labels, self.name)
        k = len(self.class_names)
        if k < 2:
            raise DataError(f"{self.name}: need at least 2 classes, got {k}")
        if k > MAX_CLASSES:
            raise DataError(f"{self.name}: {k} class names given; at most MAX_CLASSES = {MAX_CLASSES} are supported")
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
        scaling, note, value_range = self.suggested_scaling, self.scaling_note, self.value_range
        if value_range is None:
            inferred = infer_value_range(raw)
            value_range = inferred.value_range
            note = note or inferred.note
            scaling = scaling or inferred.scaling
        else:
            try:
                value_range = float(value_range)
            except (TypeError, ValueError):
                raise DataError(f"{self.name}: value_range must be a positive number, got {value_range!r}") from None
            note = note or f"value range {value_range:g} (given)"
            scaling = scaling or "range"
        if not (math.isfinite(value_range) and value_range > 0):
            raise DataError(f"{self.name}: value_range must be positive and finite, got {value_range}")
        if scaling not in SCALINGS:
            raise DataError(f"{self.name}: suggested_scaling must be one of {SCALINGS}, got {scaling!r}")
        inputs = np.ascontiguousarray(raw, dtype=np.float32)
        finite = np.isfinite(inputs.reshape(n, -1)).all(axis=1)
        if not finite.all():
            bad = np.flatnonzero(~finite)
            raise DataError(
                f"{self.name}: inputs contain NaN or infinite values in {bad.size} examples (first at index {bad[0]})"
                + (" (values beyond float32's range become infinite)" if raw.dtype == np.float64 else "")
            )
        images = _to_numpy(self.images, f"{self.name}: display images")
        if images.ndim < 1 or images.shape[0] != n:
            raise DataError(f"{self.name}: {n} inputs but {images.shape[0] if images.ndim else 0} display images")
        if images.dtype != np.uint8:
            raise DataError(f"{self.name}: display images must be uint8, got {images.dtype}")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "images", np.ascontiguousarray(images))
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        object.__setattr__(self, "value_range", value_range)
        object.__setattr__(self, "scaling_note", str(note))
        object.__setattr__(self, "suggested_scaling", scaling)

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, examples={len(self)}, input_shape={self.input_shape}, "
            f"classes={self.num_classes}, value_range={self.value_range:g}, fingerprint={self.fingerprint[:12]})"
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
        return replace(self, labels=labels, name=name or self.name)

    def subset(self, index: np.ndarray | Sequence[int], *, name: str | None = None) -> "Dataset":
        """The examples at ``index``, in that order (same value range and scaling)."""
        index = np.asarray(index)
        return replace(self, inputs=self.inputs[index], labels=self.labels[index], images=self.images[index],
                       name=name or f"{self.name}[{len(index)}]")


def _integer_labels(labels: np.ndarray, name: str) -> np.ndarray:
    """``labels`` as int64; integer-valued floats and booleans are accepted, anything else refused."""
    if labels.dtype.kind in "iub":
        return np.ascontiguousarray(labels, dtype=np.int64)
    if labels.dtype.kind == "f":
        finite = np.isfinite(labels)
        if finite.all() and np.all(labels == np.round(labels)):
            if labels.size and np.abs(labels).max() >= 2**62:
                raise DataError(f"{name}: labels up to {np.abs(labels).max():g} are not class indices "
                                f"(at most MAX_CLASSES = {MAX_CLASSES} classes)")
            return labels.astype(np.int64)
        i = int(np.flatnonzero(~finite | (labels != np.round(labels)))[0])
        raise DataError(f"{name}: labels must be integers, got dtype {labels.dtype} with value {labels[i].item()!r} at index {i}")
    raise DataError(f"{name}: labels must be integers, got dtype {labels.dtype}")


def _class_count_from_labels(labels: np.ndarray, name: str) -> int:
    """How many classes integer labels imply, checking they are indices below :data:`MAX_CLASSES`."""
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0:
        i = int(np.argmin(labels))
        raise DataError(f"{name}: label {lo} at index {i} is negative; labels must be class indices 0..K-1")
    if hi >= MAX_CLASSES:
        i = int(np.argmax(labels))
        raise DataError(
            f"{name}: label {hi} at index {i} would make {hi + 1:,} classes; at most MAX_CLASSES = {MAX_CLASSES:,} "
            f"are supported (labels must be class indices 0..K-1: remap them, e.g. np.unique(labels, return_inverse=True))"
        )
    return max(hi + 1, 2)


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


def load_cifar10(path: str | os.PathLike, *, split: str = "train") -> Dataset:
    """CIFAR-10 from the official python batches folder (``cifar-10-batches-py``)."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"CIFAR-10 folder not found: {folder}")
    names = _cifar_names(folder / "batches.meta", "label_names", 10)
    files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    parts = [_cifar_arrays(_read_cifar_batch(folder / f), folder / f, "labels", 10) for f in files]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    return _cifar_dataset(x, y, names, "cifar10" if split == "train" else "cifar10-test", folder)


def load_cifar100(path: str | os.PathLike, *, split: str = "train") -> Dataset:
    """CIFAR-100 (fine labels) from the official python folder (``cifar-100-python``)."""
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"CIFAR-100 folder not found: {folder}")
    names = _cifar_names(folder / "meta", "fine_label_names", 100)
    fname = "train" if split == "train" else "test"
    x, y = _cifar_arrays(_read_cifar_batch(folder / fname), folder / fname, "fine_labels", 100)
    return _cifar_dataset(x, y, names, "cifar100" if split == "train" else "cifar100-test", folder)


def _images_for_display(inputs: np.ndarray, value_range: float, *, low: float = 0.0) -> np.ndarray:
    """uint8 pictures from inputs: square greyscale for flat vectors, HWC for CHW colour.

    Values are mapped linearly from ``[low, value_range]`` to 0..255 and clipped.
    """
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
    span = (value_range - low) or 1.0
    out = np.empty(x.shape, dtype=np.uint8)
    flat_in, flat_out = x.reshape(-1), out.reshape(-1)
    step = 1 << 22  # bounded float32 temporaries, whatever the data's size
    for start in range(0, flat_in.size, step):
        c = np.nan_to_num(flat_in[start:start + step].astype(np.float32), posinf=np.float32(value_range), neginf=low)
        if low:
            c -= np.float32(low)
        c *= np.float32(255.0 / span)
        np.clip(c, 0, 255, out=c)
        flat_out[start:start + step] = np.rint(c, out=c)
    return out


def _display_images(x: np.ndarray, inferred: InferredRange) -> np.ndarray:
    """Display pictures for inputs whose range was inferred: raw uint8 pixels stay as they are."""
    if inferred.scaling == "standardize":  # not intensities: show each data set's own min..max
        finite = x[np.isfinite(x)] if x.dtype.kind == "f" else x
        lo = float(finite.min()) if finite.size else 0.0
        hi = float(finite.max()) if finite.size else 1.0
        return _images_for_display(x, hi if hi > lo else lo + 1.0, low=lo)
    return _images_for_display(x, inferred.value_range)


def _check_display_images(images: Any, name: str) -> np.ndarray:
    img = _to_numpy(images, f"{name}: images")
    if img.dtype == np.uint8:
        return img
    if img.size and img.dtype.kind in "biuf":
        lo, hi, integer, nonfinite = _range_stats(img)
        if integer and not nonfinite and lo >= 0 and hi <= 255:
            return img.astype(np.uint8)
        raise DataError(f"{name}: display images must be uint8 pixels 0..255, got dtype {img.dtype} with values in "
                        f"[{lo:.4g}, {hi:.4g}]{' and non-finite values' if nonfinite else ''}")
    return img.astype(np.uint8)


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

    Parameters
    ----------
    inputs : array-like [N, ...] of real numbers
        Greyscale pictures as flat vectors [N, H*W] (or any feature vectors), colour
        pictures channel-first [N, C, H, W]. Strings, objects and complex numbers are refused.
    labels : array-like [N] of integers
        Class indices ``0 .. K-1`` with ``K <= MAX_CLASSES``.
    class_names : sequence of str, optional
        Default ``"0" .. "K-1"`` with K = largest label + 1.
    images : uint8 array [N, H, W] or [N, H, W, 3], optional
        Pictures for display; default drawn from the inputs.
    name : str
    value_range : float, optional
        Default inferred from the data by :func:`infer_value_range` (uint8 -> 255,
        integer-valued -> the smallest of 1, 16, 255, 1023, 4095, 65535 that bounds them,
        [0, 1] -> 1; negative or non-integer values above 1 -> ``suggested_scaling =
        "standardize"``); the choice is recorded in ``Dataset.scaling_note``.

    See Also
    --------
    from_torch, from_huggingface, infer_value_range
    """
    x = _to_numpy(inputs, f"{name}: inputs")
    y = _to_numpy(labels, f"{name}: labels")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim < 2:
        raise DataError(f"{name}: inputs must have shape [N, ...], got {x.shape}")
    if y.ndim != 1:
        raise DataError(f"{name}: labels must be 1-D, got shape {y.shape}")
    if y.shape[0] != x.shape[0]:
        raise DataError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels; they must have the same length")
    if y.shape[0] == 0:
        raise DataError(f"{name}: the data set is empty")
    y = _integer_labels(y, name)
    if class_names is None:
        class_names = [str(i) for i in range(_class_count_from_labels(y, name))]
    elif len(class_names) > MAX_CLASSES:
        raise DataError(f"{name}: {len(class_names)} class names given; at most MAX_CLASSES = {MAX_CLASSES} are supported")
    if value_range is None:
        inferred = infer_value_range(x)
    else:
        inferred = InferredRange(float(value_range), "range", f"value range {float(value_range):g} (given)")
    if images is None:
        images = _display_images(x, inferred)
    else:
        images = _check_display_images(images, name)
    return Dataset(x, y, images, tuple(class_names), name, inferred.value_range, "arrays",
                   inferred.note, inferred.scaling)


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


# --------------------------------------------------------------------------- torch and Hugging Face


def _picture(item: Any, index: int, what: str, *, channels_first: bool) -> np.ndarray:
    """One example's image as a NumPy array: [H, W], [H, W, C] or 1-D features.

    ``item`` is a PIL image, a torch tensor ([C, H, W] or [H, W]) or an array-like ([H, W, C],
    [C, H, W] or [H, W]). A 3-D array whose first and last axes could both be channels is read
    channel-first when it is a torch tensor and ``channels_first`` (torch's convention), else
    channel-last (PIL's and NumPy's).
    """
    channels_first = channels_first and hasattr(item, "detach")
    if hasattr(item, "mode") and hasattr(item, "convert") and hasattr(item, "size"):  # PIL image
        mode = item.mode
        if mode in ("1", "P", "PA", "LA", "RGBA", "CMYK", "YCbCr", "HSV", "LAB", "RGBX", "La"):
            item = item.convert("L" if mode in ("1", "LA", "La") else "RGB")
        arr = np.asarray(item)
    else:
        arr = _to_numpy(item, f"{what}: example {index}'s image")
    if arr.ndim == 3:
        first, last = arr.shape[0] in (1, 3, 4), arr.shape[-1] in (1, 3, 4)
        if first and (channels_first or not last):
            arr = arr.transpose(1, 2, 0)
        elif not last:
            raise DataError(f"{what}: example {index}'s image has shape {arr.shape}; expected [C, H, W] or [H, W, C] "
                            f"with C in 1, 3, 4")
        if arr.shape[-1] == 1:
            arr = arr[..., 0]
    elif arr.ndim not in (1, 2):
        raise DataError(f"{what}: example {index}'s image has shape {arr.shape}; expected an image "
                        f"([H, W], [C, H, W] or [H, W, C]) or a feature vector")
    _check_real(arr, f"{what}: example {index}'s image")
    return arr


def _label_value(value: Any, index: int, what: str) -> int | str:
    if hasattr(value, "detach") and hasattr(value, "item"):  # 0-d torch tensor
        if getattr(value, "numel", lambda: 1)() != 1:
            raise DataError(f"{what}: example {index}'s label is a tensor of shape {tuple(value.shape)}, expected one number")
        value = value.item()
    if isinstance(value, (str, bytes)):
        return value.decode(errors="replace") if isinstance(value, bytes) else value
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "biuf":
        raise DataError(f"{what}: example {index}'s label is {value!r}; expected an integer class index")
    v = arr.item()
    if isinstance(v, float) and not (math.isfinite(v) and v == round(v)):
        raise DataError(f"{what}: example {index}'s label is {v!r}; expected an integer class index")
    return int(v)


def _collect(examples: Iterable[tuple[Any, Any]], n: int, what: str, *, channels_first: bool,
             progress: bool | None, exact: bool = True) -> tuple[np.ndarray, list[int | str]]:
    """Stack up to ``n`` (image, label) pairs into one array, checking that shapes and dtypes agree.

    With ``exact``, fewer than ``n`` pairs is an error (a ``__len__`` that lies); without, the
    stack is cut to what came.
    """
    from tqdm.auto import tqdm

    show = n >= 10_000 if progress is None else bool(progress)
    stack: np.ndarray | None = None
    labels: list[int | str] = []
    with tqdm(total=n, desc=f"reading {what}", unit="ex", disable=not show, leave=False) as bar:
        for i, (img, lab) in enumerate(examples):
            if i >= n:
                break
            arr = _picture(img, i, what, channels_first=channels_first)
            if stack is None:
                dtype = np.dtype(np.float32 if arr.dtype.kind == "f" else arr.dtype)
                try:
                    stack = np.empty((n, *arr.shape), dtype=dtype)
                except MemoryError:
                    need = n * math.prod(arr.shape) * dtype.itemsize / 2**30
                    raise DataError(f"{what}: {n:,} examples of shape {arr.shape} ({dtype}) need {need:,.1f} GiB, "
                                    f"more than this machine can allocate; pass limit= to read fewer") from None
            elif arr.shape != stack.shape[1:]:
                raise DataError(f"{what}: example {i}'s image has shape {arr.shape} but example 0's has "
                                f"{stack.shape[1:]}; all examples need one shape (resize them first, e.g. with a transform)")
            if stack.dtype.kind != "f" and not np.can_cast(arr.dtype, stack.dtype, "safe"):
                raise DataError(f"{what}: example {i}'s image has dtype {arr.dtype} but example 0's has {stack.dtype}")
            stack[i] = arr
            labels.append(_label_value(lab, i, what))
            bar.update(1)
    if stack is None:
        raise DataError(f"{what}: the data set is empty")
    if len(labels) < n:
        if exact:
            raise DataError(f"{what}: claims {n} examples but yielded {len(labels)}")
        stack = stack[:len(labels)]
    return stack, labels


def _assemble(stack: np.ndarray, labels: list[int | str], *, class_names: Sequence[str] | None, name: str,
              source: str) -> Dataset:
    """A Dataset in the house layout from a stack of pictures [N, H, W] / [N, H, W, C] (or vectors [N, d]).

    Greyscale pictures become flat inputs (as the MNIST loader gives), colour ones channel-first
    (as the CIFAR loader gives); uint8 pictures are their own display images.
    """
    if labels and all(isinstance(v, str) for v in labels):
        names = sorted(set(labels))  # string labels: classes in sorted order, unless names are given
        if class_names is not None:
            missing = sorted(set(names) - {str(c) for c in class_names})
            if missing:
                raise DataError(f"{name}: labels {missing[:5]} are not among the class names given")
            names = [str(c) for c in class_names]
        lookup = {c: i for i, c in enumerate(names)}
        y = np.array([lookup[v] for v in labels], dtype=np.int64)
        class_names = names
    elif any(isinstance(v, str) for v in labels):
        raise DataError(f"{name}: labels mix strings and numbers")
    else:
        y = np.asarray(labels, dtype=np.int64)
    if class_names is None:
        class_names = [str(i) for i in range(_class_count_from_labels(y, name))]
    inferred = infer_value_range(stack)
    n = stack.shape[0]
    if stack.ndim == 2:  # feature vectors
        inputs = stack
    elif stack.ndim == 3:  # greyscale [N, H, W]
        inputs = stack.reshape(n, -1)
    else:  # colour [N, H, W, C]
        inputs = stack.transpose(0, 3, 1, 2)
    channels = stack.shape[-1] if stack.ndim == 4 else 1
    if stack.ndim >= 3 and stack.dtype == np.uint8:
        images = stack if stack.ndim == 3 else (stack[..., :3] if channels >= 3 else stack[..., 0])
    else:
        pics = stack if stack.ndim < 4 else (inputs[:, :3] if channels >= 3 else inputs[:, :1])
        images = _display_images(pics, inferred)
    return Dataset(inputs, y, images, tuple(class_names), name, inferred.value_range, source,
                   inferred.note, inferred.scaling)


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, np.integer)) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    return None if limit is None else int(limit)


def _bounded(n: int, what: str) -> int:
    if n > MAX_EXAMPLES:
        raise DataError(f"{what}: {n:,} examples; at most MAX_EXAMPLES = {MAX_EXAMPLES:,} are read (pass limit=)")
    return n


def from_torch(
    dataset: Any,
    *,
    name: str | None = None,
    class_names: Sequence[str] | None = None,
    limit: int | None = None,
    progress: bool | None = None,
) -> Dataset:
    """A Dataset from a ``torch.utils.data.Dataset`` that yields ``(image, label)`` pairs.

    torchvision's ``MNIST``, ``CIFAR10`` and ``ImageFolder`` look like this; torchvision is not needed.

    Parameters
    ----------
    dataset : map-style (``__len__`` and ``__getitem__``) or iterable dataset
        Each item is a pair (or a longer tuple whose first two entries are) an image and a
        label. The image is a torch tensor ``[C, H, W]`` or ``[H, W]``, a PIL image (palette
        and alpha modes are converted to RGB, two-level to L) or a NumPy array ``[H, W, C]`` /
        ``[H, W]`` (or ``[C, H, W]`` when the last axis cannot be channels), or a 1-D feature
        vector. The label is an integer (int, NumPy scalar, 0-d tensor) or a string.
    name : str, optional
        Default: the dataset's class name.
    class_names : sequence of str, optional
        Default: the dataset's ``.classes`` when it has them, else ``"0" .. "K-1"``.
    limit : int, optional
        Read only the first ``limit`` examples (every class must still have one).
    progress : bool, optional
        Show a ``tqdm.auto`` bar; default: for 10,000 examples or more.

    Returns
    -------
    Dataset
        Greyscale pictures become flat inputs ``[N, H*W]`` and colour ones ``[N, C, H, W]``,
        as the file loaders give them; the value range is inferred (:func:`infer_value_range`:
        ``ToTensor`` floats in [0, 1] -> 1, PIL / uint8 pixels -> 255, normalized tensors ->
        ``suggested_scaling="standardize"``).

    See Also
    --------
    from_huggingface, from_arrays
    """
    what = name or type(dataset).__name__
    limit = _check_limit(limit)
    mapped = hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
    if not mapped and not hasattr(dataset, "__iter__"):
        raise TypeError(f"from_torch expects a torch.utils.data.Dataset yielding (image, label), "
                        f"got {type(dataset).__name__}")
    if mapped:
        n = len(dataset) if limit is None else min(len(dataset), limit)
    elif limit is None:
        raise TypeError(f"{what} has no length (an iterable dataset): pass limit= to read its first examples")
    else:
        n = limit
    n = _bounded(n, what)

    def pairs() -> Iterator[tuple[Any, Any]]:
        items: Iterable[Any] = (dataset[i] for i in range(n)) if mapped else iter(dataset)
        for i, item in enumerate(items):
            if isinstance(item, dict):
                raise DataError(f"{what}: example {i} is a dict with keys {sorted(item)}; expected an (image, label) "
                                f"pair (for a Hugging Face dataset use from_huggingface)")
            if not isinstance(item, (tuple, list)) or len(item) < 2:
                raise DataError(f"{what}: example {i} is a {type(item).__name__}, expected an (image, label) pair")
            yield item[0], item[1]

    stack, labels = _collect(pairs(), n, what, channels_first=True, progress=progress, exact=mapped)
    if class_names is None:
        classes = getattr(dataset, "classes", None)
        if isinstance(classes, (list, tuple)) and classes and all(isinstance(c, str) for c in classes):
            class_names = list(classes)
    mod = type(dataset).__module__
    return _assemble(stack, labels, class_names=class_names, name=what,
                     source=f"torch:{mod}.{type(dataset).__qualname__}")


def from_huggingface(
    dataset: Any,
    *,
    image: str = "image",
    label: str = "label",
    name: str | None = None,
    class_names: Sequence[str] | None = None,
    limit: int | None = None,
    progress: bool | None = None,
) -> Dataset:
    """A Dataset from a Hugging Face ``datasets.Dataset`` with an image column and a label column.

    Parameters
    ----------
    dataset : datasets.Dataset
        One split (``load_dataset(...)["train"]``, not a ``DatasetDict``).
    image : str, default "image"
        Column of PIL images (an ``Image`` feature) or arrays ([H, W], [H, W, C]), or feature vectors.
    label : str, default "label"
        Column of class indices (a ``ClassLabel`` gives the class names) or of strings
        (classes in sorted order).
    name : str, optional
        Default: the dataset's ``info.dataset_name``, else ``"huggingface"``.
    class_names : sequence of str, optional
        Overrides the ``ClassLabel`` names.
    limit : int, optional
        Read only the first ``limit`` rows.
    progress : bool, optional
        Show a ``tqdm.auto`` bar; default: for 10,000 rows or more.

    See Also
    --------
    from_torch, from_arrays
    """
    columns = getattr(dataset, "column_names", None)
    if isinstance(columns, dict):  # a DatasetDict
        raise TypeError(f"from_huggingface expects one split, got a DatasetDict with splits {sorted(columns)}: "
                        f"pass e.g. dataset[{next(iter(sorted(columns)), 'train')!r}]")
    if columns is None or not hasattr(dataset, "__len__"):
        raise TypeError(f"from_huggingface expects a datasets.Dataset, got {type(dataset).__name__}")
    for role, col in (("image", image), ("label", label)):
        if col not in columns:
            raise DataError(f"no {role} column {col!r}; the dataset's columns are {list(columns)} "
                            f"(pass {role}=NAME)")
    info = getattr(dataset, "info", None)
    what = name or getattr(info, "dataset_name", None) or "huggingface"
    if class_names is None:
        feature = (getattr(dataset, "features", None) or {}).get(label)
        names = getattr(feature, "names", None)
        if isinstance(names, (list, tuple)) and names:
            class_names = list(names)
    limit = _check_limit(limit)
    n = _bounded(len(dataset) if limit is None else min(len(dataset), limit), what)
    source = dataset.select(range(n)) if n < len(dataset) and hasattr(dataset, "select") else dataset

    def pairs() -> Iterator[tuple[Any, Any]]:
        if hasattr(source, "iter"):
            for batch in source.iter(batch_size=256):
                yield from zip(batch[image], batch[label])
        else:
            for i in range(n):
                row = source[i]
                yield row[image], row[label]

    stack, labels = _collect(pairs(), n, what, channels_first=False, progress=progress)
    return _assemble(stack, labels, class_names=class_names, name=what, source=f"huggingface:{what}")


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
    noisy = dataset.with_labels(labels, name=f"{dataset.name}-noise{float(fraction):g}")
    return noisy, mask
