"""k-NN label agreement and LOF against brute-force NumPy references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cscore_lab.proxies.neighbors import knn_agreement, local_outlier_factor, nearest_neighbors, neighbor_proxies


def brute_knn_agreement(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1, kind="stable")[:, :k]
    return (y[nn] == y[:, None]).mean(axis=1)


def brute_lof(x: np.ndarray, k: int) -> np.ndarray:
    """Breunig et al.'s LOF, written out (no ties in the data it is used on)."""
    d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :k]
    kdist = np.take_along_axis(d, nn, axis=1)[:, -1]
    reach = np.maximum(np.take_along_axis(d, nn, axis=1), kdist[nn])
    lrd = 1.0 / reach.mean(axis=1)
    return lrd[nn].mean(axis=1) / lrd


@settings(max_examples=25, deadline=None)
@given(n=st.integers(5, 60), d=st.integers(1, 6), k=st.integers(1, 8), classes=st.integers(1, 4), seed=st.integers(0, 10_000))
def test_knn_agreement_matches_brute_force(n, d, k, classes, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))  # continuous: no distance ties
    y = rng.integers(0, classes, size=n)
    k = min(k, n - 1)
    np.testing.assert_allclose(knn_agreement(x, y, k=k), brute_knn_agreement(x, y, k))


def test_knn_agreement_counts_duplicates_but_not_self():
    x = np.array([[0.0], [0.0], [10.0], [10.1]])
    y = np.array([0, 1, 1, 1])
    # example 0's nearest neighbour is its duplicate, example 1, which has another label
    np.testing.assert_allclose(knn_agreement(x, y, k=1), [0.0, 0.0, 1.0, 1.0])


def test_lof_matches_brute_force_and_is_negated():
    rng = np.random.default_rng(3)
    x = np.vstack([rng.normal(size=(80, 3)), [[8.0, 8.0, 8.0]]])
    got = local_outlier_factor(x, n_neighbors=10)
    np.testing.assert_allclose(got, -brute_lof(x, 10), rtol=1e-6)
    assert np.argmin(got) == 80  # the outlier is the least regular


@pytest.mark.filterwarnings("ignore:Duplicate values are leading to incorrect results:UserWarning")
def test_lof_matches_scikit_learn_with_duplicates():
    from sklearn.neighbors import LocalOutlierFactor

    rng = np.random.default_rng(4)
    x = np.vstack([rng.normal(size=(120, 5)), np.zeros((3, 5))])  # three identical rows
    for m in (1, 7, 30):
        ref = LocalOutlierFactor(n_neighbors=m).fit(x).negative_outlier_factor_
        np.testing.assert_allclose(local_outlier_factor(x, n_neighbors=m), ref, rtol=1e-9)


def test_one_search_serves_both():
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(90, 4)), rng.integers(0, 3, size=90)
    both = neighbor_proxies(x, y, k=5, n_neighbors=12)
    np.testing.assert_allclose(both["knn"], knn_agreement(x, y, k=5))
    np.testing.assert_allclose(both["lof"], local_outlier_factor(x, n_neighbors=12))
    dist, idx = nearest_neighbors(x, 3)
    assert dist.shape == idx.shape == (90, 3) and (np.diff(dist, axis=1) >= 0).all()
    assert not (idx == np.arange(90)[:, None]).any()
    with pytest.raises(ValueError, match="labels are needed"):
        neighbor_proxies(x, k=3, n_neighbors=None)
    with pytest.raises(ValueError, match="nothing to compute"):
        neighbor_proxies(x, y, k=None, n_neighbors=None)


@pytest.mark.parametrize("k", [0, 5, 9])
def test_k_out_of_range(k):
    x = np.random.default_rng(0).normal(size=(5, 2))
    with pytest.raises(ValueError, match="k=.* out of range"):
        knn_agreement(x, np.zeros(5, dtype=int), k=k)
    with pytest.raises(ValueError, match="n_neighbors=.* out of range"):
        local_outlier_factor(x, n_neighbors=k)


def test_bad_inputs_are_named():
    x = np.random.default_rng(0).normal(size=(6, 2))
    with pytest.raises(ValueError, match="labels must have one entry per example: got length 5, expected 6"):
        knn_agreement(x, np.zeros(5, dtype=int), k=2)
    with pytest.raises(TypeError, match="integer dtype"):
        knn_agreement(x, np.zeros(6), k=2)
    x[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"features must be finite.*1 non-finite value\(s\), the first at index \(2, 1\)"):
        knn_agreement(x, np.zeros(6, dtype=int), k=2)
    with pytest.raises(ValueError, match="2-D"):
        local_outlier_factor(np.zeros(6))
    with pytest.raises(TypeError, match="k must be an integer, got True"):
        knn_agreement(np.zeros((6, 2)), np.zeros(6, dtype=int), k=True)
    with pytest.raises(TypeError, match="real numeric array, got dtype complex128"):
        nearest_neighbors(np.zeros((6, 2), dtype=complex), 2)
    # float32 features stay float32 (no copy of a large matrix), anything else becomes float64
    from cscore_lab.proxies import _validation

    f32 = np.zeros((6, 2), dtype=np.float32)
    assert _validation.features(f32) is f32 and _validation.features(np.zeros((6, 2), dtype=int)).dtype == np.float64
