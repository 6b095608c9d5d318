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


@pytest.mark.parametrize("strategy", ["vmap", "loop"])
def test_stacked_modules_match_per_model_training(strategy):
    """The generic torch.func path gives each model its own gradient, batched by vmap or looped."""
    def factory():
        return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))

    group = StackedModules(factory, seeds=[3, 4], device=torch.device("cpu"), strategy=strategy)
    assert group.strategy == strategy
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


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_small_cnn_group_loops_and_matches_vmap(precision):
    """A CNN is looped model by model (channels-last) by default; its steps equal the vmapped ones."""
    def factory():
        return SmallCNN(3, 4, (4, 8))

    looped = StackedModules(factory, seeds=[0, 1], device=torch.device("cpu"), precision=precision)
    vmapped = StackedModules(factory, seeds=[0, 1], device=torch.device("cpu"), precision=precision, strategy="vmap")
    assert looped.strategy == "loop"
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        x = torch.randn(2, 5, 3, 16, 16, generator=gen)
        y = torch.randint(0, 4, (2, 5), generator=gen)
        looped.train_step(x, y, 0.05, 0.9, 5e-4)
        vmapped.train_step(x, y, 0.05, 0.9, 5e-4)
    tol = {"rtol": 1e-4, "atol": 1e-5} if precision == "fp32" else {"rtol": 0.05, "atol": 5e-3}
    for k in looped.params:
        torch.testing.assert_close(looped.params[k], vmapped.params[k], **tol)
    x_eval = torch.randn(6, 3, 16, 16)
    assert looped.logits(x_eval).shape == (2, 6, 4) and looped.features(x_eval).shape == (2, 6, 8)
    torch.testing.assert_close(looped.logits(x_eval), vmapped.logits(x_eval), **tol)
    with pytest.raises(ValueError, match="unknown strategy 'pmap'"):
        StackedModules(factory, seeds=[0], device=torch.device("cpu"), strategy="pmap")


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


# ----------------------------------------------------------------------------- bf16


def _mlp_batches(sizes, m, batch, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.rand(m, batch, sizes[0], generator=g), torch.randint(0, sizes[-1], (m, batch), generator=g))
            for _ in range(steps)]


@pytest.mark.parametrize("wd", [0.0, 0.01])
def test_bf16_stacked_mlp_is_autocast_sgd_per_model(wd):
    """bf16 operands, float32 masters: a few steps of each stacked model agree with the same nn.Linear
    stack trained alone under torch.autocast(bf16) + torch.optim.SGD to 1% of the distance the weights
    moved, while both differ from float32 training by bf16 rounding (up to ~15% of it here)."""
    sizes, seeds = [20, 32, 16, 5], [1, 2, 3]
    ref = StackedMLP(sizes, seeds, torch.device("cpu"), init="glorot-normal")
    low = StackedMLP(sizes, seeds, torch.device("cpu"), init="glorot-normal", precision="bf16")
    nets = _reference_nets(ref)
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9, weight_decay=wd) for n in nets]
    start = [p.clone() for p in ref.params]
    for x, y in _mlp_batches(sizes, 3, 16, 5):
        ref.train_step(x, y, 0.1, 0.9, wd)
        low.train_step(x, y, 0.1, 0.9, wd)
        for m, (net, opt) in enumerate(zip(nets, opts)):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = net(x[m])
            nn.functional.cross_entropy(out.float(), y[m]).backward()
            opt.step()
    for m, net in enumerate(nets):
        lins = [l for l in net if isinstance(l, nn.Linear)]
        for i, lin in enumerate(lins):
            for got, want, fp32, p0 in ((low.weights[i][m], lin.weight, ref.weights[i][m], start[2 * i][m]),
                                        (low.biases[i][m, 0], lin.bias, ref.biases[i][m, 0], start[2 * i + 1][m, 0])):
                assert got.dtype == torch.float32
                moved = float((fp32 - p0).norm())
                assert moved > 1e-3  # the models did learn something
                assert float((got - want.detach()).norm()) < 0.01 * moved
                assert float((got - fp32).norm()) < 0.25 * moved
    x_eval = torch.rand(40, sizes[0])
    logits = low.logits(x_eval)
    for m, net in enumerate(nets):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            want = net(x_eval).float()
        torch.testing.assert_close(logits[m], want, rtol=0.02, atol=0.02)
    # the bf16 copies the products use are the masters rounded to nearest even
    weights_low, _ = low._operands()
    for w, wl in zip(low.weights, weights_low):
        assert torch.equal(w.to(torch.bfloat16), wl)


def test_fused_bf16_update_matches_the_torch_ops_path():
    """The Numba update (CPU) and the torch-ops update (what CUDA runs) are the same step."""
    sizes, seeds = [12, 24, 4], [5, 6]
    fused = StackedMLP(sizes, seeds, torch.device("cpu"), precision="bf16")
    plain = StackedMLP(sizes, seeds, torch.device("cpu"), precision="bf16")
    plain.fused_update = False
    for x, y in _mlp_batches(sizes, 2, 8, 4, seed=3):
        fused.train_step(x, y, 0.05, 0.9, 1e-3)
        plain.train_step(x, y, 0.05, 0.9, 1e-3)
    for a, b in zip(fused.params, plain.params):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_bf16_kernel_rounds_like_torch():
    """With lr = momentum = 0 the kernel only refreshes the bf16 copy: it must round as Tensor.to(bfloat16)
    does (nearest, ties to even), keep NaN a NaN and infinities infinite."""
    from cscore_lab.models import _sgd_low_precision

    bits = torch.tensor([0x3F808000, 0x3F818000, 0x3F80FFFF, 0x3F808001, 0x7F7FFFFF, 0x00000001, 0x80008000],
                        dtype=torch.int64).to(torch.int32)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0])
    w = torch.cat([bits.view(torch.float32), special, torch.randn(1000) * 3])
    expected = w.to(torch.bfloat16)
    w_low = torch.zeros_like(w, dtype=torch.bfloat16)
    before = w.clone()
    _sgd_low_precision(w, torch.zeros_like(w), torch.zeros_like(w_low), w_low, 0.0, 0.0, 0.0, fused=True)
    assert torch.equal(w.nan_to_num(), before.nan_to_num())
    got, want = w_low.view(torch.int16), expected.view(torch.int16)
    nan = torch.isnan(expected)
    assert torch.isnan(w_low[nan]).all()
    assert torch.equal(got[~nan], want[~nan])


def test_stacked_modules_train_under_bf16_autocast():
    """bf16 autocast through vmap: float32 parameters, each model close to its own autocast-trained copy."""
    def factory():
        return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))

    group = StackedModules(factory, seeds=[3, 4], device=torch.device("cpu"), precision="bf16")
    nets = []
    for s in (3, 4):
        torch.manual_seed(s)
        nets.append(factory())
    start = [p.detach().clone() for p in group.params.values()]
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9) for n in nets]
    gen = torch.Generator().manual_seed(0)
    for _ in range(4):
        x = torch.randn(2, 8, 6, generator=gen)
        y = torch.randint(0, 3, (2, 8), generator=gen)
        group.train_step(x, y, 0.1, 0.9, 0.0)
        for m, (net, opt) in enumerate(zip(nets, opts)):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = net(x[m])
            nn.functional.cross_entropy(out.float(), y[m]).backward()
            opt.step()
    assert all(p.dtype == torch.float32 for p in group.params.values())
    assert any((p - p0).abs().max() > 1e-3 for p, p0 in zip(group.params.values(), start))
    x_eval = torch.randn(5, 6)
    logits = group.logits(x_eval)
    assert logits.dtype == torch.float32
    for m, net in enumerate(nets):
        with torch.no_grad():
            torch.testing.assert_close(logits[m], net(x_eval), rtol=0.05, atol=0.05)
