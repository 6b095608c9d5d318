"""Training many models at once vs one at a time, fp32 and bf16, measured side by side in one run.

    python benchmarks/bench_trainer.py            # everything (about 5 minutes on 2 quiet cores)
    python benchmarks/bench_trainer.py --quick    # a smoke run
    python benchmarks/bench_trainer.py --only mnist --repeats 3
    python benchmarks/bench_trainer.py --only step                 # per core: step and evaluation vs the matmul rate
    python benchmarks/bench_trainer.py --only ratio --precision bf16 --mnist ../shared/data/mnist   # 200 models at 0.5

Prints the machine (CPU, fast-bf16 flags, load average before and after: the 2-core machines
these run on are shared, so compare the columns of one run, not runs), its float32 and bf16
matrix-multiply rates, and then for ``digits-mlp`` and for ``mnist-mlp`` on MNIST-shaped data:
models per second of the plain per-model loop (:func:`cscore_lab.trainer.train_one_at_a_time`:
nn.Module + torch.optim.SGD, all threads, as a user would write it) and of cscore_lab's stacked
trainer run as users run it (``estimate`` with the local backend: one single-threaded shard per
core), fp32 and bf16; their arithmetic rate as a share of the fp32 matmul rate (wall clock, the
target's definition) and per CPU-second against the one-thread matmul rate (less sensitive to
other processes); then the full 9 x 200 digits protocol in fp32 and bf16. ``--only ratio`` trains
``--runs`` mnist-mlp models (the full recipe, 10 epochs) at ``--ratio`` end to end as users run it and
projects the full 9 x 200 protocol: at ratio 0.5, the mean of the paper's ratios, 9 times its time is
exact for a cost linear in the ratio (training) plus a constant (evaluation on all N).

Targets (2-core CPU, issue 12): mnist-mlp fp32 >= 85% of the fp32 matmul rate; bf16 >= 2.5x the
fp32 trainer; digits protocol <= 10 s and >= 30x the plain loop.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from cscore_lab.data import from_arrays, load_digits, load_mnist
from cscore_lab.holdout import estimate
from cscore_lab.recipes import Plan, get_preset
from cscore_lab.shards import draw_subset

from _common import cpu_seconds, matmul_rate  # noqa: E402  (benchmarks/ is on sys.path)
from cscore_lab.trainer import (
    fast_bf16,
    model_seeds,
    prepare_inputs,
    torch_threads,
    train_one_at_a_time,
)




def load_average() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())




def mlp_flops_per_example(sizes: list[int]) -> int:
    """Forward 2P, weight gradients 2P, input gradients 2(P - first layer): per example per step."""
    weights = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    p = sum(weights)
    return 6 * p - 2 * weights[0]


def model_flops(ds, recipe, ratio: float) -> float:
    """Training steps of one model plus the forward pass over all N that held-out correctness needs."""
    sizes = [int(np.prod(ds.input_shape)), *recipe.hidden, ds.num_classes]
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    return mlp_flops_per_example(sizes) * int(ratio * len(ds)) * recipe.epochs + 2 * weights * len(ds)


def time_plain(ds, recipe, ratio: float, n_models: int, threads: int | None = None) -> tuple[float, float]:
    """(wall, CPU) seconds per model of the plain loop, each model trained and then evaluated on all N,
    with ``threads`` torch threads (default: all)."""
    if threads is not None:
        with torch_threads(threads):
            return time_plain(ds, recipe, ratio, n_models)
    x, y = prepare_inputs(ds, recipe, torch.device("cpu"))
    seeds = [model_seeds(0, ratio, r) for r in range(n_models)]
    subsets = [draw_subset(s.subset, len(ds), int(ratio * len(ds))) for s in seeds]
    t, c = time.perf_counter(), cpu_seconds()
    for s, sub in zip(seeds, subsets):
        net = train_one_at_a_time(x, y, sub, recipe, s, num_classes=ds.num_classes)
        with torch.no_grad():  # held-out correctness needs predictions on every example, as the stacked path makes
            (net(x).argmax(1) == y).numpy()
    return (time.perf_counter() - t) / n_models, (cpu_seconds() - c) / n_models


def time_stacked(ds, recipe, ratio: float, n_models: int) -> tuple[float, float]:
    """(wall, CPU) seconds per model for ``estimate`` with the local backend: one shard per core."""
    workers = os.cpu_count() or 1
    plan = Plan(ratios=(ratio,), runs=n_models, shard_size=max(1, math.ceil(n_models / workers)))
    t, c = time.perf_counter(), cpu_seconds()
    estimate(ds, recipe, plan, device="cpu")
    return (time.perf_counter() - t) / n_models, (cpu_seconds() - c) / n_models


def compare(ds, preset_name: str, ratio: float, n_plain: int, n_stacked: int, epochs: int | None,
            repeats: int, precisions: tuple[str, ...] = ("fp32", "bf16")) -> dict:
    """Plain loop, stacked fp32 and (in ``precisions``) stacked bf16, interleaved ``repeats`` times (best of each)."""
    recipe = get_preset(preset_name).recipe
    if epochs:
        recipe = recipe.with_(epochs=epochs)
    bf16 = recipe.with_(precision="bf16")
    time_stacked(ds, recipe.with_(epochs=1), ratio, 2)  # warm up: allocations, the Numba kernel
    if "bf16" in precisions:
        time_stacked(ds, bf16.with_(epochs=1), ratio, 2)
    variants = (("plain", lambda: time_plain(ds, recipe, ratio, n_plain)),
                ("plain-1t", lambda: time_plain(ds, recipe, ratio, n_plain, threads=1)),
                ("fp32", lambda: time_stacked(ds, recipe, ratio, n_stacked)),
                ("bf16", lambda: time_stacked(ds, bf16, ratio, n_stacked)))
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeats):
        for name, fn in variants:
            if name == "bf16" and name not in precisions:
                continue
            wall, cpu = fn()
            if name not in best or wall < best[name][0]:
                best[name] = (wall, cpu)
    return {"preset": preset_name, "ratio": ratio, "epochs": recipe.epochs, "flops": model_flops(ds, recipe, ratio),
            "n_plain": n_plain, "n_stacked": n_stacked, **{k: v for k, v in best.items()}}


def per_core(models: int, rounds: int, precisions: tuple[str, ...] = ("fp32", "bf16")) -> None:
    """One thread: GFLOP per CPU-second of a mnist-mlp training step and evaluation, fp32 and bf16, against
    the 2048^3 matmul of the same precision, interleaved ``rounds`` times (best of each)."""
    from cscore_lab.models import StackedMLP

    sizes, batch = [784, 512, 256, 10], 128
    p = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    step_flops = (6 * p - 2 * sizes[0] * sizes[1]) * models * batch
    gen = torch.Generator().manual_seed(0)
    x, y = torch.rand(60000, 784, generator=gen), torch.randint(0, 10, (60000,), generator=gen)
    idxs = [torch.randint(0, 60000, (models * batch,), generator=gen) for _ in range(4)]
    a, b = torch.randn(2048, 2048, generator=gen), torch.randn(2048, 2048, generator=gen)

    def best_cpu(fn, reps: int) -> float:
        best = math.inf
        for _ in range(reps):
            t = time.thread_time()
            fn()
            best = min(best, time.thread_time() - t)
        return best

    with torch_threads(1):
        groups = {pr: StackedMLP(sizes, list(range(models)), torch.device("cpu"), init="glorot-normal", precision=pr)
                  for pr in precisions}
        inputs = {"fp32": x, "bf16": x.to(torch.bfloat16)}
        operands = {"fp32": (a, b), "bf16": (a.to(torch.bfloat16), b.to(torch.bfloat16))}

        def steps(pr):
            for idx in idxs:
                groups[pr].train_step(inputs[pr].index_select(0, idx).view(models, batch, 784),
                                      y.index_select(0, idx).view(models, batch), 0.1, 0.9, 0.0)

        rate: dict[str, float] = {}
        for _ in range(rounds):
            for pr in precisions:
                got = {f"matmul {pr}": 2 * 2048**3 / best_cpu(lambda pr=pr: operands[pr][0] @ operands[pr][1], 3),
                       f"step {pr}": step_flops * len(idxs) / best_cpu(lambda pr=pr: steps(pr), 2),
                       f"eval {pr}": 2 * p * models * 4096 / best_cpu(lambda pr=pr: groups[pr].logits(x[:4096]), 2)}
                for k, v in got.items():
                    rate[k] = max(rate.get(k, 0.0), v / 1e9)
    print(f"\nper core (one thread, {models} mnist-mlp models, batch {batch}, best of {rounds}, GFLOP per CPU-second):")
    for pr in precisions:
        m = rate[f"matmul {pr}"]
        print(f"  {pr}: matmul {m:.1f}, training step {rate[f'step {pr}']:.1f} ({rate[f'step {pr}'] / m:.0%}), "
              f"evaluation {rate[f'eval {pr}']:.1f} ({rate[f'eval {pr}'] / m:.0%})")
    if "bf16" in precisions:
        print(f"  bf16 / fp32 training step: {rate['step bf16'] / rate['step fp32']:.2f}x")


def one_ratio(mnist_dir: Path | None, ratio: float, runs: int, precision: str) -> None:
    """``runs`` mnist-mlp models at ``ratio``, end to end (local backend, shards of the preset's 25), and the
    projection of the full protocol from it."""
    preset = get_preset("mnist-mlp")
    recipe = preset.recipe.with_(precision=precision)
    if mnist_dir is not None:
        ds = load_mnist(mnist_dir)
    else:
        rng = np.random.default_rng(0)
        ds = from_arrays(rng.integers(0, 256, (60000, 784)).astype(np.uint8), np.arange(60000) % 10, name="mnist-shaped")
    plan = Plan(ratios=(ratio,), runs=runs, shard_size=preset.plan.shard_size)
    print(f"\nmnist-mlp {precision}, {runs} models at ratio {ratio:g} on {ds.name} ({len(ds):,} examples), shards of "
          f"{plan.shard_size}, load average {load_average()}", flush=True)
    t, c = time.perf_counter(), cpu_seconds()
    cs = estimate(ds, recipe, plan, device="cpu")
    dt, dc = time.perf_counter() - t, cpu_seconds() - c
    flops = model_flops(ds, recipe, ratio) * runs
    print(f"  {dt:.0f} s wall ({dc:.0f} CPU-s), {runs / dt:.3f} models/s, {flops / dt / 1e9:.0f} GFLOP/s "
          f"({flops / dc / 1e9:.0f} per CPU-second); mean held-out score {np.nanmean(cs.scores):.4f}")
    if abs(ratio - 0.5) < 1e-9:
        print(f"  projected full protocol (9 ratios x {runs} runs = 9 x this): {9 * dt / 60:.1f} min wall at this load, "
              f"{9 * dc / 60:.1f} CPU-minutes ({9 * dc / 60 / (os.cpu_count() or 1):.1f} min on {os.cpu_count()} free cores)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--only", choices=("step", "digits", "mnist", "protocol", "ratio"), action="append",
                    help="run only these parts (repeatable; default: all)")
    ap.add_argument("--mnist-epochs", type=int, default=1, help="epochs per mnist-mlp model here (default 1; the recipe has 10)")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved repeats of each comparison, best kept (default 2)")
    ap.add_argument("--ratio", type=float, default=0.5, help="--only ratio: the subset ratio (default %(default)s)")
    ap.add_argument("--runs", type=int, default=200, help="--only ratio: models (default %(default)s)")
    ap.add_argument("--precision", choices=("fp32", "bf16"), default="bf16", help="--only ratio: precision (default %(default)s)")
    ap.add_argument("--slow-bf16", action="store_true",
                    help="time bf16 even on a CPU without fast bf16 (emulated there: several times slower than fp32)")
    ap.add_argument("--mnist", type=Path, default=None, help="--only ratio: MNIST IDX folder (default: MNIST-shaped random data)")
    args = ap.parse_args()
    parts = set(args.only or ("digits", "mnist", "protocol"))

    fast, why = fast_bf16(torch.device("cpu"))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}; "
          f"fast bf16: {fast} ({why})")
    print(f"load average at start: {load_average()}")
    precisions = ("fp32", "bf16") if fast or args.slow_bf16 else ("fp32",)
    if "bf16" not in precisions:
        print("bf16 rows skipped: this CPU has no fast bf16 (--slow-bf16 times them anyway)")
    n = 1024 if args.quick else 2048
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    rates = {}
    for pr in precisions:
        rates[pr] = matmul_rate(n, dtypes[pr], torch.get_num_threads())
        rates[f"{pr}_1"] = matmul_rate(n, dtypes[pr], 1)
    print(f"matmul {n}^3 (all threads; one thread): "
          + ", ".join(f"{pr} {rates[pr]:.0f}; {rates[pr + '_1']:.0f} GFLOP/s" for pr in precisions))

    if "step" in parts:
        per_core(models=12 if not args.quick else 4, rounds=5 if not args.quick else 1, precisions=precisions)
    rows = []
    if "digits" in parts:
        rows.append(compare(load_digits(), "digits-mlp", 0.5, 2 if args.quick else 10, 20 if args.quick else 100,
                            None, 1 if args.quick else args.repeats, precisions))
    if "mnist" in parts:
        rng = np.random.default_rng(0)
        n_mnist = 6000 if args.quick else 60000
        mnist_like = from_arrays(rng.integers(0, 256, (n_mnist, 784)).astype(np.uint8), np.arange(n_mnist) % 10,
                                 name="mnist-shaped")
        rows.append(compare(mnist_like, "mnist-mlp", 0.5, 1 if args.quick else 2, 4 if args.quick else 24,
                            args.mnist_epochs, 1 if args.quick else args.repeats, precisions))

    if rows:
        print()
        print(f"{'preset':<11} {'epochs':>6} {'variant':<8} {'models/s':>9} {'CPU s/model':>11} {'speed-up':>9} "
              f"{'GFLOP/s':>8} {'of fp32 matmul':>14} {'per CPU-s':>9} {'of 1-thread':>11}")
        for r in rows:
            plain_wall = r["plain"][0]
            for variant in ("plain", "plain-1t", *precisions):
                wall, cpu = r[variant]
                gflops, per_cpu = r["flops"] / wall / 1e9, r["flops"] / cpu / 1e9
                one = rates["bf16_1" if variant == "bf16" else "fp32_1"]
                print(f"{r['preset']:<11} {r['epochs']:>6} {variant:<8} {1 / wall:>9.2f} {cpu:>11.3f} {plain_wall / wall:>8.1f}x "
                      f"{gflops:>8.0f} {gflops / rates['fp32']:>14.0%} {per_cpu:>9.0f} {per_cpu / one:>11.0%}")
            against = f"per CPU-second against the one-thread plain loop: fp32 {r['plain-1t'][1] / r['fp32'][1]:.1f}x"
            if "bf16" in r:
                print(f"{'':<11} bf16 / fp32 stacked: {r['fp32'][0] / r['bf16'][0]:.2f}x wall, "
                      f"{r['fp32'][1] / r['bf16'][1]:.2f}x CPU time; {against}, bf16 {r['plain-1t'][1] / r['bf16'][1]:.1f}x")
            else:
                print(f"{'':<11} {against}")
        print("(ratio 0.5; plain: train_one_at_a_time, all threads (plain-1t: one thread); fp32/bf16: estimate() with the local backend, one "
              "single-threaded shard per core; every model is trained and then evaluated on all N in every column; "
              "'of 1-thread' compares GFLOP per CPU-second with the one-thread matmul rate of the same precision)")

    if "protocol" in parts:
        digits = load_digits()
        preset = get_preset("digits-mlp")
        plan = preset.plan if not args.quick else Plan(ratios=(0.1, 0.5, 0.9), runs=20, shard_size=10)
        print()
        for precision in precisions:
            t, c = time.perf_counter(), cpu_seconds()
            cs = estimate(digits, preset.recipe.with_(precision=precision), plan, device="cpu")
            dt, dc = time.perf_counter() - t, cpu_seconds() - c
            print(f"full digits protocol, {precision} ({len(plan.ratios)} ratios x {plan.runs} runs = {plan.total_runs} "
                  f"models, shards of {plan.shard_size}): {dt:.1f} s ({dc:.1f} CPU-s), {plan.total_runs / dt:.1f} models/s, "
                  f"mean C-score {np.nanmean(cs.scores):.3f}, reliability {cs.reliability:.3f}")
    if "ratio" in parts:
        one_ratio(args.mnist, args.ratio, args.runs, args.precision)
    print(f"\nload average at end: {load_average()}")


if __name__ == "__main__":
    main()
