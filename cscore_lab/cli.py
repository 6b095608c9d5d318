"""``cscore-lab``: the same work as the magics, for terminals and clusters.

Each subcommand is a pair: ``_add_<name>(subparsers)`` declares its arguments and sets
``func``; the function does the work by calling the library. Add a subcommand by
writing such a pair and listing it in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from .store import StoreBusyError

__all__ = ["main", "build_parser", "COMMANDS"]


class CLIError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _float_in(text: str, kind: str, name: str, interval: str, inside) -> float:
    """Parse ``text`` as a float and check it with ``inside``; messages name the value and the interval."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind} in {interval}, got {text!r}") from None
    if not inside(v):
        raise argparse.ArgumentTypeError(f"{name} {v:g} is outside {interval}")
    return v


def _ratio(text: str) -> float:
    return _float_in(text, "ratio", "subset ratio", "(0, 1)", lambda v: 0.0 < v < 1.0)


def _fraction(text: str) -> float:
    return _float_in(text, "fraction", "label-noise fraction", "[0, 1]", lambda v: 0.0 <= v <= 1.0)


# --------------------------------------------------------------------------- shared pieces


def add_dataset_arguments(p: argparse.ArgumentParser) -> None:
    """--dataset, --data and --label-noise, shared by the subcommands that load data."""
    from .data import DATASETS

    p.add_argument("--dataset", default="digits", choices=list(DATASETS), metavar="NAME",
                   help=f"data set: {', '.join(DATASETS)} (default: digits, bundled)")
    p.add_argument("--data", metavar="PATH", help="folder or file holding the data set (all but digits)")
    p.add_argument("--label-noise", type=_fraction, default=0.0, metavar="FRACTION",
                   help="flip this fraction of labels to another class first (seeded by --seed)")


def load_dataset_from_args(args: argparse.Namespace):
    """The data set the arguments name, with label noise applied; returns (dataset, flipped mask or None)."""
    from .data import inject_label_noise, load_dataset

    ds = load_dataset(args.dataset, args.data)
    if args.label_noise:
        ds, mask = inject_label_noise(ds, args.label_noise, seed=getattr(args, "seed", 0) or 0)
        return ds, mask
    return ds, None


def print_summary(cs, seconds: float | None = None, out=None) -> None:
    out = out or sys.stdout
    s = cs.summary()
    lines = [
        f"examples          {s['examples']}",
        f"ratios            {len(cs.ratios)} ({', '.join(f'{r:g}' for r in cs.ratios)})",
        f"runs per ratio    {cs.runs} ({cs.meta.get('runs_done', '?')} models trained in all)",
        f"mean C-score      {s['mean_score']:.4f}",
        f"below 0.5         {s['below_0.5']} ({100 * s['below_0.5'] / max(1, s['examples']):.1f}%)",
        f"reliability       {s['reliability']:.4f} (split-half Spearman)",
        f"mean std. error   {s['mean_stderr']:.4f}",
    ]
    if seconds is not None:
        lines.append(f"time              {seconds:.1f} s")
    print(f"C-scores of {s['dataset']}", file=out)
    for line in lines:
        print("  " + line, file=out)


def print_lowest(cs, dataset, k: int = 10, out=None) -> None:
    out = out or sys.stdout
    print(f"The {k} lowest-scoring examples:", file=out)
    print("  index  label  C-score  std.err", file=out)
    for i in cs.lowest(k):
        name = dataset.class_names[cs.labels[i]]
        print(f"  {i:5d}  {name:>5}  {cs.scores[i]:7.3f}  {cs.stderr[i]:7.3f}", file=out)


# --------------------------------------------------------------------------- estimate


def _add_estimate(sub) -> None:
    from .recipes import PRESETS

    p = sub.add_parser("estimate", help="estimate C-scores by the holdout procedure",
                       description="Train many models on random subsets and record held-out correctness. "
                                   "Rerunning with the same --out resumes.")
    add_dataset_arguments(p)
    p.add_argument("--preset", default=None, choices=list(PRESETS), metavar="NAME",
                   help=f"training recipe: {', '.join(PRESETS)} (default: digits-mlp, or mnist-mlp for MNIST-shaped data)")
    p.add_argument("--ratios", type=_ratio, nargs="+", metavar="R", help="subset ratios (default: the preset's, 0.1 ... 0.9)")
    p.add_argument("--runs", type=_positive_int, metavar="N", help="models per ratio (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="seed of subsets, initialisations and batch orders (default 0)")
    p.add_argument("--shard-size", type=_positive_int, metavar="M", help="models trained together and stored per file")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--backend", default="local", choices=["local", "ray"], help="where shards run (default local)")
    p.add_argument("--address", default=None, help="Ray cluster address (with --backend ray); default: a local instance")
    p.add_argument("--num-gpus", type=float, default=None, metavar="F", help="GPU fraction per shard on Ray (default 0.25)")
    p.add_argument("--out", metavar="DIR", help="run folder (default: cscore-runs/<dataset>-<preset>-seed<seed>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_estimate)


def _default_preset(dataset_name: str, input_shape: Sequence[int]) -> str:
    if len(input_shape) == 3 and input_shape[0] in (1, 3):
        return "cifar-cnn"
    if dataset_name in ("mnist", "fashion-mnist") or math.prod(input_shape) == 784:
        return "mnist-mlp"
    return "digits-mlp"


def _make_estimation(args: argparse.Namespace):
    from dataclasses import replace

    from .backends import backend_from_options
    from .holdout import Estimation, default_run_folder
    from .recipes import get_preset

    ds, mask = load_dataset_from_args(args)
    preset = get_preset(args.preset or _default_preset(args.dataset, ds.input_shape))
    plan = preset.plan
    changes = {k: v for k, v in (("ratios", args.ratios and tuple(args.ratios)), ("runs", args.runs),
                                   ("shard_size", args.shard_size)) if v}
    plan = replace(plan, seed=args.seed, **changes)
    backend = backend_from_options(args.backend, address=args.address, num_gpus=args.num_gpus)
    out = Path(args.out) if args.out else default_run_folder(ds.name, preset.recipe.name, args.seed)
    est = Estimation(ds, preset.recipe, plan, out=out, device=args.device, backend=backend)
    if mask is not None:
        import numpy as np

        np.save(out / "flipped.npy", mask, allow_pickle=False)
    return est, ds


def cmd_estimate(args: argparse.Namespace) -> int:
    est, ds = _make_estimation(args)
    print(f"run folder: {est.out}  ({len(est.shards)} shards, {est.plan.total_runs} models, "
          f"recipe {est.recipe.name}, device {args.device})", flush=True)
    t0 = time.perf_counter()
    cs = est.run(progress=not args.no_progress)
    seconds = time.perf_counter() - t0
    print_summary(cs, seconds)
    if est.progress.state != "finished":
        print(f"stopped early: {est.progress.line()}; run the same command again to resume")
        return 1
    print(f"saved: {est.out / 'cscores.npz'}")
    return 0


# --------------------------------------------------------------------------- demo


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the whole job on the bundled digits set: estimate, summary, lowest examples",
                       description="Estimate the C-scores of scikit-learn's digits (9 ratios x 200 runs), print a "
                                   "summary and the ten lowest-scoring examples.")
    p.add_argument("--runs", type=_positive_int, default=None, metavar="N", help="models per ratio (default 200)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--out", metavar="DIR", default=None, help="run folder (default cscore-runs/digits-digits-mlp-seed0)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_demo)


# Steps that later parts of the package add to the demo, run in order after the estimate. Each takes
# (cscores, dataset, args, run folder, context); ``context`` is a dict in which a step leaves what later
# steps may use (the proxies step leaves "proxies" and "correlations" for the report).
DEMO_STEPS: list[Callable] = []


def cmd_demo(args: argparse.Namespace) -> int:
    ns = argparse.Namespace(dataset="digits", data=None, label_noise=0.0, preset="digits-mlp", ratios=None,
                            runs=args.runs, seed=0, shard_size=None, device=args.device, backend="local",
                            address=None, num_gpus=None, out=args.out)
    est, ds = _make_estimation(ns)
    print(f"Estimating the C-scores of scikit-learn's digits: {est.plan.total_runs} models "
          f"({len(est.plan.ratios)} ratios x {est.plan.runs} runs), run folder {est.out}", flush=True)
    t0 = time.perf_counter()
    cs = est.run(progress=not args.no_progress)
    print_summary(cs, time.perf_counter() - t0)
    print()
    print_lowest(cs, ds, 10)
    if est.progress.state != "finished":
        print(f"stopped early: {est.progress.line()}; run the same command again to resume")
        return 1
    context: dict = {}
    for step in DEMO_STEPS:
        print()
        step(cs, ds, args, est.out, context)
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
    p.add_argument("--lowest", type=_positive_int, default=10, metavar="K", help="list the K lowest (default 10)")
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
    from .proxies.suite import FAMILIES, SPACES
    from .recipes import PRESETS

    p = sub.add_parser("proxies", help="compute the cheap C-score proxies; with --run, correlate them with its C-scores",
                       description="Train the recipe's model on the full data, record learning dynamics and hidden "
                                   "features, compute every proxy (kernel density, learning speed, k-NN, LOF) and, "
                                   "with --run, print their rank correlations with that run's C-scores (and, when "
                                   "labels were flipped, how well each finds them).")
    add_dataset_arguments(p)
    p.add_argument("--run", metavar="DIR", help="run folder of 'cscore-lab estimate' on the same data (its recipe is used)")
    p.add_argument("--cscores", metavar="FILE", help="or a saved CScores file (.npz, e.g. from 'published --save') to correlate with")
    p.add_argument("--preset", default=None, choices=list(PRESETS), metavar="NAME", help="training recipe (default: the run's)")
    p.add_argument("--runs", type=_positive_int, default=1, metavar="N", help="full-data models averaged (default 1)")
    p.add_argument("--epochs", type=_positive_int, nargs="+", metavar="E",
                   help="epochs whose hidden features are used (default: 1, 2 and the last)")
    p.add_argument("--families", nargs="+", choices=FAMILIES, default=list(FAMILIES), help="proxy families (default all)")
    p.add_argument("--spaces", nargs="+", choices=SPACES, default=list(SPACES), help="feature spaces (default both)")
    p.add_argument("--bandwidth-scale", type=float, default=1.0, metavar="S",
                   help="kernel bandwidth = S x the median pairwise distance (default 1)")
    p.add_argument("--n-boot", type=int, default=1000, metavar="B", help="bootstrap resamples for the intervals (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the label noise (as in estimate) and of the models (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--save", metavar="FILE", help="write the proxy table to FILE (.npz)")
    p.add_argument("--no-progress", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_proxies)


def cmd_proxies(args: argparse.Namespace) -> int:
    from .proxies.suite import run_proxies_command

    return run_proxies_command(args)


def _demo_proxies(cs, ds, args, run_folder, context: dict) -> None:
    """Every proxy of the digits set, saved in the run folder, and its correlation with the C-scores."""
    from .analysis import correlate
    from .proxies.suite import compute_proxies
    from .recipes import Recipe

    t0 = time.perf_counter()
    table = compute_proxies(ds, Recipe.from_dict(cs.meta["recipe"]), device=args.device)
    table.save(run_folder / "proxies.npz")
    correlations = correlate(table, cs, n_boot=200, per_class=False)
    print(f"Cheap proxies ({len(table.names)}, {time.perf_counter() - t0:.1f} s) against the C-scores "
          f"(Spearman and Kendall with bootstrap 95% intervals; higher = more regular for every proxy):")
    print(correlations.to_string())
    context.update(proxies=table, correlations=correlations)


def _demo_report(cs, ds, args, run_folder, context: dict) -> None:
    from .report import write_report

    path = write_report(cs, ds, run_folder / "report.html", proxies=context.get("proxies"),
                        correlations=context.get("correlations"))
    print(f"HTML report: {path}")


DEMO_STEPS.append(_demo_proxies)  # the demo prints the proxies' correlation table after the C-scores


# --------------------------------------------------------------------------- main

# (name, function that adds the subcommand's parser); add new subcommands here.
COMMANDS: list[tuple[str, Callable]] = [
    ("estimate", _add_estimate),
    ("demo", _add_demo),
    ("published", _add_published),
    ("proxies", _add_proxies),
]


# --------------------------------------------------------------------------- report


def _add_report(sub) -> None:
    p = sub.add_parser("report", help="write a self-contained HTML report of a run folder",
                       description="Read a run folder (finished or not) with the data set named in its manifest and "
                                   "write one HTML file: figures, tables, the lowest and highest examples per class.")
    p.add_argument("--run", required=True, metavar="DIR", help="the run folder")
    p.add_argument("--data", metavar="PATH", help="the data set's folder or file (all but digits)")
    p.add_argument("--out", metavar="FILE", help="the HTML file to write (default: DIR/report.html)")
    p.add_argument("--proxies", action="store_true",
                   help="also compute the cheap proxies and their correlations with the C-scores (one full-data training)")
    p.add_argument("--device", default="auto", help="device for --proxies: auto, cpu, cuda or cuda:N (default auto)")
    p.set_defaults(func=cmd_report)


def cmd_report(args: argparse.Namespace) -> int:
    from .report import open_run, write_report

    run = open_run(args.run, data=args.data)
    proxies = correlations = None
    if args.proxies:
        from .analysis import correlate
        from .proxies.suite import compute_proxies
        from .recipes import Recipe

        recipe = Recipe.from_dict(run.manifest["identity"]["recipe"])
        proxies = compute_proxies(run.dataset, recipe, device=args.device)
        correlations = correlate(proxies, run.cscores)
    out = write_report(run.cscores, run.dataset, args.out or Path(args.run) / "report.html", proxies=proxies,
                       correlations=correlations, noise_mask=run.noise_mask)
    print(f"report: {out}")
    return 0


COMMANDS.append(("report", _add_report))
DEMO_STEPS.append(_demo_report)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="cscore-lab", description="C-scores of labeled data: estimate, proxies, reports.")
    parser.add_argument("--version", action="version", version=f"cscore-lab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for _, add in COMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``cscore-lab``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted: finished shards are kept in the run folder; run the same command again to resume",
              file=sys.stderr)
        return 130
    except CLIError as exc:
        print(f"cscore-lab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, ImportError, StoreBusyError) as exc:
        # bad values, missing files, missing extras, busy run folders: one line, no traceback
        print(f"cscore-lab {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
