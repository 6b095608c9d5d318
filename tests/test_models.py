"""The stacked MLP's hand-written backward and fused SGD against autograd and torch.optim.SGD."""

import numpy as np
import pytest
import torch
from torch import nn

from cscore_lab.models import SmallCNN, StackedMLP, StackedModules


def _reference_nets(group: StackedMLP) -> list[nn.Sequential]:
    """Plain nn.Module copies of each stacked model."""
    nets = []
    for m in range(group.num_models):
        layers = []
        for i, (w, b) in enumerate(zip(group.weights, group.biases)):
            lin = nn.Linear(w.shape[2], w.shape[1])
            with torch.no_grad():
                lin.weight.copy_(w[m])
                lin.bias.copy_(b[m, 0])
            layers.append(lin)
            if i < len(group.weights) - 1:
                layers.append(nn.ReLU())
        nets.append(nn.Sequential(*layers))
    return nets


@pytest.mark.parametrize("sizes,momentum,wd", [([5, 7, 3], 0.9, 0.0), ([4, 6, 5, 3], 0.5, 0.01), ([3, 2], 0.0, 0.0)])
def test_stacked_mlp_steps_match_torch_sgd(sizes, momentum, wd):
    torch.manual_seed(0)
    m_models, batch, lr = 3, 8, 0.1
    group = StackedMLP(sizes, seeds=[11, 12, 13], device=torch.device("cpu"))
    nets = _reference_nets(group)
    opts = [torch.optim.SGD(n.parameters(), lr=lr, momentum=momentum, weight_decay=wd) for n in nets]
    for _ in range(4):  # several steps: momentum buffers must match too
        x = torch.randn(m_models, batch, sizes[0])
        y = torch.randint(0, sizes[-1], (m_models, batch))
        group.train_step(x, y, lr, momentum, wd)
        for m, (net, opt) in enumerate(zip(nets, opts)):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[m]), y[m]).backward()
            opt.step()
    for m, net in enumerate(nets):
        lins = [l for l in net if isinstance(l, nn.Linear)]
        for i, lin in enumerate(lins):
            torch.testing.assert_close(group.weights[i][m], lin.weight.detach(), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(group.biases[i][m, 0], lin.bias.detach(), rtol=1e-5, atol=1e-6)
    x_eval = torch.randn(10, sizes[0])
    logits = group.logits(x_eval)
    for m, net in enumerate(nets):
        torch.testing.assert_close(logits[m], net(x_eval).detach(), rtol=1e-5, atol=1e-5)


def test_stacked_mlp_init_depends_only_on_seed():
    a = StackedMLP([6, 4, 3], seeds=[1, 2], device=torch.device("cpu"))
    b = StackedMLP([6, 4, 3], seeds=[2, 9, 1], device=torch.device("cpu"))
    torch.testing.assert_close(a.weights[0][0], b.weights[0][2])
    torch.testing.assert_close(a.weights[1][1], b.weights[1][0])
    assert not torch.equal(a.weights[0][0], a.weights[0][1])
    bound = 1 / np.sqrt(6)
    assert float(a.weights[0].abs().max()) <= bound


def test_stacked_modules_match_per_model_training():
    """The generic torch.func path gives each model its own gradient."""
    def factory():
        return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))

    group = StackedModules(factory, seeds=[3, 4], device=torch.device("cpu"))
    nets = []
    for s in (3, 4):
        torch.manual_seed(s)
        nets.append(factory())
    opts = [torch.optim.SGD(n.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-3) for n in nets]
    for _ in range(3):
        x = torch.randn(2, 6, 5)
        y = torch.randint(0, 3, (2, 6))
        group.train_step(x, y, 0.05, 0.9, 1e-3)
        for m, (net, opt) in enumerate(zip(nets, opts)):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[m]), y[m]).backward()
            opt.step()
    x_eval = torch.randn(7, 5)
    logits = group.logits(x_eval)
    feats = group.features(x_eval)
    assert feats.shape == (2, 7, 8)
    for m, net in enumerate(nets):
        torch.testing.assert_close(logits[m], net(x_eval).detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(feats[m], net[1](net[0](x_eval)).detach(), rtol=1e-5, atol=1e-5)


def test_small_cnn_group_runs_on_images():
    group = StackedModules(lambda: SmallCNN(3, 4, (4, 8)), seeds=[0, 1], device=torch.device("cpu"))
    x = torch.randn(2, 5, 3, 16, 16)
    y = torch.randint(0, 4, (2, 5))
    group.train_step(x, y, 0.01, 0.9, 0.0)
    assert group.logits(torch.randn(6, 3, 16, 16)).shape == (2, 6, 4)
    assert group.features(torch.randn(6, 3, 16, 16)).shape == (2, 6, 8)


def test_factory_must_return_module():
    with pytest.raises(TypeError, match="must return a torch.nn.Module"):
        StackedModules(lambda: "not a model", seeds=[0], device=torch.device("cpu"))


def test_glorot_normal_init_matches_stax_definition():
    """jax stax Dense: truncated-normal weights (±2 std) with variance 2/(fan_in+fan_out), biases N(0, 0.01²)."""
    from cscore_lab.models import init_linear

    gen = torch.Generator().manual_seed(0)
    w, b = init_linear(784, 512, "glorot-normal", gen)
    assert w.shape == (512, 784) and b.shape == (1, 512)
    target = np.sqrt(2 / (784 + 512))
    assert abs(float(w.std()) / target - 1) < 0.01
    assert float(w.abs().max()) <= 2 * target / 0.87962566103423978 + 1e-6
    assert abs(float(b.std()) - 0.01) < 0.002
    with pytest.raises(ValueError, match="unknown initialisation 'he'"):
        init_linear(3, 2, "he", gen)
    group = StackedMLP([6, 4, 3], seeds=[1], device=torch.device("cpu"), init="glorot-normal")
    assert float(group.biases[0].abs().max()) < 0.05  # biases tiny, unlike nn.Linear's ±1/sqrt(6)
