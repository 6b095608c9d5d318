"""Groups of M models whose parameters are stacked, so one pass trains or evaluates all M.

Two families share one small interface (:class:`ModelGroup`):

* :class:`StackedMLP` — fully connected ReLU nets with the forward and backward
  written as batched matrix products and SGD-with-momentum fused into the gradient
  product. This is where the speed on small models comes from.
* :class:`StackedModules` — any ``torch.nn.Module`` built by a factory (the CNN
  preset, or the user's own), its parameters stacked, run through ``torch.func.vmap``
  or model by model (CNNs on a CPU), and trained with autograd.

Both train with PyTorch's SGD convention: ``buf = momentum*buf + grad + wd*param``,
``param -= lr*buf``; both initialise each model from its own seed; both take a
``precision`` (``"fp32"``, or ``"bf16"``: bf16 operands in the products, float32 master
weights, momentum buffers and loss).
"""

from __future__ import annotations

import copy
import functools
import math
from typing import Callable, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .recipes import PRECISIONS

__all__ = ["ModelGroup", "StackedMLP", "StackedModules", "SmallCNN", "build_group", "compute_dtype", "EVAL_CHUNK",
           "AUTO_CONV_STRATEGY"]

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


def compute_dtype(precision: str) -> torch.dtype:
    """The dtype of the operands of the matrix products for a recipe's ``precision``."""
    if precision == "fp32":
        return torch.float32
    if precision == "bf16":
        return torch.bfloat16
    raise ValueError(f"unknown precision {precision!r}; expected one of {PRECISIONS}")


@functools.lru_cache(maxsize=None)
def _bf16_sgd_kernel():
    """The fused SGD step of a bf16 weight-gradient (Numba, compiled on first use).

    One pass over a layer's parameters: ``buf = momentum*buf + grad + wd*w`` (float32),
    ``w -= lr*buf`` (float32 master), ``w_low = bf16(w)`` rounded to nearest even, as
    ``Tensor.to(torch.bfloat16)`` does. Three torch passes (mixed-dtype add, update, cast)
    took 25 ms per mnist-mlp step of 25 models on one core where this takes 4 ms.
    """
    from llvmlite import ir
    from numba import njit, types
    from numba.extending import intrinsic

    @intrinsic
    def f32_bits(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.IntType(32))
        return types.uint32(types.float32), codegen

    @intrinsic
    def bits_f32(typingctx, x):
        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], ir.FloatType())
        return types.float32(types.uint32), codegen

    @njit(nogil=True, cache=True, boundscheck=False)
    def sgd_bf16(w, buf, grad, w_low, lr, momentum, weight_decay):  # pragma: no cover - compiled
        lr32, mu32, wd32 = np.float32(lr), np.float32(momentum), np.float32(weight_decay)
        for i in range(w.size):
            wi = w[i]
            b = mu32 * buf[i] + bits_f32(np.uint32(grad[i]) << np.uint32(16))
            if wd32 != 0:
                b = b + wd32 * wi
            buf[i] = b
            wi = wi - lr32 * b
            w[i] = wi
            bits = f32_bits(wi)
            rounded = (bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)
            w_low[i] = np.uint16(0x7FC0) if np.isnan(wi) else np.uint16(rounded)

    return sgd_bf16


def _as_u16(t: torch.Tensor) -> np.ndarray:
    return t.view(-1).view(torch.int16).numpy().view(np.uint16)


def _sgd_low_precision(w: torch.Tensor, buf: torch.Tensor, grad: torch.Tensor, w_low: torch.Tensor,
                       lr: float, momentum: float, weight_decay: float, fused: bool) -> None:
    """SGD-momentum step of float32 ``w``/``buf`` from a bf16 ``grad``; refreshes the bf16 copy ``w_low``."""
    if fused:
        _bf16_sgd_kernel()(w.view(-1).numpy(), buf.view(-1).numpy(), _as_u16(grad), _as_u16(w_low),
                           float(lr), float(momentum), float(weight_decay))
        return
    buf.mul_(momentum).add_(grad)
    if weight_decay:
        buf.add_(w, alpha=weight_decay)
    w.add_(buf, alpha=-lr)
    w_low.copy_(w)


class _Workspace:
    """Every buffer one training step of a given batch size needs, allocated once.

    Allocating the step's activations afresh each step cost up to half of a digits step
    (new large blocks come back from the allocator as fresh pages); reusing them made the
    step time steady as well as shorter.
    """

    def __init__(self, sizes: Sequence[int], models: int, batch: int, dtype: torch.dtype, device: torch.device):
        hidden, classes = sizes[1:-1], sizes[-1]
        f32 = torch.float32
        self.acts = [torch.empty(models, batch, h, dtype=dtype, device=device) for h in hidden]
        self.grads = [torch.empty(models, batch, h, dtype=dtype, device=device) for h in hidden]
        self.logits_t = torch.empty(models, classes, batch, dtype=dtype, device=device)
        self.grad_t = torch.empty(models, classes, batch, dtype=f32, device=device)
        self.grad_t_low = self.grad_t if dtype == f32 else torch.empty_like(self.grad_t, dtype=dtype)
        self.minus_one = torch.full((models, 1, batch), -1.0, dtype=f32, device=device)
        self.bias_grads = [torch.empty(models, 1, h, dtype=f32, device=device) for h in hidden]
        self.bias_grads.append(torch.empty(models, classes, 1, dtype=f32, device=device))
        self.weight_grads = None if dtype == f32 else [
            torch.empty(models, b, a, dtype=dtype, device=device) for a, b in zip(sizes[:-1], sizes[1:])
        ]


class StackedMLP:
    """M ReLU MLPs ``d -> hidden... -> C`` held as stacked tensors.

    Weights are ``[M, fan_out, fan_in]`` (``nn.Linear``'s layout) and biases ``[M, 1, fan_out]``,
    always float32 (the master copy); a mini-batch ``[M, B, fan_in]`` goes through one
    ``baddbmm`` per layer and the backward is written out by hand, SGD momentum folded
    into the weight-gradient product. The output layer is computed transposed
    (``logits^T = W h^T``, ``[M, C, B]``): its softmax then runs over a strided dimension,
    20x faster than over a contiguous dimension of 10, and its weight gradient is a wide product.

    ``precision="bf16"``: the products take bf16 operands (bf16 copies of the weights,
    refreshed once per step by a fused update kernel; bf16 activations and gradients) and
    accumulate in float32; master weights, momentum buffers, softmax and loss stay float32.
    ``init`` is ``"torch"`` or ``"glorot-normal"`` (:func:`init_linear`), drawn per model from its seed.
    """

    def __init__(self, sizes: Sequence[int], seeds: Sequence[int], device: torch.device, init: str = "torch",
                 precision: str = "fp32"):
        self.sizes = [int(s) for s in sizes]
        self.num_models = len(seeds)
        self.precision = precision
        self.dtype = compute_dtype(precision)
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
        self._spaces: dict[int, _Workspace] = {}
        self._low: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None  # bf16 copies, kept current
        # the fused Numba update needs CPU tensors; elsewhere (CUDA) the same step runs as torch ops
        self.fused_update = torch.device(device).type == "cpu"

    @property
    def params(self) -> list[torch.Tensor]:
        return [t for pair in zip(self.weights, self.biases) for t in pair]

    def _operands(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Weights and biases in the products' dtype: the masters, or their bf16 copies."""
        if self.dtype == torch.float32:
            return self.weights, self.biases
        if self._low is None:
            self._low = ([w.to(self.dtype) for w in self.weights], [b.to(self.dtype) for b in self.biases])
        return self._low

    def _workspace(self, batch: int, device: torch.device) -> _Workspace:
        ws = self._spaces.get(batch)
        if ws is None:
            if len(self._spaces) >= 4:  # an epoch has at most two batch sizes; callers with more just rebuild
                self._spaces.clear()
            ws = self._spaces[batch] = _Workspace(self.sizes, self.num_models, batch, self.dtype, device)
        return ws

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float, weight_decay: float) -> None:
        if self._bufs is None:
            self._bufs = [torch.zeros_like(p) for p in self.params]
        if x.dtype != self.dtype:
            x = x.to(self.dtype)
        ws = self._workspace(x.shape[1], x.device)
        weights, biases = self._operands()
        self._step(x, y, ws, weights, biases, self.weights, self.biases, self._bufs, lr, momentum, weight_decay)

    def _step(self, x, y, ws, weights, biases, master_w, master_b, bufs, lr, momentum, weight_decay) -> None:
        """One SGD step: ``weights``/``biases`` are the products' operands (masters or bf16 copies),
        ``master_w``/``master_b`` the float32 masters, ``bufs`` the momentum buffers (weight, bias per layer)."""
        n_layers = len(weights)
        batch = x.shape[1]
        low = self.dtype != torch.float32
        acts = [x]
        h = x
        for layer in range(n_layers - 1):
            h = torch.baddbmm(biases[layer], h, weights[layer].transpose(1, 2), out=ws.acts[layer]).relu_()
            acts.append(h)
        # logits^T [M, C, B]; d(mean cross-entropy)/d(logits) = (softmax - onehot) / B, in float32
        torch.baddbmm(biases[-1].transpose(1, 2), weights[-1], h.transpose(1, 2), out=ws.logits_t)
        g_t = ws.grad_t
        if low:
            g_t.copy_(ws.logits_t)
            torch._softmax(g_t, 1, False, out=g_t)
        else:
            torch._softmax(ws.logits_t, 1, False, out=g_t)
        g_t.scatter_add_(1, y.unsqueeze(1), ws.minus_one)
        g_t.mul_(1.0 / batch)
        if low:
            ws.grad_t_low.copy_(g_t)
        g = ws.grad_t_low.transpose(1, 2)  # [M, B, C] view; hidden layers' gradients are [M, B, out]
        for layer in reversed(range(n_layers)):
            buf_w, buf_b = bufs[2 * layer], bufs[2 * layer + 1]
            g_t = g.transpose(1, 2)  # [M, out, B]
            if layer > 0:  # gradient w.r.t. the layer's input, through the ReLU (before this layer's update)
                g_prev = torch.bmm(g, weights[layer], out=ws.grads[layer - 1])
                torch.ops.aten.threshold_backward.grad_input(g_prev, acts[layer], 0, grad_input=g_prev)
            bias_grad = ws.bias_grads[layer]
            if layer == n_layers - 1:  # [M, C, 1]: sum over the batch of g^T
                torch.sum(ws.grad_t, dim=2, keepdim=True, out=bias_grad)
                bias_grad = bias_grad.transpose(1, 2)
            else:
                torch.sum(g, dim=1, keepdim=True, dtype=torch.float32, out=bias_grad)
            buf_b.mul_(momentum).add_(bias_grad)
            if weight_decay:
                buf_b.add_(master_b[layer], alpha=weight_decay)
            if low:
                grad_w = torch.bmm(g_t, acts[layer], out=ws.weight_grads[layer])  # [M, out, in], bf16
                _sgd_low_precision(master_w[layer], buf_w, grad_w, weights[layer], lr, momentum, weight_decay,
                                   self.fused_update)
                master_b[layer].add_(buf_b, alpha=-lr)
                biases[layer].copy_(master_b[layer])
            else:
                # momentum folded into the gradient product: buf = momentum*buf + g^T h ([M, out, in])
                buf_w.baddbmm_(g_t, acts[layer], beta=momentum)
                if weight_decay:
                    buf_w.add_(master_w[layer], alpha=weight_decay)
            if layer > 0:
                g = g_prev
        if not low:
            torch._foreach_add_([t for pair in zip(master_w, master_b) for t in pair], bufs, alpha=-lr)

    def _eval_chunk(self) -> int:
        """Rows per evaluation chunk: about 8M elements of the widest layer's activations for all M models
        on a CPU (32 MB in float32; on mnist-mlp x 25, 655-row chunks beat 256 by 5% and 2048-4096 by 10%),
        256M on a GPU."""
        widest = max(self.sizes[1:]) * self.num_models
        budget = (1 << 23) if self.fused_update else (1 << 28)
        return int(max(64, budget // widest))

    def _forward_shared(self, x: torch.Tensor, layers: int) -> torch.Tensor:
        """Outputs [M, n, width] (possibly a strided view) of the first ``layers`` layers of every model
        on the same inputs ``x`` [n, d].

        The first layer of all M models is one wide product with the stacked weights ``[W_1; ...; W_M]``.
        float32 runs it as ``x W^T`` ([n, M*out], read by the next batched products as a strided view);
        bf16 runs everything transposed, ``h^T = W h_prev^T`` ([M*out, n]: each model's block already
        contiguous), which measured 10-20% faster there and 8% slower in float32.
        """
        weights, biases = self._operands()
        m, n = self.num_models, x.shape[0]
        h = x.to(self.dtype) if x.dtype != self.dtype else x
        w0 = weights[0]
        w0_all = w0.reshape(m * w0.shape[1], w0.shape[2])
        if self.dtype == torch.float32:
            h = torch.addmm(biases[0].reshape(1, -1), h, w0_all.t()).view(n, m, -1).transpose(0, 1)
            for layer in range(1, layers):
                h = torch.baddbmm(biases[layer], h.relu_(), weights[layer].transpose(1, 2))
        else:
            h = torch.addmm(biases[0].reshape(-1, 1), w0_all, h.t()).view(m, -1, n)
            for layer in range(1, layers):
                h = torch.baddbmm(biases[layer].transpose(1, 2), weights[layer], h.relu_())
            h = h.transpose(1, 2)
        if layers < len(weights):
            h = h.relu_()
        return h

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        if len(self.weights) == 1:
            return x.expand(self.num_models, *x.shape)
        chunk = self._eval_chunk()
        return torch.cat([self._forward_shared(c, len(self.weights) - 1).float() for c in x.split(chunk)], dim=1)

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        chunk = self._eval_chunk()
        out = torch.empty(self.num_models, x.shape[0], self.sizes[-1], dtype=torch.float32, device=x.device)
        for start in range(0, x.shape[0], chunk):
            c = x[start:start + chunk]
            out[:, start:start + c.shape[0]] = self._forward_shared(c, len(self.weights))
        return out


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


STRATEGIES = ("auto", "vmap", "loop")
#: What ``strategy="auto"`` picks for models with convolutions, per device type (others: vmap). On a GPU
#: one batched pass is expected to fill the device better than M small ones; not measured here yet
#: (``benchmarks/bench_gpu.py --cnn-strategy`` compares them).
AUTO_CONV_STRATEGY: dict[str, str] = {"cpu": "loop", "cuda": "vmap"}


class StackedModules:
    """M copies of any ``nn.Module`` (built by ``factory``), their parameters stacked ``[M, ...]``.

    Each model is built under its own seed, so its initialisation is its own. BatchNorm
    layers are switched to batch statistics (``replace_all_batch_norm_modules_``),
    since running statistics cannot be updated inside ``vmap``. Penultimate features
    are the input of the last ``nn.Linear`` (found by module order).

    ``strategy`` says how the M forward/backward passes run: ``"vmap"`` (``torch.func.vmap`` over
    the stacked parameters: one batched pass, best for small models where per-operation overhead
    dominates) or ``"loop"`` (one ``functional_call`` per model on views of the stacked parameters,
    image batches channels-last: each convolution runs as an ordinary one). ``"auto"`` loops over
    models with convolutions on a CPU (:data:`AUTO_CONV_STRATEGY`): on ``cifar-cnn``, vmap's grouped
    convolutions ran at 50-54 GFLOP per CPU-second in fp32 and bf16, a loop at 83 (fp32) and 123 (bf16),
    see ``benchmarks/bench_cnn.py``.
    Either way the SGD update of all M models is one set of ``torch._foreach`` operations.

    ``precision="bf16"`` runs the forward (and so the backward) under ``torch.autocast``
    with bf16 on the tensors' device: parameters, momentum buffers and the loss stay float32.
    """

    def __init__(self, factory: Callable[[], nn.Module], seeds: Sequence[int], device: torch.device,
                 precision: str = "fp32", strategy: str = "auto"):
        from torch.func import stack_module_state

        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}; expected one of {STRATEGIES}")
        self.precision = precision
        self.dtype = compute_dtype(precision)
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
        if strategy == "auto":
            has_conv = any(isinstance(mod, nn.modules.conv._ConvNd) for mod in models[0].modules())
            strategy = AUTO_CONV_STRATEGY.get(torch.device(device).type, "vmap") if has_conv else "vmap"
        self.strategy = strategy
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
        self._views: list[dict[str, torch.Tensor]] | None = None

    def _vmapped(self, base: nn.Module, params: dict, x: torch.Tensor, same_input: bool) -> torch.Tensor:
        from torch.func import functional_call, vmap

        def call(p, b, xi):
            return functional_call(base, (p, b), (xi,))

        in_dims = (0, 0, None if same_input else 0)
        return vmap(call, in_dims=in_dims)(params, self.buffers, x)

    def _looped(self, base: nn.Module, params: dict, x: torch.Tensor, same_input: bool) -> torch.Tensor:
        """The same as :meth:`_vmapped`, one model at a time on views of the stacked tensors."""
        from torch.func import functional_call

        outs = []
        shared = _channels_last(x) if same_input else None
        for m in range(self.num_models):
            p = {k: v[m] for k, v in params.items()}
            b = {k: v[m] for k, v in self.buffers.items()}
            outs.append(functional_call(base, (p, b), (shared if same_input else _channels_last(x[m]),)))
        return torch.stack(outs)

    def _autocast(self, device: torch.device):
        return torch.autocast(device_type=device.type, dtype=self.dtype, enabled=self.dtype != torch.float32)

    def _forward(self, base: nn.Module, params: dict, x: torch.Tensor, same_input: bool) -> torch.Tensor:
        run = self._looped if self.strategy == "loop" else self._vmapped
        with self._autocast(x.device):
            return run(base, params, x, same_input).float()

    def train_step(self, x: torch.Tensor, y: torch.Tensor, lr: float, momentum: float, weight_decay: float) -> None:
        names = list(self.params)
        params = [self.params[n] for n in names]
        if self.strategy == "loop":
            grads = self._loop_grads(names, x, y)
        else:
            logits = self._forward(self.base, self.params, x, same_input=False)
            # sum over models of each model's mean loss: each model gets its own gradient (float32 loss)
            loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum") / x.shape[1]
            grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            if self._bufs is None:
                self._bufs = [torch.zeros_like(p) for p in params]
            if weight_decay:
                grads = torch._foreach_add(grads, params, alpha=weight_decay)
            torch._foreach_mul_(self._bufs, momentum)
            torch._foreach_add_(self._bufs, grads)
            torch._foreach_add_(params, self._bufs, alpha=-lr)

    def _loop_grads(self, names: list[str], x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        """Per-model gradients, stacked [M, ...] per parameter: model m's loss differentiated with respect
        to leaf views of its slice of the stacked parameters (they share the stacked storage)."""
        from torch.func import functional_call

        if self._views is None:
            self._views = [{k: self.params[k].detach()[m].requires_grad_(True) for k in names}
                           for m in range(self.num_models)]
        grads: list[list[torch.Tensor]] = [[] for _ in names]
        for m, view in enumerate(self._views):
            b = {k: v[m] for k, v in self.buffers.items()}
            with self._autocast(x.device):
                out = functional_call(self.base, (view, b), (_channels_last(x[m]),))
            loss = F.cross_entropy(out.float(), y[m])
            for i, g in enumerate(torch.autograd.grad(loss, [view[k] for k in names])):
                grads[i].append(g)
        return [torch.stack(g) for g in grads]

    @torch.no_grad()
    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._forward(self.base, self.params, c, True) for c in x.split(EVAL_CHUNK // 4)], dim=1)

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self._forward(self._feature_base, self._feature_params, c, True)
                          for c in x.split(EVAL_CHUNK // 4)], dim=1)


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """Image batches [B, C, H, W] channels-last (faster convolutions on the CPU: 59 -> 83 GFLOP per CPU-second
    in fp32 and 82 -> 123 in bf16 on cifar-cnn); anything else unchanged."""
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def build_group(
    recipe,
    input_shape: Sequence[int],
    num_classes: int,
    seeds: Sequence[int],
    device: torch.device,
    model_factory: Callable[[], nn.Module] | None = None,
) -> ModelGroup:
    """The model group a recipe asks for (or the user's factory, when given), in the recipe's precision."""
    precision = getattr(recipe, "precision", "fp32")
    if model_factory is not None:
        return StackedModules(model_factory, seeds, device, precision=precision)
    if recipe.model == "mlp":
        d = int(math.prod(input_shape))
        return StackedMLP([d, *recipe.hidden, num_classes], seeds, device, init=recipe.init, precision=precision)
    if recipe.model == "cnn":
        if len(input_shape) != 3:
            raise ValueError(
                f"recipe {recipe.name!r} uses a CNN, which needs image inputs [channels, height, width]; "
                f"got input shape {tuple(input_shape)}"
            )
        channels = int(input_shape[0])
        hidden = tuple(recipe.hidden)
        return StackedModules(lambda: SmallCNN(channels, num_classes, hidden), seeds, device, precision=precision)
    raise ValueError(f"unknown model family {recipe.model!r}")
