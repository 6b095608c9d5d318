"""``%cscore``: the notebook front end. Parse, call the library, display.

Two layers, after IPython's autoreload extension:

* :class:`CScoreSession`, a plain object that remembers what a session has loaded and
  computed (data sets, noise masks, running estimations, scores, proxies, correlations)
  and does every subcommand's work by calling the library. Everything ``%cscore`` does
  can be done from Python with one call on it.
* :class:`CScoreMagics`, the IPython ``Magics`` class: one small argparse parser per
  subcommand (``error()`` raises :class:`UsageError`), ``%config``-able session defaults
  (``device``, ``run_root``, ``runs``, ``monitor_interval``), and display.

Load it with ``%load_ext cscore_lab``.
"""

from __future__ import annotations

import argparse
import atexit
import difflib
import re
import shlex
import weakref
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display
from traitlets import Float, Int, TraitError, Unicode, validate

from .cli import _default_preset, _fraction, _positive_int, _ratio
from .cscores import CScores
from .data import DATASETS, Dataset, inject_label_noise, load_dataset
from .proxies.suite import FAMILIES as PROXY_FAMILIES
from .proxies.suite import SPACES as PROXY_SPACES
from .recipes import PRESETS, Plan, get_preset
from .store import StoreBusyError

if TYPE_CHECKING:  # pragma: no cover
    from .holdout import Estimation
    from .viz.widgets import Dashboard, Gallery, RunMonitor

__all__ = ["CScoreSession", "Analysis", "CScoreMagics", "load_ipython_extension", "SUBCOMMANDS"]

DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
PUBLISHED_NAMES = ("mnist", "cifar10", "cifar100")


# =========================================================================== the controller


@dataclass(eq=False)
class Analysis:
    """What a session knows about one data set."""

    dataset: Dataset
    cscores: CScores | None = None
    estimation: "Estimation | None" = None
    monitor: "RunMonitor | None" = None
    proxies: Any = None
    correlations: Any = None
    noise_mask: np.ndarray | None = None
    original_labels: np.ndarray | None = None
    run_folder: Path | None = None

    @property
    def running(self) -> bool:
        t = self.estimation.thread if self.estimation is not None else None
        return t is not None and t.is_alive()

    def scores(self) -> CScores | None:
        """The finished or loaded scores, or the estimate so far while a run is going."""
        est = self.estimation
        if est is not None:
            if est.result is not None and not self.running:
                self.cscores = est.result
            elif est.progress.done_runs > 0 or self.cscores is None:
                return est.current()
        return self.cscores


class CScoreSession:
    """The work behind ``%cscore``, as plain Python.

    Parameters
    ----------
    device : str, default "auto"
        Device for training (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    run_root : path, default "cscore-runs"
        Where run folders go when none is given.
    runs : int, optional
        Models per ratio when an estimate names none (default: the preset's).
    monitor_interval : float, default 1.0
        Least seconds between redraws of a run monitor's histogram.
    namespace : dict, optional
        Where data set names are also looked up as variables holding a :class:`Dataset`.
    """

    def __init__(self, *, device: str = "auto", run_root: str | Path = "cscore-runs", runs: int | None = None,
                 monitor_interval: float = 1.0, namespace: dict[str, Any] | None = None):
        self.device = device
        self.run_root = Path(run_root)
        self.runs = runs
        self.monitor_interval = monitor_interval
        self.namespace = namespace if namespace is not None else {}
        self.analyses: dict[str, Analysis] = {}
        self.current: str | None = None

    # ------------------------------------------------------------------ data sets
    def analysis(self, name: str | None = None, *, data: str | Path | None = None) -> Analysis:
        """The record of data set ``name`` (default: the one used last, else digits), loading it if new.

        ``name`` is looked up as a variable holding a :class:`Dataset` (the session's record of the
        same data is kept), then among the session's data sets (noisy copies, loaded runs), then
        among the loadable :data:`~cscore_lab.data.DATASETS` (``data`` is the path those need).
        """
        if name is None:
            name = self.current or "digits"
        var = self.namespace.get(name)
        if isinstance(var, Dataset) and data is None:
            rec = self.analyses.get(name)
            if rec is None or (rec.dataset is not var and rec.dataset.fingerprint != var.fingerprint):
                rec = next((r for r in self.analyses.values() if r.dataset is var), None) or Analysis(var)
                self.analyses[name] = rec
            self.current = name
            return rec
        if name in self.analyses and data is None:
            self.current = name
            return self.analyses[name]
        if name not in DATASETS:
            known = sorted(set(self.analyses) | set(DATASETS))
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown data set {name!r}{hint}; known: {', '.join(known)}, "
                             f"or the name of a variable holding a Dataset")
        self.analyses[name] = Analysis(load_dataset(name, data))
        self.current = name
        return self.analyses[name]

    def datasets(self):
        """A table of what can be loaded and what this session holds."""
        import pandas as pd

        rows = [{"name": s.name, "needs --data": s.needs_path, "in session": s.name in self.analyses,
                 "description": s.description} for s in DATASETS.values()]
        for name, rec in self.analyses.items():
            if name not in DATASETS:
                what = f"{len(rec.dataset)} examples"
                if rec.noise_mask is not None:
                    what += f", {int(rec.noise_mask.sum())} labels flipped"
                rows.append({"name": name, "needs --data": False, "in session": True, "description": what})
        return pd.DataFrame(rows).set_index("name")

    def noise(self, dataset: str | None, fraction: float, *, seed: int = 0, data: str | Path | None = None,
              name: str | None = None) -> Analysis:
        """A copy of a data set with ``fraction`` of its labels flipped; the session remembers the mask
        and the original labels under the copy's name."""
        base = self.analysis(dataset, data=data)
        noisy, mask = inject_label_noise(base.dataset, fraction, seed=seed)
        if name:
            noisy = Dataset(noisy.inputs, noisy.labels, noisy.images, noisy.class_names, name, noisy.value_range,
                            noisy.source)
        rec = Analysis(noisy, noise_mask=mask, original_labels=base.dataset.labels.copy())
        self.analyses[noisy.name] = rec
        self.current = noisy.name
        return rec

    # ------------------------------------------------------------------ estimation
    def prepare(self, dataset: str | None = None, *, data: str | Path | None = None, preset: str | None = None,
                ratios: Sequence[float] | None = None, runs: int | None = None, seed: int = 0,
                shard_size: int | None = None, device: str | None = None, out: str | Path | None = None,
                backend: str = "local", address: str | None = None, num_gpus: float | None = None,
                monitor: bool = True) -> Analysis:
        """Set up an estimation (and its monitor) without running it; see :meth:`estimate`."""
        from .backends import backend_from_options
        from .holdout import Estimation, default_run_folder

        rec = self.analysis(dataset, data=data)
        if rec.running:
            raise StoreBusyError(f"an estimation of {rec.dataset.name} is already running in this session "
                                 f"({rec.estimation.progress.line()}); %cscore stop it or %cscore wait for it")
        ds = rec.dataset
        chosen = get_preset(preset or _default_preset(ds.name, ds.input_shape))
        runs = runs if runs is not None else self.runs
        changes = {k: v for k, v in (("ratios", tuple(ratios) if ratios else None), ("runs", runs),
                                     ("shard_size", shard_size)) if v is not None}
        plan: Plan = replace(chosen.plan, seed=int(seed), **changes)
        folder = Path(out) if out else default_run_folder(ds.name, chosen.recipe.name, seed, self.run_root)
        for other in self.analyses.values():
            if other.running and other.run_folder is not None and other.run_folder.resolve() == folder.resolve():
                raise StoreBusyError(f"run folder {folder} is in use by the running estimation of "
                                     f"{other.dataset.name}; %cscore stop it first")
        est = Estimation(ds, chosen.recipe, plan, out=folder, device=device or self.device,
                         backend=backend_from_options(backend, address=address, num_gpus=num_gpus))
        with est.store.lock():  # another process holding the folder fails here, before any thread starts
            pass
        if rec.noise_mask is not None:
            np.save(folder / "flipped.npy", rec.noise_mask, allow_pickle=False)
            np.save(folder / "labels.npy", ds.labels, allow_pickle=False)
        rec.estimation, rec.run_folder = est, folder
        rec.monitor = None
        if monitor:
            from .viz.widgets import RunMonitor

            rec.monitor = RunMonitor(est, interval=self.monitor_interval)
        return rec

    def estimate(self, dataset: str | None = None, *, wait: bool = False, **options: Any) -> "Estimation | CScores":
        """Estimate C-scores: in a background thread (returns the running :class:`Estimation`),
        or with ``wait=True`` in the foreground (returns :class:`CScores`).

        Options: ``data``, ``preset``, ``ratios``, ``runs``, ``seed``, ``shard_size``, ``device``,
        ``out`` (run folder; default ``<run_root>/<dataset>-<preset>-seed<seed>``), ``backend``
        (``"local"`` or ``"ray"``), ``monitor``. Running the same estimate again resumes.
        """
        rec = self.prepare(dataset, **options)
        if wait:
            return self.run(rec)
        rec.estimation.start()
        return rec.estimation

    def run(self, rec: Analysis) -> CScores:
        """Run a prepared estimation in this thread; an interrupt keeps the finished shards."""
        try:
            cs = rec.estimation.run()
        except KeyboardInterrupt:
            cs = rec.estimation.current()
        rec.cscores = cs
        return cs

    def wait(self, dataset: str | None = None, timeout: float | None = None) -> CScores:
        """Wait for the run of ``dataset`` (default: current) and return its scores."""
        rec = self.analysis(dataset)
        if rec.estimation is None:
            if rec.cscores is not None:
                return rec.cscores
            raise ValueError(f"no estimation of {rec.dataset.name} in this session; start one with %cscore estimate")
        rec.estimation.wait(timeout)
        if rec.estimation.progress.state == "failed":
            raise RuntimeError(f"the estimation of {rec.dataset.name} failed: {rec.estimation.progress.error}")
        cs = rec.scores()
        assert cs is not None
        return cs

    def status(self) -> list[str]:
        """One line per estimation of this session."""
        lines = []
        for rec in self._records():
            if rec.estimation is not None:
                line = rec.monitor.text() if rec.monitor is not None else rec.estimation.progress.line()
                lines.append(f"{rec.dataset.name}: {line} [{rec.run_folder}]")
        return lines

    def _records(self) -> list[Analysis]:
        """Each record once (a data set can be known under several names)."""
        return list({id(r): r for r in self.analyses.values()}.values())

    def stop(self, dataset: str | None = None, *, all: bool = False) -> list[str]:
        """Stop running estimations: that of ``dataset``, every one with ``all``, else the current one
        (or every one when the current is not running). The shard in flight is dropped, finished shards
        stay. Returns one line per stopped run."""
        running = [r for r in self._records() if r.running]
        if dataset is not None and not all:
            targets = [self.analysis(dataset)]
        elif not all and self.current in self.analyses and self.analyses[self.current].running:
            targets = [self.analyses[self.current]]
        else:
            targets = running
        done = []
        for rec in targets:
            if not rec.running:
                continue
            rec.estimation.stop(wait=True)
            p = rec.estimation.progress
            done.append(f"stopped {rec.dataset.name}: {p.done_runs}/{p.total_runs} runs kept in {rec.run_folder}; "
                        f"run the same %cscore estimate again to resume")
        return done

    def load(self, path: str | Path, *, data: str | Path | None = None) -> CScores:
        """Open a run folder (finished or not) with its data set; a noise mask stored there is remembered."""
        from .report import open_run

        run = open_run(path, data=data)
        rec = Analysis(run.dataset, cscores=run.cscores, noise_mask=run.noise_mask, run_folder=Path(path))
        self.analyses[run.dataset.name] = rec
        self.current = run.dataset.name
        return run.cscores

    def load_published(self, name: str, path: str | Path, *, data: str | Path) -> CScores:
        """The authors' published scores for ``name`` (mnist, cifar10, cifar100), checked against the
        training set read from ``data`` (official order); kept under ``<name>-published``."""
        from .published import load_published

        ds = load_dataset(name, data)
        cs = load_published(name, path, ds)
        key = f"{name}-published"
        self.analyses[key] = Analysis(ds, cscores=cs)
        self.current = key
        return cs

    # ------------------------------------------------------------------ proxies and comparisons
    def _scores_of(self, rec: Analysis) -> CScores:
        cs = rec.scores()
        if cs is None:
            raise ValueError(f"no C-scores for {rec.dataset.name} yet: %cscore estimate {rec.dataset.name} "
                             f"(or %cscore load RUN_FOLDER)")
        return cs

    def proxies(self, dataset: str | None = None, *, data: str | Path | None = None, preset: str | None = None,
                device: str | None = None, **options: Any) -> Any:
        """Compute the cheap proxies of a data set with
        :func:`~cscore_lab.proxies.suite.compute_proxies` (``options`` go to it: ``runs``,
        ``families``, ``spaces``, ``progress``, ...); the recipe defaults as for an estimate."""
        from .proxies.suite import compute_proxies

        rec = self.analysis(dataset, data=data)
        recipe = get_preset(preset or _default_preset(rec.dataset.name, rec.dataset.input_shape)).recipe
        rec.proxies = compute_proxies(rec.dataset, recipe, device=device or self.device, **options)
        rec.correlations = None
        return rec.proxies

    def compare(self, dataset: str | None = None, **options: Any) -> Any:
        """Correlate every proxy with the C-score (:func:`~cscore_lab.analysis.correlate`; ``options``
        such as ``n_boot`` go to it)."""
        from .analysis import correlate

        rec = self.analysis(dataset)
        if rec.proxies is None:
            raise ValueError(f"no proxies for {rec.dataset.name} yet: %cscore proxies {rec.dataset.name}")
        rec.correlations = correlate(rec.proxies, self._scores_of(rec), **options)
        return rec.correlations

    def detect(self, dataset: str | None = None) -> Any:
        """How well the C-score and each proxy rank the flipped labels first (needs a noise mask)."""
        from .analysis import detect_label_noise

        rec = self.analysis(dataset)
        if rec.noise_mask is None:
            raise ValueError(f"no noise mask for {rec.dataset.name}: make a noisy copy with "
                             f"%cscore noise DATASET FRACTION and estimate that")
        cs = self._scores_of(rec)
        if rec.proxies is None:
            return detect_label_noise(cs, rec.noise_mask)
        return detect_label_noise(rec.proxies, rec.noise_mask, cscores=cs)

    # ------------------------------------------------------------------ views
    def dashboard(self, dataset: str | None = None) -> "Dashboard":
        """The dashboard (Distribution, Agreement, Ratios, Gallery) of a data set's current scores."""
        from .viz.widgets import Dashboard

        rec = self.analysis(dataset)
        cs = self._scores_of(rec)
        if rec.proxies is not None and rec.correlations is None:
            try:
                self.compare(rec.dataset.name)
            except ImportError:  # the analysis module may be absent in a partial install
                pass
        return Dashboard(cs, rec.dataset, proxies=rec.proxies, correlations=rec.correlations,
                         noise_mask=rec.noise_mask, original_labels=rec.original_labels)

    def gallery(self, dataset: str | None = None, *, label: str | int | None = None, order: str = "lowest",
                count: int = 24) -> "Gallery":
        """The gallery alone, optionally opened on one class (name or index) and order."""
        from .viz.widgets import Gallery

        rec = self.analysis(dataset)
        g = Gallery(self._scores_of(rec), rec.dataset, noise_mask=rec.noise_mask, original_labels=rec.original_labels,
                    count=count)
        if label is not None:
            names = rec.dataset.class_names
            k = names.index(str(label)) if str(label) in names else (int(label) if str(label).isdigit() else -2)
            if not 0 <= k < len(names):
                raise ValueError(f"unknown class {label!r}; classes: {', '.join(names)}")
            g.class_select.value = k
        if order not in ("lowest", "highest", "range"):
            raise ValueError(f"order must be lowest, highest or range, got {order!r}")
        g.order.value = order
        return g


# =========================================================================== parsers


@dataclass
class _Quiet:
    """A subcommand's result that ``-o`` binds but the cell does not display."""

    value: Any


class _HelpShown(Exception):
    """--help was printed: stop quietly."""


class _Parser(argparse.ArgumentParser):
    """A subcommand parser whose mistakes become a one-line :class:`UsageError`."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        if message:
            print(message)
        raise _HelpShown()


def _dataset_arg(p: argparse.ArgumentParser, data: bool = True) -> None:
    p.add_argument("dataset", nargs="?", default=None, metavar="DATASET",
                   help=f"data set: {', '.join(DATASETS)}, a noisy copy made by %%cscore noise, or a variable "
                        f"holding a Dataset (default: the one used last, digits at first)")
    p.add_argument("--dataset", dest="dataset_option", metavar="NAME", help="the same as DATASET (as in cscore-lab)")
    if data:
        p.add_argument("--data", metavar="PATH", help="folder or file holding the data set (all but digits)")


def _output_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("-o", "--output", metavar="NAME", help=f"also put {what} in the variable NAME")


def _build_parsers() -> dict[str, tuple[str, argparse.ArgumentParser]]:
    parsers: dict[str, tuple[str, argparse.ArgumentParser]] = {}

    def sub(name: str, summary: str, description: str = "") -> _Parser:
        p = _Parser(prog=f"%cscore {name}", description=description or summary, add_help=True,
                    formatter_class=argparse.RawDescriptionHelpFormatter)
        parsers[name] = (summary, p)
        return p

    p = sub("estimate", "estimate C-scores (in the background; --wait for the foreground)",
            "Train many models on random subsets and record held-out correctness. Returns at once with a live "
            "monitor; %cscore wait blocks until it ends, %cscore stop stops it. Running the same estimate again "
            "resumes from the finished shards in the run folder.")
    _dataset_arg(p)
    p.add_argument("--preset", choices=list(PRESETS), metavar="NAME",
                   help=f"training recipe: {', '.join(PRESETS)} (default: by the data's shape)")
    p.add_argument("--ratios", type=_ratio, nargs="+", metavar="R", help="subset ratios (default: the preset's)")
    p.add_argument("--runs", type=_positive_int, metavar="N",
                   help="models per ratio (default: %%config CScoreMagics.runs, else the preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of subsets and initialisations (default 0)")
    p.add_argument("--shard-size", type=_positive_int, metavar="M", help="models trained together and stored per file")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: %%config CScoreMagics.device)")
    p.add_argument("--out", metavar="DIR",
                   help="run folder (default: <CScoreMagics.run_root>/<dataset>-<preset>-seed<seed>)")
    p.add_argument("--backend", default="local", choices=["local", "ray"], help="where shards run (default local)")
    p.add_argument("--address", default=None, help="Ray cluster address HOST:PORT (with --backend ray); default: a local instance")
    p.add_argument("--num-gpus", type=float, default=None, metavar="F", help="GPU fraction per shard on Ray (default 0.25)")
    p.add_argument("--wait", action="store_true", help="run in the foreground and return the C-scores")
    _output_arg(p, "the Estimation (background) or the CScores (--wait)")

    p = sub("wait", "wait for a background estimate to end and return its C-scores")
    _dataset_arg(p, data=False)
    p.add_argument("--timeout", type=float, metavar="SECONDS", help="give up waiting after this long")
    _output_arg(p, "the CScores")

    p = sub("status", "show the progress of this session's estimations")

    p = sub("stop", "stop a background estimate (the shard in flight is dropped; finished shards stay)")
    _dataset_arg(p, data=False)
    p.add_argument("--all", action="store_true", help="stop every running estimate")

    p = sub("proxies", "compute the cheap proxies (kernel density, learning speed, kNN, ...)")
    _dataset_arg(p)
    p.add_argument("--preset", choices=list(PRESETS), metavar="NAME",
                   help="recipe of the full-data model(s) behind the learning-speed and hidden-space proxies")
    p.add_argument("--runs", type=_positive_int, default=1, metavar="N", help="full-data models, averaged (default 1)")
    p.add_argument("--families", nargs="+", choices=list(PROXY_FAMILIES), metavar="F",
                   help=f"proxy families: {', '.join(PROXY_FAMILIES)} (default all)")
    p.add_argument("--spaces", nargs="+", choices=list(PROXY_SPACES), metavar="S",
                   help=f"feature spaces of kde, knn and lof: {', '.join(PROXY_SPACES)} (default both)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: %%config CScoreMagics.device)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    _output_arg(p, "the ProxyTable")

    p = sub("compare", "correlate every proxy with the C-score (Spearman, Kendall, bootstrap intervals)")
    _dataset_arg(p, data=False)
    p.add_argument("--boot", type=int, default=1000, metavar="N", help="bootstrap resamples (default 1000; 0: none)")
    p.add_argument("--no-per-class", action="store_true", help="overall correlations only")
    _output_arg(p, "the CorrelationTable")

    p = sub("detect", "how well each score ranks the flipped labels of a noisy copy first")
    _dataset_arg(p, data=False)
    _output_arg(p, "the DetectionTable")

    p = sub("show", "the dashboard: Distribution, Agreement, Ratios, Gallery")
    _dataset_arg(p, data=False)
    _output_arg(p, "the Dashboard widget")

    p = sub("gallery", "the examples, lowest or highest C-scores first, by class")
    _dataset_arg(p, data=False)
    p.add_argument("--class", dest="label", metavar="CLASS", help="open on this class (name or index)")
    p.add_argument("--order", choices=["lowest", "highest", "range"], default="lowest", help="which examples first")
    p.add_argument("--count", type=_positive_int, default=24, help="how many images (default 24)")
    _output_arg(p, "the Gallery widget")

    p = sub("noise", "make a copy of a data set with some labels flipped, and remember which")
    p.add_argument("dataset", metavar="DATASET", help="the data set to copy")
    p.add_argument("fraction", type=_fraction, help="share of labels to flip, in [0, 1]")
    p.add_argument("--seed", type=int, default=0, help="which labels are flipped (default 0)")
    p.add_argument("--data", metavar="PATH", help="folder or file holding the data set (all but digits)")
    p.add_argument("--name", help="name of the copy (default <dataset>-noise<fraction>)")
    _output_arg(p, "the noisy Dataset")

    p = sub("load", "open a run folder (finished or not) with its data set")
    p.add_argument("run", metavar="DIR", help="the run folder")
    p.add_argument("--data", metavar="PATH", help="the data set's folder or file (all but digits)")
    _output_arg(p, "the CScores")

    p = sub("load-published", "load the authors' published C-scores (mnist, cifar10, cifar100)")
    p.add_argument("name", choices=list(PUBLISHED_NAMES), metavar="NAME", help=", ".join(PUBLISHED_NAMES))
    p.add_argument("path", metavar="PATH", help="the released file or the folder holding it")
    p.add_argument("--data", metavar="PATH", required=True, help="the training set's folder (official order)")
    _output_arg(p, "the CScores")

    p = sub("datasets", "list the data sets that can be loaded and those this session holds")
    _output_arg(p, "the table")
    return parsers


PARSERS = _build_parsers()
SUBCOMMANDS = tuple(PARSERS)


def _usage() -> str:
    width = max(map(len, PARSERS))
    lines = ["%cscore SUBCOMMAND [options]      (%cscore SUBCOMMAND --help for one subcommand)", "", "Subcommands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (summary, _) in PARSERS.items()]
    lines += ["", "Session defaults: %config CScoreMagics.device = 'cpu' (also run_root, runs, monitor_interval)."]
    return "\n".join(lines)


def _full_help() -> str:
    parts = ["C-scores (consistency scores) of a labeled data set, their proxies and views.", "", _usage()]
    for _, p in PARSERS.values():
        parts += ["", "-" * 72, p.format_help().rstrip()]
    return "\n".join(parts)


# =========================================================================== the magics


@magics_class
class CScoreMagics(Magics):
    """``%cscore``: holds a :class:`CScoreSession` and forwards to it."""

    device = Unicode("auto", help="device for training: auto, cpu, cuda or cuda:N").tag(config=True)
    run_root = Unicode("cscore-runs", help="folder under which run folders are made when --out is not given").tag(config=True)
    runs = Int(None, allow_none=True, help="models per ratio when --runs is not given (None: the preset's)").tag(config=True)
    monitor_interval = Float(1.0, help="least seconds between redraws of a run monitor's histogram").tag(config=True)

    def __init__(self, shell: Any = None, **kwargs: Any):
        super().__init__(shell=shell, **kwargs)
        ns = shell.user_ns if shell is not None else {}
        self.session = CScoreSession(device=self.device, run_root=self.run_root, runs=self.runs,
                                     monitor_interval=self.monitor_interval, namespace=ns)
        self.observe(self._sync, names=["device", "run_root", "runs", "monitor_interval"])

    def _sync(self, change: Any) -> None:
        value = Path(change["new"]) if change["name"] == "run_root" else change["new"]
        setattr(self.session, change["name"], value)

    @validate("device")
    def _check_device(self, proposal: Any) -> str:
        v = str(proposal["value"]).strip()
        if not DEVICE_PATTERN.match(v):
            raise TraitError(f"device must be auto, cpu, mps, cuda or cuda:N, got {v!r}")
        return v

    @validate("runs")
    def _check_runs(self, proposal: Any) -> int | None:
        v = proposal["value"]
        if v is not None and v < 1:
            raise TraitError(f"runs must be a positive integer or None, got {v!r}")
        return v

    @validate("monitor_interval")
    def _check_interval(self, proposal: Any) -> float:
        v = float(proposal["value"])
        if not v > 0:
            raise TraitError(f"monitor_interval must be > 0 seconds, got {v}")
        return v

    @validate("run_root")
    def _check_root(self, proposal: Any) -> str:
        v = str(proposal["value"]).strip()
        if not v:
            raise TraitError("run_root must be a folder path, got an empty string")
        return v

    # ------------------------------------------------------------------ dispatch
    @line_magic
    def cscore(self, line: str = "") -> Any:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise UsageError(f"%cscore: cannot split the line: {exc}") from None
        if not words or words[0] in ("-h", "--help", "help"):
            print(_usage())
            return None
        name, rest = words[0], words[1:]
        if name not in PARSERS:
            close = difflib.get_close_matches(name, PARSERS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UsageError(f"%cscore: unknown subcommand {name!r}{hint}; choose one of: {', '.join(PARSERS)}")
        try:
            args = PARSERS[name][1].parse_args(rest)
        except _HelpShown:
            return None
        option = getattr(args, "dataset_option", None)
        if option is not None:
            if args.dataset not in (None, option):
                raise UsageError(f"%cscore {name}: two data sets given ({args.dataset!r} and --dataset {option!r})")
            args.dataset = option
        out = getattr(args, "output", None)
        if out is not None and not out.isidentifier():
            raise UsageError(f"%cscore {name}: -o needs a Python variable name, got {out!r}")
        handler: Callable[[argparse.Namespace], Any] = getattr(self, "_do_" + name.replace("-", "_"))
        try:
            result = handler(args)
        except UsageError:
            raise
        except (ValueError, FileNotFoundError, StoreBusyError, ImportError, RuntimeError) as exc:
            # bad values, missing files or extras, busy run folders: a short message, no traceback
            raise UsageError(f"%cscore {name}: {exc}") from None
        shown = None if isinstance(result, _Quiet) else result
        out = getattr(args, "output", None)
        if out:
            self.shell.user_ns[out] = result.value if isinstance(result, _Quiet) else result
        return shown

    cscore.__doc__ = _full_help()

    # ------------------------------------------------------------------ subcommands
    def _do_estimate(self, a: argparse.Namespace) -> Any:
        rec = self.session.prepare(a.dataset, data=a.data, preset=a.preset, ratios=a.ratios, runs=a.runs,
                                   seed=a.seed, shard_size=a.shard_size, device=a.device, out=a.out,
                                   backend=a.backend, address=a.address, num_gpus=a.num_gpus)
        est = rec.estimation
        print(f"estimating {rec.dataset.name}: {est.plan.total_runs} models ({len(est.plan.ratios)} ratios × "
              f"{est.plan.runs} runs), recipe {est.recipe.name}, run folder {rec.run_folder}")
        display(rec.monitor)
        if a.wait:
            cs = self.session.run(rec)
            if est.progress.state != "finished":
                print(f"stopped early: {est.progress.line()}; run the same %cscore estimate again to resume")
            return cs
        est.start()
        print("running in the background: %cscore status, %cscore wait, %cscore stop")
        return _Quiet(est)

    def _do_wait(self, a: argparse.Namespace) -> CScores | None:
        try:
            return self.session.wait(a.dataset, a.timeout)
        except KeyboardInterrupt:
            print("still running in the background; %cscore stop stops it")
            return None

    def _do_status(self, a: argparse.Namespace) -> None:
        lines = self.session.status()
        print("\n".join(lines) if lines else "no estimations in this session")

    def _do_stop(self, a: argparse.Namespace) -> None:
        lines = self.session.stop(a.dataset, all=a.all)
        print("\n".join(lines) if lines else "nothing is running")

    def _do_proxies(self, a: argparse.Namespace) -> Any:
        options: dict[str, Any] = {"runs": a.runs, "progress": not a.quiet}
        if a.families:
            options["families"] = tuple(a.families)
        if a.spaces:
            options["spaces"] = tuple(a.spaces)
        return self.session.proxies(a.dataset, data=a.data, preset=a.preset, device=a.device, **options)

    def _do_compare(self, a: argparse.Namespace) -> Any:
        return self.session.compare(a.dataset, n_boot=a.boot, per_class=not a.no_per_class)

    def _do_detect(self, a: argparse.Namespace) -> Any:
        return self.session.detect(a.dataset)

    def _do_show(self, a: argparse.Namespace) -> Any:
        return self.session.dashboard(a.dataset)

    def _do_gallery(self, a: argparse.Namespace) -> Any:
        return self.session.gallery(a.dataset, label=a.label, order=a.order, count=a.count)

    def _do_noise(self, a: argparse.Namespace) -> _Quiet:
        rec = self.session.noise(a.dataset, a.fraction, seed=a.seed, data=a.data, name=a.name)
        print(f"{rec.dataset.name}: {int(rec.noise_mask.sum())} of {len(rec.dataset)} labels flipped (seed {a.seed}); "
              f"%cscore estimate {rec.dataset.name} to score it")
        return _Quiet(rec.dataset)

    def _do_load(self, a: argparse.Namespace) -> CScores:
        return self.session.load(a.run, data=a.data)

    def _do_load_published(self, a: argparse.Namespace) -> CScores:
        return self.session.load_published(a.name, a.path, data=a.data)

    def _do_datasets(self, a: argparse.Namespace) -> Any:
        return self.session.datasets()


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%cscore`` (called by ``%load_ext cscore_lab``)."""
    magics = CScoreMagics(ipython)
    ipython.register_magics(magics)
    # stop background runs before the interpreter tears down their thread mid-shard
    session = weakref.ref(magics.session)
    atexit.register(lambda: session() is not None and session().stop(all=True))


def unload_ipython_extension(ipython: Any) -> None:
    """Stop this session's running estimations (their finished shards stay)."""
    magics = ipython.magics_manager.registry.get("CScoreMagics")
    if magics is not None:
        magics.session.stop(all=True)
