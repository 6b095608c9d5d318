"""The :class:`Dataset` and everything that checks what goes into one.

A :class:`Dataset` holds what both training and display need: float32 model inputs
(in the data's own units; the recipe decides how to scale them), int64 labels,
uint8 images for galleries, class names, a name and a content fingerprint that the
run store uses to refuse mixing results from different data.

Nothing is trusted: arrays of strings, objects or complex numbers, or labels that would
make an absurd number of classes, are refused with a message naming what was found.
Wherever the value range of the inputs is not known from a format, it is inferred
(:func:`infer_value_range`) and the rule that chose it is recorded in ``Dataset.scaling_note``.
:func:`from_arrays` builds a Dataset from arrays or tensors. The file loaders live in
:mod:`cscore_lab.loaders`, the torch / Hugging Face bridges in :mod:`cscore_lab.interop`, and
:mod:`cscore_lab.data` gathers them all with the registry of named data sets.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Any, NamedTuple, Sequence

import numpy as np

__all__ = ["Dataset", "DataError", "from_arrays", "infer_value_range", "InferredRange", "MAX_CLASSES", "MAX_EXAMPLES",
           "RANGE_LADDER"]

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


# --------------------------------------------------------------------------- arrays


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
