"""The field's hardness scores (cscore_lab.proxies) against flipped labels and against C-scores.

    python3 benchmarks/bench_hardness.py                          # digits, 10% noise: AUROC / AP / P@k
    python3 benchmarks/bench_hardness.py --noise 0 --cscore-runs 200 --out runs/digits   # digits: Spearman with C
    python3 benchmarks/bench_hardness.py --mnist /work/shared/data/mnist --published /work/shared/data/published
    python3 benchmarks/bench_hardness.py --every-steps 5          # adds per-5-step trajectory scores
    python3 benchmarks/bench_hardness.py --noise 0 --cscore-runs 200 --out runs/digits --dynamics-steps epoch,20,14,5,1

Digits (scikit-learn's, with ``--noise`` of the labels flipped by ``inject_label_noise``):
every hardness family of :func:`cscore_lab.proxies.suite.compute_proxies` (``aum, el2n, grand,
vog, datamap, dataiq, loss, prototypicality`` and, when installed, ``cleanlab``) from ``--runs``
full-data digits-mlp models, and the C-score from 9 ratios x ``--cscore-runs`` models for
reference. With noise, one table of AUROC, average precision and precision at k for the flipped
labels (``detect_injected``, low score = suspect); without, the Spearman of every score with the
C-scores (``correlate``).

MNIST (``--mnist DIR --published DIR``): the same scores with the mnist-mlp recipe on all 60,000
training images, and their Spearman with the authors' published C-scores (``load_published``).

``--every-steps K`` also records the trajectory every K optimizer steps and reports the
trajectory scores of both granularities side by side, plus the two 0/1 learning-speed proxies
computed from the same records (cumulative accuracy, the mean over records of margin > 0, and
minus the forgetting events).

``--dynamics-steps LIST`` measures the learning-speed family's record schedule (what
``compute_proxies(dynamics_every_steps=...)`` chooses): one training of ``--runs`` models with one
:class:`~cscore_lab.proxies.recorders.DynamicsRecorder` per schedule (``epoch`` = after every
epoch, a number = every that many steps, ``auto`` = the suite's default), and for each schedule
the records, the seconds spent recording and the Spearman (or detection AUROC) of every
learning-speed proxy.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cscore_lab.analysis import correlate, detect_injected
from cscore_lab.data import inject_label_noise, load_digits, load_mnist
from cscore_lab.proxies.dynamics import DYNAMICS_PROXIES, forgetting_events, record_interval
from cscore_lab.proxies.label_issues import cleanlab_available
from cscore_lab.proxies.recorders import DynamicsRecorder, TrajectoryRecorder
from cscore_lab.proxies.suite import compute_proxies
from cscore_lab.recipes import get_preset

#: The hardness families of the suite (the proxies of the paper are bench_label_noise.py's).
HARDNESS = ("aum", "el2n", "grand", "vog", "datamap", "dataiq", "loss", "prototypicality", "cleanlab")


class Timed:
    """A train_group callback that forwards to ``inner`` and adds up the seconds spent in it."""

    def __init__(self, inner):
        self.inner, self.seconds = inner, 0.0
        self.every_steps = getattr(inner, "every_steps", None)

    def on_step(self, step, group):
        t0 = time.perf_counter()
        self.inner.on_step(step, group)
        self.seconds += time.perf_counter() - t0

    def on_epoch_end(self, epoch, group):
        t0 = time.perf_counter()
        self.inner.on_epoch_end(epoch, group)
        self.seconds += time.perf_counter() - t0


def _train(x, y, dataset, recipe, callbacks, *, runs, seed) -> float:
    """The suite's full-data training (same seeds, one torch thread) with ``callbacks``; its seconds."""
    from cscore_lab.trainer import model_seeds, torch_threads, train_group

    t0 = time.perf_counter()
    with torch_threads(1):
        train_group(x, y, [np.arange(len(dataset))] * runs, recipe, [model_seeds(seed, 1.0, r) for r in range(runs)],
                    num_classes=dataset.num_classes, callbacks=callbacks)
    return time.perf_counter() - t0


def step_trajectories(dataset, recipe, *, runs, seed, every_steps):
    """Trajectory scores recorded per epoch and every ``every_steps`` steps, from the same training."""
    import torch

    from cscore_lab.proxies.hardness import aum, dataiq_aleatoric, datamap_confidence, datamap_variability
    from cscore_lab.trainer import prepare_inputs

    x, y = prepare_inputs(dataset, recipe, torch.device("cpu"))
    n = len(dataset)
    per_epoch = TrajectoryRecorder(x, y)
    per_step = TrajectoryRecorder.for_recipe(x, y, recipe, train_size=n, every_steps=every_steps)
    _train(x, y, dataset, recipe, [per_epoch, per_step], runs=runs, seed=seed)
    out = {}
    for tag, rec in (("epoch", per_epoch), (f"{every_steps}steps", per_step)):
        traj = rec.result()
        p = traj.label_prob
        out.update({f"aum@{tag}": aum(traj.margin), f"datamap_confidence@{tag}": datamap_confidence(p),
                    f"datamap_variability@{tag}": datamap_variability(p), f"dataiq_aleatoric@{tag}": dataiq_aleatoric(p)})
        correct = traj.margin > 0
        out[f"cum_accuracy@{tag}"] = correct.mean(axis=(0, 1))
        out[f"neg_forgetting@{tag}"] = -forgetting_events(correct).mean(axis=0)
        print(f"{tag}: {traj.num_records} records", flush=True)
    return out


def dynamics_schedules(dataset, recipe, schedules, *, runs, seed):
    """Learning-speed proxies under several record schedules, all from one training; and what each cost."""
    import torch

    from cscore_lab.trainer import prepare_inputs

    x, y = prepare_inputs(dataset, recipe, torch.device("cpu"))
    n = len(dataset)
    steps_per_epoch = -(-n // recipe.batch_size)
    recorders = {}
    for s in schedules:
        every = record_interval(None if s == "epoch" else ("auto" if s == "auto" else int(s)), steps_per_epoch)
        rec = DynamicsRecorder(x, y) if every is None else DynamicsRecorder.for_recipe(x, y, recipe, train_size=n,
                                                                                       every_steps=every)
        recorders[s] = (every, Timed(rec))
    seconds = _train(x, y, dataset, recipe, [t for _, t in recorders.values()], runs=runs, seed=seed)
    recording = sum(t.seconds for _, t in recorders.values())
    print(f"one training of {runs} model(s) with {len(schedules)} recorders: {seconds:.1f} s, of which "
          f"{recording:.1f} s recording ({steps_per_epoch} steps per epoch)", flush=True)
    out, cost = {}, {}
    for s, (every, timed) in recorders.items():
        for name, v in timed.inner.result().proxies().items():
            out[f"{name}@{s}"] = v
        cost[s] = {"every_steps": every, "records": timed.inner.num_records, "seconds": round(timed.seconds, 2)}
    cost["training without recorders (s)"] = round(seconds - recording, 2)
    return out, cost


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noise", type=float, default=0.1, help="fraction of digits labels flipped (default 0.1)")
    ap.add_argument("--runs", type=int, default=3, help="full-data models averaged (default 3)")
    ap.add_argument("--cscore-runs", type=int, default=50, help="C-score models per ratio on digits (0: none)")
    ap.add_argument("--folds", type=int, default=5, help="cleanlab cross-validation folds (default 5)")
    ap.add_argument("--every-steps", type=int, default=None, help="also record the trajectory every K steps")
    ap.add_argument("--dynamics-steps", default=None,
                    help="only measure learning-speed record schedules, e.g. epoch,auto,20,5 (see the docstring)")
    ap.add_argument("--mnist", type=Path, default=None, help="MNIST IDX folder: run on MNIST instead of digits")
    ap.add_argument("--published", type=Path, default=None, help="folder or file of the published MNIST C-scores")
    ap.add_argument("--families", default=None, help=f"comma-separated families (default: {','.join(HARDNESS)})")
    ap.add_argument("--vog-epochs", default=None, help="VoG checkpoints, e.g. 1-4 or 1,5,10 (default: every epoch)")
    ap.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples of the correlations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="run folder of the digits C-score estimate (resumable)")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    families = tuple(args.families.split(",")) if args.families else tuple(
        f for f in HARDNESS if f != "cleanlab" or cleanlab_available())
    options = {}
    if args.vog_epochs:
        lo, _, hi = args.vog_epochs.partition("-")
        options["vog_epochs"] = (range(int(lo), int(hi) + 1) if hi else tuple(int(e) for e in args.vog_epochs.split(",")))

    mask = cs = None
    if args.mnist:
        if args.published is None:
            ap.error("--mnist needs --published (the authors' C-scores)")
        from cscore_lab.published import load_published

        data = load_mnist(args.mnist)
        recipe = get_preset("mnist-mlp").recipe
        cs = load_published("mnist", args.published, data)
    else:
        preset = get_preset("digits-mlp")
        recipe = preset.recipe
        data = load_digits()
        if args.noise > 0:
            data, mask = inject_label_noise(data, args.noise, seed=args.seed)
        if args.cscore_runs:
            from cscore_lab.holdout import estimate

            t0 = time.perf_counter()
            cs = estimate(data, recipe, replace(preset.plan, runs=args.cscore_runs, seed=args.seed), out=args.out)
            print(f"C-scores: 9 x {args.cscore_runs} models in {time.perf_counter() - t0:.1f} s, "
                  f"reliability {cs.reliability:.3f}", flush=True)
    print(f"{data.name}: {len(data)} examples, recipe {recipe.name}, {args.runs} full-data run(s)"
          + (f", {int(mask.sum())} labels flipped" if mask is not None else ""), flush=True)

    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if args.dynamics_steps:
        scores, cost = dynamics_schedules(data, recipe, args.dynamics_steps.split(","), runs=args.runs,
                                          seed=args.seed)
        print("record schedules: " + json.dumps(cost))
        results["schedules"] = cost
    else:
        t0 = time.perf_counter()
        table = compute_proxies(data, recipe, families=families, runs=args.runs, folds=args.folds, seed=args.seed,
                                device="cpu", progress=True, **options)
        scores = dict(table.values)
        results["seconds"] = time.perf_counter() - t0
        results["meta_seconds"] = table.meta["seconds"]
        print(f"{len(scores)} hardness scores in {results['seconds']:.1f} s: {table.meta['seconds']}", flush=True)
        if args.every_steps:
            t1 = time.perf_counter()
            scores.update(step_trajectories(data, recipe, runs=args.runs, seed=args.seed, every_steps=args.every_steps))
            print(f"per-epoch and per-{args.every_steps}-step trajectories in {time.perf_counter() - t1:.1f} s",
                  flush=True)

    if mask is not None:
        det = detect_injected(scores, mask, cscores=cs)
        print(f"\nFinding the flipped labels (low score = suspect):\n{det.to_string()}")
        flagged = scores.get("cleanlab_label_issue")
        if flagged is not None:
            hits = int(((flagged == 0) & mask).sum())
            print(f"cleanlab find_label_issues flagged {int((flagged == 0).sum())}: "
                  f"precision {hits / max(1, int((flagged == 0).sum())):.3f}, recall {hits / mask.sum():.3f}")
        results["detection"] = det.to_frame().to_dict("index")
    if cs is not None:
        corr = correlate(scores, cs, n_boot=args.n_boot, seed=args.seed, per_class=False)
        print(f"\nRank correlation with the {'published ' if args.mnist else ''}C-scores:\n{corr.to_string()}")
        results["correlation"] = corr.overall()[["spearman", "spearman_low", "spearman_high", "kendall"]].to_dict("index")
        if args.dynamics_steps:
            sp = corr.overall()["spearman"]
            print("\nSpearman by record schedule:")
            print("proxy".ljust(16) + "".join(s.rjust(10) for s in args.dynamics_steps.split(",")))
            for name in DYNAMICS_PROXIES:
                print(name.ljust(16) + "".join(f"{sp[f'{name}@{s}']:10.3f}" for s in args.dynamics_steps.split(",")))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
