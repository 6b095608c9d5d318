"""Training many models at once vs one at a time, measured side by side in one run.

    python benchmarks/bench_trainer.py            # everything (a few minutes on 2 cores)
    python benchmarks/bench_trainer.py --quick    # a smoke run

Prints, for `digits-mlp` and for `mnist-mlp` on MNIST-shaped data: models per second of a plain
per-model PyTorch loop (nn.Sequential + torch.optim.SGD, as a user would write it) and of
cscore_lab's stacked trainer, their ratio, the time of the full 9 ratios x 200 runs digits
protocol, and the stacked trainer's arithmetic rate as a share of this machine's float32
matrix-multiply rate (measured in the same run). Targets (2-core CPU): >= 10x on digits-mlp,
full digits protocol <= 30 s, >= 70% of the matmul rate on mnist-mlp.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
from torch import nn

from cscore_lab.data import from_arrays, load_digits
from cscore_lab.holdout import draw_subset, estimate
from cscore_lab.recipes import Plan, get_preset
from cscore_lab.trainer import model_seeds, prepare_inputs


def matmul_rate(n: int = 2048, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of an n x n x n torch matrix product."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def one_at_a_time(x, y, subsets, recipe, seeds, num_classes) -> float:
    """Seconds to train each model alone with a plain PyTorch loop."""
    t = time.perf_counter()
    for s, sub in zip(seeds, subsets):
        torch.manual_seed(s.init)
        sizes = [x.shape[1], *recipe.hidden, num_classes]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        net = nn.Sequential(*layers)
        opt = torch.optim.SGD(net.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum)
        g = torch.Generator().manual_seed(s.order)
        sub_t = torch.from_numpy(sub)
        for _ in range(recipe.epochs):
            order = sub_t[torch.randperm(len(sub_t), generator=g)]
            for k in range(0, len(order), recipe.batch_size):
                idx = order[k:k + recipe.batch_size]
                opt.zero_grad()
                nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
                opt.step()
        with torch.no_grad():  # held-out correctness needs predictions on every example, as the stacked path makes
            (net(x).argmax(1) == y).numpy()
    return time.perf_counter() - t


def stacked(ds, recipe, ratio: float, n_models: int) -> float:
    """Seconds for cscore_lab to train and evaluate ``n_models`` at ``ratio`` as users run it:
    ``estimate`` with the local backend (one shard per core, each single-threaded)."""
    workers = os.cpu_count() or 1
    plan = Plan(ratios=(ratio,), runs=n_models, shard_size=max(1, math.ceil(n_models / workers)))
    t = time.perf_counter()
    estimate(ds, recipe, plan, device="cpu")
    return time.perf_counter() - t


def mlp_flops_per_example(sizes: list[int]) -> int:
    """Forward 2P, weight gradients 2P, input gradients 2(P - first layer): per example per step."""
    weights = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    p = sum(weights)
    return 6 * p - 2 * weights[0]


def compare(ds, preset_name: str, ratio: float, n_single: int, n_stacked: int, epochs: int | None) -> dict:
    recipe = get_preset(preset_name).recipe
    if epochs:
        recipe = recipe.with_(epochs=epochs)
    x, y = prepare_inputs(ds, recipe, torch.device("cpu"))
    size = int(ratio * len(ds))
    seeds = [model_seeds(0, ratio, r) for r in range(n_single)]
    subsets = [draw_subset(s.subset, len(ds), size) for s in seeds]
    k = ds.num_classes
    # warm up both paths, then time them back to back so machine noise hits both alike
    stacked(ds, recipe.with_(epochs=1), ratio, 2)
    one_at_a_time(x, y, subsets[:1], recipe.with_(epochs=1), seeds[:1], k)
    t_single = one_at_a_time(x, y, subsets[:n_single], recipe, seeds[:n_single], k) / n_single
    t_stacked = stacked(ds, recipe, ratio, n_stacked) / n_stacked
    sizes = [int(np.prod(ds.input_shape)), *recipe.hidden, k]
    weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    # training steps plus the forward pass over all N examples that held-out correctness needs
    flops = mlp_flops_per_example(sizes) * size * recipe.epochs + 2 * weights * len(ds)
    return {
        "preset": preset_name, "ratio": ratio, "epochs": recipe.epochs, "single_models_per_s": 1 / t_single,
        "stacked_models_per_s": 1 / t_stacked, "speedup": t_single / t_stacked, "stacked_gflops": flops / t_stacked / 1e9,
        "models_single": n_single, "models_stacked": n_stacked,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    ap.add_argument("--skip-full", action="store_true", help="skip the full 9 x 200 digits protocol")
    ap.add_argument("--mnist-epochs", type=int, default=1, help="epochs per mnist-mlp model here (default 1; the recipe has 10)")
    args = ap.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rate = matmul_rate(1024 if args.quick else 2048)
    print(f"float32 matmul rate: {rate:.0f} GFLOP/s")

    digits = load_digits()
    rows = [compare(digits, "digits-mlp", 0.5, 2 if args.quick else 10, 20 if args.quick else 100, None)]

    rng = np.random.default_rng(0)
    n_mnist = 6000 if args.quick else 60000
    mnist_like = from_arrays(rng.integers(0, 256, (n_mnist, 784)).astype(np.uint8), np.arange(n_mnist) % 10, name="mnist-shaped")
    rows.append(compare(mnist_like, "mnist-mlp", 0.5, 1 if args.quick else 2, 2 if args.quick else 25, args.mnist_epochs))

    print()
    print(f"{'preset':<11} {'ratio':>5} {'epochs':>6} {'one-at-a-time':>14} {'stacked':>10} {'speed-up':>9} {'GFLOP/s':>8} {'of matmul':>9}")
    for r in rows:
        print(f"{r['preset']:<11} {r['ratio']:>5} {r['epochs']:>6} {r['single_models_per_s']:>11.2f}/s "
              f"{r['stacked_models_per_s']:>8.2f}/s {r['speedup']:>8.1f}x {r['stacked_gflops']:>8.0f} "
              f"{r['stacked_gflops'] / rate:>8.0%}")
    print("(models/s at the given ratio, each model trained and then evaluated on all N examples; "
          "speed-up = one-at-a-time time / stacked time per model; GFLOP/s counts training and evaluation)")

    if not args.skip_full:
        preset = get_preset("digits-mlp")
        plan = preset.plan if not args.quick else Plan(ratios=(0.1, 0.5, 0.9), runs=20, shard_size=10)
        t = time.perf_counter()
        cs = estimate(digits, preset.recipe, plan, device="cpu")
        dt = time.perf_counter() - t
        print(f"\nfull digits protocol ({len(plan.ratios)} ratios x {plan.runs} runs = {plan.total_runs} models): "
              f"{dt:.1f} s, {plan.total_runs / dt:.1f} models/s, mean C-score {np.nanmean(cs.scores):.3f}, "
              f"reliability {cs.reliability:.3f}")


if __name__ == "__main__":
    main()
