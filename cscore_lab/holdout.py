"""Holdout estimation of C-scores: the driver.

:class:`Estimation` binds a data set, a recipe and a plan to a store (a run folder, or memory),
asks a backend to compute the shards still missing (:mod:`cscore_lab.shards`), writes each one
as it arrives and keeps a running estimate. The store is the truth; the driver only drives it:
rerunning resumes, a larger plan reuses every finished model of a smaller one.
"""

from __future__ import annotations

import atexit
import threading
import time
import warnings
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ._background import stop_jobs
from .cscores import CountAccumulator, CScores
from .data import Dataset
from .recipes import Plan, Recipe, get_preset
from .shard_file import ShardError, ShardResult
from .shards import ShardJob, ShardSpec, plan_shards, select_shards
from .store import MemoryStore, RunStore

__all__ = ["Progress", "Estimation", "estimate", "default_run_folder"]


@dataclass
class Progress:
    """The state of an estimation, computed once; progress bars and widgets only render it.

    ``done_runs`` counts finished models (those found in the store included); ``partial_runs``
    the share of the shards in flight already trained, so bars move within long shards.
    """

    total_runs: int = 0
    done_runs: int = 0
    resumed_runs: int = 0  # finished before this session started
    partial_runs: float = 0.0
    state: str = "pending"  # pending | running | stopping | stopped | finished | failed
    started: float = 0.0
    elapsed: float = 0.0
    error: str | None = None

    @property
    def position(self) -> float:
        """Models done, counting the trained share of shards in flight."""
        return min(float(self.total_runs), self.done_runs + self.partial_runs)

    @property
    def models_per_second(self) -> float:
        trained = self.position - self.resumed_runs
        return trained / self.elapsed if self.elapsed > 0 and trained > 0 else 0.0

    @property
    def eta_seconds(self) -> float:
        rate = self.models_per_second
        return (self.total_runs - self.position) / rate if rate > 0 else float("nan")

    @property
    def fraction(self) -> float:
        return self.position / self.total_runs if self.total_runs else 0.0

    def line(self) -> str:
        """One line (tqdm's own meter: count, elapsed<remaining, rate) and the state."""
        from tqdm import tqdm

        pos = self.position
        meter = tqdm.format_meter(int(pos) if pos == int(pos) else round(pos, 1), self.total_runs, self.elapsed,
                                  unit=" models", initial=self.resumed_runs, ncols=0)
        return f"{meter}, {self.state}"


def default_run_folder(dataset_name: str, recipe_name: str, seed: int, root: str | Path = "cscore-runs") -> Path:
    """Where a run goes when no folder is given: ``<root>/<dataset>-<recipe>-seed<seed>``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{dataset_name}-{recipe_name}-seed{seed}")
    return Path(root) / safe


def _factory_name(factory: Callable[[], Any] | None) -> str | None:
    if factory is None:
        return None
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


def _check_factory(factory: Any, dataset: Dataset) -> None:
    """Build one model and run one example through it: a wrong factory fails here, clearly, not mid-shard."""
    import torch

    if not callable(factory):
        raise TypeError(f"model_factory must be a callable that returns a torch.nn.Module, got a {type(factory).__name__}")
    try:
        model = factory()
    except Exception as exc:
        raise ValueError(f"model_factory() failed: {type(exc).__name__}: {exc}") from exc
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model_factory() must return a torch.nn.Module, got a {type(model).__name__}")
    x = torch.zeros((2, *dataset.input_shape))
    try:
        with torch.no_grad():
            out = model.eval()(x)
    except Exception as exc:
        raise ValueError(f"the model from model_factory cannot take this data set's inputs of shape "
                         f"[batch, {', '.join(map(str, dataset.input_shape))}]: {type(exc).__name__}: {exc}") from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (2, dataset.num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"the model from model_factory returns {shape} for a batch of 2; expected logits of shape "
                         f"(2, {dataset.num_classes}): one output per class of {dataset.name}")


class Estimation:
    """One estimation bound to a run folder: run it (foreground or background), stop it, read it.

    Constructing it checks everything (plan against the data, device, model factory, the run
    folder's identity) and writes nothing; :meth:`run` takes the folder's lock before it writes.
    Re-running resumes: finished shards in the store are counted, not recomputed.

    Parameters
    ----------
    dataset : Dataset
    recipe : Recipe or preset name, default "digits-mlp"
    plan : Plan, optional (default: the preset's, else ``Plan()``)
    out : path, optional
        The run folder; without it the estimate lives in memory.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    backend : {"local", "ray"} or a backend object
    model_factory : callable returning a torch.nn.Module, optional
    eval_dataset : Dataset, optional
        Every model's correctness on it is kept too (influence on a test split).
    masks : dict of str to bool array [N], optional
        Injected-noise masks (``flipped``, ``ood``) kept in the run folder with the labels.
    original_labels : int array [N], optional
        The labels before label noise, kept with them.
    data_spec : dict, optional
        How to rebuild the data set (see :mod:`cscore_lab.runs`), kept with them.
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
        eval_dataset: Dataset | None = None,
        masks: Mapping[str, np.ndarray] | None = None,
        original_labels: np.ndarray | None = None,
        data_spec: dict[str, Any] | None = None,
    ):
        from .backends import get_backend
        from .trainer import check_device_name

        if isinstance(recipe, str):
            preset = get_preset(recipe)
            recipe, plan = preset.recipe, plan or preset.plan
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a cscore_lab Dataset, got {type(dataset).__name__}")
        if not isinstance(recipe, Recipe):
            raise TypeError(f"recipe must be a Recipe or a preset name, got {type(recipe).__name__}")
        if eval_dataset is not None:
            if not isinstance(eval_dataset, Dataset):
                raise TypeError(f"eval_dataset must be a cscore_lab Dataset, got {type(eval_dataset).__name__}")
            if eval_dataset.input_shape != dataset.input_shape or eval_dataset.num_classes != dataset.num_classes:
                raise ValueError(f"the evaluation set {eval_dataset.name!r} ({eval_dataset.input_shape}, "
                                 f"{eval_dataset.num_classes} classes) does not match {dataset.name!r} "
                                 f"({dataset.input_shape}, {dataset.num_classes} classes)")
        self.dataset = dataset
        self.recipe = recipe
        self.plan = plan or Plan()
        self.device = check_device_name(device)
        self.model_factory = model_factory
        self.eval_dataset = eval_dataset
        self.masks = {k: np.asarray(v, dtype=bool) for k, v in (masks or {}).items()}
        for name, mask in self.masks.items():
            if mask.shape != (len(dataset),):
                raise ValueError(f"mask {name!r} has shape {mask.shape}, expected ({len(dataset)},)")
        self.original_labels = original_labels
        self.data_spec = data_spec
        self.precision_reason: str | None = None  # why the recipe's precision was chosen, when it was resolved
        self.shards = plan_shards(self.plan, len(dataset), dataset.num_classes)
        self.backend = get_backend(backend) if isinstance(backend, str) else backend
        check = getattr(self.backend, "check_device", None)
        if check is not None:
            check(self.device)  # the local backend checks the hardware; a remote one checks on its workers
        if model_factory is not None:
            _check_factory(model_factory, dataset)
        self.out = Path(out) if out is not None else None
        self.store: RunStore | MemoryStore = RunStore(self.out) if self.out is not None else MemoryStore()
        self.store.check_compatible(self.identity())
        self.progress = Progress(total_runs=self.plan.total_runs)
        self._acc = CountAccumulator(len(dataset), self.plan.ratios, max_runs=self.plan.runs)
        self._inflight: dict[str, float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._listeners: list[Callable[["Estimation"], None]] = []
        self.thread: threading.Thread | None = None
        self.result: CScores | None = None

    def identity(self) -> dict[str, Any]:
        """What a run folder must match to hold this estimation's shards (the plan may differ)."""
        from .trainer import ENGINE_VERSION

        ev = self.eval_dataset
        return {
            "engine": ENGINE_VERSION,
            "dataset": self.dataset.name, "fingerprint": self.dataset.fingerprint, "examples": len(self.dataset),
            "recipe": self.recipe.to_dict(), "seed": self.plan.seed,
            "model_factory": _factory_name(self.model_factory),
            "eval": None if ev is None else {"dataset": ev.name, "fingerprint": ev.fingerprint, "examples": len(ev)},
        }

    # ------------------------------------------------------------------ observe
    def add_listener(self, fn: Callable[["Estimation"], None]) -> None:
        """Call ``fn(self)`` after every finished shard, on progress within shards and at the end
        (from the running thread)."""
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
        meta = {"recipe": self.recipe.to_dict(), "plan": self.plan.to_dict(), "runs_done": self._acc.runs_done,
                "seconds": round(self.progress.elapsed, 3)}
        if self.recipe.to_dict().get("precision"):
            meta["precision"] = self.recipe.to_dict()["precision"]
        return {"runs": self.plan.runs, "dataset": self.dataset.name, "fingerprint": self.dataset.fingerprint,
                "source": str(self.out) if self.out else "estimate", "meta": meta}

    # ------------------------------------------------------------------ run
    def _on_result(self, result: ShardResult) -> None:
        self.store.write_shard(result)
        with self._lock:
            self._acc.add(result)
            self._inflight.pop(result.key, None)
            self.progress.done_runs = self._acc.runs_done
            self.progress.partial_runs = sum(self._inflight.values())
            self.progress.elapsed = time.perf_counter() - self.progress.started
        self._notify()

    def _on_progress(self, spec: ShardSpec, fraction: float) -> None:
        """A shard in flight has trained ``fraction`` of its steps (called from worker threads)."""
        with self._lock:
            self._inflight[spec.key] = max(0.0, min(1.0, fraction)) * spec.size
            self.progress.partial_runs = sum(self._inflight.values())
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
            with self.store.lock():  # before anything is written: a refused run changes nothing
                self.store.prepare(self.identity(), self.plan.to_dict())
                self.store.write_data(self.dataset.labels, masks=self.masks, original_labels=self.original_labels,
                                      spec=self.data_spec)
                return self._run()
        finally:
            if bar_cb is not None:
                bar_cb.close()
            if listener is not None:
                self.remove_listener(listener)

    def _load_finished(self) -> list[ShardSpec]:
        """Count every finished shard the plan can use (bad ones are moved aside); return the shards to train."""
        acc = CountAccumulator(len(self.dataset), self.plan.ratios, max_runs=self.plan.runs)
        while True:
            selection = select_shards(self.plan, self.store.finished_keys())
            bad = False
            for spec in selection.reuse:
                try:
                    acc.add(self.store.read_shard(spec.key))
                except ShardError as exc:
                    moved = self.store.reject(spec.key)
                    warnings.warn(f"{exc}; moved to {moved} and recomputed", RuntimeWarning, stacklevel=3)
                    bad = True
                    break
            if not bad:
                break
            acc = CountAccumulator(len(self.dataset), self.plan.ratios, max_runs=self.plan.runs)
        self.store.retire(selection.redundant)  # a smaller plan's shards inside a larger one's
        self._acc = acc
        return selection.todo

    def _run(self) -> CScores:
        from .trainer import Interrupted

        self._stop.clear()
        with self._lock:
            todo = self._load_finished()
            self._inflight = {}
            self.progress.done_runs = self._acc.runs_done
            self.progress.resumed_runs = self._acc.runs_done
            self.progress.partial_runs = 0.0
            self.progress.state = "running"
            self.progress.error = None
            self.progress.started = time.perf_counter()
        self._notify()
        job = ShardJob(self.dataset, self.recipe, self.plan.seed, self.device, self.model_factory, self.eval_dataset)
        try:
            self.backend.run(job, todo, self._on_result, self._stop, on_progress=self._on_progress)
        except Interrupted:
            pass
        except BaseException as exc:
            self.progress.state = "failed"
            self.progress.error = f"{type(exc).__name__}: {exc}"
            self._notify()
            raise
        self.progress.elapsed = time.perf_counter() - self.progress.started
        self.progress.partial_runs = 0.0
        complete = self.progress.done_runs >= self.progress.total_runs
        self.progress.state = "finished" if complete else "stopped"
        self.result = self.current()
        if complete and self.out is not None:
            self.result.save(self.out / CScores.FILENAME)
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
        _BACKGROUND.add(self)
        self.thread.start()
        return self.thread

    def stop(self, wait: bool = True, timeout: float | None = None) -> None:
        """Ask the run to stop at the next training step; the shards in flight are dropped, finished ones stay."""
        self._stop.set()
        if self.progress.state == "running":
            self.progress.state = "stopping"
        if wait and self.thread is not None:
            self.thread.join(timeout)

    def wait(self, timeout: float | None = None) -> CScores | None:
        if self.thread is not None:
            self.thread.join(timeout)
        return self.result


#: Estimations running in background threads, stopped when Python exits (see :func:`stop_background`).
_BACKGROUND: "weakref.WeakSet[Estimation]" = weakref.WeakSet()


def stop_background(timeout: float = 30.0) -> list[Estimation]:
    """Stop every estimation running in a background thread at its next training step; return them.

    Registered with :mod:`atexit`: leaving Python (a script, a notebook kernel, an IPython shell)
    with a background estimate running ends it at once, keeping its finished shards, instead of
    training the shards still queued or killing a thread inside torch (which aborts the process).
    Nothing is displayed any more at exit, so listeners (monitors, bars) are dropped first.
    """
    return stop_jobs(_BACKGROUND, timeout)


atexit.register(stop_background)


class _TqdmProgress:
    """A tqdm bar (notebook or terminal) that renders an estimation's :class:`Progress`.

    Created on the first update, so runs found finished in the store count as its
    starting point and do not inflate the rate or shorten the ETA. It moves within shards.
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
                            desc=f"C-scores {est.dataset.name}", bar_format=None)
        position = round(p.position, 2)
        if position > self.bar.n:
            self.bar.update(position - self.bar.n)

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
    eval_dataset: Dataset | None = None,
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
    eval_dataset : Dataset, optional
        Also keep every model's correctness on this evaluation set (for influence).
    progress : bool or callable

    See Also
    --------
    Estimation : the same, with background running, stop and resume.
    """
    return Estimation(dataset, recipe, plan, out=out, device=device, backend=backend, model_factory=model_factory,
                      eval_dataset=eval_dataset).run(progress=progress)

