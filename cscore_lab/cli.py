"""``cscore-lab``: the same work as the magics, for terminals and clusters. Parse, call, print.

Options are declared once in :mod:`cscore_lab.options` and estimates are built by its
:func:`~cscore_lab.options.resolve_estimation`, as ``%cscore estimate`` builds them; runs are
opened by :func:`cscore_lab.runs.open_run`. Each subcommand is a pair: ``_add_<name>(subparsers)``
declares its arguments and sets ``func``; the function does the work by calling the library.
Add a subcommand by writing such a pair and listing it in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, NoReturn, Sequence

from .cli_uses import USES_COMMANDS
from .options import (EstimateOptions, add_dataset_options, add_estimate_options, add_proxy_options, data_spec_from,
                      error_message, influence_threshold, nonnegative_int, positive_int, proxy_options,
                      resolve_estimation, seed_value)
from .shards import TrainingDiverged
from .store import StoreBusyError

__all__ = ["main", "build_parser", "COMMANDS"]


class CLIError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake reported as one line (exit status 2) that points to ``--help``."""

    def error(self, message: str) -> NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def print_lowest(cs, dataset, k: int = 10, out=None) -> None:
    out = out or sys.stdout
    print(f"The {k} lowest-scoring examples:", file=out)
    print("  index  label  C-score  std.err", file=out)
    for i in cs.lowest(k):
        name = dataset.class_names[cs.labels[i]]
        print(f"  {i:5d}  {name:>5}  {cs.scores[i]:7.3f}  {cs.stderr[i]:7.3f}", file=out)


def _run_estimation(est, *, progress: bool, seconds_label: bool = True) -> int:
    """Run, print the summary; 0 when finished, 1 when stopped early."""
    t0 = time.perf_counter()
    cs = est.run(progress=progress)
    print(cs.to_string())
    print(f"  {'time':<17} {time.perf_counter() - t0:.1f} s")
    if est.progress.state != "finished":
        print(f"stopped early: {est.progress.line()}; run the same command again to resume")
        return 1
    if est.out is not None:
        print(f"saved: {est.out / 'cscores.npz'}")
    return 0


# --------------------------------------------------------------------------- estimate


def _add_estimate(sub) -> None:
    p = sub.add_parser("estimate", help="estimate C-scores by the holdout procedure",
                       description="Train many models on random subsets and record held-out correctness. "
                                   "Rerunning with the same --out resumes; the same options as '%%cscore estimate' "
                                   "make the same run folder.")
    add_dataset_options(p, positional=False, noise=True)
    add_estimate_options(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_estimate)


def cmd_estimate(args: argparse.Namespace) -> int:
    loaded = data_spec_from(args).load()
    est = resolve_estimation(EstimateOptions.from_namespace(args), loaded)
    note = getattr(est, "precision_reason", None)
    print(f"run folder: {est.out}  ({est.plan.total_runs} models, recipe {est.recipe.name}, device {est.device}"
          + (f", {note}" if note else "") + ")", flush=True)
    if loaded.dataset.scaling_note:
        print(f"inputs: {loaded.dataset.scaling_note}")
    return _run_estimation(est, progress=not args.no_progress)


# --------------------------------------------------------------------------- demo


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole job on the bundled digits set: estimate, summary, lowest examples",
                       description="Estimate the C-scores of scikit-learn's digits (9 ratios x 200 runs), print a "
                                   "summary, the ten lowest-scoring examples and the proxies' correlations, and "
                                   "write an HTML report.")
    p.add_argument("--runs", type=positive_int, default=None, metavar="N", help="models per ratio (default 200)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--out", metavar="DIR", default=None, help="run folder (default cscore-runs/digits-digits-mlp-seed0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from .analysis import correlate
    from .report import write_report
    from .runs import DataSpec

    loaded = DataSpec("digits").load()
    est = resolve_estimation(EstimateOptions(preset="digits-mlp", runs=args.runs, device=args.device, out=args.out),
                             loaded)
    print(f"Estimating the C-scores of scikit-learn's digits: {est.plan.total_runs} models "
          f"({len(est.plan.ratios)} ratios x {est.plan.runs} runs), run folder {est.out}", flush=True)
    status = _run_estimation(est, progress=not args.no_progress)
    cs = est.result
    print()
    print_lowest(cs, loaded.dataset, 10)
    if status:
        return status
    from .proxies.suite import compute_proxies

    print()
    t0 = time.perf_counter()
    table = compute_proxies(loaded.dataset, est.recipe, device=args.device, progress=not args.no_progress)
    table.save(est.out / "proxies.npz")
    correlations = correlate(table, cs, n_boot=200, per_class=False)
    print(f"Cheap proxies ({len(table.names)}, {time.perf_counter() - t0:.1f} s) against the C-scores "
          f"(Spearman and Kendall with bootstrap 95% intervals; higher = more regular for every proxy):")
    print(correlations.to_string())
    print(f"\nHTML report: {write_report(cs, loaded.dataset, est.out / 'report.html', proxies=table, correlations=correlations)}")
    return 0


# --------------------------------------------------------------------------- published


def _add_published(sub) -> None:
    from .published import PUBLISHED

    p = sub.add_parser("published", help="load the authors' released C-scores, checked against the data set",
                       description="Read the C-scores released with the paper (MNIST .npy in tensorflow-datasets "
                                   "order, remapped; CIFAR-10/100 .npz), check them against the data set, print a "
                                   "summary and the lowest examples, and optionally save them as a CScores file.")
    p.add_argument("name", choices=list(PUBLISHED), help="which release: mnist, cifar10 or cifar100")
    p.add_argument("path", help="the released file, or the folder that holds it")
    p.add_argument("--data", metavar="PATH", help="the training set's folder (required for mnist, whose file has no labels)")
    p.add_argument("--lowest", type=positive_int, default=10, metavar="K", help="list the K lowest (default 10)")
    p.add_argument("--save", metavar="FILE", help="write the scores, in official order, to FILE (.npz)")
    p.set_defaults(func=cmd_published)


def cmd_published(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .published import load_published

    if args.name == "mnist" and not args.data:
        raise CLIError("mnist needs --data MNIST_FOLDER: the released file holds no labels, and the order is checked against them")
    ds = load_dataset(args.name, args.data) if args.data else None
    cs = load_published(args.name, args.path, ds)
    s = cs.summary()
    print(f"published C-scores of {args.name}: {cs.meta['file']}")
    print(f"  examples          {s['examples']}" + (f" (checked against {args.data})" if ds is not None else " (no data set given: not checked)"))
    print(f"  stored order      {cs.meta['stored_order']}" + (" (remapped to official)" if "remapped" in cs.meta else ""))
    print(f"  mean C-score      {s['mean_score']:.4f}")
    print(f"  below 0.5         {s['below_0.5']} ({100 * s['below_0.5'] / max(1, s['examples']):.1f}%)")
    print(f"The {args.lowest} lowest-scoring examples:")
    print("  index  label  C-score")
    for i in cs.lowest(args.lowest):
        label = ds.class_names[cs.labels[i]] if ds is not None else str(cs.labels[i])
        print(f"  {i:5d}  {label:>5}  {cs.scores[i]:7.3f}")
    if args.save:
        print(f"saved: {cs.save(args.save)}")
    return 0


# --------------------------------------------------------------------------- proxies


def _add_proxies(sub) -> None:
    p = sub.add_parser("proxies", help="compute the cheap C-score proxies; with --run, correlate them with its C-scores",
                       description="Train the recipe's model on the full data once, record learning dynamics, "
                                   "logits, gradients and hidden features, compute every proxy (kernel density, "
                                   "learning speed, k-NN, LOF) and the field's hardness scores (AUM, EL2N, GraNd, "
                                   "data maps, Data-IQ, loss, margin, prototypicality, cleanlab; VoG on request) "
                                   "and, with --run, print their rank correlations with that run's C-scores (and, "
                                   "when noise was injected, how well each finds it).")
    add_dataset_options(p, positional=False, noise=True, default=None)
    p.add_argument("--run", metavar="DIR", help="run folder of 'cscore-lab estimate' (its data set and recipe are used)")
    p.add_argument("--cscores", metavar="FILE", help="or a saved CScores file or run folder (e.g. from 'published "
                                                     "--save') to correlate with")
    add_proxy_options(p)
    p.add_argument("--n-boot", type=nonnegative_int, default=1000, metavar="B", help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of injected noise (as in estimate) and of the models")
    p.add_argument("--save", metavar="FILE", help="write the proxy table to FILE (.npz)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_proxies)


def cmd_proxies(args: argparse.Namespace) -> int:
    from .analysis import correlate, detect_injected
    from .cscores import CScores
    from .proxies.suite import compute_proxies
    from .recipes import default_preset_name, get_preset
    from .runs import open_run

    if args.run and args.cscores:
        raise CLIError("--run and --cscores both name C-scores to correlate with; give one")
    if args.run and (args.dataset or args.label_noise or args.ood or args.ood_kind):
        raise CLIError("--run brings its own data set and noise; drop --dataset, --label-noise and --ood "
                       "(--data may give the data's new place if it moved)")
    cs = None
    if args.run:
        run = open_run(args.run, data=args.data)
        ds, masks, cs = run.dataset, run.masks, run.cscores
        recipe = get_preset(args.preset).recipe if args.preset else run.recipe
    else:
        loaded = data_spec_from(args, name=args.dataset or "digits").load()
        ds, masks = loaded.dataset, loaded.masks
        recipe = get_preset(args.preset or default_preset_name(ds.name, ds.input_shape)).recipe
        if args.cscores:
            cs = CScores.load(args.cscores)
            if len(cs) != len(ds):
                raise CLIError(f"{args.cscores} holds {len(cs)} C-scores but {ds.name} has {len(ds)} examples")
    t0 = time.perf_counter()
    table = compute_proxies(ds, recipe, device=args.device or "auto", seed=args.seed, progress=not args.no_progress,
                            **proxy_options(args))
    print(f"{len(table.names)} proxies of {ds.name} ({len(ds)} examples) in {time.perf_counter() - t0:.1f} s; "
          f"higher = more regular")
    if args.save:
        print(f"saved: {table.save(args.save)}")
    if args.run:
        print(f"saved: {table.save(Path(args.run) / 'proxies.npz')}")
    if cs is None:
        print(table.to_frame().drop(columns="label").describe().T[["mean", "std", "min", "max"]].to_string())
    else:
        print(f"\nRank correlation with the C-scores of {args.run or args.cscores}:")
        print(correlate(table, cs, n_boot=args.n_boot, seed=args.seed).to_string())
    for kind, what in (("flipped", "flipped labels"), ("ood", "out-of-distribution examples")):
        if kind in masks:
            print(f"\nFinding the {what} (low score = suspect):")
            print(detect_injected(table, masks[kind], cscores=cs, what=what).to_string())
    return 0


# --------------------------------------------------------------------------- memorization and influence


def _add_memorization(sub) -> None:
    p = sub.add_parser("memorization", help="Feldman & Zhang's memorization of every example, from a run's models",
                       description="mem(x) = P[correct on x | x in the subset] - P[correct on x | x held out], per "
                                   "ratio, pooled like the C-score, with standard errors; from the models of a run "
                                   "folder (no training). Kept in the run folder as memorization.npz.")
    p.add_argument("--run", required=True, metavar="DIR", help="the run folder")
    p.add_argument("--data", metavar="PATH", help="the data set's folder or file, if it moved since the run")
    p.add_argument("--top", type=positive_int, default=10, metavar="K", help="list the K most memorized (default 10)")
    p.add_argument("--save", metavar="FILE", help="also write the table to FILE (.npz)")
    p.set_defaults(func=cmd_memorization)


def cmd_memorization(args: argparse.Namespace) -> int:
    from .runs import open_run

    run = open_run(args.run, data=args.data)
    mem = run.memorization()
    print(f"saved: {mem.save(run.folder)}")
    if args.save:
        print(f"saved: {mem.save(args.save)}")
    s = mem.summary()
    print(f"Memorization of {s['dataset'] or run.dataset.name} ({s['models']} models, {s['ratios']} ratios; high = "
          f"memorized: fitted only when trained on)")
    print(f"  mean memorization     {s['mean_memorization']:.4f}")
    print(f"  above 0.5             {s['above_0.5']}")
    print(f"  in-subset accuracy    {s['mean_in_accuracy']:.4f}   held-out accuracy {s['mean_heldout_accuracy']:.4f}")
    print(f"  reliability           {s['reliability']:.4f} (split-half Spearman)")
    print(f"The {args.top} most memorized examples:")
    print("  index  label  memorization  std.err  C-score")
    for i in mem.most_memorized(args.top):
        print(f"  {i:5d}  {run.dataset.class_names[run.dataset.labels[i]]:>5}  {mem.memorization[i]:12.3f}  "
              f"{mem.stderr[i]:7.3f}  {run.cscores.scores[i]:7.3f}")
    return 0


def _add_influence(sub) -> None:
    p = sub.add_parser("influence", help="which training examples each prediction depends on, from a run's models",
                       description="infl(i -> j) = P[j correct | i in the subset] - P[j correct | i held out], "
                                   "top-k per target in bounded memory: targets are the evaluation set the run "
                                   "recorded (estimate --eval-data), else the training examples themselves. "
                                   "Prints the high-influence pairs as Feldman & Zhang report them.")
    p.add_argument("--run", required=True, metavar="DIR", help="the run folder")
    p.add_argument("--data", metavar="PATH", help="the data set's folder or file, if it moved since the run")
    p.add_argument("--k", type=positive_int, default=10, help="training examples kept per target (default 10)")
    p.add_argument("--threshold", type=influence_threshold, default=0.15, help="influence above which a pair is listed (default 0.15)")
    p.add_argument("--top", type=positive_int, default=20, metavar="N", help="list the N strongest pairs (default 20)")
    p.add_argument("--save", metavar="FILE", help="also write the table to FILE (.npz)")
    p.set_defaults(func=cmd_influence)


def cmd_influence(args: argparse.Namespace) -> int:
    import warnings

    from .runs import open_run

    run = open_run(args.run, data=args.data)
    t0 = time.perf_counter()
    infl = run.influence(k=args.k, data=args.data)
    print(f"saved: {infl.save(run.folder)}")
    if args.save:
        print(f"saved: {infl.save(args.save)}")
    s = infl.summary()
    print(f"Influence on {s['targets']} {s['target']} of {s['training_examples']} training examples "
          f"({s['models']} models, top {s['k']} each, {time.perf_counter() - t0:.1f} s)")
    mem = None
    try:
        mem = run.memorization()
    except ValueError:
        pass
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = infl.pairs(args.threshold, memorization=mem)
    print(f"{len(pairs)} pairs above {args.threshold:g}" + (f"; {caught[0].message}" if caught else ""))
    if len(pairs):
        print(pairs.head(args.top).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return 0


# --------------------------------------------------------------------------- report and repair


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a run folder",
                       description="Read a run folder (finished or not) with the data set it was made on and "
                                   "write one HTML file: figures, tables, the lowest and highest examples per class, "
                                   "memorization (memorization.npz, computed from the run's models when absent), "
                                   "influence (influence.npz, or computed with --influence) and the experiments kept "
                                   "in its uses/ folder (cscore-lab prune, curriculum, collect).")
    p.add_argument("--run", required=True, metavar="DIR", help="the run folder")
    p.add_argument("--data", metavar="PATH", help="the data set's folder or file, if it moved since the run")
    p.add_argument("--out", metavar="FILE", help="the HTML file to write (default: DIR/report.html)")
    p.add_argument("--proxies", action="store_true",
                   help="also compute the cheap proxies and their correlations with the C-scores (one full-data "
                        "training), unless the run folder holds them already")
    p.add_argument("--device", default=None, help="device for --proxies: auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--influence", action="store_true",
                   help="also compute the influence of training examples (top-k per target, kept as influence.npz), "
                        "unless the run folder holds it for the same models")
    p.add_argument("--k", type=positive_int, default=10,
                   help="training examples kept per target with --influence (default 10)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from .analysis import correlate
    from .report import write_report
    from .runs import open_run

    if args.device is not None and not args.proxies:
        raise CLIError("--device is the device of --proxies' training; without --proxies nothing trains")
    run = open_run(args.run, data=args.data)
    proxies = run.proxies
    if args.proxies and proxies is None:
        from .proxies.suite import compute_proxies

        proxies = compute_proxies(run.dataset, run.recipe, device=args.device or "auto")
        proxies.save(Path(args.run) / "proxies.npz")
    correlations = correlate(proxies, run.cscores) if proxies is not None else None
    memorization, influence, eval_dataset = _report_memorization_influence(run, args)
    from .experiments import kept_experiments

    out = write_report(run.cscores, run.dataset, args.out or Path(args.run) / "report.html", proxies=proxies,
                       correlations=correlations, masks=run.masks, memorization=memorization, influence=influence,
                       eval_dataset=eval_dataset, experiments=kept_experiments(run.folder))
    print(f"report: {out}")
    return 0


def _kept(run, cls):
    """The run folder's saved ``cls`` table when it counts the same models as the run's scores, else None."""
    path = run.folder / cls.FILENAME
    if not path.is_file():
        return None
    table = cls.load(path)
    return table if table.meta.get("models") == run.cscores.meta.get("runs_done") else None


def _report_memorization_influence(run, args: argparse.Namespace):
    """(memorization, influence, evaluation set) for the report: what the run folder keeps for its current
    models; memorization computed when absent (cheap), influence only with --influence."""
    from .influence import Influence
    from .memorization import Memorization

    memorization = _kept(run, Memorization)
    if memorization is None:
        try:
            memorization = run.memorization()
        except ValueError as exc:  # shards from before correctness on training examples
            print(f"no memorization section: {exc}", file=sys.stderr)
    influence = _kept(run, Influence)
    if influence is None and args.influence:
        influence = run.influence(k=args.k, data=args.data)
        influence.save(run.folder)
    eval_dataset = None
    if influence is not None and influence.target == "eval" and run.spec is not None and run.spec.eval_data:
        eval_dataset = run.spec.load_eval(path=args.data)
    return memorization, influence, eval_dataset


def _add_repair(sub) -> None:
    p = sub.add_parser("repair", help="rebuild a run folder's lost or damaged manifest from its shards",
                       description="Every shard carries its run's identity: rebuild manifest.json from them (the "
                                   "damaged one is kept as manifest.json.damaged). Then the same estimate resumes.")
    p.add_argument("--run", required=True, metavar="DIR", help="the run folder")
    p.set_defaults(func=cmd_repair)


def cmd_repair(args: argparse.Namespace) -> int:
    from .store import RunStore

    store = RunStore(args.run)
    if not store.path.exists():  # the lock would create it
        raise CLIError(f"{store.path}: no such run folder")
    with store.lock():
        manifest = store.rebuild_manifest()
    plan = manifest["plan"]
    print(f"rebuilt {store.manifest_path}: data set {manifest['identity']['dataset']}, recipe "
          f"{manifest['identity']['recipe'].get('name')}, ratios {plan['ratios']}, {plan['runs']} runs per ratio "
          f"covered by the shards")
    return 0


# --------------------------------------------------------------------------- main

# (name, function that adds the subcommand's parser); add new subcommands here.
COMMANDS: list[tuple[str, Callable]] = [
    ("estimate", _add_estimate),
    ("demo", _add_demo),
    ("published", _add_published),
    ("proxies", _add_proxies),
    ("memorization", _add_memorization),
    ("influence", _add_influence),
    ("report", _add_report),
    ("repair", _add_repair),
    *USES_COMMANDS,  # detect, curriculum, prune, collect (cli_uses.py)
]


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="cscore-lab", description="C-scores of labeled data: estimate, proxies, reports.")
    parser.add_argument("--version", action="version", version=f"cscore-lab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _, add in COMMANDS:
        add(sub)
    return parser


def _warning_lines() -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints each distinct warning once, as one line."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        if str(message) not in seen:
            seen.add(str(message))
            print(f"cscore-lab: warning: {message}", file=sys.stderr)

    return show


class Terminated(KeyboardInterrupt):
    """SIGTERM (a cluster's scheduler, ``kill``): handled as Ctrl-C is, so the shard in flight stops cleanly."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """While a command runs in the main thread, SIGTERM raises :class:`Terminated` (exit status 143)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def terminated(signum: int, frame: Any) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cscore-lab``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with warnings.catch_warnings(), _sigterm_interrupts():
            warnings.showwarning = _warning_lines()  # a bad shard left out, say: one line, not a source excerpt
            return int(args.func(args) or 0)
    except KeyboardInterrupt as exc:
        how = "terminated" if isinstance(exc, Terminated) else "interrupted"
        print(f"\n{how}: finished shards are kept in the run folder; run the same command again to resume",
              file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except (CLIError, ValueError, OSError, ImportError, StoreBusyError, TrainingDiverged) as exc:
        # bad values, missing or unwritable files, missing extras, busy run folders: one line, no traceback
        print(f"cscore-lab {args.command}: error: {error_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
