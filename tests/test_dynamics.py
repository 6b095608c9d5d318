"""Learning-speed proxies: hand-computed references and real (small) full-data training."""

import math

import numpy as np
import pytest
import torch

from cscore_lab.data import load_digits
from cscore_lab.proxies.dynamics import (
    DYNAMICS_PROXIES, DynamicsRecorder, FeatureRecorder, LearningDynamics, forgetting_events,
)
from cscore_lab.recipes import Recipe
from cscore_lab.trainer import model_seeds, predict_correct, prepare_inputs, train_group


def test_forgetting_events_by_hand():
    # records on axis 0; columns: forgotten twice, never learned, learned once, forgotten once, always right
    c = np.array([
        [1, 0, 0, 1, 1],
        [0, 0, 1, 1, 1],
        [1, 0, 1, 0, 1],
        [0, 0, 1, 0, 1],
    ], dtype=bool)
    np.testing.assert_array_equal(forgetting_events(c), [2, 4, 0, 1, 0])


def test_proxies_from_a_recorded_matrix():
    # R=3 records, M=2 models, N=2 examples
    correct = np.array([[[1, 0], [0, 0]],
                        [[0, 0], [1, 0]],
                        [[1, 0], [1, 0]]], dtype=bool)
    label_prob = np.array([[[0.6, 0.1], [0.2, 0.3]],
                           [[0.4, 0.2], [0.7, 0.1]],
                           [[0.9, 0.3], [0.8, 0.2]]], dtype=np.float16)
    max_prob = np.maximum(label_prob, np.float16(0.5))
    entropy = np.array([[[1.0, 2.0], [0.5, 1.5]],
                        [[0.75, 2.0], [0.25, 1.0]],
                        [[0.125, 1.0], [0.375, 0.5]]], dtype=np.float16)  # exact in float16
    dyn = LearningDynamics(np.array([1, 2, 3]), label_prob, max_prob, entropy, correct)
    got = dyn.proxies()
    assert list(got) == list(DYNAMICS_PROXIES)
    lp = label_prob.astype(np.float64)
    # example 0: model 0 correct 2/3, model 1 correct 2/3; example 1 never correct
    np.testing.assert_allclose(got["cum_accuracy"], [2 / 3, 0.0])
    np.testing.assert_allclose(got["cum_label_prob"], [(lp[:, 0, 0].mean() + lp[:, 1, 0].mean()) / 2,
                                                       (lp[:, 0, 1].mean() + lp[:, 1, 1].mean()) / 2])
    mp = max_prob.astype(np.float64)
    np.testing.assert_allclose(got["cum_max_prob"], mp.mean(axis=(0, 1)))
    np.testing.assert_allclose(got["cum_neg_entropy"], [-(1.0 + 0.75 + 0.125 + 0.5 + 0.25 + 0.375) / 6,
                                                        -(2.0 + 2.0 + 1.0 + 1.5 + 1.0 + 0.5) / 6])
    # example 0: model 0 forgets once (1 -> 0), model 1 never forgets; example 1 never learned: 3 records each
    np.testing.assert_allclose(got["neg_forgetting"], [-0.5, -3.0])


def test_learning_dynamics_checks_shapes():
    c = np.zeros((2, 1, 3), dtype=bool)
    p = np.zeros((2, 1, 3), dtype=np.float16)
    with pytest.raises(ValueError, match="epochs has shape"):
        LearningDynamics(np.array([1]), p, p, p, c)
    with pytest.raises(ValueError, match="entropy has shape"):
        LearningDynamics(np.array([1, 2]), p, p, p[:, :, :2], c)


@pytest.fixture(scope="module")
def trained():
    """Two full-data MLPs on 300 digits, 3 epochs, with both recorders attached."""
    ds = load_digits().subset(np.arange(300))
    recipe = Recipe(name="tiny", hidden=(32,), learning_rate=0.1, batch_size=16, epochs=3)
    x, y = prepare_inputs(ds, recipe, torch.device("cpu"))
    dyn = DynamicsRecorder(x, y)
    every2 = DynamicsRecorder(x, y, every=2)
    feats = FeatureRecorder(x, [3, 1])
    seeds = [model_seeds(7, 1.0, r) for r in range(2)]
    group = train_group(x, y, [np.arange(300)] * 2, recipe, seeds, num_classes=10, callbacks=[dyn, every2, feats])
    return group, x, y, dyn.result(), every2.result(), feats


def test_recorder_matches_the_final_model(trained):
    group, x, y, dyn, every2, _ = trained
    assert dyn.correct.shape == (3, 2, 300) and dyn.label_prob.dtype == np.float16
    np.testing.assert_array_equal(dyn.epochs, [1, 2, 3])
    np.testing.assert_array_equal(every2.epochs, [2])
    np.testing.assert_array_equal(dyn.correct[-1], predict_correct(group, x, y))
    p = torch.softmax(group.logits(x), dim=-1).numpy()
    label_p = np.take_along_axis(p, y.numpy()[None, :, None].repeat(2, 0), axis=-1)[..., 0]
    np.testing.assert_allclose(dyn.label_prob[-1].astype(np.float64), label_p, atol=1e-3)
    np.testing.assert_allclose(dyn.max_prob[-1].astype(np.float64), p.max(-1), atol=1e-3)
    ent = -(p * np.log(np.clip(p, 1e-30, None))).sum(-1)
    np.testing.assert_allclose(dyn.entropy[-1].astype(np.float64), ent, atol=2e-3, rtol=2e-3)


def test_recorded_values_are_consistent(trained):
    _, _, _, dyn, _, _ = trained
    lp, mp, ent = (a.astype(np.float64) for a in (dyn.label_prob, dyn.max_prob, dyn.entropy))
    assert (mp >= lp - 1e-3).all()
    np.testing.assert_allclose(lp[dyn.correct], mp[dyn.correct], atol=1e-3)
    assert (ent >= -1e-3).all() and (ent <= math.log(10) + 1e-2).all()
    proxies = dyn.proxies()
    assert all(v.shape == (300,) and np.isfinite(v).all() for v in proxies.values())
    assert proxies["cum_accuracy"].mean() > 0.5  # the models learn
    # a full-data model learns most examples: regular examples are learned early
    assert np.corrcoef(proxies["cum_accuracy"], proxies["cum_label_prob"])[0, 1] > 0.5


def test_feature_recorder(trained):
    group, x, _, _, _, feats = trained
    assert feats.epochs == (1, 3) and sorted(feats.features) == [1, 3]
    assert feats.features[1].shape == (2, 300, 32) and feats.features[1].dtype == np.float32
    np.testing.assert_allclose(feats.features[3], group.features(x).numpy())
    assert not np.allclose(feats.features[1], feats.features[3])


def test_recorder_arguments():
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        DynamicsRecorder(x, y, every=0)
    with pytest.raises(ValueError, match="x has 4 examples but y has 3"):
        DynamicsRecorder(x, y[:3])
    with pytest.raises(ValueError, match="nothing was recorded"):
        DynamicsRecorder(x, y).result()
    with pytest.raises(ValueError, match="feature epochs must be positive"):
        FeatureRecorder(x, [0, 2])
