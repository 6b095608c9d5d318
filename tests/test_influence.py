"""Influence (Feldman & Zhang 2020) from the holdout grid: the tiled top-k estimator against a
brute-force reference (values, standard errors, the top-k itself), its memory bound, the table,
and a constructed case with real training (duplicated mislabeled examples influence each other)."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from cscore_lab.influence import Influence, InfluenceAccumulator
from cscore_lab.memorization import MemorizationAccumulator

RATIOS = (0.2, 0.5, 0.8)


def random_grid(n, n_eval, seed, *, models=(6, 7, 5), shards_per_ratio=2):
    """(ratio, trained [M, N], correct [M, N], eval_correct [M, N_eval]) of random masks, where some
    training examples help some targets (so the top of each list is not pure noise)."""
    rng = np.random.default_rng(seed)
    helper = rng.integers(0, n, size=n_eval)  # target j is helped by training example helper[j]
    grid = []
    for ratio, m in zip(RATIOS, models):
        for _ in range(shards_per_ratio):
            t = rng.random((m, n)) < ratio
            c = rng.random((m, n)) < 0.5
            e = np.where(t[:, helper], rng.random((m, n_eval)) < 0.9, rng.random((m, n_eval)) < 0.4)
            grid.append((ratio, t, c, e))
    return grid


def brute_influence(grid, n, target, min_models=1):
    """Dense value and stderr [N, N_targets] from the definition, one pair and one ratio at a time."""
    per_ratio = {}
    for ratio, t, c, e in grid:
        per_ratio.setdefault(ratio, []).append((t, c if target == "train" else e))
    per_ratio = {r: (np.concatenate([a for a, _ in v]), np.concatenate([b for _, b in v])) for r, v in per_ratio.items()}
    n_targets = next(iter(per_ratio.values()))[1].shape[1]
    value, stderr = np.full((n, n_targets), np.nan), np.full((n, n_targets), np.nan)
    for i in range(n):
        for j in range(n_targets):
            if target == "train" and i == j:
                continue
            diffs, var = [], 0.0
            for t, c in per_ratio.values():
                held = ~t[:, j] if target == "train" else np.ones(len(t), bool)
                inn, out = t[:, i] & held, ~t[:, i] & held
                if inn.sum() < min_models or out.sum() < min_models:
                    continue
                p1, p0 = c[inn, j].mean(), c[out, j].mean()
                diffs.append(p1 - p0)
                var += p1 * (1 - p1) / inn.sum() + p0 * (1 - p0) / out.sum()
            if diffs:
                value[i, j] = np.mean(diffs)
                stderr[i, j] = math.sqrt(var) / len(diffs)
    return value, stderr


def accumulate(grid, n, n_eval, target):
    acc = InfluenceAccumulator(n, RATIOS, n_eval=n_eval if target == "eval" else None)
    for ratio, t, c, e in grid:
        if target == "eval":
            acc.add(ratio, t, eval_correct=e)
        else:
            acc.add(ratio, t, c)
    return acc


def check_against_dense(res: Influence, value: np.ndarray, stderr: np.ndarray, k: int) -> None:
    """The kept lists are a top-k of the dense table: exact values and errors, sorted, ties by index."""
    for j in range(value.shape[1]):
        col = value[:, j]
        defined = np.isfinite(col)
        kept = res.top_index[j][res.top_index[j] >= 0]
        assert len(kept) == min(k, defined.sum())
        assert (res.top_index[j][len(kept):] == -1).all() and np.isnan(res.top_value[j][len(kept):]).all()
        v = res.top_value[j][:len(kept)]
        np.testing.assert_allclose(v, col[kept], rtol=0, atol=1e-12)
        np.testing.assert_allclose(res.top_stderr[j][:len(kept)], stderr[kept, j], rtol=0, atol=1e-12)
        # they are the k largest, and a value tied with the k-th is kept only if its index is lower
        np.testing.assert_allclose(v, np.sort(col[defined])[::-1][:k], rtol=0, atol=1e-12)
        if len(kept) == k:
            tied = np.nonzero(np.isclose(col, v[-1], rtol=0, atol=1e-12))[0]
            np.testing.assert_array_equal(np.sort(kept[np.isin(kept, tied)]), tied[:np.isin(kept, tied).sum()])
        assert np.all(np.diff(v) <= 0)
        ties = np.diff(v) == 0
        assert np.all(np.diff(kept)[ties] > 0)


@pytest.mark.parametrize("target", ["eval", "train"])
@pytest.mark.parametrize("seed,min_models", [(0, 1), (1, 2)])
def test_top_k_matches_brute_force(target, seed, min_models):
    n, n_eval = 45, 23
    grid = random_grid(n, n_eval, seed)
    acc = accumulate(grid, n, n_eval, target)
    value, stderr = brute_influence(grid, n, target, min_models)
    labels = np.arange(n) % 3
    eval_labels = np.arange(n_eval) % 3 if target == "eval" else None
    for k in (1, 4, n + 5):  # k beyond N: every defined pair, padded
        res = acc.result(labels, eval_labels, k=k, min_models=min_models, n_threads=2)
        assert res.target == target and res.k == k
        check_against_dense(res, value, stderr, k)
    if target == "train":
        assert not (res.top_index == np.arange(n)[:, None]).any()  # i -> i is never reported


@pytest.mark.parametrize("target", ["eval", "train"])
def test_tiles_and_threads_do_not_change_the_result(target):
    n, n_eval = 131, 61  # not multiples of 8
    grid = random_grid(n, n_eval, 3, models=(9, 10, 8))
    acc = accumulate(grid, n, n_eval, target)
    labels, eval_labels = np.zeros(n, int), (np.zeros(n_eval, int) if target == "eval" else None)
    ref = acc.result(labels, eval_labels, k=6, n_threads=1)
    # a budget this small forces narrow tiles: many row tiles and column blocks
    for budget, threads in ((60_000, 1), (60_000, 3), (1 << 22, 2)):
        res = acc.result(labels, eval_labels, k=6, memory_budget=budget, n_threads=threads)
        np.testing.assert_array_equal(res.top_index, ref.top_index)
        np.testing.assert_array_equal(res.top_value, ref.top_value)
        np.testing.assert_array_equal(res.top_stderr, ref.top_stderr)
    value, stderr = brute_influence(grid, n, target)
    check_against_dense(ref, value, stderr, 6)
    with pytest.raises(ValueError, match="memory_budget of 1000 bytes is too small"):
        acc.result(labels, eval_labels, k=6, memory_budget=1000)


def test_hand_computed_pair():
    # Four models at one ratio; training example 0 is in models 0, 1, example 1 in models 2, 3;
    # the target is right in models 0, 1, 2.
    t = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], bool)
    e = np.array([[1], [1], [1], [0]], bool)
    acc = InfluenceAccumulator(2, (0.5,), n_eval=1)
    acc.add(0.5, t, eval_correct=e)
    res = acc.result([0, 1], [0], k=2)
    # infl(0 -> 0) = 2/2 - 1/2 = 0.5, se = sqrt(0 + 0.25/2); infl(1 -> 0) = 1/2 - 2/2 = -0.5, same se
    np.testing.assert_array_equal(res.top_index[0], [0, 1])
    np.testing.assert_allclose(res.top_value[0], [0.5, -0.5])
    np.testing.assert_allclose(res.top_stderr[0], [math.sqrt(0.125), math.sqrt(0.125)])


def peak_bytes(fn) -> int:
    """Peak traced allocation (NumPy reports to tracemalloc) while ``fn()`` runs."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_memory_stays_within_the_bound_whatever_n():
    n_eval, k, budget = 400, 5, 1 << 20
    peaks, held = {}, {}
    for n in (4_000, 32_000):
        rng = np.random.default_rng(n)
        acc = InfluenceAccumulator(n, RATIOS, n_eval=n_eval)
        for ratio in RATIOS:
            acc.add(ratio, rng.random((16, n)) < ratio, eval_correct=rng.random((16, n_eval)) < 0.5)
        labels, eval_labels = np.zeros(n, int), np.zeros(n_eval, int)
        acc.result(labels, eval_labels, k=k, memory_budget=budget)  # warm the kernels
        bound = acc.memory_bound(k=k, memory_budget=budget)
        for threads in (1, 2):
            peak = peak_bytes(lambda a=acc, y=labels, ye=eval_labels, t=threads:
                              a.result(y, ye, k=k, memory_budget=budget, n_threads=t))
            assert peak <= bound, (n, threads, peak, bound)
            peaks[n, threads] = peak
        held[n] = acc.nbytes
    # 8 times the training examples: the working memory grows only by one copy of the packed masks
    # (one thread: two threads' temporaries overlap by chance, by a few kB).
    assert peaks[32_000, 1] - peaks[4_000, 1] <= (held[32_000] - held[4_000]) + 1024, (peaks, held)


def test_memory_bound_holds_for_training_targets():
    n, k, budget = 3_000, 4, 1 << 20
    rng = np.random.default_rng(0)
    acc = InfluenceAccumulator(n, RATIOS)
    for ratio in RATIOS:
        acc.add(ratio, rng.random((12, n)) < ratio, rng.random((12, n)) < 0.7)
    labels = np.zeros(n, int)
    acc.result(labels, k=k, memory_budget=budget)
    peak = peak_bytes(lambda: acc.result(labels, k=k, memory_budget=budget, n_threads=2))
    assert peak <= acc.memory_bound(k=k, memory_budget=budget), peak


def test_accumulator_keeps_only_bit_packed_masks():
    n, n_eval = 1_000, 300
    acc = InfluenceAccumulator(n, RATIOS, n_eval=n_eval)
    rng = np.random.default_rng(0)
    for ratio in RATIOS:
        for _ in range(4):
            acc.add(ratio, rng.random((4, n)) < ratio, eval_correct=rng.random((4, n_eval)) < 0.5)
    assert acc.models == 48 and acc.models_per_ratio == (16, 16, 16)
    assert acc.nbytes == 48 * (n // 8 + math.ceil(n_eval / 8))


def test_table_pairs_for_example_and_save_load(tmp_path):
    n, n_eval = 40, 20
    grid = random_grid(n, n_eval, 4)
    acc = accumulate(grid, n, n_eval, "eval")
    # k = N: every pair is kept, so the high-influence pairs are all of them, as in a dense table
    res = acc.result(np.arange(n) % 4, np.arange(n_eval) % 4, k=n, dataset="toy", eval_dataset="toy-test")
    value, _ = brute_influence(grid, n, "eval")
    mem_acc = MemorizationAccumulator(n, RATIOS)
    for ratio, t, c, _ in grid:
        mem_acc.add(ratio, t, c)
    mem = mem_acc.result(np.arange(n) % 4)

    df = res.to_frame()
    assert len(df) == int((res.top_index >= 0).sum())
    assert list(df.columns) == ["eval_index", "rank", "train_index", "influence", "stderr", "eval_label", "train_label"]

    with pytest.warns(UserWarning, match="all k=40 kept influences above -1"):
        res.pairs(-1.0)  # every list is full above the threshold: more pairs could exist
    pairs = res.pairs(0.15, memorization=mem)
    assert (pairs["influence"] > 0.15).all() and pairs["influence"].is_monotonic_decreasing
    assert len(pairs) == int((value > 0.15).sum()) and pairs.attrs["saturated_targets"] == 0
    np.testing.assert_array_equal(pairs["memorization"], mem.memorization[pairs["train_index"]])
    np.testing.assert_array_equal(pairs["memorization_stderr"], mem.stderr[pairs["train_index"]])
    np.testing.assert_allclose(pairs["influence"], value[pairs["train_index"], pairs["eval_index"]], atol=1e-12)
    np.testing.assert_array_equal(pairs["same_label"], pairs["eval_label"] == pairs["train_label"])
    with pytest.raises(ValueError, match=r"memorization has shape \(3,\), expected \(40,\)"):
        res.pairs(memorization=np.zeros(3))

    one = res.for_example(7, memorization=mem.memorization)
    np.testing.assert_array_equal(one["train_index"], res.top_index[7])
    assert list(one.columns) == ["rank", "train_index", "influence", "stderr", "train_label", "memorization"]
    assert one.attrs == {"eval_index": 7, "eval_label": 3}
    for outside in (20, -1):  # a negative index is a mistake here, not "from the end"
        with pytest.raises(ValueError, match=r"target index in \[0, 20\)"):
            res.for_example(outside)

    back = Influence.load(res.save(tmp_path / "infl"))
    for name in ("top_index", "top_value", "top_stderr", "train_labels", "eval_labels"):
        np.testing.assert_array_equal(getattr(back, name), getattr(res, name))
    assert (back.ratios, back.models_per_ratio, back.target, back.dataset, back.eval_dataset) == \
        (res.ratios, res.models_per_ratio, "eval", "toy", "toy-test")
    folder = tmp_path / "run"
    folder.mkdir()
    res.save(folder)
    assert Influence.load(folder).summary() == res.summary()
    assert "Influence of training examples on evaluation examples" in res._repr_html_()
    assert "Influence(target='eval', targets=20" in repr(res)


def test_bad_inputs_are_clear():
    acc = InfluenceAccumulator(6, (0.5,), n_eval=4)
    t = np.zeros((2, 6), bool)
    with pytest.raises(ValueError, match=r"pass eval_correct \[M, 4\]"):
        acc.add(0.5, t, t)
    with pytest.raises(ValueError, match=r"eval_correct has shape \(2, 5\), expected \(2, 4\)"):
        acc.add(0.5, t, eval_correct=np.zeros((2, 5), bool))
    with pytest.raises(ValueError, match="no models added yet"):
        acc.result(np.zeros(6, int), np.zeros(4, int))
    with pytest.raises(ValueError, match="pass eval_labels"):
        acc.result(np.zeros(6, int))
    own = InfluenceAccumulator(6, (0.5,))
    with pytest.raises(ValueError, match="no evaluation set"):
        own.add(0.5, t, t, eval_correct=np.zeros((2, 4), bool))
    with pytest.raises(ValueError, match=r"pass correct \[M, N\]"):
        own.add(0.5, t)
    with pytest.raises(ValueError, match="ratio 0.4 is not one of"):
        own.add(0.4, t, t)
    own.add(0.5, t, t)
    with pytest.raises(ValueError, match="do not pass eval_labels"):
        own.result(np.zeros(6, int), np.zeros(6, int))
    with pytest.raises(ValueError, match="k must be at least 1"):
        own.result(np.zeros(6, int), k=0)
    with pytest.raises(ValueError, match="train_labels must be 6 integer labels"):
        own.result(np.zeros(5, int))
    shard = type("OldShard", (), {"key": "r0.5_runs0-2", "ratio": 0.5, "correct": t})()
    with pytest.raises(ValueError, match="r0.5_runs0-2.*no 'trained' mask"):
        own.add_shard(shard)
    shard.trained = t
    with pytest.raises(ValueError, match="no correctness on an evaluation set"):
        acc.add_shard(shard)
    assert own.add_shard(shard) and own.models == 4
    shard.ratio = 0.3
    assert not own.add_shard(shard) and own.models == 4  # a ratio of another plan: not kept


# ------------------------------------------------------------------------- the constructed case
def test_duplicated_mislabeled_examples_are_each_others_top_influence():
    """Real training on digits: a mislabeled example and its exact copy (same wrong label), in the
    training set or in the evaluation set, are fitted only when the other is trained on."""
    from test_memorization import train_digits_grid  # noqa: WPS433 (shared real-training helper)

    pytest.importorskip("torch")
    n_train, n_eval = 240, 60
    # Examples 0..239 train, 240..299 evaluate. Flip 5, 17 and 30 and make 17 a copy of 5 (same
    # image, same wrong label); evaluation example 299 becomes a copy of flipped training example 30.
    labels, grid = train_digits_grid(300, flipped=(5, 17, 30), ratios=(0.3, 0.5, 0.7), runs=12,
                                     duplicates={17: 5, 299: 30}, n_train=n_train)
    own = InfluenceAccumulator(n_train, [g[0] for g in grid])
    ev = InfluenceAccumulator(n_train, [g[0] for g in grid], n_eval=n_eval)
    for ratio, _, t, c in grid:
        own.add(ratio, t[:, :n_train], c[:, :n_train])
        ev.add(ratio, t[:, :n_train], eval_correct=c[:, n_train:])
    on_train = own.result(labels[:n_train], k=3)
    on_eval = ev.result(labels[:n_train], labels[n_train:], k=3)
    assert on_train.top_index[17, 0] == 5 and on_train.top_index[5, 0] == 17
    assert on_train.top_value[17, 0] > 0.5 and on_train.top_value[5, 0] > 0.5
    assert on_eval.top_index[299 - n_train, 0] == 30 and on_eval.top_value[299 - n_train, 0] > 0.5
    pairs = on_eval.pairs(0.5)
    assert ((pairs["train_index"] == 30) & (pairs["eval_index"] == 299 - n_train)).any()
