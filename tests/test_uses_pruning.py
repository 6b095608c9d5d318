"""Pruning keeps exactly the right examples for each rule; the experiment's bookkeeping and resume."""

import json

import numpy as np
import pytest

from cscore_lab.recipes import get_preset
from cscore_lab.store import StoreMismatchError
from cscore_lab.uses import PruningResult, kept_count, mean_stderr, pruning_experiment, select_kept, split_indices
from cscore_lab.uses.pruning import _quotas

FAST = get_preset("digits-mlp").recipe.with_(epochs=2)  # 2 x 45 = 90 SGD steps on the 1437 training digits



# --------------------------------------------------------------------------- the rules


def test_each_rule_keeps_the_hand_computed_examples():
    s = np.array([0.9, 0.1, 0.5, 0.7, 0.3])  # order most regular first: 0, 3, 2, 4, 1
    assert select_kept(s, 0.4, "most_regular").tolist() == [0, 3]
    assert select_kept(s, 0.4, "least_regular").tolist() == [1, 4]
    assert select_kept(s, 0.4, "middle").tolist() == [2, 3]  # order[(5-2)//2 : +2] = [3, 2]
    assert select_kept(s, 0.6, "middle").tolist() == [2, 3, 4]
    r = select_kept(s, 0.6, "random", seed=1)
    assert r.size == 3 and len(set(r.tolist())) == 3 and np.array_equal(r, select_kept(s, 0.6, "random", seed=1))
    assert select_kept(s, 1.0, "least_regular").tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="keep rule"):
        select_kept(s, 0.4, "hardest")
    with pytest.raises(ValueError, match="fractions"):
        select_kept(s, 0.0)


def test_kept_count_floors_without_float_surprises():
    assert kept_count(0.29, 100) == 29 and kept_count(0.7, 10) == 7 and kept_count(0.001, 10) == 1
    assert kept_count(0.5, 1437) == 718


def test_balanced_rule_keeps_class_quotas_and_ranks_within_class():
    labels = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.95, 0.9, 0.85, 0.8])
    # unbalanced, the 5 most regular are all class 1 but one
    assert select_kept(s, 0.5, "most_regular").tolist() == [5, 6, 7, 8, 9]
    # balanced: quotas 5 * 6/10 = 3 and 5 * 4/10 = 2, the most regular of each class
    assert select_kept(s, 0.5, "most_regular", labels=labels).tolist() == [3, 4, 5, 6, 7]
    assert select_kept(s, 0.5, "least_regular", labels=labels).tolist() == [0, 1, 2, 8, 9]


def test_quotas_are_largest_remainder_and_sum_to_k():
    assert _quotas(5, np.array([6, 4])).tolist() == [3, 2]
    assert _quotas(4, np.array([5, 5, 5])).tolist() == [2, 1, 1]  # 1.33 each: remainders tie, lower class first
    assert _quotas(7, np.array([1, 10])).tolist() == [1, 6]
    for k in range(1, 31):
        q = _quotas(k, np.array([3, 17, 10]))
        assert q.sum() == k and (q <= [3, 17, 10]).all()


# --------------------------------------------------------------------------- bookkeeping


def test_split_is_disjoint_stratified_and_fixed_by_the_seed(digits):
    tr, te = split_indices(digits.labels, 0.2, 0)
    assert np.intersect1d(tr, te).size == 0 and tr.size + te.size == len(digits)
    share = np.bincount(digits.labels[te], minlength=10) / np.bincount(digits.labels, minlength=10)
    assert np.allclose(share, 0.2, atol=0.02)
    assert np.array_equal(split_indices(digits.labels, 0.2, 0)[1], te)
    assert not np.array_equal(split_indices(digits.labels, 0.2, 1)[1], te)


def test_mean_stderr_arithmetic():
    m, se, n = mean_stderr(np.array([[0.9, 0.8, 0.7], [0.5, 0.5, 0.5]]))
    assert n == 3 and np.allclose(m, [0.8, 0.5]) and np.allclose(se, [0.1 / np.sqrt(3), 0.0])
    m, se, n = mean_stderr(np.array([0.7]))
    assert m == 0.7 and np.isnan(se) and n == 1


# --------------------------------------------------------------------------- the experiment (real training)


def test_pruning_experiment_trains_and_reports_each_curve(digits, tmp_path):
    s = np.random.default_rng(0).random(len(digits))
    res = pruning_experiment(digits, {"noise": s}, fractions=(0.3, 0.6), keep=("most_regular", "random"),
                             recipe=FAST, seeds=2, progress=False, out=tmp_path / "run")
    assert res.configs == (("noise", "most_regular"), ("random", "random"))
    assert res.correct.shape == (2, 2, 2) and res.reference.shape == (2,)
    assert res.n_test == 360 and res.kept.tolist() == [kept_count(0.3, 1437), kept_count(0.6, 1437)]
    acc = res.accuracy
    assert (acc > 0.5).all() and (acc <= 1).all()  # 90 steps of SGD learn the digits far above chance
    frame = res.to_frame()
    assert len(frame) == 4 and set(frame.columns) >= {"score", "keep", "fraction", "kept", "accuracy", "stderr"}
    row = frame[(frame.keep == "random") & (frame.fraction == 0.6)].iloc[0]
    assert row.accuracy == pytest.approx(acc[1, 1].mean()) and row.stderr == pytest.approx(acc[1, 1].std(ddof=1) / np.sqrt(2))
    cmp = res.compare()
    assert np.allclose(cmp[cmp.keep == "random"].diff_vs_random, 0)
    # the same SGD steps for every model under the default budget
    assert set(res.meta["steps"].values()) == {90}
    loaded = PruningResult.load(tmp_path / "run")
    assert np.array_equal(loaded.correct, res.correct) and loaded.configs == res.configs
    assert "Pruning" in res._repr_html_()
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert manifest["identity"]["experiment"] == "pruning" and manifest["identity"]["fingerprint"] == digits.fingerprint


def test_epochs_budget_scales_steps_with_the_kept_set(digits):
    s = np.linspace(0, 1, len(digits))
    res = pruning_experiment(digits, s, fractions=(0.25, 0.5), keep=("random",), recipe=FAST, seeds=1,
                             budget="epochs", reference=False, progress=False)
    # ceil(2 epochs * k / 32)
    assert res.meta["steps"] == {"0.25": int(np.ceil(2 * kept_count(0.25, 1437) / 32)),
                                 "0.5": int(np.ceil(2 * kept_count(0.5, 1437) / 32))}
    assert res.reference.size == 0 and np.isnan(res.reference_accuracy()[0])
    with pytest.raises(ValueError, match="budget"):
        pruning_experiment(digits, s, budget="compute", progress=False)


def test_interrupted_pruning_resumes_with_identical_numbers(digits, tmp_path):
    s = np.random.default_rng(3).random(len(digits))
    kwargs = {"fractions": (0.2, 0.4, 0.6), "keep": ("least_regular", "random"), "recipe": FAST, "seeds": 2,
              "reference": False, "workers": 1}

    def interrupt_after_first_group(p):
        if p.groups_done >= 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pruning_experiment(digits, s, progress=interrupt_after_first_group, out=tmp_path / "run", **kwargs)
    assert len(list((tmp_path / "run" / "entries").glob("*.npz"))) == 1
    resumed = pruning_experiment(digits, s, progress=False, out=tmp_path / "run", **kwargs)
    assert resumed.meta["groups_resumed"] == 1 and resumed.meta["groups_trained"] == 2
    fresh = pruning_experiment(digits, s, progress=False, **kwargs)
    assert np.array_equal(resumed.correct, fresh.correct)
    again = pruning_experiment(digits, s, progress=False, out=tmp_path / "run", **kwargs)
    assert again.meta["groups_trained"] == 0 and np.array_equal(again.correct, fresh.correct)
    # another setting or other scores are refused, not mixed in
    with pytest.raises(StoreMismatchError, match="settings"):
        pruning_experiment(digits, s, progress=False, out=tmp_path / "run", **{**kwargs, "seeds": 3})
    with pytest.raises(StoreMismatchError, match="scores"):
        pruning_experiment(digits, s[::-1].copy(), progress=False, out=tmp_path / "run", **kwargs)


def test_pruning_validates_its_arguments(digits):
    s = np.zeros(len(digits))
    with pytest.raises(ValueError, match="fractions"):
        pruning_experiment(digits, s, fractions=(0.5, 1.5), progress=False)
    with pytest.raises(ValueError, match="differ"):
        pruning_experiment(digits, s, fractions=(0.5, 0.5000001), progress=False)
    with pytest.raises(ValueError, match="keep"):
        pruning_experiment(digits, s, keep=("most_regular", "easiest"), progress=False)
    with pytest.raises(ValueError, match="random"):
        pruning_experiment(digits, {"random": s}, progress=False)
    with pytest.raises(ValueError, match="shape"):
        pruning_experiment(digits, s[:-1], progress=False)
    with pytest.raises(ValueError, match="seeds"):
        pruning_experiment(digits, s, seeds=0, progress=False)
    with pytest.raises(ValueError, match="seed must"):
        pruning_experiment(digits, s, seed=-1, progress=False)
