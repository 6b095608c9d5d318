"""Training many models at once: same results as one at a time, seeds, devices."""

import numpy as np
import pytest
import torch
from torch import nn

from cscore_lab.backends import torch_threads
from cscore_lab.data import load_digits
from cscore_lab.holdout import draw_subset
from cscore_lab.recipes import get_preset
from cscore_lab.trainer import model_seeds, predict_correct, prepare_inputs, resolve_device, train_group


def _one_at_a_time(x, y, subset, recipe, seed):
    """The plain per-model PyTorch loop a user would write."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(x.shape[1], recipe.hidden[0]), nn.ReLU(), nn.Linear(recipe.hidden[0], 10))
    opt = torch.optim.SGD(net.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum)
    sub = torch.from_numpy(subset)
    for _ in range(recipe.epochs):
        order = sub[torch.randperm(len(sub), generator=g)]
        for s in range(0, len(order), recipe.batch_size):
            idx = order[s:s + recipe.batch_size]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    with torch.no_grad():
        return (net(x).argmax(1) == y).numpy()


def test_batched_training_matches_one_at_a_time_accuracy():
    """Batching changes speed, not results: held-out accuracy within 1 percentage point on digits."""
    ds = load_digits()
    recipe = get_preset("digits-mlp").recipe
    x, y = prepare_inputs(ds, recipe, torch.device("cpu"))
    n_models, ratio = 12, 0.5
    seeds = [model_seeds(7, ratio, r) for r in range(n_models)]
    subsets = [draw_subset(s.subset, len(ds), int(ratio * len(ds))) for s in seeds]
    # one thread, as the local backend trains: small per-model steps only lose to thread hand-offs
    with torch_threads(1):
        correct = predict_correct(train_group(x, y, subsets, recipe, seeds, num_classes=10), x, y)
        batched, single = [], []
        for i, (s, sub) in enumerate(zip(seeds, subsets)):
            held = np.ones(len(ds), bool)
            held[sub] = False
            batched.append(correct[i][held].mean())
            single.append(_one_at_a_time(x, y, sub, recipe, s.init)[held].mean())
    assert np.mean(batched) > 0.9
    assert abs(np.mean(batched) - np.mean(single)) < 0.01, (np.mean(batched), np.mean(single))


def test_same_seeds_same_models_whatever_the_group():
    """A model's result depends on its own seeds, not on which models share its group."""
    ds = load_digits().subset(np.arange(400))
    recipe = get_preset("digits-mlp").recipe.with_(epochs=2)
    x, y = prepare_inputs(ds, recipe, torch.device("cpu"))
    seeds = [model_seeds(0, 0.5, r) for r in range(4)]
    subsets = [draw_subset(s.subset, len(ds), 200) for s in seeds]
    all4 = train_group(x, y, subsets, recipe, seeds, num_classes=10)
    again = train_group(x, y, subsets, recipe, seeds, num_classes=10)
    for a, b in zip(all4.params, again.params):
        assert torch.equal(a, b)
    last2 = train_group(x, y, subsets[2:], recipe, seeds[2:], num_classes=10)
    torch.testing.assert_close(all4.weights[0][2:], last2.weights[0], rtol=1e-4, atol=1e-5)


def test_model_seeds_are_distinct_and_stable():
    a = model_seeds(0, 0.3, 5)
    assert a == model_seeds(0, 0.3, 5)
    assert len({a.subset, a.init, a.order}) == 3
    assert a != model_seeds(0, 0.3, 6) and a != model_seeds(1, 0.3, 5) and a != model_seeds(0, 0.4, 5)


def test_subsets_must_share_a_size():
    ds = load_digits().subset(np.arange(100))
    recipe = get_preset("digits-mlp").recipe
    x, y = prepare_inputs(ds, recipe, torch.device("cpu"))
    seeds = [model_seeds(0, 0.5, r) for r in range(2)]
    with pytest.raises(ValueError, match="same size"):
        train_group(x, y, [np.arange(10), np.arange(12)], recipe, seeds, num_classes=10)


def test_resolve_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu9'"):
        resolve_device("tpu9")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda' was requested but CUDA is not available"):
            resolve_device("cuda")
        with pytest.raises(ValueError, match="'cuda:1' was requested"):
            resolve_device("cuda:1")


def test_input_scaling():
    ds = load_digits()
    rec = get_preset("digits-mlp").recipe
    x, _ = prepare_inputs(ds, rec, torch.device("cpu"))
    assert float(x.max()) == 1.0 and float(x.min()) == 0.0
    xs, _ = prepare_inputs(ds, rec.with_(input_scaling="standardize"), torch.device("cpu"))
    assert abs(float(xs.mean())) < 1e-4
    xn, _ = prepare_inputs(ds, rec.with_(input_scaling="none"), torch.device("cpu"))
    assert float(xn.max()) == 16.0
