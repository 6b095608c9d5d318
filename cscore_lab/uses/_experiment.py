"""The resumable train-and-evaluate loop that every experiment of :mod:`cscore_lab.uses` runs on.

An experiment is a list of *groups*: models that train together as one stacked group
(:func:`cscore_lab.models.build_group`), each model on its own stream of mini-batch indices
(:mod:`.samplers`), all with the same batch size and number of steps. After chosen steps every
model is evaluated on a held-out test set; a group's result is the integer count of test examples
each model got right at each of those steps.

Every experiment starts from :func:`set_up` (the settings all of them take, checked once, and the
data on the device), plans its groups with :func:`plan_groups`, runs them through a
:class:`Runner` and returns an :class:`ExperimentResult` (counts of models over seeds, with the
paired comparisons of :func:`paired_row`).

With ``out``, the folder is a :class:`~cscore_lab.store.RunStore` whose identity holds the data
set's fingerprint, the test set, the recipe, a digest of the scores and the experiment's settings;
each finished group is one store entry. Rerunning the same call after an interrupt (Ctrl-C, a
``stop`` event, a killed kernel) trains only the groups that are missing, and since a group's
result depends only on what is in the identity, gives identical numbers.
"""

from __future__ import annotations

import math
import os
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..data import Dataset
from ..recipes import Recipe, get_preset
from ..results import ResultTable, check_array
from ._scores import score_columns, single_score

__all__ = [
    "ExperimentProgress", "mean_stderr", "split_indices", "derive_seed", "resolve_recipe",
    "PreparedData", "prepare_data", "Setup", "set_up", "ModelPlan", "GroupPlan", "plan_groups", "last_counts",
    "Runner", "ExperimentResult", "paired_row", "FORMAT_VERSION",
]

#: Bumped when the same settings would train different models or store different entries.
FORMAT_VERSION = 1
#: Steps of batch indices drawn per model at once (and the granularity of progress reports).
CHUNK = 64


# --------------------------------------------------------------------------- small helpers


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from integers and names (names are hashed with CRC-32): stable across runs."""
    ints = [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    return int(np.random.SeedSequence(ints).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def mean_stderr(values: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray, int]:
    """Mean, standard error of the mean (sample std with ``ddof=1`` over ``sqrt(n)``) and ``n``.

    The standard error is NaN when ``n < 2``.
    """
    v = np.asarray(values, dtype=np.float64)
    n = v.shape[axis]
    mean = v.mean(axis=axis)
    se = v.std(axis=axis, ddof=1) / math.sqrt(n) if n >= 2 else np.full(mean.shape, np.nan)
    return mean, se, n


def resolve_recipe(recipe: Recipe | str) -> Recipe:
    """``recipe`` itself, or the recipe of the preset of that name."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        return get_preset(recipe).recipe
    raise TypeError(f"recipe must be a Recipe or a preset name, got {type(recipe).__name__}")


def split_indices(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices of a stratified random split; every class keeps a training example."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    idx = np.arange(labels.size)
    try:
        train, test = train_test_split(idx, test_size=test_fraction, stratify=labels,
                                       random_state=derive_seed("split", seed) % (2**32))
    except ValueError as exc:
        raise ValueError(f"cannot split {labels.size} examples with test_fraction={test_fraction:g} "
                         f"stratified by label ({exc}); pass test= a Dataset instead") from None
    return np.sort(train), np.sort(test)


def check_positive_int(name: str, value: Any) -> int:
    """``value`` as an int if it is a positive integer (not a bool); else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_seed(seed: Any) -> int:
    """``seed`` as an int if it is a non-negative integer; else a ValueError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return int(seed)


def check_budget(budget: str) -> str:
    if budget not in ("steps", "epochs"):
        raise ValueError(f"budget must be 'steps' (every model gets a full-data training's SGD steps) or "
                         f"'epochs' (the recipe's epochs over the model's own training set), got {budget!r}")
    return budget


def budget_steps(budget: str, recipe: Recipe, n_train: int, n_model: int) -> int:
    """SGD steps of a model that trains on ``n_model`` of ``n_train`` examples under ``budget``.

    ``"steps"``: ``epochs * ceil(n_train / batch)``, what one recipe training on the whole training
    set takes, whatever the model's own set; ``"epochs"``: ``ceil(epochs * n_model / batch)``.
    """
    if budget == "steps":
        return recipe.epochs * math.ceil(n_train / recipe.batch_size)
    return max(1, math.ceil(recipe.epochs * n_model / recipe.batch_size))


# --------------------------------------------------------------------------- data


@dataclass
class PreparedData:
    """Training and test tensors on the device, with the bookkeeping the experiments report."""

    x: Any  # torch.Tensor [n_train, ...]
    y: Any  # torch.Tensor [n_train]
    x_test: Any
    y_test: Any
    labels: np.ndarray  # int64 [n_train], the training labels
    train_index: np.ndarray  # int64 [n_train]: positions in the dataset the scores index
    test_index: np.ndarray | None  # positions of the test examples in the dataset (split) or None
    num_classes: int
    class_names: tuple[str, ...]
    identity: dict[str, Any]
    device: Any

    @property
    def n_train(self) -> int:
        return int(self.labels.size)

    @property
    def n_test(self) -> int:
        return int(self.y_test.shape[0])


def _check_test_set(dataset: Dataset, test: Dataset) -> None:
    if not isinstance(test, Dataset):
        raise TypeError(f"test must be a cscore_lab Dataset, got {type(test).__name__}")
    if test.input_shape != dataset.input_shape:
        raise ValueError(f"test inputs have shape {test.input_shape}, the training data {dataset.input_shape}")
    if test.class_names != dataset.class_names:
        raise ValueError(f"test classes {test.class_names} differ from the training data's {dataset.class_names}")
    if test.value_range != dataset.value_range:
        raise ValueError(f"test value_range {test.value_range:g} differs from the training data's "
                         f"{dataset.value_range:g}; the recipe's input scaling would treat them differently")


def prepare_data(dataset: Dataset, *, test: Dataset | None, test_fraction: float, seed: int,
                 recipe: Recipe, device: str) -> PreparedData:
    """Split (or take ``test``), scale as the recipe says and move to the device, once.

    Input scaling follows :func:`cscore_lab.trainer.prepare_inputs`. A separate ``test`` set is
    scaled with the training set's statistics (``reference=dataset``: its value range, or its
    per-feature mean and standard deviation under ``input_scaling="standardize"``), as a model
    deployed on new data would see it; nothing of the test set enters the training inputs. A
    split of ``dataset`` is scaled with the statistics of the whole of it, as the estimate is
    (unsupervised: no label enters them).
    """
    import torch

    from ..trainer import prepare_inputs, resolve_device

    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a cscore_lab Dataset, got {type(dataset).__name__}")
    dev = resolve_device(device)
    if test is not None:
        _check_test_set(dataset, test)
        x, y = prepare_inputs(dataset, recipe, dev)
        x_test, y_test = prepare_inputs(test, recipe, dev, reference=dataset)
        train_index = np.arange(len(dataset), dtype=np.int64)
        test_index = None
        ident = {"test": {"name": test.name, "fingerprint": test.fingerprint, "examples": len(test)}}
        if recipe.input_scaling == "standardize":  # the rule changed from pooled statistics: older folders differ
            ident["test"]["scaling"] = "training statistics"
    else:
        if not (isinstance(test_fraction, (int, float)) and 0.0 < test_fraction < 1.0):
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
        train_index, test_index = split_indices(dataset.labels, float(test_fraction), seed)
        x_all, y_all = prepare_inputs(dataset, recipe, dev)
        tr = torch.from_numpy(train_index).to(dev)
        te = torch.from_numpy(test_index).to(dev)
        x, y, x_test, y_test = x_all[tr].contiguous(), y_all[tr], x_all[te].contiguous(), y_all[te]
        ident = {"test": {"fraction": float(test_fraction), "split_seed": int(seed)}}
    ident.update({"dataset": dataset.name, "fingerprint": dataset.fingerprint, "examples": len(dataset)})
    return PreparedData(x, y, x_test, y_test, dataset.labels[train_index].copy(), train_index, test_index,
                        dataset.num_classes, dataset.class_names, ident, dev)


@dataclass
class Setup:
    """What every experiment starts from: the settings they all take, checked, and the data on the device."""

    recipe: Recipe
    data: PreparedData
    seeds: int
    seed: int
    group_size: int | None
    scores: dict[str, np.ndarray]  # float64 [n_train] per score name: the training examples' scores


def set_up(dataset: Dataset, scores: Any, *, recipe: Recipe | str, seeds: Any, seed: Any, group_size: Any,
           test: Dataset | None, test_fraction: float, device: str, single: str | None = None) -> Setup:
    """Check the settings every experiment takes, then split, scale and move the data once (:func:`prepare_data`).

    ``scores`` are checked against ``dataset`` (:func:`~._scores.score_columns`); with ``single``
    (the experiment's name) exactly one score is accepted, and several are refused naming it.
    """
    recipe = resolve_recipe(recipe)
    seeds = check_positive_int("seeds", seeds)
    seed = check_seed(seed)
    if group_size is not None:
        group_size = check_positive_int("group_size", group_size)
    checks = {"labels": dataset.labels, "fingerprint": dataset.fingerprint}
    n = len(dataset)
    if single:
        name, values = single_score(scores, n, what=single, **checks)
        cols = {name: values}
    else:
        cols = score_columns(scores, n, **checks)
    data = prepare_data(dataset, test=test, test_fraction=test_fraction, seed=seed, recipe=recipe, device=device)
    return Setup(recipe, data, seeds, seed, group_size, {name: v[data.train_index] for name, v in cols.items()})


# --------------------------------------------------------------------------- groups


@dataclass
class ModelPlan:
    """One model of a group: a builder of its batch stream (over training positions) and its init seed."""

    stream: Callable[[], Any]  # -> an object with next(k) -> int64 [k, batch_size]; built only when trained
    init_seed: int


@dataclass
class GroupPlan:
    """Models trained together: same batch size, same ``steps``, evaluated after ``eval_steps``."""

    key: str
    models: list[ModelPlan]
    steps: int
    eval_steps: np.ndarray  # sorted unique int64 in [0, steps]


@dataclass(frozen=True)
class ExperimentProgress:
    """Where an experiment stands; what a ``progress`` callable receives (often, from the training thread)."""

    experiment: str
    groups_done: int
    groups_total: int
    models_done: int
    models_total: int
    steps_done: int  # SGD steps of every group so far (one step trains all models of its group)
    steps_total: int
    groups_resumed: int  # groups read back from the run folder instead of trained
    elapsed: float

    @property
    def fraction(self) -> float:
        return self.steps_done / self.steps_total if self.steps_total else 1.0


class _Reporter:
    """Forwards progress to a callable, a tqdm.auto bar (``True``) or nowhere (``False``)."""

    def __init__(self, experiment: str, groups: Sequence[GroupPlan], progress: bool | Callable[[ExperimentProgress], None]):
        if not (isinstance(progress, bool) or callable(progress)):
            raise TypeError(f"progress must be True, False or a callable, got {type(progress).__name__}")
        self.experiment = experiment
        self.groups_total = len(groups)
        self.models_total = sum(len(g.models) for g in groups)
        self.steps_total = sum(g.steps for g in groups)
        self.groups_done = self.models_done = self.steps_done = self.resumed = 0
        self.t0 = time.perf_counter()
        self._lock = threading.Lock()
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.steps_total, desc=experiment, unit="step", dynamic_ncols=True)

    def begin(self) -> None:
        """The first report (nothing done yet): everything was checked, the folder is locked, training starts."""
        if self.callback is not None:
            self.callback(self.state())

    def state(self) -> ExperimentProgress:
        return ExperimentProgress(self.experiment, self.groups_done, self.groups_total, self.models_done,
                                  self.models_total, self.steps_done, self.steps_total, self.resumed,
                                  time.perf_counter() - self.t0)

    def steps(self, k: int) -> None:
        with self._lock:  # workers report from their threads
            self.steps_done += k
            if self.bar is not None:
                self.bar.update(k)
            if self.callback is not None:
                self.callback(self.state())

    def group_done(self, group: GroupPlan, resumed: bool) -> None:
        with self._lock:
            if resumed:
                self.resumed += 1
                self.steps_done += group.steps
                if self.bar is not None:
                    self.bar.update(group.steps)
            self.groups_done += 1
            self.models_done += len(group.models)
            if self.bar is not None:
                self.bar.set_postfix_str(f"group {self.groups_done}/{self.groups_total}"
                                         + (f", {self.resumed} resumed" if self.resumed else ""), refresh=False)
            if self.callback is not None:
                self.callback(self.state())

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def train_and_evaluate(data: PreparedData, recipe: Recipe, group: GroupPlan, *,
                       model_factory: Callable[[], Any] | None, stops: Sequence[threading.Event],
                       on_steps: Callable[[int], None]) -> np.ndarray:
    """Train the group's models together; int64 [M, E]: test examples right after each eval step."""
    import torch

    from ..models import build_group
    from ..trainer import Interrupted, predict_correct

    models = build_group(recipe, tuple(data.x.shape[1:]), data.num_classes, [m.init_seed for m in group.models],
                         data.device, model_factory)
    streams = [m.stream() for m in group.models]
    column = {int(s): j for j, s in enumerate(group.eval_steps)}
    out = np.zeros((len(group.models), len(column)), dtype=np.int64)

    def evaluate(step: int) -> None:
        if step in column:
            out[:, column[step]] = predict_correct(models, data.x_test, data.y_test).sum(axis=1)

    evaluate(0)
    lr, momentum, wd = recipe.learning_rate, recipe.momentum, recipe.weight_decay
    for start in range(0, group.steps, CHUNK):
        k = min(CHUNK, group.steps - start)
        idx = torch.from_numpy(np.stack([s.next(k) for s in streams], axis=1)).to(data.device)  # [k, M, B]
        for j in range(k):
            if any(e.is_set() for e in stops):
                raise Interrupted()
            batch = idx[j]
            models.train_step(data.x[batch], data.y[batch], lr, momentum, wd)
            evaluate(start + j + 1)
        on_steps(k)
    return out


def plan_groups(prefix: str, models: Sequence[ModelPlan], steps: int, group_size: int | None,
                eval_steps: np.ndarray | None = None) -> list[GroupPlan]:
    """``models`` in consecutive stacked groups of at most ``group_size`` (all in one when None), keyed
    ``<prefix>g000``, ``<prefix>g001``, ...; evaluated after ``eval_steps`` (default: once, at the end)."""
    models = list(models)
    size = group_size or len(models) or 1
    evals = np.array([steps], dtype=np.int64) if eval_steps is None else eval_steps
    return [GroupPlan(f"{prefix}g{j:03d}", models[i:i + size], steps, evals)
            for j, i in enumerate(range(0, len(models), size))]


def last_counts(results: dict[str, np.ndarray], groups: Sequence[GroupPlan]) -> np.ndarray:
    """int64 [models]: each model's test examples right at its group's last evaluation, in the groups' order."""
    return np.concatenate([results[g.key][:, -1] for g in groups])


def model_factory_name(factory: Callable[[], Any] | None) -> str | None:
    if factory is None:
        return None
    return f"{getattr(factory, '__module__', '?')}.{getattr(factory, '__qualname__', repr(factory))}"


def _run_parallel(items: Sequence[Any], fn: Callable[[Any], Any], on_result: Callable[[Any], None],
                  halt: threading.Event, workers: int) -> None:
    """``on_result(fn(item))`` for every item, ``workers`` at a time; results are delivered in this thread.

    The first error (a failure, :class:`~cscore_lab.trainer.Interrupted`, a ``KeyboardInterrupt``
    from a progress callback) sets ``halt``, so the groups in flight stop at their next step and
    queued ones never start, and is raised here once they have; groups that finished before it
    are delivered first.
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cscore-uses") as pool:
        pending = {pool.submit(fn, item) for item in items}
        try:
            while pending:
                done, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)  # Ctrl-C stays responsive
                errors = [f.exception() for f in done if f.exception() is not None]
                for f in done:
                    if f.exception() is None:
                        on_result(f.result())
                if errors:
                    raise errors[0]
        except BaseException:
            halt.set()
            for f in pending:
                f.cancel()
            raise


@dataclass
class Runner:
    """Runs an experiment's groups, through a run folder when ``out`` is given."""

    experiment: str
    data: PreparedData
    recipe: Recipe
    scores_digest: str
    settings: dict[str, Any]
    out: str | Path | None = None
    model_factory: Callable[[], Any] | None = None
    progress: bool | Callable[[ExperimentProgress], None] = True
    stop: threading.Event | None = None
    workers: int | None = None
    trained: int = field(default=0, init=False)
    resumed: int = field(default=0, init=False)
    seconds: float = field(default=0.0, init=False)

    def identity(self) -> dict[str, Any]:
        from ..trainer import ENGINE_VERSION

        return {
            "experiment": self.experiment, "format": FORMAT_VERSION, "engine": ENGINE_VERSION,
            **self.data.identity, "recipe": self.recipe.to_dict(), "seed": int(self.settings["seed"]),
            "scores": self.scores_digest,
            "settings": self.settings, "model_factory": model_factory_name(self.model_factory),
        }

    def run(self, groups: Sequence[GroupPlan]) -> dict[str, np.ndarray]:
        """``{group key: correct counts [M, E]}`` for every group, training only what the folder lacks.

        Groups train on ``workers`` threads, each with single-threaded torch (the house thread
        policy, ``torch_threads(1)``): a group's numbers do not depend on how many run at once.
        Finished groups are written by this (the calling) thread as they arrive.
        """
        from contextlib import nullcontext

        from ..store import RunStore, StoreMismatchError
        from ..trainer import torch_threads

        if self.workers is not None:
            check_positive_int("workers", self.workers)
        store = RunStore.open_or_create(self.out, self.identity(), {"groups": len(groups)}) if self.out else None
        reporter = _Reporter(self.experiment, groups, self.progress)
        results: dict[str, np.ndarray] = {}
        halt = threading.Event()  # set on an error in one worker, so the others stop at their next step
        stops = [e for e in (self.stop, halt) if e is not None]
        t0 = time.perf_counter()

        def train(g: GroupPlan) -> tuple[GroupPlan, np.ndarray, float]:
            t = time.perf_counter()
            correct = train_and_evaluate(self.data, self.recipe, g, model_factory=self.model_factory,
                                         stops=stops, on_steps=reporter.steps)
            return g, correct, time.perf_counter() - t

        def finished(item: tuple[GroupPlan, np.ndarray, float]) -> None:
            g, correct, seconds = item
            if store is not None:
                store.write_entry(g.key, {"correct": correct, "eval_steps": g.eval_steps},
                                  {"seconds": seconds, "models": len(g.models)})
            results[g.key] = correct
            self.trained += 1
            reporter.group_done(g, resumed=False)

        try:
            with store.lock() if store is not None else nullcontext():
                reporter.begin()
                todo = []
                for g in groups:
                    if store is None or not store.has_entry(g.key):
                        todo.append(g)
                        continue
                    arrays, _ = store.read_entry(g.key)
                    got = arrays.get("correct")
                    shape = (len(g.models), len(g.eval_steps))
                    if got is None or got.shape != shape or not np.array_equal(arrays.get("eval_steps"), g.eval_steps):
                        raise StoreMismatchError(f"{store.entry_dir / (g.key + '.npz')} does not hold the {shape} "
                                                 f"results this group expects; delete it to recompute it")
                    results[g.key] = got.astype(np.int64)
                    self.resumed += 1
                    reporter.group_done(g, resumed=True)
                workers = self._workers(len(todo))
                with torch_threads(1):
                    if workers <= 1:
                        for g in todo:
                            finished(train(g))
                    else:
                        _run_parallel(todo, train, finished, halt, workers)
        finally:
            reporter.close()
            self.seconds = time.perf_counter() - t0
        return results

    def _workers(self, n_groups: int) -> int:
        if self.workers is not None:
            return max(1, min(self.workers, n_groups))
        default = 1 if self.data.device.type == "cuda" else (os.cpu_count() or 1)
        return max(1, min(default, n_groups))

    def meta(self) -> dict[str, Any]:
        """What every experiment's result records about how it was produced."""
        return {
            "recipe": self.recipe.to_dict(), "settings": self.settings, "dataset": self.data.identity["dataset"],
            "fingerprint": self.data.identity["fingerprint"], "test": self.data.identity["test"],
            "n_train": self.data.n_train, "n_test": self.data.n_test, "scores_digest": self.scores_digest,
            "groups_trained": self.trained, "groups_resumed": self.resumed, "seconds": round(self.seconds, 3),
            "out": None if self.out is None else str(self.out), "model_factory": model_factory_name(self.model_factory),
        }

    def save(self, result: Any) -> None:
        """Write ``result`` into the run folder (its class's FILENAME), so ``Result.load(out)`` reads it."""
        if self.out is not None:
            result.save(Path(self.out))


# --------------------------------------------------------------------------- results


def paired_row(accuracy: np.ndarray, baseline: np.ndarray, diff_name: str) -> dict[str, Any]:
    """Mean ± standard error over seeds of ``accuracy`` [R] and of its paired (within-seed) difference
    from ``baseline`` [R]: the numbers of one row of every experiment's ``compare()``."""
    m, se, n = mean_stderr(accuracy)
    dm, dse, _ = mean_stderr(accuracy - baseline)
    return {"accuracy": float(m), "stderr": float(se), diff_name: float(dm), "diff_stderr": float(dse), "seeds": n}


class ExperimentResult(ResultTable):
    """Base of the experiments' results: ``correct``, the test examples each model got right (int64,
    3-D, one axis over seeds: ``SEED_AXIS``), out of ``n_test``."""

    SEED_AXIS: ClassVar[int] = 2
    correct: np.ndarray
    n_test: int

    def _check_correct(self, shape: tuple[int | None, ...]) -> None:
        """``correct`` as int64 of ``shape`` (None on the seed axis: any number of seeds); ``n_test`` as an int."""
        correct = np.asarray(self.correct, dtype=np.int64)
        if correct.ndim != len(shape):
            expected = ", ".join("seeds" if d is None else str(d) for d in shape)
            raise ValueError(f"correct has shape {correct.shape}, expected ({expected})")
        full = tuple(correct.shape[a] if d is None else d for a, d in enumerate(shape))
        self.correct = check_array("correct", correct, full, np.int64)
        self.n_test = int(self.n_test)

    @property
    def seeds(self) -> int:
        return int(self.correct.shape[self.SEED_AXIS])

    @property
    def accuracy(self) -> np.ndarray:
        """float64, the shape of ``correct``: the test accuracy of every model."""
        return self.correct / float(self.n_test)
