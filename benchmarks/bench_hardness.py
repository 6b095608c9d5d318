"""The field's hardness scores (cscore_lab.proxies.hardness) against flipped labels and against C-scores.

    python3 benchmarks/bench_hardness.py                          # digits, 10% noise: AUROC / AP / P@k
    python3 benchmarks/bench_hardness.py --noise 0 --cscore-runs 200 --out runs/digits   # digits: Spearman with C
    python3 benchmarks/bench_hardness.py --mnist /work/shared/data/mnist --published /work/shared/data/published
    python3 benchmarks/bench_hardness.py --every-steps 5          # adds per-5-step trajectory scores (per-step hook)

Digits (scikit-learn's, with ``--noise`` of the labels flipped by ``inject_label_noise``):
every hardness score from ``--runs`` full-data digits-mlp models (plus 5-fold cleanlab),
and the C-score from 9 ratios x ``--cscore-runs`` models for reference. With noise, one
table of AUROC, average precision and precision at k for the flipped labels
(``detect_label_noise``, low score = suspect); without, the Spearman of every score with
the C-scores (``correlate``).

MNIST (``--mnist DIR --published DIR``): the same scores with the mnist-mlp recipe on all
60,000 training images, and their Spearman with the authors' published C-scores
(``load_published``).

``--every-steps K`` also records the trajectory every K optimizer steps (needs the trainer's
per-step hook) and reports the trajectory scores of both granularities side by side, plus
the two 0/1 learning-speed proxies of :mod:`cscore_lab.proxies.dynamics` computed from the
same records (cumulative accuracy, the mean over records of margin > 0, and minus the
forgetting events), which are the coarsest when recorded per epoch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cscore_lab.analysis import correlate, detect_label_noise
from cscore_lab.data import inject_label_noise, load_digits, load_mnist
from cscore_lab.proxies.dynamics import forgetting_events
from cscore_lab.proxies.hardness import HardnessRecorder, hardness_scores
from cscore_lab.recipes import get_preset


def step_trajectories(dataset, recipe, *, runs, seed, every_steps):
    """Trajectory scores recorded per epoch and every ``every_steps`` steps, from the same training."""
    import torch

    from cscore_lab.trainer import model_seeds, prepare_inputs, train_group

    x, y = prepare_inputs(dataset, recipe, torch.device("cpu"))
    n = len(dataset)
    fams = ["aum", "datamap", "dataiq", "final"]
    per_epoch = HardnessRecorder.for_recipe(x, y, recipe, train_size=n, families=fams)
    per_step = HardnessRecorder.for_recipe(x, y, recipe, train_size=n, families=fams, every_steps=every_steps)
    torch.set_num_threads(1)
    train_group(x, y, [np.arange(n)] * runs, recipe, [model_seeds(seed, 1.0, r) for r in range(runs)],
                num_classes=dataset.num_classes, callbacks=[per_epoch, per_step])
    out = {}
    for tag, rec in (("epoch", per_epoch), (f"{every_steps}steps", per_step)):
        traj = rec.trajectory.result()
        for name, v in rec.scores().items():
            if not name.startswith("final"):
                out[f"{name}@{tag}"] = v
        correct = traj.margin > 0
        out[f"cum_accuracy@{tag}"] = correct.mean(axis=(0, 1))
        out[f"neg_forgetting@{tag}"] = -forgetting_events(correct).mean(axis=0)
        print(f"{tag}: {traj.num_records} records", flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noise", type=float, default=0.1, help="fraction of digits labels flipped (default 0.1)")
    ap.add_argument("--runs", type=int, default=3, help="full-data models averaged (default 3)")
    ap.add_argument("--cscore-runs", type=int, default=50, help="C-score models per ratio on digits (0: none)")
    ap.add_argument("--folds", type=int, default=5, help="cleanlab cross-validation folds (default 5)")
    ap.add_argument("--every-steps", type=int, default=None, help="also record the trajectory every K steps")
    ap.add_argument("--mnist", type=Path, default=None, help="MNIST IDX folder: run on MNIST instead of digits")
    ap.add_argument("--published", type=Path, default=None, help="folder or file of the published MNIST C-scores")
    ap.add_argument("--families", default=None, help="comma-separated score families (default: all)")
    ap.add_argument("--vog-epochs", default=None, help="VoG checkpoints, e.g. 1-4 or 1,5,10 (default: every epoch)")
    ap.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples of the correlations")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="run folder of the digits C-score estimate (resumable)")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    families = {"families": tuple(args.families.split(","))} if args.families else {}
    if args.vog_epochs:
        lo, _, hi = args.vog_epochs.partition("-")
        families["vog_epochs"] = (range(int(lo), int(hi) + 1) if hi else
                                  tuple(int(e) for e in args.vog_epochs.split(",")))

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

    t0 = time.perf_counter()
    scores = hardness_scores(data, recipe, runs=args.runs, folds=args.folds, seed=args.seed, device="cpu",
                             progress=True, **families)
    seconds = time.perf_counter() - t0
    print(f"{len(scores)} hardness scores in {seconds:.1f} s", flush=True)
    if args.every_steps:
        t1 = time.perf_counter()
        scores.update(step_trajectories(data, recipe, runs=args.runs, seed=args.seed, every_steps=args.every_steps))
        print(f"per-epoch and per-{args.every_steps}-step trajectories in {time.perf_counter() - t1:.1f} s", flush=True)

    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "seconds": seconds}
    if mask is not None:
        det = detect_label_noise(scores, mask, cscores=cs)
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
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
