"""Typed training recipes, estimation plans and the named presets.

A :class:`Recipe` fixes everything about how one model is trained; a :class:`Plan`
fixes how many models are trained on which subset ratios. Both are plain frozen
dataclasses that round-trip through JSON (the run store's manifest).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Sequence

__all__ = ["Recipe", "Plan", "PRESETS", "get_preset", "default_preset_name", "PAPER_RATIOS"]

PAPER_RATIOS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
#: Bounds checked before anything is allocated (the paper uses 9 ratios x 200-4000 runs).
MAX_RUNS = 100_000
MAX_SHARD_SIZE = 10_000
MAX_RATIOS = 1_000
RATIO_SCALE = 1_000_000  # ratios are keyed (seeds, shard files) by round(ratio * RATIO_SCALE)

MODELS = ("mlp", "cnn")
OPTIMIZERS = ("sgd",)
SCALINGS = ("range", "standardize", "none")
INITS = ("torch", "glorot-normal")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class Recipe:
    """How one model is trained. Same recipe + same seed = same model."""

    name: str = "custom"
    model: str = "mlp"  # "mlp" (stacked fully connected, ReLU) or "cnn" (small conv net for CHW images)
    hidden: tuple[int, ...] = (256,)  # hidden layer widths (mlp) or conv channels (cnn)
    optimizer: str = "sgd"  # SGD with momentum, PyTorch's convention
    learning_rate: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0
    batch_size: int = 32
    epochs: int = 20
    input_scaling: str = "range"  # "range": divide by the data's value range (/255 for 8-bit images); "standardize"; "none"
    init: str = "torch"  # MLP initialisation: "torch" (nn.Linear's uniform) or "glorot-normal" (jax stax's Dense)
    # "fp32", or "bf16": bf16 operands in the forward and backward products, float32 master weights,
    # momentum buffers, softmax/loss and accumulation (trainer.resolve_precision says when it pays)
    precision: str = "fp32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.model not in MODELS:
            raise ValueError(f"recipe model must be one of {MODELS}, got {self.model!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"recipe optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.input_scaling not in SCALINGS:
            raise ValueError(f"recipe input_scaling must be one of {SCALINGS}, got {self.input_scaling!r}")
        if self.init not in INITS:
            raise ValueError(f"recipe init must be one of {INITS}, got {self.init!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"recipe precision must be one of {PRECISIONS}, got {self.precision!r} "
                             f"('auto' is resolved before a recipe is made: trainer.resolve_precision)")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"recipe hidden sizes must be positive integers, got {self.hidden}")
        for name in ("learning_rate", "momentum", "weight_decay"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"recipe {name} must be a finite number >= 0, got {v!r}")
        if self.learning_rate <= 0:
            raise ValueError(f"recipe learning_rate must be > 0, got {self.learning_rate}")
        if self.momentum >= 1:
            raise ValueError(f"recipe momentum must be < 1, got {self.momentum}")
        for name in ("batch_size", "epochs"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"recipe {name} must be an integer >= 1, got {v!r}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Recipe":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown recipe fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def with_(self, **changes: Any) -> "Recipe":
        return replace(self, **changes)


@dataclass(frozen=True)
class Plan:
    """Which models to train: ``runs`` models at each subset ratio, all derived from ``seed``."""

    ratios: tuple[float, ...] = PAPER_RATIOS
    runs: int = 200  # models per ratio
    seed: int = 0
    shard_size: int = 50  # models trained together and stored as one file; also the resume granularity

    def __post_init__(self) -> None:
        try:
            ratios = tuple(float(r) for r in self.ratios)
        except (TypeError, ValueError):
            raise ValueError(f"ratios must be numbers in (0, 1), got {self.ratios!r}") from None
        if not ratios:
            raise ValueError("at least one subset ratio is needed")
        for r in ratios:
            if not (0.0 < r < 1.0):
                raise ValueError(f"subset ratio {r:g} is outside (0, 1); each ratio is the fraction of examples a model trains on")
        if len(set(ratios)) != len(ratios):
            raise ValueError(f"subset ratios must be distinct, got {ratios}")
        if len(ratios) > MAX_RATIOS:
            raise ValueError(f"{len(ratios)} subset ratios; at most {MAX_RATIOS} are supported")
        keys: dict[int, float] = {}
        for r in ratios:  # seeds and shard files are keyed by the ratio to 6 decimals
            other = keys.setdefault(int(round(r * RATIO_SCALE)), r)
            if other != r:
                raise ValueError(f"subset ratios {other!r} and {r!r} are closer than {1 / RATIO_SCALE:g}: they would share "
                                 f"seeds and shard files; use ratios that differ in the first 6 decimals")
        object.__setattr__(self, "ratios", ratios)
        if isinstance(self.runs, bool) or not (isinstance(self.runs, int) and self.runs >= 1):
            raise ValueError(f"runs per ratio must be a positive integer, got {self.runs!r}")
        if self.runs > MAX_RUNS:
            raise ValueError(f"runs per ratio must be at most {MAX_RUNS:,}, got {self.runs:,}")
        if isinstance(self.shard_size, bool) or not (isinstance(self.shard_size, int) and self.shard_size >= 1):
            raise ValueError(f"shard_size must be a positive integer, got {self.shard_size!r}")
        if self.shard_size > MAX_SHARD_SIZE:
            raise ValueError(f"shard_size must be at most {MAX_SHARD_SIZE:,} models, got {self.shard_size:,}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")

    @property
    def total_runs(self) -> int:
        return self.runs * len(self.ratios)

    def to_dict(self) -> dict[str, Any]:
        return {"ratios": list(self.ratios), "runs": self.runs, "seed": self.seed, "shard_size": self.shard_size}

    def with_overrides(self, *, ratios: Any = None, runs: int | None = None, seed: int | None = None,
                       shard_size: int | None = None) -> "Plan":
        """This plan with every option that is not None replaced (the one rule every front end uses)."""
        changes = {k: v for k, v in (("ratios", None if ratios is None else tuple(ratios)), ("runs", runs),
                                     ("seed", seed), ("shard_size", shard_size)) if v is not None}
        return replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        return cls(ratios=tuple(d["ratios"]), runs=int(d["runs"]), seed=int(d["seed"]), shard_size=int(d["shard_size"]))


@dataclass(frozen=True)
class Preset:
    """A named recipe and the plan it is meant to be run with."""

    recipe: Recipe
    plan: Plan = field(default_factory=Plan)
    description: str = ""


PRESETS: dict[str, Preset] = {
    "digits-mlp": Preset(
        Recipe(name="digits-mlp", model="mlp", hidden=(128,), learning_rate=0.05, momentum=0.9,
               batch_size=32, epochs=12, input_scaling="range"),
        Plan(ratios=PAPER_RATIOS, runs=200, shard_size=100),
        "MLP 64-128-10 for scikit-learn digits; SGD momentum 0.9, lr 0.05, batch 32, 12 epochs",
    ),
    "mnist-mlp": Preset(
        Recipe(name="mnist-mlp", model="mlp", hidden=(512, 256), learning_rate=0.1, momentum=0.9,
               batch_size=128, epochs=10, input_scaling="range", init="glorot-normal"),
        Plan(ratios=PAPER_RATIOS, runs=200, shard_size=25),
        "the authors' MNIST recipe: MLP 784-512-256-10, ReLU; SGD momentum 0.9, lr 0.1, batch 128, 10 epochs, "
        "inputs /255, stax's initialisation (Glorot-normal weights, N(0, 0.01^2) biases)",
    ),
    "cifar-cnn": Preset(
        Recipe(name="cifar-cnn", model="cnn", hidden=(32, 64, 128), learning_rate=0.05, momentum=0.9,
               weight_decay=5e-4, batch_size=128, epochs=30, input_scaling="standardize"),
        Plan(ratios=PAPER_RATIOS, runs=200, shard_size=10),
        "small CNN (3 conv blocks 32-64-128, global pool, linear) for 32x32 colour images",
    ),
}


def default_preset_name(dataset_name: str, input_shape: Sequence[int]) -> str:
    """The preset for a data set when none is named: a CNN for CHW images, the authors' MLP for
    MNIST-shaped data, else the digits MLP."""
    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3 and shape[0] in (1, 3):
        return "cifar-cnn"
    if dataset_name.split("-noise")[0].split("-ood")[0] in ("mnist", "fashion-mnist") or math.prod(shape) == 784:
        return "mnist-mlp"
    return "digits-mlp"


def get_preset(name: str) -> Preset:
    """The preset called ``name``; a clear error lists the choices."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}") from None
