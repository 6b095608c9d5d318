"""Mini-batch samplers driven by a per-example score: curricula, anti-curricula and score weighting.

Every sampler here takes a score oriented like the C-score (higher = more regular: a C-score,
``-memorization``, any proxy of :mod:`cscore_lab.proxies`) and yields batches of example indices.

Strategies (``strategy=``)
--------------------------
``"curriculum"``
    Easy to hard (Hacohen & Weinshall, *On the power of curriculum learning in training deep
    networks*, ICML 2019; Wu, Dyer & Neyshabur, *When do curricula work?*, ICLR 2021): the examples
    are ordered from the most regular to the least, and the training pool at step ``t`` is the
    first ``g(t)`` fraction of that order, ``g`` a pacing function (:class:`Pacing`). Each batch
    is ``batch_size`` indices drawn uniformly, independently and with replacement, from the pool.
``"anti-curriculum"``
    Hard to easy: the same with the order reversed (exactly ``curriculum_order(...)[::-1]``).
``"random-curriculum"``
    The same pacing over a random order: Hacohen & Weinshall's control, which separates the
    effect of *which* examples come first from the effect of a small pool early in training.
``"random"``
    Batches drawn uniformly, with replacement, from the whole data (no pacing): the baseline.
``"weighted-easy"`` / ``"weighted-hard"``
    No pacing; every batch index is drawn with probability increasing (easy) or decreasing
    (hard) with the score (:func:`score_weights`).

Orders are **class-balanced** when labels are given (as in Wu et al.'s code, which balances every
order): every prefix of the order holds each class in proportion to its size, so the early pool
of a curriculum is not missing the classes whose examples score lower. Ties in the score are
broken by a seeded random permutation, never by index (data sets stored by class would otherwise
put one class first).

For a user's own training loop: :class:`CurriculumSampler` is a ``torch.utils.data.Sampler``
of batches (``DataLoader(ds, batch_sampler=CurriculumSampler(...))``), and the arrays behind it
come from :func:`curriculum_order`, :meth:`Pacing.pool_sizes` and :func:`score_weights`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ._scores import _from_object, normalized_rank, single_score

__all__ = [
    "PACINGS", "STRATEGIES", "Pacing", "curriculum_order", "balanced_order", "score_weights",
    "make_stream", "EpochStream", "PacedStream", "WeightedStream", "CurriculumSampler",
]

PACINGS = ("linear", "root", "step", "exponential")
STRATEGIES = ("curriculum", "anti-curriculum", "random-curriculum", "random", "weighted-easy", "weighted-hard")
PACED = ("curriculum", "anti-curriculum", "random-curriculum")


# --------------------------------------------------------------------------- pacing


@dataclass(frozen=True)
class Pacing:
    """How much of the ordered data the training pool holds at each step: ``g(t)`` in (0, 1].

    With ``b = start``, ``T`` the total number of steps and ``tau = t / (full_at * T)``
    (Wu et al. 2021's parametrisation: the pool starts at ``b`` of the data and is the whole
    data from step ``full_at * T`` on), all capped at 1:

    * ``"linear"``: ``g = b + (1 - b) * tau``
    * ``"root"``: ``g = b + (1 - b) * sqrt(tau)`` (grows fast, then slowly)
    * ``"step"``: ``g = b`` while ``tau < 1``, then 1 (one step)
    * ``"exponential"``: Hacohen & Weinshall's *fixed exponential pacing*: ``g = b * inc**k`` at
      stage ``k = floor(K * tau)``, with ``K = ceil(log(1/b) / log(inc))`` stages of equal length,
      so the pool multiplies by ``inc`` per stage and is whole at ``tau = 1``.

    Parameters
    ----------
    kind : {"linear", "root", "step", "exponential"}, default "linear"
    start : float in (0, 1], default 0.1
        ``b``, the fraction of the data in the pool at step 0.
    full_at : float > 0, default 0.5
        ``a``, the fraction of the training steps after which the pool is the whole data
        (values above 1 never reach it).
    inc : float > 1, default 2.0
        Growth factor per stage of ``"exponential"``.
    """

    kind: str = "linear"
    start: float = 0.1
    full_at: float = 0.5
    inc: float = 2.0

    def __post_init__(self) -> None:
        if self.kind not in PACINGS:
            raise ValueError(f"pacing kind must be one of {PACINGS}, got {self.kind!r}")
        if not (isinstance(self.start, (int, float)) and 0.0 < self.start <= 1.0):
            raise ValueError(f"pacing start must be a fraction in (0, 1], got {self.start!r}")
        if not (isinstance(self.full_at, (int, float)) and math.isfinite(self.full_at) and self.full_at > 0):
            raise ValueError(f"pacing full_at must be a positive fraction of the training steps, got {self.full_at!r}")
        if not (isinstance(self.inc, (int, float)) and math.isfinite(self.inc) and self.inc > 1):
            raise ValueError(f"pacing inc must be a number > 1, got {self.inc!r}")

    @classmethod
    def of(cls, pacing: "Pacing | str") -> "Pacing":
        """``pacing`` itself, or the default :class:`Pacing` of that kind."""
        if isinstance(pacing, Pacing):
            return pacing
        if isinstance(pacing, str):
            return cls(kind=pacing)
        raise TypeError(f"pacing must be a Pacing or one of {PACINGS}, got {type(pacing).__name__}")

    def fraction(self, step: Any, total_steps: int) -> np.ndarray:
        """``g(step)`` for one step or an array of steps (counted from 0) of a run of ``total_steps``."""
        if not (isinstance(total_steps, (int, np.integer)) and total_steps >= 1):
            raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
        t = np.asarray(step, dtype=np.float64)
        tau = t / (self.full_at * float(total_steps))
        b = float(self.start)
        if self.kind == "linear":
            g = b + (1.0 - b) * tau
        elif self.kind == "root":
            g = b + (1.0 - b) * np.sqrt(np.maximum(tau, 0.0))
        elif self.kind == "step":
            g = np.where(tau < 1.0, b, 1.0)
        else:  # exponential
            stages = 0 if b >= 1.0 else math.ceil(math.log(1.0 / b) / math.log(self.inc) - 1e-12)
            g = b * np.power(self.inc, np.floor(stages * tau)) if stages else np.ones_like(tau)
        return np.minimum(g, 1.0)

    def pool_sizes(self, n: int, total_steps: int, *, min_size: int = 1) -> np.ndarray:
        """Pool size at every step ``0 .. total_steps-1``: ``clip(ceil(g(t) * n), min_size, n)``, int64."""
        if not (isinstance(n, (int, np.integer)) and n >= 1):
            raise ValueError(f"n must be a positive number of examples, got {n!r}")
        g = self.fraction(np.arange(total_steps), total_steps)
        sizes = np.ceil(g * n - 1e-9).astype(np.int64)
        return np.clip(sizes, min(max(int(min_size), 1), n), n)

    def label(self) -> str:
        return f"{self.kind}(start={self.start:g}, full_at={self.full_at:g}" + (
            f", inc={self.inc:g})" if self.kind == "exponential" else ")")


# --------------------------------------------------------------------------- orders and weights


def _check_labels(labels: Any, n: int) -> np.ndarray:
    lab = np.asarray(labels)
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be integers of shape ({n},), got {lab.dtype} of shape {lab.shape}")
    return lab.astype(np.int64)


def balanced_order(order: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Reorder ``order`` so that every prefix holds each class in proportion to its size.

    Within each class the examples keep their relative order; an example's place is its
    within-class quantile ``(rank + 0.5) / class_size``, ties between classes going to the one
    whose example came first in ``order``. With equal class sizes this is Wu et al.'s
    ``balance_order`` (one example of each class per round, in the original order).
    """
    order = np.asarray(order, dtype=np.int64)
    lab = np.asarray(labels)[order]
    counts = np.bincount(lab)
    within = np.empty(order.size, dtype=np.int64)
    seen = np.zeros(counts.size, dtype=np.int64)
    for pos, c in enumerate(lab):  # rank of each example within its class, in order
        within[pos] = seen[c]
        seen[c] += 1
    quantile = (within + 0.5) / counts[lab]
    return order[np.lexsort((np.arange(order.size), quantile))]


def curriculum_order(scores: Any, *, labels: Any = None, reverse: bool = False, seed: int = 0) -> np.ndarray:
    """Example indices from the most regular to the least (``reverse=True``: least regular first).

    Parameters
    ----------
    scores : array-like [N] or a one-column score container (see :func:`~cscore_lab.uses.score_columns`)
        Higher = more regular.
    labels : int array [N], optional
        When given, the order is class-balanced (:func:`balanced_order`).
    reverse : bool, default False
        Least regular first: exactly the reverse of the order with ``reverse=False``.
    seed : int, default 0
        Breaks ties in the score (a seeded random permutation).

    Returns
    -------
    int64 [N]
    """
    s = _scores_array(scores)
    n = s.size
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E]))
    tiebreak = np.empty(n, dtype=np.int64)
    tiebreak[rng.permutation(n)] = np.arange(n)
    order = np.lexsort((tiebreak, -s))
    if labels is not None:
        order = balanced_order(order, _check_labels(labels, n))
    return order[::-1].copy() if reverse else order


def score_weights(scores: Any, *, direction: str = "easy", ratio: float = 10.0) -> np.ndarray:
    """Sampling probabilities that increase (``"easy"``) or decrease (``"hard"``) with the score.

    ``p_i ∝ ratio ** u_i`` (easy) or ``ratio ** (1 - u_i)`` (hard), where ``u_i`` in [0, 1] is the
    example's normalized rank (:func:`~cscore_lab.uses._scores.normalized_rank`; tied scores
    share a weight). Ranks rather than raw values make the weighting the same for a C-score in
    [0, 1] and for a proxy on any scale: the most favoured example is exactly ``ratio`` times
    as likely as the least favoured one.

    Returns
    -------
    float64 [N], non-negative, summing to 1, monotone in the score.
    """
    if direction not in ("easy", "hard"):
        raise ValueError(f"direction must be 'easy' (regular examples more likely) or 'hard', got {direction!r}")
    if not (isinstance(ratio, (int, float)) and math.isfinite(ratio) and ratio >= 1):
        raise ValueError(f"ratio (most / least likely example) must be a finite number >= 1, got {ratio!r}")
    u = normalized_rank(_scores_array(scores))
    if direction == "hard":
        u = 1.0 - u
    w = np.power(float(ratio), u)
    return w / w.sum()


def _scores_array(scores: Any) -> np.ndarray:
    """The one score column of ``scores`` (any accepted container), validated, as float64 [N]."""
    cols, _, _ = _from_object(scores, "score")
    if len(cols) != 1:
        raise ValueError(f"expected one score, got {len(cols)} ({', '.join(map(str, cols))}); pick one")
    shape = np.shape(next(iter(cols.values())))
    if len(shape) != 1 or shape[0] < 1:
        raise ValueError(f"scores must be one-dimensional with at least one example, got shape {shape}")
    return single_score(scores, shape[0])[1]


# --------------------------------------------------------------------------- batch streams


class EpochStream:
    """Random reshuffling of ``indices``: one fresh permutation per pass, read ``batch_size`` at a time.

    Batches run across pass boundaries, so every batch is full and ``k`` steps see exactly
    ``k * batch_size`` examples; ``next(a)`` then ``next(b)`` equals ``next(a + b)``.
    """

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int):
        self.indices = np.asarray(indices, dtype=np.int64)
        if self.indices.size < 1:
            raise ValueError("EpochStream needs at least one index")
        self.batch_size = int(batch_size)
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xE9]))
        self._buf = np.empty(0, dtype=np.int64)

    def next(self, k: int) -> np.ndarray:
        need = k * self.batch_size
        parts = [self._buf]
        have = self._buf.size
        while have < need:
            p = self.indices[self._rng.permutation(self.indices.size)]
            parts.append(p)
            have += p.size
        flat = np.concatenate(parts)
        self._buf = flat[need:]
        return flat[:need].reshape(k, self.batch_size)


class PacedStream:
    """Batches drawn uniformly, with replacement, from ``order[:pool_sizes[t]]`` at step ``t``.

    Past the last entry of ``pool_sizes`` the last pool size is kept.
    """

    def __init__(self, order: np.ndarray, pool_sizes: np.ndarray, batch_size: int, seed: int):
        self.order = np.asarray(order, dtype=np.int64)
        self.pool_sizes = np.asarray(pool_sizes, dtype=np.int64)
        self.batch_size = int(batch_size)
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xB7]))
        self.step = 0

    def next(self, k: int) -> np.ndarray:
        t = np.minimum(np.arange(self.step, self.step + k), self.pool_sizes.size - 1)
        pools = self.pool_sizes[t].astype(np.float64)[:, None]
        u = self._rng.random((k, self.batch_size))
        pos = np.minimum((u * pools).astype(np.int64), self.pool_sizes[t][:, None] - 1)
        self.step += k
        return self.order[pos]


class WeightedStream:
    """Batches of indices drawn independently, with replacement, with probabilities ``weights``."""

    def __init__(self, weights: np.ndarray, batch_size: int, seed: int):
        w = np.asarray(weights, dtype=np.float64)
        self._cdf = np.cumsum(w / w.sum())
        self._cdf[-1] = 1.0
        self.batch_size = int(batch_size)
        self._rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x3D]))

    def next(self, k: int) -> np.ndarray:
        u = self._rng.random((k, self.batch_size))
        return np.searchsorted(self._cdf, u, side="right").astype(np.int64)


def make_stream(
    strategy: str,
    scores: np.ndarray,
    *,
    batch_size: int,
    steps: int,
    pacing: Pacing | str = "linear",
    labels: np.ndarray | None = None,
    weight_ratio: float = 10.0,
    seed: int = 0,
) -> EpochStream | PacedStream | WeightedStream:
    """The batch stream of one strategy (see the module docstring); what every sampler here runs on."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
    n = scores.size
    order_seed, batch_seed = (int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))
                              for c in np.random.SeedSequence(int(seed)).spawn(2))
    if strategy in ("weighted-easy", "weighted-hard"):
        direction = "easy" if strategy == "weighted-easy" else "hard"
        return WeightedStream(score_weights(scores, direction=direction, ratio=weight_ratio), batch_size, batch_seed)
    if strategy == "random":
        return PacedStream(np.arange(n), np.array([n]), batch_size, batch_seed)
    if strategy == "random-curriculum":
        order = np.random.default_rng(np.random.SeedSequence([order_seed, 0x5A])).permutation(n)
    else:
        order = curriculum_order(scores, labels=labels, reverse=strategy == "anti-curriculum", seed=order_seed)
    sizes = Pacing.of(pacing).pool_sizes(n, steps, min_size=batch_size)
    return PacedStream(order, sizes, batch_size, batch_seed)


# --------------------------------------------------------------------------- torch sampler

try:  # torch is a dependency; the import is here so the arrays above work without it
    from torch.utils.data import Sampler as _TorchSampler
except ImportError:  # pragma: no cover
    _TorchSampler = object  # type: ignore[misc,assignment]


class CurriculumSampler(_TorchSampler):  # type: ignore[misc]
    """A ``torch.utils.data`` batch sampler that follows a score-driven strategy for ``steps`` batches.

    Use it as ``DataLoader(dataset, batch_sampler=CurriculumSampler(scores, steps=1000))``: each
    item is one batch (a list of ``batch_size`` example indices). Iterating again replays the
    same batches (the whole schedule is fixed by ``seed``).

    Parameters
    ----------
    scores : array-like [N] or a one-column score container
        Higher = more regular (C-score, ``-memorization``, a proxy).
    strategy : {"curriculum", "anti-curriculum", "random-curriculum", "random", "weighted-easy", "weighted-hard"}
        See :mod:`cscore_lab.uses.samplers`. Default "curriculum".
    pacing : Pacing or {"linear", "root", "step", "exponential"}, default "linear"
        The pool's growth, for the three paced strategies.
    batch_size : int, default 32
    steps : int
        Batches in the schedule (the pacing is laid over them).
    seed : int, default 0
        Fixes ties in the order and every batch.
    labels : int array [N], optional
        Class-balance the order (see :func:`balanced_order`).
    weight_ratio : float, default 10
        For the weighted strategies: how much more likely the most favoured example is than the
        least favoured one (:func:`score_weights`).

    Attributes
    ----------
    order : int64 [N] or None
        The order the pool grows along (paced strategies).
    pool_sizes : int64 [steps] or None
        The pool size at each step (paced strategies).
    weights : float64 [N] or None
        The sampling probabilities (weighted strategies).
    """

    def __init__(self, scores: Any, *, strategy: str = "curriculum", pacing: Pacing | str = "linear",
                 batch_size: int = 32, steps: int, seed: int = 0, labels: Any = None, weight_ratio: float = 10.0):
        s = _scores_array(scores)
        if not (isinstance(batch_size, (int, np.integer)) and batch_size >= 1):
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not (isinstance(steps, (int, np.integer)) and steps >= 1):
            raise ValueError(f"steps must be a positive integer, got {steps!r}")
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; choose from {STRATEGIES}")
        self.scores = s
        self.strategy = strategy
        self.pacing = Pacing.of(pacing)
        self.batch_size = int(batch_size)
        self.steps = int(steps)
        self.seed = int(seed)
        self.labels = None if labels is None else _check_labels(labels, s.size)
        self.weight_ratio = float(weight_ratio)
        probe = self._stream()
        paced = isinstance(probe, PacedStream) and strategy != "random"
        self.order = probe.order if paced else None
        self.pool_sizes = probe.pool_sizes if paced else None
        self.weights = (score_weights(s, direction="easy" if strategy == "weighted-easy" else "hard", ratio=weight_ratio)
                        if isinstance(probe, WeightedStream) else None)

    def _stream(self):
        return make_stream(self.strategy, self.scores, batch_size=self.batch_size, steps=self.steps,
                           pacing=self.pacing, labels=self.labels, weight_ratio=self.weight_ratio, seed=self.seed)

    def batches(self) -> np.ndarray:
        """The whole schedule as an int64 array [steps, batch_size]."""
        return self._stream().next(self.steps)

    def __iter__(self) -> Iterator[list[int]]:
        stream = self._stream()
        for start in range(0, self.steps, 256):
            for row in stream.next(min(256, self.steps - start)):
                yield row.tolist()

    def __len__(self) -> int:
        return self.steps

    def __repr__(self) -> str:
        extra = f", pacing={self.pacing.label()}" if self.strategy in PACED else ""
        return (f"CurriculumSampler(strategy={self.strategy!r}{extra}, examples={self.scores.size}, "
                f"batch_size={self.batch_size}, steps={self.steps}, seed={self.seed})")
