"""Neighbour baselines for the C-score: k-NN label agreement and the local outlier factor.

Both are oriented like the C-score, **higher = more regular**:

``knn_agreement``
    The share of an example's ``k`` nearest neighbours (Euclidean, the example
    itself excluded by index, so exact duplicates of it do count) that carry its
    label. In ``[0, 1]``; label-aware.
``local_outlier_factor``
    The *negated* local outlier factor of Breunig et al. (2000), as
    scikit-learn's ``LocalOutlierFactor.negative_outlier_factor_``: about ``-1``
    for points as dense as their neighbours, much lower for outliers.
    Label-agnostic.

scikit-learn does the neighbour search (once, for both, in :func:`neighbor_proxies`);
the LOF is computed from it with scikit-learn's formulas, and tested against
``LocalOutlierFactor`` itself.
"""

from __future__ import annotations

import numpy as np

from . import _validation as _v

__all__ = ["knn_agreement", "local_outlier_factor", "nearest_neighbors", "neighbor_proxies", "NeighborIndex"]


def nearest_neighbors(features, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Distances and indices of each example's ``k`` nearest neighbours (Euclidean), itself excluded.

    Parameters
    ----------
    features : array_like, shape (N, d)
        Finite real features.
    k : int
        ``1 <= k < N``. The example itself is excluded by index; exact duplicates of it
        count as neighbours. Ties in distance are broken as scikit-learn's search breaks them.

    Returns
    -------
    distances : float64 [N, k], ascending along each row
    indices : int64 [N, k]
    """
    x = _v.features(features)
    return _search(x, _v.neighbour_count(k, x.shape[0], "k"))


def _search(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_neighbors` of valid features (scikit-learn's exact search)."""
    from sklearn.neighbors import NearestNeighbors

    # kneighbors() without a query excludes each point from its own neighbours
    dist, idx = NearestNeighbors(n_neighbors=k).fit(x).kneighbors()
    return dist.astype(np.float64, copy=False), idx.astype(np.int64, copy=False)


class NeighborIndex:
    """Exact Euclidean neighbours of one example at a time, for views that ask about one example.

    The same neighbours as :func:`nearest_neighbors` (the example itself excluded by index),
    without searching for all N at once; :meth:`agreement` is :func:`knn_agreement` of one example.
    """

    def __init__(self, features, labels=None):
        x = _v.features(features)
        self.features = x
        self.labels = None if labels is None else _v.labels(labels, x.shape[0])
        self._sq = np.einsum("ij,ij->i", x, x, dtype=np.float64)

    def query(self, index: int, k: int) -> np.ndarray:
        """Indices of the ``k`` nearest neighbours of example ``index``, nearest first (ties by index)."""
        n = self.features.shape[0]
        i = int(index)
        if not 0 <= i < n:
            raise ValueError(f"example index {index} is outside 0..{n - 1}")
        k = _v.neighbour_count(k, n, "k")
        d = self._sq - 2.0 * (self.features @ self.features[i]).astype(np.float64) + self._sq[i]
        d[i] = np.inf
        near = np.argpartition(d, k - 1)[:k]
        return near[np.lexsort((near, d[near]))]

    def agreement(self, index: int, k: int) -> float:
        """Share of the ``k`` nearest neighbours of ``index`` that carry its label."""
        if self.labels is None:
            raise ValueError("this NeighborIndex was built without labels")
        near = self.query(index, k)
        return float((self.labels[near] == self.labels[int(index)]).mean())


def knn_agreement(features, labels, *, k: int = 10) -> np.ndarray:
    """Share of each example's ``k`` nearest neighbours that carry its label.

    Parameters
    ----------
    features : array_like, shape (N, d)
        Finite real features (inputs flattened, or hidden representations).
    labels : array_like of int, shape (N,)
    k : int, default 10
        Neighbours per example, ``1 <= k < N`` (see :func:`nearest_neighbors`).

    Returns
    -------
    numpy.ndarray
        float64 ``[N]`` in ``[0, 1]``; higher = more regular.

    Raises
    ------
    ValueError
        Bad shapes, non-finite features, ``k`` out of range.

    See Also
    --------
    neighbor_proxies : this and the LOF from one neighbour search.
    """
    return neighbor_proxies(features, labels, k=k, n_neighbors=None)["knn"]


def local_outlier_factor(features, *, n_neighbors: int = 20) -> np.ndarray:
    """Negated local outlier factor of every example (higher = more regular).

    Parameters
    ----------
    features : array_like, shape (N, d)
        Finite real features.
    n_neighbors : int, default 20
        Neighbourhood size of the LOF, ``1 <= n_neighbors < N``.

    Returns
    -------
    numpy.ndarray
        float64 ``[N]``: ``-LOF``, as scikit-learn's ``LocalOutlierFactor(n_neighbors)
        .negative_outlier_factor_``; about -1 for inliers, lower for outliers.

    Raises
    ------
    ValueError
        Bad shapes, non-finite features, ``n_neighbors`` out of range.

    See Also
    --------
    neighbor_proxies : this and the k-NN agreement from one neighbour search.
    """
    return neighbor_proxies(features, None, k=None, n_neighbors=n_neighbors)["lof"]


def _negative_lof(dist: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """-LOF from each example's neighbour distances and indices (scikit-learn's formulas, its 1e-10 guard)."""
    k_distance = dist[:, -1]
    reach = np.maximum(dist, k_distance[idx])
    lrd = 1.0 / (reach.mean(axis=1) + 1e-10)
    return -(lrd[idx] / lrd[:, None]).mean(axis=1)


def neighbor_proxies(features, labels=None, *, k: int | None = 10, n_neighbors: int | None = 20) -> dict[str, np.ndarray]:
    """k-NN label agreement (``"knn"``) and negated LOF (``"lof"``) from one neighbour search.

    Parameters
    ----------
    features : array_like, shape (N, d)
    labels : array_like of int, shape (N,), optional
        Needed for the agreement.
    k : int or None, default 10
        Neighbours of the agreement; None leaves it out.
    n_neighbors : int or None, default 20
        Neighbourhood of the LOF; None leaves it out.

    Returns
    -------
    dict of str to float64 [N]
        ``"knn"`` and/or ``"lof"``, both higher = more regular.

    Notes
    -----
    The search finds ``max(k, n_neighbors)`` neighbours once (the cost on large data) and
    each proxy uses the nearest ones it needs.
    """
    x = _v.features(features)
    n = x.shape[0]
    wanted = {}
    if k is not None:
        wanted["knn"] = _v.neighbour_count(k, n, "k")
        if labels is None:
            raise ValueError("labels are needed for the k-NN label agreement")
        y = _v.labels(labels, n)
    if n_neighbors is not None:
        wanted["lof"] = _v.neighbour_count(n_neighbors, n, "n_neighbors")
    if not wanted:
        raise ValueError("nothing to compute: give k, n_neighbors or both")
    dist, idx = _search(x, max(wanted.values()))
    out = {}
    if "knn" in wanted:
        out["knn"] = (y[idx[:, :wanted["knn"]]] == y[:, None]).mean(axis=1)
    if "lof" in wanted:
        m = wanted["lof"]
        out["lof"] = _negative_lof(dist[:, :m], idx[:, :m])
    return out
