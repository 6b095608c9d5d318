"""Data sets held by other frameworks: a ``torch.utils.data.Dataset`` or a Hugging Face ``datasets.Dataset``.

:func:`from_torch` and :func:`from_huggingface` read (image, label) pairs into one checked stack,
in bounded memory and with a ``tqdm.auto`` bar for large sets, and build a
:class:`~cscore_lab.dataset.Dataset` in the house layout (greyscale flat, colour channel-first)
with its value range inferred. Neither torchvision nor ``datasets`` is imported.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from .dataset import (MAX_EXAMPLES, DataError, Dataset, _check_real, _class_count_from_labels, _display_images,
                      _to_numpy, infer_value_range)

__all__ = ["from_torch", "from_huggingface"]


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
