"""Benchmark of the top-k influence estimator (cscore_lab.influence).

One command prints the tables recorded in ``benchmarks/RESULTS.md``::

    python benchmarks/bench_influence.py            # MNIST-sized: 60k training x 10k evaluation, 9 x 16 models
    python benchmarks/bench_influence.py --quick    # small smoke run

Cases, each in a fresh Python process (so its peak resident memory is its own):

* **mnist**: random masks of MNIST's size (N = 60,000 training and N_eval = 10,000 evaluation
  examples, 9 subset ratios x 16 models): time (wall and process CPU) of
  ``InfluenceAccumulator.result`` and its peak memory, traced (``tracemalloc``: NumPy reports
  its allocations there) and resident (``ru_maxrss`` minus the resident size before the call),
  against :meth:`~cscore_lab.influence.InfluenceAccumulator.memory_bound`.
* **sweep**: the same for several N at fixed N_eval: the traced peak must stay within the fixed
  bound whatever N (it grows only by one copy of the bit-packed masks, N * R_total / 8 bytes).
* **dense**: a dense NumPy float64 implementation (one N x N_eval product per ratio, the pooled
  table, ``argpartition``) on a size that fits, against the estimator on the same masks: time,
  peak memory, and whether the top-k lists agree.
* **train**: influence among training examples (no evaluation set; j judged by the models that
  held it out), N x N targets.

Masks are random (``trained`` with probability = ratio; correctness 0.9), which costs the same as
real masks: the work is the count products and the kernel, not the data.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

MiB = 2**20


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def build(n: int, n_eval: int | None, ratios: int, runs: int, seed: int = 0, keep: bool = False):
    """An accumulator fed one shard per ratio of random masks (and the masks, for the dense reference)."""
    from cscore_lab.influence import InfluenceAccumulator

    grid = tuple(round((s + 1) / (ratios + 1), 6) for s in range(ratios))
    acc = InfluenceAccumulator(n, grid, n_eval=n_eval)
    rng = np.random.default_rng(seed)
    masks = []
    for r in grid:
        t = rng.random((runs, n), dtype=np.float32) < r
        if n_eval is None:
            acc.add(r, t, rng.random((runs, n), dtype=np.float32) < 0.9)
        else:
            e = rng.random((runs, n_eval), dtype=np.float32) < 0.9
            acc.add(r, t, eval_correct=e)
            if keep:
                masks.append((t, e))
    return acc, masks


def dense_topk(masks, k: int):
    """The plain way: a dense pooled N x N_eval table (float64, one product per ratio), then argpartition."""
    n, ne = masks[0][0].shape[1], masks[0][1].shape[1]
    total = np.zeros((n, ne))
    var = np.zeros((n, ne))
    cnt = np.zeros(n)
    for t, e in masks:
        t64, e64 = t.astype(np.float64), e.astype(np.float64)
        a = t64.T @ e64  # [N, N_eval]
        n1 = t64.sum(0)
        n0 = len(t) - n1
        ok = (n1 > 0) & (n0 > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            p1 = a / n1[:, None]
            p0 = (e64.sum(0)[None, :] - a) / n0[:, None]
        p1[~ok], p0[~ok] = 0, 0
        total += p1 - p0
        var += np.where(ok[:, None], p1 * (1 - p1) / np.maximum(n1, 1)[:, None] + p0 * (1 - p0) / np.maximum(n0, 1)[:, None], 0)
        cnt += ok
        del a, p1, p0
    value = np.where(cnt[:, None] > 0, total / np.maximum(cnt, 1)[:, None], -np.inf)
    stderr = np.sqrt(var) / np.maximum(cnt, 1)[:, None]
    part = np.argpartition(-value, k - 1, axis=0)[:k]  # [k, N_eval]
    cols = np.arange(ne)[None, :]
    order = np.lexsort((part, -value[part, cols]), axis=0)
    idx = part[order, cols]
    return idx.T, value[idx, cols].T, stderr[idx, cols].T


def measure(fn):
    """(result, wall s, CPU s, traced peak bytes, resident increase bytes) of one call of ``fn``."""
    before = rss_bytes()
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    resident = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    return out, wall, cpu, resident


def traced_peak(fn) -> int:
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def run_one(spec: dict) -> dict:
    """One case, in this process."""
    from cscore_lab.influence import InfluenceAccumulator

    # Compile (or load from Numba's cache) the kernels on a tiny problem first: not timed.
    warm = InfluenceAccumulator(64, (0.5,), n_eval=None if spec["target"] == "train" else 16)
    t = np.random.default_rng(0).random((4, 64)) < 0.5
    if spec["target"] == "train":
        warm.add(0.5, t, t)
        warm.result(np.zeros(64, int), k=2)
    else:
        warm.add(0.5, t, eval_correct=t[:, :16])
        warm.result(np.zeros(64, int), np.zeros(16, int), k=2)

    n, ne = spec["n"], spec["n_eval"]
    acc, masks = build(n, None if spec["target"] == "train" else ne, spec["ratios"], spec["runs"],
                       keep=bool(spec.get("dense")))
    n_t = n if spec["target"] == "train" else ne
    labels, eval_labels = np.zeros(n, int), (None if spec["target"] == "train" else np.zeros(ne, int))
    kw = {"k": spec["k"], "memory_budget": spec["budget"], "n_threads": spec["threads"]}
    res, wall, cpu, resident = measure(lambda: acc.result(labels, eval_labels, **kw))
    out = {**spec, "wall_s": wall, "cpu_s": cpu, "resident_bytes": resident, "masks_bytes": acc.nbytes,
           "bound_bytes": acc.memory_bound(k=spec["k"], memory_budget=spec["budget"])}
    out["traced_bytes"] = traced_peak(lambda: acc.result(labels, eval_labels, **kw))
    products = (2 if spec["target"] == "train" else 1) * 2.0 * n * n_t * acc.models
    out["gflops"] = products / wall / 1e9
    if spec.get("dense"):
        (idx, val, se), dwall, dcpu, dres = measure(lambda: dense_topk(masks, spec["k"]))
        out.update(dense_wall_s=dwall, dense_cpu_s=dcpu, dense_resident_bytes=dres,
                   dense_traced_bytes=traced_peak(lambda: dense_topk(masks, spec["k"])),
                   same_lists=float(np.mean((idx == res.top_index).all(axis=1))),
                   same_values=float(np.mean(np.isclose(val, res.top_value, rtol=0, atol=1e-12).all(axis=1))),
                   max_value_diff=float(np.abs(val - res.top_value).max()),
                   max_stderr_diff=float(np.abs(se - res.top_stderr)[idx == res.top_index].max()))
    return out


def spawn(spec: dict) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--one", json.dumps(spec)], capture_output=True, text=True,
                          check=False)
    if proc.returncode != 0:
        raise SystemExit(f"case {spec} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mb(x: float) -> str:
    return f"{x / MiB:.1f}"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    p.add_argument("--n-eval", type=int, default=10_000)
    p.add_argument("--ratios", type=int, default=9)
    p.add_argument("--runs", type=int, default=16, help="models per ratio")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--budget-mib", type=float, default=64)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--sweep", default="7500,15000,30000,60000", help="training-set sizes N of the memory sweep")
    p.add_argument("--dense-n", type=int, default=3000, help="N of the dense comparison")
    p.add_argument("--train-n", type=int, default=10_000, help="N of the training-targets case")
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(json.loads(args.one))))
        return
    if args.quick:
        args.n_eval, args.sweep, args.dense_n, args.train_n = 2000, "4000,8000", 1000, 2000
    base = {"n_eval": args.n_eval, "ratios": args.ratios, "runs": args.runs, "k": args.k,
                "budget": int(args.budget_mib * MiB), "threads": args.threads, "target": "eval"}
    sweep = [int(s) for s in args.sweep.split(",")]

    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{i['internal_api']} {i.get('architecture', '')}" for i in threadpool_info() if i["user_api"] == "blas")
    print(f"# bench_influence {datetime.datetime.now().isoformat(timespec='minutes')}  "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, "
          f"NumPy {np.__version__} ({blas})")
    print(f"# {args.ratios} ratios x {args.runs} models, k={args.k}, memory_budget {args.budget_mib:g} MiB, "
          f"{args.threads} threads\n")

    rows = [spawn({**base, "n": n}) for n in sweep]
    print("| N | N_eval | wall (s) | CPU (s) | GFLOP/s | traced peak (MiB) | resident (MiB) | bound (MiB) | masks (MiB) |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['n']:,} | {r['n_eval']:,} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['gflops']:.0f} | "
              f"{mb(r['traced_bytes'])} | {mb(r['resident_bytes'])} | {mb(r['bound_bytes'])} | {mb(r['masks_bytes'])} |")
    within = all(r["traced_bytes"] <= r["bound_bytes"] for r in rows)
    grow = (rows[-1]["traced_bytes"] - rows[0]["traced_bytes"]) / max(1, rows[-1]["masks_bytes"] - rows[0]["masks_bytes"])
    print(f"\ntraced peak within the bound: {within}; peak growth from N={sweep[0]:,} to N={sweep[-1]:,}: "
          f"{mb(rows[-1]['traced_bytes'] - rows[0]['traced_bytes'])} MiB = {grow:.2f} x the growth of the packed masks\n")

    d = spawn({**base, "n": args.dense_n, "dense": True})
    print("| N x N_eval | estimator (s) | dense NumPy (s) | estimator peak (MiB) | dense peak (MiB) | identical lists | identical values | max value diff | max stderr diff |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {d['n']:,} x {d['n_eval']:,} | {d['wall_s']:.2f} | {d['dense_wall_s']:.2f} | {mb(d['traced_bytes'])} | "
          f"{mb(d['dense_traced_bytes'])} | {100 * d['same_lists']:.2f}% | {100 * d['same_values']:.2f}% | "
          f"{d['max_value_diff']:.1e} | "
          f"{d['max_stderr_diff']:.1e} |")
    full = rows[-1]["n"]
    print(f"(lists that differ hold other training examples tied at the same values: the dense reference breaks ties by "
          f"argpartition, the estimator by the lower index; the stderr difference is over the entries that name the "
          f"same example. Dense at N={full:,} would need about {d['dense_traced_bytes'] * full / d['n'] / 2**30:.0f} GiB, "
          f"scaling its measured peak.)\n")

    t = spawn({**base, "n": args.train_n, "n_eval": args.train_n, "target": "train"})
    print("| training targets N x N | wall (s) | CPU (s) | GFLOP/s | traced peak (MiB) | bound (MiB) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    print(f"| {t['n']:,} x {t['n']:,} | {t['wall_s']:.2f} | {t['cpu_s']:.2f} | {t['gflops']:.0f} | "
          f"{mb(t['traced_bytes'])} | {mb(t['bound_bytes'])} |")


if __name__ == "__main__":
    main()
