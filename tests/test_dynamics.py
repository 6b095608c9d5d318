"""Learning-speed proxies: hand-computed references, the recorders on real (small) full-data training."""

import math

import numpy as np
import pytest
import torch

from cscore_lab.data import load_digits
from cscore_lab.proxies.dynamics import DYNAMICS_PROXIES, LearningDynamics, forgetting_events
from cscore_lab.proxies.recorders import DynamicsRecorder, FeatureRecorder
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


RECIPE = Recipe(name="tiny", hidden=(32,), learning_rate=0.1, batch_size=16, epochs=3)  # 300 examples: 19 steps/epoch


@pytest.fixture(scope="module")
def trained():
    """Two full-data MLPs on 300 digits, 3 epochs, with recorders per epoch, every 2nd epoch and every k steps."""
    ds = load_digits().subset(np.arange(300))
    x, y = prepare_inputs(ds, RECIPE, torch.device("cpu"))
    dyn = DynamicsRecorder(x, y)
    every2 = DynamicsRecorder(x, y, every=2)
    aligned = DynamicsRecorder.for_recipe(x, y, RECIPE, train_size=300, every_steps=19)  # lands on every epoch end
    odd = DynamicsRecorder.for_recipe(x, y, RECIPE, train_size=300, every_steps=5)
    feats = FeatureRecorder(x, [3, 1])
    seeds = [model_seeds(7, 1.0, r) for r in range(2)]
    group = train_group(x, y, [np.arange(300)] * 2, RECIPE, seeds, num_classes=10,
                        callbacks=[dyn, every2, aligned, odd, feats])
    return group, x, y, dyn.result(), every2.result(), feats, aligned.result(), odd.result()


def test_recorder_matches_the_final_model(trained):
    group, x, y, dyn, every2, *_ = trained
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
    dyn = trained[3]
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
    group, x, _, _, _, feats, *_ = trained
    assert feats.epochs == (1, 3) and sorted(feats.features) == [1, 3]
    assert feats.features[1].shape == (2, 300, 32) and feats.features[1].dtype == np.float32
    np.testing.assert_allclose(feats.features[3], group.features(x).numpy())
    assert not np.allclose(feats.features[1], feats.features[3])


def test_step_records_are_the_epoch_records_where_they_coincide(trained):
    """Records every k steps (the trainer's per-step hook) see the same model states as per-epoch records."""
    *_, dyn, _, _, aligned, odd = trained
    np.testing.assert_array_equal(aligned.epochs, [1, 2, 3])  # step 19, 38, 57 = the ends of the epochs
    for name in ("label_prob", "max_prob", "entropy", "correct"):
        np.testing.assert_array_equal(getattr(aligned, name), getattr(dyn, name))
    # steps 5, 10, ..., 55, then the end of training (step 57), in epochs of 19 steps
    np.testing.assert_allclose(odd.epochs, [*(np.arange(5, 56, 5) / 19), 3.0])
    np.testing.assert_array_equal(odd.correct[-1], dyn.correct[-1])
    assert odd.num_records == 12 and odd.correct.shape == (12, 2, 300)
    # between epochs the models are somewhere else: the records are not copies of the epoch records
    assert not np.array_equal(odd.label_prob[0], dyn.label_prob[0])


def test_finer_records_count_forgetting_between_epochs():
    # one example, learned, forgotten and relearned inside epoch 1: per-epoch records see none of it
    steps = np.array([[1], [0], [1], [1]], dtype=bool)[:, None, :]  # records at quarter epochs
    epochs = steps[[3]]  # the epoch-end record only
    p = np.full(steps.shape, 0.5, dtype=np.float16)
    fine = LearningDynamics(np.array([0.25, 0.5, 0.75, 1.0]), p, p, p, steps).proxies()
    coarse = LearningDynamics(np.array([1.0]), p[[3]], p[[3]], p[[3]], epochs).proxies()
    assert fine["neg_forgetting"][0] == -1.0 and coarse["neg_forgetting"][0] == 0.0
    assert fine["cum_accuracy"][0] == 0.75 and coarse["cum_accuracy"][0] == 1.0


def test_record_interval_of_the_suite():
    from cscore_lab.proxies.dynamics import RECORDS_PER_EPOCH, record_interval

    assert RECORDS_PER_EPOCH == 10
    # "auto": round(steps per epoch / 10), at least every step, None when that is a whole epoch
    assert [record_interval("auto", s) for s in (469, 57, 15, 5, 1)] == [47, 6, 2, 1, None]
    assert record_interval(None, 57) is None and record_interval(7, 57) == 7
    with pytest.raises(ValueError, match="'auto', None or a positive integer, got 'often'"):
        record_interval("often", 57)
    with pytest.raises(TypeError, match="dynamics_every_steps must be an integer >= 1, got True"):
        record_interval(True, 57)


def test_recorder_arguments():
    x, y = torch.zeros(4, 2), torch.zeros(4, dtype=torch.long)
    with pytest.raises(ValueError, match="every must be an integer >= 1, got 0"):
        DynamicsRecorder(x, y, every=0)
    with pytest.raises(ValueError, match="every_steps must be an integer >= 1, got 0"):
        DynamicsRecorder(x, y, every_steps=0, steps_per_epoch=2, epochs=2)
    with pytest.raises(ValueError, match="needs steps_per_epoch and epochs"):
        DynamicsRecorder(x, y, every_steps=2)
    with pytest.raises(ValueError, match="every_steps=5 is more than the 4 steps"):
        DynamicsRecorder(x, y, every_steps=5, steps_per_epoch=2, epochs=2)
    with pytest.raises(ValueError, match="not both"):
        DynamicsRecorder(x, y, every=2, every_steps=1, steps_per_epoch=2, epochs=2)
    with pytest.raises(ValueError, match="x has 4 examples but y has 3"):
        DynamicsRecorder(x, y[:3])
    with pytest.raises(ValueError, match="nothing was recorded"):
        DynamicsRecorder(x, y).result()
    with pytest.raises(ValueError, match="feature epochs must be positive integers"):
        FeatureRecorder(x, [0, 2])
    with pytest.raises(ValueError, match=r"no features after epoch 2: this recorder keeps epochs \[1\]"):
        FeatureRecorder(x, [1]).get(2)
