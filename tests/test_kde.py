"""Tests of the kernel density proxies (cscore_lab.proxies.kde)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.spatial.distance import pdist

from cscore_lab.proxies.kde import KDEResult, kde_scores, select_bandwidth

RTOL = 1e-4  # float32 distances and a float32 exponential
ATOL = 1e-9


def brute_force(features, labels, h):
    """Plain float64 reference: sums over j != i, divided by N."""
    x = np.asarray(features, dtype=np.float32).astype(np.float64)
    y = np.asarray(labels)
    n = x.shape[0]
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=-1)
    k = np.exp(-d2 / h**2)
    np.fill_diagonal(k, 0.0)
    same = y[:, None] == y[None, :]
    density = k.sum(axis=1) / n
    same_label = (k * same).sum(axis=1) / n
    signed = (k * np.where(same, 1.0, -1.0)).sum(axis=1) / n
    return density, same_label, signed


def kernel_tolerance(features, h: float) -> np.ndarray:
    """Per-row relative error bound of the kernel values, as the module documents it.

    The exponent of row i is computed from centred float32 products with an absolute error of about
    1e-7 * (||a_i||^2 + ||b||^2) / h^2 (a safety factor of 4 here), which is the relative error of
    each kernel value, and so of any sum of them; RTOL covers the exponential and the rest. Far
    from the origin, relative to ``h``, this exceeds RTOL (hypothesis found x = 2, 2.5 and twenty
    -4s with h = 0.25: 1.2e-4).
    """
    c = np.asarray(features, dtype=np.float64)
    c = c - c.mean(axis=0)
    sq = (c**2).sum(axis=1)
    return RTOL + 4e-7 * (sq + sq.max()) / h**2


def assert_matches_brute(res: KDEResult, features, labels):
    d, s, g = brute_force(features, labels, res.bandwidth)
    # each sum is within the bound times the sum of its kernel values' magnitudes, the density
    allowed = kernel_tolerance(features, res.bandwidth) * d + ATOL
    for name, got, want in (("density", res.density, d), ("same_label", res.same_label, s),
                            ("signed", res.signed, g)):
        excess = np.abs(got - want) - allowed
        assert (excess <= 0).all(), f"{name}: {int((excess > 0).sum())} rows beyond the bound, worst {excess.max():.3g}"


# ---------------------------------------------------------------------------
# Against brute force on chosen shapes
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n, d, n_classes, tile, n_threads",
    [
        (50, 5, 3, 7, 2),  # N not a multiple of the tile
        (101, 3, 4, 16, 3),
        (64, 8, 2, 16, 1),  # N a multiple of the tile
        (40, 6, 1, 7, 2),  # a single class
        (37, 1, 2, 16, 2),  # d = 1
        (2, 4, 2, 1024, None),  # N = 2, labels differ
        (2, 4, 1, 1, 2),  # N = 2, same label, tile 1
        (300, 20, 10, 1024, None),  # one diagonal tile only
        (300, 20, 10, 1, 2),  # tile 1: only off-diagonal work
    ],
)
def test_matches_brute_force(n, d, n_classes, tile, n_threads):
    rng = np.random.default_rng(n * 100 + d)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, n_classes, size=n)
    res = kde_scores(x, y, tile=tile, n_threads=n_threads)
    assert res.bandwidth_rule == "median"
    for arr in (res.density, res.same_label, res.signed):
        assert arr.dtype == np.float64 and arr.shape == (n,)
    assert_matches_brute(res, x, y)


def test_duplicate_points():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(10, 4))
    x = np.concatenate([base, base, base[:3]])  # every point duplicated
    y = rng.integers(0, 3, size=len(x))
    res = kde_scores(x, y, bandwidth=1.5, tile=7)
    assert_matches_brute(res, x, y)
    # an exact duplicate contributes K = 1 / N, so density >= 1 / N
    assert np.all(res.density >= 1.0 / len(x) * (1 - 1e-6))


def test_all_points_identical_fixed_bandwidth():
    x = np.ones((9, 3))
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    res = kde_scores(x, y, bandwidth=1.0, tile=4)
    np.testing.assert_allclose(res.density, 8 / 9, rtol=1e-6)
    counts = np.bincount(y)[y]
    np.testing.assert_allclose(res.same_label, (counts - 1) / 9, rtol=1e-6)


def test_far_apart_points_give_zero():
    x = np.arange(5, dtype=np.float64)[:, None] * 1000.0
    res = kde_scores(x, np.zeros(5, dtype=int), bandwidth=1.0)
    assert np.all(res.density == 0.0)


def test_offset_data_accuracy():
    """Large common offset: centring keeps float32 products accurate."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(80, 10)) + 1000.0
    y = rng.integers(0, 2, size=80)
    res = kde_scores(x, y, tile=16)
    assert_matches_brute(res, x, y)


def test_accepts_other_dtypes_and_lists():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(20, 3))  # integer features
    y = rng.integers(0, 3, size=20).astype(np.uint8)
    res = kde_scores(x.tolist(), y, bandwidth=2.0)
    assert_matches_brute(res, x, y)


def test_result_as_dict_and_frozen():
    rng = np.random.default_rng(4)
    res = kde_scores(rng.normal(size=(10, 2)), np.arange(10) % 2, bandwidth=1.0)
    dct = res.as_dict()
    assert set(dct) == {"density", "same_label", "signed"}
    assert dct["density"] is res.density
    with pytest.raises(AttributeError):
        res.bandwidth = 2.0  # type: ignore[misc]


def test_threads_and_tiles_agree():
    rng = np.random.default_rng(5)
    x = rng.normal(size=(150, 7))
    y = rng.integers(0, 3, size=150)
    ref = kde_scores(x, y, tile=1024, n_threads=1)
    for tile, nt in [(8, 1), (8, 2), (33, 4), (150, 2)]:
        res = kde_scores(x, y, tile=tile, n_threads=nt)
        for a, b in zip(res.as_dict().values(), ref.as_dict().values()):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def test_bit_reproducible_with_threads():
    rng = np.random.default_rng(10)
    x = rng.normal(size=(200, 5))
    y = rng.integers(0, 4, size=200)
    a = kde_scores(x, y, tile=16, n_threads=3)
    b = kde_scores(x, y, tile=16, n_threads=3)
    for u, v in zip(a.as_dict().values(), b.as_dict().values()):
        np.testing.assert_array_equal(u, v)


# ---------------------------------------------------------------------------
# Property tests
# ---------------------------------------------------------------------------


@st.composite
def datasets(draw):
    n = draw(st.integers(2, 24))
    d = draw(st.integers(1, 4))
    x = draw(
        hnp.arrays(
            np.float32,
            (n, d),
            elements=st.floats(-5, 5, width=32, allow_subnormal=False),
        )
    )
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, 3)))
    h = draw(st.floats(0.25, 20.0))
    tile = draw(st.integers(1, 9))
    return x, y, h, tile


@settings(max_examples=30, deadline=None)
@given(datasets())
@example((np.array([[2.0], [2.5]] + [[-4.0]] * 20, dtype=np.float32), np.zeros(22, dtype=np.int64), 0.25, 1))
def test_property_matches_brute_force(data):
    x, y, h, tile = data
    res = kde_scores(x, y, bandwidth=h, tile=tile, n_threads=2)
    assert res.bandwidth == h and res.bandwidth_rule == "fixed"
    assert_matches_brute(res, x, y)


@settings(max_examples=30, deadline=None)
@given(datasets())
def test_property_relations_and_range(data):
    x, y, h, tile = data
    n = len(y)
    res = kde_scores(x, y, bandwidth=h, tile=tile, n_threads=2)
    np.testing.assert_allclose(res.signed, 2 * res.same_label - res.density, rtol=0, atol=1e-15)
    assert np.all(res.same_label <= res.density)
    top = (n - 1) / n * (1 + 1e-6)
    assert np.all((res.density >= 0) & (res.density <= top))
    assert np.all((res.same_label >= 0) & (res.same_label <= top))
    assert np.all(np.abs(res.signed) <= top)


@settings(max_examples=30, deadline=None)
@given(datasets(), st.randoms(use_true_random=False))
def test_property_permutation_invariance(data, rnd):
    x, y, h, tile = data
    perm = np.array(rnd.sample(range(len(y)), len(y)))
    res = kde_scores(x, y, bandwidth=h, tile=tile)
    res_p = kde_scores(x[perm], y[perm], bandwidth=h, tile=tile)
    for a, b in zip(res.as_dict().values(), res_p.as_dict().values()):
        np.testing.assert_allclose(b, a[perm], rtol=RTOL, atol=ATOL)


@settings(max_examples=30, deadline=None)
@given(datasets())
def test_property_label_renaming_invariance(data):
    x, y, h, tile = data
    res = kde_scores(x, y, bandwidth=h, tile=tile)
    res_r = kde_scores(x, 7 * (3 - y) + 100, bandwidth=h, tile=tile)
    np.testing.assert_array_equal(res.same_label, res_r.same_label)


# ---------------------------------------------------------------------------
# Against scikit-learn
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 3, 16])
def test_density_matches_sklearn(d):
    from sklearn.neighbors import KernelDensity

    rng = np.random.default_rng(d)
    n = 120
    x = rng.normal(size=(n, d)).astype(np.float32)
    res = kde_scores(x, np.zeros(n, dtype=int), tile=32)
    h = res.bandwidth
    sigma = h / math.sqrt(2.0)  # exp(-r^2 / h^2) = exp(-r^2 / (2 sigma^2))
    kd = KernelDensity(kernel="gaussian", bandwidth=sigma).fit(x.astype(np.float64))
    log_p = kd.score_samples(x.astype(np.float64))
    # sklearn: log( (1/N) sum_j (2 pi sigma^2)^(-d/2) exp(...) ), self term included
    with_self = np.exp(log_p + 0.5 * d * np.log(2 * np.pi * sigma**2))
    ours_from_sklearn = with_self - 1.0 / n
    np.testing.assert_allclose(res.density, ours_from_sklearn, rtol=1e-4, atol=1e-7)


# ---------------------------------------------------------------------------
# Bandwidth rules
# ---------------------------------------------------------------------------


def test_median_bandwidth_matches_brute_force():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(60, 5)).astype(np.float32)
    expected = float(np.median(pdist(x.astype(np.float64))))
    h = select_bandwidth(x, "median", sample_size=60)
    assert h == pytest.approx(expected, rel=1e-9)
    assert select_bandwidth(x, "median", sample_size=1000) == pytest.approx(expected, rel=1e-9)
    res = kde_scores(x, np.zeros(60, dtype=int), bandwidth="median", sample_size=60)
    assert res.bandwidth == h and res.bandwidth_rule == "median"
    assert_matches_brute(res, x, np.zeros(60, dtype=int))


def test_median_bandwidth_sampled_is_seeded():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(500, 3))
    a = select_bandwidth(x, sample_size=50, seed=1)
    b = select_bandwidth(x, sample_size=50, seed=1)
    c = select_bandwidth(x, sample_size=50, seed=2)
    assert a == b and a != c
    full = float(np.median(pdist(x.astype(np.float32).astype(np.float64))))
    assert a == pytest.approx(full, rel=0.2)
    res = kde_scores(x, np.zeros(500, dtype=int), sample_size=50, seed=1)
    assert res.bandwidth == a


def test_median_bandwidth_mostly_duplicates_falls_back_to_positive():
    x = np.zeros((10, 2))
    x[0] = 1.0
    x[1] = 3.0  # 43 of 45 pairs are duplicates
    dist = pdist(x)
    assert np.median(dist) == 0.0
    assert select_bandwidth(x, sample_size=10) == pytest.approx(np.median(dist[dist > 0]))


def test_median_bandwidth_all_identical_raises():
    with pytest.raises(ValueError, match="all sampled rows are identical"):
        select_bandwidth(np.ones((5, 3)))


def test_scott_bandwidth():
    rng = np.random.default_rng(8)
    n, d = 200, 4
    x = rng.normal(scale=[1, 2, 3, 4], size=(n, d)).astype(np.float32)
    sigma = np.std(x.astype(np.float64), axis=0, ddof=1).mean()
    expected = math.sqrt(2) * sigma * n ** (-1 / (d + 4))
    assert select_bandwidth(x, "scott") == pytest.approx(expected, rel=1e-9)
    res = kde_scores(x, np.zeros(n, dtype=int), bandwidth="scott")
    assert res.bandwidth == pytest.approx(expected, rel=1e-9)
    assert res.bandwidth_rule == "scott"
    with pytest.raises(ValueError, match="every feature is constant"):
        select_bandwidth(np.ones((5, 2)), "scott")


def test_fixed_bandwidth_passes_through():
    x = np.random.default_rng(9).normal(size=(10, 2))
    res = kde_scores(x, np.zeros(10, dtype=int), bandwidth=0.37)
    assert res.bandwidth == 0.37 and res.bandwidth_rule == "fixed"
    assert kde_scores(x, np.zeros(10, dtype=int), bandwidth=np.float32(2)).bandwidth == 2.0
    assert select_bandwidth(x, 0.37) == 0.37


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

X_OK = np.zeros((4, 2))
Y_OK = np.array([0, 1, 0, 1])


@pytest.mark.parametrize(
    "features, labels, kwargs, exc, match",
    [
        (np.zeros(4), Y_OK, {}, ValueError, r"features must be 2-D.*shape \(4,\)"),
        (np.zeros((4, 2, 1)), Y_OK, {}, ValueError, r"features must be 2-D.*shape \(4, 2, 1\)"),
        (np.zeros((1, 2)), [0], {}, ValueError, r"features: .*1 sample.*shape=\(1, 2\).*minimum of 2"),
        (np.zeros((4, 0)), Y_OK, {}, ValueError, r"features must not have an empty axis.*shape \(4, 0\)"),
        (np.zeros((4, 2), dtype=complex), Y_OK, {}, TypeError, r"real numeric.*complex128"),
        (np.array([["a", "b"]] * 4), Y_OK, {}, TypeError, r"features must be a real numeric"),
        (X_OK, np.zeros((4, 1), dtype=int), {}, ValueError, r"labels must be 1-D.*shape \(4, 1\)"),
        (X_OK, [0, 1, 0], {}, ValueError, r"got length 3, expected 4"),
        (X_OK, np.array([0.0, 1, 0, 1]), {}, TypeError, r"integer dtype.*float64"),
        (X_OK, np.array([True, False, True, False]), {}, TypeError, r"integer dtype.*bool"),
        (X_OK, [0, 1, -2, 1], {}, ValueError, r"labels must be >= 0.*index 2 \(value -2\)"),
        (X_OK, Y_OK, {"tile": True}, TypeError, r"tile must be an integer >= 1, got True"),
        (X_OK, Y_OK, {"bandwidth": -1.0}, ValueError, r"positive finite number, got -1.0"),
        (X_OK, Y_OK, {"bandwidth": 0}, ValueError, r"positive finite number, got 0"),
        (X_OK, Y_OK, {"bandwidth": float("nan")}, ValueError, r"positive finite number, got nan"),
        (X_OK, Y_OK, {"bandwidth": float("inf")}, ValueError, r"positive finite number, got inf"),
        (X_OK, Y_OK, {"bandwidth": "silverman"}, ValueError, r"\['median', 'scott'\], got 'silverman'"),
        (X_OK, Y_OK, {"bandwidth": None}, TypeError, r"bandwidth must be.*got None"),
        (X_OK, Y_OK, {"bandwidth": True}, TypeError, r"bandwidth must be.*got True"),
        (X_OK, Y_OK, {"tile": 0}, ValueError, r"tile must be an integer >= 1, got 0"),
        (X_OK, Y_OK, {"tile": 2.5}, TypeError, r"tile must be an integer >= 1, got 2.5"),
        (X_OK, Y_OK, {"n_threads": 0}, ValueError, r"n_threads must be an integer >= 1, got 0"),
        (X_OK, Y_OK, {"sample_size": 1}, ValueError, r"sample_size must be an integer >= 2, got 1"),
        (X_OK, Y_OK, {"seed": "x"}, TypeError, r"seed must be an integer, got 'x'"),
    ],
)
def test_validation_errors(features, labels, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        kde_scores(features, labels, **kwargs)


def test_non_finite_features_reported():
    x = np.zeros((5, 3))
    x[1, 2] = np.nan
    x[3, 0] = np.inf
    with pytest.raises(ValueError, match=r"found 2 non-finite value\(s\), the first at index \(1, 2\) \(value nan\)"):
        kde_scores(x, np.zeros(5, dtype=int))
    big = np.zeros((3, 2))
    big[2, 1] = 1e300  # finite in float64, not in float32
    with pytest.raises(ValueError, match=r"finite in float32.*index \(2, 1\)"):
        kde_scores(big, np.zeros(3, dtype=int))


def test_select_bandwidth_validation():
    with pytest.raises(ValueError, match=r"features must be 2-D"):
        select_bandwidth(np.zeros(3))
    with pytest.raises(ValueError, match=r"\['median', 'scott'\], got 'mean'"):
        select_bandwidth(X_OK, "mean")
