"""Labeled data sets: the :class:`Dataset`, the registry of named data sets, and label noise.

This is the module to import data things from; it gathers three smaller ones:

* :mod:`cscore_lab.dataset`: :class:`Dataset` (validated on construction), value-range
  inference (:func:`infer_value_range`), :func:`from_arrays`, :class:`DataError`;
* :mod:`cscore_lab.loaders`: the verified file loaders (digits, MNIST IDX, CIFAR, ``.npz``,
  image folders);
* :mod:`cscore_lab.interop`: :func:`from_torch` and :func:`from_huggingface`.

Here: :data:`DATASETS` and :func:`load_dataset` (data sets by name, as the front ends name
them) and :func:`inject_label_noise`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .dataset import (MAX_CLASSES, MAX_EXAMPLES, RANGE_LADDER, DataError, Dataset, InferredRange, from_arrays,
                      infer_value_range)
from .interop import from_huggingface, from_torch
from .loaders import (load_cifar10, load_cifar100, load_digits, load_fashion_mnist, load_image_folder, load_mnist,
                      load_npz, read_idx)

__all__ = [
    "Dataset",
    "DATASETS",
    "DatasetSpec",
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
