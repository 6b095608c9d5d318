"""Finding injected examples: how well each score ranks flipped labels or out-of-distribution inputs first.

:func:`detect_injected` gives AUROC, average precision and precision at k (k = number injected)
of every score for a mask of injected examples: flipped labels
(:func:`cscore_lab.data.inject_label_noise`; :func:`detect_label_noise` is the same for them) or
out-of-distribution inputs (:func:`cscore_lab.ood.inject_ood`). A low score means "suspect", as
every score here is oriented like the C-score. The result is a :class:`DetectionTable`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .cscores import CScores
from .results import ResultTable, check_array

__all__ = ["DetectionTable", "detect_injected", "detect_label_noise", "detect_masks", "as_score_columns", "INJECTED"]

DETECT_FORMAT = "cscore_lab.detection/1"

#: The injection masks a data set can carry (its ``masks`` keys) and what each marks, in the tables' words.
INJECTED = {"flipped": "flipped labels", "ood": "out-of-distribution examples"}


def as_score_columns(scores: Any, n: int | None = None) -> dict[str, np.ndarray]:
    """Named per-example score columns of a ProxyTable, a CScores (``"cscore"``) or a dict of arrays,
    checked for names, numeric dtypes and length ``n``."""
    from .proxies.suite import ProxyTable

    if isinstance(scores, ProxyTable):
        out = dict(scores.values)
    elif isinstance(scores, CScores):
        out = {"cscore": scores.scores}
    elif isinstance(scores, Mapping):
        out = {}
        for name, arr in scores.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"score names must be non-empty strings, got {name!r}")
            a = np.asarray(arr)
            if a.dtype.kind not in "fiub":
                raise TypeError(f"score {name!r} must be numeric, got dtype {a.dtype}")
            out[name] = a.astype(np.float64)
    else:
        raise TypeError(f"expected a ProxyTable, a CScores or a dict of name -> array, got {type(scores).__name__}")
    if not out:
        raise ValueError("no scores given")
    if n is not None:
        for name, a in out.items():
            if a.shape != (n,):
                raise ValueError(f"score {name!r} has shape {a.shape}, but there are {n} examples: lengths must match")
    return out



@dataclass
class DetectionTable(ResultTable):
    """How well each score ranks the injected examples first (low score = suspect).

    Attributes
    ----------
    scores : list of str
    auroc, average_precision, precision_at_k : float64 [S]
    meta : dict
        ``k`` (= number injected), ``n`` (examples), ``prevalence`` (the average precision
        and precision at k of a random ranking), ``what`` (flipped labels, out-of-distribution examples).
    """

    scores: list[str]
    auroc: np.ndarray
    average_precision: np.ndarray
    precision_at_k: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    FORMAT = DETECT_FORMAT
    FILENAME = "detection.npz"
    _ARRAYS = ("auroc", "average_precision", "precision_at_k")

    def __post_init__(self) -> None:
        self.scores = list(self.scores)
        for name in self._ARRAYS:
            setattr(self, name, check_array(name, getattr(self, name), (len(self.scores),)))

    @property
    def what(self) -> str:
        return str(self.meta.get("what", "flipped labels"))

    def to_frame(self):
        """DataFrame indexed by score name, best AUROC first."""
        import pandas as pd

        df = pd.DataFrame({name: getattr(self, name) for name in self._ARRAYS},
                          index=pd.Index(self.scores, name="score"))
        return df.sort_values("auroc", ascending=False)

    def _note(self) -> str:
        return (f"{self.meta.get('k')} {self.what} of {self.meta.get('n')}; low score = suspect; a random ranking has "
                f"AUROC 0.5, AP and P@k {self.meta.get('prevalence', float('nan')):.3f}")

    def to_string(self) -> str:
        lines = [f"{'score':<28} {'AUROC':>7} {'AP':>7} {'P@k':>7}"]
        for name, r in self.to_frame().iterrows():
            lines.append(f"{name:<28} {r.auroc:7.3f} {r.average_precision:7.3f} {r.precision_at_k:7.3f}")
        lines.append(f"({self._note()})")
        return "\n".join(lines)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in self._ARRAYS}

    def _info(self) -> dict[str, Any]:
        return {"scores": self.scores, "meta": self.meta}

    @classmethod
    def _from_saved(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> "DetectionTable":
        return cls(info["scores"], meta=info["meta"], **{k: arrays[k] for k in cls._ARRAYS})

    def __repr__(self) -> str:
        return f"DetectionTable(scores={len(self.scores)}, {self.what}={self.meta.get('k')}, examples={self.meta.get('n')})"

    def _html_title(self) -> str:
        return "Label-noise detection" if self.what == "flipped labels" else f"Finding the {self.what}"

    def _html_notes(self) -> list[str]:
        return [self._note()]


def _suspicion_ranks(score: np.ndarray) -> np.ndarray:
    """Average ranks of -score (higher = more suspect); NaN and -inf rank as most suspect."""
    from scipy.stats import rankdata

    return rankdata(-np.nan_to_num(score, nan=-np.inf, posinf=np.inf, neginf=-np.inf))


def detect_injected(
    scores: Any,
    mask: np.ndarray,
    *,
    cscores: CScores | None = None,
    what: str = "flipped labels",
) -> DetectionTable:
    """AUROC, average precision and precision at k of each score for finding injected examples.

    Parameters
    ----------
    scores : ProxyTable, CScores or dict of str to array [N]
        Oriented like the C-score: a **low** score marks an example as suspect.
    mask : bool array [N]
        True where the example was injected: flipped labels (``inject_label_noise``) or
        out-of-distribution inputs (``inject_ood``).
    cscores : CScores, optional
        Added as a score named "cscore".
    what : str, default "flipped labels"
        What the mask marks, for the table's notes ("out-of-distribution examples", ...).

    Returns
    -------
    DetectionTable

    Raises
    ------
    ValueError
        A mask that is not boolean, of the wrong length, with no injected or no clean
        example; scores of the wrong length.

    Notes
    -----
    Precision at k counts the injected among the k lowest scores, k = number injected;
    ties at the cut share the places (each tied example counts by the fraction of the
    tie that fits). NaN scores rank as most suspect.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    mask = np.asarray(mask)
    if mask.dtype != np.bool_:
        raise ValueError(f"the mask must be a boolean array, got dtype {mask.dtype}")
    if mask.ndim != 1:
        raise ValueError(f"the mask must be 1-D, got shape {mask.shape}")
    n, k = mask.shape[0], int(mask.sum())
    if k == 0 or k == n:
        raise ValueError(f"the mask must mark some but not all examples as {what}, got {k} of {n}")
    values = as_score_columns(scores, n)
    if cscores is not None:
        if len(cscores) != n:
            raise ValueError(f"cscores has {len(cscores)} examples but the mask has {n}: lengths must match")
        values = {"cscore": cscores.scores, **values}
    auroc, ap, pk = [], [], []
    for a in values.values():
        r = _suspicion_ranks(a)
        auroc.append(roc_auc_score(mask, r))
        ap.append(average_precision_score(mask, r))
        pk.append(_precision_at_k(r, mask, k))
    meta = {"k": k, "n": n, "prevalence": k / n, "what": what}
    return DetectionTable(list(values), np.array(auroc), np.array(ap), np.array(pk), meta)


def detect_label_noise(
    scores: Any,
    flipped_mask: np.ndarray,
    *,
    cscores: CScores | None = None,
) -> DetectionTable:
    """:func:`detect_injected` for flipped labels (the mask of ``inject_label_noise``)."""
    return detect_injected(scores, flipped_mask, cscores=cscores, what="flipped labels")


def detect_masks(
    cscores: CScores,
    masks: Mapping[str, np.ndarray],
    *,
    memorization: Any = None,
    proxies: Any = None,
) -> dict[str, DetectionTable]:
    """One :class:`DetectionTable` per injection mask, of every score known for the examples.

    The rows are the C-score, memorization negated (``neg_memorization``, its
    :attr:`~cscore_lab.memorization.Memorization.regularity`, so that low = suspect as for every
    other row) when given, and every column of ``proxies``: what ``cscore-lab detect`` prints and
    ``%cscore detect`` shows.

    Parameters
    ----------
    cscores : CScores
    masks : dict of str to bool array [N]
        ``"flipped"`` and/or ``"ood"`` (see :data:`INJECTED`; other names are used as they are).
    memorization : Memorization, optional
    proxies : ProxyTable or dict of str to array [N], optional

    Returns
    -------
    dict of str to DetectionTable, in the order of ``masks``
    """
    if not isinstance(cscores, CScores):
        raise TypeError(f"cscores must be a CScores, got {type(cscores).__name__}")
    if not masks:
        raise ValueError("no injection mask given: nothing to detect (make a copy with inject_label_noise or inject_ood)")
    scores: dict[str, np.ndarray] = {"cscore": cscores.scores}
    if memorization is not None:
        if len(memorization) != len(cscores):
            raise ValueError(f"the memorization table has {len(memorization)} examples, the C-scores {len(cscores)}")
        scores["neg_memorization"] = np.asarray(memorization.regularity, dtype=np.float64)
    if proxies is not None:
        scores.update(as_score_columns(proxies, len(cscores)))
    return {name: detect_injected(scores, mask, what=INJECTED.get(name, name)) for name, mask in masks.items()}


def _precision_at_k(suspicion: np.ndarray, mask: np.ndarray, k: int) -> float:
    """Expected share of flipped among the k most suspect, ties at the cut broken at random."""
    order = np.sort(suspicion)[::-1]
    cut = order[k - 1]
    above = suspicion > cut
    tied = suspicion == cut
    room = k - int(above.sum())
    return float((mask[above].sum() + room * mask[tied].mean()) / k)
