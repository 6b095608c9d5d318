"""Readers for the C-scores released by the paper's authors, with the order checks they need.

The authors (Jiang, Zhang, Talwar & Mozer, ICML 2021) released C-scores for the
MNIST, CIFAR-10 and CIFAR-100 training sets. The package ships none of these files:
point :func:`load_published` at your own copy.

* CIFAR-10 / CIFAR-100: ``cifar10-cscores-orig-order.npz`` and
  ``cifar100-cscores-orig-order.npz`` hold ``labels`` (int64) and ``scores``
  (float64), already in the order of the official python batches.
* MNIST: ``mnist-cscores.npy`` holds float64 scores for the 60,000 training images
  **in the order in which tensorflow-datasets stores MNIST**, not the official order.
  :func:`tfds_mnist_order` rebuilds that order (official index ``i`` is keyed by
  ``md5(b"train" + str(i))``, read as a big-endian 128-bit integer, smallest first)
  and :func:`load_published` undoes it.

Every load is checked against the user's :class:`~cscore_lab.data.Dataset`: its
length, and its labels where the file has them (for MNIST, whose file has none, the
data set's labels must be the official MNIST training labels in the official order).
A mismatch raises :class:`~cscore_lab.data.DataError` saying what differs; scores are
never silently misaligned.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .cscores import CScores
from .data import DataError, Dataset
from .recipes import PAPER_RATIOS

__all__ = ["load_published", "tfds_mnist_order", "PUBLISHED"]


PUBLISHED: dict[str, dict[str, Any]] = {
    "mnist": {
        "file": "mnist-cscores.npy",
        "examples": 60_000,
        "num_classes": 10,
        "order": "tensorflow-datasets",
        "ratios": list(PAPER_RATIOS),
        "runs": 200,
        "recipe": "MLP 784-512-256-10, ReLU; SGD momentum 0.9, lr 0.1, batch 128, 10 epochs, inputs /255",
    },
    "cifar10": {
        "file": "cifar10-cscores-orig-order.npz",
        "examples": 50_000,  # as released; a file of any length is accepted and checked against the data set
        "num_classes": 10,
        "order": "official",
    },
    "cifar100": {
        "file": "cifar100-cscores-orig-order.npz",
        "examples": 50_000,
        "num_classes": 100,
        "order": "official",
    },
}

# The official MNIST training labels, as uint8 bytes in file order: SHA-256, first ten, counts.
_MNIST_LABELS_SHA256 = "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13"
_MNIST_FIRST_TEN = (5, 0, 4, 1, 9, 2, 1, 3, 1, 4)
_MNIST_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)


def tfds_mnist_order(n: int = 60_000, *, split: str = "train") -> np.ndarray:
    """The order in which tensorflow-datasets stores MNIST.

    tensorflow-datasets keys official example ``i`` by ``md5(split + str(i))`` and
    writes the examples sorted by that digest read as a big-endian 128-bit integer,
    smallest first.

    Parameters
    ----------
    n : int, default 60000
        Number of examples in the split (60,000 for the training set).
    split : str, default "train"
        The split name that prefixes each key.

    Returns
    -------
    order : int64 array [n]
        ``order[p]`` is the official index of the example at tensorflow-datasets
        position ``p``. Data in that order is put into official order with
        ``values[np.argsort(order)]``.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer number of examples, got {n!r}")
    prefix = split.encode()
    md5 = hashlib.md5
    digests = b"".join(md5(prefix + str(i).encode()).digest() for i in range(int(n)))
    words = np.frombuffer(digests, dtype=">u8").reshape(int(n), 2)
    # lexsort sorts by its last key first: high 64 bits, then low 64 bits = the 128-bit value
    return np.lexsort((words[:, 1], words[:, 0])).astype(np.int64)


def _resolve_file(name: str, path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        cand = p / PUBLISHED[name]["file"]
        if not cand.is_file():
            raise DataError(f"{p} is a folder without {PUBLISHED[name]['file']}, the published {name} file")
        return cand
    if not p.is_file():
        raise DataError(f"published {name} scores not found: {p} (expected {PUBLISHED[name]['file']} or its folder)")
    return p


def _read_array_file(path: Path) -> np.ndarray | dict[str, np.ndarray]:
    """Read ``.npy`` or ``.npz`` without pickle; ``.npz`` becomes a dict of arrays."""
    try:
        obj = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a NumPy .npy/.npz file readable without pickle ({exc})") from exc
    if isinstance(obj, np.ndarray):
        return obj
    with obj:
        try:
            return {k: obj[k] for k in obj.files}
        except ValueError as exc:  # an object array inside the archive
            raise DataError(f"{path}: holds arrays that need pickle ({exc}); published files hold plain numbers") from exc


def _check_scores(name: str, path: Path, scores: np.ndarray) -> np.ndarray:
    if scores.ndim != 1:
        raise DataError(f"{path}: published {name} scores must be 1-D, got shape {scores.shape}")
    if not (np.issubdtype(scores.dtype, np.floating) or np.issubdtype(scores.dtype, np.integer)):
        raise DataError(f"{path}: published {name} scores must be numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise DataError(
            f"{path}: {bad.size} published {name} scores are NaN or infinite (first at index {bad[0]}: {scores[bad[0]]})"
        )
    out = np.flatnonzero((scores < 0) | (scores > 1))
    if out.size:
        raise DataError(
            f"{path}: {out.size} scores lie outside [0, 1] (first at index {out[0]}: {scores[out[0]]:g}); "
            f"C-scores are held-out accuracies, so this is not a published C-score file"
        )
    return scores


def _check_length(name: str, path: Path, n_file: int, dataset: Dataset | None) -> None:
    expected = PUBLISHED[name]["examples"]
    if name == "mnist" and n_file != expected:  # the order rule is defined for the full training set only
        raise DataError(
            f"{path}: holds {n_file} scores, but the published {name} training set has {expected}; wrong file?"
        )
    if dataset is not None and len(dataset) != n_file:
        raise DataError(
            f"published {name} scores cover {n_file} examples but the data set {dataset.name!r} has {len(dataset)}; "
            f"load the full {name} training set (split='train') in its official order"
        )


def _label_mismatch(expected: np.ndarray, got: np.ndarray) -> str:
    diff = np.flatnonzero(expected != got)
    i = int(diff[0])
    return (f"{diff.size} of {expected.size} labels differ; first at index {i} "
            f"(file: {int(expected[i])}, data set: {int(got[i])})")


def _check_mnist_labels(dataset: Dataset) -> None:
    labels = dataset.labels
    digest = hashlib.sha256(labels.astype(np.uint8).tobytes()).hexdigest() if labels.max() < 256 else ""
    if digest == _MNIST_LABELS_SHA256:
        return
    first = tuple(int(v) for v in labels[:10])
    counts = tuple(int(c) for c in np.bincount(labels, minlength=10)[:10]) if labels.max() < 10 else ()
    if counts != _MNIST_COUNTS:
        what = (f"its label counts {list(counts) if counts else 'over classes 0..' + str(int(labels.max()))} "
                f"are not MNIST's {list(_MNIST_COUNTS)}")
    elif first != _MNIST_FIRST_TEN:
        what = f"its first ten labels {list(first)} are not MNIST's {list(_MNIST_FIRST_TEN)}; is it shuffled?"
    else:
        what = "its labels have MNIST's counts and first ten labels but are not in the official order"
    raise DataError(
        f"the data set {dataset.name!r} is not the official MNIST training set in its official order: {what}. "
        f"The published MNIST scores can only be aligned to that set (load_mnist(path, split='train'))"
    )


def load_published(name: str, path: str | os.PathLike, dataset: Dataset | None = None) -> CScores:
    """Load the authors' published C-scores, in the official example order, checked against ``dataset``.

    Parameters
    ----------
    name : {"mnist", "cifar10", "cifar100"}
        Which released file.
    path : path
        The released file (``mnist-cscores.npy``, ``cifar10-cscores-orig-order.npz``,
        ``cifar100-cscores-orig-order.npz``) or the folder that holds it.
    dataset : Dataset, optional
        The training set the scores belong to, loaded in its official order. When
        given, its length must match, and its labels must equal the file's (CIFAR) or
        be the official MNIST training labels (MNIST, whose file holds no labels).
        Required for MNIST, which takes its labels from it.

    Returns
    -------
    CScores
        ``source="published"``, ``ratios=()`` and no per-ratio values (the authors
        released only the final scores); ``stderr`` and ``reliability`` are NaN.
        ``meta`` records the file, its SHA-256, the order it was stored in and, for
        MNIST, the ratios and runs the authors used. ``runs`` is 200 for MNIST and 0
        (not stated in the file) for CIFAR.

    Raises
    ------
    ValueError
        ``name`` is not one of the three.
    DataError
        A missing or unreadable file, an ``.npz`` where an ``.npy`` is expected (or the
        reverse), missing keys, a wrong length, non-finite or out-of-range scores,
        labels out of range, or a data set that does not match the file.

    See Also
    --------
    tfds_mnist_order : the order of ``mnist-cscores.npy``.
    cscore_lab.data.load_mnist, cscore_lab.data.load_cifar10, cscore_lab.data.load_cifar100
    """
    if not isinstance(name, str) or name.lower() not in PUBLISHED:
        raise ValueError(f"unknown published scores {name!r}; choose one of: {', '.join(PUBLISHED)}")
    name = name.lower()
    if dataset is not None and not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a cscore_lab Dataset or None, got {type(dataset).__name__}")
    info = PUBLISHED[name]
    file = _resolve_file(name, path)
    raw = _read_array_file(file)
    sha = hashlib.sha256(file.read_bytes()).hexdigest()
    meta: dict[str, Any] = {"file": str(file), "sha256": sha, "stored_order": info["order"]}

    if name == "mnist":
        if isinstance(raw, dict):
            raise DataError(
                f"{file}: is an .npz archive (keys {sorted(raw)}), but the published MNIST scores are a single "
                f".npy array ({info['file']}); for CIFAR use name='cifar10' or 'cifar100'"
            )
        scores = _check_scores(name, file, raw)
        _check_length(name, file, scores.shape[0], dataset)
        if dataset is None:
            raise DataError(
                f"{file}: the published MNIST file holds scores only, no labels; pass "
                f"dataset=load_mnist(folder, split='train') so the scores get labels and the order is checked"
            )
        _check_mnist_labels(dataset)
        order = tfds_mnist_order(scores.shape[0])
        scores = scores[np.argsort(order)]
        labels = dataset.labels
        meta.update(remapped="tensorflow-datasets order -> official order (md5 rule)",
                    ratios=info["ratios"], runs=info["runs"], recipe=info["recipe"])
        runs = int(info["runs"])
    else:
        if not isinstance(raw, dict):
            raise DataError(
                f"{file}: is a single .npy array of shape {raw.shape}, but the published {name} scores are an "
                f".npz archive with keys 'labels' and 'scores' ({info['file']})"
            )
        missing = [k for k in ("labels", "scores") if k not in raw]
        if missing:
            raise DataError(f"{file}: lacks key(s) {missing}; a published {name} file holds 'labels' and 'scores', "
                            f"found {sorted(raw)}")
        scores = _check_scores(name, file, raw["scores"])
        labels = np.asarray(raw["labels"])
        if labels.ndim != 1 or labels.shape[0] != scores.shape[0]:
            raise DataError(f"{file}: labels have shape {labels.shape} but there are {scores.shape[0]} scores")
        if not np.issubdtype(labels.dtype, np.integer):
            raise DataError(f"{file}: labels must be integers, got dtype {labels.dtype}")
        labels = labels.astype(np.int64)
        k = int(info["num_classes"])
        out = np.flatnonzero((labels < 0) | (labels >= k))
        if out.size:
            other = " (is this the cifar100 file?)" if name == "cifar10" and labels.max() < 100 else ""
            raise DataError(
                f"{file}: label {int(labels[out[0]])} at index {int(out[0])} is outside 0..{k - 1} for {name}{other}"
            )
        present = np.unique(labels).size
        if present != k:
            other = " (is this the cifar10 file?)" if name == "cifar100" and present <= 10 else ""
            raise DataError(f"{file}: only {present} of the {k} {name} classes have a score{other}")
        _check_length(name, file, scores.shape[0], dataset)
        if dataset is not None:
            if dataset.num_classes != k:
                raise DataError(
                    f"published {name} scores have {k} classes but the data set {dataset.name!r} has "
                    f"{dataset.num_classes}"
                )
            if not np.array_equal(labels, dataset.labels):
                raise DataError(
                    f"published {name} labels do not match the data set {dataset.name!r}: "
                    f"{_label_mismatch(labels, dataset.labels)}. Load the training set from the official python "
                    f"batches in their order; the scores are never realigned silently"
                )
        runs = 0
    return CScores(
        scores=scores, labels=labels, ratios=(), runs=runs, dataset=name,
        fingerprint=dataset.fingerprint if dataset is not None else "", source="published", meta=meta,
    )
