"""``%cscore``: the notebook front end. Parse, call the session, display.

The work is done by :class:`~cscore_lab.session.CScoreSession` (plain Python, no IPython); this
module only declares one small argparse parser per subcommand from the shared option groups of
:mod:`cscore_lab.options` (``error()`` raises :class:`UsageError`: a one-line message, no
traceback), holds ``%config``-able session defaults (``device``, ``run_root``, ``runs``,
``monitor_interval``) and displays what the session returns. Load it with ``%load_ext cscore_lab``.
"""

from __future__ import annotations

import argparse
import difflib
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from IPython.display import display
from traitlets import Float, Int, TraitError, Unicode, validate

from .cscores import CScores
from .detection import INJECTED
from .experiments import EXPERIMENTS, add_experiment_options, experiment_options
from .ood import OOD_KINDS
from .options import (add_dataset_options, add_estimate_options, add_proxy_options, error_message, fraction,
                      influence_threshold, nonnegative_int, positive_int, seconds, seed_value)
from .session import PUBLISHED_NAMES, CScoreSession
from .store import StoreBusyError

__all__ = ["CScoreMagics", "CScoreSession", "load_ipython_extension", "SUBCOMMANDS"]


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
    if data:
        add_dataset_options(p, positional=True, noise=False)
    else:
        p.add_argument("dataset", nargs="?", default=None, metavar="DATASET",
                       help="data set (default: the one used last, digits at first)")
        p.add_argument("--dataset", dest="dataset_option", metavar="NAME", help="the same as DATASET")


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
            "resumes from the finished shards in the run folder. The same options as 'cscore-lab estimate' make "
            "the same run folder.")
    add_dataset_options(p, positional=True, noise=True)
    add_estimate_options(p, session_defaults=True)
    p.add_argument("--wait", action="store_true", help="run in the foreground and return the C-scores")
    _output_arg(p, "the Estimation (background) or the CScores (--wait)")

    p = sub("wait", "wait for a background estimate (and experiments) to end and return the C-scores")
    _dataset_arg(p, data=False)
    p.add_argument("--timeout", type=seconds, metavar="SECONDS", help="give up waiting after this long")
    _output_arg(p, "the CScores")

    p = sub("status", "show the progress of this session's estimations and experiments")

    p = sub("stop", "stop background estimates and experiments (what is in flight is dropped; finished shards and "
                    "groups stay)")
    _dataset_arg(p, data=False)
    p.add_argument("--all", action="store_true", help="stop every running estimate and experiment")

    p = sub("proxies", "compute the cheap proxies (kernel density, learning speed, kNN, ...)")
    _dataset_arg(p)
    add_proxy_options(p, session_defaults=True)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _output_arg(p, "the ProxyTable")

    p = sub("compare", "correlate every proxy with the C-score (Spearman, Kendall, bootstrap intervals)")
    _dataset_arg(p, data=False)
    p.add_argument("--boot", type=nonnegative_int, default=1000, metavar="N", help="bootstrap resamples (default 1000; 0: none)")
    p.add_argument("--no-per-class", action="store_true", help="overall correlations only")
    _output_arg(p, "the CorrelationTable")

    p = sub("detect", "how well each score (C-score, memorization, every proxy) ranks the injected examples first")
    _dataset_arg(p, data=False)
    p.add_argument("--kind", choices=list(INJECTED), default=None,
                   help="flipped (labels, %%cscore noise) or ood (inputs, %%cscore ood); default: the data set's "
                        "mask, flipped when it has both")
    _output_arg(p, "the DetectionTable")

    p = sub("memorization", "Feldman & Zhang's memorization of every example, from the estimate's models")
    _dataset_arg(p, data=False)
    _output_arg(p, "the Memorization table")

    p = sub("influence", "which training examples each prediction depends on (top-k, from the estimate's models)")
    _dataset_arg(p, data=False)
    p.add_argument("--k", type=positive_int, default=10, help="training examples kept per target (default 10)")
    p.add_argument("--example", type=nonnegative_int, metavar="J", help="show the training examples target J depends on")
    p.add_argument("--threshold", type=influence_threshold, default=None, metavar="T",
                   help="show the pairs above this influence (Feldman & Zhang use 0.15)")
    _output_arg(p, "the Influence table")

    p = sub("show", "the dashboard: Distribution, Agreement, Ratios, Memorization, Gallery, Uses")
    _dataset_arg(p, data=False)
    _output_arg(p, "the Dashboard widget")

    p = sub("gallery", "the examples, lowest or highest C-scores first, by class")
    _dataset_arg(p, data=False)
    p.add_argument("--class", dest="label", metavar="CLASS", help="open on this class (name or index)")
    p.add_argument("--order", choices=["lowest", "highest", "range"], default="lowest", help="which examples first")
    p.add_argument("--count", type=positive_int, default=24, help="how many images (default 24)")
    _output_arg(p, "the Gallery widget")

    p = sub("noise", "make a copy of a data set with some labels flipped, and remember which")
    p.add_argument("dataset", metavar="DATASET", help="the data set to copy")
    p.add_argument("fraction", type=fraction, help="share of labels to flip, in [0, 1]")
    p.add_argument("--seed", type=seed_value, default=0, help="which labels are flipped (default 0)")
    p.add_argument("--data", metavar="PATH", help="folder or file holding the data set (all but digits)")
    p.add_argument("--name", help="name of the copy (default <dataset>-noise<fraction>)")
    _output_arg(p, "the noisy Dataset")

    p = sub("ood", "make a copy of a data set with some examples replaced by out-of-distribution inputs, and "
                   "remember which")
    p.add_argument("dataset", metavar="DATASET", help="the data set to copy")
    p.add_argument("fraction", type=fraction, help="share of examples to replace, in [0, 1]")
    p.add_argument("--kind", choices=list(OOD_KINDS), default="gaussian",
                   help=f"what replaces them: {', '.join(OOD_KINDS)} (default gaussian; see cscore_lab.ood)")
    p.add_argument("--seed", type=seed_value, default=0, help="which examples are replaced, and their labels (default 0)")
    p.add_argument("--source", metavar="PATH", help="pictures for --kind foreign where needed (an MNIST folder for digits)")
    p.add_argument("--data", metavar="PATH", help="folder or file holding the data set (all but digits)")
    p.add_argument("--name", help="name of the copy (default <dataset>-ood-<kind><fraction>)")
    _output_arg(p, "the copy (a Dataset)")

    for command, exp in EXPERIMENTS.items():
        p = sub(command, exp.summary,
                f"{exp.summary[0].upper()}{exp.summary[1:]} (cscore_lab.uses.{exp.function}), driven by the data set's "
                f"scores. Runs in the background with a progress bar; %cscore status shows it, %cscore stop stops it, "
                f"and the same line resumes from the finished groups in its folder. When it ends, the table and the "
                f"figure appear below the cell (and in the Uses tab of %cscore show). The same options as "
                f"'cscore-lab {command}'.")
        _dataset_arg(p, data=False)
        add_experiment_options(p, command, session_defaults=True)
        p.add_argument("--wait", action="store_true", help="run in the foreground, show the figure and return the "
                                                            "result (shown as its table)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        _output_arg(p, "the ExperimentJob (background) or the result (--wait)")

    p = sub("load", "open a run folder (finished or not) with its data set")
    p.add_argument("run", metavar="DIR", help="the run folder")
    p.add_argument("--data", metavar="PATH", help="the data set's folder or file, if it moved since the run")
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
        from .trainer import check_device_name

        try:
            return check_device_name(str(proposal["value"]))  # the one rule the CLI and the backends use
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    @validate("runs")
    def _check_runs(self, proposal: Any) -> int | None:
        from .recipes import MAX_RUNS

        v = proposal["value"]
        if v is not None and not 1 <= v <= MAX_RUNS:
            raise TraitError(f"runs must be a positive integer up to {MAX_RUNS:,}, or None, got {v!r}")
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
        except (ValueError, TypeError, OSError, StoreBusyError, ImportError, RuntimeError) as exc:
            # bad values, missing or unwritable files, missing extras, busy run folders: a short message
            raise UsageError(f"%cscore {name}: {error_message(exc)}") from None
        shown = None if isinstance(result, _Quiet) else result
        if out:
            self.shell.user_ns[out] = result.value if isinstance(result, _Quiet) else result
        return shown

    cscore.__doc__ = _full_help()

    # ------------------------------------------------------------------ subcommands
    def _do_estimate(self, a: argparse.Namespace) -> Any:
        from .options import EstimateOptions

        opts = EstimateOptions.from_namespace(a)
        rec = self.session.prepare(a.dataset, data=a.data, label_noise=a.label_noise, ood=a.ood, ood_kind=a.ood_kind,
                                   ood_source=a.ood_source, **vars(opts))
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
        print("\n".join(lines) if lines else "no estimations or experiments in this session")

    def _do_stop(self, a: argparse.Namespace) -> None:
        lines = self.session.stop(a.dataset, all=a.all)
        print("\n".join(lines) if lines else "nothing is running")

    def _do_proxies(self, a: argparse.Namespace) -> Any:
        from .options import proxy_options

        return self.session.proxies(a.dataset, data=a.data, preset=a.preset, device=a.device, progress=not a.quiet,
                                    **proxy_options(a))

    def _do_compare(self, a: argparse.Namespace) -> Any:
        return self.session.compare(a.dataset, n_boot=a.boot, per_class=not a.no_per_class)

    def _do_detect(self, a: argparse.Namespace) -> Any:
        return self.session.detect(a.dataset, kind=a.kind)

    def _do_memorization(self, a: argparse.Namespace) -> Any:
        return self.session.memorization(a.dataset)

    def _do_influence(self, a: argparse.Namespace) -> Any:
        infl = self.session.influence(a.dataset, k=a.k)
        rec = self.session.analysis(a.dataset)
        if a.example is not None:
            display(infl.for_example(a.example, memorization=rec.memorization))
            return _Quiet(infl)
        if a.threshold is not None:
            display(infl.pairs(a.threshold, memorization=rec.memorization))
            return _Quiet(infl)
        return infl

    def _do_show(self, a: argparse.Namespace) -> Any:
        return self.session.dashboard(a.dataset)

    def _do_gallery(self, a: argparse.Namespace) -> Any:
        return self.session.gallery(a.dataset, label=a.label, order=a.order, count=a.count)

    def _do_noise(self, a: argparse.Namespace) -> _Quiet:
        rec = self.session.noise(a.dataset, a.fraction, seed=a.seed, data=a.data, name=a.name)
        print(f"{rec.dataset.name}: {int(rec.noise_mask.sum())} of {len(rec.dataset)} labels flipped (seed {a.seed}); "
              f"%cscore estimate {rec.dataset.name} to score it")
        return _Quiet(rec.dataset)

    def _do_ood(self, a: argparse.Namespace) -> _Quiet:
        rec = self.session.ood(a.dataset, a.fraction, a.kind, seed=a.seed, data=a.data, source=a.source, name=a.name)
        print(f"{rec.dataset.name}: {int(rec.ood_mask.sum())} of {len(rec.dataset)} examples replaced by {a.kind} "
              f"inputs with random labels (seed {a.seed}); %cscore estimate {rec.dataset.name} to score it, then "
              f"%cscore detect --kind ood")
        return _Quiet(rec.dataset)

    def _do_curriculum(self, a: argparse.Namespace) -> Any:
        return self._experiment("curriculum", a)

    def _do_prune(self, a: argparse.Namespace) -> Any:
        return self._experiment("prune", a)

    def _do_collect(self, a: argparse.Namespace) -> Any:
        return self._experiment("collect", a)

    def _experiment(self, command: str, a: argparse.Namespace) -> Any:
        call = dict(score=a.score, preset=a.preset, out=a.out, progress=not a.quiet, **experiment_options(command, a))
        if a.wait:
            try:
                result = self.session.experiment(command, a.dataset, wait=True, **call)
            except KeyboardInterrupt:
                result = None
            if result is None:
                job = list(self.session.analysis(a.dataset).jobs.values())[-1]
                print(f"stopped: {job.line()}; the finished groups are kept in {job.out} and the same line resumes")
                return None
            from IPython.display import Image

            display(Image(_figure_png(result)))
            return result  # shown as its table (the result's HTML) unless assigned
        job = self.session.experiment(command, a.dataset, **call)
        print(f"{job.experiment.name} of {job.dataset.name} by {', '.join(job.scores)}, kept in {job.out}; running in "
              f"the background: %cscore status, %cscore stop")
        import ipywidgets as W

        area = W.Output()
        display(area)
        job.add_listener(lambda j: _fill_when_done(area, j))
        return _Quiet(job)

    def _do_load(self, a: argparse.Namespace) -> CScores:
        return self.session.load(a.run, data=a.data)

    def _do_load_published(self, a: argparse.Namespace) -> CScores:
        return self.session.load_published(a.name, a.path, data=a.data)

    def _do_datasets(self, a: argparse.Namespace) -> Any:
        return self.session.datasets()


def _figure_png(result: Any) -> bytes:
    from .viz.plots import render_png
    from .viz.uses import experiment_figure

    return render_png(experiment_figure, result, figsize=(6.5, 4.0))


def _fill_when_done(area: Any, job: Any) -> None:
    """When a background experiment ends (called from its thread), put its table and figure under its cell."""
    if job.state not in ("finished", "stopped", "failed") or getattr(area, "_cscore_filled", False):
        return
    area._cscore_filled = True
    if job.state == "finished":
        from IPython.display import Image

        area.append_stdout(f"{job.line()} in {job.seconds:.1f} s\n")
        area.append_display_data(job.result)  # its table
        area.append_display_data(Image(_figure_png(job.result)))
    elif job.state == "stopped":
        area.append_stdout(f"stopped: {job.line()}; the finished groups are kept in {job.out} and the same line resumes\n")
    else:
        area.append_stderr(f"{job.line()}\n")


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%cscore`` (called by ``%load_ext cscore_lab``)."""
    magics = CScoreMagics(ipython)
    ipython.register_magics(magics)
    # background runs stop at their next training step when Python exits: cscore_lab.holdout.stop_background


def unload_ipython_extension(ipython: Any) -> None:
    """Stop this session's running estimations (their finished shards stay)."""
    magics = ipython.magics_manager.registry.get("CScoreMagics")
    if magics is not None:
        magics.session.stop(all=True)
