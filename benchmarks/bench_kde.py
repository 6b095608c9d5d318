"""Benchmark of the kernel density proxies (cscore_lab.proxies.kde).

One command prints one table::

    python benchmarks/bench_kde.py                 # digits, 20k x 784, 60k x 784
    python benchmarks/bench_kde.py --quick         # fast smoke run (digits, 5k)
    python benchmarks/bench_kde.py --sizes digits,20k

For each case: our ``kde_scores`` time (bandwidth "median" included), a plain
NumPy float64 brute force (query blocks x all rows, on a sample of query rows,
extrapolated), scikit-learn ``KernelDensity`` (``score_samples`` on a sample of
queries, extrapolated, plus the fit), the speed-ups, and our rate on the
arithmetic actually done (``2 d`` flops per computed pair; the pairs computed
are those of the upper triangle of tiles, diagonal tiles included) as a
fraction of the machine's measured float32 matrix-product rate.  The 784-wide
cases use the real MNIST training images / 255 when the IDX files exist
(``--mnist``), otherwise uniform random float32 data with random labels.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from threadpoolctl import threadpool_info, threadpool_limits  # noqa: E402

from cscore_lab.proxies import kde as kde_mod  # noqa: E402
from cscore_lab.proxies.kde import kde_scores  # noqa: E402

CASES = {
    # name: (N, d, source, brute-force query rows, sklearn query rows, repeats)
    "digits": (1797, 64, "digits", None, None, 5),
    "5k": (5000, 784, "mnist", 1000, 50, 1),
    "20k": (20000, 784, "mnist", 2000, 100, 1),
    "60k": (60000, 784, "mnist", 1000, 40, 1),
}


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: magic, big-endian dims, then uint8 data."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:  # 0x08: unsigned byte data
        raise ValueError(f"{path}: not an unsigned-byte IDX file (magic {magic:#x})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    return data.reshape(dims)


def load_case(name: str, mnist_dir: Path, rng: np.random.Generator):
    n, d, source, *_ = CASES[name]
    if source == "digits":
        from sklearn.datasets import load_digits

        ds = load_digits()
        return ds.data.astype(np.float32), ds.target.astype(np.int64), "sklearn digits"
    images = mnist_dir / "train-images-idx3-ubyte.gz"
    labels = mnist_dir / "train-labels-idx1-ubyte.gz"
    if images.exists() and labels.exists():
        x = read_idx(images).reshape(-1, 784)[:n].astype(np.float32) / np.float32(255.0)
        y = read_idx(labels)[:n].astype(np.int64)
        return np.ascontiguousarray(x), y, f"MNIST train[:{n}] / 255"
    x = rng.random((n, d), dtype=np.float32)
    y = rng.integers(0, 10, size=n)
    return x, y, "uniform random float32, 10 random labels"


def matmul_rate(size: int, repeats: int, threads: int | None) -> tuple[float, float]:
    """Best float32 NumPy matrix-product rate (``size``^3) in GFLOP/s, per
    wall-clock second and per CPU second of this process."""
    rng = np.random.default_rng(0)
    a = rng.random((size, size), dtype=np.float32)
    b = rng.random((size, size), dtype=np.float32)
    out = np.empty((size, size), dtype=np.float32)
    best = best_cpu = math.inf
    with threadpool_limits(threads, user_api="blas"):
        np.matmul(a, b, out=out)
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            np.matmul(a, b, out=out)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
    flops = 2.0 * size**3
    return flops / best / 1e9, flops / best_cpu / 1e9


def pairs_computed(n: int, tile: int) -> int:
    """Pairs whose distances are computed: all tile pairs a <= b."""
    sizes = [min(tile, n - s) for s in range(0, n, tile)]
    return sum(sa * sb for ia, sa in enumerate(sizes) for sb in sizes[ia:])


def brute_force_f64(x: np.ndarray, y: np.ndarray, h: float, queries: np.ndarray, block: int = 250):
    """float64 density and same-label sums for ``queries`` (j != i, / N).

    Query block x all rows products (a general product, not X @ X.T: the
    float64 syrk path crashed with 2 OpenBLAS threads at N >= 16000).
    """
    xf = x.astype(np.float64)
    sq = np.einsum("ij,ij->i", xf, xf)
    n = len(xf)
    dens = np.empty(len(queries))
    same = np.empty(len(queries))
    for s in range(0, len(queries), block):
        q = queries[s : s + block]
        d2 = sq[q, None] + sq[None, :] - 2.0 * (xf[q] @ xf.T)
        np.maximum(d2, 0.0, out=d2)
        k = np.exp(-d2 / (h * h))
        k[np.arange(len(q)), q] = 0.0
        dens[s : s + block] = k.sum(axis=1) / n
        same[s : s + block] = np.where(y[None, :] == y[q, None], k, 0.0).sum(axis=1) / n
    return dens, same


def sklearn_time(x: np.ndarray, h: float, queries: np.ndarray):
    from sklearn.neighbors import KernelDensity

    xf = x.astype(np.float64)
    t0 = time.perf_counter()
    kd = KernelDensity(kernel="gaussian", bandwidth=h / math.sqrt(2.0)).fit(xf)
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    log_p = kd.score_samples(xf[queries])
    t_score = time.perf_counter() - t0
    return t_fit, t_score, log_p


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="fast smoke run: digits and 5k x 784")
    ap.add_argument("--sizes", default=None, help=f"comma list of cases from {list(CASES)}")
    ap.add_argument("--mnist", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "mnist",
                    help="folder with train-images-idx3-ubyte.gz (default: ../shared/data/mnist)")
    ap.add_argument("--tile", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=None, help="kde_scores n_threads (default: cpu count)")
    ap.add_argument("--no-sklearn", action="store_true", help="skip scikit-learn")
    args = ap.parse_args(argv)

    if args.sizes:
        names = [s.strip() for s in args.sizes.split(",") if s.strip()]
        unknown = [s for s in names if s not in CASES]
        if unknown:
            ap.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    else:
        names = ["digits", "5k"] if args.quick else ["digits", "20k", "60k"]

    rng = np.random.default_rng(0)
    mm = 2048 if args.quick else 4096
    blas = ", ".join(f"{i['internal_api']} {i.get('version')} ({i.get('architecture')}, "
                     f"{i['num_threads']} threads)" for i in threadpool_info() if i["user_api"] == "blas")
    print(f"# bench_kde  {datetime.datetime.now().isoformat(timespec='seconds')}")
    print(f"command: python benchmarks/bench_kde.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}; BLAS: {blas}")
    rate_all, _ = matmul_rate(mm, 3, None)
    rate_one, rate_one_cpu = matmul_rate(mm, 3, 1)
    print(f"float32 matmul {mm}^3 (NumPy, best of 3): {rate_all:.0f} GFLOP/s all threads, "
          f"{rate_one:.0f} GFLOP/s 1 thread ({rate_one_cpu:.0f} per CPU second)")

    t0 = time.perf_counter()
    kde_scores(rng.random((300, 8)), rng.integers(0, 3, 300), tile=64)
    t_warm = time.perf_counter() - t0
    stats = kde_mod._accumulate_tile.stats
    how = "kernels loaded from the Numba cache" if stats.cache_hits else "kernels compiled"
    # A fresh compile of the tile kernel, bypassing the on-disk cache.
    from numba import njit

    t0 = time.perf_counter()
    for disp in (kde_mod._accumulate_tile,):
        fresh = njit(nogil=True, fastmath=disp.targetoptions.get("fastmath", False))(disp.py_func)
        for sig in disp.signatures:
            fresh.compile(sig)
    t_compile = time.perf_counter() - t0
    print(f"Numba: first call {t_warm:.2f} s ({how}); a fresh compile without cache takes {t_compile:.2f} s")

    rows = []
    for name in names:
        n, d, _, bf_q, sk_q, reps = CASES[name]
        if args.quick:
            bf_q = None if bf_q is None else min(bf_q, 500)
            sk_q = None if sk_q is None else min(sk_q, 20)
        x, y, source = load_case(name, args.mnist, rng)
        n, d = x.shape
        print(f"\n[{name}] N={n} d={d}: {source}", flush=True)

        best = math.inf
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            res = kde_scores(x, y, tile=args.tile, n_threads=args.threads)
            if time.perf_counter() - t0 < best:
                best, cpu = time.perf_counter() - t0, time.process_time() - c0
        h = res.bandwidth
        t0 = time.perf_counter()
        kde_mod.select_bandwidth(x)
        t_bw = time.perf_counter() - t0
        flops = 2.0 * d * pairs_computed(n, args.tile)
        gflops = flops / best / 1e9
        print(f"  ours: {best:.3f} s wall, {cpu:.2f} s CPU (median bandwidth h={h:.4g}: {t_bw:.3f} s of it), "
              f"{gflops:.0f} GFLOP/s = {gflops / rate_all:.0%} of matmul rate; per CPU second "
              f"{flops / cpu / 1e9:.0f} GFLOP/s = {flops / cpu / 1e9 / rate_one_cpu:.0%} of 1-thread matmul",
              flush=True)

        queries = np.arange(n) if bf_q is None or bf_q >= n else np.sort(rng.choice(n, bf_q, replace=False))
        t0 = time.perf_counter()
        bd, bs = brute_force_f64(x, y, h, queries)
        t_bf = (time.perf_counter() - t0) * n / len(queries)
        err = max(np.max(np.abs(res.density[queries] - bd) / np.maximum(bd, 1e-300)),
                  np.max(np.abs(res.same_label[queries] - bs) / np.maximum(bs, 1e-300)))
        print(f"  NumPy float64 brute force: {t_bf:.2f} s ({len(queries)} queries"
              f"{', extrapolated' if len(queries) < n else ''}); max rel. difference {err:.1e}", flush=True)

        t_sk = math.nan
        if not args.no_sklearn:
            sq_idx = np.arange(n) if sk_q is None or sk_q >= n else np.sort(rng.choice(n, sk_q, replace=False))
            t_fit, t_score, log_p = sklearn_time(x, h, sq_idx)
            t_sk = t_fit + t_score * n / len(sq_idx)
            sigma2 = h * h / 2.0
            sk_dens = np.exp(log_p + 0.5 * d * np.log(2 * np.pi * sigma2)) - 1.0 / n
            sk_err = np.max(np.abs(res.density[sq_idx] - sk_dens) / np.maximum(res.density[sq_idx], 1e-300))
            print(f"  scikit-learn KernelDensity: {t_sk:.1f} s (fit {t_fit:.2f} s + {len(sq_idx)} queries "
                  f"{t_score:.2f} s{' extrapolated' if len(sq_idx) < n else ''}); "
                  f"density rel. difference {sk_err:.1e}", flush=True)
        rows.append((name, n, d, best, cpu, t_bf, t_sk, gflops, gflops / rate_all))

    print("\n| case | N | d | ours (s) | ours CPU (s) | NumPy f64 brute (s) | sklearn KDE (s) | vs brute "
          "| vs sklearn | GFLOP/s | of matmul rate |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, n, d, ours, cpu, bf, sk, gf, frac in rows:
        sk_s = "—" if math.isnan(sk) else f"{sk:.1f}"
        vs_sk = "—" if math.isnan(sk) else f"{sk / ours:.0f}×"
        print(f"| {name} | {n} | {d} | {ours:.3f} | {cpu:.2f} | {bf:.2f} | {sk_s} | {bf / ours:.1f}× | {vs_sk} "
              f"| {gf:.0f} | {frac:.0%} |")
    print(f"\nmatmul rate used for the fraction: {rate_all:.0f} GFLOP/s (float32 {mm}^3, all threads); "
          f"tile={args.tile}, threads={args.threads or os.cpu_count()}; "
          f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
