"""The experiments of :mod:`cscore_lab.uses` as the front ends run them: options, scores, folders, jobs.

``%cscore curriculum|prune|collect`` and ``cscore-lab curriculum|prune|collect`` are two doors to
one call of :func:`~cscore_lab.uses.curriculum_experiment`, :func:`~cscore_lab.uses.pruning_experiment`
or :func:`~cscore_lab.uses.active_collection_experiment`:

* :func:`add_experiment_options` declares the same options on both parsers and
  :func:`experiment_options` turns the parsed ones into the library's keyword arguments;
* :func:`pick_scores` takes the scores by name from what a session's record or a run folder
  holds: ``cscore`` (the default), ``memorization`` (negated, ``neg_memorization``, so that
  higher = more regular as for every score), or a column of the proxy table;
* :func:`prepare_experiment` resolves everything, before anything trains, into an
  :class:`ExperimentJob` kept in :func:`default_folder` (``<run folder>/uses/<experiment>-<scores>-<digest>``:
  the same call resumes there, a different one never collides with it);
* :class:`ExperimentJob` runs it in the calling thread or a background one, with a stop event
  and a tqdm.auto bar; :func:`kept_experiments` reads back every experiment a run folder holds
  (the dashboard's Uses tab, the HTML report).

Nothing here imports IPython or draws.
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import hashlib
import inspect
import json
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ._background import stop_jobs
from .options import _float_in

__all__ = ["EXPERIMENTS", "Experiment", "experiment_named", "add_experiment_options", "experiment_options",
           "pick_scores", "score_names", "default_folder", "prepare_experiment", "ExperimentJob", "kept_experiments",
           "result_table", "stop_background"]


@dataclass(frozen=True)
class Experiment:
    """One experiment of :mod:`cscore_lab.uses` as a front-end subcommand."""

    command: str  # the subcommand: curriculum, prune, collect
    name: str  # the experiment's own name: its run folders' prefix and the result's title
    function: str  # the function of cscore_lab.uses that runs it
    result: str  # the result class it returns (a ResultTable kept in its folder)
    summary: str
    many_scores: bool  # several scores side by side (pruning) or one

    def run(self, dataset: Any, scores: Any, **kwargs: Any) -> Any:
        from . import uses

        return getattr(uses, self.function)(dataset, scores, **kwargs)

    def result_class(self) -> type:
        from . import uses

        return getattr(uses, self.result)

    def parameters(self) -> set[str]:
        """The keyword arguments its function takes."""
        from . import uses

        return set(inspect.signature(getattr(uses, self.function)).parameters) - {"dataset", "scores"}


EXPERIMENTS: dict[str, Experiment] = {e.command: e for e in (
    Experiment("curriculum", "curriculum", "curriculum_experiment", "CurriculumResult",
               "train with score-driven curricula (easy to hard, hard to easy, random, weighted) and compare test "
               "accuracy against steps", many_scores=False),
    Experiment("prune", "pruning", "pruning_experiment", "PruningResult",
               "keep a fraction of the training set chosen by a score, train, test: pruning curves",
               many_scores=True),
    Experiment("collect", "collection", "active_collection_experiment", "CollectionResult",
               "simulate collecting data by score (lowest first, highest first, random): test accuracy against "
               "examples added", many_scores=False),
)}

#: What memorization is called on the command line; its column is ``neg_memorization`` (higher = more regular).
MEMORIZATION_NAMES = ("memorization", "neg_memorization")


def experiment_named(command: str) -> Experiment:
    if command not in EXPERIMENTS:
        raise ValueError(f"unknown experiment {command!r}; choose one of: {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[command]


# --------------------------------------------------------------------------- options


def count_or_fraction(text: str) -> int | float:
    """An example count (``200``) or a fraction in (0, 1) of the training split (``0.1``)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a count or a fraction in (0, 1), got {text!r}") from None
    if not 0.0 < v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a count or a fraction in (0, 1), got {v:g}")
    return v


def kept_fraction(text: str) -> float:
    return _float_in(text, "fraction", "kept fraction", "(0, 1]", lambda v: 0.0 < v <= 1.0)


def test_fraction(text: str) -> float:
    return _float_in(text, "fraction", "test fraction", "(0, 1)", lambda v: 0.0 < v < 1.0)


#: The choices the parsers offer, spelled out so that building a parser imports no torch (``cscore-lab --help``
#: stays fast); ``tests/test_uses_front_ends.py`` checks them against the library's own tuples.
CHOICES: dict[str, tuple[str, ...]] = {
    "strategies": ("curriculum", "anti-curriculum", "random-curriculum", "random", "weighted-easy", "weighted-hard"),
    "pacing": ("linear", "root", "step", "exponential"),
    "keep": ("most_regular", "least_regular", "middle", "random"),
    "collection": ("lowest", "highest", "random"),
}


def add_experiment_options(p: argparse.ArgumentParser, command: str, *, session_defaults: bool = False) -> None:
    """The options of experiment ``command`` (curriculum, prune, collect), the same for both front ends.

    Every option defaults to None ("the library's default"), so :func:`experiment_options`
    passes on only what the user set. ``session_defaults`` words the help for the magics.
    """
    from .options import device_name, positive_int, seed_value
    from .recipes import PRESETS

    STRATEGIES, PACINGS, KEEP_RULES = CHOICES["strategies"], CHOICES["pacing"], CHOICES["keep"]
    COLLECTION_STRATEGIES = CHOICES["collection"]
    exp = experiment_named(command)
    where = "the record's" if session_defaults else "the run's"
    p.add_argument("--score", nargs="+", default=None, metavar="NAME",
                   help=("scores to compare side by side" if exp.many_scores else "the score that drives it (one)")
                        + f": cscore (default), memorization (negated: higher = more regular) or a column of {where} "
                          "proxy table")
    p.add_argument("--preset", default=None, choices=list(PRESETS), metavar="NAME",
                   help=f"training recipe of the models (default: {where} estimate's, else by the data)")
    seeds = {"curriculum": 5, "prune": 3, "collect": 3}[command]
    p.add_argument("--seeds", type=positive_int, default=None, metavar="N",
                   help=f"models per setting, for mean ± standard error (default {seeds})")
    p.add_argument("--seed", type=seed_value, default=None, help="base seed of the split, models and batches (default 0)")
    p.add_argument("--test-fraction", type=test_fraction, default=None, metavar="F",
                   help="stratified held-out test split (default 0.2)")
    if command == "curriculum":
        p.add_argument("--strategies", nargs="+", choices=list(STRATEGIES), metavar="S",
                       help=f"sampling strategies: {', '.join(STRATEGIES)} (default all)")
        p.add_argument("--pacing", choices=list(PACINGS), default=None, help="pool growth of the paced strategies "
                                                                              "(default linear)")
        p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                       help="SGD steps per model (default: the recipe's epochs over the training split)")
        p.add_argument("--eval-every", type=positive_int, default=None, metavar="N",
                       help="evaluate after every N steps (default steps/20)")
        p.add_argument("--no-balance", dest="balance", action="store_false", default=None,
                       help="do not class-balance the curriculum orders")
        p.add_argument("--weight-ratio", type=float, default=None, metavar="R",
                       help="weighted strategies: most / least likely example (default 10)")
    elif command == "prune":
        p.add_argument("--fractions", type=kept_fraction, nargs="+", metavar="F",
                       help="kept fractions of the training split (default 0.1 ... 0.9)")
        p.add_argument("--keep", nargs="+", choices=list(KEEP_RULES), metavar="RULE",
                       help=f"which examples to keep: {', '.join(KEEP_RULES)} (default all)")
        p.add_argument("--budget", choices=("steps", "epochs"), default=None,
                       help="steps: every model a whole-set training's SGD steps (default); epochs: the recipe's "
                            "epochs over the kept set")
        p.add_argument("--balance", action="store_true", default=None, help="apply each rule within every class")
        p.add_argument("--no-reference", dest="reference", action="store_false", default=None,
                       help="do not train the whole-training-set models (the dashed line)")
    else:
        p.add_argument("--start", type=count_or_fraction, default=None, metavar="N|F",
                       help="starting set: a count or a fraction of the training split (default 0.1)")
        p.add_argument("--add", dest="add_per_round", type=count_or_fraction, default=None, metavar="N|F",
                       help="examples added per round: a count or a fraction (default 0.1)")
        p.add_argument("--rounds", type=positive_int, default=None, metavar="N", help="rounds of adding (default 5)")
        p.add_argument("--strategies", nargs="+", choices=list(COLLECTION_STRATEGIES), metavar="S",
                       help=f"which pool examples first: {', '.join(COLLECTION_STRATEGIES)} (default all)")
        p.add_argument("--budget", choices=("steps", "epochs"), default=None,
                       help="steps: every model a whole-split training's SGD steps (default); epochs: the recipe's "
                            "epochs over its own set")
    p.add_argument("--group-size", type=positive_int, default=None, metavar="M",
                   help="models per stacked group: finer resume points (default: as few groups as possible)")
    p.add_argument("--workers", type=positive_int, default=None, metavar="W",
                   help="groups trained at once (default: the CPU cores, 1 on a GPU); results do not depend on it")
    p.add_argument("--device", type=device_name, default=None,
                   help="auto, cpu, cuda or cuda:N (default: " + ("%%config CScoreMagics.device" if session_defaults
                                                                  else "auto") + ")")
    p.add_argument("--out", metavar="DIR", default=None,
                   help="folder that keeps every trained group (a rerun resumes); default: <run folder>/uses/"
                        f"{exp.name}-<score>-<digest of the settings>")


#: Parsed option names that are not keyword arguments of the experiment functions.
_NOT_OPTIONS = ("score", "preset", "out")


def experiment_options(command: str, args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of the experiment that the options parsed by :func:`add_experiment_options` set."""
    params = experiment_named(command).parameters()
    out = {}
    for key, value in vars(args).items():
        if key in params and key not in _NOT_OPTIONS and value is not None:
            out[key] = tuple(value) if isinstance(value, list) else value
    return out


# --------------------------------------------------------------------------- scores


def score_names(score: str | Sequence[str] | None, command: str) -> tuple[str, ...]:
    """``score`` as a tuple of distinct names (default ``("cscore",)``); one only, unless the experiment compares several."""
    exp = experiment_named(command)
    names = ("cscore",) if score is None else (score,) if isinstance(score, str) else tuple(score)
    if not names or any(not isinstance(n, str) or not n.strip() for n in names):
        raise ValueError(f"--score needs score names, got {score!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"--score names a score twice: {' '.join(names)}")
    if len(names) > 1 and not exp.many_scores:
        raise ValueError(f"{command} takes one score, got {len(names)} ({', '.join(names)}); "
                         f"prune compares several side by side")
    return names


def _get(source: Any) -> Any:
    return source() if callable(source) else source


def _all_estimated(values: Any, what: str, name: str) -> None:
    missing = int((~np.isfinite(np.asarray(values, dtype=np.float64))).sum())
    if missing:
        raise ValueError(f"{missing} of {len(values)} examples of {name} have no {what} yet (too few models trained "
                         f"on or held out each of them): estimate with more runs before ranking by it")


def pick_scores(names: Sequence[str], dataset: Any, *, cscores: Any = None, memorization: Any = None,
                proxies: Any = None) -> dict[str, np.ndarray]:
    """The named score columns of ``dataset``'s examples, validated (length, finite values, labels, fingerprint).

    Parameters
    ----------
    names : sequence of str
        ``cscore``; ``memorization`` (or ``neg_memorization``): Feldman & Zhang's memorization
        negated (:attr:`~cscore_lab.memorization.Memorization.regularity`), so that higher = more
        regular like every score; or a column of ``proxies``.
    dataset : Dataset
    cscores, memorization : object or zero-argument callable, optional
        A :class:`~cscore_lab.cscores.CScores` and a :class:`~cscore_lab.memorization.Memorization`,
        or functions that return them (called only when the name is asked for; they may raise a
        ``ValueError`` saying why there is none).
    proxies : ProxyTable, optional

    Returns
    -------
    dict of str to float64 [N], keyed ``cscore``, ``neg_memorization`` or the proxy's name
    """
    from .uses import score_columns

    check = {"labels": dataset.labels, "fingerprint": dataset.fingerprint}
    proxy_cols = score_columns(proxies, len(dataset), **check) if proxies is not None else {}
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name == "cscore":
            cs = _get(cscores)
            if cs is None:
                raise ValueError(f"no C-scores for {dataset.name} yet: estimate them first")
            _all_estimated(cs.scores, "C-score", dataset.name)
            out.update(score_columns(cs, len(dataset), **check))
        elif name in MEMORIZATION_NAMES:
            mem = _get(memorization)
            if mem is None:
                raise ValueError(f"no memorization for {dataset.name}: it comes from the models of an estimate "
                                 f"(published scores carry none)")
            _all_estimated(mem.memorization, "memorization", dataset.name)
            out.update(score_columns(mem, len(dataset), **check))
        elif name in proxy_cols:
            out[name] = proxy_cols[name]
        else:
            known = ["cscore", "memorization", *proxy_cols]
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            more = "" if proxy_cols else "; compute the proxies first for their columns"
            raise ValueError(f"unknown score {name!r}{hint}; choose from {', '.join(known)}{more}")
    return out


# --------------------------------------------------------------------------- folders


def default_folder(experiment: Experiment, scores: Mapping[str, np.ndarray], recipe: Any, options: Mapping[str, Any],
                   *, run_folder: str | Path | None, root: str | Path, dataset_name: str) -> Path:
    """``<run_folder>/uses/<experiment>-<scores>-<digest>`` (``<root>/<dataset>-uses/...`` without a run folder).

    The digest (8 hex digits) covers the scores, the recipe and every option that changes the
    results, so the same call finds its folder again and resumes, and a call with other scores or
    settings gets its own folder instead of a refusal to mix results.
    """
    from .uses._scores import scores_digest

    settings = {k: v for k, v in options.items() if k not in ("device", "workers", "progress", "stop", "out")}
    blob = json.dumps({"scores": scores_digest(scores), "recipe": recipe.to_dict(), "options": settings},
                      sort_keys=True, default=lambda v: list(v) if isinstance(v, (tuple, set)) else str(v))
    digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
    base = Path(run_folder) / "uses" if run_folder is not None else Path(root) / f"{dataset_name}-uses"
    return base / f"{experiment.name}-{'+'.join(scores)}-{digest}"


def kept_experiments(folder: str | Path) -> dict[str, Any]:
    """Every finished experiment kept under ``folder/uses`` (a run folder's), by folder name, in name order.

    A folder whose result file cannot be read (damaged, of a newer format) is left out with a warning.
    """
    import warnings

    uses = Path(folder) / "uses"
    found: dict[str, Any] = {}
    if not uses.is_dir():
        return found
    classes = [e.result_class() for e in EXPERIMENTS.values()]
    for sub in sorted(p for p in uses.iterdir() if p.is_dir()):
        for cls in classes:
            if (sub / cls.FILENAME).is_file():
                try:
                    found[sub.name] = cls.load(sub / cls.FILENAME)
                except (OSError, ValueError, KeyError) as exc:
                    warnings.warn(f"{sub / cls.FILENAME}: left out ({exc})", stacklevel=2)
                break
    return found


def result_table(result: Any) -> Any:
    """The table the front ends print for an experiment's result (a DataFrame; ``to_frame()`` has every row).

    Pruning: the curves side by side (``table()``: fraction x curve, ``mean ± s.e.``); curriculum:
    each strategy at the last step with its paired difference from random (``compare()``);
    collection: each strategy and round with its difference from random.
    """
    from .uses import CollectionResult, CurriculumResult, PruningResult

    if isinstance(result, PruningResult):
        return result.table()
    if isinstance(result, (CurriculumResult, CollectionResult)):
        if "random" in result.strategies:
            return result.compare("random")
        frame = result.to_frame()
        return frame[frame["step"] == frame["step"].max()] if isinstance(result, CurriculumResult) else frame
    raise TypeError(f"expected the result of an experiment of cscore_lab.uses, got {type(result).__name__}")


# --------------------------------------------------------------------------- preparing and running


def prepare_experiment(command: str, dataset: Any, score: str | Sequence[str] | None = None, *, cscores: Any = None,
                       memorization: Any = None, proxies: Any = None, recipe: Any = None,
                       out: str | Path | None = None, run_folder: str | Path | None = None,
                       root: str | Path = "cscore-runs", **options: Any) -> "ExperimentJob":
    """Everything an experiment needs, checked before anything trains, as an :class:`ExperimentJob`.

    ``score`` names the scores (see :func:`pick_scores`, whose sources ``cscores``, ``memorization``
    and ``proxies`` are); ``recipe`` is a Recipe, a preset name or None (the default preset of the
    data); ``options`` are keyword arguments of the experiment's function (``seeds``,
    ``fractions``, ``strategies``, ...); ``out`` defaults to :func:`default_folder`.
    """
    from .data import Dataset
    from .recipes import Recipe, default_preset_name, get_preset

    exp = experiment_named(command)
    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a cscore_lab Dataset, got {type(dataset).__name__}")
    allowed = exp.parameters() - {"out", "progress", "stop"}
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise TypeError(f"{exp.function} takes no option {', '.join(map(repr, unknown))}; it takes "
                        f"{', '.join(sorted(allowed))}")
    scores = pick_scores(score_names(score, command), dataset, cscores=cscores, memorization=memorization,
                         proxies=proxies)
    if recipe is None:
        recipe = get_preset(default_preset_name(dataset.name, dataset.input_shape)).recipe
    elif isinstance(recipe, str):
        recipe = get_preset(recipe).recipe
    elif not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe, a preset name or None, got {type(recipe).__name__}")
    if out is not None and not str(out).strip():
        raise ValueError("--out needs a folder, got an empty string (leave --out out for the default folder)")
    folder = Path(out) if out is not None else default_folder(exp, scores, recipe, options, run_folder=run_folder,
                                                            root=root, dataset_name=dataset.name)
    return ExperimentJob(exp, dataset, scores, recipe=recipe, out=folder, options=options)


#: Experiments running in background threads, stopped when Python exits (see :func:`stop_background`).
_BACKGROUND: "weakref.WeakSet[ExperimentJob]" = weakref.WeakSet()


class ExperimentJob:
    """One prepared experiment: :meth:`run` it here or :meth:`start` it in a background thread.

    ``progress`` holds the latest :class:`~cscore_lab.uses.ExperimentProgress`; ``state`` is
    pending, running, stopping, finished, stopped or failed; ``result`` the experiment's table
    when it finished. :meth:`stop` asks it to stop at the next SGD step: every finished group stays
    in ``out`` and the same call resumes from them. Listeners (``add_listener``) are called with
    the job after every progress report and once when it ends, from the thread that runs it.
    """

    def __init__(self, experiment: Experiment, dataset: Any, scores: dict[str, np.ndarray], *, recipe: Any,
                 out: Path, options: dict[str, Any]):
        self.experiment = experiment
        self.dataset = dataset
        self.scores = scores
        self.recipe = recipe
        self.out = Path(out)
        self.options = dict(options)
        self.state = "pending"
        self.progress: Any = None
        self.result: Any = None
        self.error: str | None = None
        self.exception: BaseException | None = None
        self.thread: threading.Thread | None = None
        self.seconds = 0.0
        self._stop = threading.Event()
        self._begun = threading.Event()  # set by the first progress report (all checked) or by the end
        self._listeners: list[Callable[["ExperimentJob"], None]] = []
        self._bar: Any = None

    @property
    def name(self) -> str:
        """The folder's name: which experiment, on which scores, with which settings."""
        return self.out.name

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def add_listener(self, fn: Callable[["ExperimentJob"], None]) -> None:
        self._listeners.append(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            try:
                fn(self)
            except Exception:  # noqa: BLE001 - a display problem must never stop the experiment
                pass

    def _on_progress(self, p: Any) -> None:
        self.progress = p
        self._begun.set()
        bar = self._bar
        if bar is not None:
            if bar.total != p.steps_total:
                bar.reset(total=p.steps_total)
            bar.update(p.steps_done - bar.n)
            bar.set_postfix_str(f"group {p.groups_done}/{p.groups_total}"
                                + (f", {p.groups_resumed} resumed" if p.groups_resumed else ""), refresh=False)
        self._notify()

    def _open_bar(self, progress: bool) -> None:
        if progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=None, desc=self.name, unit="step", dynamic_ncols=True)

    def _execute(self) -> Any:
        from .trainer import Interrupted

        t0 = time.perf_counter()
        if self.state == "pending":
            self.state = "running"
        try:
            self.result = self.experiment.run(self.dataset, self.scores, recipe=self.recipe, out=self.out,
                                              progress=self._on_progress, stop=self._stop, **self.options)
            self.state = "finished"
        except (Interrupted, KeyboardInterrupt):
            self.state = "stopped"
            if threading.current_thread() is threading.main_thread() and not self._stop.is_set():
                raise  # Ctrl-C in the foreground: the caller says what was kept
        except BaseException as exc:
            self.state, self.error, self.exception = "failed", f"{type(exc).__name__}: {exc}", exc
            if self.thread is None:
                raise
        finally:
            self._begun.set()
            self.seconds = time.perf_counter() - t0
            if self._bar is not None:
                self._bar.close()
            self._notify()
        return self.result

    def run(self, *, progress: bool = True) -> Any:
        """Run in this thread and return the result (None when stopped); Ctrl-C keeps the finished groups."""
        if self.state != "pending":
            raise RuntimeError(f"experiment {self.name} was already run ({self.state}); prepare it again to rerun")
        self._open_bar(progress)
        return self._execute()

    def start(self, *, progress: bool = True) -> threading.Thread:
        """Run in a background thread; return once it has checked its options and scores, prepared the data
        and locked its folder (a mistake found there is raised here, as by :meth:`run`). The progress bar is
        made here, in the calling thread (a notebook cell shows it), and moved from the training thread."""
        if self.state != "pending":
            raise RuntimeError(f"experiment {self.name} was already run ({self.state}); prepare it again to rerun")
        self._open_bar(progress)
        self.state = "running"
        self.thread = threading.Thread(target=self._execute, name=f"cscore-{self.name}", daemon=True)
        _BACKGROUND.add(self)
        self.thread.start()
        self._begun.wait()
        if self.state == "failed" and self.progress is None:  # refused before any training
            raise self.exception
        return self.thread

    def stop(self, wait: bool = True, timeout: float | None = None) -> None:
        """Ask it to stop at the next SGD step; finished groups stay in the folder."""
        self._stop.set()
        if self.state == "running":
            self.state = "stopping"
        if wait and self.thread is not None:
            self.thread.join(timeout)

    def wait(self, timeout: float | None = None) -> Any:
        """Wait for the background run; its result (None when stopped); a failure raises RuntimeError."""
        if self.thread is not None:
            self.thread.join(timeout)
        if self.state == "failed":
            raise RuntimeError(f"experiment {self.name} failed: {self.error}")
        return self.result

    def line(self) -> str:
        """The state in one line."""
        p = self.progress
        done = "" if p is None else (f", {p.groups_done}/{p.groups_total} groups ({p.models_done}/{p.models_total} "
                                     f"models, {100 * p.fraction:.0f}% of the steps"
                                     + (f", {p.groups_resumed} resumed" if p.groups_resumed else "") + ")")
        state = self.state + (f": {self.error}" if self.error else "")
        return f"{self.experiment.name} on {', '.join(self.scores)}: {state}{done}"

    def __repr__(self) -> str:
        return f"ExperimentJob({self.experiment.command}, {self.name}, {self.state})"


def stop_background(timeout: float = 30.0) -> list[ExperimentJob]:
    """Stop every experiment running in a background thread at its next step (registered with atexit)."""
    for job in list(_BACKGROUND):
        job._bar = None  # nothing is displayed at exit
    return stop_jobs(_BACKGROUND, timeout)


atexit.register(stop_background)
