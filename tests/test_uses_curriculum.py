"""The curriculum experiment: real stacked training on digits, its bookkeeping, and resume after an interrupt."""

import threading

import numpy as np
import pytest

from cscore_lab.data import Dataset
from cscore_lab.recipes import get_preset
from cscore_lab.trainer import Interrupted
from cscore_lab.uses import CurriculumResult, curriculum_experiment

RECIPE = get_preset("digits-mlp").recipe



@pytest.fixture(scope="module")
def scores(digits):
    # a label-consistency signal in pixel space (higher = more regular): share of the 10 nearest
    # neighbours with the same label, plus a little noise to break ties
    from scipy.spatial.distance import cdist

    x = digits.inputs.reshape(len(digits), -1)
    d = cdist(x, x, "sqeuclidean")
    np.fill_diagonal(d, np.inf)
    nn = np.argsort(d, axis=1)[:, :10]
    agree = (digits.labels[nn] == digits.labels[:, None]).mean(1)
    return agree + 1e-3 * np.random.default_rng(0).random(len(digits))


def test_curriculum_experiment_bookkeeping(digits, scores, tmp_path):
    strategies = ("curriculum", "anti-curriculum", "random", "weighted-easy")
    res = curriculum_experiment(digits, scores, RECIPE, strategies=strategies, steps=80, eval_every=40, seeds=2,
                                progress=False, out=tmp_path / "run")
    assert res.strategies == strategies and res.eval_steps.tolist() == [0, 40, 80]
    assert res.correct.shape == (4, 2, 3) and res.n_test == 360
    acc = res.accuracy
    # step 0: the models of one seed share their initialisation, so every strategy scores the same ...
    assert (acc[:, 0, 0] == acc[0, 0, 0]).all() and (acc[:, 1, 0] == acc[0, 1, 0]).all()
    # ... and the two seeds are different models (other initialisation, other batches)
    assert not np.array_equal(res.correct[:, 0], res.correct[:, 1])
    # training helps every strategy (an untrained net is at chance, ~0.1)
    assert (acc[:, :, -1] > acc[:, :, 0] + 0.3).all()
    frame = res.to_frame()
    assert len(frame) == 12
    row = frame[(frame.strategy == "anti-curriculum") & (frame.step == 80)].iloc[0]
    assert row.accuracy == pytest.approx(acc[1, :, 2].mean())
    assert row.stderr == pytest.approx(acc[1, :, 2].std(ddof=1) / np.sqrt(2))
    cmp = res.compare("random")
    d = acc[:, :, -1] - acc[2, :, -1]
    assert np.allclose(cmp["diff_vs_random"], d.mean(1)) and np.allclose(cmp["diff_stderr"], d.std(1, ddof=1) / np.sqrt(2))
    assert cmp.loc[cmp.strategy == "random", "diff_vs_random"].item() == 0.0
    loaded = CurriculumResult.load(tmp_path / "run")
    assert np.array_equal(loaded.correct, res.correct) and loaded.strategies == strategies
    assert loaded.meta["pacing"]["kind"] == "linear" and "Curriculum" in loaded._repr_html_()
    with pytest.raises(KeyError, match="step"):
        res.compare(step=7)


def test_stop_event_then_rerun_gives_identical_numbers(digits, scores, tmp_path):
    kwargs = {"strategies": ("curriculum", "random-curriculum", "weighted-hard"), "steps": 60, "eval_every": 20,
              "seeds": 2, "group_size": 3, "workers": 1}  # two groups of three models: one resume point in between
    stop = threading.Event()
    seen = []

    def stop_after_the_first_group(p):
        seen.append(p)
        if p.groups_done == 1:
            stop.set()

    with pytest.raises(Interrupted):
        curriculum_experiment(digits, scores, RECIPE, progress=stop_after_the_first_group, stop=stop,
                              out=tmp_path / "run", **kwargs)
    assert seen[-1].groups_done == 1 and seen[-1].groups_total == 2 and seen[-1].steps_total == 120
    resumed = curriculum_experiment(digits, scores, RECIPE, progress=False, out=tmp_path / "run", **kwargs)
    assert (resumed.meta["groups_resumed"], resumed.meta["groups_trained"]) == (1, 1)
    fresh = curriculum_experiment(digits, scores, RECIPE, progress=False, **kwargs)
    assert np.array_equal(resumed.correct, fresh.correct)


def test_separate_test_set_and_validation(digits, scores):
    train, test = digits.subset(np.arange(0, 1500)), digits.subset(np.arange(1500, len(digits)))
    res = curriculum_experiment(train, scores[:1500], RECIPE, strategies=("curriculum", "random"), steps=30,
                                eval_every=30, seeds=1, test=test, progress=False, pacing="exponential")
    assert res.n_test == len(test) and res.meta["test"]["examples"] == len(test) and res.meta["n_train"] == 1500
    with pytest.raises(ValueError, match="strategies"):
        curriculum_experiment(digits, scores, strategies=("curriculum", "easy-first"), progress=False)
    with pytest.raises(ValueError, match="one score"):
        curriculum_experiment(digits, {"a": scores, "b": -scores}, progress=False)
    with pytest.raises(ValueError, match="test_fraction"):
        curriculum_experiment(digits, scores, test_fraction=1.5, progress=False)
    other = Dataset(test.inputs, test.labels, test.images, tuple("abcdefghij"), "other", test.value_range)
    with pytest.raises(ValueError, match="classes"):
        curriculum_experiment(train, scores[:1500], test=other, progress=False)


def test_a_real_curriculum_pool_restricts_what_the_models_see_early(digits, scores):
    # with a step pacing that holds the 10% most regular training digits for the whole run, the curriculum's
    # models see few examples: their test accuracy must trail the random strategy's (all the data)
    from cscore_lab.uses import Pacing

    res = curriculum_experiment(digits, scores, RECIPE, strategies=("curriculum", "random"), steps=150,
                                eval_every=150, seeds=2, pacing=Pacing("step", start=0.03, full_at=2.0),
                                progress=False)
    acc = res.accuracy[:, :, -1]
    assert (acc[0] < acc[1]).all()
