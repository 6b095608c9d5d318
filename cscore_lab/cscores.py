"""The C-score result: per-example scores with their uncertainty, computed once and rendered many times.

Also the arithmetic behind it: per-ratio counts of held-out models and of correct predictions
(:class:`CountAccumulator`, fed one shard at a time) turn into scores and binomial standard
errors (:func:`aggregate_counts`), and the counts of two halves of the runs into the split-half
reliability. :func:`spearman` is the one rank-correlation helper of the package.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .results import ResultTable, check_array

__all__ = ["CScores", "CountAccumulator", "Profiles", "aggregate_counts", "split_half_reliability", "spearman",
           "scores_from_store"]

FORMAT = "cscore_lab.cscores/1"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of the pairs where both are finite (SciPy's); NaN when fewer than
    3 pairs remain or either side is constant. The one such helper: every module uses it."""
    from scipy.stats import spearmanr

    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"spearman needs two arrays of one shape, got {a.shape} and {b.shape}")
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
    return spearman(a, b)


class CountAccumulator:
    """Running counts per (half, ratio, example), so the estimate can be shown after every shard.

    Halves are even and odd run indices, which gives the split-half reliability for free.
    """

    def __init__(self, n_examples: int, ratios: Sequence[float], *, max_runs: int | None = None):
        self.ratios = tuple(ratios)
        self.max_runs = max_runs  # rows of runs >= max_runs (a larger plan's shards) are not counted
        self._index = {r: i for i, r in enumerate(self.ratios)}
        shape = (2, len(self.ratios), n_examples)
        self.correct = np.zeros(shape, dtype=np.int64)
        self.heldout = np.zeros(shape, dtype=np.int64)
        self.runs_done = 0

    def add(self, shard: Any) -> None:
        """Count a :class:`~cscore_lab.store.ShardResult` (shards of ratios not in the plan are ignored)."""
        i = self._index.get(shard.ratio)
        if i is None:
            return  # a shard of a ratio not in this plan: kept in the store, not counted
        held = shard.heldout
        right = shard.correct & held
        inside = shard.runs < self.max_runs if self.max_runs is not None else np.ones(len(shard.runs), bool)
        for half in (0, 1):
            rows = inside & ((shard.runs % 2) == half)
            if rows.any():
                self.heldout[half, i] += held[rows].sum(axis=0)
                self.correct[half, i] += right[rows].sum(axis=0)
        self.runs_done += int(inside.sum())

    def to_cscores(self, labels: np.ndarray, **info: Any) -> "CScores":
        correct, heldout = self.correct.sum(axis=0), self.heldout.sum(axis=0)
        per_ratio, score, stderr = aggregate_counts(correct, heldout)
        reliability = split_half_reliability(self.correct, self.heldout) if self.runs_done >= 2 else float("nan")
        return CScores(
            scores=score, labels=labels, ratios=self.ratios, per_ratio=per_ratio, heldout_counts=heldout,
            stderr=stderr, reliability=reliability, **info,
        )


@dataclass
class Profiles:
    """The paper's consistency profiles: mean held-out accuracy at each ratio for groups of examples
    binned by C-score. ``curves[g, s]`` is group g's mean at ``ratios[s]`` (ratios ascending)."""

    ratios: np.ndarray  # [S], ascending
    edges: np.ndarray  # [G + 1]
    curves: np.ndarray  # [G, S]
    counts: np.ndarray  # [G] examples per group
    binning: str = "score"


@dataclass
class CScores(ResultTable):
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

    FORMAT = FORMAT
    FILENAME = "cscores.npz"

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
        n = self.scores.shape[0] if self.scores.ndim else 0
        if self.scores.ndim != 1 or self.labels.shape != (n,):
            raise ValueError(f"scores and labels must be 1-D of one length, got {self.scores.shape} and {self.labels.shape}")
        self.ratios = tuple(float(r) for r in self.ratios)
        s = len(self.ratios)
        self.per_ratio = check_array("per_ratio", np.full((s, n), np.nan) if self.per_ratio is None else self.per_ratio, (s, n))
        self.heldout_counts = check_array("heldout_counts", np.zeros((s, n)) if self.heldout_counts is None
                                          else self.heldout_counts, (s, n), np.int64)
        self.stderr = check_array("stderr", np.full(n, np.nan) if self.stderr is None else self.stderr, (n,))

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def num_classes(self) -> int:
        return int(self.labels.max()) + 1 if len(self) else 0

    @property
    def finished(self) -> bool:
        """Whether every planned model has been counted (unknown plans count as finished)."""
        done, planned = self.meta.get("runs_done"), self.runs * len(self.ratios)
        return done is None or not planned or int(done) >= planned

    def lowest(self, k: int = 10) -> np.ndarray:
        """Indices of the ``k`` lowest-scoring examples, lowest first (ties by index)."""
        return np.argsort(np.nan_to_num(self.scores, nan=np.inf), kind="stable")[:k]

    def highest(self, k: int = 10) -> np.ndarray:
        """Indices of the ``k`` highest-scoring examples, highest first."""
        return np.argsort(-np.nan_to_num(self.scores, nan=-np.inf), kind="stable")[:k]

    @property
    def per_ratio_stderr(self) -> np.ndarray:
        """float64 [S, N]: binomial standard error sqrt(p(1-p)/k) of each per-ratio accuracy (NaN where k = 0)."""
        k = self.heldout_counts.astype(np.float64)
        p = self.per_ratio
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(k > 0, np.sqrt(p * (1 - p) / k), np.nan)

    def profiles(self, groups: int = 5, binning: str = "score") -> Profiles:
        """The paper's consistency profiles: per-ratio held-out accuracy of groups of examples.

        Parameters
        ----------
        groups : int, default 5
        binning : {"score", "quantile"}, default "score"
            ``"score"``: equal-width C-score ranges over [0, 1]; ``"quantile"``: equal-size groups.
        """
        if binning not in ("score", "quantile"):
            raise ValueError(f"binning must be 'score' or 'quantile', got {binning!r}")
        if isinstance(groups, bool) or not (isinstance(groups, (int, np.integer)) and groups >= 1):
            raise ValueError(f"groups must be a positive integer, got {groups!r}")
        ratios = np.asarray(self.ratios, dtype=np.float64)
        order = np.argsort(ratios)
        ok = np.isfinite(self.scores)
        if binning == "score":
            edges = np.linspace(0.0, 1.0, groups + 1)
        else:
            edges = (np.unique(np.quantile(self.scores[ok], np.linspace(0, 1, groups + 1))) if ok.any()
                     else np.array([0.0, 1.0]))
        if len(edges) < 2:
            edges = np.array([edges[0], edges[0]])
        which = np.clip(np.searchsorted(edges, self.scores, side="right") - 1, 0, len(edges) - 2)
        g = len(edges) - 1
        curves = np.full((g, ratios.size), np.nan)
        counts = np.zeros(g, dtype=np.int64)
        for k in range(g):
            sel = ok & (which == k)
            counts[k] = int(sel.sum())
            if counts[k] and ratios.size:
                with np.errstate(invalid="ignore"):
                    vals = self.per_ratio[:, sel][order]
                    seen = np.isfinite(vals).sum(axis=1)
                    curves[k] = np.where(seen > 0, np.nansum(vals, axis=1) / np.maximum(seen, 1), np.nan)
        return Profiles(ratios[order], edges, curves, counts, binning)

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

    def describe(self) -> list[tuple[str, str]]:
        """The summary as (label, text) rows: what the CLI prints, the report tabulates and the widgets show."""
        s = self.summary()
        n = max(1, s["examples"])

        def num(v: float) -> str:
            return f"{v:.4f}" if math.isfinite(v) else "unknown"

        rows = [("examples", str(s["examples"]))]
        if self.ratios:
            rows.append(("ratios", f"{len(self.ratios)} ({', '.join(f'{r:g}' for r in self.ratios)})"))
        if self.runs:
            done = self.meta.get("runs_done")
            rows.append(("runs per ratio", f"{self.runs}" + (f" ({done} models trained in all)" if done is not None else "")))
        rows += [
            ("mean C-score", num(s["mean_score"])),
            ("below 0.5", f"{s['below_0.5']} ({100 * s['below_0.5'] / n:.1f}%)"),
            ("reliability", num(s["reliability"]) + (" (split-half Spearman)" if math.isfinite(s["reliability"]) else "")),
            ("mean std. error", num(s["mean_stderr"])),
        ]
        for key in ("precision", "scaling"):
            if self.meta.get(key):
                rows.append((key, str(self.meta[key])))
        return rows

    def to_string(self) -> str:
        """The summary as fixed-width text, for terminals."""
        head = f"C-scores of {self.dataset or 'a data set'}"
        return "\n".join([head] + [f"  {k:<17} {v}" for k, v in self.describe()])

    def to_frame(self):
        """A pandas DataFrame: one row per example with label, score, stderr and per-ratio scores."""
        import pandas as pd

        df = pd.DataFrame({"label": self.labels, "cscore": self.scores, "stderr": self.stderr})
        for i, r in enumerate(self.ratios):
            df[f"ratio_{r:g}"] = self.per_ratio[i]
        df.index.name = "example"
        return df

    # ------------------------------------------------------------------ ResultTable
    def _arrays(self) -> dict[str, np.ndarray]:
        return {"scores": self.scores, "labels": self.labels, "per_ratio": self.per_ratio,
                "heldout_counts": self.heldout_counts, "stderr": self.stderr}

    def _info(self) -> dict[str, Any]:
        return {"ratios": list(self.ratios), "reliability": self.reliability, "runs": self.runs,
                "dataset": self.dataset, "fingerprint": self.fingerprint, "source": self.source, "meta": self.meta}

    @classmethod
    def _from_saved(cls, z: dict[str, np.ndarray], info: dict[str, Any]) -> "CScores":
        return cls(
            scores=z["scores"], labels=z["labels"], ratios=tuple(info["ratios"]), per_ratio=z["per_ratio"],
            heldout_counts=z["heldout_counts"], stderr=z["stderr"], reliability=float(info["reliability"]),
            runs=int(info["runs"]), dataset=info["dataset"], fingerprint=info["fingerprint"],
            source=info["source"], meta=info.get("meta", {}),
        )

    @classmethod
    def _load_folder(cls, folder: Path) -> "CScores":
        """A run folder: its final scores when finished, else the estimate from its finished shards."""
        if (folder / cls.FILENAME).is_file():
            return cls.load(folder / cls.FILENAME)
        return scores_from_store(folder)

    def __repr__(self) -> str:
        s = self.summary()
        return (
            f"CScores(dataset={self.dataset!r}, examples={s['examples']}, ratios={s['ratios']}, runs={self.runs}, "
            f"mean={s['mean_score']:.3f}, below_0.5={s['below_0.5']}, reliability={s['reliability']:.3f})"
        )

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                       for k, v in self.describe())
        lows = ", ".join(f"#{i} (label {self.labels[i]}, {self.scores[i]:.2f})" for i in self.lowest(10))
        return (f"<div><b>C-scores</b> of {html.escape(self.dataset)} ({html.escape(self.source)})<table>{rows}</table>"
                f"<p>lowest: {html.escape(lows)}</p></div>")


def scores_from_store(path: str | Path, labels: np.ndarray | None = None) -> CScores:
    """The estimate held by a run folder (finished or not), without the data set.

    Labels come from ``labels``, else from the run's stored labels (written when the run starts),
    else from its final scores. A folder with no finished shard is an error, not a table of NaN.
    """
    from .shards import select_shards
    from .store import RunStore
    from .recipes import Plan

    store = RunStore(path)
    manifest = store.read_manifest()
    plan = Plan.from_dict(manifest["plan"])
    ident = manifest["identity"]
    n = int(ident["examples"])
    if labels is None:
        labels = store.stored_labels()
    if labels is None:
        final = store.path / CScores.FILENAME
        if not final.is_file():
            raise ValueError(f"{path}: this run folder holds no labels (it predates stored labels) and is not "
                             f"finished; pass the data set's labels, or open it with its data set")
        labels = CScores.load(final).labels
    labels = np.asarray(labels)
    if labels.shape != (n,):
        raise ValueError(f"{path}: the run has {n} examples but {labels.shape[0]} labels were given")
    acc = CountAccumulator(n, plan.ratios, max_runs=plan.runs)
    for shard in store.iter_shards([s.key for s in select_shards(plan, store.finished_keys()).reuse]):
        acc.add(shard)
    if acc.runs_done == 0:
        raise ValueError(f"{path}: no finished shard yet (0 of {plan.total_runs} models); run the estimate "
                         f"(the same command resumes) before reading its scores")
    return acc.to_cscores(labels, runs=plan.runs, dataset=ident["dataset"], fingerprint=ident["fingerprint"],
                          source=str(store.path), meta={"recipe": ident["recipe"], "plan": plan.to_dict(),
                                                        "runs_done": acc.runs_done})
