"""The one validation of the proxies' inputs (kde, neighbors, dynamics, hardness, the suite).

Built on scikit-learn's :func:`~sklearn.utils.validation.check_array` (conversion to a
C-contiguous array of the wanted dtype, finiteness, minimum sizes) and
:func:`~sklearn.utils.validation.check_scalar` (type and range of a scalar). What they do not
say is added here, once: every message names the argument, what was found (shape, dtype,
value, the index of the first bad entry) and what was expected; bools are not integers; an
array of the wrong rank is refused before any conversion is tried.

Public functions of the package call these once on entry; their private kernels then assume
valid input.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import Any, Sequence

import numpy as np

__all__ = ["real_array", "features", "probabilities", "labels", "integer", "positive_number", "number_or_choice", "neighbour_count",
           "epoch_list", "choices", "dataset", "recipe"]


def _numeric(value: Any, name: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    return arr


def _target_dtype(arr: np.ndarray, dtype: Any) -> np.dtype:
    """The dtype ``check_array`` converts ``arr`` to (a list keeps a dtype it holds, else takes the first)."""
    if isinstance(dtype, (list, tuple)):
        return arr.dtype if arr.dtype in [np.dtype(d) for d in dtype] else np.dtype(dtype[0])
    return np.dtype(dtype)


def real_array(value: Any, name: str, *, ndim: int, what: str, dtype: Any = np.float64, min_rows: int = 1,
               finite: bool = True) -> np.ndarray:
    """``value`` as a C-contiguous real array of rank ``ndim`` and ``dtype``, checked.

    Parameters
    ----------
    value : array_like
    name : str
        The argument's name in messages.
    ndim : int
        The rank expected.
    what : str
        How the expected layout reads in a message, e.g. ``"[records, models, examples]"``.
    dtype : numpy dtype or list of dtypes, default float64
        As ``check_array``'s: with a list, an array already of one of them is kept as it is.
    min_rows : int, default 1
        Smallest length of axis 0; every other axis must be non-empty.
    finite : bool, default True
        Refuse NaN and infinite values (after conversion: a float64 value too large for float32
        is refused when the target is float32).

    Raises
    ------
    TypeError
        A dtype that is not real numeric (complex, strings, objects).
    ValueError
        Another rank, too few rows, an empty axis, non-finite values (with the index and value
        of the first).
    """
    from sklearn.utils.validation import check_array  # lazy: the CLI's parser stays light

    arr = _numeric(value, name)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {what}, got shape {arr.shape}")
    if any(s == 0 for s in arr.shape[1:]):
        raise ValueError(f"{name} must not have an empty axis: expected {what}, got shape {arr.shape}")
    try:
        with warnings.catch_warnings():  # a float64 too large for float32 becomes inf: reported below, by index
            warnings.simplefilter("ignore", RuntimeWarning)
            return check_array(arr, dtype=dtype, order="C", ensure_2d=ndim == 2, allow_nd=ndim > 2,
                               ensure_all_finite=finite, ensure_min_samples=min_rows,
                               ensure_min_features=1 if ndim == 2 else 0, input_name=name)
    except ValueError as exc:
        if finite and ("NaN" in str(exc) or "infinity" in str(exc)):
            target = _target_dtype(arr, dtype)
            with np.errstate(over="ignore", invalid="ignore"):
                bad = ~np.isfinite(arr.astype(target))
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            where = first[0] if len(first) == 1 else first
            raise ValueError(f"{name} must be finite in {target}: found {int(bad.sum())} non-finite value(s), "
                             f"the first at index {where} (value {arr[first].item()!r})") from None
        raise ValueError(f"{name}: {exc}") from None


def features(value: Any, name: str = "features", *, dtype: Any = (np.float64, np.float32),
             min_rows: int = 2) -> np.ndarray:
    """A finite real feature matrix ``[N examples, d features]`` with ``N >= min_rows`` and ``d >= 1``.

    ``dtype`` defaults to float64 unless the input is already float32 (kept, no copy).
    """
    dtype = list(dtype) if isinstance(dtype, tuple) else dtype
    return real_array(value, name, ndim=2, what="[N examples, d features]", dtype=dtype, min_rows=min_rows)


def probabilities(value: Any, name: str, *, ndim: int, what: str) -> np.ndarray:
    """:func:`real_array` (float64) whose values all lie in ``[0, 1]``."""
    p = real_array(value, name, ndim=ndim, what=what)
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"{name} must hold probabilities in [0, 1], got values in [{p.min():g}, {p.max():g}]")
    return p


def labels(value: Any, n: int, name: str = "labels", *, num_classes: int | None = None) -> np.ndarray:
    """Integer class labels, one per example, as C-contiguous int64, each ``>= 0`` (and ``< num_classes``)."""
    from sklearn.utils.validation import check_array  # lazy: the CLI's parser stays light

    arr = np.asarray(value)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D with one entry per example ({n}), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} must have one entry per example: got length {arr.shape[0]}, expected {n}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got dtype {arr.dtype}")
    if arr.dtype == np.uint64 and n and int(arr.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{name} must fit in int64, got a maximum of {int(arr.max())}")
    y = check_array(arr, ensure_2d=False, dtype=np.int64, order="C", ensure_min_samples=0, input_name=name)
    bad = (y < 0) if num_classes is None else ((y < 0) | (y >= num_classes))
    if bad.any():
        first = int(np.argmax(bad))
        limit = "" if num_classes is None else f" and < {num_classes} (the number of classes)"
        raise ValueError(f"{name} must be >= 0{limit}: found {int(bad.sum())} label(s) out of range, the first "
                         f"at index {first} (value {int(y[first])})")
    return y


def _range_text(minimum: int | None, maximum: int | None) -> str:
    if minimum is not None and maximum is not None:
        return f" in {minimum}..{maximum}"
    if minimum is not None:
        return f" >= {minimum}"
    return "" if maximum is None else f" <= {maximum}"


def integer(value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An integer (not a bool) in ``[minimum, maximum]``, as a Python int (``check_scalar``)."""
    from sklearn.utils.validation import check_scalar  # lazy: the CLI's parser stays light

    expected = f"{name} must be an integer{_range_text(minimum, maximum)}, got {value!r}"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(expected)
    try:
        check_scalar(value, name, Integral, min_val=minimum, max_val=maximum)
    except TypeError:
        raise TypeError(expected) from None
    except ValueError:
        raise ValueError(expected) from None
    return int(value)


def positive_number(value: Any, name: str, *, alternatives: Sequence[str] = ()) -> float:
    """A finite real number ``> 0`` (not a bool), as a float (``check_scalar``).

    ``alternatives`` only words the message of a wrong type (a caller that also accepts rule names).
    """
    from sklearn.utils.validation import check_scalar  # lazy: the CLI's parser stays light

    also = f" or one of {list(alternatives)}" if alternatives else ""
    wrong_type = f"{name} must be a positive finite number{also}, got {value!r} of type {type(value).__name__}"
    expected = f"{name} must be a positive finite number, got {value!r}"
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(wrong_type)
    try:
        check_scalar(value, name, Real, min_val=0, include_boundaries="neither")
    except TypeError:
        raise TypeError(wrong_type) from None
    except ValueError:
        raise ValueError(expected) from None
    if not math.isfinite(float(value)):
        raise ValueError(expected)
    return float(value)


def number_or_choice(value: Any, name: str, choices: Sequence[str]) -> float | str:
    """One of the names ``choices`` as given, or a positive finite number (:func:`positive_number`)."""
    if isinstance(value, str):
        if value not in choices:
            raise ValueError(f"{name} must be a positive finite number or one of {list(choices)}, got {value!r}")
        return value
    return positive_number(value, name, alternatives=choices)


def neighbour_count(k: Any, n: int, name: str = "k") -> int:
    """A neighbour count ``1 <= k < n`` (the example itself is never its own neighbour)."""
    from sklearn.utils.validation import check_scalar  # lazy: the CLI's parser stays light

    if isinstance(k, (bool, np.bool_)) or not isinstance(k, Integral):
        raise TypeError(f"{name} must be an integer, got {k!r}")
    try:
        check_scalar(k, name, Integral, min_val=1, max_val=n - 1)
    except ValueError:
        raise ValueError(f"{name}={k} is out of range: need 1 <= {name} < N = {n} (the example itself is not a "
                         f"neighbour)") from None
    return int(k)


def epoch_list(value: Any, name: str, total: int | None = None) -> tuple[int, ...]:
    """One epoch or a non-empty sequence of epochs, each an integer in ``1..total`` (``>= 1`` without a
    total); sorted, distinct."""
    seq = (value,) if isinstance(value, (Integral, np.integer)) and not isinstance(value, bool) else tuple(value)
    span = f"in 1..{total} (epochs count from 1; the training has {total})" if total else "(epochs count from 1)"
    if not seq:
        raise ValueError(f"{name} must name at least one epoch {span}")
    bad = [e for e in seq if isinstance(e, (bool, np.bool_)) or not isinstance(e, (Integral, np.integer))
           or e < 1 or (total is not None and e > total)]
    if bad:
        what = "integers" if total else "positive integers"
        raise ValueError(f"{name} must be {what} {span}, got {list(seq)}")
    return tuple(sorted({int(e) for e in seq}))


def choices(given: Any, allowed: Sequence[str], what: str, *, default: Sequence[str]) -> tuple[str, ...]:
    """Names out of ``allowed`` (a single name, a sequence, or None for ``default``), in ``allowed`` order."""
    if given is None:
        given = default
    given = (given,) if isinstance(given, str) else tuple(given)
    unknown = [g for g in given if g not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {list(allowed)}")
    return tuple(a for a in allowed if a in given)


def dataset(value: Any):
    """A cscore_lab :class:`~cscore_lab.data.Dataset`."""
    from ..data import Dataset

    if not isinstance(value, Dataset):
        raise TypeError(f"dataset must be a cscore_lab Dataset, got {type(value).__name__}")
    return value


def recipe(value: Any):
    """A :class:`~cscore_lab.recipes.Recipe`, or the recipe of a preset named by a string."""
    from ..recipes import Recipe, get_preset

    if isinstance(value, str):
        value = get_preset(value).recipe
    if not isinstance(value, Recipe):
        raise TypeError(f"recipe must be a Recipe or a preset name, got {type(value).__name__}")
    return value
