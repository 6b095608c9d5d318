"""Which scores find flipped labels? Every score cscore_lab computes, on the same noisy digits, in one table.

    python3 benchmarks/bench_label_noise.py                 # 10% noise, 50 runs per ratio
    python3 benchmarks/bench_label_noise.py --runs 200      # the paper's 200 runs per ratio
    python3 benchmarks/bench_label_noise.py --noise 0       # clean data: correlations with the C-score only
    python3 benchmarks/bench_label_noise.py --noise 0 --runs 200 --out runs/digits --bandwidth-scale 0.5

Steps (all on scikit-learn's digits with ``--noise`` of the labels flipped by
``inject_label_noise``; every model uses the digits-mlp recipe):

1. C-scores by the holdout estimate (9 ratios x ``--runs`` models), and from the same models the
   memorization of Feldman & Zhang (:class:`cscore_lab.memorization.MemorizationAccumulator` fed
   with the estimate's shards; in the table as ``neg_memorization``, oriented like the C-score).
2. Every family of :func:`cscore_lab.proxies.suite.compute_proxies` (``--proxy-runs``
   full-data models averaged, one shared training): the paper's proxies (learning speed,
   kernel densities, k-NN, LOF), the field's hardness scores (AUM, EL2N, GraNd, VoG, data maps,
   Data-IQ, final loss and margin, prototypicality) and cleanlab's confident learning on 5-fold
   out-of-sample probabilities of the same recipe (when cleanlab is installed:
   ``pip install 'cscore-lab[hardness]'``; otherwise its rows are left out, and the script says so).

Prints one table of AUROC, average precision and precision at k for the flipped labels
(:func:`cscore_lab.analysis.detect_injected`, low score = suspect), sorted by AUROC, the
precision and recall of cleanlab's flagged set, and the seconds each step cost; with
``--noise 0`` the rank correlation of every score with the C-scores instead. ``--json FILE``
keeps the numbers.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from cscore_lab.analysis import correlate, detect_injected
from cscore_lab.data import inject_label_noise, load_digits
from cscore_lab.holdout import Estimation
from cscore_lab.memorization import MemorizationAccumulator
from cscore_lab.proxies.suite import FAMILIES, compute_proxies
from cscore_lab.recipes import get_preset


def estimate_with_memorization(data, recipe, plan, *, out=None):
    """C-scores and the memorization of the same models (the estimate's stored shards)."""
    est = Estimation(data, recipe, plan, out=out, device="cpu")
    cs = est.run()
    acc = MemorizationAccumulator(len(data), plan.ratios)
    for shard in est.store.iter_shards():
        acc.add_shard(shard)
    return cs, acc.result(data.labels, dataset=data.name, fingerprint=data.fingerprint)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--noise", type=float, default=0.1, help="fraction of labels flipped (default 0.1; 0: clean)")
    ap.add_argument("--runs", type=int, default=50, help="models per ratio for the C-scores (default 50; paper 200)")
    ap.add_argument("--proxy-runs", type=int, default=3, help="full-data models averaged for the proxies (default 3)")
    ap.add_argument("--bandwidth-scale", type=float, default=1.0,
                    help="kernel bandwidth = this x the median rule (default 1)")
    ap.add_argument("--families", default=None, help=f"comma-separated proxy families (default: all of {','.join(FAMILIES)})")
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
    cs, mem = estimate_with_memorization(data, recipe, plan, out=args.out)
    seconds["C-scores and memorization"] = time.perf_counter() - t0
    print(f"C-scores: {plan.total_runs} models in {seconds['C-scores and memorization']:.1f} s, split-half "
          f"reliability {cs.reliability:.3f}; memorization reliability {mem.reliability:.3f}", flush=True)

    families = args.families.split(",") if args.families else list(FAMILIES)
    t0 = time.perf_counter()
    try:
        table = compute_proxies(data, recipe, families=families, runs=args.proxy_runs, seed=args.seed,
                                bandwidth_scale=args.bandwidth_scale, device="cpu")
    except ImportError as exc:  # cleanlab asked for by name and missing: the rest still runs
        print(f"{exc}: its rows are left out", file=sys.stderr)
        families.remove("cleanlab")
        table = compute_proxies(data, recipe, families=families, runs=args.proxy_runs, seed=args.seed,
                                bandwidth_scale=args.bandwidth_scale, device="cpu")
    seconds["proxies and hardness scores"] = time.perf_counter() - t0
    print(f"{len(table.names)} proxy and hardness scores in {seconds['proxies and hardness scores']:.1f} s: "
          f"{table.meta['seconds']}", flush=True)
    scores = {"neg_memorization": mem.regularity, **table.values}

    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "seconds": seconds, "reliability": cs.reliability, "families": table.meta["families"]}
    if mask is None:
        corr = correlate(scores, cs, n_boot=args.n_boot, seed=args.seed)
        print(f"\nRank correlation with the C-scores ({data.name}):\n{corr.to_string()}\n", flush=True)
        results["correlation"] = corr.overall()[["spearman", "spearman_low", "spearman_high", "kendall"]].to_dict("index")
    else:
        det = detect_injected(scores, mask, cscores=cs)
        frame = det.to_frame().sort_values("auroc", ascending=False)
        print(f"\nFinding the flipped labels (low score = suspect; {len(frame)} scores):\n{frame.to_string()}", flush=True)
        if "cleanlab_label_issue" in scores:
            flagged = scores["cleanlab_label_issue"] == 0
            hits = int((flagged & mask).sum())
            print(f"cleanlab find_label_issues flagged {int(flagged.sum())}: precision {hits / max(1, flagged.sum()):.3f}, "
                  f"recall {hits / mask.sum():.3f}")
        results["detection"] = frame.to_dict("index")
    print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
