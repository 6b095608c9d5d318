"""How well proxies agree with the C-score, and how well any score finds flipped labels.

* :func:`correlate` — Spearman and Kendall (tau-b) rank correlations between every
  proxy and the C-scores, overall and per class, with percentile bootstrap intervals.
  Point estimates come from SciPy; the bootstrap resamples (shared by all proxies of a
  group, so their intervals are paired) are evaluated by a compiled kernel that works
  on integer rank codes: average ranks by counting, Kendall's discordant pairs with a
  Fenwick tree, O(n log n) per resample.
* :func:`detect_injected` — AUROC, average precision and precision at k (k = number
  injected) of every score for a mask of injected examples: flipped labels
  (:func:`cscore_lab.data.inject_label_noise`, also :func:`detect_label_noise`) or
  out-of-distribution inputs (:func:`cscore_lab.ood.inject_ood`); a low score means "suspect".
* :func:`agreement`, :func:`lowest_overlap` — how closely one estimate of the C-scores matches
  another (ours against the published ones); :func:`split_half` — rank agreement of two estimates.

Results are plain objects (:class:`CorrelationTable`, :class:`DetectionTable`) on the shared
:class:`~cscore_lab.results.ResultTable` base; nothing here draws.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from numba import njit

from .cscores import CScores, spearman
from .proxies.suite import ProxyTable
from .results import ResultTable, check_array

# detection lives in its own module; its names are part of the analysis API
from .detection import DetectionTable, as_score_columns, detect_injected, detect_label_noise  # noqa: E402,F401

__all__ = ["CorrelationTable", "DetectionTable", "correlate", "detect_injected", "detect_label_noise", "split_half",
           "bootstrap_rank_correlations", "agreement", "lowest_overlap"]

CORR_FORMAT = "cscore_lab.correlations/1"
_STATS = ("spearman", "kendall")
_BOOT_ELEMENTS = 4_000_000  # resample indices held at once (B x n), bounds memory


# --------------------------------------------------------------------------- kernels


@njit(cache=True, nogil=True)
def _average_ranks(counts, avg, first):  # pragma: no cover - compiled
    """From value counts per code: average 1-based rank and first 0-based position of each code; returns tied pairs."""
    start = 0
    tied = 0
    for c in range(counts.shape[0]):
        avg[c] = start + (counts[c] + 1) / 2.0
        first[c] = start
        start += counts[c]
        tied += counts[c] * (counts[c] - 1) // 2
    return tied


@njit(cache=True, nogil=True)
def _rank_corr_kernel(cx, cy, kx, ky, idx, out):  # pragma: no cover - compiled
    """Spearman and Kendall tau-b of (cx[idx[b]], cy[idx[b]]) for every row b of idx.

    cx, cy: int64 dense rank codes in [0, kx) and [0, ky) (equal values, equal codes).
    out: float64 [B, 2]; NaN where a resample is constant in x or y.
    """
    n = idx.shape[1]
    cntx = np.zeros(kx, np.int64)
    cnty = np.zeros(ky, np.int64)
    avgx = np.empty(kx, np.float64)
    avgy = np.empty(ky, np.float64)
    tree = np.zeros(ky + 1, np.int64)
    xs = np.empty(n, np.int64)
    ys = np.empty(n, np.int64)
    by_y = np.empty(n, np.int64)
    by_xy = np.empty(n, np.int64)
    posx = np.empty(kx, np.int64)
    posy = np.empty(ky, np.int64)
    mean_rank = (n + 1) / 2.0
    n0 = n * (n - 1) // 2
    for b in range(idx.shape[0]):
        cntx[:] = 0
        cnty[:] = 0
        for i in range(n):
            j = idx[b, i]
            xs[i] = cx[j]
            ys[i] = cy[j]
            cntx[xs[i]] += 1
            cnty[ys[i]] += 1
        xtie = _average_ranks(cntx, avgx, posx)
        ytie = _average_ranks(cnty, avgy, posy)
        sxy = 0.0
        sxx = 0.0
        syy = 0.0
        for i in range(n):
            dx = avgx[xs[i]] - mean_rank
            dy = avgy[ys[i]] - mean_rank
            sxy += dx * dy
            sxx += dx * dx
            syy += dy * dy
        out[b, 0] = sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else np.nan
        # Kendall tau-b: order by (x, y) with two stable counting sorts (y, then x);
        # discordant pairs = earlier elements with a larger y, counted with a Fenwick tree
        for i in range(n):
            by_y[posy[ys[i]]] = i
            posy[ys[i]] += 1
        for t in range(n):
            i = by_y[t]
            by_xy[posx[xs[i]]] = i
            posx[xs[i]] += 1
        tree[:] = 0
        dis = 0
        ntie = 0
        run = 1
        for t in range(n):
            i = by_xy[t]
            if t > 0:
                prev = by_xy[t - 1]
                if xs[i] == xs[prev] and ys[i] == ys[prev]:
                    run += 1
                else:
                    ntie += run * (run - 1) // 2
                    run = 1
            c = ys[i] + 1
            below = 0
            p = c
            while p > 0:
                below += tree[p]
                p -= p & (-p)
            dis += t - below
            p = c
            while p <= ky:
                tree[p] += 1
                p += p & (-p)
        ntie += run * (run - 1) // 2
        denom = float(n0 - xtie) * float(n0 - ytie)
        out[b, 1] = (n0 - xtie - ytie + ntie - 2 * dis) / math.sqrt(denom) if denom > 0 else np.nan


def _codes(a: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(a, return_inverse=True)
    return np.ascontiguousarray(inv.reshape(-1), dtype=np.int64), int(uniq.size)


def bootstrap_rank_correlations(x: np.ndarray, y: np.ndarray, *, n_boot: int = 1000, seed: int | np.random.Generator = 0) -> np.ndarray:
    """Spearman and Kendall tau-b of ``n_boot`` bootstrap resamples of the pairs (x, y).

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Finite values (ties allowed).
    n_boot : int, default 1000
    seed : int or numpy Generator
        The resample indices are ``rng.integers(0, n, size=(n_boot, n))`` drawn in
        row blocks, so equal seeds and equal ``n`` give equal resamples.

    Returns
    -------
    numpy.ndarray
        float64 ``[n_boot, 2]``: columns Spearman, Kendall; NaN for constant resamples.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of one length, got shapes {x.shape} and {y.shape}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("x and y must be finite")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = x.shape[0]
    cx, kx = _codes(x)
    cy, ky = _codes(y)
    out = np.empty((n_boot, 2))
    block = max(1, _BOOT_ELEMENTS // max(n, 1))
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        _rank_corr_kernel(cx, cy, kx, ky, idx, out[start:stop])
    return out


def _point(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    from scipy.stats import kendalltau

    rho = spearman(x, y)
    if not np.isfinite(rho):
        return float("nan"), float("nan")
    return rho, float(kendalltau(x, y).statistic)


# --------------------------------------------------------------------------- inputs


def _check_same_data(proxies: Any, cscores: CScores) -> None:
    if not isinstance(proxies, ProxyTable):
        return
    if proxies.fingerprint and cscores.fingerprint and proxies.fingerprint != cscores.fingerprint:
        raise ValueError(f"the proxies ({proxies.dataset!r}) and the C-scores ({cscores.dataset!r}) were computed "
                         f"on different data (fingerprints {proxies.fingerprint[:12]} vs {cscores.fingerprint[:12]})")
    if len(proxies) == len(cscores) and not np.array_equal(proxies.labels, cscores.labels):
        bad = int(np.flatnonzero(proxies.labels != cscores.labels)[0])
        raise ValueError(f"the proxies and the C-scores carry different labels (first at example {bad})")


# --------------------------------------------------------------------------- correlations


@dataclass
class CorrelationTable(ResultTable):
    """Rank correlations of proxies with the C-score, overall (group "all") and per class.

    Attributes
    ----------
    proxies : list of str
    groups : list of str
        "all", then one entry per class (class names when known).
    n : int64 [P, G]
        Pairs used (examples where both the proxy and the C-score are finite).
    spearman, spearman_low, spearman_high, kendall, kendall_low, kendall_high : float64 [P, G]
        Point estimates and the bounds of the bootstrap intervals (NaN when undefined).
    meta : dict
        n_boot, seed, confidence, the C-scores' split-half reliability, data set name.
    """

    proxies: list[str]
    groups: list[str]
    n: np.ndarray
    spearman: np.ndarray
    spearman_low: np.ndarray
    spearman_high: np.ndarray
    kendall: np.ndarray
    kendall_low: np.ndarray
    kendall_high: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    FORMAT = CORR_FORMAT
    FILENAME = "correlations.npz"
    _ARRAYS = ("n", "spearman", "spearman_low", "spearman_high", "kendall", "kendall_low", "kendall_high")

    def __post_init__(self) -> None:
        self.proxies, self.groups = list(self.proxies), list(self.groups)
        shape = (len(self.proxies), len(self.groups))
        for name in self._ARRAYS:
            setattr(self, name, check_array(name, getattr(self, name), shape, np.int64 if name == "n" else np.float64))

    def to_frame(self):
        """Long DataFrame: one row per (proxy, group) with n and the estimates and their intervals."""
        import pandas as pd

        rows = {"proxy": np.repeat(self.proxies, len(self.groups)), "group": np.tile(self.groups, len(self.proxies))}
        rows.update({name: getattr(self, name).ravel() for name in self._ARRAYS})
        return pd.DataFrame(rows)

    def overall(self):
        """DataFrame of the "all" group, indexed by proxy, best Spearman first."""
        df = self.to_frame()
        df = df[df["group"] == "all"].drop(columns="group").set_index("proxy")
        return df.sort_values("spearman", ascending=False, na_position="last")

    def per_class(self, stat: str = "spearman"):
        """DataFrame proxies x groups of one statistic ("spearman" or "kendall")."""
        import pandas as pd

        if stat not in _STATS:
            raise ValueError(f"stat must be one of {_STATS}, got {stat!r}")
        return pd.DataFrame(getattr(self, stat), index=pd.Index(self.proxies, name="proxy"), columns=self.groups)

    def to_string(self) -> str:
        """The overall table as fixed-width text, for terminals."""
        conf = int(round(100 * self.meta.get("confidence", 0.95)))
        lines = [f"{'proxy':<28} {'Spearman':>8}  {conf}% interval     {'Kendall':>8}  {conf}% interval"]
        for name, r in self.overall().iterrows():
            lines.append(f"{name:<28} {r.spearman:8.3f}  [{r.spearman_low:6.3f}, {r.spearman_high:6.3f}]  "
                         f"{r.kendall:8.3f}  [{r.kendall_low:6.3f}, {r.kendall_high:6.3f}]")
        rel = self.meta.get("reliability", float("nan"))
        lines.append(f"(n = {int(self.n[:, 0].max()) if self.n.size else 0} examples, {self.meta.get('n_boot')} bootstrap "
                     f"resamples; C-score split-half reliability {rel:.3f})")
        return "\n".join(lines)

    def value(self, proxy: str, stat: str = "spearman", group: str = "all") -> float:
        """One correlation: of ``proxy`` with the C-score, in ``group`` ("all" or a class)."""
        if stat not in _STATS:
            raise ValueError(f"stat must be one of {_STATS}, got {stat!r}")
        try:
            p, g = self.proxies.index(proxy), self.groups.index(group)
        except ValueError:
            raise KeyError(f"no correlation for proxy {proxy!r} in group {group!r}") from None
        return float(getattr(self, stat)[p, g])

    def _arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self._ARRAYS}

    def _info(self) -> dict[str, Any]:
        return {"proxies": self.proxies, "groups": self.groups, "meta": self.meta}

    @classmethod
    def _from_saved(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> "CorrelationTable":
        return cls(info["proxies"], info["groups"], meta=info["meta"], **{k: arrays[k] for k in cls._ARRAYS})

    def __repr__(self) -> str:
        return f"CorrelationTable(proxies={len(self.proxies)}, groups={len(self.groups)}, n_boot={self.meta.get('n_boot')})"

    def _html_title(self) -> str:
        return f"Rank correlation with the C-score ({self.meta.get('dataset', '')})"

    def _html_frame(self):
        return self.overall()

    def _html_notes(self) -> list[str]:
        rel = self.meta.get("reliability", float("nan"))
        return [f"{self.meta.get('n_boot')} bootstrap resamples, {int(100 * self.meta.get('confidence', 0.95))}% "
                f"percentile intervals; C-score split-half reliability {rel:.3f}",
                "per-class values: .per_class(); all rows: .to_frame()"]


def correlate(
    proxies: ProxyTable | Mapping[str, Any],
    cscores: CScores,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    per_class: bool = True,
    confidence: float = 0.95,
) -> CorrelationTable:
    """Spearman and Kendall rank correlations of every proxy with the C-scores.

    Parameters
    ----------
    proxies : ProxyTable or dict of str to array [N]
    cscores : CScores
        Their labels define the classes of the per-class rows.
    n_boot : int, default 1000
        Bootstrap resamples (of examples, with replacement) per proxy and group; 0 skips
        the intervals (NaN).
    seed : int, default 0
        Every proxy of a group sees the same resamples.
    per_class : bool, default True
        Also compute the correlations within each class.
    confidence : float, default 0.95
        Coverage of the percentile intervals.

    Returns
    -------
    CorrelationTable

    Raises
    ------
    ValueError
        Length mismatch between proxies and scores, proxies and scores from different
        data, bad ``n_boot`` or ``confidence``.

    Notes
    -----
    Pairs where either value is not finite are left out (``n`` says how many remain).
    Correlations are NaN when fewer than 3 pairs remain or a side is constant.
    """
    if not isinstance(cscores, CScores):
        raise TypeError(f"cscores must be a CScores, got {type(cscores).__name__}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 0:
        raise ValueError(f"n_boot must be a non-negative integer, got {n_boot!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    _check_same_data(proxies, cscores)
    values = as_score_columns(proxies, len(cscores))
    c = cscores.scores
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(cscores), dtype=bool))]
    if per_class:
        names = proxies.class_names if isinstance(proxies, ProxyTable) else ()
        for k in np.unique(cscores.labels):
            groups.append((names[k] if k < len(names) else str(int(k)), cscores.labels == k))
    shape = (len(values), len(groups))
    res = {name: np.full(shape, np.nan) for name in CorrelationTable._ARRAYS}
    res["n"] = np.zeros(shape, dtype=np.int64)
    tail = 100 * (1 - confidence) / 2
    for g, (_, member) in enumerate(groups):
        for p, a in enumerate(values.values()):
            ok = member & np.isfinite(a) & np.isfinite(c)
            x, y = a[ok], c[ok]
            res["n"][p, g] = x.size
            res["spearman"][p, g], res["kendall"][p, g] = _point(x, y)
            if n_boot and np.isfinite(res["spearman"][p, g]):
                boot = bootstrap_rank_correlations(x, y, n_boot=n_boot, seed=np.random.default_rng([seed, g]))
                for s, stat in enumerate(_STATS):
                    col = boot[:, s][np.isfinite(boot[:, s])]
                    if col.size:
                        res[f"{stat}_low"][p, g], res[f"{stat}_high"][p, g] = np.percentile(col, [tail, 100 - tail])
    meta = {"n_boot": n_boot, "seed": seed, "confidence": confidence, "reliability": float(cscores.reliability),
            "dataset": cscores.dataset or (proxies.dataset if isinstance(proxies, ProxyTable) else "")}
    return CorrelationTable(list(values), [name for name, _ in groups], meta=meta, **res)


# --------------------------------------------------------------------------- reliability


def split_half(a: np.ndarray | CScores, b: np.ndarray | CScores) -> float:
    """Spearman correlation of two estimates of the same per-example scores.

    With two C-score estimates from disjoint runs this is the split-half reliability,
    the ceiling a proxy's correlation with a single estimate is read against.

    Raises
    ------
    ValueError
        Different lengths.
    """
    x = a.scores if isinstance(a, CScores) else np.asarray(a, dtype=np.float64)
    y = b.scores if isinstance(b, CScores) else np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"the two estimates must be 1-D of one length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    return _point(x[ok], y[ok])[0]


# --------------------------------------------------------------------------- agreement of two estimates


def _scores_of(x: CScores | np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x.scores if isinstance(x, CScores) else x, dtype=np.float64)
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D scores, got shape {a.shape}")
    return a


def lowest_overlap(ours: CScores | np.ndarray, theirs: CScores | np.ndarray, k: int = 600) -> float:
    """Share of the ``k`` lowest of ``theirs`` that are among the ``k`` lowest of ``ours``.

    Scores from few runs are coarse (many equal values): examples of ``ours`` tied at
    the cut-off each count with the probability that a random tie-break selects them, so
    the result is the expected overlap, not an artefact of index order. ``theirs`` is cut
    by a stable sort. NaN in ``ours`` ranks last.

    Parameters
    ----------
    ours, theirs : CScores or float array [N]
    k : int, default 600
        How many lowest to compare (600 = 1% of MNIST, the paper's "lowest 1%").

    Returns
    -------
    float in [0, 1]; ``k / N`` is what random scores give on average.
    """
    a, b = _scores_of(ours, "ours"), _scores_of(theirs, "theirs")
    if a.shape != b.shape:
        raise ValueError(f"ours has {a.size} scores and theirs {b.size}; they must cover the same examples")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= a.size:
        raise ValueError(f"k must be an integer in 1..{a.size}, got {k!r}")
    theirs_low = np.zeros(b.size, dtype=bool)
    theirs_low[np.argsort(np.nan_to_num(b, nan=np.inf), kind="stable")[:k]] = True
    o = np.nan_to_num(a, nan=np.inf)
    cut = np.partition(o, k - 1)[k - 1]
    below, tied = o < cut, o == cut
    take = k - int(below.sum())
    hits = float((below & theirs_low).sum()) + take * float((tied & theirs_low).sum()) / float(tied.sum())
    return hits / k


def agreement(ours: CScores | np.ndarray, theirs: CScores | np.ndarray, *, lowest: int = 600) -> dict[str, float]:
    """How closely one estimate of the C-scores matches another (ours vs. the published ones, say).

    Parameters
    ----------
    ours, theirs : CScores or float array [N]
        Scores of the same examples in the same order; two CScores must carry equal labels.
    lowest : int, default 600
        Size of the low end compared by :func:`lowest_overlap`.

    Returns
    -------
    dict
        ``spearman``, ``kendall`` (tau-b), ``overlap_lowest`` (expected share of their
        ``lowest`` lowest among ours), ``mad`` (mean absolute difference), ``mean_difference``
        (mean of ours minus theirs), ``n`` (finite pairs used).

    See Also
    --------
    cscore_lab.analysis.correlate : proxies against C-scores, with bootstrap intervals.
    """
    from scipy.stats import kendalltau

    a, b = _scores_of(ours, "ours"), _scores_of(theirs, "theirs")
    if a.shape != b.shape:
        raise ValueError(f"ours has {a.size} scores and theirs {b.size}; they must cover the same examples")
    if isinstance(ours, CScores) and isinstance(theirs, CScores) and not np.array_equal(ours.labels, theirs.labels):
        bad = np.flatnonzero(ours.labels != theirs.labels)
        raise ValueError(f"the two estimates carry different labels ({bad.size} differ, first at index {bad[0]}); "
                         f"they are not of the same examples in the same order")
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3:
        raise ValueError(f"only {int(ok.sum())} examples have finite scores in both; need at least 3")
    x, y = a[ok], b[ok]
    return {
        "spearman": spearman(x, y),
        "kendall": float(kendalltau(x, y).statistic),
        "overlap_lowest": lowest_overlap(a, b, lowest),
        "mad": float(np.mean(np.abs(x - y))),
        "mean_difference": float(np.mean(x - y)),
        "n": int(ok.sum()),
    }
