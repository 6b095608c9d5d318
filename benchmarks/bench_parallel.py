"""Two cores for the digits protocol: two worker threads (the local backend) against two processes, side by side.

    python benchmarks/bench_parallel.py [--precision fp32|bf16]

Runs the 9 x 200 digits-mlp protocol (fp32 unless asked, shards of 100) three ways in one run: one thread, the local
backend's two threads, and two processes each given half the ratios (their start-up, ~1-2 s of imports,
included). If the GIL were what keeps two threads from twice one thread's speed, the processes would be
faster; the efficiencies printed (speed over 2 x one thread's) say whether they are.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from cscore_lab.backends import LocalBackend
from cscore_lab.data import load_digits
from cscore_lab.holdout import estimate
from cscore_lab.recipes import PAPER_RATIOS, Plan, get_preset


def run(ratios, workers: int | None, precision: str) -> float:
    t = time.perf_counter()
    estimate(load_digits(), get_preset("digits-mlp").recipe.with_(precision=precision),
             Plan(ratios=tuple(ratios), runs=200, shard_size=100), device="cpu", backend=LocalBackend(workers=workers))
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--half", help=argparse.SUPPRESS)  # one of the two processes: its ratios
    args = parser.parse_args()
    if args.half:
        run([float(r) for r in args.half.split(",")], 1, args.precision)
        return
    run((0.1,), 1, args.precision)  # warm-up: imports, the bf16 kernel's compilation or cache load
    threads = run(PAPER_RATIOS, None, args.precision)
    one = run(PAPER_RATIOS, 1, args.precision)
    halves = ((0.9, 0.6, 0.5, 0.2, 0.1), (0.8, 0.7, 0.4, 0.3))  # training work 2.3 : 2.2 (it grows with the ratio)
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, __file__, "--precision", args.precision,
                               "--half", ",".join(map(str, h))]) for h in halves]
    for p in procs:
        p.wait()
    processes = time.perf_counter() - t
    print(f"digits 9x200 {args.precision}: one thread {one:.1f} s, two threads {threads:.1f} s "
          f"(efficiency {one / threads / 2:.0%}), two processes {processes:.1f} s (efficiency {one / processes / 2:.0%})")


if __name__ == "__main__":
    main()
