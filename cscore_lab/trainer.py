"""Train a group of M models at once, each on its own subset, and report held-out correctness.

One flat loop (after minGPT's trainer): the device is resolved once, every random
choice comes from per-model seeds, and progress or per-example recording attach as
callbacks instead of being woven into the loop.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import numpy as np
import torch

from .data import Dataset
from .models import ModelGroup, build_group
from .recipes import Recipe

__all__ = [
    "resolve_device",
    "prepare_inputs",
    "ModelSeeds",
    "model_seeds",
    "TrainCallback",
    "train_group",
    "predict_correct",
    "Interrupted",
]


#: Bumped whenever the same (recipe, data, seeds) would train a different model (initialisation
#: draws, batch order, layouts): part of a run folder's identity, so shards of two versions never mix.
ENGINE_VERSION = 2


class Interrupted(Exception):
    """Raised inside training when a stop was requested; the shard in flight is dropped."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"`` are checked."""
    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise TypeError(f"device must be a string like 'auto', 'cpu' or 'cuda:0', got {type(device).__name__}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'") from None
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
    raise ValueError(f"unsupported device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'")


def prepare_inputs(dataset: Dataset, recipe: Recipe, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs scaled as the recipe says, and labels, as tensors on ``device``.

    ``"standardize"`` uses per-feature statistics of the whole data set (unsupervised,
    so it leaks no label into held-out predictions).
    """
    x = torch.from_numpy(dataset.inputs)
    if recipe.input_scaling == "range":
        x = x / float(dataset.value_range)
    elif recipe.input_scaling == "standardize":
        flat = x.reshape(len(dataset), -1) if recipe.model == "mlp" else x
        dims = (0,) if recipe.model == "mlp" else tuple(i for i in range(x.ndim) if i != 1)
        mean = flat.mean(dim=dims, keepdim=True)
        std = flat.std(dim=dims, keepdim=True).clamp_min(1e-6)
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


class TrainCallback(Protocol):
    """Hook called by :func:`train_group` after every epoch (``epoch`` counts from 1)."""

    def on_epoch_end(self, epoch: int, group: ModelGroup) -> None: ...


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
) -> ModelGroup:
    """Train ``len(subsets)`` models together; model i trains on ``x[subsets[i]]``.

    All subsets must have the same size (they do within one subset ratio). Each model
    draws its own shuffled mini-batches each epoch from its own generator, so batching
    models together changes speed, not what any model sees.
    """
    if len(subsets) != len(seeds):
        raise ValueError(f"{len(subsets)} subsets but {len(seeds)} seeds")
    sizes = {len(s) for s in subsets}
    if len(sizes) != 1:
        raise ValueError(f"all subsets in a group must have the same size, got sizes {sorted(sizes)}")
    n = sizes.pop()
    if n < 1:
        raise ValueError("subsets must not be empty")
    device = x.device
    group = build_group(recipe, tuple(x.shape[1:]), num_classes, [s.init for s in seeds], device, model_factory)
    subset_t = torch.from_numpy(np.stack([np.asarray(s, dtype=np.int64) for s in subsets]))
    gens = [torch.Generator().manual_seed(s.order) for s in seeds]
    batch = recipe.batch_size
    for epoch in range(1, recipe.epochs + 1):
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens])
        order = torch.gather(subset_t, 1, perms).to(device, non_blocking=True)
        for start in range(0, n, batch):
            if stop is not None and stop.is_set():
                raise Interrupted()
            idx = order[:, start:start + batch]
            group.train_step(x[idx], y[idx], recipe.learning_rate, recipe.momentum, recipe.weight_decay)
        for cb in callbacks:
            cb.on_epoch_end(epoch, group)
    return group


@torch.no_grad()
def predict_correct(group: ModelGroup, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Boolean [M, N]: does model m classify example n correctly."""
    pred = group.logits(x).argmax(dim=-1)
    return (pred == y.unsqueeze(0)).cpu().numpy()
