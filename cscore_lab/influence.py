"""Influence of training examples on evaluation examples, from the holdout grid (Feldman & Zhang 2020).

Feldman & Zhang, *What Neural Networks Memorize and Why: Discovering the Long Tail via
Influence Estimation* (NeurIPS 2020, arXiv 2008.03703), define the influence of training
example ``i`` on example ``j`` as

    infl(i -> j) = P[h(x_j) = y_j | i in the training set] - P[h(x_j) = y_j | i not in it],

and estimate it from many models each trained on a random subset. Here, at each subset ratio
``s`` of the holdout grid, with ``T`` the models' subset masks ([R_s, N], ``T[m, i]``: model m
trained on i) and ``E`` their 0/1 correctness on the targets ``j``:

**With an evaluation set** (a test split; ``E = eval_correct``, [R_s, N_eval]):
``n_in(i) = sum_m T[m, i]``, ``a(i, j) = (T^T E)[i, j]`` (right on j with i in),
``n_out(i) = R_s - n_in(i)``, ``b(i, j) = sum_m E[m, j] - a(i, j)``.

**Without one** (targets are the training examples themselves, and j's correctness only counts
for the models that held j out: ``E = correct & ~T``, ``H = ~T``, both [R_s, N]): the counts of
models with i in / out *and* j held out form their own products,
``n_in(i, j) = (T^T H)[i, j]``, ``n_out(i, j) = sum_m H[m, j] - n_in(i, j)``,
``a(i, j) = (T^T E)[i, j]``, ``b(i, j) = sum_m E[m, j] - a(i, j)``. The pair ``i = j`` is
undefined (no model trains on i while holding it out) and never reported.

Then ``infl_s(i, j) = a / n_in - b / n_out``; ``infl(i, j)`` is its mean over the ratios where
``n_in`` and ``n_out`` are both at least ``min_models``, with the standard error of
:mod:`cscore_lab.memorization` (two independent binomial proportions per ratio:
``sqrt(sum_s [p_in(1-p_in)/n_in + p_out(1-p_out)/n_out]) / S_valid``). Influence is a quantity,
positive when training on i helps j; it is not a regularity score.

How it is computed
------------------
A dense ``N x N_eval`` table is too big for MNIST (60,000 x 10,000 pairs, times the ratios), so
:meth:`InfluenceAccumulator.result` keeps, for every target ``j``, the ``k`` training examples of
highest influence, and computes them in tiles of ``r`` training rows by ``c`` target columns.
For each tile and ratio, float32 products of the unpacked masks give the counts (``T_s^T E_s``,
and ``T_s^T H_s`` for training targets): integers below 2**24, so exact whatever the order of
summation. A serial ``nogil`` Numba kernel pools them over ratios in float64 (with an evaluation
set, through per-(ratio, i) weights ``1/n_in + 1/n_out`` and ``1/n_out``, since ``n_in`` does not
depend on j) and keeps each target's running top-k (a sorted insertion, training rows scanned in
increasing order). Count tiles are kept about cache-sized (2 MiB per worker). A small pool of
Python threads shares the column blocks, each with single-threaded BLAS (``threadpoolctl``) and
its own buffers. Every value is computed from exact counts by the same arithmetic whatever the
tiling, so the result depends neither on the number of threads nor on the memory budget.
Finally the kept pairs' values and standard errors are recomputed from the bit masks by the
arithmetic of :mod:`cscore_lab.memorization` and each list is sorted by value, ties by training
index.

Cost: ``2 * N * N_eval * R_total`` flops of float32 products (twice that for training targets)
and ``N * N_eval * S`` kernel steps; see ``benchmarks/RESULTS.md`` for MNIST-sized timings.

Memory: the accumulator keeps only bit-packed masks, ``R_total * (N + N_eval) / 8`` bytes
(9 x 16 models on MNIST with a test split: 1.3 MB). :meth:`~InfluenceAccumulator.result` uses
at most ``memory_budget`` bytes for its tiles and for the exact recomputation, whatever N, plus
``64 * k * N_eval`` bytes for the top-k lists and one copy of the packed masks
(:meth:`~InfluenceAccumulator.memory_bound` gives the total). The budget is a ceiling, not a
target: count tiles stay about 2 MiB per worker and the recomputation works in chunks of at most
16 MiB, so the MNIST-sized case peaks near 12 MiB (``benchmarks/RESULTS.md``).

Ties: training examples of equal influence (the same float64 value) keep the lower training
index, both when the top-k is selected and in the sorted lists. Where several tie at the k-th
value, the kept ones are thus the lowest-indexed of them; for a target every model gets right (or
wrong), every influence is 0 and the list is simply the first ``k`` training examples with a
pooled ratio. (Equal influences reached from different counts, say 1/2 - 1/4 and 3/4 - 1/2, can
differ in the last bit of float64; their order then follows that bit, the same on every run.)
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike

from .memorization import (
    Memorization,
    _check_count,
    _check_mask,
    _check_ratios,
    _ratio_index,
    _ratio_key,
)
from ._influence_topk import _topk_influence
from .results import ResultTable, check_array

__all__ = ["DEFAULT_MEMORY_BUDGET", "Influence", "InfluenceAccumulator"]

#: Thresholds a pair can pass: influence is a difference of two probabilities, so it lies in [-1, 1].
THRESHOLD_INTERVAL = "[-1, 1)"


def is_threshold(value: float) -> bool:
    """Whether ``value`` is an influence threshold some pair could be above (:data:`THRESHOLD_INTERVAL`)."""
    return -1.0 <= value < 1.0


#: Default bytes :meth:`InfluenceAccumulator.result` may use for its tiles (64 MiB).
DEFAULT_MEMORY_BUDGET = 64 * 2**20  # bytes the top-k computation may use, whatever N


# ---------------------------------------------------------------------------------------- result
@dataclass(eq=False)
class Influence(ResultTable):
    """The ``k`` most influential training examples of every target, with values and standard errors.

    ``top_index[j, q]`` is the training example of ``q``-th highest influence on target ``j``
    (``-1`` where fewer than ``k`` are defined), ``top_value`` and ``top_stderr`` its estimated
    infl(i -> j) and standard error (NaN there). Targets are the evaluation examples
    (``target == "eval"``) or, without an evaluation set, the training examples themselves, each
    judged by the models that held it out (``target == "train"``). Lists are sorted by value,
    ties by training index. See the module docstring for the estimator.

    Attributes
    ----------
    top_index : int64 [N_eval, k]
    top_value, top_stderr : float64 [N_eval, k]
    train_labels : int64 [N]
    eval_labels : int64 [N_eval] (the training labels again when ``target == "train"``)
    ratios : tuple of float
    models_per_ratio : tuple of int
    target : {"eval", "train"}
    min_models : int, the models required on each side for a ratio to be pooled
    dataset, eval_dataset : str, names of the training and evaluation data ("" when unknown)
    meta : dict, JSON-serialisable
    """

    FORMAT: ClassVar[str] = "cscore_lab.influence/1"
    FILENAME: ClassVar[str] = "influence.npz"

    top_index: np.ndarray
    top_value: np.ndarray
    top_stderr: np.ndarray
    train_labels: np.ndarray
    eval_labels: np.ndarray
    ratios: tuple[float, ...]
    models_per_ratio: tuple[int, ...]
    target: str = "eval"
    min_models: int = 1
    dataset: str = ""
    eval_dataset: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.target not in ("eval", "train"):
            raise ValueError(f"target must be 'eval' or 'train', got {self.target!r}")
        self.train_labels = check_array("train_labels", self.train_labels, np.shape(self.train_labels), np.int64)
        self.eval_labels = check_array("eval_labels", self.eval_labels, np.shape(self.eval_labels), np.int64)
        if self.train_labels.ndim != 1 or self.eval_labels.ndim != 1:
            raise ValueError("train_labels and eval_labels must be 1-D")
        idx = np.asarray(self.top_index)
        if idx.ndim != 2 or idx.dtype.kind not in "iu":
            raise ValueError(f"top_index must be a 2-D integer array [N_eval, k], got {idx.dtype} {idx.shape}")
        shape = (len(self.eval_labels), idx.shape[1])
        self.top_index = check_array("top_index", idx, shape, np.int64)
        self.top_value = check_array("top_value", self.top_value, shape)
        self.top_stderr = check_array("top_stderr", self.top_stderr, shape)
        if self.top_index.size and (self.top_index.min() < -1 or self.top_index.max() >= len(self.train_labels)):
            raise ValueError(f"top_index holds values outside [-1, {len(self.train_labels)})")
        if self.target == "train" and len(self.eval_labels) != len(self.train_labels):
            raise ValueError("with target 'train' the targets are the training examples: eval_labels must match")
        self.ratios = _check_ratios(self.ratios)
        self.models_per_ratio = tuple(int(m) for m in self.models_per_ratio)
        if len(self.models_per_ratio) != len(self.ratios):
            raise ValueError(f"models_per_ratio has {len(self.models_per_ratio)} entries for {len(self.ratios)} ratios")
        self.min_models = _check_count(self.min_models, "min_models", 1)

    @property
    def k(self) -> int:
        return int(self.top_index.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def n_eval(self) -> int:
        return int(self.eval_labels.shape[0])

    def __len__(self) -> int:
        return self.n_eval

    def _memorization_columns(self, memorization, train_idx: np.ndarray) -> dict[str, np.ndarray]:
        if memorization is None:
            return {}
        if isinstance(memorization, Memorization):
            values, errors = memorization.memorization, memorization.stderr
        else:
            values, errors = np.asarray(memorization, dtype=np.float64), None
        if values.shape != (self.n_train,):
            raise ValueError(f"memorization has shape {values.shape}, expected ({self.n_train},): one value per "
                             f"training example")
        cols = {"memorization": values[train_idx]}
        if errors is not None:
            cols["memorization_stderr"] = errors[train_idx]
        return cols

    def to_frame(self):
        """Every kept pair, one row each: eval_index, rank, train_index, influence, stderr, labels."""
        import pandas as pd

        j, q = np.nonzero(self.top_index >= 0)
        i = self.top_index[j, q]
        df = pd.DataFrame({
            "eval_index": j, "rank": q, "train_index": i, "influence": self.top_value[j, q],
            "stderr": self.top_stderr[j, q], "eval_label": self.eval_labels[j], "train_label": self.train_labels[i],
        })
        return df

    def pairs(self, threshold: float = 0.15, *, memorization: Memorization | ArrayLike | None = None):
        """High-influence pairs, as Feldman & Zhang report them: every kept pair with influence above ``threshold``.

        Parameters
        ----------
        threshold : float, default 0.15
            Feldman & Zhang's threshold for their tables of high-influence pairs.
        memorization : Memorization or float array [N], optional
            Adds the training example's memorization (and its standard error, from a
            :class:`~cscore_lab.memorization.Memorization`).

        Returns
        -------
        pandas.DataFrame
            eval_index, train_index, influence, stderr, eval_label, train_label, same_label
            [, memorization, memorization_stderr], highest influence first. Only the kept top-k are
            searched: a :class:`UserWarning` says how many targets have all ``k`` kept values above
            the threshold (more pairs may exist there; recompute with a larger ``k``).
        """
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not is_threshold(threshold):
            raise ValueError(f"threshold must be a number in {THRESHOLD_INTERVAL} (influence is a difference of "
                             f"probabilities), got {threshold!r}")
        df = self.to_frame()
        df = df[df["influence"] > threshold].drop(columns="rank")
        df["same_label"] = df["eval_label"].to_numpy() == df["train_label"].to_numpy()
        for name, col in self._memorization_columns(memorization, df["train_index"].to_numpy()).items():
            df[name] = col
        df = df.sort_values(["influence", "eval_index", "train_index"], ascending=[False, True, True],
                            kind="stable").reset_index(drop=True)
        full = int((self.top_value[:, -1] > threshold).sum()) if self.k else 0
        df.attrs["saturated_targets"] = full
        if full:
            warnings.warn(f"{full} targets have all k={self.k} kept influences above {threshold:g}: more pairs "
                          f"may exist for them; recompute with a larger k", UserWarning, stacklevel=2)
        return df

    def for_example(self, j: int, *, memorization: Memorization | ArrayLike | None = None):
        """The training examples target ``j`` depends on most: rank, train_index, influence, stderr, train_label."""
        import pandas as pd

        if isinstance(j, bool) or not isinstance(j, (int, np.integer)) or not 0 <= j < self.n_eval:
            raise ValueError(f"j must be a target index in [0, {self.n_eval}), got {j!r}")
        j = int(j) % self.n_eval
        keep = self.top_index[j] >= 0
        i = self.top_index[j][keep]
        df = pd.DataFrame({"rank": np.nonzero(keep)[0], "train_index": i, "influence": self.top_value[j][keep],
                           "stderr": self.top_stderr[j][keep], "train_label": self.train_labels[i]})
        for name, col in self._memorization_columns(memorization, i).items():
            df[name] = col
        df.attrs["eval_index"], df.attrs["eval_label"] = j, int(self.eval_labels[j])
        return df

    def summary(self) -> dict[str, Any]:
        top = self.top_value[:, 0] if self.k else np.array([])
        top = top[np.isfinite(top)]
        return {
            "dataset": self.dataset, "target": "evaluation set" if self.target == "eval" else "held-out training examples",
            "targets": self.n_eval, "training_examples": self.n_train, "k": self.k, "ratios": len(self.ratios),
            "models": int(sum(self.models_per_ratio)), "pairs_above_0.15": int((self.top_value > 0.15).sum()),
            "max_influence": float(top.max()) if top.size else float("nan"),
            "mean_top_influence": float(top.mean()) if top.size else float("nan"),
        }

    # ------------------------------------------------------------------ ResultTable
    def _arrays(self) -> dict[str, np.ndarray]:
        return {"top_index": self.top_index, "top_value": self.top_value, "top_stderr": self.top_stderr,
                "train_labels": self.train_labels, "eval_labels": self.eval_labels}

    def _info(self) -> dict[str, Any]:
        return {"ratios": list(self.ratios), "models_per_ratio": list(self.models_per_ratio), "target": self.target,
                "min_models": self.min_models, "dataset": self.dataset, "eval_dataset": self.eval_dataset,
                "meta": self.meta}

    @classmethod
    def _from_saved(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> Influence:
        return cls(top_index=arrays["top_index"], top_value=arrays["top_value"], top_stderr=arrays["top_stderr"],
                   train_labels=arrays["train_labels"], eval_labels=arrays["eval_labels"],
                   ratios=tuple(info["ratios"]), models_per_ratio=tuple(info["models_per_ratio"]),
                   target=info["target"], min_models=int(info["min_models"]), dataset=info["dataset"],
                   eval_dataset=info["eval_dataset"], meta=info.get("meta", {}))

    def _html_title(self) -> str:
        on = "evaluation examples" if self.target == "eval" else "held-out training examples"
        return f"Influence of training examples on {on} (Feldman & Zhang 2020): the 20 strongest pairs"

    def _html_frame(self):
        df = self.to_frame()
        return df.sort_values("influence", ascending=False, kind="stable").head(20).reset_index(drop=True)

    def _html_notes(self) -> list[str]:
        s = self.summary()
        return [(f"{s['targets']} targets, top {s['k']} of {s['training_examples']} training examples each, "
                f"{s['models']} models over {s['ratios']} ratios; {s['pairs_above_0.15']} kept pairs above 0.15.")]

    def __repr__(self) -> str:
        s = self.summary()
        return (f"Influence(target={self.target!r}, targets={s['targets']}, training_examples={s['training_examples']}, "
                f"k={s['k']}, models={s['models']}, pairs_above_0.15={s['pairs_above_0.15']})")


# ---------------------------------------------------------------------------------------- accumulator
class InfluenceAccumulator:
    """Bit-packed subset masks and correctness of every model, fed shard by shard; top-k influence on demand.

    Parameters
    ----------
    n_train : int
        N, the training examples (columns of the subset masks).
    ratios : sequence of float
        The plan's subset ratios.
    n_eval : int, optional
        N_eval, the examples of an evaluation set: :meth:`add` then takes ``eval_correct`` and
        the targets are those examples. Without it the targets are the training examples, each
        judged by the models that held it out, and :meth:`add` takes ``correct`` on all N.

    Notes
    -----
    Memory held: ``R_total * (N + N_eval) / 8`` bytes (:attr:`nbytes`); nothing scales as
    ``N x N_eval``. :meth:`result` recomputes from all models each time it is called.
    """

    def __init__(self, n_train: int, ratios: Sequence[float], *, n_eval: int | None = None):
        self.n_train = _check_count(n_train, "n_train", 1)
        self.ratios = _check_ratios(ratios)
        self.n_eval = None if n_eval is None else _check_count(n_eval, "n_eval", 1)
        self._index = {_ratio_key(r): i for i, r in enumerate(self.ratios)}
        self._trained: list[list[np.ndarray]] = [[] for _ in self.ratios]
        self._targets: list[list[np.ndarray]] = [[] for _ in self.ratios]

    @property
    def target(self) -> str:
        """``"eval"`` with an evaluation set, ``"train"`` without."""
        return "train" if self.n_eval is None else "eval"

    @property
    def n_targets(self) -> int:
        return self.n_train if self.n_eval is None else self.n_eval

    @property
    def models_per_ratio(self) -> tuple[int, ...]:
        return tuple(int(sum(p.shape[0] for p in chunks)) for chunks in self._trained)

    @property
    def models(self) -> int:
        return sum(self.models_per_ratio)

    @property
    def nbytes(self) -> int:
        """Bytes of packed masks held."""
        return int(sum(p.nbytes for chunks in (*self._trained, *self._targets) for p in chunks))

    def add(self, ratio: float, trained: ArrayLike, correct: ArrayLike | None = None, *,
            eval_correct: ArrayLike | None = None) -> None:
        """Keep the masks of one shard's models.

        Parameters
        ----------
        ratio : float
            Their subset ratio (one of :attr:`ratios`).
        trained : bool array [M, N]
            ``trained[m, i]``: example i was in model m's training subset.
        correct : bool array [M, N], optional
            Correctness on all N training examples; needed (only) without an evaluation set,
            where only the entries with ``trained`` False are used.
        eval_correct : bool array [M, N_eval], optional
            Correctness on the evaluation set; needed (only) with one.
        """
        s = _ratio_index(self._index, self.ratios, ratio)
        t = _check_mask("trained", trained, self.n_train)
        if self.n_eval is None:
            if eval_correct is not None:
                raise ValueError("this accumulator has no evaluation set (n_eval=None): pass correct [M, N], "
                                 "or create it with n_eval=N_eval to use eval_correct")
            if correct is None:
                raise ValueError("without an evaluation set, pass correct [M, N] (correctness on the training examples)")
            target = _check_mask("correct", correct, self.n_train, t.shape[0]) & ~t
        else:
            if eval_correct is None:
                raise ValueError(f"this accumulator estimates influence on an evaluation set of {self.n_eval} "
                                 f"examples: pass eval_correct [M, {self.n_eval}]")
            target = _check_mask("eval_correct", eval_correct, self.n_eval, t.shape[0])
        if t.shape[0] == 0:
            return
        self._trained[s].append(np.packbits(t, axis=1))
        self._targets[s].append(np.packbits(target, axis=1))

    def add_shard(self, shard: Any) -> bool:
        """Keep a stored shard's models: anything with ``ratio``, ``trained``, ``correct`` and, with an
        evaluation set, ``eval_correct``.

        Returns False, keeping nothing, for a shard of a ratio outside :attr:`ratios`, True otherwise.
        """
        if _ratio_key(shard.ratio) not in self._index:
            return False
        name = getattr(shard, "key", shard)
        if getattr(shard, "trained", None) is None:
            raise ValueError(f"shard {name!r} has no 'trained' mask: it was written before shards recorded "
                             f"correctness on training examples; recompute it")
        if self.n_eval is None:
            self.add(shard.ratio, shard.trained, shard.correct)
        else:
            ev = getattr(shard, "eval_correct", None)
            if ev is None:
                raise ValueError(f"shard {name!r} has no correctness on an evaluation set; estimate with the "
                                 f"evaluation set given, or without n_eval")
            self.add(shard.ratio, shard.trained, eval_correct=ev)
        return True

    # ------------------------------------------------------------------ result
    def _consolidate(self):
        """(T packed [R, ceil(N/8)], E packed [R, ceil(N_t/8)], ratio bounds [S+1]) in ratio order."""
        for chunks in (*self._trained, *self._targets):
            if len(chunks) > 1:
                merged = np.concatenate(chunks, axis=0)
                chunks[:] = [merged]
        mpr = self.models_per_ratio
        bounds = np.concatenate([[0], np.cumsum(mpr)]).astype(np.int64)
        nb, nbt = -(-self.n_train // 8), -(-self.n_targets // 8)
        t_all = np.concatenate([c[0] for c in self._trained if c], axis=0) if self.models else np.zeros((0, nb), np.uint8)
        e_all = np.concatenate([c[0] for c in self._targets if c], axis=0) if self.models else np.zeros((0, nbt), np.uint8)
        return t_all, e_all, bounds

    def memory_bound(self, *, k: int = 10, memory_budget: int = DEFAULT_MEMORY_BUDGET) -> int:
        """Bytes :meth:`result` allocates at most beyond :attr:`nbytes`: the budget (tiles or exact
        recomputation, one at a time), the top-k lists and outputs (``64 * k * N_eval``) and one
        copy of the packed masks."""
        k = _check_count(k, "k", 1)
        return int(memory_budget) + 64 * k * self.n_targets + self.nbytes + 4096

    def result(self, train_labels: ArrayLike, eval_labels: ArrayLike | None = None, *, k: int = 10,
               min_models: int = 1, memory_budget: int = DEFAULT_MEMORY_BUDGET, n_threads: int | None = None,
               **info: Any) -> Influence:
        """The top-k most influential training examples of every target, from the models kept so far.

        Parameters
        ----------
        train_labels : int array [N]
        eval_labels : int array [N_eval]
            Required with an evaluation set; without one the targets' labels are ``train_labels``.
        k : int, default 10
            Training examples kept per target.
        min_models : int, default 1
            A ratio is pooled for a pair only with at least this many models on each side (i in
            and i out; with j held out when the targets are training examples).
        memory_budget : int, default 64 MiB
            Bytes the tiles (and the exact recomputation) may use, whatever N; see :meth:`memory_bound`.
        n_threads : int, optional
            Worker threads (default ``os.cpu_count()``), each with single-threaded BLAS.
        **info
            ``dataset``, ``eval_dataset``, ``meta``: passed to :class:`Influence`.

        Returns
        -------
        Influence
        """
        train_labels = np.asarray(train_labels)
        if train_labels.shape != (self.n_train,) or train_labels.dtype.kind not in "iu":
            raise ValueError(f"train_labels must be {self.n_train} integer labels, got {train_labels.dtype} {train_labels.shape}")
        if self.n_eval is None:
            if eval_labels is not None:
                raise ValueError("this accumulator has no evaluation set: the targets' labels are train_labels; "
                                 "do not pass eval_labels")
            eval_labels = train_labels
        else:
            if eval_labels is None:
                raise ValueError(f"pass eval_labels: {self.n_eval} integer labels of the evaluation set")
            eval_labels = np.asarray(eval_labels)
            if eval_labels.shape != (self.n_eval,) or eval_labels.dtype.kind not in "iu":
                raise ValueError(f"eval_labels must be {self.n_eval} integer labels, got {eval_labels.dtype} {eval_labels.shape}")
        k = _check_count(k, "k", 1)
        min_models = _check_count(min_models, "min_models", 1)
        memory_budget = _check_count(memory_budget, "memory_budget", 1)
        n_threads = _check_count(os.cpu_count() or 1 if n_threads is None else n_threads, "n_threads", 1)
        if self.models == 0:
            raise ValueError("no models added yet: nothing to estimate influence from")

        t_all, e_all, bounds = self._consolidate()
        index, value, stderr = _topk_influence(t_all, e_all, bounds, self.n_train, self.n_targets, self.target,
                                               k, min_models, memory_budget, n_threads)
        return Influence(top_index=index, top_value=value, top_stderr=stderr, train_labels=train_labels,
                         eval_labels=eval_labels, ratios=self.ratios, models_per_ratio=self.models_per_ratio,
                         target=self.target, min_models=min_models, **info)
