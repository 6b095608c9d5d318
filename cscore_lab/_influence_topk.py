"""The top-k influence computation behind :class:`cscore_lab.influence.InfluenceAccumulator`.

Tiles of the bit-packed subset masks and correctness are multiplied into exact integer counts;
Numba kernels pool them over ratios in float64 and keep a running top-k per target; the kept
pairs' values and standard errors are then recomputed exactly. Memory stays within a fixed
budget whatever N (see ``memory_bound``). Private: the accumulator validates, this computes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from .memorization import _pool


_MAX_COLS = 512  # target columns per block
_MAX_ROWS = 1024  # training rows per tile
_TILE_BYTES = 2 * 2**20  # a worker's count tiles stay cache-sized: 1-8 MiB measured within 20%, 2 MiB best
_STATS_BYTES = 16 * 2**20  # chunks of the exact recomputation: large enough to vectorise, no larger


# ---------------------------------------------------------------------------------------- kernels
@njit(nogil=True, cache=True, inline="always")
def _insert(topv, topi, j, v, idx):
    """Insert (v, idx) into row j of the descending lists, after any equal value (ties keep the lower index)."""
    p = topv.shape[1] - 1
    while p > 0 and topv[j, p - 1] < v:
        topv[j, p] = topv[j, p - 1]
        topi[j, p] = topi[j, p - 1]
        p -= 1
    topv[j, p] = v
    topi[j, p] = idx


@njit(nogil=True, cache=True)
def _select_eval(a_counts, w_sum, w_out, inv_cnt, e_col, row0, acc, topv, topi):
    """Pool [S, c, r] count tiles (targets are evaluation examples) and merge into the top-k lists.

    ``a_counts[s, j, i]``: models of ratio s with i in and right on j; ``e_col[s, j]``: models of
    ratio s right on j. Per (ratio, row) weights: ``w_sum = 1/n_in + 1/n_out``, ``w_out = 1/n_out``
    (both 0 where the ratio is not pooled) and ``inv_cnt = 1/S_valid`` (0: the row has no pooled
    ratio), so ``infl = inv_cnt * sum_s (a * w_sum - e * w_out)``. ``acc``: [r] scratch.
    """
    n_ratios, c, r = a_counts.shape
    k = topv.shape[1]
    for j in range(c):
        for i in range(r):
            acc[i] = 0.0
        for s in range(n_ratios):
            e = np.float64(e_col[s, j])
            for i in range(r):
                acc[i] += np.float64(a_counts[s, j, i]) * w_sum[s, i] - e * w_out[s, i]
        kth = topv[j, k - 1]
        for i in range(r):
            if inv_cnt[i] > 0:
                v = acc[i] * inv_cnt[i]
                if v > kth:
                    _insert(topv, topi, j, v, row0 + i)
                    kth = topv[j, k - 1]


@njit(nogil=True, cache=True)
def _eval_weights(x, lo_hi, floor, w_sum, w_out, inv_cnt):
    """The per (ratio, row) weights of :func:`_select_eval` from the unpacked mask tile ``x`` [R, r]
    (``lo_hi`` [S, 2]: each ratio's model rows), written into ``w_sum``/``w_out`` [S, r] and ``inv_cnt`` [r]."""
    r = x.shape[1]
    for i in range(r):
        inv_cnt[i] = 0.0
    for s in range(lo_hi.shape[0]):
        lo, hi = lo_hi[s, 0], lo_hi[s, 1]
        for i in range(r):
            w_sum[s, i] = 0.0
        for m in range(lo, hi):
            for i in range(r):
                w_sum[s, i] += x[m, i]
        for i in range(r):
            n1 = w_sum[s, i]
            n0 = (hi - lo) - n1
            if n1 >= floor and n0 >= floor:
                w_out[s, i] = 1.0 / n0
                w_sum[s, i] = 1.0 / n1 + w_out[s, i]
                inv_cnt[i] += 1.0
            else:
                w_out[s, i] = 0.0
                w_sum[s, i] = 0.0
    for i in range(r):
        if inv_cnt[i] > 0:
            inv_cnt[i] = 1.0 / inv_cnt[i]


@njit(nogil=True, cache=True)
def _select_train(a_counts, in_counts, e_col, h_col, row0, col0, floor, acc, cnt, topv, topi):
    """Pool [S, c, r] count tiles (targets are training examples held out) and merge into the top-k lists.

    ``a_counts[s, j, i]``: models of ratio s with i in, j held out and right on j;
    ``in_counts[s, j, i]``: models of ratio s with i in and j held out; ``e_col[s, j]``, ``h_col[s, j]``:
    models of ratio s right on j while holding it out, and holding it out. ``acc``/``cnt``: [r] scratch.
    """
    n_ratios, c, r = a_counts.shape
    k = topv.shape[1]
    for j in range(c):
        for i in range(r):
            acc[i] = 0.0
            cnt[i] = 0.0
        for s in range(n_ratios):
            e = np.float64(e_col[s, j])
            h = np.float64(h_col[s, j])
            for i in range(r):  # branch-free, so that it vectorises; adds exactly 0 where not pooled
                n1 = np.float64(in_counts[s, j, i])
                n0 = h - n1
                a = np.float64(a_counts[s, j, i])
                ok = 1.0 if (n1 >= floor) & (n0 >= floor) else 0.0
                acc[i] += ok * (a / max(n1, 1.0) - (e - a) / max(n0, 1.0))
                cnt[i] += ok
        jg = col0 + j
        kth = topv[j, k - 1]
        for i in range(r):
            if cnt[i] > 0 and row0 + i != jg:
                v = acc[i] / cnt[i]
                if v > kth:
                    _insert(topv, topi, j, v, row0 + i)
                    kth = topv[j, k - 1]


# ---------------------------------------------------------------------------------------- tiling
def _worker_bytes(target: str, models: int, n_ratios: int, rows: int, cols: int) -> int:
    """An upper bound of what one worker allocates for an ``rows x cols`` tile."""
    rm, s = models, n_ratios
    small = 96 * s * (rows + cols) + 64 * (rows + cols) + 4096
    if target == "eval":
        return 4 * rm * (rows + cols) + 4 * s * cols * rows + rm * (rows + cols) + small
    return 4 * rm * rows + 8 * rm * cols + 8 * s * cols * rows + rm * (rows + 3 * cols) + small


def _count_bytes(target: str, n_ratios: int, rows: int, cols: int) -> int:
    return (4 if target == "eval" else 8) * n_ratios * rows * cols


def _stats_bytes(models: int, n_ratios: int, pairs: int) -> int:
    """An upper bound of what the exact recomputation allocates for a chunk of ``pairs`` pairs."""
    return pairs * (8 * models + 136 * n_ratios + 64) + 4096


def _round8(x: int) -> int:
    return max(8, (int(x) + 7) // 8 * 8)


def _plan_tiles(target: str, n: int, ne: int, models: int, n_ratios: int, budget: int, n_threads: int):
    """(rows, cols, threads): count tiles of about ``_TILE_BYTES`` (cache-sized) per worker, and all
    workers together within ``budget`` bytes."""
    threads = max(1, min(n_threads, -(-ne // 8)))
    per_worker = budget // threads
    cols = min(_MAX_COLS, _round8(-(-ne // threads)))
    while True:
        base = _worker_bytes(target, models, n_ratios, 0, cols)
        per_row = _worker_bytes(target, models, n_ratios, 1, cols) - base
        fit = min((per_worker - base) // per_row, _TILE_BYTES // _count_bytes(target, n_ratios, 1, cols))
        rows = min(_MAX_ROWS, _round8(n), fit // 8 * 8)
        if rows >= 8:
            return rows, cols, threads
        if cols > 8:
            cols = max(8, cols // 2 // 8 * 8)
            continue
        if threads > 1:
            threads, per_worker = 1, budget
            continue
        need = _worker_bytes(target, models, n_ratios, 8, 8)
        raise ValueError(f"memory_budget of {budget} bytes is too small for {models} models and "
                         f"{n_ratios} ratios; at least {need} bytes are needed")


def _bits(packed: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """bool [R, P]: bit ``idx[p]`` of every row of a big-endian ``np.packbits`` array."""
    shift = (7 - (idx & 7)).astype(np.uint8)
    return ((packed[:, idx >> 3] >> shift) & 1).astype(bool)


def _unpack_cols(packed: np.ndarray, start: int, stop: int, out: np.ndarray, invert: bool = False) -> None:
    """Unpack bits ``start:stop`` (``start`` a multiple of 8) of every row into ``out`` (float32 [R, stop-start])."""
    block = packed[:, start // 8:-(-stop // 8)]
    if invert:
        block = ~block
    out[...] = np.unpackbits(block, axis=1, count=stop - start)


# ---------------------------------------------------------------------------------------- the computation
_CONTROLLER: list = []


def _blas_limit():
    from threadpoolctl import ThreadpoolController

    if not _CONTROLLER:
        _CONTROLLER.append(ThreadpoolController())
    return _CONTROLLER[0].limit(limits=1, user_api="blas")


def _topk_influence(t_all, e_all, bounds, n, ne, target, k, min_models, budget, n_threads):
    """Top-k (index, value, stderr) per target from packed masks; assumes valid input."""
    models = int(bounds[-1])
    used = [s for s in range(len(bounds) - 1) if bounds[s + 1] > bounds[s]]
    lo_hi = [(int(bounds[s]), int(bounds[s + 1])) for s in used]
    n_ratios = len(lo_hi)
    bounds_arr = np.array(lo_hi, dtype=np.int64).reshape(n_ratios, 2)
    rows, cols, threads = _plan_tiles(target, n, ne, models, n_ratios, budget, n_threads)
    topv = np.full((ne, k), -np.inf, dtype=np.float64)
    topi = np.full((ne, k), -1, dtype=np.int64)
    blocks = list(range(0, ne, cols))
    floor = float(min_models)

    def worker(first: int) -> None:
        buf_x = np.empty(models * rows, np.float32)
        buf_y = np.empty(models * cols, np.float32)
        buf_a = np.empty(n_ratios * cols * rows, np.float32)
        e_col = np.empty((n_ratios, cols), np.float32)
        acc = np.empty(rows, np.float64)
        if target == "eval":
            w_sum = np.empty((n_ratios, rows), np.float64)
            w_out = np.empty((n_ratios, rows), np.float64)
            inv_cnt = np.empty(rows, np.float64)
        else:
            buf_h = np.empty(models * cols, np.float32)
            buf_n = np.empty(n_ratios * cols * rows, np.float32)
            h_col = np.empty((n_ratios, cols), np.float32)
            cnt = np.empty(rows, np.float64)
        for c0 in blocks[first::threads]:
            c1 = min(c0 + cols, ne)
            ce = c1 - c0
            y = buf_y[:models * ce].reshape(models, ce)
            _unpack_cols(e_all, c0, c1, y)
            ec = e_col[:, :ce]
            for q, (lo, hi) in enumerate(lo_hi):
                np.sum(y[lo:hi], axis=0, out=ec[q])
            ec = np.ascontiguousarray(ec)
            if target == "train":
                h = buf_h[:models * ce].reshape(models, ce)
                _unpack_cols(t_all, c0, c1, h, invert=True)
                hc = h_col[:, :ce]
                for q, (lo, hi) in enumerate(lo_hi):
                    np.sum(h[lo:hi], axis=0, out=hc[q])
                hc = np.ascontiguousarray(hc)
            for r0 in range(0, n, rows):
                r1 = min(r0 + rows, n)
                re = r1 - r0
                x = buf_x[:models * re].reshape(models, re)
                _unpack_cols(t_all, r0, r1, x)
                a = buf_a[:n_ratios * ce * re].reshape(n_ratios, ce, re)
                for q, (lo, hi) in enumerate(lo_hi):  # exact integer counts in float32
                    np.matmul(y[lo:hi].T, x[lo:hi], out=a[q])
                if target == "eval":
                    ws, wo, ic = w_sum[:, :re], w_out[:, :re], inv_cnt[:re]
                    _eval_weights(x, bounds_arr, floor, ws, wo, ic)
                    _select_eval(a, ws, wo, ic, ec, r0, acc[:re], topv[c0:c1], topi[c0:c1])
                else:
                    nn = buf_n[:n_ratios * ce * re].reshape(n_ratios, ce, re)
                    for q, (lo, hi) in enumerate(lo_hi):
                        np.matmul(h[lo:hi].T, x[lo:hi], out=nn[q])
                    _select_train(a, nn, ec, hc, r0, c0, floor, acc[:re], cnt[:re], topv[c0:c1], topi[c0:c1])

    with _blas_limit():
        if threads == 1:
            worker(0)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                for f in [pool.submit(worker, t) for t in range(threads)]:
                    f.result()
    return _exact_lists(t_all, e_all, lo_hi, target, topi, min_models, budget)


def _exact_lists(t_all, e_all, lo_hi, target, topi, min_models, budget):
    """Exact float64 values and standard errors of the kept pairs; each target's list re-sorted by
    value (descending), ties by training index. ``topi`` is reordered in place and returned."""
    ne, k = topi.shape
    models, n_ratios = int(t_all.shape[0]), len(lo_hi)
    value = np.full((ne, k), np.nan)
    stderr = np.full((ne, k), np.nan)
    per_chunk = max(1, (min(budget, _STATS_BYTES) - 4096) // _stats_bytes(models, n_ratios, k))  # targets per chunk
    for j0 in range(0, ne, per_chunk):
        j1 = min(j0 + per_chunk, ne)
        sub = topi[j0:j1]
        jj, qq = np.nonzero(sub >= 0)
        if not len(jj):
            continue
        i, j = sub[jj, qq], jj + j0
        ti, ej = _bits(t_all, i), _bits(e_all, j)
        hj = None if target == "eval" else ~_bits(t_all, j)
        counts = np.empty((4, n_ratios, len(i)), np.int64)
        for q, (lo, hi) in enumerate(lo_hi):
            t_s, e_s = ti[lo:hi], ej[lo:hi]
            a = (t_s & e_s).sum(axis=0)
            if hj is None:
                n1 = t_s.sum(axis=0)
                n0 = (hi - lo) - n1
            else:
                h_s = hj[lo:hi]
                n1 = (t_s & h_s).sum(axis=0)
                n0 = h_s.sum(axis=0) - n1
            counts[:, q] = a, n1, e_s.sum(axis=0) - a, n0
        del ti, ej, hj
        _, v, se, _, _, _ = _pool(counts[0], counts[1], counts[2], counts[3], min_models)
        sv = np.full(sub.shape, np.nan)
        ss = np.full(sub.shape, np.nan)
        sv[jj, qq], ss[jj, qq] = v, se
        kept = sub >= 0
        order = np.lexsort((np.where(kept, sub, np.iinfo(np.int64).max),
                            np.where(kept, -sv, np.inf)), axis=1)
        rows = np.arange(j1 - j0)[:, None]
        topi[j0:j1] = sub[rows, order]
        value[j0:j1], stderr[j0:j1] = sv[rows, order], ss[rows, order]
    return topi, value, stderr
