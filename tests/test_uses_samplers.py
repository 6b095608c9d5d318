"""Samplers order and weight as specified: hand-checkable pool sizes, orders and weights."""

import math

import numpy as np
import pytest
import torch

from cscore_lab.cscores import CScores
from cscore_lab.uses import (
    CurriculumSampler,
    Pacing,
    balanced_order,
    curriculum_order,
    score_columns,
    score_weights,
)
from cscore_lab.uses.samplers import EpochStream, PacedStream, WeightedStream, make_stream

# --------------------------------------------------------------------------- pacing


def test_linear_root_step_pool_sizes_by_hand():
    # n = 100 examples, T = 100 steps, start b = 0.1, full at a = 0.5 (step 50)
    lin = Pacing("linear", start=0.1, full_at=0.5).pool_sizes(100, 100)
    assert lin[0] == 10 and lin[25] == 55 and lin[50] == 100 and lin[99] == 100
    assert lin[10] == 28  # 0.1 + 0.9 * 10/50 = 0.28
    root = Pacing("root", start=0.1, full_at=0.5).pool_sizes(100, 100)
    assert root[0] == 10 and root[25] == math.ceil(100 * (0.1 + 0.9 * math.sqrt(0.5))) == 74 and root[50] == 100
    step = Pacing("step", start=0.1, full_at=0.5).pool_sizes(100, 100)
    assert (step[:50] == 10).all() and (step[50:] == 100).all()


def test_exponential_pacing_doubles_per_stage_and_is_whole_at_full_at():
    # start 0.1, inc 2: K = ceil(log2(10)) = 4 stages over the first 50 steps: 10, 20, 40, 80, then 100
    sizes = Pacing("exponential", start=0.1, full_at=0.5, inc=2.0).pool_sizes(100, 100)
    assert sizes[0] == 10 and sizes[12] == 10  # stage = floor(4 * 12/50) = 0
    assert sizes[13] == 20 and sizes[25] == 40 and sizes[38] == 80 and sizes[50] == 100


def test_pool_sizes_are_monotone_clipped_and_validated():
    for kind in ("linear", "root", "step", "exponential"):
        sizes = Pacing(kind, start=0.05, full_at=0.8).pool_sizes(1000, 300, min_size=64)
        assert (np.diff(sizes) >= 0).all() and sizes.min() >= 64 and sizes.max() == 1000
    assert Pacing("linear", full_at=2.0).pool_sizes(100, 10).max() < 100  # never whole within the run
    with pytest.raises(ValueError, match="pacing kind"):
        Pacing("cosine")
    with pytest.raises(ValueError, match="start"):
        Pacing("linear", start=0.0)
    with pytest.raises(ValueError, match="full_at"):
        Pacing("linear", full_at=-1)
    with pytest.raises(TypeError, match="pacing"):
        Pacing.of(3)


# --------------------------------------------------------------------------- orders


def test_curriculum_order_most_regular_first_and_anti_is_its_reverse():
    s = np.array([0.2, 0.9, 0.5, 0.7])
    assert curriculum_order(s).tolist() == [1, 3, 2, 0]
    assert curriculum_order(s, reverse=True).tolist() == [0, 2, 3, 1]
    ties = np.array([1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0])
    for seed in range(5):
        o = curriculum_order(ties, seed=seed)
        assert sorted(o.tolist()) == list(range(8)) and o[-1] == 3
        assert np.array_equal(curriculum_order(ties, seed=seed, reverse=True), o[::-1])
    # ties are broken at random by the seed, not by index
    assert len({tuple(curriculum_order(ties, seed=k)) for k in range(6)}) > 1


def test_balanced_order_by_hand_and_every_prefix_is_proportional():
    labels = np.array([0, 0, 0, 0, 1, 1])
    # within-class quantiles: class 0 at 1/8, 3/8, 5/8, 7/8, class 1 at 1/4, 3/4
    assert balanced_order(np.arange(6), labels).tolist() == [0, 4, 1, 2, 5, 3]
    rng = np.random.default_rng(0)
    lab = rng.integers(0, 3, 300)
    order = balanced_order(curriculum_order(rng.random(300)), lab)
    share = np.bincount(lab, minlength=3) / lab.size
    for k in (30, 90, 150, 240):
        prefix = np.bincount(lab[order[:k]], minlength=3) / k
        assert np.abs(prefix - share).max() <= 2.0 / k + 1e-12
    # within a class the original order is kept
    base = curriculum_order(np.linspace(0, 1, 300))
    bal = balanced_order(base, lab)
    for c in range(3):
        assert np.array_equal(bal[lab[bal] == c], base[lab[base] == c])


def test_score_weights_sum_to_one_are_monotone_and_have_the_stated_ratio():
    s = np.array([0.3, 0.1, 0.9, 0.5, 0.7])
    easy = score_weights(s, direction="easy", ratio=10.0)
    hard = score_weights(s, direction="hard", ratio=10.0)
    for w in (easy, hard):
        assert w.sum() == pytest.approx(1.0) and (w > 0).all()
    order = np.argsort(s)
    assert (np.diff(easy[order]) > 0).all() and (np.diff(hard[order]) < 0).all()
    assert easy.max() / easy.min() == pytest.approx(10.0) and hard.max() / hard.min() == pytest.approx(10.0)
    # by hand: ranks u = (1, 0, 4, 2, 3) / 4, p ∝ 10**u
    u = np.array([1, 0, 4, 2, 3]) / 4
    assert np.allclose(easy, 10 ** u / (10 ** u).sum()) and np.allclose(hard, 10 ** (1 - u) / (10 ** (1 - u)).sum())
    tied = score_weights(np.array([0.5, 0.5, 1.0]))
    assert tied[0] == tied[1] < tied[2]
    # the weighting depends on ranks only: any increasing transform gives the same weights
    assert np.allclose(score_weights(np.exp(5 * s)), easy)
    with pytest.raises(ValueError, match="direction"):
        score_weights(s, direction="up")
    with pytest.raises(ValueError, match="ratio"):
        score_weights(s, ratio=0.5)


# --------------------------------------------------------------------------- streams


def test_paced_batches_come_from_the_pool_of_their_step():
    rng = np.random.default_rng(1)
    s = rng.random(200)
    for strategy in ("curriculum", "anti-curriculum", "random-curriculum"):
        sampler = CurriculumSampler(s, strategy=strategy, pacing=Pacing("linear", start=0.2, full_at=0.5),
                                    batch_size=16, steps=40, seed=3)
        batches = sampler.batches()
        assert batches.shape == (40, 16)
        for t, b in enumerate(batches):
            assert set(b.tolist()) <= set(sampler.order[:sampler.pool_sizes[t]].tolist())
    cur = CurriculumSampler(s, batch_size=16, steps=40, pacing="step").batches()
    anti = CurriculumSampler(s, strategy="anti-curriculum", batch_size=16, steps=40, pacing="step").batches()
    # before the step (halfway, pool = start 10% = 20 examples) the curriculum sees only the 20 most regular
    # examples and the anti-curriculum only the 20 least regular; after it, the whole data
    assert set(cur[:20].ravel().tolist()) <= set(np.argsort(s)[-20:].tolist())
    assert set(anti[:20].ravel().tolist()) <= set(np.argsort(s)[:20].tolist())
    assert s[cur[20:]].min() < np.sort(s)[-20]


def test_random_strategy_and_weighted_frequencies():
    s = np.array([0.1, 0.4, 0.2, 0.9, 0.6])
    rnd = make_stream("random", s, batch_size=50, steps=10, seed=0).next(2000).ravel()
    assert np.allclose(np.bincount(rnd, minlength=5) / rnd.size, 0.2, atol=0.01)
    for strategy, direction in (("weighted-easy", "easy"), ("weighted-hard", "hard")):
        draws = make_stream(strategy, s, batch_size=50, steps=10, seed=0).next(4000).ravel()
        freq = np.bincount(draws, minlength=5) / draws.size
        assert np.allclose(freq, score_weights(s, direction=direction), atol=0.006)


def test_streams_do_not_depend_on_how_they_are_read():
    s = np.random.default_rng(2).random(50)
    for make in (lambda: EpochStream(np.arange(50), 8, seed=4),
                 lambda: PacedStream(curriculum_order(s), Pacing().pool_sizes(50, 30, min_size=8), 8, seed=4),
                 lambda: WeightedStream(score_weights(s), 8, seed=4)):
        a, b = make(), make()
        assert np.array_equal(np.concatenate([a.next(3), a.next(11), a.next(1)]), b.next(15))
    # each pass of an epoch stream is a permutation of its indices, and batches span passes
    flat = EpochStream(np.arange(10) * 3, 4, seed=0).next(5).ravel()  # 20 = two passes
    assert sorted(flat[:10].tolist()) == sorted(flat[10:].tolist()) == list(range(0, 30, 3))


# --------------------------------------------------------------------------- torch sampler


def test_curriculum_sampler_is_a_batch_sampler_for_a_dataloader():
    s = np.linspace(0, 1, 64)
    data = torch.utils.data.TensorDataset(torch.arange(64))
    sampler = CurriculumSampler(s, batch_size=8, steps=12, seed=5, pacing="root")
    assert isinstance(sampler, torch.utils.data.Sampler) and len(sampler) == 12
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler)
    seen = [b[0].tolist() for b in loader]
    assert len(seen) == 12 and all(len(b) == 8 for b in seen)
    assert seen == [list(map(int, row)) for row in sampler.batches()]  # re-iterating replays the schedule
    assert seen == list(sampler)
    assert sampler.weights is None and sampler.order[0] == 63
    w = CurriculumSampler(s, strategy="weighted-hard", batch_size=8, steps=3)
    assert w.order is None and w.weights.argmax() == 0
    assert "weighted-hard" in repr(w)
    with pytest.raises(ValueError, match="strategy"):
        CurriculumSampler(s, strategy="easy-first", steps=3)
    with pytest.raises(ValueError, match="steps"):
        CurriculumSampler(s, steps=0)


def test_sampler_balances_the_order_when_given_labels():
    labels = np.repeat([0, 1], 50)
    s = np.where(labels == 0, 0.9, 0.1) + np.linspace(0, 0.01, 100)  # class 1 scores lower throughout
    plain = CurriculumSampler(s, batch_size=10, steps=20, pacing="step")
    balanced = CurriculumSampler(s, batch_size=10, steps=20, pacing="step", labels=labels)
    assert set(labels[plain.order[:20]].tolist()) == {0}
    assert np.bincount(labels[balanced.order[:20]]).tolist() == [10, 10]


# --------------------------------------------------------------------------- score containers


def test_score_columns_accepts_the_library_objects_and_refuses_misaligned_ones():
    import pandas as pd

    labels = np.array([0, 1, 0, 1])
    cs = CScores(np.array([0.1, 0.9, 0.5, 0.7]), labels, fingerprint="abc")
    assert list(score_columns(cs, 4, labels=labels, fingerprint="abc")) == ["cscore"]
    frame = pd.DataFrame({"label": labels, "a": [1.0, 2, 3, 4], "b": [4.0, 3, 2, 1]})
    assert list(score_columns(frame, 4, labels=labels)) == ["a", "b"]
    assert list(score_columns({"x": [1, 2, 3, 4]}, 4)) == ["x"]
    from cscore_lab.memorization import Memorization

    mem = Memorization(labels, (0.5,), np.full((1, 4), 4), np.array([[4, 4, 4, 2]]), np.full((1, 4), 4),
                       np.array([[0, 4, 2, 2]]))  # memorization 1, 0, 0.5, 0
    cols = score_columns(mem, 4, labels=labels)
    assert list(cols) == ["neg_memorization"] and np.allclose(cols["neg_memorization"], [-1, 0, -0.5, 0])
    with pytest.raises(ValueError, match="another data set"):
        score_columns(cs, 4, fingerprint="xyz")
    with pytest.raises(ValueError, match="labels differ"):
        score_columns(cs, 4, labels=np.array([1, 1, 0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        score_columns(np.array([0.1, np.nan, 0.2, 0.3]), 4)
    with pytest.raises(ValueError, match="shape"):
        score_columns(np.zeros(3), 4)
