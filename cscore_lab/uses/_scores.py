"""Per-example scores as the experiments take them: named float64 columns, checked once.

Every experiment of :mod:`cscore_lab.uses` is driven by per-example scores oriented like the
C-score (higher = more regular). They arrive in many shapes: a NumPy array, a
:class:`~cscore_lab.cscores.CScores`, a :class:`~cscore_lab.proxies.suite.ProxyTable`, a
:class:`~cscore_lab.memorization.Memorization` (negated), a ``dict`` of name -> array, a pandas
``Series`` or ``DataFrame``. :func:`score_columns` turns any of
them into ``{name: float64 [N]}``, checking length, finiteness and, where the object records
them, the data set's fingerprint and labels (a score file of another data set, or of the same
data in another order, is refused rather than silently misaligned).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import numpy as np

__all__ = ["score_columns", "single_score", "scores_digest", "normalized_rank"]


def _from_object(scores: Any, default_name: str) -> tuple[dict[str, Any], Any, str]:
    """(columns, labels or None, fingerprint or "") of any accepted score container."""
    if isinstance(scores, Mapping):
        return dict(scores), None, ""
    values = getattr(scores, "values", None)
    if isinstance(values, Mapping):  # ProxyTable
        return dict(values), getattr(scores, "labels", None), str(getattr(scores, "fingerprint", "") or "")
    if hasattr(scores, "regularity") and hasattr(scores, "memorization"):  # Memorization: its negation
        return {"neg_memorization": scores.regularity}, getattr(scores, "labels", None), \
            str(getattr(scores, "fingerprint", "") or "")
    cs = getattr(scores, "scores", None)
    if cs is not None and hasattr(scores, "labels"):  # CScores
        return {"cscore": cs}, scores.labels, str(getattr(scores, "fingerprint", "") or "")
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        pd = None
    if pd is not None and isinstance(scores, pd.DataFrame):
        numeric = scores.select_dtypes("number")
        cols = {str(c): numeric[c].to_numpy() for c in numeric.columns if str(c) != "label"}
        return cols, scores["label"].to_numpy() if "label" in scores.columns else None, ""
    if pd is not None and isinstance(scores, pd.Series):
        return {str(scores.name) if scores.name is not None else default_name: scores.to_numpy()}, None, ""
    if hasattr(scores, "detach"):  # a torch tensor
        scores = scores.detach().cpu().numpy()
    return {default_name: scores}, None, ""


def score_columns(
    scores: Any,
    n: int,
    *,
    labels: np.ndarray | None = None,
    fingerprint: str = "",
    default_name: str = "score",
) -> dict[str, np.ndarray]:
    """Named per-example score columns from any accepted container, validated.

    Parameters
    ----------
    scores : array-like [N], CScores, ProxyTable, Memorization, dict of str to array [N], pandas Series or DataFrame
        Oriented higher = more regular (negate a score of the other sign). A ``CScores`` gives one
        column ``"cscore"``; a ``Memorization`` one column ``"neg_memorization"`` (its
        ``regularity``, ``-memorization``); a ``ProxyTable`` one per proxy; a ``DataFrame`` one per
        numeric column except ``label``.
    n : int
        The number of examples the scores must cover.
    labels : int array [N], optional
        The data set's labels; a container that records its own labels must agree.
    fingerprint : str, optional
        The data set's fingerprint; a container that records another one is refused.
    default_name : str, default "score"
        The column name of a bare array.

    Returns
    -------
    dict of str to float64 [N]

    Raises
    ------
    ValueError
        No column, a wrong length, NaN or infinite values, or a container of another data set.
    TypeError
        Values that are not numbers.
    """
    cols, own_labels, own_fp = _from_object(scores, default_name)
    if not cols:
        raise ValueError("no score columns given; pass an array, a CScores, a ProxyTable or a dict of name -> array")
    if own_fp and fingerprint and own_fp != fingerprint:
        raise ValueError(
            f"the scores were computed on another data set (fingerprint {own_fp[:12]}, this data set has "
            f"{fingerprint[:12]}); compute them on this data set or pass the plain array if you know they match"
        )
    if own_labels is not None and labels is not None:
        own = np.asarray(own_labels)
        if own.shape == (n,) and not np.array_equal(own, labels):
            bad = np.flatnonzero(own != labels)
            raise ValueError(
                f"the scores' labels differ from the data set's at {bad.size} of {n} examples (first at index "
                f"{bad[0]}): are they of another data set, or of the same data in another order?"
            )
    out: dict[str, np.ndarray] = {}
    for name, values in cols.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"score names must be non-empty strings, got {name!r}")
        try:
            arr = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            dtype = getattr(values, "dtype", None)
            got = type(values).__name__ + (f" of dtype {dtype}" if dtype is not None else "")
            raise TypeError(f"score {name!r} must hold numbers, got {got}") from None
        if arr.shape != (n,):
            raise ValueError(f"score {name!r} has shape {arr.shape}, expected ({n},): one value per example")
        bad = np.flatnonzero(~np.isfinite(arr))
        if bad.size:
            raise ValueError(
                f"score {name!r} has {bad.size} NaN or infinite values (first at index {bad[0]}); an example "
                f"without a score cannot be ranked: fill or drop them first"
            )
        out[name] = np.ascontiguousarray(arr)
    return out


def single_score(scores: Any, n: int, *, what: str = "this experiment", **kw: Any) -> tuple[str, np.ndarray]:
    """The one score column of ``scores`` (see :func:`score_columns`); several columns are refused, naming ``what``."""
    cols = score_columns(scores, n, **kw)
    if len(cols) != 1:
        raise ValueError(f"{what} takes one score, got {len(cols)} ({', '.join(cols)}); pick one")
    return next(iter(cols.items()))


def scores_digest(columns: Mapping[str, np.ndarray]) -> str:
    """SHA-256 of the names and float64 bytes of ``columns``: equal scores, equal digest."""
    h = hashlib.sha256(json.dumps(list(columns)).encode())
    for values in columns.values():
        h.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
    return h.hexdigest()


def normalized_rank(values: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (lowest 0, highest 1; ties share their average rank; 0.5 if all tie)."""
    from scipy.stats import rankdata

    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return np.full(values.shape, 0.5)
    r = rankdata(values, method="average") - 1.0
    return r / (values.size - 1)
