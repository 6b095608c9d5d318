"""Local backend vs Ray backend on the same digits estimation, on this machine, in one run.

The protocol is the digits-mlp preset's (9 ratios x 200 runs, shards of 100 models) unless
``--runs``/``--ratios`` shrink it. Two comparisons, each over ``--rounds`` pairs timed back
to back (the order alternates between rounds, so load drifting in from other processes
does not always favour one side), each checking that both backends give identical scores:

* **cold**: ``RayBackend()`` with no address, as ``--backend ray`` runs it: the Ray time
  includes starting a local Ray instance (loopback only, its own temporary folder), the
  workers' first imports, the shards and the shutdown;
* **warm**: Ray is already running in this process and its workers have run an
  estimation before (a notebook after its first estimation, or a cluster), so the Ray
  time is the shards and their transport only.

The load average before and after each measurement is printed: on a shared machine it is
the main source of noise. The local backend runs one shard per CPU in threads of this
process; Ray runs one single-threaded worker process per CPU. Both train with one torch
thread per shard, which is why their scores are identical.

    python benchmarks/bench_backends.py                 # 9 x 200, one round of each
    python benchmarks/bench_backends.py --rounds 3      # medians of three ratios
    python benchmarks/bench_backends.py --runs 20       # a quick look
"""

from __future__ import annotations

import os

from cscore_lab.ray_backend import LOOPBACK_ENV

for _k, _v in LOOPBACK_ENV.items():  # before anything imports Ray: a local instance stays on loopback
    os.environ.setdefault(_k, _v)

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import replace  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cscore_lab.backends import LocalBackend  # noqa: E402
from cscore_lab.data import load_digits  # noqa: E402
from cscore_lab.holdout import Estimation  # noqa: E402
from cscore_lab.ray_backend import RayBackend  # noqa: E402
from cscore_lab.recipes import Plan, get_preset  # noqa: E402


class _TimedRayBackend(RayBackend):
    """RayBackend that records how long starting and stopping its local instance took."""

    start_s = 0.0
    stop_s = 0.0

    def _start_local(self, ray: Any, kwargs: dict[str, Any]) -> None:
        t0 = time.perf_counter()
        super()._start_local(ray, kwargs)
        self.start_s = time.perf_counter() - t0

    def _session(self, job):  # type: ignore[override]
        import contextlib

        inner = super()._session(job)

        @contextlib.contextmanager
        def timed():
            with inner as pair:
                yield pair
                self._t_stop = time.perf_counter()
            self.stop_s = time.perf_counter() - self._t_stop

        return timed()


def _measure(ds, recipe, plan, backend) -> dict[str, Any]:
    est = Estimation(ds, recipe, plan, device="cpu", backend=backend)
    first: list[float] = []
    t0 = time.perf_counter()
    est.add_listener(lambda e: first.append(time.perf_counter() - t0) if e.progress.done_runs and not first else None)
    load0 = os.getloadavg()[0]
    cs = est.run()
    wall = time.perf_counter() - t0
    shard_s = sum(r.seconds for r in est._results.values())
    row = {"wall_s": round(wall, 2), "first_shard_s": round(first[0], 2) if first else None,
           "shard_compute_s": round(shard_s, 2), "load": [round(load0, 2), round(os.getloadavg()[0], 2)]}
    if isinstance(backend, _TimedRayBackend):
        row.update(ray_start_s=round(backend.start_s, 2), ray_stop_s=round(backend.stop_s, 2))
    return {"row": row, "scores": cs.scores}


def _pairs(name: str, rounds: int, local: Callable[[], dict], ray: Callable[[], dict]) -> list[dict]:
    rows = []
    for i in range(rounds):
        order = [("local", local), ("ray", ray)] if i % 2 == 0 else [("ray", ray), ("local", local)]
        got = {}
        for which, fn in order:
            got[which] = fn()
            r = got[which]["row"]
            extra = (f", Ray start {r['ray_start_s']:.1f} s, stop {r['ray_stop_s']:.1f} s" if "ray_start_s" in r else "")
            print(f"  {name} round {i + 1} {which:5s} {r['wall_s']:7.1f} s  (first shard at {r['first_shard_s']:.1f} s, "
                  f"shard compute {r['shard_compute_s']:.1f} s{extra}; load {r['load'][0]:.1f} -> {r['load'][1]:.1f})",
                  flush=True)
        same = bool(np.array_equal(got["local"]["scores"], got["ray"]["scores"], equal_nan=True))
        ratio = got["ray"]["row"]["wall_s"] / got["local"]["row"]["wall_s"]
        print(f"  {name} round {i + 1}: ray/local = {ratio:.2f}, identical scores: {same}", flush=True)
        rows.append({"round": i + 1, "order": [w for w, _ in order], "local": got["local"]["row"],
                     "ray": got["ray"]["row"], "ratio": round(ratio, 3), "identical_scores": same})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=None, help="models per ratio (default: the preset's, 200)")
    ap.add_argument("--ratios", type=float, nargs="+", default=None, help="subset ratios (default: the preset's 9)")
    ap.add_argument("--shard-size", type=int, default=None, help="models per shard (default: the preset's, 100)")
    ap.add_argument("--rounds", type=int, default=1, help="local/Ray pairs per comparison (default 1)")
    ap.add_argument("--only", choices=["cold", "warm"], default=None, help="run one comparison only")
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the measurements here")
    args = ap.parse_args(argv)

    preset = get_preset("digits-mlp")
    changes = {k: v for k, v in (("runs", args.runs), ("shard_size", args.shard_size),
                                 ("ratios", args.ratios and tuple(args.ratios))) if v}
    plan = replace(preset.plan, **changes)
    recipe = preset.recipe
    ds = load_digits()
    tmp = tempfile.mkdtemp(prefix="cscray-bench-", dir="/tmp")
    print(f"digits-mlp on {len(ds)} digits: {len(plan.ratios)} ratios x {plan.runs} runs, shards of {plan.shard_size}; "
          f"{os.cpu_count()} CPUs, torch {torch.__version__}; local: {LocalBackend()!r} (threads, one torch thread "
          f"each), Ray: one single-threaded worker process per CPU", flush=True)
    summary: dict[str, Any] = {"protocol": plan.to_dict(), "cpus": os.cpu_count()}

    def local() -> dict:
        return _measure(ds, recipe, plan, LocalBackend())

    try:
        if args.only in (None, "cold"):
            counter = iter(range(10**6))

            def cold() -> dict:
                return _measure(ds, recipe, plan, _TimedRayBackend(_temp_dir=os.path.join(tmp, f"cold{next(counter)}")))

            summary["cold"] = _pairs("cold", args.rounds, local, cold)
        if args.only in (None, "warm"):
            with RayBackend(_temp_dir=os.path.join(tmp, "warm")).session():
                # warm the workers: they import torch and cscore_lab once, as in any session after its first run
                _measure(ds, recipe, Plan(ratios=(0.5,), runs=4, shard_size=1), RayBackend())

                def warm() -> dict:
                    return _measure(ds, recipe, plan, RayBackend())

                summary["warm"] = _pairs("warm", args.rounds, local, warm)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ok = True
    for name in ("cold", "warm"):
        if name in summary:
            ratios = [r["ratio"] for r in summary[name]]
            summary[f"{name}_median_ratio"] = round(statistics.median(ratios), 3)
            same = all(r["identical_scores"] for r in summary[name])
            ok &= same
            print(f"{name}: median ray/local over {len(ratios)} round(s) = {statistics.median(ratios):.2f} "
                  f"(target <= 1.3); identical scores in every round: {same}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(summary, fh, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
