"""Reproduce the paper's MNIST C-scores with the authors' recipe and compare with the published scores.

Trains the ``mnist-mlp`` preset (MLP 784-512-256-10, SGD momentum 0.9, lr 0.1, batch 128,
10 epochs, inputs /255) on the 60,000 MNIST training images, ``--runs`` models per
subset ratio, in stages of ``--step`` runs per ratio so that every ratio advances
together and a stop at any time leaves a balanced estimate. The run folder (``--out``)
keeps every finished shard: running the same command again resumes.

Then, for a ladder of run counts r = 2, 4, 8, ..., R (R: the most runs finished at
every ratio), it estimates the C-scores from the first r runs and reports against the
published scores (put into official order by :func:`cscore_lab.published.load_published`):

* Spearman correlation (and, as a check of the order, the same against the file's raw
  tensorflow-datasets order, which should be about 0);
* overlap of the 600 lowest (our lowest 1% vs theirs), with ties at our cut-off shared
  out in expectation (:func:`cscore_lab.analysis.lowest_overlap`);
* mean absolute difference and mean difference (ours minus theirs);
* our split-half reliability (Spearman between the estimates of even and odd runs),
  its Spearman-Brown value for all r runs, and the Spearman with the published scores
  that the same reliability model predicts at 200 runs (correction for attenuation);
* what sampling noise alone would give: the same agreement for an estimator that draws
  binomial held-out results around the published scores, at each r and at 50, 100, 200;
* the held-out accuracy per ratio pooled over examples, against the published mean;
* with ``--init-check RATIO,PAIRS``: the held-out accuracy of models initialised as
  PyTorch does (our engine) and as the authors' JAX stax code does, on the same subsets.

Usage::

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/bench_reproduce_mnist.py \\
        --out /tmp/mnist-repro --runs 200 --budget-minutes 60 --threads 1
    python benchmarks/bench_reproduce_mnist.py --out /tmp/mnist-repro --report-only
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cscore_lab.data import Dataset, load_mnist  # noqa: E402
from cscore_lab.analysis import agreement  # noqa: E402
from cscore_lab.published import load_published, tfds_mnist_order  # noqa: E402
from cscore_lab.recipes import PAPER_RATIOS, Plan, get_preset  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data"
LOWEST = 600  # the paper's lowest 1% of MNIST


# ----------------------------------------------------------------------------- metrics


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of the finite pairs."""
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic)


def spearman_brown(rho: float, factor: float) -> float:
    """Reliability of an estimate ``factor`` times as long, from the reliability ``rho`` of one."""
    if not math.isfinite(rho) or rho <= 0:
        return float("nan")
    return factor * rho / (1.0 + (factor - 1.0) * rho)


# ----------------------------------------------------------------------------- training


def train(dataset: Dataset, *, out: Path, runs: int, ratios: Sequence[float], step: int, device: str,
          budget_s: float, seed: int = 0, precision: str = "fp32") -> dict[str, Any]:
    """Run stages of ``step`` more runs per ratio until ``runs`` are done or the budget is spent."""
    from cscore_lab.holdout import Estimation

    recipe = get_preset("mnist-mlp").recipe.with_(precision=precision)
    t0 = time.perf_counter()
    deadline = t0 + budget_s
    stopped = False
    for r in range(step, runs + step, step):
        r = min(r, runs)
        est = Estimation(dataset, recipe, Plan(ratios=tuple(ratios), runs=r, seed=seed, shard_size=step),
                         out=out, device=device)

        def watch(e: Estimation) -> None:
            p = e.progress
            print(f"  [{time.perf_counter() - t0:7.0f}s] runs/ratio {r}: {p.line()}", flush=True)
            if time.perf_counter() > deadline and p.state == "running":
                e.stop(wait=False)

        est.add_listener(watch)
        est.run()
        if est.progress.state != "finished":
            stopped = True
            break
        if time.perf_counter() > deadline and r < runs:
            stopped = True
            break
    return {"seconds": time.perf_counter() - t0, "stopped_by_budget": stopped}


# ----------------------------------------------------------------------------- report


def load_runs(out: Path, n: int) -> dict[float, dict[int, tuple[np.ndarray, np.ndarray, float]]]:
    """Per ratio, per run index: (heldout bool [N], correct bool [N], seconds per model)."""
    from cscore_lab.store import RunStore

    store = RunStore(out)
    store.read_manifest()
    table: dict[float, dict[int, tuple[np.ndarray, np.ndarray, float]]] = {}
    for shard in store.iter_shards():
        if shard.heldout.shape[1] != n:
            raise ValueError(f"{out}: shard {shard.key} covers {shard.heldout.shape[1]} examples, expected {n}")
        per_model = shard.seconds / max(len(shard.runs), 1)
        for i, run in enumerate(shard.runs):
            table.setdefault(shard.ratio, {})[int(run)] = (shard.heldout[i], shard.correct[i], per_model)
    return table


def ladder(r_max: int) -> list[int]:
    steps = [r for r in (2 ** k for k in range(1, 12)) if r <= r_max]
    if r_max >= 2 and (not steps or steps[-1] != r_max):
        steps.append(r_max)
    return steps


def report(dataset: Dataset, published: np.ndarray, published_raw: np.ndarray, out: Path,
           ratios: Sequence[float]) -> dict[str, Any]:
    """Compare estimates from the first r runs with the published scores, for r on a ladder."""
    from cscore_lab.cscores import aggregate_counts

    n = len(dataset)
    runs = load_runs(out, n)
    ratios = [r for r in ratios if r in runs]
    if not ratios:
        raise SystemExit(f"{out}: no finished shards yet")
    r_max = min(_complete_prefix(runs[r]) for r in ratios)
    rows = []
    for r in ladder(r_max):
        counts = np.zeros((2, 2, len(ratios), n), dtype=np.int64)  # [correct/heldout, half, ratio, example]
        for si, ratio in enumerate(ratios):
            for run in range(r):
                held, corr, _ = runs[ratio][run]
                counts[0, run % 2, si] += corr & held
                counts[1, run % 2, si] += held
        _, ours, _ = aggregate_counts(counts[0].sum(0), counts[1].sum(0))
        _, half_a, _ = aggregate_counts(counts[0, 0], counts[1, 0])
        _, half_b, _ = aggregate_counts(counts[0, 1], counts[1, 1])
        rel_half = spearman(half_a, half_b)
        rel_full = spearman_brown(rel_half, 2.0)
        agree = agreement(ours, published, lowest=LOWEST)
        rho = agree["spearman"]
        rel_200 = spearman_brown(rel_full, 200.0 / r)
        rows.append({
            "runs": r,
            "models": r * len(ratios),
            "spearman": rho,
            "kendall": agree["kendall"],
            "spearman_raw_order": spearman(ours, published_raw),
            "overlap_lowest_600": agree["overlap_lowest"],
            "mad": agree["mad"],
            "mean_difference": agree["mean_difference"],
            "split_half": rel_half,
            "reliability_sb": rel_full,
            "predicted_spearman_200": rho * math.sqrt(rel_200 / rel_full) if rel_full > 0 else float("nan"),
            "never_held_out": int(np.isnan(ours).sum()),
        })
    secs = {f"{ratio:g}": float(np.mean([v[2] for v in runs[ratio].values()])) for ratio in ratios}
    level = {}
    for ratio in ratios:  # held-out accuracy pooled over examples: free of the never-held-out bias
        held = sum(runs[ratio][run][0].sum() for run in range(r_max))
        right = sum((runs[ratio][run][0] & runs[ratio][run][1]).sum() for run in range(r_max))
        level[f"{ratio:g}"] = float(right / held)
    noise = [{"runs": r, **noise_model(published, ratios, r)} for r in sorted({*ladder(r_max), 50, 100, 200})]
    return {"ratios": list(ratios), "complete_runs_per_ratio": r_max, "rows": rows,
            "seconds_per_model_by_ratio": secs,
            "seconds_per_model_mean": float(np.mean(list(secs.values()))),
            "heldout_accuracy_by_ratio": level, "heldout_accuracy_mean": float(np.mean(list(level.values()))),
            "published_mean": float(np.mean(published)), "noise_model": noise}


def noise_model(truth: np.ndarray, ratios: Sequence[float], runs: int, seed: int = 0) -> dict[str, float]:
    """Agreement with ``truth`` of an estimator that differs from it by sampling noise only.

    Each example is held out by Bin(runs, 1 - s) models at ratio s and each of those is right
    with probability ``truth`` (the same at every ratio); the estimate averages the per-ratio
    shares over the ratios where the example was held out, as :func:`aggregate_counts` does.
    """
    rng = np.random.default_rng(seed)
    per = np.empty((len(ratios), truth.size))
    for i, s in enumerate(ratios):
        k = rng.binomial(runs, 1.0 - s, size=truth.size)
        per[i] = np.where(k > 0, rng.binomial(k, truth) / np.maximum(k, 1), np.nan)
    seen = np.isfinite(per).sum(axis=0)
    est = np.where(seen > 0, np.nansum(per, axis=0) / np.maximum(seen, 1), np.nan)
    agree = agreement(est, truth, lowest=LOWEST)
    return {"spearman": agree["spearman"], "overlap_lowest_600": agree["overlap_lowest"]}


# ----------------------------------------------------------------------------- initialisation check


def _mlp_factory(init: str):
    """784-512-256-10 ReLU nets: ``"torch"`` (nn.Linear's default, as StackedMLP) or ``"stax"`` (the
    authors' JAX stax defaults: truncated-normal Glorot weights, N(0, 0.01^2) biases)."""
    from torch import nn

    def build() -> nn.Module:
        net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 10))
        if init == "stax":
            for layer in net:
                if isinstance(layer, nn.Linear):
                    # jax glorot_normal: truncated at 2 std, std corrected to give variance 2 / (fan_in + fan_out)
                    std = math.sqrt(2.0 / (layer.in_features + layer.out_features)) / 0.8796256610342398
                    nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
                    nn.init.normal_(layer.bias, std=0.01)
        return net

    build.__qualname__ = f"mlp_{init}_init"
    return build


def init_check(dataset: Dataset, ratio: float, models: int, device: str) -> dict[str, Any]:
    """Held-out accuracy of ``models`` pairs trained with either initialisation on the same subsets and batch orders."""
    from cscore_lab.shards import ShardJob, ShardSpec, compute_shard

    recipe = get_preset("mnist-mlp").recipe
    acc = {}
    for init in ("torch", "stax"):
        shard = compute_shard(ShardJob(dataset, recipe, 0, device, _mlp_factory(init)), ShardSpec(ratio, 0, models))
        acc[init] = (shard.correct & shard.heldout).sum(axis=1) / shard.heldout.sum(axis=1)
        print(f"  init {init:>5}: held-out accuracy {np.round(acc[init], 4)} mean {acc[init].mean():.4f}", flush=True)
    diff = acc["stax"] - acc["torch"]
    se = float(diff.std(ddof=1) / math.sqrt(models)) if models > 1 else float("nan")
    return {"ratio": ratio, "pairs": models, "torch": float(acc["torch"].mean()), "stax": float(acc["stax"].mean()),
            "difference": float(diff.mean()), "se": se}


def _folder_precision(out: Path) -> str:
    """The precision of the recipe the run folder holds (folders from before the field: fp32)."""
    manifest = json.loads((out / "manifest.json").read_text())
    return manifest["identity"]["recipe"].get("precision", "fp32")


def _complete_prefix(by_run: dict[int, Any]) -> int:
    r = 0
    while r in by_run:
        r += 1
    return r


def markdown(rep: dict[str, Any]) -> str:
    lines = [
        "| runs per ratio | models | Spearman | Spearman, file order unmapped | lowest-600 overlap | mean abs. diff. "
        "| mean diff. | split-half | reliability (S-B) | predicted Spearman at 200 runs |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rep["rows"]:
        lines.append(
            f"| {row['runs']} | {row['models']} | {row['spearman']:.3f} | {row['spearman_raw_order']:+.3f} "
            f"| {row['overlap_lowest_600']:.3f} | {row['mad']:.4f} | {row['mean_difference']:+.4f} | {row['split_half']:.3f} "
            f"| {row['reliability_sb']:.3f} | {row['predicted_spearman_200']:.3f} |"
        )
    secs = ", ".join(f"{k}: {v:.1f}" for k, v in rep["seconds_per_model_by_ratio"].items())
    lines.append("")
    lines.append("")
    lines.append("Noise-only model (published scores as the truth, binomial held-out sampling): "
                 + ", ".join(f"R={m['runs']}: Spearman {m['spearman']:.3f} / overlap {m['overlap_lowest_600']:.3f}"
                             for m in rep["noise_model"]) + ".")
    level = ", ".join(f"{k}: {v:.4f}" for k, v in rep["heldout_accuracy_by_ratio"].items())
    lines.append(f"Held-out accuracy by ratio, pooled ({level}); mean {rep['heldout_accuracy_mean']:.4f} vs published "
                 f"mean {rep['published_mean']:.4f}.")
    lines.append(f"Precision: {rep.get('precision', 'fp32')}. "
                 f"Ratios: {', '.join(f'{r:g}' for r in rep['ratios'])}; {rep['complete_runs_per_ratio']} runs finished at every ratio. "
                 f"Seconds per model by ratio ({secs}); mean {rep['seconds_per_model_mean']:.1f} s.")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main


def parse_ratios(text: str) -> tuple[float, ...]:
    if text == "paper":
        return PAPER_RATIOS
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--ratios must be 'paper' or comma-separated numbers, got {text!r}") from None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with mnist/ and published/ (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/mnist-repro"), help="run folder; rerunning resumes (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=200, help="target runs per ratio (default: %(default)s, the paper's)")
    ap.add_argument("--ratios", type=parse_ratios, default=PAPER_RATIOS, help="'paper' (0.1..0.9) or a comma list")
    ap.add_argument("--step", type=int, default=2, help="runs per ratio added per stage = shard size (default: %(default)s)")
    ap.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                    help="the recipe's precision (default: %(default)s); use another --out per precision, since "
                         "a run folder holds one recipe")
    ap.add_argument("--budget-minutes", type=float, default=60.0, help="stop training after this many minutes (default: %(default)s)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--report-only", action="store_true", help="do not train; report what the run folder holds")
    ap.add_argument("--json", type=Path, default=None, help="write the report here (default: OUT/report.json)")
    ap.add_argument("--init-check", metavar="RATIO,PAIRS", default=None,
                    help="also train PAIRS models per initialisation (PyTorch default vs the authors' stax/Glorot) at "
                         "RATIO on the same subsets, and report the held-out accuracy difference")
    args = ap.parse_args(argv)
    if args.runs < 2 or args.step < 1:
        ap.error(f"--runs must be >= 2 and --step >= 1, got {args.runs} and {args.step}")

    mnist_dir, pub_dir = args.data / "mnist", args.data / "published"
    if not mnist_dir.is_dir() or not pub_dir.is_dir():
        print(f"skipped: {args.data} lacks mnist/ or published/ (pass --data)")
        return 0
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    dataset = load_mnist(mnist_dir)
    published = load_published("mnist", pub_dir, dataset)
    raw = np.load(pub_dir / "mnist-cscores.npy", allow_pickle=False)
    assert np.array_equal(raw[np.argsort(tfds_mnist_order())], published.scores)

    info: dict[str, Any] = {}
    if not args.report_only:
        print(f"training mnist-mlp ({args.precision}): up to {args.runs} runs x {len(args.ratios)} ratios, stages of {args.step}, "
              f"budget {args.budget_minutes:g} min, run folder {args.out}", flush=True)
        info = train(dataset, out=args.out, runs=args.runs, ratios=args.ratios, step=args.step,
                     device=args.device, budget_s=60.0 * args.budget_minutes, precision=args.precision)
    rep = report(dataset, published.scores, raw, args.out, args.ratios)
    rep.update(train=info, command=" ".join(sys.argv), precision=_folder_precision(args.out))
    if args.init_check:
        try:
            ratio_text, pairs_text = args.init_check.split(",")
            ratio, pairs = float(ratio_text), int(pairs_text)
        except ValueError:
            ap.error(f"--init-check must be RATIO,PAIRS such as 0.1,8; got {args.init_check!r}")
        print(f"initialisation check at ratio {ratio:g}, {pairs} pairs:", flush=True)
        rep["init_check"] = init_check(dataset, ratio, pairs, args.device)
        c = rep["init_check"]
        print(f"  stax - torch: {c['difference']:+.4f} +- {c['se']:.4f} (standard error)")
    path = args.json or args.out / "report.json"
    path.write_text(json.dumps(rep, indent=2))
    print(markdown(rep))
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
