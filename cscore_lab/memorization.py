"""Memorization estimates from the holdout grid (Feldman & Zhang, NeurIPS 2020).

Feldman & Zhang, *What Neural Networks Memorize and Why: Discovering the Long Tail via
Influence Estimation* (NeurIPS 2020, arXiv 2008.03703), define the memorization of training
example ``i`` by a training algorithm ``A`` on a data set ``S`` as

    mem(A, S, i) = P[h(x_i) = y_i | h <- A(S)] - P[h(x_i) = y_i | h <- A(S without i)],

and estimate a *subsampled* version of it from many models, each trained on a random subset:
the accuracy on ``i`` of the models that trained on ``i`` minus that of the models that did not.
The holdout grid of the C-score (Jiang et al., ICML 2021) is exactly such a set of models, at
several subset ratios, each model's subset known. Here, at each ratio ``s`` with ``n_in`` models
that trained on ``i`` (``c_in`` of them right on it) and ``n_out`` that held it out (``c_out``
right)::

    mem_s(i) = c_in / n_in - c_out / n_out,

and ``mem(i)`` is the mean of ``mem_s(i)`` over the ratios where both ``n_in`` and ``n_out`` are
at least ``min_models`` (the C-score pools its per-ratio accuracies the same way). Its standard
error treats the two proportions of a ratio as independent binomials (disjoint sets of
independently trained models) and the ratios as independent::

    se(i) = sqrt(sum_s [p_in (1 - p_in) / n_in + p_out (1 - p_out) / n_out]) / S_valid(i).

Like the C-score's, this Wald error is 0 where both proportions are 0 or 1: read it with the
number of models in mind.

**Orientation.** Memorization is a *quantity*, kept as the paper defines it: it is high (near 1)
for irregular, rare or mislabeled examples that a model only gets right when it trained on them,
and near 0 for regular examples (right whether seen or not) and for examples that are never
learnt. It is the opposite orientation of the C-score and of every proxy. Tables that rank
scores as proxies or detectors (higher = more regular) use its negation,
:attr:`Memorization.regularity`.

:class:`MemorizationAccumulator` is fed shard by shard (a live monitor can show the estimate
after every shard) and keeps only per-(half, ratio, example) counts, ``O(S * N)`` memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .results import ResultTable, check_array
from .cscores import spearman

__all__ = ["Memorization", "MemorizationAccumulator"]


# ---------------------------------------------------------------------------------------- helpers
# Shared with cscore_lab.influence: one validation of ratios and masks, one pooling rule.

def _ratio_key(ratio: float) -> int:
    """Ratios are told apart at 1e-6, as model seeds and shard names do."""
    return round(float(ratio) * 1_000_000)


def _check_ratios(ratios: Sequence[float]) -> tuple[float, ...]:
    if isinstance(ratios, (str, bytes)) or not hasattr(ratios, "__iter__"):
        raise TypeError(f"ratios must be a sequence of floats in (0, 1), got {ratios!r}")
    out = []
    for r in ratios:
        if isinstance(r, bool) or not isinstance(r, Real) or not math.isfinite(float(r)) or not 0 < float(r) < 1:
            raise ValueError(f"every subset ratio must be a number in (0, 1), got {r!r}")
        out.append(float(r))
    if not out:
        raise ValueError("ratios must not be empty")
    keys = [_ratio_key(r) for r in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"ratios {out} contain two ratios closer than 1e-6; they cannot be told apart")
    return tuple(out)


def _ratio_index(index: dict[int, int], ratios: tuple[float, ...], ratio: Any) -> int:
    if isinstance(ratio, bool) or not isinstance(ratio, Real):
        raise TypeError(f"ratio must be a number, got {ratio!r}")
    i = index.get(_ratio_key(ratio))
    if i is None:
        raise ValueError(f"ratio {ratio!r} is not one of this accumulator's ratios {list(ratios)}")
    return i


def _check_count(value: Any, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_mask(name: str, value: Any, n_cols: int, n_rows: int | None = None) -> np.ndarray:
    """``value`` as a C-contiguous bool [M, n_cols] array; 0/1 integers are accepted."""
    arr = np.asarray(value)
    if arr.ndim != 2 or arr.shape[1] != n_cols or (n_rows is not None and arr.shape[0] != n_rows):
        rows = "M" if n_rows is None else str(n_rows)
        raise ValueError(f"{name} has shape {arr.shape}, expected ({rows}, {n_cols}): one row per model")
    if arr.dtype != np.bool_:
        if arr.dtype.kind not in "iu":
            raise TypeError(f"{name} must be a bool (or 0/1 integer) array, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() > 1):
            raise ValueError(f"{name} must hold only 0 and 1, found values in [{arr.min()}, {arr.max()}]")
        arr = arr.astype(bool)
    return np.ascontiguousarray(arr)


def _check_runs(runs: Any, m: int) -> np.ndarray | None:
    if runs is None:
        return None
    arr = np.asarray(runs)
    if arr.shape != (m,) or arr.dtype.kind not in "iu":
        raise ValueError(f"runs must be {m} integer run indices (one per model), got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def _pool(in_correct, in_counts, out_correct, out_counts, min_models: int):
    """Per-ratio and pooled differences of two proportions, the arithmetic of this module.

    Arguments are [S, ...] counts (any trailing shape). Returns ``(per_ratio, value, stderr,
    p_in, p_out, n_valid)``: per-ratio ``c_in/n_in - c_out/n_out`` (NaN where a ratio has fewer
    than ``min_models`` models on either side), the mean over valid ratios, its standard error
    ``sqrt(sum of the two binomial variances over valid ratios) / n_valid``, the pooled
    (same-ratio) in-subset and held-out accuracies and the number of valid ratios.
    """
    c1 = np.asarray(in_correct, dtype=np.float64)
    n1 = np.asarray(in_counts, dtype=np.float64)
    c0 = np.asarray(out_correct, dtype=np.float64)
    n0 = np.asarray(out_counts, dtype=np.float64)
    floor = max(int(min_models), 1)
    valid = (n1 >= floor) & (n0 >= floor)
    with np.errstate(invalid="ignore", divide="ignore"):
        p1 = np.where(valid, c1 / n1, np.nan)
        p0 = np.where(valid, c0 / n0, np.nan)
        var = p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0
    per_ratio = p1 - p0
    n_valid = valid.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(n_valid > 0, np.nansum(per_ratio, axis=0) / n_valid, np.nan)
        stderr = np.where(n_valid > 0, np.sqrt(np.nansum(var, axis=0)) / n_valid, np.nan)
        p_in = np.where(n_valid > 0, np.nansum(p1, axis=0) / n_valid, np.nan)
        p_out = np.where(n_valid > 0, np.nansum(p0, axis=0) / n_valid, np.nan)
    return per_ratio, value, stderr, p_in, p_out, n_valid


# ---------------------------------------------------------------------------------------- result
@dataclass(eq=False)
class Memorization(ResultTable):
    """Memorization of every training example, estimated from the holdout grid.

    ``memorization[i]`` estimates P[correct on i | i in the model's subset] - P[correct on i |
    i held out] (Feldman & Zhang 2020), per subset ratio and pooled over ratios; see the module
    docstring for the estimator and its standard error. High values mark irregular, rare or
    mislabeled examples (the opposite orientation of the C-score): :attr:`regularity` is the
    negation that proxy and detection tables use.

    The counts are the truth (they are what is saved); everything else is derived from them.

    Attributes
    ----------
    labels : int64 [N]
    ratios : tuple of float, the subset ratios (S of them)
    in_counts, in_correct : int64 [S, N], models that trained on each example, and of those the
        ones right on it, per ratio
    out_counts, out_correct : int64 [S, N], the same for the models that held it out
    min_models : int, a ratio counts for an example only with at least this many models on each
        side (default 1: every ratio where both sides occur)
    reliability : float, split-half Spearman of the estimate (even vs. odd runs; NaN when unknown)
    dataset, fingerprint : str, the data set's name and fingerprint ("" when unknown)
    meta : dict, anything else worth keeping, JSON-serialisable
    per_ratio : float64 [S, N] (derived), memorization at each ratio (NaN where undefined)
    memorization, stderr : float64 [N] (derived), the pooled estimate and its standard error
    in_accuracy, heldout_accuracy : float64 [N] (derived), accuracy of the models that trained on
        the example and of those that held it out, pooled over the same ratios as memorization
        (so ``memorization == in_accuracy - heldout_accuracy``; ``heldout_accuracy`` differs from
        the C-score only where some ratio has no in-subset model)
    n_ratios : int64 [N] (derived), ratios pooled for each example
    """

    FORMAT: ClassVar[str] = "cscore_lab.memorization/1"
    FILENAME: ClassVar[str] = "memorization.npz"

    labels: np.ndarray
    ratios: tuple[float, ...]
    in_counts: np.ndarray
    in_correct: np.ndarray
    out_counts: np.ndarray
    out_correct: np.ndarray
    min_models: int = 1
    reliability: float = float("nan")
    dataset: str = ""
    fingerprint: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    per_ratio: np.ndarray = field(init=False, repr=False)
    memorization: np.ndarray = field(init=False, repr=False)
    stderr: np.ndarray = field(init=False, repr=False)
    in_accuracy: np.ndarray = field(init=False, repr=False)
    heldout_accuracy: np.ndarray = field(init=False, repr=False)
    n_ratios: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels)
        if self.labels.ndim != 1 or self.labels.dtype.kind not in "iu":
            raise ValueError(f"labels must be a 1-D integer array, got {self.labels.dtype} {self.labels.shape}")
        self.labels = self.labels.astype(np.int64)
        self.ratios = _check_ratios(self.ratios)
        shape = (len(self.ratios), len(self.labels))
        for name in ("in_counts", "in_correct", "out_counts", "out_correct"):
            arr = np.asarray(getattr(self, name))
            if arr.dtype.kind not in "iu":
                raise TypeError(f"{name} must hold integer counts, got dtype {arr.dtype}")
            setattr(self, name, check_array(name, arr, shape, np.int64))
        if (self.in_correct > self.in_counts).any() or (self.out_correct > self.out_counts).any() \
                or (self.in_correct < 0).any() or (self.out_correct < 0).any():
            raise ValueError("counts are inconsistent: correct counts must lie between 0 and the model counts")
        self.min_models = _check_count(self.min_models, "min_models", 1)
        self.reliability = float(self.reliability)
        (self.per_ratio, self.memorization, self.stderr, self.in_accuracy,
         self.heldout_accuracy, self.n_ratios) = _pool(
            self.in_correct, self.in_counts, self.out_correct, self.out_counts, self.min_models)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def regularity(self) -> np.ndarray:
        """``-memorization``: oriented like the C-score (higher = more regular), for proxy and detection tables."""
        return -self.memorization

    @property
    def models_per_ratio(self) -> tuple[int, ...]:
        """Models trained at each ratio (the most seen for any example)."""
        total = self.in_counts + self.out_counts
        return tuple(int(t) for t in (total.max(axis=1) if total.size else np.zeros(len(self.ratios), int)))

    def most_memorized(self, k: int = 10) -> np.ndarray:
        """Indices of the ``k`` most memorized examples, most memorized first (ties by index, NaN last)."""
        k = _check_count(k, "k")
        return np.argsort(-np.nan_to_num(self.memorization, nan=-np.inf), kind="stable")[:k]

    def summary(self) -> dict[str, Any]:
        """A few numbers that describe the estimate."""
        m = self.memorization[np.isfinite(self.memorization)]

        def mean(a):
            a = a[np.isfinite(a)]
            return float(a.mean()) if a.size else float("nan")

        return {
            "dataset": self.dataset,
            "examples": len(self),
            "ratios": len(self.ratios),
            "models": int(sum(self.models_per_ratio)),
            "estimated": int(m.size),
            "mean_memorization": float(m.mean()) if m.size else float("nan"),
            "above_0.5": int((m > 0.5).sum()),
            "mean_in_accuracy": mean(self.in_accuracy),
            "mean_heldout_accuracy": mean(self.heldout_accuracy),
            "reliability": self.reliability,
            "mean_stderr": mean(self.stderr),
        }

    def to_frame(self):
        """One row per example: label, memorization, stderr, in-subset and held-out accuracy,
        the number of ratios pooled and the memorization at each ratio (``mem_ratio_<s>``)."""
        import pandas as pd

        df = pd.DataFrame({
            "label": self.labels, "memorization": self.memorization, "stderr": self.stderr,
            "in_accuracy": self.in_accuracy, "heldout_accuracy": self.heldout_accuracy, "ratios_used": self.n_ratios,
        })
        for i, r in enumerate(self.ratios):
            df[f"mem_ratio_{r:g}"] = self.per_ratio[i]
        df.index.name = "example"
        return df

    # ------------------------------------------------------------------ ResultTable
    def _arrays(self) -> dict[str, np.ndarray]:
        return {"labels": self.labels, "in_counts": self.in_counts, "in_correct": self.in_correct,
                "out_counts": self.out_counts, "out_correct": self.out_correct}

    def _info(self) -> dict[str, Any]:
        return {"ratios": list(self.ratios), "min_models": self.min_models, "reliability": self.reliability,
                "dataset": self.dataset, "fingerprint": self.fingerprint, "meta": self.meta}

    @classmethod
    def _from_saved(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Memorization:
        return cls(labels=arrays["labels"], ratios=tuple(info["ratios"]), in_counts=arrays["in_counts"],
                   in_correct=arrays["in_correct"], out_counts=arrays["out_counts"],
                   out_correct=arrays["out_correct"], min_models=int(info["min_models"]),
                   reliability=float(info["reliability"]), dataset=info["dataset"],
                   fingerprint=info["fingerprint"], meta=info.get("meta", {}))

    def _html_title(self) -> str:
        name = f" of {self.dataset}" if self.dataset else ""
        return f"Memorization{name} (Feldman & Zhang 2020): the 20 most memorized examples"

    def _html_frame(self):
        return self.to_frame().iloc[self.most_memorized(20)]

    def _html_notes(self) -> list[str]:
        s = self.summary()
        return [
            (f"{s['examples']} examples, {s['ratios']} ratios, {s['models']} models; mean memorization "
             f"{s['mean_memorization']:.3f}, {s['above_0.5']} above 0.5; split-half reliability {s['reliability']:.3f}."),
            ("Memorization = accuracy when trained on the example - accuracy when it is held out: "
             "high for irregular or mislabeled examples (regularity = -memorization)."),
        ]

    def __repr__(self) -> str:
        s = self.summary()
        return (f"Memorization(dataset={self.dataset!r}, examples={s['examples']}, ratios={s['ratios']}, "
                f"models={s['models']}, mean={s['mean_memorization']:.3f}, above_0.5={s['above_0.5']}, "
                f"reliability={s['reliability']:.3f})")


# ---------------------------------------------------------------------------------------- accumulator
class MemorizationAccumulator:
    """Running counts for :class:`Memorization`, fed shard by shard.

    Parameters
    ----------
    n_examples : int
        N, the training examples every model was evaluated on.
    ratios : sequence of float
        The subset ratios of the plan (in (0, 1), distinct at 1e-6).

    Notes
    -----
    Memory: four int64 counts per (half, ratio, example), ``64 * S * N`` bytes (35 MB for MNIST's
    60,000 examples and 9 ratios), whatever the number of models. Halves are even and odd run
    indices when ``runs`` are given (as for the C-score), else the parity of each model's arrival
    order within its ratio; they give the split-half reliability.
    """

    def __init__(self, n_examples: int, ratios: Sequence[float]):
        self.n_examples = _check_count(n_examples, "n_examples", 1)
        self.ratios = _check_ratios(ratios)
        self._index = {_ratio_key(r): i for i, r in enumerate(self.ratios)}
        shape = (2, len(self.ratios), self.n_examples)
        self._in_counts = np.zeros(shape, np.int64)
        self._in_correct = np.zeros(shape, np.int64)
        self._out_counts = np.zeros(shape, np.int64)
        self._out_correct = np.zeros(shape, np.int64)
        self._arrived = np.zeros(len(self.ratios), np.int64)
        self.models = 0

    def ratio_index(self, ratio: float) -> int:
        """Position of ``ratio`` in :attr:`ratios`; a :class:`ValueError` for a ratio not in the plan."""
        return _ratio_index(self._index, self.ratios, ratio)

    def add(self, ratio: float, trained: ArrayLike, correct: ArrayLike, *, runs: ArrayLike | None = None) -> None:
        """Count the models of one shard.

        Parameters
        ----------
        ratio : float
            Their subset ratio (one of :attr:`ratios`).
        trained : bool array [M, N]
            ``trained[m, i]``: example i was in model m's training subset.
        correct : bool array [M, N]
            ``correct[m, i]``: model m classifies example i correctly, on *all* N examples
            (trained on or not).
        runs : int array [M], optional
            The models' run indices; their parity picks the split half.
        """
        s = self.ratio_index(ratio)
        t = _check_mask("trained", trained, self.n_examples)
        c = _check_mask("correct", correct, self.n_examples, t.shape[0])
        run_idx = _check_runs(runs, t.shape[0])
        if run_idx is None:
            run_idx = self._arrived[s] + np.arange(t.shape[0])
        for half in (0, 1):
            rows = (run_idx % 2) == half
            if not rows.any():
                continue
            th, ch = t[rows], c[rows]
            n_in = th.sum(axis=0)
            self._in_counts[half, s] += n_in
            self._out_counts[half, s] += th.shape[0] - n_in
            both = (th & ch).sum(axis=0)
            self._in_correct[half, s] += both
            self._out_correct[half, s] += ch.sum(axis=0) - both
        self._arrived[s] += t.shape[0]
        self.models += t.shape[0]

    def add_shard(self, shard: Any) -> bool:
        """Count a stored shard: anything with ``ratio``, ``runs``, ``trained`` [M, N] and ``correct``
        [M, N] on all examples (the shard format that records correctness on training examples).

        Returns False, counting nothing, for a shard of a ratio outside :attr:`ratios` (a run folder
        keeps the shards of an earlier plan's ratios), True otherwise.
        """
        if _ratio_key(shard.ratio) not in self._index:
            return False
        if getattr(shard, "trained", None) is None:
            raise ValueError(f"shard {getattr(shard, 'key', shard)!r} has no 'trained' mask: it was written "
                             f"before shards recorded correctness on training examples; recompute it")
        self.add(shard.ratio, shard.trained, shard.correct, runs=getattr(shard, "runs", None))
        return True

    def result(self, labels: ArrayLike, *, min_models: int = 1, **info: Any) -> Memorization:
        """The estimate from the models counted so far.

        Parameters
        ----------
        labels : int array [N]
            The examples' labels (for the table).
        min_models : int, default 1
            A ratio is pooled for an example only with at least this many models on each side.
        **info
            ``dataset``, ``fingerprint``, ``meta``: passed to :class:`Memorization`.
        """
        labels = np.asarray(labels)
        if labels.shape != (self.n_examples,):
            raise ValueError(f"labels has shape {labels.shape}, expected ({self.n_examples},)")
        min_models = _check_count(min_models, "min_models", 1)
        halves = [_pool(self._in_correct[h], self._in_counts[h], self._out_correct[h], self._out_counts[h],
                        min_models)[1] for h in (0, 1)]
        reliability = spearman(*halves) if self.models >= 2 else float("nan")
        return Memorization(
            labels=labels, ratios=self.ratios, in_counts=self._in_counts.sum(0), in_correct=self._in_correct.sum(0),
            out_counts=self._out_counts.sum(0), out_correct=self._out_correct.sum(0), min_models=min_models,
            reliability=reliability, **info,
        )
