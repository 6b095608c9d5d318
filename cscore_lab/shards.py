"""The unit of work of an estimation: a shard, a group of runs at one subset ratio trained together.

Shards are pure: a shard's result depends only on (recipe, data, plan seed, ratio, run indices),
so it can be retried anywhere, computed twice without harm and merged in any order. This module
is what a worker needs (a backend imports it and nothing above it): the plan's shards, each
model's subset, the job a worker receives and the function that computes one shard.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .data import Dataset
from .recipes import Plan, Recipe
from .shard_file import ShardResult, parse_shard_key, shard_key

__all__ = ["ShardSpec", "ShardJob", "ShardSelection", "TrainingDiverged", "plan_shards", "shard_specs", "select_shards", "subset_size",
           "draw_subset", "compute_shard"]


@dataclass(frozen=True)
class ShardSpec:
    """A group of runs at one ratio, trained together: runs ``start .. stop-1``."""

    ratio: float
    start: int
    stop: int

    @property
    def key(self) -> str:
        return shard_key(self.ratio, self.start, self.stop)

    @property
    def size(self) -> int:
        return self.stop - self.start


def subset_size(ratio: float, n: int) -> int:
    """Examples in each model's training subset at ``ratio`` of ``n`` examples."""
    return int(math.floor(ratio * n))


def plan_shards(plan: Plan, n_examples: int, num_classes: int) -> list[ShardSpec]:
    """The shards of ``plan`` for a fresh run, checked against the data set's size (see :func:`shard_specs`)."""
    for r in plan.ratios:
        k = subset_size(r, n_examples)
        if k < num_classes:
            raise ValueError(
                f"subset ratio {r:g} of {n_examples} examples gives subsets of {k}, fewer than the "
                f"{num_classes} classes; use a larger ratio"
            )
    return shard_specs(plan)


def shard_specs(plan: Plan) -> list[ShardSpec]:
    """The plan's shards for a fresh run: runs ``[0, runs)`` of each ratio cut at multiples of ``shard_size``."""
    return select_shards(plan, ()).todo


@dataclass
class ShardSelection:
    """Which finished shards a plan uses, which it still needs, and which are redundant.

    ``reuse`` are finished shards (their runs below ``plan.runs`` count), ``todo`` the shards
    still to train (the gaps, cut at multiples of ``shard_size``), ``redundant`` finished shards
    that overlap a reused one (a smaller plan's shard inside a larger one's).
    """

    reuse: list[ShardSpec]
    todo: list[ShardSpec]
    redundant: list[str]


def select_shards(plan: Plan, finished: Any) -> ShardSelection:
    """Cover runs ``[0, plan.runs)`` of every ratio with finished shards where possible.

    Every finished model is reused whatever shard size made it: the finished shards of a ratio
    are taken in order of start (the longest first at equal starts) as long as they do not overlap,
    and only the gaps are trained, cut at multiples of ``shard_size`` so an interrupted and a fresh
    run train the same groups. Shards of ratios not in the plan are left alone.
    """
    by_ratio: dict[int, list[tuple[int, int, str]]] = {}
    for key in finished:
        parsed = parse_shard_key(key)
        if parsed is not None:
            ratio_key, start, stop = parsed
            by_ratio.setdefault(ratio_key, []).append((start, stop, key))
    reuse, todo, redundant = [], [], []
    for r in plan.ratios:
        chosen: list[tuple[int, int]] = []
        pos = 0
        for start, stop, key in sorted(by_ratio.get(int(round(r * 1_000_000)), []), key=lambda t: (t[0], -t[1])):
            if start >= plan.runs:
                continue  # beyond this plan: kept for a larger one
            if start >= pos and stop > start:
                chosen.append((start, stop))
                reuse.append(ShardSpec(r, start, stop))
                pos = stop
            else:
                redundant.append(key)
        gaps, pos = [], 0
        for start, stop in chosen:
            if start > pos:
                gaps.append((pos, start))
            pos = max(pos, stop)
        if pos < plan.runs:
            gaps.append((pos, plan.runs))
        for a, b in gaps:
            while a < b:
                cut = min(b, (a // plan.shard_size + 1) * plan.shard_size)
                todo.append(ShardSpec(r, a, cut))
                a = cut
    return ShardSelection(reuse, todo, redundant)


def draw_subset(seed: int, n_examples: int, size: int) -> np.ndarray:
    """Sorted indices of a uniformly random subset of ``size`` examples."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n_examples, size=size, replace=False))


@dataclass
class ShardJob:
    """Everything needed to compute any shard of one estimation (what a worker receives)."""

    dataset: Dataset
    recipe: Recipe
    seed: int
    device: str = "auto"
    model_factory: Callable[[], Any] | None = None
    eval_dataset: Dataset | None = None  # every model's correctness on it is kept too (influence)
    _prepared: Any = field(default=None, repr=False, compare=False)
    _prepared_eval: Any = field(default=None, repr=False, compare=False)

    def prepared(self):
        """(device, x, y) on the resolved device, computed once per process."""
        if self._prepared is None:
            from .trainer import prepare_inputs, resolve_device

            dev = resolve_device(self.device)
            x, y = prepare_inputs(self.dataset, self.recipe, dev)
            self._prepared = (dev, x, y)
        return self._prepared

    def prepared_eval(self):
        """(device, x, y) of the evaluation set, scaled as the training data are (same statistics)."""
        if self._prepared_eval is None:
            from .trainer import prepare_inputs

            dev, _, _ = self.prepared()
            x, y = prepare_inputs(self.eval_dataset, self.recipe, dev, reference=self.dataset)
            self._prepared_eval = (dev, x, y)
        return self._prepared_eval

    def __getstate__(self):  # ship the data, never the tensors cached on a device
        state = self.__dict__.copy()
        state["_prepared"] = None
        state["_prepared_eval"] = None
        return state


class TrainingDiverged(RuntimeError):
    """A shard's models diverged: non-finite weights, or a loss far beyond any training's (a learning rate too large)."""


class _FiniteCheck:
    """After every epoch: stop the shard with a clear message once any model has diverged.

    Diverged means non-finite weights, or a mean cross-entropy on a probe of the data (its first
    :attr:`PROBE` examples) above :attr:`FACTOR` x an untrained model's (log K). Exploding SGD does
    not always end in NaN: its ReLUs die and it keeps finite weights of 1e22 whose loss is ~1e6
    (learning rate 1e6 on digits), while every sane or merely poor training stays below ~100 x log K
    (learning rate 100 on digits: ~90 x; 10: ~4 x). The probe is one no-grad forward pass per epoch.
    """

    PROBE = 256
    FACTOR = 1000.0

    def __init__(self, recipe: Recipe, spec: "ShardSpec", x: Any, y: Any, num_classes: int):
        self.recipe, self.spec = recipe, spec
        self.x, self.y = x[: self.PROBE], y[: self.PROBE]
        self.untrained = math.log(num_classes)

    def _worst_loss(self, group: Any) -> float:
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            logits = group.logits(self.x).float()
            m, k = logits.shape[0], logits.shape[-1]
            loss = F.cross_entropy(logits.reshape(-1, k), self.y.repeat(m), reduction="none").view(m, -1).mean(1)
        return float(loss.max()) if bool(torch.isfinite(loss).all()) else math.inf

    def on_epoch_end(self, epoch: int, group: Any) -> None:
        import torch

        params = group.params.values() if isinstance(group.params, dict) else group.params
        finite = all(bool(torch.isfinite(p).all()) for p in params)
        worst = self._worst_loss(group) if finite else math.inf
        if finite and worst <= self.FACTOR * self.untrained:
            return
        r = self.recipe
        what = ("non-finite weights" if not finite else
                f"a loss of {worst:.3g} on the first {len(self.y)} examples (an untrained model's is "
                f"{self.untrained:.2f})")
        raise TrainingDiverged(
            f"training diverged: recipe {r.name!r} (learning rate {r.learning_rate:g}, momentum {r.momentum:g}) "
            f"gave {what} after epoch {epoch} in shard {self.spec.key}; lower the learning rate")


def compute_shard(job: ShardJob, spec: ShardSpec, stop: threading.Event | None = None,
                  progress: Callable[[int, int], None] | None = None) -> ShardResult:
    """Train the shard's models and return which examples each held out and got right. Pure in (job, spec)."""
    from .trainer import model_seeds, predict_correct, train_group

    t0 = time.perf_counter()
    _, x, y = job.prepared()
    n = len(job.dataset)
    size = subset_size(spec.ratio, n)
    seeds = [model_seeds(job.seed, spec.ratio, run) for run in range(spec.start, spec.stop)]
    subsets = [draw_subset(s.subset, n, size) for s in seeds]
    group = train_group(
        x, y, subsets, job.recipe, seeds, num_classes=job.dataset.num_classes,
        model_factory=job.model_factory, stop=stop, progress=progress,
        callbacks=[_FiniteCheck(job.recipe, spec, x, y, job.dataset.num_classes)],
    )
    correct = predict_correct(group, x, y)
    heldout = np.ones((spec.size, n), dtype=bool)
    for i, s in enumerate(subsets):
        heldout[i, s] = False
    eval_correct = None
    if job.eval_dataset is not None:
        _, ex, ey = job.prepared_eval()
        eval_correct = predict_correct(group, ex, ey)
    return ShardResult(
        key=spec.key, ratio=spec.ratio, runs=np.arange(spec.start, spec.stop, dtype=np.int64),
        heldout=heldout, correct=correct, seconds=time.perf_counter() - t0, eval_correct=eval_correct,
    )
