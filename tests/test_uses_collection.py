"""Where the low scores lie (hand-checked regions) and the active-collection simulation's bookkeeping."""

import numpy as np
import pytest

from cscore_lab.recipes import get_preset
from cscore_lab.uses import (
    CollectionResult,
    RegionTable,
    active_collection_experiment,
    collection_round,
    curriculum_order,
    low_score_regions,
)

FAST = get_preset("digits-mlp").recipe.with_(epochs=2)



def test_regions_by_hand():
    s = np.array([0.1, 0.9, 0.4, 0.8, 0.3, 0.95])
    labels = np.array([0, 0, 0, 1, 1, 1])
    table = low_score_regions(s, labels, threshold=0.5, clusters=np.array([0, 1, 0, 1, 0, 1]), lowest=2,
                              class_names=["zero", "one"])
    f = table.to_frame()
    assert f.kind.tolist() == ["class", "class", "cluster", "cluster"]
    assert f.name.tolist() == ["zero", "one", "cluster 0", "cluster 1"]
    assert f.examples.tolist() == [3, 3, 3, 3] and f.below.tolist() == [2, 1, 3, 0]
    assert np.allclose(f.share_below, [2 / 3, 1 / 3, 1.0, 0.0])
    assert np.allclose(f.share_of_low, [2 / 3, 1 / 3, 1.0, 0.0])  # within each kind
    assert np.allclose(f.mean_score, [(0.1 + 0.9 + 0.4) / 3, (0.8 + 0.3 + 0.95) / 3, 0.8 / 3, 2.65 / 3])
    assert f.lowest.tolist() == [[0, 2], [4, 3], [0, 4], [3, 1]]
    # cluster 0 = examples 0, 2, 4: labels 0, 0, 1; cluster 1 = examples 1, 3, 5: labels 0, 1, 1
    assert f.majority.tolist() == [0, 1, 0, 1] and np.allclose(f.purity, [1, 1, 2 / 3, 2 / 3])
    assert table.worst("cluster", 1).name.tolist() == ["cluster 0"]


def test_regions_with_kmeans_on_a_dataset_and_save_load(digits, tmp_path):
    s = np.random.default_rng(0).random(len(digits))
    table = low_score_regions(s, digits, clusters=6, lowest=3)
    f = table.to_frame()
    assert (f.kind == "class").sum() == 10 and (f.kind == "cluster").sum() == 6
    assert f[f.kind == "cluster"].examples.sum() == len(digits) and f[f.kind == "class"].name.tolist()[0] == "0"
    low = (s < 0.5).sum()
    assert f[f.kind == "class"].below.sum() == low == f[f.kind == "cluster"].below.sum()
    for row in f.itertuples():  # each region's listed lowest examples are its lowest
        members = np.flatnonzero(digits.labels == row.region) if row.kind == "class" else None
        if members is not None:
            assert row.lowest == members[np.argsort(s[members])[:3]].tolist()
    path = table.save(tmp_path / "regions.npz")
    back = RegionTable.load(path)
    assert back.kinds == table.kinds and np.array_equal(back.lowest, table.lowest) and back.threshold == 0.5
    assert "low scores" in table._repr_html_()
    with pytest.raises(ValueError, match="features"):
        low_score_regions(s, digits.labels, clusters=4)
    with pytest.raises(ValueError, match="cluster ids"):
        low_score_regions(s, digits.labels, clusters=np.zeros(3, dtype=int))
    with pytest.raises(TypeError, match=r"low_score_regions\(scores, dataset\); got a Dataset as the scores"):
        low_score_regions(digits, s)  # the experiments' order, (dataset, scores): said, not misread as labels
    with pytest.raises(TypeError, match="must hold numbers, got ndarray of dtype <U1"):
        low_score_regions(np.array(["a"] * len(digits.labels)), digits)


def test_collection_rounds_add_by_score_and_nest():
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 25)
    s = rng.random(100)
    start = collection_round(s, labels, n_start=12, n_add=10, strategy="lowest", rounds_done=0, seed=7)
    assert start.size == 12 and np.bincount(labels[start], minlength=4).tolist() == [3, 3, 3, 3]  # stratified
    for strategy in ("lowest", "highest", "random"):
        assert np.array_equal(collection_round(s, labels, n_start=12, n_add=10, strategy=strategy, rounds_done=0,
                                               seed=7), start)  # one start set per seed, whatever the strategy
    pool = np.setdiff1d(np.arange(100), start)
    two = collection_round(s, labels, n_start=12, n_add=10, strategy="lowest", rounds_done=2, seed=7)
    assert np.array_equal(np.setdiff1d(two, start), np.sort(pool[np.argsort(s[pool])[:20]]))  # the 20 lowest
    high = collection_round(s, labels, n_start=12, n_add=10, strategy="highest", rounds_done=2, seed=7)
    assert np.array_equal(np.setdiff1d(high, start), np.sort(pool[np.argsort(s[pool])[-20:]]))
    one = collection_round(s, labels, n_start=12, n_add=10, strategy="random", rounds_done=1, seed=7)
    three = collection_round(s, labels, n_start=12, n_add=10, strategy="random", rounds_done=3, seed=7)
    assert set(one) <= set(three) and three.size == 42
    assert not np.array_equal(collection_round(s, labels, n_start=12, n_add=10, strategy="lowest", rounds_done=0,
                                               seed=8), start)  # seeds differ
    assert np.array_equal(curriculum_order(s[pool], reverse=True)[:1], [np.argmin(s[pool])])


def test_active_collection_experiment_bookkeeping_and_resume(digits, tmp_path):
    s = np.random.default_rng(2).random(len(digits))
    kwargs = {"start": 100, "add_per_round": 100, "rounds": 2, "recipe": FAST, "seeds": 2, "workers": 1}

    def interrupt(p):
        if p.groups_done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        active_collection_experiment(digits, s, progress=interrupt, out=tmp_path / "run", **kwargs)
    res = active_collection_experiment(digits, s, progress=False, out=tmp_path / "run", **kwargs)
    assert res.meta["groups_resumed"] == 2 and res.meta["groups_trained"] == 1
    fresh = active_collection_experiment(digits, s, progress=False, **kwargs)
    assert np.array_equal(res.correct, fresh.correct)
    assert res.strategies == ("lowest", "highest", "random") and res.added.tolist() == [0, 100, 200]
    assert res.sizes.tolist() == [100, 200, 300] and res.correct.shape == (3, 3, 2)
    assert (res.correct[:, 0, :] == res.correct[0, 0, :]).all()  # round 0 is one training per seed
    assert (res.accuracy > 0.4).all()
    frame = res.to_frame()
    assert len(frame) == 9 and frame.train_size.max() == 300
    assert np.allclose(res.compare().query("strategy == 'random'").diff_vs_random, 0)
    back = CollectionResult.load(tmp_path / "run")
    assert np.array_equal(back.correct, res.correct)
    with pytest.raises(ValueError, match="more than"):
        active_collection_experiment(digits, s, start=0.5, add_per_round=0.3, rounds=2, progress=False)
    with pytest.raises(ValueError, match="strategies"):
        active_collection_experiment(digits, s, strategies=("lowest", "middle"), progress=False)
