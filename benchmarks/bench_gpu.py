"""The paper's MNIST protocol and a cifar-cnn shard on one GPU, in fp32, tf32 and bf16.

    python benchmarks/bench_gpu.py                                  # MNIST-shaped random data, 9 x 200 models
    python benchmarks/bench_gpu.py --mnist ../shared/data/mnist     # the real training images
    python benchmarks/bench_gpu.py --runs 50 --cnn-epochs 3         # shorter

For each precision it times ``estimate`` of ``mnist-mlp`` (9 ratios x ``--runs`` models, shards of
``--shard-size`` models trained together) and of one ``cifar-cnn`` shard (``--cnn-models`` models at
ratio 0.5 on CIFAR-shaped random data), and prints models per second, the arithmetic rate and its
share of the GPU's matrix-multiply rate measured in the same run (and of the datasheet's dense peak
where the card is known). "fp32" is true float32 (TF32 off for matmuls and cuDNN), "tf32" the fp32
recipe with TF32 tensor-core matmuls and convolutions, "bf16" the recipe's ``precision="bf16"``.

On a machine without a CUDA GPU it says so and exits with status 0: there is nothing to measure
(``tests/test_trainer.py`` runs the same code paths on the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cscore_lab.data import Dataset, from_arrays, load_mnist  # noqa: E402
from cscore_lab.holdout import estimate  # noqa: E402
from cscore_lab.recipes import PAPER_RATIOS, Plan, get_preset  # noqa: E402

from _common import cnn_flops_per_example  # noqa: E402  (benchmarks/ is on sys.path)

VARIANTS = ("fp32", "tf32", "bf16")

#: Dense (no sparsity) datasheet peaks in TFLOP/s: fp32 (CUDA cores), tf32 and bf16 (tensor cores).
DATASHEET = {
    "H200": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100 80GB HBM3": {"fp32": 67.0, "tf32": 494.7, "bf16": 989.4},
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
    "L4": {"fp32": 30.3, "tf32": 60.0, "bf16": 121.0},
}


def no_gpu_reason() -> str | None:
    """Why this machine cannot run the benchmark, or None when it can."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no GPU"
    return None


@contextlib.contextmanager
def precision_flags(variant: str) -> Iterator[None]:
    """TF32 on for ``"tf32"``, off otherwise (PyTorch's default lets cuDNN use TF32 in float32 convolutions)."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    tf32 = variant == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, variant: str, n: int = 8192, repeats: int = 10) -> float:
    """Best TFLOP/s of an n x n x n product on ``device`` in ``variant``."""
    dtype = torch.bfloat16 if variant == "bf16" else torch.float32
    with precision_flags(variant):
        a = torch.randn(n, n, device=device).to(dtype)
        b = torch.randn(n, n, device=device).to(dtype)
        a @ b
        synchronize(device)
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            synchronize(device)
            best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e12


def mlp_model_flops(sizes: Sequence[int], train_examples: int, epochs: int, eval_examples: int) -> float:
    """Training (forward 2P, weight gradients 2P, input gradients 2(P - first layer) per example) plus
    the forward pass over every example that held-out correctness needs."""
    weights = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    p = sum(weights)
    return (6 * p - 2 * weights[0]) * train_examples * epochs + 2 * p * eval_examples


def cnn_model_flops(channels: Sequence[int], train_examples: int, epochs: int, eval_examples: int,
                    size: int = 32, in_channels: int = 3, classes: int = 10) -> float:
    """The same for SmallCNN (3x3 convolutions at halving resolutions, then the linear head)."""
    fwd, train = cnn_flops_per_example(channels, size, in_channels, classes)
    return train * train_examples * epochs + fwd * eval_examples


def timed_estimate(ds: Dataset, recipe, plan: Plan, device: torch.device) -> float:
    """Wall seconds of ``estimate`` (in memory), synchronised with the device at both ends."""
    synchronize(device)
    t = time.perf_counter()
    estimate(ds, recipe, plan, device=str(device))
    synchronize(device)
    return time.perf_counter() - t


def measure_protocol(ds: Dataset, variant: str, plan: Plan, device: torch.device, *, epochs: int | None = None) -> dict[str, Any]:
    """``mnist-mlp`` over ``plan`` in ``variant``: seconds, models/s and TFLOP/s."""
    recipe = get_preset("mnist-mlp").recipe.with_(precision="bf16" if variant == "bf16" else "fp32")
    if epochs:
        recipe = recipe.with_(epochs=epochs)
    sizes = [int(np.prod(ds.input_shape)), *recipe.hidden, ds.num_classes]
    flops = sum(mlp_model_flops(sizes, math.floor(r * len(ds)), recipe.epochs, len(ds)) for r in plan.ratios) * plan.runs
    with precision_flags(variant):
        seconds = timed_estimate(ds, recipe, plan, device)
    return {"what": "mnist-mlp protocol", "variant": variant, "models": plan.total_runs, "seconds": seconds,
            "models_per_s": plan.total_runs / seconds, "tflops": flops / seconds / 1e12}


def measure_cnn_shard(ds: Dataset, variant: str, models: int, device: torch.device, *, epochs: int | None = None,
                      ratio: float = 0.5) -> dict[str, Any]:
    """One ``cifar-cnn`` shard of ``models`` models at ``ratio`` in ``variant``."""
    recipe = get_preset("cifar-cnn").recipe.with_(precision="bf16" if variant == "bf16" else "fp32")
    if epochs:
        recipe = recipe.with_(epochs=epochs)
    plan = Plan(ratios=(ratio,), runs=models, shard_size=models)
    size = int(ds.input_shape[-1])
    flops = cnn_model_flops(recipe.hidden, math.floor(ratio * len(ds)), recipe.epochs, len(ds), size=size,
                            in_channels=int(ds.input_shape[0]), classes=ds.num_classes) * models
    with precision_flags(variant):
        seconds = timed_estimate(ds, recipe, plan, device)
    return {"what": f"cifar-cnn shard ({recipe.epochs} epochs)", "variant": variant, "models": models, "seconds": seconds,
            "models_per_s": models / seconds, "tflops": flops / seconds / 1e12}


def mnist_data(path: Path | None, n: int = 60_000) -> Dataset:
    if path is not None:
        return load_mnist(path)
    rng = np.random.default_rng(0)
    return from_arrays(rng.integers(0, 256, (n, 28, 28)).astype(np.uint8), np.arange(n) % 10, name="mnist-shaped")


def cifar_data(n: int = 50_000) -> Dataset:
    rng = np.random.default_rng(1)
    return from_arrays(rng.integers(0, 256, (n, 3, 32, 32)).astype(np.uint8), np.arange(n) % 10, name="cifar-shaped")


def datasheet_peak(name: str) -> dict[str, float] | None:
    for key, peaks in DATASHEET.items():
        if key in name:
            return peaks
    return None


def report(rows: Sequence[dict[str, Any]], rates: dict[str, float], peaks: dict[str, float] | None) -> None:
    print(f"\n{'what':<36} {'precision':<9} {'models':>6} {'seconds':>8} {'models/s':>9} {'TFLOP/s':>8} "
          f"{'of matmul':>9} {'of datasheet':>12}")
    for r in rows:
        of_sheet = f"{r['tflops'] / peaks[r['variant']]:>12.1%}" if peaks else f"{'-':>12}"
        print(f"{r['what']:<36} {r['variant']:<9} {r['models']:>6} {r['seconds']:>8.1f} {r['models_per_s']:>9.1f} "
              f"{r['tflops']:>8.1f} {r['tflops'] / rates[r['variant']]:>9.1%} {of_sheet}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda or cuda:N (default: %(default)s)")
    ap.add_argument("--mnist", type=Path, default=None, help="folder with the MNIST IDX files (default: random MNIST-shaped data)")
    ap.add_argument("--runs", type=int, default=200, help="mnist-mlp runs per ratio (default: %(default)s, the paper's)")
    ap.add_argument("--shard-size", type=int, default=200, help="models trained together (default: %(default)s)")
    ap.add_argument("--cnn-models", type=int, default=10, help="models in the cifar-cnn shard (default: the preset's 10)")
    ap.add_argument("--cnn-epochs", type=int, default=None, help="epochs of the cifar-cnn shard (default: the recipe's 30)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list of fp32, tf32, bf16 (default: all)")
    ap.add_argument("--cnn-strategy", choices=("vmap", "loop", "both"), default="both",
                    help="how StackedModules runs the CNN's M models on the GPU (default: time both)")
    ap.add_argument("--skip-cnn", action="store_true")
    args = ap.parse_args(argv)
    reason = no_gpu_reason()
    if reason is not None:
        print(f"bench_gpu: no CUDA GPU here ({reason}); nothing was measured. Run it on a machine with one.")
        return 0
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        ap.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    print(f"{name}, compute capability {major}.{minor}, {torch.cuda.get_device_properties(device).total_memory / 2**30:.0f} GiB; "
          f"torch {torch.__version__}, CUDA {torch.version.cuda}")
    rates = {v: matmul_rate(device, v) for v in variants}
    peaks = datasheet_peak(name)
    print("matmul 8192^3: " + ", ".join(f"{v} {rates[v]:.1f} TFLOP/s" for v in variants)
          + (f" (datasheet dense: {', '.join(f'{v} {peaks[v]:.0f}' for v in variants)})" if peaks else ""))

    mnist = mnist_data(args.mnist)
    warm = Plan(ratios=(0.5,), runs=2, shard_size=2)
    rows = []
    for v in variants:  # warm up cuBLAS/cuDNN and the allocator for each precision
        measure_protocol(mnist, v, warm, device, epochs=1)
    plan = Plan(ratios=PAPER_RATIOS, runs=args.runs, shard_size=args.shard_size)
    for v in variants:
        rows.append(measure_protocol(mnist, v, plan, device))
        print(f"  {rows[-1]['what']} {v}: {rows[-1]['seconds']:.1f} s", flush=True)
    if not args.skip_cnn:
        from cscore_lab import models

        cifar = cifar_data()
        strategies = ("vmap", "loop") if args.cnn_strategy == "both" else (args.cnn_strategy,)
        before = dict(models.AUTO_CONV_STRATEGY)
        try:
            for strategy in strategies:
                models.AUTO_CONV_STRATEGY["cuda"] = strategy
                for v in variants:
                    measure_cnn_shard(cifar, v, 2, device, epochs=1)
                    row = measure_cnn_shard(cifar, v, args.cnn_models, device, epochs=args.cnn_epochs)
                    row["what"] += f", {strategy}"
                    rows.append(row)
                    print(f"  {row['what']} {v}: {row['seconds']:.1f} s", flush=True)
        finally:
            models.AUTO_CONV_STRATEGY.update(before)
    report(rows, rates, peaks)
    print(f"(mnist-mlp: {len(plan.ratios)} ratios x {plan.runs} runs, shards of {plan.shard_size}, each model evaluated "
          f"on all {len(mnist):,}; cifar-cnn: one shard at ratio 0.5; 'of matmul' divides by the 8192^3 rate of the same precision)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
