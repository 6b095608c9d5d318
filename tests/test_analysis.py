"""Correlations with bootstrap intervals, label-noise detection and split-half, against SciPy / scikit-learn."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import kendalltau, spearmanr
from sklearn.metrics import average_precision_score, roc_auc_score

from cscore_lab.analysis import (
    CorrelationTable, DetectionTable, bootstrap_rank_correlations, correlate, detect_label_noise, split_half,
)
from cscore_lab.analysis import _codes, _rank_corr_kernel
from cscore_lab.cscores import CScores
from cscore_lab.proxies.suite import ProxyTable


@settings(max_examples=60, deadline=None)
@given(n=st.integers(3, 80), levels=st.integers(2, 12), seed=st.integers(0, 100_000))
def test_kernel_matches_scipy_with_ties(n, levels, seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, levels, size=n).astype(float)
    y = np.round(x + rng.normal(scale=levels / 3, size=n))
    cx, kx = _codes(x)
    cy, ky = _codes(y)
    out = np.empty((1, 2))
    _rank_corr_kernel(cx, cy, kx, ky, np.arange(n)[None, :], out)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        assert np.isnan(out).all()
    else:
        np.testing.assert_allclose(out[0], [spearmanr(x, y).statistic, kendalltau(x, y).statistic], atol=1e-12)


def test_bootstrap_resamples_match_scipy_on_the_same_indices():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=40), rng.normal(size=40)
    boot = bootstrap_rank_correlations(x, y, n_boot=5, seed=11)
    idx = np.random.default_rng(11).integers(0, 40, size=(5, 40))
    for b in range(5):
        xb, yb = x[idx[b]], y[idx[b]]
        np.testing.assert_allclose(boot[b], [spearmanr(xb, yb).statistic, kendalltau(xb, yb).statistic], atol=1e-12)


@pytest.fixture
def synthetic():
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 3, size=n)
    c = np.clip(rng.beta(5, 1, size=n) + 0.02 * labels, 0, 1).round(2)  # ties, like real C-scores
    cs = CScores(scores=c, labels=labels, dataset="synthetic", reliability=0.9)
    proxies = {"good": c + rng.normal(scale=0.05, size=n), "noisy": c + rng.normal(scale=0.5, size=n),
               "anti": -c, "constant": np.ones(n)}
    return cs, proxies


def test_correlate_matches_scipy_and_intervals_hold_estimates(synthetic):
    cs, proxies = synthetic
    table = correlate(proxies, cs, n_boot=200, seed=1)
    assert table.groups == ["all", "0", "1", "2"] and table.proxies == list(proxies)
    for p, name in enumerate(proxies):
        for g, label in enumerate([None, 0, 1, 2]):
            member = np.ones(len(cs), bool) if label is None else cs.labels == label
            x, y = proxies[name][member], cs.scores[member]
            assert table.n[p, g] == member.sum()
            if name == "constant":
                assert np.isnan(table.spearman[p, g]) and np.isnan(table.kendall_low[p, g])
                continue
            np.testing.assert_allclose(table.spearman[p, g], spearmanr(x, y).statistic)
            np.testing.assert_allclose(table.kendall[p, g], kendalltau(x, y).statistic)
            for stat in ("spearman", "kendall"):
                low, est, high = (getattr(table, f"{stat}{s}")[p, g] for s in ("_low", "", "_high"))
                assert low - 1e-12 <= est <= high + 1e-12, (name, label, stat, low, est, high)
    overall = table.overall()
    assert list(overall.index[:3]) == ["good", "noisy", "anti"]
    assert overall.loc["anti", "spearman"] == pytest.approx(-1.0)


def test_correlate_is_reproducible_and_paired(synthetic):
    cs, proxies = synthetic
    a = correlate(proxies, cs, n_boot=50, seed=3, per_class=False)
    b = correlate(proxies, cs, n_boot=50, seed=3, per_class=False)
    np.testing.assert_array_equal(a.spearman_low, b.spearman_low)
    assert a.groups == ["all"]
    # "anti" is exactly -cscore, so on every (shared) resample its correlation is exactly -1
    i = a.proxies.index("anti")
    assert a.spearman_low[i, 0] == pytest.approx(-1.0) and a.spearman_high[i, 0] == pytest.approx(-1.0)


def test_correlate_drops_non_finite_pairs(synthetic):
    cs, proxies = synthetic
    p = proxies["good"].copy()
    p[:10] = np.nan
    table = correlate({"good": p}, cs, n_boot=0, per_class=False)
    assert table.n[0, 0] == len(cs) - 10
    np.testing.assert_allclose(table.spearman[0, 0], spearmanr(p[10:], cs.scores[10:]).statistic)
    assert np.isnan(table.spearman_low).all()  # n_boot=0: no intervals


def test_correlate_errors(synthetic):
    cs, proxies = synthetic
    with pytest.raises(ValueError, match="'short' has shape .* 300 examples"):
        correlate({"short": np.zeros(10)}, cs)
    with pytest.raises(ValueError, match="n_boot"):
        correlate(proxies, cs, n_boot=-1)
    with pytest.raises(TypeError, match="CScores"):
        correlate(proxies, cs.scores)
    table = ProxyTable(proxies, cs.labels, "other", fingerprint="a" * 64)
    other = CScores(scores=cs.scores, labels=cs.labels, fingerprint="b" * 64)
    with pytest.raises(ValueError, match="different data"):
        correlate(table, other)
    with pytest.raises(ValueError, match="different labels"):
        correlate(ProxyTable(proxies, (cs.labels + 1) % 3), cs)


def test_correlation_table_round_trip(tmp_path, synthetic):
    cs, proxies = synthetic
    names = ("zero", "one", "two")
    table = correlate(ProxyTable(proxies, cs.labels, class_names=names), cs, n_boot=20)
    assert table.groups == ["all", *names]
    path = table.save(tmp_path / "corr")
    back = CorrelationTable.load(path)
    assert back.proxies == table.proxies and back.groups == table.groups and back.meta == table.meta
    for name in CorrelationTable._ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(table, name))
    df = table.to_frame()
    assert len(df) == 4 * 4 and {"proxy", "group", "spearman_low", "kendall_high", "n"} <= set(df.columns)
    assert table.per_class("kendall").shape == (4, 4)
    assert "good" in table._repr_html_() and "reliability 0.900" in table.to_string()


def test_detection_known_answer():
    mask = np.array([True, False, True, False, False, False])
    score = np.arange(6.0)  # low = suspect: order 0 (flipped), 1, 2 (flipped), 3, 4, 5
    t = detect_label_noise({"s": score, "perfect": np.where(mask, 0.0, 1.0), "worst": np.where(mask, 1.0, 0.0)}, mask)
    np.testing.assert_allclose(t.auroc, [7 / 8, 1.0, 0.0])
    np.testing.assert_allclose(t.average_precision[:2], [(1 + 2 / 3) / 2, 1.0])
    np.testing.assert_allclose(t.precision_at_k, [0.5, 1.0, 0.0])
    assert t.average_precision[0] == pytest.approx(average_precision_score(mask, -score))
    assert t.auroc[0] == pytest.approx(roc_auc_score(mask, -score))
    assert t.meta == {"k": 2, "n": 6, "prevalence": 2 / 6, "what": "flipped labels"}
    assert list(t.to_frame().index) == ["perfect", "s", "worst"]


def test_detection_ties_nan_and_cscores():
    mask = np.array([True, False, False, False])
    t = detect_label_noise({"tied": np.array([0.0, 0.0, 0.0, 1.0]), "nan": np.array([np.nan, 0.0, 0.1, 0.2])}, mask,
                           cscores=CScores(scores=np.array([0.1, 0.9, 0.8, 0.7]), labels=np.zeros(4, dtype=int)))
    assert t.scores == ["cscore", "tied", "nan"]
    np.testing.assert_allclose(t.precision_at_k, [1.0, 1 / 3, 1.0])  # a 3-way tie at the cut shares the place
    np.testing.assert_allclose(t.auroc, [1.0, 4 / 6, 1.0])  # NaN ranks as most suspect


def test_detection_errors():
    s = {"s": np.arange(4.0)}
    with pytest.raises(ValueError, match="boolean array, got dtype int64"):
        detect_label_noise(s, np.array([1, 0, 0, 0]))
    with pytest.raises(ValueError, match="'s' has shape \\(4,\\), but there are 3 examples"):
        detect_label_noise(s, np.array([True, False, False]))
    with pytest.raises(ValueError, match="some but not all"):
        detect_label_noise(s, np.zeros(4, dtype=bool))
    with pytest.raises(ValueError, match="cscores has 2 examples"):
        detect_label_noise(s, np.array([True, False, False, False]), cscores=CScores(np.ones(2), np.zeros(2, int)))


def test_detection_table_round_trip(tmp_path):
    mask = np.array([True, False, True, False, False])
    t = detect_label_noise({"a": np.arange(5.0), "b": -np.arange(5.0)}, mask)
    back = DetectionTable.load(t.save(tmp_path / "det.npz"))
    assert back.scores == t.scores and back.meta == t.meta
    np.testing.assert_array_equal(back.auroc, t.auroc)
    assert "AUROC" in t.to_string() and "Label-noise" in t._repr_html_()
    with pytest.raises(ValueError, match="format"):
        CorrelationTable.load(tmp_path / "det.npz")


def test_split_half():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=50), rng.normal(size=50)
    assert split_half(a, b) == pytest.approx(spearmanr(a, b).statistic)
    assert split_half(CScores(a, np.zeros(50, int)), a) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="one length"):
        split_half(a, b[:10])
