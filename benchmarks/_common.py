"""What several benchmarks measure the same way: the machine's matrix-multiply rate, CPU time, model flops.

Imported by the benchmark scripts (run as ``python benchmarks/bench_x.py``, which puts this folder on
``sys.path``); never by the package or its tests.
"""

from __future__ import annotations

import math
import resource
import time
from typing import Sequence

import torch


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far (every thread)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def matmul_rate(n: int = 2048, dtype: torch.dtype = torch.float32, threads: int | None = None,
                repeats: int = 5) -> float:
    """Best GFLOP/s of an n x n x n torch matrix product on the CPU, with ``threads`` intra-op threads
    (default: torch's current setting)."""
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
        a @ b
        best = math.inf
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t)
    finally:
        torch.set_num_threads(before)
    return 2 * n**3 / best / 1e9


def cnn_flops_per_example(channels: Sequence[int] = (32, 64, 128), size: int = 32, in_channels: int = 3,
                          classes: int = 10) -> tuple[int, int]:
    """(forward, training) flops per example of ``SmallCNN``: 3x3 convolutions at halving resolutions, then
    the linear head; training = forward + weight gradients + input gradients (none for the first layer's input)."""
    fwd, first = 0, None
    c_in, hw = in_channels, size
    for c in channels:
        layer = 2 * c_in * 9 * c * hw * hw
        first = layer if first is None else first
        fwd += layer
        c_in, hw = c, hw // 2
    fwd += 2 * c_in * classes
    return fwd, 3 * fwd - first
