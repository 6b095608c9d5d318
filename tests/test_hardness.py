"""Hardness scores: each definition against a hand-computed case or a brute-force reference, and real training."""

import math
import sys

import numpy as np
import pytest
import torch
from torch import nn

from cscore_lab.analysis import detect_injected
from cscore_lab.data import inject_label_noise, load_digits
from cscore_lab.models import StackedMLP, StackedModules, build_group
from cscore_lab.proxies.gradients import error_norms, gradient_norms, input_gradients
from cscore_lab.proxies.hardness import (
    Trajectory,
    aum,
    dataiq_aleatoric,
    dataiq_epistemic,
    datamap_confidence,
    datamap_variability,
    default_early_epoch,
    el2n,
    final_loss,
    final_margin,
    grand,
    prototypicality,
    vog,
    vog_raw,
)
from cscore_lab.proxies.label_issues import (
    CLEANLAB_EXTRA,
    cleanlab_scores,
    cross_validation_folds,
    out_of_sample_probabilities,
)
from cscore_lab.proxies.recorders import InputGradientRecorder, NormRecorder, TrajectoryRecorder
from cscore_lab.proxies.suite import compute_proxies
from cscore_lab.recipes import Recipe
from cscore_lab.trainer import model_seeds, prepare_inputs, train_group

CPU = torch.device("cpu")
TINY = Recipe(name="tiny", hidden=(16,), learning_rate=0.1, batch_size=50, epochs=3)
#: The families of the field's hardness scores that one shared training gives (cleanlab trains its own).
RECORDED = ["aum", "el2n", "grand", "vog", "datamap", "dataiq", "loss", "prototypicality"]


def hardness(dataset, recipe, **options):
    """The hardness columns of the suite (no kde/knn/lof/dynamics), as a dict."""
    options.setdefault("families", RECORDED)
    return compute_proxies(dataset, recipe, device="cpu", **options).values


# --------------------------------------------------------------------------- hand-computed cases


def test_trajectory_from_hand_written_logits_and_aum():
    # R=2 records, M=1 model, N=2 examples, C=3 classes; labels 0 and 2
    logits = np.array([[[[2.0, 0.0, 1.0], [0.0, 3.0, 3.0]]],
                       [[[0.0, 0.0, 0.0], [1.0, -1.0, 4.0]]]])
    t = Trajectory.from_logits(logits, np.array([0, 2]), [1, 2])
    np.testing.assert_allclose(t.label_logit[:, 0], [[2, 3], [0, 4]])
    np.testing.assert_allclose(t.other_logit[:, 0], [[1, 3], [0, 1]])  # a tie with another class: margin 0
    np.testing.assert_allclose(t.margin[:, 0], [[1, 0], [0, 3]])
    lse = lambda z: math.log(sum(math.exp(v) for v in z))
    np.testing.assert_allclose(t.label_logprob[:, 0], [[2 - lse([2, 0, 1]), 3 - lse([0, 3, 3])],
                                                       [-math.log(3), 4 - lse([1, -1, 4])]], rtol=1e-6)
    np.testing.assert_allclose(aum(t.margin), [0.5, 1.5])
    np.testing.assert_allclose(final_margin(t.margin[-1]), [0, 3])
    np.testing.assert_allclose(final_loss(t.label_logprob[-1]), [-math.log(3), 4 - lse([1, -1, 4])], rtol=1e-6)


def test_aum_is_the_mean_over_records_then_models():
    margin = np.array([[[1.0, -2.0], [3.0, 0.0]],     # record 1: model 0, model 1
                       [[2.0, -4.0], [5.0, 2.0]]])    # record 2
    np.testing.assert_allclose(aum(margin), [(1 + 2 + 3 + 5) / 4, (-2 - 4 + 0 + 2) / 4])


def test_datamap_and_dataiq_by_hand():
    # one model; example 0 learns (0.2 -> 0.6 -> 1.0), example 1 hovers at 0.5
    p = np.array([[[0.2, 0.5]], [[0.6, 0.5]], [[1.0, 0.5]]])
    np.testing.assert_allclose(datamap_confidence(p), [0.6, 0.5])
    np.testing.assert_allclose(datamap_variability(p), [-math.sqrt(0.32 / 3), 0.0])
    np.testing.assert_allclose(dataiq_aleatoric(p), [-(0.16 + 0.24 + 0.0) / 3, -0.25])
    np.testing.assert_allclose(dataiq_epistemic(p), [-0.32 / 3, 0.0])


def test_datamap_variability_is_per_model_then_averaged():
    # model 0: 0 -> 1 (std 0.5); model 1: 1 -> 1 (std 0); pooling both would give std 0.433
    p = np.array([[[0.0], [1.0]], [[1.0], [1.0]]])
    np.testing.assert_allclose(datamap_variability(p), [-0.25])
    np.testing.assert_allclose(datamap_confidence(p), [0.75])


def _identity_group(num_classes=2):
    """A real one-layer StackedMLP whose logits are its inputs (weight = identity, bias = 0)."""
    g = StackedMLP([num_classes, num_classes], [0], CPU)
    g.weights[0].copy_(torch.eye(num_classes).unsqueeze(0))
    g.biases[0].zero_()
    return g


def test_el2n_and_grand_by_hand():
    g = _identity_group()
    x = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0], [30.0, 0.0]])
    y = torch.tensor([0, 0, 0])
    # p = (.5, .5): ||p - e0|| = sqrt(.5); p = (.75, .25): sqrt(2) * .25; p1 = e^-30 / (1 + e^-30)
    tiny = math.exp(-30) / (1 + math.exp(-30))
    expect = np.array([math.sqrt(0.5), math.sqrt(2) * 0.25, math.sqrt(2) * tiny])
    got = error_norms(g, x, y).numpy()
    np.testing.assert_allclose(got[0], expect, rtol=1e-5)  # the third keeps its precision (no 1 - p)
    np.testing.assert_allclose(el2n(got), -expect, rtol=1e-5)
    # one linear layer: grad_W = delta x^T, grad_b = delta, so the norm is ||delta|| sqrt(||x||^2 + 1)
    xn = x.square().sum(dim=1).add(1).sqrt().numpy()
    np.testing.assert_allclose(gradient_norms(g, x, y).numpy()[0], expect * xn, rtol=1e-5)
    np.testing.assert_allclose(grand(gradient_norms(g, x, y).numpy()), -expect * xn, rtol=1e-5)


def test_vog_raw_and_class_normalisation_by_hand():
    # K=2 checkpoints, M=1, N=1, D=2: per-dim population std is |a - b| / 2 -> (1, 2), mean 1.5
    grads = np.array([[[[0.0, 4.0]]], [[[2.0, 0.0]]]])
    np.testing.assert_allclose(vog_raw(grads), [[1.5]])
    # images [K, M, N, C, H, W]: channels are averaged first (the authors' code): (0, 4) -> 2, (2, 0) -> 1, std 0.5
    np.testing.assert_allclose(vog_raw(grads.reshape(2, 1, 1, 2, 1, 1)), [[0.5]])
    # class 0: raw 1 and 3 (mean 2, std 1) -> -1, +1; class 1 alone: std 0 -> 0; then negated
    np.testing.assert_allclose(vog(np.array([[1.0, 3.0, 7.0]]), np.array([0, 0, 1])), [1.0, -1.0, 0.0])
    # two models are normalised separately, then averaged
    raw = np.array([[1.0, 3.0], [2.0, 2.0]])
    np.testing.assert_allclose(vog(raw, np.array([0, 0])), [0.5, -0.5])


def test_prototypicality_by_hand():
    f = np.array([[[1.0, 0.0], [0.0, 2.0], [3.0, 4.0], [0.0, 0.0]]])
    y = np.array([0, 0, 1, 1])
    # class 0, cosine: normalised (1,0), (0,1); centroid direction (1,1)/sqrt2; distance 1 - 1/sqrt2
    # class 1: (0.6, 0.8) and the zero vector; centroid direction (0.6, 0.8): distances 0 and 1
    np.testing.assert_allclose(prototypicality(f, y), [-(1 - 1 / math.sqrt(2))] * 2 + [0.0, -1.0])
    # euclidean: class 0 centroid (0.5, 1): distances sqrt(1.25); class 1 centroid (1.5, 2): 2.5 each
    np.testing.assert_allclose(prototypicality(f, y, metric="euclidean"), [-math.sqrt(1.25)] * 2 + [-2.5, -2.5])


def test_default_early_epoch_is_ten_percent_of_training():
    assert [default_early_epoch(e) for e in (1, 10, 12, 30, 200)] == [1, 1, 1, 3, 20]


# --------------------------------------------------------------------------- brute-force references


def _trained_mlp(sizes=(6, 7, 5, 3), seeds=(1, 2), steps=3):
    g = StackedMLP(list(sizes), list(seeds), CPU)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        xb = torch.randn(len(seeds), 8, sizes[0], generator=gen)
        yb = torch.randint(0, sizes[-1], (len(seeds), 8), generator=gen)
        g.train_step(xb, yb, 0.1, 0.9, 0.0)
    return g


def _mlp_params(g, m):
    return [t[m].clone().requires_grad_(True) for pair in zip(g.weights, g.biases) for t in pair]


def _mlp_logits(params, x):
    h = x
    n = len(params) // 2
    for layer in range(n):
        w, b = params[2 * layer], params[2 * layer + 1]
        h = h @ w.T + b[0]
        if layer < n - 1:
            h = h.relu()
    return h


def _module_factory():
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 3 * 3, 6), nn.ReLU(), nn.Linear(6, 4))


def _module_copy(group, m):
    net = _module_factory()
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(group.params[name][m])
    return net


def test_gradient_norms_match_per_example_autograd_for_the_mlp():
    g = _trained_mlp()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(9, 6, generator=gen), torch.randint(0, 3, (9,), generator=gen)
    got = gradient_norms(g, x, y).numpy()
    ref = np.zeros((2, 9))
    for m in range(2):
        params = _mlp_params(g, m)
        for i in range(9):
            loss = nn.functional.cross_entropy(_mlp_logits(params, x[i:i + 1]), y[i:i + 1])
            grads = torch.autograd.grad(loss, params)
            ref[m, i] = math.sqrt(sum(float(t.square().sum()) for t in grads))
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_gradient_norms_match_per_example_autograd_for_any_module():
    g = StackedModules(_module_factory, [3, 4], CPU)
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(7, 1, 5, 5, generator=gen), torch.randint(0, 4, (7,), generator=gen)
    got = gradient_norms(g, x, y).numpy()
    ref = np.zeros((2, 7))
    for m in range(2):
        net = _module_copy(g, m)
        for i in range(7):
            loss = nn.functional.cross_entropy(net(x[i:i + 1]), y[i:i + 1])
            grads = torch.autograd.grad(loss, list(net.parameters()))
            ref[m, i] = math.sqrt(sum(float(t.square().sum()) for t in grads))
    np.testing.assert_allclose(got, ref, rtol=1e-4)


def test_input_gradients_match_autograd_for_both_group_kinds():
    g = _trained_mlp()
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(5, 6, generator=gen), torch.randint(0, 3, (5,), generator=gen)
    got = input_gradients(g, x, y)
    for m in range(2):
        params = [p.detach() for p in _mlp_params(g, m)]
        xr = x.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(_mlp_logits(params, xr).gather(1, y[:, None]).sum(), xr)
        torch.testing.assert_close(got[m], ref, rtol=1e-4, atol=1e-6)
    mg = StackedModules(_module_factory, [5, 6], CPU)
    xi, yi = torch.randn(4, 1, 5, 5, generator=gen), torch.randint(0, 4, (4,), generator=gen)
    got = input_gradients(mg, xi, yi)
    assert got.shape == (2, 4, 1, 5, 5)
    for m in range(2):
        net = _module_copy(mg, m)
        xr = xi.clone().requires_grad_(True)
        (ref,) = torch.autograd.grad(net(xr).gather(1, yi[:, None]).sum(), xr)
        torch.testing.assert_close(got[m], ref, rtol=1e-4, atol=1e-6)


class _KeepInputGradients:
    """Test callback: the brute-force input gradients (per example, autograd) at chosen epochs."""

    def __init__(self, x, y, epochs):
        self.x, self.y, self.epochs, self.grads = x, y, epochs, []

    def on_epoch_end(self, epoch, group):
        if epoch not in self.epochs:
            return
        per_model = []
        for m in range(group.num_models):
            params = [p.detach() for p in _mlp_params(group, m)]
            rows = []
            for i in range(self.x.shape[0]):
                xi = self.x[i:i + 1].clone().requires_grad_(True)
                (gx,) = torch.autograd.grad(_mlp_logits(params, xi)[0, self.y[i]], xi)
                rows.append(gx[0])
            per_model.append(torch.stack(rows))
        self.grads.append(torch.stack(per_model).numpy())


def test_vog_recorder_streams_what_the_stacked_checkpoint_gradients_give(digits):
    ds = digits.subset(np.arange(200))
    x, y = prepare_inputs(ds, TINY, CPU)
    rec = InputGradientRecorder(x, y, (1, 2, 3))
    keep = _KeepInputGradients(x[:40], y[:40], (1, 2, 3))
    train_group(x, y, [np.arange(200)] * 2, TINY, [model_seeds(0, 1.0, r) for r in range(2)],
                num_classes=10, callbacks=[rec, keep])
    assert rec.count == 3
    np.testing.assert_allclose(rec.raw()[:, :40], vog_raw(np.stack(keep.grads)), rtol=1e-4, atol=1e-7)


class _KeepCheckpoints:
    def __init__(self, x, y):
        self.x, self.y, self.grads = x, y, []

    def on_epoch_end(self, epoch, group):
        self.grads.append(input_gradients(group, self.x, self.y).numpy())


def test_vog_recorder_averages_image_channels_like_vog_raw():
    def factory():
        return nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 4))

    gen = torch.Generator().manual_seed(4)
    x, y = torch.randn(40, 2, 5, 5, generator=gen), torch.randint(0, 4, (40,), generator=gen)
    rec, keep = InputGradientRecorder(x, y, (1, 2, 3)), _KeepCheckpoints(x, y)
    train_group(x, y, [np.arange(40)] * 2, TINY.with_(batch_size=10), [model_seeds(0, 1.0, r) for r in range(2)],
                num_classes=4, model_factory=factory, callbacks=[rec, keep])
    stacked = np.stack(keep.grads)  # [3, 2, 40, 2, 5, 5]
    assert stacked.shape == (3, 2, 40, 2, 5, 5)
    np.testing.assert_allclose(rec.raw(), vog_raw(stacked), rtol=1e-4, atol=1e-7)


# --------------------------------------------------------------------------- recorders and the per-step hook


def _train_by_hand(x, y, recipe, callbacks, seed=0):
    """A plain training loop that calls ``on_step`` after every step and ``on_epoch_end`` after every epoch."""
    g = build_group(recipe, (x.shape[1],), 10, [seed], CPU)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for epoch in range(1, recipe.epochs + 1):
        perm = torch.randperm(x.shape[0], generator=gen)
        for start in range(0, x.shape[0], recipe.batch_size):
            idx = perm[start:start + recipe.batch_size].unsqueeze(0)
            g.train_step(x[idx], y[idx], recipe.learning_rate, recipe.momentum, recipe.weight_decay)
            step += 1
            for cb in callbacks:
                if getattr(cb, "every_steps", None):
                    cb.on_step(step, g)
        for cb in callbacks:
            cb.on_epoch_end(epoch, g)
    return g


def test_step_records_place_in_epochs_and_agree_with_epoch_records(digits):
    ds = digits.subset(np.arange(200))
    x, y = prepare_inputs(ds, TINY, CPU)  # 200 examples, batch 50: 4 steps per epoch, 12 in all
    per_epoch = TrajectoryRecorder(x, y)
    aligned = TrajectoryRecorder(x, y, every_steps=4, steps_per_epoch=4, epochs=3)
    odd = TrajectoryRecorder(x, y, every_steps=5, steps_per_epoch=4, epochs=3)
    _train_by_hand(x, y, TINY, [per_epoch, aligned, odd])
    a, b, c = per_epoch.result(), aligned.result(), odd.result()
    np.testing.assert_array_equal(a.epochs, [1, 2, 3])
    np.testing.assert_array_equal(b.epochs, [1, 2, 3])
    np.testing.assert_array_equal(a.label_logit, b.label_logit)  # same model states, same records
    np.testing.assert_allclose(c.epochs, [5 / 4, 10 / 4, 3])  # steps 5 and 10, then the end of training
    np.testing.assert_array_equal(c.label_logit[-1], a.label_logit[-1])


def test_step_mode_without_a_per_step_hook_is_refused(digits):
    ds = digits.subset(np.arange(100))
    x, y = prepare_inputs(ds, TINY, CPU)
    rec = TrajectoryRecorder(x, y, every_steps=3, steps_per_epoch=2, epochs=3)
    group = build_group(TINY, (64,), 10, [0], CPU)
    for epoch in (1, 2):
        rec.on_epoch_end(epoch, group)
    with pytest.raises(RuntimeError, match="never called on_step"):
        rec.on_epoch_end(3, group)


def test_train_group_drives_the_step_recorder(digits):
    ds = digits.subset(np.arange(200))
    x, y = prepare_inputs(ds, TINY, CPU)
    rec = TrajectoryRecorder.for_recipe(x, y, TINY, train_size=200, every_steps=2)
    train_group(x, y, [np.arange(200)], TINY, [model_seeds(0, 1.0, 0)], num_classes=10, callbacks=[rec])
    np.testing.assert_allclose(rec.result().epochs, np.arange(1, 7) / 2)


def test_the_suite_reads_the_recorders_it_attaches(digits):
    """compute_proxies' hardness columns are the score functions of the recorders on the same training."""
    ds = digits.subset(np.arange(300))
    x, y = prepare_inputs(ds, TINY, CPU)
    traj, norms = TrajectoryRecorder(x, y), NormRecorder(x, y, [1])
    vogs = InputGradientRecorder(x, y, (1, 2, 3))
    from cscore_lab.proxies.recorders import FeatureRecorder

    feats = FeatureRecorder(x, [1, 3])
    train_group(x, y, [np.arange(300)] * 2, TINY, [model_seeds(7, 1.0, r) for r in range(2)], num_classes=10,
                callbacks=[traj, norms, vogs, feats])
    got = hardness(ds, TINY, runs=2, seed=7)
    assert list(got) == ["aum", "el2n_e1", "grand_e1", "vog", "datamap_confidence", "datamap_variability",
                         "dataiq_aleatoric", "final_loss", "final_margin", "prototypicality_e1", "prototypicality_e3"]
    t = traj.result()
    expect = {"aum": aum(t.margin), "el2n_e1": el2n(norms.error_norm[1]), "grand_e1": grand(norms.grad_norm[1]),
              "vog": vog(vogs.raw(), ds.labels), "datamap_confidence": datamap_confidence(t.label_prob),
              "datamap_variability": datamap_variability(t.label_prob), "dataiq_aleatoric": dataiq_aleatoric(t.label_prob),
              "final_loss": final_loss(t.label_logprob[-1]), "final_margin": final_margin(t.margin[-1]),
              "prototypicality_e1": prototypicality(feats.features[1], ds.labels),
              "prototypicality_e3": prototypicality(feats.features[3], ds.labels)}
    for name, value in expect.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)


# --------------------------------------------------------------------------- validation


def test_scores_refuse_bad_input():
    with pytest.raises(ValueError, match=r"margin must be 3-D \[records, models, examples\], got shape \(2, 3\)"):
        aum(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="non-finite"):
        aum(np.full((1, 1, 2), np.nan))
    with pytest.raises(ValueError, match="probabilities in"):
        datamap_confidence(np.full((1, 1, 2), 1.5))
    with pytest.raises(ValueError, match="sqrt"):
        el2n(np.full((1, 2), 2.0))
    with pytest.raises(ValueError, match="at least 2 checkpoints"):
        vog_raw(np.zeros((1, 1, 2, 3)))
    with pytest.raises(ValueError, match="input_grads must be"):
        vog_raw(np.zeros((2, 1, 2, 3, 3)))
    with pytest.raises(ValueError, match="labels must have one entry per example: got length 2, expected 3"):
        vog(np.ones((1, 3)), np.array([0, 1]))
    with pytest.raises(TypeError, match="labels must have an integer dtype, got dtype float64"):
        prototypicality(np.ones((1, 2, 2)), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="metric must be"):
        prototypicality(np.ones((1, 2, 2)), np.array([0, 1]), metric="manhattan")
    with pytest.raises(ValueError, match="log-probability"):
        final_loss(np.ones((1, 2)))
    with pytest.raises(ValueError, match="rows must sum to 1"):
        cleanlab_scores(np.array([0, 1]), np.array([[0.5, 0.6], [0.5, 0.5]]))
    with pytest.raises(ValueError, match="labels must be >= 0 and < 2"):
        cleanlab_scores(np.array([0, 2]), np.array([[0.5, 0.5], [0.5, 0.5]]))


def test_recorders_and_entry_point_refuse_bad_options(digits):
    x, y = prepare_inputs(digits.subset(np.arange(50)), TINY, CPU)
    with pytest.raises(ValueError, match="at least 2 checkpoint"):
        InputGradientRecorder(x, y, (2,))
    with pytest.raises(ValueError, match="leave 'vog' out"):
        compute_proxies(digits, TINY.with_(epochs=1), families=["vog"])
    with pytest.raises(ValueError, match=r"VoG needs at least 2 checkpoint epochs, got vog_epochs=\[2\]"):
        compute_proxies(digits, TINY, families=["vog"], vog_epochs=[2])
    with pytest.raises(ValueError, match="needs steps_per_epoch"):
        TrajectoryRecorder(x, y, every_steps=2)
    with pytest.raises(ValueError, match=r"early_epoch must be an integer in 1\.\.3, got 4"):
        compute_proxies(digits, TINY, families=["el2n"], early_epoch=4)
    with pytest.raises(ValueError, match=r"prototype_epochs must be integers in 1\.\.3"):
        compute_proxies(digits, TINY, families=["prototypicality"], prototype_epochs=[0])
    with pytest.raises(ValueError, match="prototype_metric must be"):
        compute_proxies(digits, TINY, families=["prototypicality"], prototype_metric="manhattan")
    with pytest.raises(ValueError, match=r"unknown proxy families \['magic'\]"):
        compute_proxies(digits, TINY, families=["aum", "magic"])
    with pytest.raises(ValueError, match="runs must be an integer >= 1, got 0"):
        compute_proxies(digits, TINY, runs=0)
    with pytest.raises(TypeError, match="Dataset"):
        compute_proxies(np.zeros((3, 3)), TINY)
    with pytest.raises(TypeError, match="StackedMLP or StackedModules"):
        gradient_norms(object(), x, y)
    with pytest.raises(ValueError, match=r"no gradient norms after epoch 1: recorded after \[\]"):
        NormRecorder(x, y, [1], gradients=False).get("gradient", 1)


# --------------------------------------------------------------------------- cleanlab


def test_cross_validation_folds_are_equal_stratified_and_out_of_sample():
    labels = np.repeat(np.arange(3), [11, 7, 5])  # 23 examples, 4 folds: sizes 6, 6, 6, 5
    fold_of, subsets = cross_validation_folds(labels, 4, seed=3)
    assert sorted(np.bincount(fold_of).tolist()) == [5, 6, 6, 6]
    assert {len(s) for s in subsets} == {23 - 6}
    for f, s in enumerate(subsets):
        assert not np.isin(s, np.flatnonzero(fold_of == f)).any()  # never its own fold
        assert len(np.unique(s)) == len(s)
        assert (23 - (fold_of == f).sum()) - len(s) in (0, 1)  # drops at most one example
    for c in range(3):  # each class spread evenly over the folds
        counts = np.bincount(fold_of[labels == c], minlength=4)
        assert counts.max() - counts.min() <= 1
    with pytest.raises(ValueError, match=r"folds must be an integer in 2\.\.11, got 12"):
        cross_validation_folds(labels, 12)


def test_out_of_sample_probabilities_come_from_the_model_that_did_not_see_the_example(digits):
    ds = digits.subset(np.arange(150))
    probs = out_of_sample_probabilities(ds, TINY, folds=3, seed=0, device="cpu")
    assert probs.shape == (150, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    # retrain fold 0's model alone and check its predictions are what fold 0's examples got
    from cscore_lab.proxies.label_issues import _fold_seeds

    fold_of, subsets = cross_validation_folds(ds.labels, 3, seed=0)
    x, y = prepare_inputs(ds, TINY, CPU)
    g = train_group(x, y, subsets, TINY, _fold_seeds(0, 3), num_classes=10)
    alone = torch.softmax(g.logits(x).double(), dim=-1).numpy()
    np.testing.assert_allclose(probs[fold_of == 1], alone[1][fold_of == 1], atol=1e-6)


def test_cleanlab_self_confidence_is_cleanlabs_own():
    pytest.importorskip("cleanlab", reason=f"needs the {CLEANLAB_EXTRA} extra: pip install 'cscore-lab[{CLEANLAB_EXTRA}]'")
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 40)
    probs = rng.dirichlet(np.ones(3) * 0.5, size=120)
    probs[np.arange(120), labels] += 1.0
    probs /= probs.sum(axis=1, keepdims=True)
    probs[:6] = probs[:6, ::-1]  # a few confidently "wrong" labels
    got = cleanlab_scores(labels, probs)
    np.testing.assert_allclose(got["cleanlab_self_confidence"], get_label_quality_scores(labels, probs,
                                                                                        method="self_confidence"))
    np.testing.assert_allclose(got["cleanlab_self_confidence"], probs[np.arange(120), labels])
    np.testing.assert_array_equal(got["cleanlab_label_issue"] == 0, find_label_issues(labels, probs))
    assert got["cleanlab_label_issue"].min() == 0  # something was flagged


def test_missing_cleanlab_names_the_extra(monkeypatch, digits):
    for mod in ("cleanlab", "cleanlab.filter", "cleanlab.rank"):
        monkeypatch.setitem(sys.modules, mod, None)
    hint = rf"pip install 'cscore-lab\[{CLEANLAB_EXTRA}\]'"
    with pytest.raises(ImportError, match=hint):
        cleanlab_scores(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]]))
    with pytest.raises(ImportError, match=rf"the cleanlab family was asked for but cleanlab is not installed \({hint}"):
        compute_proxies(digits, TINY, families=["cleanlab"])
    # by default it is left out, with a note in meta and on the progress channel
    notes = []
    ds = digits.subset(np.arange(120))
    table = compute_proxies(ds, TINY, spaces=["input"], progress=notes.append)
    assert "cleanlab" not in table.meta["families"] and not any(n.startswith("cleanlab") for n in table.names)
    assert "pip install 'cscore-lab[hardness]'" in table.meta["skipped"]["cleanlab"]
    assert any("left out of the default families: cleanlab is not installed" in n for n in notes)


# --------------------------------------------------------------------------- real training


def test_every_score_on_noisy_digits_is_finite_and_finds_flipped_labels():
    ds, mask = inject_label_noise(load_digits(), 0.1, seed=0)
    recipe = Recipe(name="digits-short", hidden=(64,), learning_rate=0.05, batch_size=32, epochs=6)
    got = hardness(ds, recipe, runs=2)
    assert list(got) == ["aum", "el2n_e1", "grand_e1", "vog", "datamap_confidence", "datamap_variability",
                         "dataiq_aleatoric", "final_loss", "final_margin", "prototypicality_e1", "prototypicality_e6"]
    for name, v in got.items():
        assert v.shape == (len(ds),) and np.isfinite(v).all(), name
    det = detect_injected(got, mask).to_frame()["auroc"]
    # every label-aware score ranks flipped labels low (oriented like the C-score)
    for name in ("aum", "el2n_e1", "grand_e1", "datamap_confidence", "final_loss", "final_margin",
                 "prototypicality_e1", "prototypicality_e6"):
        assert det[name] > 0.9, (name, det[name])
    assert abs(np.corrcoef(got["aum"], got["datamap_confidence"])[0, 1]) > 0.5


def test_the_generic_path_gives_the_mlp_paths_scores(digits):
    # nn.Linear stacks built under the same seeds are the recipe's MLP, so the torch.func path
    # (per-example gradients by vmap(grad), input gradients by autograd) must give the scores that
    # the hand-written batched formulas give
    ds = digits.subset(np.arange(240))

    def factory():
        return nn.Sequential(nn.Linear(64, 16), nn.ReLU(), nn.Linear(16, 10))

    generic = hardness(ds, TINY, runs=2, model_factory=factory)
    mlp = hardness(ds, TINY, runs=2)
    assert list(generic) == list(mlp) and len(mlp) == 11
    for name in mlp:
        assert np.isfinite(generic[name]).all(), name
        np.testing.assert_allclose(generic[name], mlp[name], rtol=1e-3, atol=1e-4, err_msg=name)
