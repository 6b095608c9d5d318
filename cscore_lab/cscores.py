"""The C-score result: per-example scores with their uncertainty, computed once and rendered many times."""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .npzfile import load_npz, save_npz

__all__ = ["CScores", "aggregate_counts", "split_half_reliability"]

FORMAT = "cscore_lab.cscores/1"


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.ptp(a[ok]) == 0 or np.ptp(b[ok]) == 0:
        return float("nan")
    return float(spearmanr(a[ok], b[ok]).statistic)


def aggregate_counts(correct: np.ndarray, heldout: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From per-ratio counts of correct held-out predictions and of held-out models, return
    (per_ratio accuracy [S, N] with NaN where never held out, score [N], standard error [N]).

    The score is the mean over ratios of the per-ratio held-out accuracy (ratios where
    the example was never held out are left out); its standard error combines the
    binomial errors sqrt(p(1-p)/k) of the ratios.
    """
    correct = np.asarray(correct, dtype=np.float64)
    heldout = np.asarray(heldout, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_ratio = np.where(heldout > 0, correct / heldout, np.nan)
        var = np.where(heldout > 0, per_ratio * (1 - per_ratio) / heldout, np.nan)
    seen = np.isfinite(per_ratio)
    n_seen = seen.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(n_seen > 0, np.nansum(per_ratio, axis=0) / n_seen, np.nan)
        stderr = np.where(n_seen > 0, np.sqrt(np.nansum(var, axis=0)) / n_seen, np.nan)
    return per_ratio, score, stderr


def split_half_reliability(correct_halves: np.ndarray, heldout_halves: np.ndarray) -> float:
    """Spearman correlation between the scores estimated from two disjoint halves of the runs.

    ``correct_halves`` and ``heldout_halves`` are [2, S, N] counts.
    """
    if correct_halves.shape[0] != 2:
        raise ValueError("need exactly two halves")
    _, a, _ = aggregate_counts(correct_halves[0], heldout_halves[0])
    _, b, _ = aggregate_counts(correct_halves[1], heldout_halves[1])
    return _spearman(a, b)


@dataclass
class CScores:
    """C-scores of a data set: ``scores[i]`` estimates the expected held-out accuracy on example i.

    Attributes
    ----------
    scores : float64 [N]
    labels : int64 [N]
    ratios : tuple of float, the subset ratios (empty for published scores without them)
    per_ratio : float64 [S, N], held-out accuracy at each ratio (NaN where never held out)
    heldout_counts : int64 [S, N], models that did not see each example, per ratio
    stderr : float64 [N], standard error of each score (NaN when unknown)
    reliability : float, split-half Spearman (NaN when unknown)
    runs : int, models per ratio
    dataset : str, name of the data set
    fingerprint : str, the data set's fingerprint ("" when unknown)
    source : str, "estimate", "published" or a path
    meta : dict, anything else worth keeping (recipe, timings), JSON-serialisable
    """

    scores: np.ndarray
    labels: np.ndarray
    ratios: tuple[float, ...] = ()
    per_ratio: np.ndarray | None = None
    heldout_counts: np.ndarray | None = None
    stderr: np.ndarray | None = None
    reliability: float = float("nan")
    runs: int = 0
    dataset: str = ""
    fingerprint: str = ""
    source: str = "estimate"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        n = self.scores.shape[0]
        if self.scores.ndim != 1 or self.labels.shape != (n,):
            raise ValueError(f"scores and labels must be 1-D of one length, got {self.scores.shape} and {self.labels.shape}")
        self.ratios = tuple(float(r) for r in self.ratios)
        s = len(self.ratios)
        if self.per_ratio is None:
            self.per_ratio = np.full((s, n), np.nan)
        if self.heldout_counts is None:
            self.heldout_counts = np.zeros((s, n), dtype=np.int64)
        if self.stderr is None:
            self.stderr = np.full(n, np.nan)
        self.per_ratio = np.asarray(self.per_ratio, dtype=np.float64)
        self.heldout_counts = np.asarray(self.heldout_counts, dtype=np.int64)
        self.stderr = np.asarray(self.stderr, dtype=np.float64)
        for name, arr, shape in (("per_ratio", self.per_ratio, (s, n)), ("heldout_counts", self.heldout_counts, (s, n)), ("stderr", self.stderr, (n,))):
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self) else 0

    def lowest(self, k: int = 10) -> np.ndarray:
        """Indices of the ``k`` lowest-scoring examples, lowest first (ties by index)."""
        return np.argsort(np.nan_to_num(self.scores, nan=np.inf), kind="stable")[:k]

    def highest(self, k: int = 10) -> np.ndarray:
        """Indices of the ``k`` highest-scoring examples, highest first."""
        return np.argsort(-np.nan_to_num(self.scores, nan=-np.inf), kind="stable")[:k]

    def summary(self) -> dict[str, Any]:
        """A few numbers that describe the estimate."""
        s = self.scores[np.isfinite(self.scores)]
        return {
            "dataset": self.dataset,
            "examples": len(self),
            "ratios": len(self.ratios),
            "runs_per_ratio": self.runs,
            "mean_score": float(s.mean()) if s.size else float("nan"),
            "below_0.5": int((s < 0.5).sum()),
            "reliability": float(self.reliability),
            "mean_stderr": float(np.nanmean(self.stderr)) if np.isfinite(self.stderr).any() else float("nan"),
        }

    def to_frame(self):
        """A pandas DataFrame: one row per example with label, score, stderr and per-ratio scores."""
        import pandas as pd

        df = pd.DataFrame({"label": self.labels, "cscore": self.scores, "stderr": self.stderr})
        for i, r in enumerate(self.ratios):
            df[f"ratio_{r:g}"] = self.per_ratio[i]
        df.index.name = "example"
        return df

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (.npz, no pickle), atomically."""
        info = {
            "ratios": list(self.ratios), "reliability": self.reliability, "runs": self.runs,
            "dataset": self.dataset, "fingerprint": self.fingerprint, "source": self.source, "meta": self.meta,
        }
        arrays = {"scores": self.scores, "labels": self.labels, "per_ratio": self.per_ratio,
                  "heldout_counts": self.heldout_counts, "stderr": self.stderr}
        return save_npz(path, FORMAT, arrays, info)

    @classmethod
    def load(cls, path: str | Path) -> "CScores":
        """Read a file written by :meth:`save`; other files are refused with a clear message."""
        try:
            z, info = load_npz(path, FORMAT)
        except KeyError as exc:
            raise ValueError(f"{path} is not a saved CScores file ({exc})") from None
        return cls(
            scores=z["scores"], labels=z["labels"], ratios=tuple(info["ratios"]), per_ratio=z["per_ratio"],
            heldout_counts=z["heldout_counts"], stderr=z["stderr"], reliability=float(info["reliability"]),
            runs=int(info["runs"]), dataset=info["dataset"], fingerprint=info["fingerprint"],
            source=info["source"], meta=info.get("meta", {}),
        )

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"CScores(dataset={self.dataset!r}, examples={s['examples']}, ratios={s['ratios']}, runs={self.runs}, "
            f"mean={s['mean_score']:.3f}, below_0.5={s['below_0.5']}, reliability={s['reliability']:.3f})"
        )

    def _repr_html_(self) -> str:
        s = self.summary()
        rows = "".join(
            f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{v:.4f}</td></tr>" if isinstance(v, float)
            else f"<tr><th style='text-align:left'>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
            for k, v in s.items()
        )
        low = self.lowest(10)
        lows = ", ".join(f"#{i} (label {self.labels[i]}, {self.scores[i]:.2f})" for i in low)
        return (
            f"<div><b>C-scores</b> ({html.escape(self.source)})<table>{rows}</table>"
            f"<p>lowest: {html.escape(lows)}</p></div>"
        )
