"""Which scores find flipped labels? C-scores, every cheap proxy, and cleanlab, on the same noisy digits.

    python3 benchmarks/bench_label_noise.py                 # 10% noise, 50 runs per ratio
    python3 benchmarks/bench_label_noise.py --runs 200      # the paper's 200 runs per ratio
    python3 benchmarks/bench_label_noise.py --noise 0       # clean data: correlations only
    python3 benchmarks/bench_label_noise.py --noise 0 --runs 200 --out runs/digits --bandwidth-scale 0.5

Steps (all on scikit-learn's digits with ``--noise`` of the labels flipped by
``inject_label_noise``; every model uses the digits-mlp recipe):

1. C-scores by the holdout estimate (9 ratios x ``--runs`` models).
2. Every proxy of :func:`cscore_lab.proxies.suite.compute_proxies` (``--proxy-runs``
   full-data models averaged).
3. cleanlab (optional: ``pip install 'cscore-lab[bench]'``) from out-of-sample
   predicted probabilities made by K-fold cross-validation **with the same recipe**:
   the K fold models are trained together as one stacked group, each on all folds but
   its own (training sets cut to one common size, at most one example less), and each
   example's probabilities come from the model that did not see it. Scores:
   ``get_label_quality_scores`` (self-confidence) as a ranking, and
   ``find_label_issues`` (prune by noise rate) as a flagged set.

Prints the rank correlation of every proxy with the C-scores and one table of AUROC,
average precision and precision at k (low score = suspect), with the seconds each
score cost. ``--json FILE`` keeps the numbers.
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
from cscore_lab.data import inject_label_noise, load_digits
from cscore_lab.holdout import estimate
from cscore_lab.proxies.suite import compute_proxies
from cscore_lab.recipes import get_preset


def out_of_sample_probs(dataset, recipe, *, folds: int = 5, seed: int = 0) -> np.ndarray:
    """[N, C] softmax probabilities of each example from the fold model that did not train on it."""
    import torch

    from cscore_lab.trainer import model_seeds, prepare_inputs, train_group

    x, y = prepare_inputs(dataset, recipe, torch.device("cpu"))
    n = len(dataset)
    rng = np.random.default_rng([seed, 0xCF])
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[rng.permutation(n)] = np.arange(n) % folds
    size = min(int((fold_of != f).sum()) for f in range(folds))
    subsets = [np.sort(rng.choice(np.flatnonzero(fold_of != f), size, replace=False)) for f in range(folds)]
    seeds = [model_seeds(seed + 1, 1.0 - 1.0 / folds, f) for f in range(folds)]
    group = train_group(x, y, subsets, recipe, seeds, num_classes=dataset.num_classes)
    probs = torch.softmax(group.logits(x), dim=-1).numpy()  # [folds, N, C]
    return probs[fold_of, np.arange(n)].astype(np.float64)


def cleanlab_scores(labels: np.ndarray, probs: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Label-quality ranking and the find_label_issues flags (as 0/1 scores, 0 = flagged)."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        print("cleanlab is not installed: its rows are left out (pip install 'cscore-lab[bench]')", file=sys.stderr)
        return {}, {}
    t0 = time.perf_counter()
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    t1 = time.perf_counter()
    issues = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
    t2 = time.perf_counter()
    return ({"cleanlab_self_confidence": quality, "cleanlab_find_label_issues": (~issues).astype(np.float64)},
            {"cleanlab_self_confidence": t1 - t0, "cleanlab_find_label_issues": t2 - t1})


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noise", type=float, default=0.1, help="fraction of labels flipped (default 0.1; 0: clean)")
    ap.add_argument("--runs", type=int, default=50, help="models per ratio for the C-scores (default 50; paper 200)")
    ap.add_argument("--proxy-runs", type=int, default=3, help="full-data models averaged for the proxies (default 3)")
    ap.add_argument("--bandwidth-scale", type=float, default=1.0,
                    help="kernel bandwidth = this x the median rule (default 1)")
    ap.add_argument("--folds", type=int, default=5, help="cross-validation folds for cleanlab's probabilities (default 5)")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples of the correlations (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="run folder of the estimate (resumable); default: in memory")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)

    preset = get_preset("digits-mlp")
    recipe, plan = preset.recipe, replace(preset.plan, runs=args.runs, seed=args.seed)
    data = load_digits()
    mask = None
    if args.noise > 0:
        data, mask = inject_label_noise(data, args.noise, seed=args.seed)
    print(f"{data.name}: {len(data)} examples, {0 if mask is None else int(mask.sum())} labels flipped; recipe {recipe.name}",
          flush=True)
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    cs = estimate(data, recipe, plan, out=args.out)
    seconds["cscore"] = time.perf_counter() - t0
    print(f"C-scores: {plan.total_runs} models in {seconds['cscore']:.1f} s, split-half reliability {cs.reliability:.3f}",
          flush=True)

    t0 = time.perf_counter()
    table = compute_proxies(data, recipe, runs=args.proxy_runs, seed=args.seed, bandwidth_scale=args.bandwidth_scale)
    seconds["proxies (all)"] = time.perf_counter() - t0
    print(f"{len(table.names)} proxies in {seconds['proxies (all)']:.1f} s: {table.meta['seconds']}", flush=True)

    corr = correlate(table, cs, n_boot=args.n_boot, seed=args.seed)
    print(f"\nRank correlation with the C-scores ({data.name}):\n{corr.to_string()}\n", flush=True)
    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "seconds": seconds, "reliability": cs.reliability,
               "correlation": corr.overall()[["spearman", "spearman_low", "spearman_high", "kendall"]].to_dict("index")}

    if mask is not None:
        t0 = time.perf_counter()
        probs = out_of_sample_probs(data, recipe, folds=args.folds, seed=args.seed)
        seconds["cross-validated probabilities"] = time.perf_counter() - t0
        extra, extra_seconds = cleanlab_scores(data.labels, probs)
        seconds.update(extra_seconds)
        det = detect_label_noise({**table.values, **extra}, mask, cscores=cs)
        print(f"Finding the flipped labels (low score = suspect):\n{det.to_string()}", flush=True)
        if extra:
            flagged = extra["cleanlab_find_label_issues"] == 0
            hits = int((flagged & mask).sum())
            print(f"cleanlab find_label_issues flagged {int(flagged.sum())}: precision {hits / max(1, flagged.sum()):.3f}, "
                  f"recall {hits / mask.sum():.3f}")
        print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
        results["detection"] = det.to_frame().to_dict("index")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
