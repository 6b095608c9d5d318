"""What the scores are for: pruning curves, curricula and active collection, with mean ± s.e. over seeds.

    python3 benchmarks/bench_uses.py pruning-digits                  # our C-scores, memorization, a proxy vs random
    python3 benchmarks/bench_uses.py pruning-digits --budget epochs  # the same with the recipe's epochs per kept set
    python3 benchmarks/bench_uses.py pruning-mnist --epochs 2        # the authors' published C-scores vs random and a proxy
    python3 benchmarks/bench_uses.py curriculum-digits               # six strategies at step budgets 100, 300, 1000
    python3 benchmarks/bench_uses.py curriculum-mnist --steps 200 1000
    python3 benchmarks/bench_uses.py collection-digits
    python3 benchmarks/bench_uses.py regions-mnist                   # where the low published scores lie

Every run keeps its models in ``--work`` (default ``/tmp/cscore-bench-uses``): rerunning resumes.

Digits: scikit-learn's 8x8 digits split once into 80% training (1,437) and 20% test (360, stratified,
seed 0); the scores are computed **on the training split only** (C-scores: 9 ratios x ``--runs``
models of digits-mlp; memorization from the same models; the learning-speed proxy
``cum_label_prob`` of one full-data model), so no test example influences which training examples
are kept. MNIST: the official 60,000 training images with the authors' published C-scores, the
official 10,000 test images, and the proxy ``cum_label_prob`` of one full-data mnist-mlp model
(the proxy that agrees best with the published scores in RESULTS.md's proxy table).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from cscore_lab.data import load_digits, load_mnist
from cscore_lab.recipes import Plan, get_preset
from cscore_lab.uses import (
    active_collection_experiment,
    curriculum_experiment,
    low_score_regions,
    pruning_experiment,
    split_indices,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- scores


def digits_split():
    ds = load_digits()
    train_idx, test_idx = split_indices(ds.labels, 0.2, 0)
    return ds.subset(train_idx, name="digits-train"), ds.subset(test_idx, name="digits-test")


def digits_scores(train, work: Path, runs: int) -> dict[str, np.ndarray]:
    """C-score, -memorization (same models) and cum_label_prob of the digits training split."""
    from cscore_lab.holdout import estimate
    from cscore_lab.memorization import MemorizationAccumulator
    from cscore_lab.proxies.suite import compute_proxies
    from cscore_lab.store import RunStore

    t0 = time.perf_counter()
    plan = Plan(runs=runs)
    folder = work / f"digits-train-cscores-r{runs}"
    cs = estimate(train, "digits-mlp", plan, out=folder)
    acc = MemorizationAccumulator(len(train), plan.ratios)
    for shard in RunStore(folder).iter_shards():
        acc.add_shard(shard)
    mem = acc.result(train.labels)
    t1 = time.perf_counter()
    proxies = compute_proxies(train, "digits-mlp", families=("dynamics",))
    say(f"digits scores: C-scores + memorization {t1 - t0:.1f} s ({9 * runs} models), proxy {time.perf_counter() - t1:.1f} s")
    return {"cscore": cs.scores, "neg_memorization": mem.regularity, "cum_label_prob": proxies["cum_label_prob"]}


def mnist_data():
    path = DATA / "mnist"
    if not path.is_dir():
        raise SystemExit(f"MNIST is not at {path}; this benchmark needs ../shared/data")
    return load_mnist(path), load_mnist(path, split="test")


def mnist_scores(train, work: Path, proxy: bool = True) -> dict[str, np.ndarray]:
    from cscore_lab.published import load_published

    cols = {"cscore": load_published("mnist", DATA / "published", train).scores}
    if proxy:
        cache = work / "mnist-cum_label_prob.npy"
        if cache.is_file():
            cols["cum_label_prob"] = np.load(cache, allow_pickle=False)
        else:
            from cscore_lab.proxies.suite import compute_proxies

            t0 = time.perf_counter()
            table = compute_proxies(train, "mnist-mlp", families=("dynamics",))
            cols["cum_label_prob"] = table["cum_label_prob"]
            work.mkdir(parents=True, exist_ok=True)
            np.save(cache, cols["cum_label_prob"], allow_pickle=False)
            say(f"mnist proxy cum_label_prob: {time.perf_counter() - t0:.1f} s")
    return cols


# --------------------------------------------------------------------------- tables


def cell(m: float, se: float) -> str:
    return f"{m:.4f} ± {se:.4f}" if np.isfinite(se) else f"{m:.4f}"


def pruning_table(res) -> str:
    table = res.table()
    curves = list(table.columns)
    lines = ["| kept | " + " | ".join(curves) + " |", "| ---: | " + " | ".join("---:" for _ in curves) + " |"]
    for fr, row in table.iterrows():
        k = int(res.kept[list(res.fractions).index(fr)])
        lines.append(f"| {fr:g} ({k}) | " + " | ".join(row[c] for c in curves) + " |")
    m, se = res.reference_accuracy()
    lines.append(f"\nwhole training set ({len(res.reference)} seeds): {cell(m, se)}")
    cmp = res.compare()
    best = cmp[cmp.keep != "random"].sort_values("diff_vs_random")
    lines.append("paired difference from random (within seed), largest and smallest: "
                 + "; ".join(f"{r.score}/{r.keep} at {r.fraction:g}: {r.diff_vs_random:+.4f} ± {r.diff_stderr:.4f}"
                             for r in list(best.iloc[[-1, -2, 0, 1]].itertuples())))
    return "\n".join(lines)


def curriculum_table(res) -> str:
    cmp = res.compare("random")
    lines = [f"steps {int(res.eval_steps[-1])}:", "", "| strategy | test accuracy | vs random (paired) |",
             "| --- | ---: | ---: |"]
    for r in cmp.itertuples():
        lines.append(f"| {r.strategy} | {cell(r.accuracy, r.stderr)} | {r.diff_vs_random:+.4f} ± {r.diff_stderr:.4f} |")
    return "\n".join(lines)


def collection_table(res) -> str:
    cmp = res.compare("random")
    adds = list(res.added)
    lines = ["| added (train size) | " + " | ".join(res.strategies) + " |",
             "| ---: | " + " | ".join("---:" for _ in res.strategies) + " |"]
    for j, a in enumerate(adds):
        cells = []
        for st in res.strategies:
            r = cmp[(cmp.strategy == st) & (cmp.added == a)].iloc[0]
            extra = "" if st == "random" else f" ({r.diff_vs_random:+.4f} ± {r.diff_stderr:.4f})"
            cells.append(cell(r.accuracy, r.stderr) + extra)
        lines.append(f"| {a} ({int(res.sizes[j])}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- commands


def cmd_pruning_digits(a) -> dict:
    train, test = digits_split()
    scores = digits_scores(train, a.work, a.runs)
    t0 = time.perf_counter()
    res = pruning_experiment(train, scores, FRACTIONS, recipe="digits-mlp", seeds=a.seeds, test=test,
                             budget=a.budget, balance=a.balance, progress=not a.quiet,
                             out=a.work / f"pruning-digits-{a.budget}{'-bal' if a.balance else ''}-s{a.seeds}-r{a.runs}")
    print(f"## pruning, digits (budget {a.budget}{', class-balanced' if a.balance else ''}; {a.seeds} seeds; "
          f"{time.perf_counter() - t0:.1f} s, "
          f"{res.meta['groups_trained']} groups trained, {res.meta['groups_resumed']} resumed)\n")
    print(pruning_table(res))
    return {"pruning": res.to_frame().to_dict("records"), "reference": res.reference_accuracy()}


def cmd_pruning_mnist(a) -> dict:
    train, test = mnist_data()
    scores = mnist_scores(train, a.work)
    recipe = get_preset("mnist-mlp").recipe.with_(epochs=a.epochs)
    fractions = tuple(a.fractions) if a.fractions else FRACTIONS
    t0 = time.perf_counter()
    res = pruning_experiment(train, scores, fractions, keep=("most_regular", "least_regular", "random"),
                             recipe=recipe, seeds=a.seeds, test=test, budget=a.budget, balance=a.balance,
                             out=a.work / f"pruning-mnist-{a.budget}{'-bal' if a.balance else ''}-e{a.epochs}-s{a.seeds}",
                             progress=not a.quiet)
    steps = sorted(set(res.meta["steps"].values()))
    print(f"## pruning, MNIST (mnist-mlp with {a.epochs} epochs' steps, budget {a.budget} = {steps} SGD steps; "
          f"{a.seeds} seeds; {time.perf_counter() - t0:.1f} s, {res.meta['groups_trained']} groups trained)\n")
    print(pruning_table(res))
    return {"pruning": res.to_frame().to_dict("records"), "reference": res.reference_accuracy()}


def cmd_curriculum_digits(a) -> dict:
    train, test = digits_split()
    scores = digits_scores(train, a.work, a.runs)["cscore"]
    out = {}
    for steps in a.steps or (100, 300, 1000):
        t0 = time.perf_counter()
        res = curriculum_experiment(train, {"cscore": scores}, "digits-mlp", steps=steps, seeds=a.seeds, test=test,
                                    pacing=a.pacing, group_size=6,
                                    out=a.work / f"curriculum-digits-{a.pacing}-t{steps}-s{a.seeds}-r{a.runs}",
                                    progress=not a.quiet)
        print(f"\n## curriculum, digits, C-score, {a.pacing} pacing ({a.seeds} seeds, {time.perf_counter() - t0:.1f} s)\n")
        print(curriculum_table(res))
        out[steps] = res.compare().to_dict("records")
    return out


def cmd_curriculum_mnist(a) -> dict:
    train, test = mnist_data()
    scores = mnist_scores(train, a.work, proxy=False)["cscore"]
    recipe = get_preset("mnist-mlp").recipe
    out = {}
    for steps in a.steps or (200, 1000):
        t0 = time.perf_counter()
        res = curriculum_experiment(train, {"cscore": scores}, recipe, steps=steps, eval_every=max(1, steps // 5),
                                    seeds=a.seeds, test=test, pacing=a.pacing, group_size=6,
                                    out=a.work / f"curriculum-mnist-{a.pacing}-t{steps}-s{a.seeds}", progress=not a.quiet)
        print(f"\n## curriculum, MNIST, published C-score, {a.pacing} pacing ({a.seeds} seeds, "
              f"{time.perf_counter() - t0:.1f} s)\n")
        print(curriculum_table(res))
        out[steps] = res.compare().to_dict("records")
    return out


def cmd_collection_digits(a) -> dict:
    train, test = digits_split()
    scores = digits_scores(train, a.work, a.runs)["cscore"]
    t0 = time.perf_counter()
    res = active_collection_experiment(train, {"cscore": scores}, start=100, add_per_round=100, rounds=5,
                                       seeds=a.seeds, test=test, budget=a.budget,
                                       out=a.work / f"collection-digits-{a.budget}-s{a.seeds}-r{a.runs}",
                                       progress=not a.quiet)
    print(f"## active collection, digits, C-score (budget {a.budget}; {a.seeds} seeds; "
          f"{time.perf_counter() - t0:.1f} s)\n")
    print(collection_table(res))
    return {"collection": res.compare().to_dict("records")}


def cmd_regions_mnist(a) -> dict:
    train, _ = mnist_data()
    cs = mnist_scores(train, a.work, proxy=False)["cscore"]
    t0 = time.perf_counter()
    table = low_score_regions({"cscore": cs}, train, threshold=0.5, clusters=a.clusters, lowest=5)
    frame = table.to_frame()
    print(f"## where the low published C-scores of MNIST lie (< 0.5; k-means with {a.clusters} clusters on pixels; "
          f"{time.perf_counter() - t0:.1f} s)\n")
    for kind in ("class", "cluster"):
        f = frame[frame.kind == kind].sort_values("share_below", ascending=False)
        head = f if kind == "class" else f.head(8)
        print(f"| {kind} | examples | below 0.5 | share below | share of all low | mean | majority (purity) |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
        for r in head.itertuples():
            print(f"| {r.name} | {r.examples} | {r.below} | {r.share_below:.3f} | {r.share_of_low:.3f} | "
                  f"{r.mean_score:.3f} | {r.majority} ({r.purity:.2f}) |")
        print()
    return {"regions": frame.drop(columns="lowest").to_dict("records")}


COMMANDS = {
    "pruning-digits": cmd_pruning_digits, "pruning-mnist": cmd_pruning_mnist,
    "curriculum-digits": cmd_curriculum_digits, "curriculum-mnist": cmd_curriculum_mnist,
    "collection-digits": cmd_collection_digits, "regions-mnist": cmd_regions_mnist,
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("command", choices=sorted(COMMANDS))
    p.add_argument("--seeds", type=int, default=None, help="models per setting (default 3 for pruning/collection, 5 for curricula)")
    p.add_argument("--runs", type=int, default=20, help="digits C-scores: models per subset ratio (default 20)")
    p.add_argument("--budget", choices=("steps", "epochs"), default="steps")
    p.add_argument("--balance", action="store_true", help="pruning: apply each rule within every class")
    p.add_argument("--epochs", type=int, default=2, help="MNIST pruning: the recipe's epochs (default 2; the paper's is 10)")
    p.add_argument("--fractions", type=float, nargs="*", help="MNIST pruning: kept fractions (default 0.1 ... 0.9)")
    p.add_argument("--steps", type=int, nargs="*", help="curricula: step budgets")
    p.add_argument("--pacing", default="linear", choices=("linear", "root", "step", "exponential"))
    p.add_argument("--clusters", type=int, default=20)
    p.add_argument("--work", type=Path, default=Path("/tmp/cscore-bench-uses"))
    p.add_argument("--json", type=Path, help="write the numbers here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    a = p.parse_args(argv)
    if a.seeds is None:
        a.seeds = 5 if a.command.startswith("curriculum") else 3
    a.work.mkdir(parents=True, exist_ok=True)
    result = COMMANDS[a.command](a)
    if a.json:
        a.json.write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
