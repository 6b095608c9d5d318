"""``cscore-lab detect|curriculum|prune|collect``: what the scores are for, from a terminal. Parse, call, print.

``detect`` prints, for every mask a run folder holds (flipped labels, out-of-distribution inputs),
how well each score ranks the injected examples first (:func:`cscore_lab.detection.detect_masks`).
The experiments declare the same options as ``%cscore curriculum|prune|collect``
(:func:`cscore_lab.experiments.add_experiment_options`) and are prepared by the same
:func:`~cscore_lab.experiments.prepare_experiment`, with the scores of ``--run DIR`` (its C-scores,
memorization and ``proxies.npz``) or of ``--cscores FILE``. :mod:`cscore_lab.cli` lists them in
its ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

__all__ = ["USES_COMMANDS", "cmd_detect", "cmd_experiment"]


def _run_memorization(run: Any) -> Any:
    """The run folder's kept memorization when it counts the run's current models, else computed from them."""
    from .memorization import Memorization

    path = run.folder / Memorization.FILENAME
    if path.is_file():
        mem = Memorization.load(path)
        if mem.meta.get("models") == run.cscores.meta.get("runs_done"):
            return mem
    return run.memorization()


# --------------------------------------------------------------------------- detect


def _add_detect(sub) -> None:
    p = sub.add_parser("detect", help="how well each score of a run finds its injected examples (flipped labels, "
                                      "out-of-distribution inputs)",
                       description="For every mask the run folder holds (estimate --label-noise, --ood), the AUROC, "
                                   "average precision and precision at k of the C-score, memorization (negated, from "
                                   "the run's models) and every proxy in the folder's proxies.npz (cscore-lab proxies "
                                   "--run DIR adds them): a low score marks an example as suspect.")
    p.add_argument("--run", required=True, metavar="DIR", help="the run folder")
    p.add_argument("--data", metavar="PATH", help="the data set's folder or file, if it moved since the run")
    p.set_defaults(func=cmd_detect)


def cmd_detect(args: argparse.Namespace) -> int:
    from .detection import detect_masks
    from .runs import open_run

    run = open_run(args.run, data=args.data)
    if not run.masks:
        raise ValueError(f"run {args.run} holds no injected examples to find: estimate with --label-noise FRACTION "
                         f"(flipped labels) or --ood FRACTION --ood-kind KIND (out-of-distribution inputs)")
    try:
        mem, note = _run_memorization(run), "memorization (negated)"
    except ValueError as exc:  # shards from before correctness on training examples
        mem, note = None, f"no memorization ({exc})"
    px = (f"{len(run.proxies.names)} proxies of proxies.npz" if run.proxies is not None
          else f"no proxies (cscore-lab proxies --run {args.run} adds them)")
    print(f"Scores of {run.dataset.name} ({len(run.dataset)} examples): the C-score from "
          f"{run.cscores.meta.get('runs_done', '?')} models, {note}, {px}")
    for table in detect_masks(run.cscores, run.masks, memorization=mem, proxies=run.proxies).values():
        print(f"\nFinding the {table.what} (low score = suspect):")
        print(table.to_string())
    return 0


# --------------------------------------------------------------------------- experiments


def _experiment_adder(command: str) -> Callable[[Any], None]:
    def add(sub) -> None:
        from .experiments import EXPERIMENTS, add_experiment_options
        from .options import add_dataset_options

        exp = EXPERIMENTS[command]
        p = sub.add_parser(command, help=exp.summary,
                           description=f"{exp.summary[0].upper()}{exp.summary[1:]} (cscore_lab.uses.{exp.function}). "
                                       f"The scores come from --run DIR (its C-scores, memorization and proxies.npz) "
                                       f"or --cscores FILE with --dataset. Every trained group is kept in --out "
                                       f"(default DIR/uses/{exp.name}-<score>-<digest>): interrupt it at any time, "
                                       f"the same command resumes. The same options as '%%cscore {command}'.")
        p.add_argument("--run", metavar="DIR", help="run folder of 'cscore-lab estimate': its data set and scores")
        p.add_argument("--cscores", metavar="FILE", help="or a saved CScores file (e.g. from 'published --save') of "
                                                         "the data set that --dataset/--data load")
        add_dataset_options(p, positional=False, noise=False, default=None)
        add_experiment_options(p, command)
        p.add_argument("--figure", metavar="FILE", help="also draw the figure into FILE (.png)")
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
        p.set_defaults(func=lambda args: cmd_experiment(command, args))

    return add


def cmd_experiment(command: str, args: argparse.Namespace) -> int:
    from .cscores import CScores
    from .experiments import experiment_options, prepare_experiment, result_table
    from .options import data_spec_from
    from .runs import open_run

    if args.run and args.cscores:
        raise ValueError("--run and --cscores both name the scores; give one")
    if args.run and args.dataset:
        raise ValueError("--run brings its own data set; drop --dataset (--data may give the data's new place if it "
                         "moved)")
    if args.run:
        run = open_run(args.run, data=args.data)
        ds, cs, proxies, folder = run.dataset, run.cscores, run.proxies, run.folder
        memorization: Any = lambda: _run_memorization(run)  # noqa: E731 - computed only when asked for
        recipe = args.preset or run.recipe
    elif args.cscores:
        ds = data_spec_from(args, name=args.dataset or "digits").load().dataset
        cs = CScores.load(args.cscores)
        if len(cs) != len(ds):
            raise ValueError(f"{args.cscores} holds {len(cs)} C-scores but {ds.name} has {len(ds)} examples")
        proxies, folder, memorization, recipe = None, None, None, args.preset
    else:
        raise ValueError("give the scores: --run DIR (a run folder of 'cscore-lab estimate') or --cscores FILE "
                         "with --dataset NAME")
    job = prepare_experiment(command, ds, args.score, cscores=cs, memorization=memorization, proxies=proxies,
                             recipe=recipe, out=args.out, run_folder=folder, **experiment_options(command, args))
    print(f"{job.experiment.name} of {ds.name} by {', '.join(job.scores)} (recipe {job.recipe.name}): {job.out}",
          flush=True)
    t0 = time.perf_counter()
    result = job.run(progress=not args.no_progress)
    if result is None:
        print(f"stopped: {job.line()}; run the same command again to resume")
        return 1
    print(result_table(result).to_string())
    print(f"  {time.perf_counter() - t0:.1f} s; {result.meta.get('groups_trained', 0)} groups trained, "
          f"{result.meta.get('groups_resumed', 0)} resumed")
    print(f"saved: {job.out / result.FILENAME}")
    if args.figure:
        from .results import atomic_write
        from .viz.plots import render_png
        from .viz.uses import experiment_figure

        png = render_png(experiment_figure, result, figsize=(6.5, 4.0))
        print(f"figure: {atomic_write(args.figure, lambda fh: fh.write(png))}")
    return 0


#: (name, function that adds the subcommand's parser), listed in :data:`cscore_lab.cli.COMMANDS`.
USES_COMMANDS: list[tuple[str, Callable[[Any], None]]] = [
    ("detect", _add_detect),
    ("curriculum", _experiment_adder("curriculum")),
    ("prune", _experiment_adder("prune")),
    ("collect", _experiment_adder("collect")),
]
