"""Train a group of M models at once, each on its own subset, and report held-out correctness.

One flat loop (after minGPT's trainer): the device is resolved once, every random
choice comes from per-model seeds, and progress or per-example recording attach as
callbacks instead of being woven into the loop.
"""

from __future__ import annotations

import functools
import platform
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import torch

from .data import Dataset
from .models import ModelGroup, StackedMLP, build_group
from .recipes import Recipe

__all__ = [
    "resolve_device",
    "check_device_name",
    "torch_threads",
    "prepare_inputs",
    "ModelSeeds",
    "model_seeds",
    "TrainCallback",
    "train_group",
    "train_one_at_a_time",
    "predict_correct",
    "resolve_precision",
    "fast_bf16",
    "PRECISION_CHOICES",
    "BF16_FIDELITY",
    "Interrupted",
]


#: Bumped whenever the same (recipe, data, seeds) would train a different model (initialisation
#: draws, batch order, layouts): part of a run folder's identity, so shards of two versions never mix.
#: 3: workspace buffers, transposed output layer and one wide first-layer product in evaluation (float32
#: results differ from version 2 in the last bits); Recipe.precision.
ENGINE_VERSION = 3


class Interrupted(Exception):
    """Raised inside training when a stop was requested; the shard in flight is dropped."""


DEVICE_CHOICES = "'auto', 'cpu', 'cuda' or 'cuda:N'"


def check_device_name(device: str | torch.device) -> str:
    """The device name, checked for form only (``auto``, ``cpu``, ``cuda``, ``cuda:N``), without looking
    for the hardware: what a front end or a remote backend's driver can check before any worker runs.

    Raises ``ValueError`` naming the value and the choices.
    """
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string like 'auto', 'cpu' or 'cuda:0', got {type(device).__name__}")
    name = device.strip()
    if name in ("auto", "cpu", "cuda"):
        return name
    head, sep, index = name.partition(":")
    if head == "cuda" and sep and index.isdigit():
        return f"cuda:{int(index)}"
    raise ValueError(f"unknown device {device!r}; the device must be {DEVICE_CHOICES}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The one device resolver: ``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``,
    ``"cuda:N"`` are checked against the hardware here."""
    device = check_device_name(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device {device!r} was requested but CUDA is not available here "
                f"(torch {torch.__version__}, {'built without CUDA' if torch.version.cuda is None else 'no GPU visible'}); "
                f"use --device cpu or auto"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device {device!r} was requested but only {count} CUDA device(s) exist (cuda:0..cuda:{count - 1})")
        return dev
    raise ValueError(f"unsupported device {device!r}; expected {DEVICE_CHOICES}")  # pragma: no cover


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """The thread policy: run the block with ``n`` intra-op torch threads, then restore the count.

    Shards and full-data trainings run with one thread each (see docs/ARCHITECTURE.md, "One torch
    thread per shard"): small batched products split poorly across threads, and a fixed count makes
    a model's floating-point result the same on every machine and backend.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def prepare_inputs(dataset: Dataset, recipe: Recipe, device: torch.device, *,
                   reference: Dataset | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs scaled as the recipe says, and labels, as tensors on ``device``.

    ``"standardize"`` uses per-feature statistics of the whole data set (unsupervised,
    so it leaks no label into held-out predictions); of ``reference`` when given (an
    evaluation set is scaled with its training set's statistics and value range).
    """
    ref = reference if reference is not None else dataset
    x = torch.from_numpy(dataset.inputs)
    if recipe.input_scaling == "range":
        x = x / float(ref.value_range)
    elif recipe.input_scaling == "standardize":
        flat = x.reshape(len(dataset), -1) if recipe.model == "mlp" else x
        r = torch.from_numpy(ref.inputs)
        rflat = r.reshape(len(ref), -1) if recipe.model == "mlp" else r
        dims = (0,) if recipe.model == "mlp" else tuple(i for i in range(x.ndim) if i != 1)
        mean = rflat.mean(dim=dims, keepdim=True)
        std = rflat.std(dim=dims, keepdim=True).clamp_min(1e-6)
        x = ((flat - mean) / std).reshape(x.shape)
    if recipe.model == "mlp":
        x = x.reshape(len(dataset), -1)
    return x.contiguous().to(device), torch.from_numpy(dataset.labels).to(device)


@dataclass(frozen=True)
class ModelSeeds:
    """Independent seeds for one model's subset, initialisation and mini-batch order."""

    subset: int
    init: int
    order: int


def model_seeds(seed: int, ratio: float, run: int) -> ModelSeeds:
    """Seeds derived only from (plan seed, ratio, run index): the heart of pure shards."""
    ratio_key = int(round(ratio * 1_000_000))
    children = np.random.SeedSequence([int(seed), ratio_key, int(run)]).spawn(3)
    subset, init, order = (int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children)
    return ModelSeeds(subset, init, order)


# ----------------------------------------------------------------------------- precision

PRECISION_CHOICES = ("auto", "fp32", "bf16")

#: Did bf16 pass the fidelity check (benchmarks/bench_reproduce_mnist.py --precision bf16: Spearman with the
#: published scores within 0.01 of fp32's, lowest-1% overlap within 0.02, per-ratio held-out accuracy within
#: 0.1 point) for this model family? ``auto`` picks bf16 only where True; None: not checked.
#: mlp (mnist-mlp, 9 ratios x 16 runs, benchmarks/RESULTS.md): Spearman 0.787 vs 0.790, overlap 0.912 vs 0.925,
#: accuracy within 0.09 point at eight ratios; at 0.6 bf16 was 0.14 point *higher* (2.1 paired standard errors),
#: 0.05 point at 32 runs there. cnn: not checked (the CPU makes its 1,800 models days of work).
BF16_FIDELITY: dict[str, bool | None] = {"mlp": True, "cnn": None}

_X86_FAST_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=1)
def _cpu_flags() -> frozenset[str]:
    """The CPU feature flags of ``/proc/cpuinfo`` (empty where there is none, as on macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def fast_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether ``device`` multiplies bf16 matrices much faster than float32, and what was found.

    CPU: the AVX512-BF16 or AMX-BF16 instructions (x86 flags in ``/proc/cpuinfo``; with them the
    products here ran 3-4x the float32 rate). CUDA: compute capability 8.0 or newer (tensor cores
    with bf16) and ``torch.cuda.is_bf16_supported()``.
    """
    device = torch.device(device)
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        name = torch.cuda.get_device_name(device)
        if (major, minor) >= (8, 0) and torch.cuda.is_bf16_supported():
            return True, f"{name} (compute capability {major}.{minor}) has bf16 tensor cores"
        return False, f"{name} (compute capability {major}.{minor}) has no fast bf16 (needs 8.0 or newer)"
    if device.type == "cpu":
        found = [f for f in _X86_FAST_BF16_FLAGS if f in _cpu_flags()]
        if found:
            return True, f"CPU has {'/'.join(found)}"
        return False, f"no fast bf16 on this CPU ({platform.machine() or 'unknown'}: no avx512_bf16 or amx_bf16 flag)"
    return False, f"no bf16 fast path known for device type {device.type!r}"


def resolve_precision(requested: str, device: torch.device, recipe: Recipe, *,
                      model_factory: Callable[[], torch.nn.Module] | None = None) -> tuple[str, str]:
    """The precision to train ``recipe`` with on ``device``, and a one-line reason.

    Parameters
    ----------
    requested : {"auto", "fp32", "bf16"}
        ``"auto"`` picks ``"bf16"`` only where the hardware has fast bf16 (:func:`fast_bf16`, probed
        at run time) *and* bf16 passed the fidelity check for the recipe's model family
        (:data:`BF16_FIDELITY`); a user's ``model_factory`` is never checked, so it stays fp32.
        ``"fp32"`` and ``"bf16"`` are taken as asked (bf16 on hardware without it is correct but slow).
    device : torch.device
        Where the models train (after :func:`resolve_device`).
    recipe : Recipe
        Its ``model`` names the family looked up in :data:`BF16_FIDELITY`.

    Returns
    -------
    (precision, reason) : tuple of str
        ``precision`` is ``"fp32"`` or ``"bf16"``, for ``recipe.with_(precision=...)``; ``reason``
        reads like ``"bf16: CPU has avx512_bf16"`` (for a run summary).
    """
    if not isinstance(requested, str) or requested not in PRECISION_CHOICES:
        raise ValueError(f"precision must be one of {PRECISION_CHOICES}, got {requested!r}")
    device = torch.device(device)
    if requested == "fp32":
        return "fp32", "fp32: requested"
    fast, why = fast_bf16(device)
    if requested == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision 'bf16' was requested but {why}; use fp32 or auto")
        return "bf16", f"bf16: requested ({why})" if fast else f"bf16: requested, but slow here ({why})"
    if not fast:
        return "fp32", f"fp32: {why}"
    family = "custom" if model_factory is not None else recipe.model
    checked = BF16_FIDELITY.get(family)
    if checked is None:
        return "fp32", f"fp32: bf16 has not been through the fidelity check on {family} models ({why})"
    if not checked:
        return "fp32", f"fp32: bf16 fails the fidelity check on {family} recipes"
    return "bf16", f"bf16: {why}; {family} recipes pass the fidelity check"


# ----------------------------------------------------------------------------- training


class TrainCallback(Protocol):
    """Hooks :func:`train_group` calls; a callback defines either or both.

    ``on_epoch_end(epoch, group)`` after every epoch (``epoch`` counts from 1); ``on_step(step, group)``
    every ``every_steps`` steps (``step`` counts from 1 over the whole training), for records finer
    than an epoch.
    """

    def on_epoch_end(self, epoch: int, group: ModelGroup) -> None: ...


def _epoch_order(subsets: torch.Tensor, gens: Sequence[torch.Generator], batch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One epoch's mini-batch indices for every model, as contiguous [steps, M, batch] blocks (and the
    [M, rest] tail), on the device of ``subsets`` and ``gens``.

    Each model's permutation comes from its own generator. On a GPU the generators are CUDA
    generators and nothing here touches the host: 200 CPU permutations of 54,000 took 0.3-1 s per
    epoch, more than the GPU's epoch. So a model's batch order depends on the device type (CPU or
    CUDA), never on the machine, thread count or which models share its group.
    """
    m, n = subsets.shape
    device = subsets.device
    perms = torch.stack([torch.randperm(n, generator=g, device=device) for g in gens])
    order = torch.gather(subsets, 1, perms)
    full = n // batch
    blocks = order[:, :full * batch].reshape(m, full, batch).transpose(0, 1).contiguous()
    tail = order[:, full * batch:].contiguous() if n % batch else None
    return blocks, tail


def train_group(
    x: torch.Tensor,
    y: torch.Tensor,
    subsets: Sequence[np.ndarray],
    recipe: Recipe,
    seeds: Sequence[ModelSeeds],
    *,
    num_classes: int,
    model_factory: Callable[[], torch.nn.Module] | None = None,
    callbacks: Sequence[TrainCallback] = (),
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ModelGroup:
    """Train ``len(subsets)`` models together; model i trains on ``x[subsets[i]]``.

    All subsets must have the same size (they do within one subset ratio). Each model
    draws its own shuffled mini-batches each epoch from its own generator, so batching
    models together changes speed, not what any model sees.

    Parameters
    ----------
    progress : callable ``(steps_done, steps_total) -> None``, optional
        Called about 200 times over the training (every ``max(1, total // 200)`` steps, and at the
        last step), from the training thread: keep it cheap.
    callbacks : sequence of objects
        Each may define ``on_epoch_end(epoch, group)`` and ``on_step(step, group)`` with an integer
        attribute ``every_steps`` (``None``: no per-step calls; see :class:`TrainCallback`).
    stop : threading.Event, optional
        Checked before every step; when set, :class:`Interrupted` is raised.

    The inner loop never waits for the device: indices are built per epoch and copied
    asynchronously, inputs gathered with ``index_select`` into reused buffers, and nothing
    is read back until the caller asks for results.
    """
    if len(subsets) != len(seeds):
        raise ValueError(f"{len(subsets)} subsets but {len(seeds)} seeds")
    sizes = {len(s) for s in subsets}
    if len(sizes) != 1:
        raise ValueError(f"all subsets in a group must have the same size, got sizes {sorted(sizes)}")
    n = sizes.pop()
    if n < 1:
        raise ValueError("subsets must not be empty")
    step_hooks = []
    for cb in callbacks:
        every = getattr(cb, "every_steps", None) if hasattr(cb, "on_step") else None
        if every is not None:  # on_step without every_steps (or None): no per-step records wanted
            if isinstance(every, bool) or not isinstance(every, int) or every < 1:
                raise ValueError(f"callback {cb!r} asks for on_step every {every!r} steps; expected an integer >= 1 or None")
            step_hooks.append((every, cb))
    epoch_hooks = [cb for cb in callbacks if hasattr(cb, "on_epoch_end")]
    device = x.device
    group = build_group(recipe, tuple(x.shape[1:]), num_classes, [s.init for s in seeds], device, model_factory)
    # the stacked MLP multiplies in its own dtype: gather mini-batches from inputs already in it (once)
    dtype = getattr(group, "dtype", x.dtype) if isinstance(group, StackedMLP) else x.dtype
    xs = x if x.dtype == dtype else x.to(dtype)
    subset_t = torch.from_numpy(np.stack([np.asarray(s, dtype=np.int64) for s in subsets]))
    gen_device = device if device.type == "cuda" else torch.device("cpu")
    if gen_device.type == "cuda":  # index tensors live on the device: one pinned, asynchronous copy
        subset_t = subset_t.pin_memory().to(device, non_blocking=True)
    gens = [torch.Generator(device=gen_device).manual_seed(s.order) for s in seeds]
    m, batch = len(seeds), recipe.batch_size
    feature_shape = tuple(x.shape[1:])
    buffers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    steps_per_epoch = -(-n // batch)
    total_steps = steps_per_epoch * recipe.epochs
    report_every = max(1, total_steps // 200)  # ~200 reports per training: smooth bars, no measurable cost
    step = 0
    lr, momentum, wd = recipe.learning_rate, recipe.momentum, recipe.weight_decay
    for epoch in range(1, recipe.epochs + 1):
        blocks, tail = _epoch_order(subset_t, gens, batch)
        steps = [blocks[k] for k in range(blocks.shape[0])] + ([tail] if tail is not None else [])
        for idx in steps:
            if stop is not None and stop.is_set():
                raise Interrupted()
            b = idx.shape[1]
            if b not in buffers:
                buffers[b] = (torch.empty(m * b, *feature_shape, dtype=dtype, device=device),
                              torch.empty(m * b, dtype=y.dtype, device=device))
            xb, yb = buffers[b]
            flat = idx.reshape(-1)
            torch.index_select(xs, 0, flat, out=xb)
            torch.index_select(y, 0, flat, out=yb)
            group.train_step(xb.view(m, b, *feature_shape), yb.view(m, b), lr, momentum, wd)
            step += 1
            if progress is not None and (step % report_every == 0 or step == total_steps):
                progress(step, total_steps)
            for every, cb in step_hooks:
                if step % every == 0:
                    cb.on_step(step, group)
        for cb in epoch_hooks:
            cb.on_epoch_end(epoch, group)
    return group


def _reference_model(x: torch.Tensor, recipe: Recipe, seeds: ModelSeeds, num_classes: int,
                     model_factory: Callable[[], torch.nn.Module] | None) -> torch.nn.Module:
    """The plain ``nn.Module`` that :func:`build_group` would stack for this model, with the same initial weights."""
    from torch import nn

    from .models import SmallCNN, init_linear

    if model_factory is not None or recipe.model == "cnn":
        if model_factory is None:
            channels, hidden = int(x.shape[1]), tuple(recipe.hidden)

            def model_factory() -> nn.Module:
                return SmallCNN(channels, num_classes, hidden)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(seeds.init))
            net = model_factory()
        return net.to(x.device)
    sizes = [int(np.prod(x.shape[1:])), *recipe.hidden, num_classes]
    gen = torch.Generator().manual_seed(int(seeds.init))
    layers: list[nn.Module] = [nn.Flatten()]
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        lin = nn.Linear(a, b)
        w, bias = init_linear(a, b, recipe.init, gen)
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(bias[0])
        layers.append(lin)
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers).to(x.device)


def train_one_at_a_time(
    x: torch.Tensor,
    y: torch.Tensor,
    subset: np.ndarray,
    recipe: Recipe,
    seeds: ModelSeeds,
    *,
    num_classes: int,
    model_factory: Callable[[], torch.nn.Module] | None = None,
    channels_last: bool = False,
) -> torch.nn.Module:
    """The plain reference loop: one ``nn.Module`` trained alone with ``torch.optim.SGD`` on ``x[subset]``.

    What a user would write, used by the tests as the reference for :func:`train_group` and by
    ``benchmarks/bench_trainer.py`` / ``bench_cnn.py`` as the speed baseline. It starts from the same
    initial weights as the stacked model with ``seeds`` (same initialisation draws) and sees the
    same mini-batches in the same order (same permutation generator), so in float32 the two agree
    up to the order of floating-point sums. ``recipe.precision == "bf16"`` trains under
    ``torch.autocast`` (bf16) on the tensors' device; ``channels_last`` stores image batches
    channels-last. Returns the trained model (in eval mode).
    """
    net = _reference_model(x, recipe, seeds, num_classes, model_factory)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum,
                          weight_decay=recipe.weight_decay)
    gen_device = x.device if x.device.type == "cuda" else torch.device("cpu")  # as train_group draws
    gen = torch.Generator(device=gen_device).manual_seed(int(seeds.order))
    sub = torch.from_numpy(np.asarray(subset, dtype=np.int64)).to(gen_device)
    low = getattr(recipe, "precision", "fp32") == "bf16"
    for _ in range(recipe.epochs):
        order = sub[torch.randperm(len(sub), generator=gen, device=gen_device)].to(x.device)
        for start in range(0, len(order), recipe.batch_size):
            idx = order[start:start + recipe.batch_size]
            xb = x[idx]
            if channels_last and xb.dim() == 4:
                xb = xb.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=x.device.type, dtype=torch.bfloat16, enabled=low):
                out = net(xb)
            torch.nn.functional.cross_entropy(out.float(), y[idx]).backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def predict_correct(group: ModelGroup, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Boolean [M, N]: does model m classify example n correctly."""
    pred = group.logits(x).argmax(dim=-1)
    return (pred == y.unsqueeze(0)).cpu().numpy()
