"""Memorization (Feldman & Zhang 2020) from the holdout grid: against a brute-force reference, and on
a constructed case with real training (flipped labels are memorized, regular examples are not)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from cscore_lab.memorization import Memorization, MemorizationAccumulator

RATIOS = (0.1, 0.5, 0.9)


def random_shards(n, seed, *, models=(3, 4, 5), shards_per_ratio=2, ratios=RATIOS):
    """(ratio, runs, trained, correct) tuples of random masks; correctness depends on being trained."""
    rng = np.random.default_rng(seed)
    out, run = [], {}
    p_in, p_out = rng.random(n), rng.random(n)
    for ratio, m in zip(ratios, models):
        for _ in range(shards_per_ratio):
            t = rng.random((m, n)) < ratio
            t[:, 0] = True  # example 0 is always trained on: memorization undefined
            t[:, 1] = False  # example 1 is never trained on: undefined too
            c = np.where(t, rng.random((m, n)) < p_in, rng.random((m, n)) < p_out)
            start = run.get(ratio, 0)
            run[ratio] = start + m
            out.append((ratio, np.arange(start, start + m), t, c))
    return out


def brute_memorization(shards, n, ratios, min_models=1, runs_parity=None):
    """Loops over examples and ratios, straight from the definition."""
    s_n = len(ratios)
    per, var = np.full((s_n, n), np.nan), np.full((s_n, n), np.nan)
    p_in, p_out = np.full((s_n, n), np.nan), np.full((s_n, n), np.nan)
    for s, r in enumerate(ratios):
        rows = [(t, c) for ratio, runs, t, c in shards if ratio == r
                for t, c, run in zip(t, c, runs) if runs_parity is None or run % 2 == runs_parity]
        for i in range(n):
            inn = [c[i] for t, c in rows if t[i]]
            out = [c[i] for t, c in rows if not t[i]]
            if len(inn) >= min_models and len(out) >= min_models:
                a, b = np.mean(inn), np.mean(out)
                p_in[s, i], p_out[s, i] = a, b
                per[s, i] = a - b
                var[s, i] = a * (1 - a) / len(inn) + b * (1 - b) / len(out)
    value, stderr = np.full(n, np.nan), np.full(n, np.nan)
    acc_in, acc_out = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        ok = np.isfinite(per[:, i])
        if ok.any():
            value[i] = per[ok, i].mean()
            stderr[i] = math.sqrt(var[ok, i].sum()) / ok.sum()
            acc_in[i], acc_out[i] = p_in[ok, i].mean(), p_out[ok, i].mean()
    return per, value, stderr, acc_in, acc_out


@pytest.mark.parametrize("seed,min_models", [(0, 1), (1, 1), (2, 2), (3, 3)])
def test_matches_brute_force(seed, min_models):
    n = 60
    shards = random_shards(n, seed)
    acc = MemorizationAccumulator(n, RATIOS)
    for ratio, runs, t, c in shards:
        acc.add(ratio, t, c, runs=runs)
    mem = acc.result(np.arange(n) % 10, min_models=min_models)
    per, value, stderr, acc_in, acc_out = brute_memorization(shards, n, RATIOS, min_models)
    np.testing.assert_allclose(mem.per_ratio, per, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(mem.memorization, value, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(mem.stderr, stderr, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(mem.in_accuracy, acc_in, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(mem.heldout_accuracy, acc_out, rtol=0, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(mem.memorization, mem.in_accuracy - mem.heldout_accuracy, atol=1e-12, equal_nan=True)
    assert np.isnan(mem.memorization[:2]).all() and np.isfinite(mem.memorization[2:]).any()
    np.testing.assert_array_equal(mem.n_ratios, np.isfinite(per).sum(axis=0))
    np.testing.assert_array_equal(mem.regularity, -mem.memorization)
    assert mem.models_per_ratio == (6, 8, 10)


def test_hand_computed_case():
    # One example, one ratio, five models: trained by 0, 1, 2 (right: 0, 1), held out by 3, 4 (right: 3).
    t = np.array([[1], [1], [1], [0], [0]], bool)
    c = np.array([[1], [1], [0], [1], [0]], bool)
    acc = MemorizationAccumulator(1, (0.5,))
    acc.add(0.5, t, c)
    mem = acc.result([3])
    p1, p0 = 2 / 3, 1 / 2
    assert mem.memorization[0] == pytest.approx(p1 - p0)
    assert mem.stderr[0] == pytest.approx(math.sqrt(p1 * (1 - p1) / 3 + p0 * (1 - p0) / 2))
    assert (mem.in_counts[0, 0], mem.in_correct[0, 0], mem.out_counts[0, 0], mem.out_correct[0, 0]) == (3, 2, 2, 1)


def test_split_half_reliability_is_spearman_of_the_halves():
    from scipy.stats import spearmanr

    n = 80
    shards = random_shards(n, 5, models=(6, 6, 6))
    acc = MemorizationAccumulator(n, RATIOS)
    for ratio, runs, t, c in shards:
        acc.add(ratio, t, c, runs=runs)
    halves = [brute_memorization(shards, n, RATIOS, runs_parity=h)[1] for h in (0, 1)]
    ok = np.isfinite(halves[0]) & np.isfinite(halves[1])
    expected = spearmanr(halves[0][ok], halves[1][ok]).statistic
    assert acc.result(np.zeros(n, int)).reliability == pytest.approx(expected)


def test_shards_in_any_order_and_split_give_the_same_counts():
    n = 30
    shards = random_shards(n, 7)
    a, b = MemorizationAccumulator(n, RATIOS), MemorizationAccumulator(n, RATIOS)
    for ratio, runs, t, c in shards:
        a.add(ratio, t, c, runs=runs)
    for ratio, runs, t, c in reversed(shards):
        for row in range(len(runs)):  # one model at a time
            b.add(ratio, t[row:row + 1], c[row:row + 1], runs=runs[row:row + 1])
    ra, rb = a.result(np.zeros(n, int)), b.result(np.zeros(n, int))
    for name in ("in_counts", "in_correct", "out_counts", "out_correct"):
        np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name))
    assert ra.reliability == rb.reliability
    assert a.models == b.models == sum(len(s[1]) for s in shards)


def test_add_shard_reads_the_shard_format():
    n = 20
    ratio, runs, t, c = random_shards(n, 8, shards_per_ratio=1)[1]
    shard = type("Shard", (), {"key": "k", "ratio": ratio, "runs": runs, "trained": t, "correct": c})()
    a, b = MemorizationAccumulator(n, RATIOS), MemorizationAccumulator(n, RATIOS)
    assert a.add_shard(shard)
    b.add(ratio, t, c, runs=runs)
    other = type("Shard", (), {"key": "k", "ratio": 0.3, "runs": runs, "trained": t, "correct": c})()
    assert not a.add_shard(other)  # a ratio of another plan: not counted
    np.testing.assert_array_equal(a.result(np.zeros(n, int)).memorization, b.result(np.zeros(n, int)).memorization)
    old = type("OldShard", (), {"key": "r0.5_runs0-4", "ratio": ratio, "runs": runs, "correct": c})()
    with pytest.raises(ValueError, match="r0.5_runs0-4.*no 'trained' mask"):
        a.add_shard(old)


def test_table_save_load_and_views(tmp_path):
    n = 40
    acc = MemorizationAccumulator(n, RATIOS)
    for ratio, runs, t, c in random_shards(n, 9):
        acc.add(ratio, t, c, runs=runs)
    mem = acc.result(np.arange(n) % 4, dataset="toy", fingerprint="abc", meta={"recipe": "x"})
    df = mem.to_frame()
    assert list(df.columns[:6]) == ["label", "memorization", "stderr", "in_accuracy", "heldout_accuracy", "ratios_used"]
    assert [c for c in df.columns if c.startswith("mem_ratio_")] == ["mem_ratio_0.1", "mem_ratio_0.5", "mem_ratio_0.9"]
    top = mem.most_memorized(5)
    finite = np.sort(mem.memorization[np.isfinite(mem.memorization)])[::-1]
    np.testing.assert_array_equal(mem.memorization[top], finite[:5])
    assert np.isnan(mem.memorization[mem.most_memorized(n)[-2:]]).all()  # undefined ones last
    path = mem.save(tmp_path / "mem")
    assert path.name == "mem.npz"
    back = Memorization.load(path)
    for name in ("labels", "in_counts", "in_correct", "out_counts", "out_correct", "memorization", "stderr"):
        np.testing.assert_array_equal(getattr(back, name), getattr(mem, name))
    assert (back.ratios, back.dataset, back.fingerprint, back.meta) == (mem.ratios, "toy", "abc", {"recipe": "x"})
    assert back.reliability == mem.reliability or (math.isnan(back.reliability) and math.isnan(mem.reliability))
    folder = tmp_path / "run"
    folder.mkdir()
    mem.save(folder)
    assert (folder / "memorization.npz").is_file()
    assert Memorization.load(folder).summary() == mem.summary() or np.isnan(mem.reliability)
    html = mem._repr_html_()
    assert "Memorization of toy" in html and "regularity = -memorization" in html
    s = mem.summary()
    assert s["examples"] == n and s["models"] == acc.models and "Memorization(dataset='toy'" in repr(mem)


def test_bad_inputs_are_clear():
    acc = MemorizationAccumulator(5, (0.5,))
    ok = np.zeros((2, 5), bool)
    with pytest.raises(ValueError, match=r"trained has shape \(2, 4\), expected \(M, 5\)"):
        acc.add(0.5, np.zeros((2, 4), bool), ok)
    with pytest.raises(ValueError, match=r"correct has shape \(3, 5\), expected \(2, 5\)"):
        acc.add(0.5, ok, np.zeros((3, 5), bool))
    with pytest.raises(TypeError, match="trained must be a bool.*float64"):
        acc.add(0.5, np.zeros((2, 5)), ok)
    with pytest.raises(ValueError, match=r"only 0 and 1, found values in \[2, 2\]"):
        acc.add(0.5, np.full((2, 5), 2), ok)
    with pytest.raises(ValueError, match=r"ratio 0.3 is not one of .*\[0.5\]"):
        acc.add(0.3, ok, ok)
    with pytest.raises(ValueError, match="runs must be 2 integer run indices"):
        acc.add(0.5, ok, ok, runs=[0])
    with pytest.raises(ValueError, match="closer than 1e-6"):
        MemorizationAccumulator(5, (0.5, 0.5000001))
    with pytest.raises(ValueError, match=r"in \(0, 1\)"):
        MemorizationAccumulator(5, (1.5,))
    with pytest.raises(ValueError, match="n_examples must be at least 1"):
        MemorizationAccumulator(0, (0.5,))
    with pytest.raises(ValueError, match=r"labels has shape \(4,\), expected \(5,\)"):
        acc.result(np.zeros(4, int))
    with pytest.raises(ValueError, match="min_models must be at least 1"):
        acc.result(np.zeros(5, int), min_models=0)
    acc.add(0.5, np.ones((2, 5), bool), ok)  # 0/1 integers and bools mix
    with pytest.raises(ValueError, match="counts are inconsistent"):
        Memorization(np.zeros(1, int), (0.5,), [[1]], [[2]], [[1]], [[0]])


# ------------------------------------------------------------------------- the constructed case
def train_digits_grid(n=300, flipped=(), *, ratios=(0.3, 0.5, 0.7), runs=8, epochs=100, duplicates=None,
                      n_train=None):
    """Real training on a digits subset with some labels flipped: a small holdout grid.

    ``duplicates`` maps an example to the one it becomes a copy of (image and flipped label);
    subsets are drawn from the first ``n_train`` examples (default all ``n``), the rest only
    evaluated. Returns the labels and ``(ratio, runs, trained [M, n], correct [M, n])`` per ratio.
    """
    torch = pytest.importorskip("torch")
    from cscore_lab.data import load_digits
    from cscore_lab.recipes import get_preset
    from cscore_lab.trainer import model_seeds, predict_correct, train_group

    ds = load_digits()
    inputs = ds.inputs[:n].reshape(n, -1) / float(ds.value_range)
    labels = ds.labels[:n].copy()
    flipped = np.asarray(flipped, dtype=np.int64)
    labels[flipped] = (labels[flipped] + 1 + np.arange(len(flipped)) % 9) % 10
    for copy, source in (duplicates or {}).items():
        inputs[copy], labels[copy] = inputs[source], labels[source]
    x, y = torch.from_numpy(inputs).float(), torch.from_numpy(labels)
    n_train = n if n_train is None else n_train
    # Enough epochs that a model fits its whole subset, mislabeled examples included.
    recipe = dataclasses.replace(get_preset("digits-mlp").recipe, epochs=epochs)
    grid = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one torch thread per shard, as the backends train
    try:
        for ratio in ratios:
            seeds = [model_seeds(0, ratio, run) for run in range(runs)]
            subsets = [np.sort(np.random.default_rng(s.subset).choice(n_train, int(ratio * n_train), replace=False))
                       for s in seeds]
            group = train_group(x, y, subsets, recipe, seeds, num_classes=10)
            trained = np.zeros((runs, n), bool)
            for m, sub in enumerate(subsets):
                trained[m, sub] = True
            grid.append((ratio, np.arange(runs), trained, predict_correct(group, x, y)))
    finally:
        torch.set_num_threads(threads)
    return labels, grid


def test_flipped_labels_are_memorized_and_regular_examples_are_not():
    from cscore_lab.cscores import aggregate_counts

    n, flipped = 300, np.arange(0, 300, 50)
    labels, grid = train_digits_grid(n, flipped)
    acc = MemorizationAccumulator(n, [g[0] for g in grid])
    heldout = np.stack([(~t).sum(0) for _, _, t, _ in grid])
    right = np.stack([(c & ~t).sum(0) for _, _, t, c in grid])
    for ratio, runs, t, c in grid:
        acc.add(ratio, t, c, runs=runs)
    mem = acc.result(labels)
    _, cscore, _ = aggregate_counts(right, heldout)
    # Only training on a flipped example fits it: memorization near 1, C-score near 0.
    assert (mem.memorization[flipped] > 0.8).all(), mem.memorization[flipped]
    assert (cscore[flipped] < 0.2).all(), cscore[flipped]
    assert (mem.in_accuracy[flipped] > 0.8).all()
    assert set(flipped) <= set(mem.most_memorized(len(flipped) + 3))
    # Regular examples: right whether trained on or not, memorization near 0 and C-score near 1.
    clean = np.setdiff1d(np.arange(n), flipped)
    regular = (mem.memorization[clean] < 0.2) & (cscore[clean] > 0.8)
    assert regular.mean() > 0.8, regular.mean()
    assert np.median(mem.memorization[clean]) < 0.05 and np.median(cscore[clean]) > 0.95
