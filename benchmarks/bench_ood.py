"""Which scores find out-of-distribution inputs? Every score, every kind of injected input, digits and MNIST, one table.

    python3 benchmarks/bench_ood.py                              # digits (9 ratios x 20 runs) and MNIST (a subset)
    python3 benchmarks/bench_ood.py --only digits --runs 50
    python3 benchmarks/bench_ood.py --only mnist --mnist-examples 10000 --mnist-runs 16

For each data set and each kind of :data:`cscore_lab.ood.OOD_KINDS` (gaussian and uniform noise, inverted,
rotated and shuffled pictures, foreign pictures: MNIST downscaled for the digits, the digits upscaled for
MNIST), ``--fraction`` (5%) of the examples are replaced by :func:`cscore_lab.inject_ood` (seed 0: the same
examples and random labels for every kind), and on that copy:

1. C-scores by the holdout estimate (digits-mlp on the digits: 9 ratios x ``--runs``; mnist-mlp, the
   authors' recipe, on a stratified-at-random subset of ``--mnist-examples`` MNIST training images:
   ``--mnist-ratios`` x ``--mnist-runs``: the 2 shared cores cannot train the paper's 1,800 MNIST models per
   kind), and Feldman & Zhang's memorization from the same models (``neg_memorization``, negated);
2. every default family of :func:`cscore_lab.proxies.suite.compute_proxies` (one shared full-data training
   of the same recipe): learning speed, kernel densities, k-NN, LOF, the field's hardness scores, and
   cleanlab when installed;
3. :func:`cscore_lab.detection.detect_masks`: AUROC, average precision and precision at k of each score for
   the injected examples (low score = suspect; a random ranking has AUROC 0.5 and AP = the fraction).

Prints one table (rows: scores, best mean AUROC first, hidden-space proxies of the last epoch as ``_elast``;
columns: data set / kind; cells: AUROC / AP), the
seconds spent, and with ``--json FILE`` every number. Every estimate is kept under ``--work`` (default
``/tmp/cscore-bench-ood``) with its proxies: a rerun resumes and recomputes nothing.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

from cscore_lab.data import load_digits, load_mnist
from cscore_lab.detection import detect_masks
from cscore_lab.holdout import Estimation
from cscore_lab.ood import OOD_KINDS, inject_ood
from cscore_lab.proxies.suite import ProxyTable, compute_proxies
from cscore_lab.recipes import Plan, get_preset
from cscore_lab.runs import memorization_of

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def detect_one(ds, kind: str, *, recipe, plan: Plan, fraction: float, work: Path, source=None, quiet: bool):
    """(DetectionTable, seconds per step) for ``fraction`` of ``ds`` replaced by ``kind`` inputs."""
    seconds = {}
    t0 = time.perf_counter()
    data, mask = inject_ood(ds, fraction, kind, seed=0, source=source)
    folder = work / f"{data.name}-{recipe.name}-{len(plan.ratios)}x{plan.runs}"
    est = Estimation(data, recipe, plan, out=folder, device="cpu")
    cs = est.run(progress=not quiet)
    mem = memorization_of(est.store, labels=data.labels, plan=plan, dataset=data)
    seconds["estimate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kept = folder / ProxyTable.FILENAME
    if kept.is_file() and ProxyTable.load(kept).fingerprint == data.fingerprint:
        proxies = ProxyTable.load(kept)
    else:
        proxies = compute_proxies(data, recipe, device="cpu", seed=0, progress=not quiet)
        proxies.save(kept)
    seconds["proxies"] = time.perf_counter() - t0
    table = detect_masks(cs, {"ood": mask}, memorization=mem, proxies=proxies)["ood"]
    return table, seconds, {"reliability": float(cs.reliability), "models": plan.total_runs,
                            "injected": int(mask.sum()), "examples": len(data),
                            "families": proxies.meta.get("families")}


def _last_epoch_as_elast(frame, epochs: int):
    """Hidden-space proxies of the last epoch named ``..._elast`` (digits-mlp's is epoch 12, mnist-mlp's 10),
    so the two data sets share their rows."""
    return frame.rename(index=lambda s: re.sub(rf"_e{epochs}(?=_|$)", "_elast", s))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("digits", "mnist"), help="one data set (default both)")
    ap.add_argument("--kinds", nargs="+", choices=OOD_KINDS, default=list(OOD_KINDS))
    ap.add_argument("--fraction", type=float, default=0.05, help="share of examples replaced (default 0.05)")
    ap.add_argument("--runs", type=int, default=20, help="digits: models per ratio, 9 ratios (default 20)")
    ap.add_argument("--mnist-examples", type=int, default=4000, help="MNIST: training images used (default 4000)")
    ap.add_argument("--mnist-ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    ap.add_argument("--mnist-runs", type=int, default=8, help="MNIST: models per ratio (default 8)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/cscore-bench-ood"))
    ap.add_argument("--json", type=Path, help="write every number here")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)

    mnist_folder = DATA / "mnist"
    have_mnist = (mnist_folder / "train-images-idx3-ubyte.gz").is_file() or (mnist_folder / "train-images-idx3-ubyte").is_file()
    runs = []  # (dataset label, data set, recipe, plan, source for "foreign")
    if args.only in (None, "digits"):
        runs.append(("digits", load_digits(), get_preset("digits-mlp").recipe, Plan(runs=args.runs),
                     mnist_folder if have_mnist else None))
    if args.only in (None, "mnist"):
        if not have_mnist:
            say(f"MNIST left out: no MNIST files in {mnist_folder}")
        else:
            mnist = load_mnist(mnist_folder)
            pick = np.sort(np.random.default_rng(0).choice(len(mnist), args.mnist_examples, replace=False))
            runs.append((f"mnist[{args.mnist_examples}]", mnist.subset(pick, name=f"mnist{args.mnist_examples}"),
                         get_preset("mnist-mlp").recipe,
                         Plan(ratios=tuple(args.mnist_ratios), runs=args.mnist_runs), None))

    tables, results = {}, {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                           "columns": {}}
    t_all = time.perf_counter()
    for label, ds, recipe, plan, source in runs:
        for kind in args.kinds:
            if kind == "foreign" and label == "digits" and source is None:
                say("digits/foreign left out: MNIST downscaled needs the MNIST files")
                continue
            table, seconds, facts = detect_one(ds, kind, recipe=recipe, plan=plan, fraction=args.fraction,
                                               work=args.work, source=source if kind == "foreign" else None,
                                               quiet=args.quiet)
            column = f"{label} {kind}"
            frame = tables[column] = _last_epoch_as_elast(table.to_frame(), recipe.epochs)
            say(f"{column}: {facts['injected']} of {facts['examples']} injected; C-score AUROC "
                f"{frame.loc['cscore', 'auroc']:.3f} (reliability {facts['reliability']:.3f}, {facts['models']} "
                f"models); best {frame.index[0]} {frame['auroc'].iloc[0]:.3f}; estimate {seconds['estimate']:.0f} s, "
                f"proxies {seconds['proxies']:.0f} s")
            results["columns"][column] = {**facts, "seconds": seconds, "detection": frame.to_dict("index")}

    if not tables:
        say("nothing ran")
        return 1
    scores = sorted({s for f in tables.values() for s in f.index},
                    key=lambda s: -np.nanmean([f.loc[s, "auroc"] if s in f.index else np.nan for f in tables.values()]))
    columns = list(tables)
    print(f"\nAUROC / AP of every score for {args.fraction:.0%} injected out-of-distribution inputs "
          f"(low score = suspect; random: 0.5 / {args.fraction:.2f}); rows by mean AUROC\n")
    print("| score | " + " | ".join(columns) + " | mean AUROC |")
    print("| --- | " + " | ".join("---:" for _ in columns) + " | ---: |")
    for s in scores:
        cells = [f"{tables[c].loc[s, 'auroc']:.3f} / {tables[c].loc[s, 'average_precision']:.3f}"
                 if s in tables[c].index else "–" for c in columns]
        mean = np.nanmean([tables[c].loc[s, "auroc"] for c in columns if s in tables[c].index])
        name = f"**{s}**" if s in ("cscore", "neg_memorization") else s
        print(f"| {name} | " + " | ".join(cells) + f" | {mean:.3f} |")
    total = time.perf_counter() - t_all
    print(f"\n{len(columns)} columns in {total:.0f} s")
    results["seconds"] = total
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
