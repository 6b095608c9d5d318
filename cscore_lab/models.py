"""Groups of M models whose parameters are stacked, so one pass trains or evaluates all M.

Two families share one small interface (:class:`ModelGroup`):

* :class:`StackedMLP` — fully connected ReLU nets with the forward and backward
  written as batched matrix products and SGD-with-momentum fused into the gradient
  product. This is where the speed on small models comes from.
* :class:`StackedModules` — any ``torch.nn.Module`` built by a factory (the CNN
  preset, or the user's own), stacked with ``torch.func`` and trained with autograd.

Both train with PyTorch's SGD convention: ``buf = momentum*buf + grad + wd*param``,
``param -= lr*buf``; and both initialise each model from its own seed.
"""

from __future__ import annotations

import copy
import math
from typing import Callable, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ModelGroup", "StackedMLP", "StackedModules", "SmallCNN", "build_group", "EVAL_CHUNK"]

EVAL_CHUNK = 4096  # examples per evaluation chunk, bounds memory at M x chunk x width


class ModelGroup(Protocol):
    """What the trainer needs from M stacked models."""

    num_models: int

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float, weight_decay: float) -> None:
        """One SGD step of every model: ``x`` [M, B, ...], ``y`` [M, B]."""

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [M, n, C] of every model on the same inputs ``x`` [n, ...]."""

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer representations [M, n, H] on the same inputs ``x`` [n, ...]."""


def _uniform(shape: Sequence[int], bound: float, gen: torch.Generator) -> torch.Tensor:
    return (torch.rand(*shape, generator=gen, dtype=torch.float32) * 2.0 - 1.0) * bound


# std of a standard normal truncated to [-2, 2]; jax's variance_scaling divides by it
_TRUNC_STD = 0.87962566103423978


def init_linear(fan_in: int, fan_out: int, scheme: str, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's (weight [fan_out, fan_in], bias [1, fan_out]) drawn from ``gen``.

    ``"torch"``: ``nn.Linear``'s default, uniform in ±1/sqrt(fan_in) for both.
    ``"glorot-normal"``: jax stax's ``Dense`` (the authors' MNIST code): weights from a normal
    truncated at ±2 std with variance 2/(fan_in+fan_out) after truncation, biases N(0, 0.01²).
    """
    if scheme == "torch":
        bound = 1.0 / math.sqrt(fan_in)
        return _uniform((fan_out, fan_in), bound, gen), _uniform((1, fan_out), bound, gen)
    if scheme == "glorot-normal":
        std = math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNC_STD
        w = torch.nn.init.trunc_normal_(torch.empty(fan_out, fan_in), 0.0, std, -2 * std, 2 * std, generator=gen)
        b = torch.randn(1, fan_out, generator=gen) * 0.01
        return w, b
    raise ValueError(f"unknown initialisation {scheme!r}; expected 'torch' or 'glorot-normal'")


class StackedMLP:
    """M ReLU MLPs ``d -> hidden... -> C`` held as stacked tensors.

    Weights are ``[M, fan_out, fan_in]`` (``nn.Linear``'s layout, which keeps the gradient
    product of a narrow last layer wide) so a mini-batch ``[M, B, fan_in]`` goes through one
    ``baddbmm`` per layer. Initialisation matches ``nn.Linear``'s default
    (uniform in ±1/sqrt(fan_in) for weights and biases), drawn per model from its seed.
    """

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int], device: torch.device, init: str = "torch"):
        self.sizes = [int(s) for s in sizes]
        self.num_models = len(seeds)
        ws: list[list[torch.Tensor]] = [[] for _ in range(len(sizes) - 1)]
        bs: list[list[torch.Tensor]] = [[] for _ in range(len(sizes) - 1)]
        for seed in seeds:
            gen = torch.Generator().manual_seed(int(seed))
            for layer, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
                w, b = init_linear(fan_in, fan_out, init, gen)
                ws[layer].append(w)
                bs[layer].append(b)
        self.weights = [torch.stack(w).to(device) for w in ws]  # [M, fan_out, fan_in], as nn.Linear
        self.biases = [torch.stack(b).to(device) for b in bs]  # [M, 1, fan_out]
        self._bufs: list[torch.Tensor] | None = None
        self._minus_one: torch.Tensor | None = None

    @property
    def params(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float, weight_decay: float) -> None:
        n_layers = len(self.weights)
        if self._bufs is None:
            self._bufs = [torch.zeros_like(p) for p in self.params]
        acts = [x]
        h = x
        for layer in range(n_layers - 1):
            h = torch.baddbmm(self.biases[layer], h, self.weights[layer].transpose(1, 2)).relu_()
            acts.append(h)
        logits = torch.baddbmm(self.biases[-1], h, self.weights[-1].transpose(1, 2))
        # d(mean cross-entropy)/d(logits) = (softmax - onehot) / B
        g = torch.softmax(logits, dim=-1)
        if self._minus_one is None or self._minus_one.shape[:2] != y.shape:
            self._minus_one = torch.full((*y.shape, 1), -1.0, dtype=g.dtype, device=g.device)
        g.scatter_add_(-1, y.unsqueeze(-1), self._minus_one)
        g.mul_(1.0 / x.shape[1])
        for layer in reversed(range(n_layers)):
            buf_w, buf_b = self._bufs[2 * layer], self._bufs[2 * layer + 1]
            g_prev = None
            if layer > 0:  # gradient w.r.t. the layer's input, through the ReLU
                g_prev = torch.ops.aten.threshold_backward(torch.bmm(g, self.weights[layer]), acts[layer], 0)
            # momentum folded into the gradient product: buf = momentum*buf + g^T h  ([M, out, in]: a wide product)
            buf_w.baddbmm_(g.transpose(1, 2), acts[layer], beta=momentum)
            buf_b.mul_(momentum).add_(g.sum(dim=1, keepdim=True))
            if weight_decay:
                buf_w.add_(self.weights[layer], alpha=weight_decay)
                buf_b.add_(self.biases[layer], alpha=weight_decay)
            g = g_prev
        torch._foreach_add_(self.params, self._bufs, alpha=-lr)

    def _hidden(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = torch.matmul(h, w.transpose(1, 2)).add_(b).relu_()
        return h

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.weights) == 1:
            return x.expand(self.num_models, *x.shape)
        return torch.cat([self._hidden(c) for c in x.split(EVAL_CHUNK)], dim=1)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for c in x.split(EVAL_CHUNK):
            h = self._hidden(c)
            out.append(torch.matmul(h, self.weights[-1].transpose(1, 2)).add_(self.biases[-1]))
        return torch.cat(out, dim=1)


class SmallCNN(nn.Module):
    """Three conv blocks (conv3x3-ReLU-maxpool), global average pool, linear: a small net for 32x32 images."""

    def __init__(self, in_channels: int, num_classes: int, channels: Sequence[int] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _last_linear_name(module: nn.Module) -> str:
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError("the model has no nn.Linear layer; penultimate features are taken at the input of the last one")
    return names[-1]


class StackedModules:
    """M copies of any ``nn.Module`` (built by ``factory``), stacked with ``torch.func``.

    Each model is built under its own seed, so its initialisation is its own. BatchNorm
    layers are switched to batch statistics (``replace_all_batch_norm_modules_``),
    since running statistics cannot be updated inside ``vmap``. Penultimate features
    are the input of the last ``nn.Linear`` (found by module order).
    """

    def __init__(self, factory: Callable[[], nn.Module], seeds: Sequence[int], device: torch.device):
        from torch.func import stack_module_state

        models = []
        for seed in seeds:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(seed))
                m = factory()
            if not isinstance(m, nn.Module):
                raise TypeError(f"model factory must return a torch.nn.Module, got {type(m).__name__}")
            torch.func.replace_all_batch_norm_modules_(m)
            models.append(m.to(device))
        self.num_models = len(models)
        params, buffers = stack_module_state(models)
        self.params = {k: v.detach().requires_grad_(True) for k, v in params.items()}
        self.buffers = buffers
        self.base = copy.deepcopy(models[0]).to("meta")
        last = _last_linear_name(self.base)
        self._feature_base = copy.deepcopy(self.base)
        parent_name, _, child = last.rpartition(".")
        parent = self._feature_base.get_submodule(parent_name) if parent_name else self._feature_base
        setattr(parent, child, nn.Identity())
        self._feature_params = {k: v for k, v in self.params.items() if not k.startswith(last + ".")}
        self._bufs: list[torch.Tensor] | None = None

    def _vmapped(self, base: nn.Module, params: dict, x: torch.Tensor, same_input: bool) -> torch.Tensor:
        from torch.func import functional_call, vmap

        def call(p, b, xi):
            return functional_call(base, (p, b), (xi,))

        in_dims = (0, 0, None if same_input else 0)
        return vmap(call, in_dims=in_dims)(params, self.buffers, x)

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float, weight_decay: float) -> None:
        names = list(self.params)
        logits = self._vmapped(self.base, self.params, x, same_input=False)
        # sum over models of each model's mean loss: each model gets its own gradient
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / x.shape[1]
        grads = torch.autograd.grad(loss, [self.params[n] for n in names])
        with torch.no_grad():
            params = [self.params[n] for n in names]
            if self._bufs is None:
                self._bufs = [torch.zeros_like(p) for p in params]
            if weight_decay:
                grads = torch._foreach_add(grads, params, alpha=weight_decay)
            torch._foreach_mul_(self._bufs, momentum)
            torch._foreach_add_(self._bufs, grads)
            torch._foreach_add_(params, self._bufs, alpha=-lr)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._vmapped(self.base, self.params, c, True) for c in x.split(EVAL_CHUNK // 4)], dim=1)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(
            [self._vmapped(self._feature_base, self._feature_params, c, True) for c in x.split(EVAL_CHUNK // 4)], dim=1
        )


def build_group(
    recipe,
    input_shape: Sequence[int],
    num_classes: int,
    seeds: Sequence[int],
    device: torch.device,
    model_factory: Callable[[], nn.Module] | None = None,
) -> ModelGroup:
    """The model group a recipe asks for (or the user's factory, when given)."""
    if model_factory is not None:
        return StackedModules(model_factory, seeds, device)
    if recipe.model == "mlp":
        d = int(math.prod(input_shape))
        return StackedMLP([d, *recipe.hidden, num_classes], seeds, device, init=recipe.init)
    if recipe.model == "cnn":
        if len(input_shape) != 3:
            raise ValueError(
                f"recipe {recipe.name!r} uses a CNN, which needs image inputs [channels, height, width]; "
                f"got input shape {tuple(input_shape)}"
            )
        channels = int(input_shape[0])
        hidden = tuple(recipe.hidden)
        return StackedModules(lambda: SmallCNN(channels, num_classes, hidden), seeds, device)
    raise ValueError(f"unknown model family {recipe.model!r}")
