"""Holdout estimation of C-scores: plan the (ratio, run) grid into shards, run them, aggregate.

Shards are pure: a shard's result depends only on (recipe, data, plan seed, ratio, run
indices), so it can be retried anywhere, computed twice without harm and merged in any
order. The :class:`RunStore` is the truth; :class:`Estimation` only drives it.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .cscores import CScores, aggregate_counts, split_half_reliability
from .data import Dataset
from .recipes import Plan, Recipe, get_preset
from .store import RunStore, ShardResult

__all__ = [
    "ShardSpec", "ShardJob", "plan_shards", "subset_size", "draw_subset", "compute_shard",
    "CountAccumulator", "Progress", "Estimation", "estimate", "default_run_folder", "scores_from_store",
]


@dataclass(frozen=True)
class ShardSpec:
    """A group of runs at one ratio, trained together: runs ``start .. stop-1``."""

    ratio: float
    start: int
    stop: int

    @property
    def key(self) -> str:
        return f"r{self.ratio:.6f}_runs{self.start:05d}-{self.stop:05d}"

    @property
    def size(self) -> int:
        return self.stop - self.start


def subset_size(ratio: float, n: int) -> int:
    return int(math.floor(ratio * n))


def plan_shards(plan: Plan, n_examples: int, num_classes: int) -> list[ShardSpec]:
    """Shards for ``plan``; run ranges are aligned to ``shard_size`` from 0 so a plan with more
    runs reuses every shard of a smaller one."""
    for r in plan.ratios:
        k = subset_size(r, n_examples)
        if k < num_classes:
            raise ValueError(
                f"subset ratio {r:g} of {n_examples} examples gives subsets of {k}, fewer than the "
                f"{num_classes} classes; use a larger ratio"
            )
    return shard_specs(plan)


def shard_specs(plan: Plan) -> list[ShardSpec]:
    """The plan's shards, without checking them against a data set."""
    return [
        ShardSpec(r, start, min(start + plan.shard_size, plan.runs))
        for r in plan.ratios
        for start in range(0, plan.runs, plan.shard_size)
    ]


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
    _prepared: Any = field(default=None, repr=False, compare=False)

    def prepared(self):
        """(device, x, y) on the resolved device, computed once per process."""
        if self._prepared is None:
            from .trainer import prepare_inputs, resolve_device

            dev = resolve_device(self.device)
            x, y = prepare_inputs(self.dataset, self.recipe, dev)
            self._prepared = (dev, x, y)
        return self._prepared

    def __getstate__(self):  # ship the data, never the tensors cached on a device
        state = self.__dict__.copy()
        state["_prepared"] = None
        return state


def compute_shard(job: ShardJob, spec: ShardSpec, stop: threading.Event | None = None) -> ShardResult:
    """Train the shard's models and return their held-out correctness. Pure in (job, spec)."""
    from .trainer import model_seeds, predict_correct, train_group

    t0 = time.perf_counter()
    _, x, y = job.prepared()
    n = len(job.dataset)
    size = subset_size(spec.ratio, n)
    seeds = [model_seeds(job.seed, spec.ratio, run) for run in range(spec.start, spec.stop)]
    subsets = [draw_subset(s.subset, n, size) for s in seeds]
    group = train_group(
        x, y, subsets, job.recipe, seeds, num_classes=job.dataset.num_classes,
        model_factory=job.model_factory, stop=stop,
    )
    correct = predict_correct(group, x, y)
    heldout = np.ones((spec.size, n), dtype=bool)
    for i, s in enumerate(subsets):
        heldout[i, s] = False
    return ShardResult(
        key=spec.key, ratio=spec.ratio, runs=np.arange(spec.start, spec.stop, dtype=np.int64),
        heldout=heldout, correct=correct & heldout, seconds=time.perf_counter() - t0,
    )


class CountAccumulator:
    """Running counts per (half, ratio, example), so the estimate can be shown after every shard."""

    def __init__(self, n_examples: int, ratios: Sequence[float]):
        self.ratios = tuple(ratios)
        self._index = {r: i for i, r in enumerate(self.ratios)}
        shape = (2, len(self.ratios), n_examples)
        self.correct = np.zeros(shape, dtype=np.int64)
        self.heldout = np.zeros(shape, dtype=np.int64)
        self.runs_done = 0

    def add(self, shard: ShardResult) -> None:
        i = self._index.get(shard.ratio)
        if i is None:
            return  # a shard of a ratio not in this plan: kept in the store, not counted
        for half in (0, 1):
            rows = (shard.runs % 2) == half
            if rows.any():
                self.heldout[half, i] += shard.heldout[rows].sum(axis=0)
                self.correct[half, i] += shard.correct[rows].sum(axis=0)
        self.runs_done += len(shard.runs)

    def to_cscores(self, labels: np.ndarray, **info: Any) -> CScores:
        correct, heldout = self.correct.sum(axis=0), self.heldout.sum(axis=0)
        per_ratio, score, stderr = aggregate_counts(correct, heldout)
        reliability = split_half_reliability(self.correct, self.heldout) if self.runs_done >= 2 else float("nan")
        return CScores(
            scores=score, labels=labels, ratios=self.ratios, per_ratio=per_ratio, heldout_counts=heldout,
            stderr=stderr, reliability=reliability, **info,
        )


@dataclass
class Progress:
    """The state of an estimation, computed once; progress bars and widgets only render it."""

    total_runs: int = 0
    done_runs: int = 0  # including runs found finished in the store
    resumed_runs: int = 0  # finished before this session started
    state: str = "pending"  # pending | running | stopping | stopped | finished | failed
    started: float = 0.0
    elapsed: float = 0.0
    error: str | None = None

    @property
    def models_per_second(self) -> float:
        trained = self.done_runs - self.resumed_runs
        return trained / self.elapsed if self.elapsed > 0 and trained > 0 else 0.0

    @property
    def eta_seconds(self) -> float:
        rate = self.models_per_second
        return (self.total_runs - self.done_runs) / rate if rate > 0 else float("nan")

    @property
    def fraction(self) -> float:
        return self.done_runs / self.total_runs if self.total_runs else 0.0

    def line(self) -> str:
        eta = self.eta_seconds
        eta_s = f"{eta:.0f}s" if math.isfinite(eta) else "?"
        return (f"{self.done_runs}/{self.total_runs} runs, {self.models_per_second:.1f} models/s, "
                f"ETA {eta_s}, {self.state}")


def default_run_folder(dataset_name: str, recipe_name: str, seed: int, root: str | Path = "cscore-runs") -> Path:
    """Where a run goes when no folder is given: ``<root>/<dataset>-<recipe>-seed<seed>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{dataset_name}-{recipe_name}-seed{seed}")
    return Path(root) / safe


class Estimation:
    """One estimation bound to a run folder: run it (foreground or background), stop it, read it.

    Re-running resumes: finished shards in the store are counted, not recomputed.
    """

    def __init__(
        self,
        dataset: Dataset,
        recipe: Recipe | str = "digits-mlp",
        plan: Plan | None = None,
        *,
        out: str | Path | None = None,
        device: str = "auto",
        backend: Any = "local",
        model_factory: Callable[[], Any] | None = None,
    ):
        from .backends import LocalBackend, get_backend
        from .trainer import resolve_device

        if isinstance(recipe, str):
            preset = get_preset(recipe)
            recipe, plan = preset.recipe, plan or preset.plan
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a cscore_lab Dataset, got {type(dataset).__name__}")
        self.dataset = dataset
        self.recipe = recipe
        self.plan = plan or Plan()
        self.device = device
        self.model_factory = model_factory
        self.shards = plan_shards(self.plan, len(dataset), dataset.num_classes)
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        if isinstance(self.backend, LocalBackend):
            resolve_device(device)  # fail now, not in the first shard; remote backends check on their workers
        self.out = Path(out) if out is not None else None
        self.store = RunStore.open_or_create(self.out, self.identity(), self.plan.to_dict()) if self.out else None
        self.progress = Progress(total_runs=self.plan.total_runs)
        self._acc = CountAccumulator(len(dataset), self.plan.ratios)
        self._results: dict[str, ShardResult] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Callable[["Estimation"], None]] = []
        self.thread: threading.Thread | None = None
        self.result: CScores | None = None

    def identity(self) -> dict[str, Any]:
        from .trainer import ENGINE_VERSION

        factory = self.model_factory
        return {
            "engine": ENGINE_VERSION,
            "dataset": self.dataset.name, "fingerprint": self.dataset.fingerprint, "examples": len(self.dataset),
            "recipe": self.recipe.to_dict(), "seed": self.plan.seed, "shard_size": self.plan.shard_size,
            "model_factory": None if factory is None else f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}",
        }

    # ------------------------------------------------------------------ observe
    def add_listener(self, fn: Callable[["Estimation"], None]) -> None:
        """Call ``fn(self)`` after every finished shard and at the end (from the running thread)."""
        self._listeners.append(fn)

    def remove_listener(self, fn: Callable[["Estimation"], None]) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn(self)

    def current(self) -> CScores:
        """The estimate from every shard finished so far."""
        with self._lock:
            return self._acc.to_cscores(self.dataset.labels, **self._info())

    def _info(self) -> dict[str, Any]:
        return {
            "runs": self.plan.runs, "dataset": self.dataset.name, "fingerprint": self.dataset.fingerprint,
            "source": str(self.out) if self.out else "estimate",
            "meta": {"recipe": self.recipe.to_dict(), "plan": self.plan.to_dict(), "runs_done": self._acc.runs_done,
                     "seconds": round(self.progress.elapsed, 3)},
        }

    # ------------------------------------------------------------------ run
    def _on_result(self, result: ShardResult) -> None:
        if self.store is not None:
            self.store.write_shard(result)
        with self._lock:
            self._acc.add(result)
            self.progress.done_runs += len(result.runs)
            self.progress.elapsed = time.perf_counter() - self.progress.started
        self._notify()

    def run(self, progress: bool | Callable[[Progress], None] = False) -> CScores:
        """Run every missing shard in this thread and return the scores.

        ``progress=True`` shows a tqdm bar (notebook or terminal); a callable is called with
        :class:`Progress` after every shard. On a stop request the shards finished so far
        stay in the store and the partial estimate is returned.
        """
        bar_cb = _TqdmProgress(self) if progress is True else None
        listener = None
        if callable(progress):
            listener = lambda est: progress(est.progress)  # noqa: E731
            self.add_listener(listener)
        try:
            if self.store is not None:
                with self.store.lock():
                    return self._run()
            return self._run()
        finally:
            if bar_cb is not None:
                bar_cb.close()
            if listener is not None:
                self.remove_listener(listener)

    def _run(self) -> CScores:
        from .trainer import Interrupted

        self._stop.clear()
        wanted = {s.key: s for s in self.shards}
        done_keys = (self.store.finished_keys() & set(wanted)) if self.store else set(self._results) & set(wanted)
        with self._lock:
            self._acc = CountAccumulator(len(self.dataset), self.plan.ratios)
            for shard in (self.store.iter_shards(done_keys) if self.store else (self._results[k] for k in done_keys)):
                self._acc.add(shard)
            self.progress.done_runs = self._acc.runs_done
            self.progress.resumed_runs = self._acc.runs_done
            self.progress.state = "running"
            self.progress.error = None
            self.progress.started = time.perf_counter()
        self._notify()
        todo = [s for s in self.shards if s.key not in done_keys]
        job = ShardJob(self.dataset, self.recipe, self.plan.seed, self.device, self.model_factory)

        def on_result(result: ShardResult) -> None:
            if self.store is None:
                self._results[result.key] = result
            self._on_result(result)

        try:
            self.backend.run(job, todo, on_result, self._stop)
        except Interrupted:
            pass
        except BaseException as exc:
            self.progress.state = "failed"
            self.progress.error = f"{type(exc).__name__}: {exc}"
            self._notify()
            raise
        self.progress.elapsed = time.perf_counter() - self.progress.started
        complete = self.progress.done_runs >= self.progress.total_runs
        self.progress.state = "finished" if complete else "stopped"
        self.result = self.current()
        if complete and self.store is not None:
            self.result.save(self.store.path / "cscores.npz")
        self._notify()
        return self.result

    def start(self, progress: bool | Callable[[Progress], None] = False) -> threading.Thread:
        """Run in a background thread (the notebook stays usable); :meth:`stop` ends it cleanly."""
        if self.thread is not None and self.thread.is_alive():
            raise RuntimeError("this estimation is already running")

        def target() -> None:
            try:
                self.run(progress=progress)
            except BaseException:  # recorded in progress.state / progress.error
                pass

        self.progress.state = "running"
        self.thread = threading.Thread(target=target, name=f"cscore-estimate-{self.dataset.name}", daemon=True)
        self.thread.start()
        return self.thread

    def stop(self, wait: bool = True, timeout: float | None = None) -> None:
        """Ask the run to stop; the shard in flight is dropped, finished shards stay."""
        self._stop.set()
        if self.progress.state == "running":
            self.progress.state = "stopping"
        if wait and self.thread is not None:
            self.thread.join(timeout)

    def wait(self, timeout: float | None = None) -> CScores | None:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.result


class _TqdmProgress:
    """A tqdm bar (notebook or terminal) that renders an estimation's :class:`Progress`.

    Created on the first update, so runs found finished in the store count as its
    starting point and do not inflate the rate or shorten the ETA.
    """

    def __init__(self, est: Estimation):
        self.est = est
        self.bar = None
        est.add_listener(self.update)

    def update(self, est: Estimation) -> None:
        from tqdm.auto import tqdm

        p = est.progress
        if self.bar is None:
            self.bar = tqdm(total=p.total_runs, initial=p.done_runs, unit="model", dynamic_ncols=True,
                            desc=f"C-scores {est.dataset.name}")
        elif p.done_runs > self.bar.n:
            self.bar.update(p.done_runs - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.est.remove_listener(self.update)


def estimate(
    dataset: Dataset,
    recipe: Recipe | str = "digits-mlp",
    plan: Plan | None = None,
    *,
    out: str | Path | None = None,
    device: str = "auto",
    backend: Any = "local",
    model_factory: Callable[[], Any] | None = None,
    progress: bool | Callable[[Progress], None] = False,
) -> CScores:
    """Estimate the C-scores of ``dataset`` in one call.

    Parameters
    ----------
    dataset : Dataset
    recipe : Recipe or preset name, default "digits-mlp"
        A preset name also supplies the preset's plan when ``plan`` is None.
    plan : Plan, optional
        Ratios, runs per ratio, seed and shard size.
    out : path, optional
        Run folder; when given, every finished shard is kept there and a rerun resumes.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    backend : {"local", "ray"} or a backend object
    model_factory : callable returning a torch.nn.Module, optional
        Train this architecture instead of the recipe's.
    progress : bool or callable

    See Also
    --------
    Estimation : the same, with background running, stop and resume.
    """
    return Estimation(dataset, recipe, plan, out=out, device=device, backend=backend,
                      model_factory=model_factory).run(progress=progress)


def scores_from_store(path: str | Path, labels: np.ndarray | None = None) -> CScores:
    """The estimate held by a run folder (finished or not), without the data set.

    Labels are taken from ``labels`` or from the saved final scores when present.
    """
    store = RunStore(path)
    manifest = store.read_manifest()
    plan = Plan.from_dict(manifest["plan"])
    ident = manifest["identity"]
    final = store.path / "cscores.npz"
    if labels is None:
        if not final.is_file():
            raise ValueError(f"{path}: the run is not finished; pass the data set's labels to read a partial estimate")
        labels = CScores.load(final).labels
    acc = CountAccumulator(int(ident["examples"]), plan.ratios)
    wanted = {s.key for s in shard_specs(plan)}
    for shard in store.iter_shards(store.finished_keys() & wanted):
        acc.add(shard)
    return acc.to_cscores(np.asarray(labels), runs=plan.runs, dataset=ident["dataset"], fingerprint=ident["fingerprint"],
                          source=str(store.path), meta={"recipe": ident["recipe"], "plan": plan.to_dict(), "runs_done": acc.runs_done})
