"""The CNN path measured: ``cifar-cnn`` through ``StackedModules`` (``torch.func.vmap``, and the
per-model ``"loop"`` strategy it uses for CNNs) against a plain per-model loop, fp32 and bf16, with
and without channels-last, on CIFAR-shaped random data.

    python benchmarks/bench_cnn.py              # about 3 minutes on 2 cores
    python benchmarks/bench_cnn.py --quick      # a smoke run

Every variant trains the same number of SGD steps (the recipe's batch of 128) on one thread
(what one shard of the local backend gets), interleaved and repeated, best kept; the plain loop
is also timed on all threads, as a user would run it. Prints model-steps per second, the
projected models per second of the full recipe at ratio 0.5 (25,000 examples x 30 epochs plus
the evaluation on all 50,000), the arithmetic rate (2 x MACs of the convolutions and the head,
forward, input and weight gradients) and its share of the one-thread matmul rate of the same
precision, and the time of the evaluation pass (forward on 1,024 examples for every model).
"""

from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
from torch import nn

from cscore_lab.models import SmallCNN, StackedModules
from cscore_lab.recipes import get_preset
from cscore_lab.trainer import fast_bf16

from _common import cnn_flops_per_example, cpu_seconds, matmul_rate  # noqa: E402  (benchmarks/ is on sys.path)








def stacked_steps(x, y, m: int, steps: int, precision: str, strategy: str, recipe) -> tuple[float, float, float]:
    """(seconds per model-step, seconds per model per 1,024 evaluated examples, CPU seconds per model-step)
    for a StackedModules group of m."""
    group = StackedModules(lambda: SmallCNN(3, 10, recipe.hidden), list(range(m)), torch.device("cpu"),
                           precision=precision, strategy=strategy)
    gen = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, x.shape[0], (m, recipe.batch_size), generator=gen) for _ in range(steps + 1)]
    group.train_step(x[batches[0]], y[batches[0]], recipe.learning_rate, recipe.momentum, recipe.weight_decay)
    t, c = time.perf_counter(), cpu_seconds()
    for idx in batches[1:]:
        group.train_step(x[idx], y[idx], recipe.learning_rate, recipe.momentum, recipe.weight_decay)
    step, step_cpu = (time.perf_counter() - t) / (steps * m), (cpu_seconds() - c) / (steps * m)
    t = time.perf_counter()
    group.logits(x[:1024])
    return step, (time.perf_counter() - t) / m, step_cpu


def plain_steps(x, y, steps: int, precision: str, channels_last: bool, recipe, models: int = 1) -> tuple[float, float, float]:
    """The same for ``models`` plain nn.Module + torch.optim.SGD loops, one after the other."""
    low = precision == "bf16"
    step_total, eval_total, cpu_total = 0.0, 0.0, 0.0
    for seed in range(models):
        torch.manual_seed(seed)
        net = SmallCNN(3, 10, recipe.hidden)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.SGD(net.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum,
                              weight_decay=recipe.weight_decay)
        gen = torch.Generator().manual_seed(seed)
        batches = [torch.randint(0, x.shape[0], (recipe.batch_size,), generator=gen) for _ in range(steps + 1)]

        def step(idx, net=net, opt=opt):
            xb = x[idx]
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
                out = net(xb)
            nn.functional.cross_entropy(out.float(), y[idx]).backward()
            opt.step()

        step(batches[0])
        t, c = time.perf_counter(), cpu_seconds()
        for idx in batches[1:]:
            step(idx)
        step_total += time.perf_counter() - t
        cpu_total += cpu_seconds() - c
        xe = x[:1024].contiguous(memory_format=torch.channels_last) if channels_last else x[:1024]
        t = time.perf_counter()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=low):
            net(xe)
        eval_total += time.perf_counter() - t
    return step_total / (steps * models), eval_total / models, cpu_total / (steps * models)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--models", type=int, default=None, help="models per stacked group (default: the preset's shard size, 10)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per variant (default 4, quick 1)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    preset = get_preset("cifar-cnn")
    recipe = preset.recipe
    m = args.models or (2 if args.quick else preset.plan.shard_size)
    steps = args.steps or (1 if args.quick else 4)
    repeats = 1 if args.quick else args.repeats

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((2048, 3, 32, 32), dtype=np.float32))
    y = torch.from_numpy(rng.integers(0, 10, 2048))
    fast, why = fast_bf16(torch.device("cpu"))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, fast bf16: {fast} ({why}); load average {os.getloadavg()[0]:.2f}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rates = {"fp32": matmul_rate(dtype=torch.float32), "bf16": matmul_rate(dtype=torch.bfloat16)}
    print(f"one-thread matmul 2048^3: fp32 {rates['fp32']:.0f} GFLOP/s, bf16 {rates['bf16']:.0f} GFLOP/s")
    fwd, train = cnn_flops_per_example(recipe.hidden)
    n_train, n_eval = 25_000, 50_000
    steps_per_model = math.ceil(n_train / recipe.batch_size) * recipe.epochs

    variants = []
    for precision in ("fp32", "bf16"):
        variants.append((f"stacked x{m}, vmap", precision, False,
                         lambda p=precision: stacked_steps(x, y, m, steps, p, "vmap", recipe), 1))
        variants.append((f"stacked x{m}, loop", precision, True,
                         lambda p=precision: stacked_steps(x, y, m, steps, p, "loop", recipe), 1))
        for cl in (False, True):
            variants.append(("plain, 1 thread", precision, cl, lambda p=precision, c=cl: plain_steps(x, y, steps, p, c, recipe), 1))
    variants.append((f"plain, {threads} threads", "fp32", False, lambda: plain_steps(x, y, steps, "fp32", False, recipe), threads))
    variants.append((f"plain, {threads} threads", "bf16", True, lambda: plain_steps(x, y, steps, "bf16", True, recipe), threads))
    best: dict[int, tuple[float, float, float]] = {}
    for _ in range(repeats):
        for i, (_, _, _, fn, nthreads) in enumerate(variants):
            torch.set_num_threads(nthreads)
            s, e, c = fn()
            if i not in best or s < best[i][0]:
                best[i] = (s, e, c)
    torch.set_num_threads(threads)

    print(f"\n{'variant':<20} {'precision':<9} {'layout':<13} {'model-steps/s':>13} {'models/s (full)':>15} "
          f"{'GFLOP/s':>8} {'of matmul':>9} {'per CPU-s':>9} {'eval ms/1k':>10}")
    for i, (name, precision, cl, _, nthreads) in enumerate(variants):
        s, e, c = best[i]
        per_model = s * steps_per_model + e * n_eval / 1024
        gflops = train * recipe.batch_size / s / 1e9
        share = gflops / (rates[precision] * nthreads)
        print(f"{name:<20} {precision:<9} {'channels-last' if cl else 'contiguous':<13} {1 / s:>13.2f} {1 / per_model:>15.5f} "
              f"{gflops:>8.1f} {share:>9.0%} {train * recipe.batch_size / c / 1e9:>9.1f} {e * 1e3:>10.0f}")
    print(f"(SmallCNN 32-64-128 on 3x32x32: {train / 1e6:.1f} MFLOP per training example, {fwd / 1e6:.1f} forward; "
          f"full model = {steps_per_model} steps + evaluation on {n_eval:,}; 'of matmul' divides by the one-thread rate "
          f"of the same precision times the threads used;\n"
          f"'per CPU-s': GFLOP per CPU-second of the process, less sensitive to other processes on a shared machine)")


if __name__ == "__main__":
    main()
