"""The options of the front ends, declared once, and the one function that turns them into an estimation.

The CLI (``cscore-lab estimate``) and the magics (``%cscore estimate``) add the same option groups
to their parsers (:func:`add_dataset_options`, :func:`add_estimate_options`,
:func:`add_proxy_options`), parse with the same types, and build an estimation through
:func:`resolve_estimation`: the same options give the same run folder, preset, plan, noise
entries and identity, whichever door a user came through.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "positive_int", "ratio", "fraction", "seed_value", "device_name", "nonnegative_int", "seconds",
    "add_dataset_options", "add_estimate_options", "add_proxy_options",
    "EstimateOptions", "resolve_estimation", "data_spec_from", "error_message", "proxy_options", "PRECISIONS",
]

PRECISIONS = ("auto", "fp32", "bf16")


def error_message(exc: BaseException) -> str:
    """What a front end prints for an error a user caused: an ``OSError`` as one line naming the path
    and the reason (``out/run: Permission denied``), anything else as its own message."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        other = f" -> {exc.filename2}" if exc.filename2 else ""
        return f"{exc.filename}{other}: {exc.strerror}"
    return str(exc).strip() or type(exc).__name__


# --------------------------------------------------------------------------- argument types


def _int_from(text: str, low: int, expected: str) -> int:
    """Parse ``text`` as an integer of at least ``low``; messages say what was ``expected`` and what came."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if v < low:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {v}")
    return v


def positive_int(text: str) -> int:
    return _int_from(text, 1, "a positive integer")


def nonnegative_int(text: str) -> int:
    return _int_from(text, 0, "an integer >= 0")


def seed_value(text: str) -> int:
    v = nonnegative_int(text)
    if v >= 2**63:
        raise argparse.ArgumentTypeError(f"seed must be below 2**63, got {v}")
    return v


def _float_in(text: str, kind: str, name: str, interval: str, inside) -> float:
    """Parse ``text`` as a float and check it with ``inside``; messages name the value and the interval."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind} in {interval}, got {text!r}") from None
    if not math.isfinite(v) or not inside(v):
        raise argparse.ArgumentTypeError(f"{name} {v:g} is outside {interval}")
    return v


def seconds(text: str) -> float:
    return _float_in(text, "number of seconds", "timeout", "(0, inf)", lambda v: v > 0)


def ratio(text: str) -> float:
    return _float_in(text, "ratio", "subset ratio", "(0, 1)", lambda v: 0.0 < v < 1.0)


def fraction(text: str) -> float:
    return _float_in(text, "fraction", "fraction", "[0, 1]", lambda v: 0.0 <= v <= 1.0)


def influence_threshold(text: str) -> float:
    """An influence threshold, by the rule of :func:`cscore_lab.influence.is_threshold` (imported only when given)."""
    from .influence import THRESHOLD_INTERVAL, is_threshold

    return _float_in(text, "number", "threshold", THRESHOLD_INTERVAL, is_threshold)


def device_name(text: str) -> str:
    """A device name of the right form (the hardware is checked by the backend that trains)."""
    from .trainer import check_device_name

    try:
        return check_device_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


# --------------------------------------------------------------------------- option groups


def add_dataset_options(p: argparse.ArgumentParser, *, positional: bool = False, noise: bool = True,
                        default: str | None = "digits") -> None:
    """--dataset, --data and (with ``noise``) --label-noise, --ood, --ood-kind, --ood-source.

    ``positional`` also accepts the data set as the first word (the magics: ``%cscore estimate mnist``).
    """
    from .data import DATASETS

    names = ", ".join(DATASETS)
    if positional:
        p.add_argument("dataset", nargs="?", default=None, metavar="DATASET",
                       help=f"data set: {names}, a copy made by %%cscore noise/ood, or a variable holding a "
                            f"Dataset (default: the one used last, digits at first)")
        p.add_argument("--dataset", dest="dataset_option", metavar="NAME", help="the same as DATASET")
    else:
        p.add_argument("--dataset", default=default, choices=list(DATASETS), metavar="NAME",
                       help=f"data set: {names} (default: {default or 'digits'})")
    p.add_argument("--data", metavar="PATH", help="folder or file holding the data set (all but digits)")
    if noise:
        p.add_argument("--label-noise", type=fraction, default=0.0, metavar="FRACTION",
                       help="flip this fraction of labels to another class first (seeded by --seed)")
        p.add_argument("--ood", type=fraction, default=0.0, metavar="FRACTION",
                       help="replace this fraction of examples by out-of-distribution inputs (seeded by --seed)")
        p.add_argument("--ood-kind", default=None, metavar="KIND",
                       help="gaussian (default), uniform, inverted, rotated, shuffled or foreign")
        p.add_argument("--ood-source", default=None, metavar="PATH",
                       help="pictures for --ood-kind foreign where needed (an MNIST folder for digits)")


def add_estimate_options(p: argparse.ArgumentParser, *, session_defaults: bool = False) -> None:
    """The options of an estimate; ``session_defaults`` words the help for the magics' %config defaults."""
    from .backends import BACKENDS
    from .recipes import PRESETS

    p.add_argument("--preset", default=None, choices=list(PRESETS), metavar="NAME",
                   help=f"training recipe: {', '.join(PRESETS)} (default: by the data: digits-mlp, mnist-mlp for "
                        f"MNIST-shaped data, cifar-cnn for colour images)")
    p.add_argument("--ratios", type=ratio, nargs="+", metavar="R", help="subset ratios (default: the preset's, 0.1 ... 0.9)")
    p.add_argument("--runs", type=positive_int, metavar="N",
                   help="models per ratio (default: " + ("%%config CScoreMagics.runs, else " if session_defaults else "")
                        + "the preset's)")
    p.add_argument("--seed", type=seed_value, default=0, help="seed of subsets, initialisations, batch orders and "
                                                              "injected noise (default 0)")
    p.add_argument("--shard-size", type=positive_int, metavar="M", help="models trained together and stored per file")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="fp32, bf16 (bf16 products, float32 weights) or auto (bf16 where the hardware is fast at it "
                        "and the recipe keeps its fidelity); default: the preset's (fp32)")
    p.add_argument("--device", type=device_name, default=None,
                   help="auto, cpu, cuda or cuda:N (default: " + ("%%config CScoreMagics.device" if session_defaults
                                                                  else "auto") + ")")
    p.add_argument("--backend", default="local", choices=list(BACKENDS), help="where shards run (default local)")
    p.add_argument("--address", default=None, help="Ray cluster address HOST:PORT (with --backend ray); default: a "
                                                    "local instance")
    p.add_argument("--num-gpus", type=float, default=None, metavar="F", help="GPU fraction per shard on Ray "
                                                                              "(default 0.25)")
    p.add_argument("--eval-data", default=None, metavar="PATH|test",
                   help="also record every model's correctness on an evaluation set, for influence: 'test' (the "
                        "data set's own test split: MNIST t10k, CIFAR's test batch) or an .npz file")
    p.add_argument("--out", metavar="DIR",
                   help="run folder (default: " + ("<CScoreMagics.run_root>" if session_defaults else "cscore-runs")
                        + "/<dataset>-<preset>-seed<seed>)")


def add_proxy_options(p: argparse.ArgumentParser, *, session_defaults: bool = False) -> None:
    """The options of a proxy computation (both front ends)."""
    from .proxies.suite import FAMILIES, SPACES
    from .recipes import PRESETS

    p.add_argument("--preset", default=None, choices=list(PRESETS), metavar="NAME",
                   help="recipe of the full-data model(s) behind the learning-speed and hidden-space proxies "
                        "(default: the run's, else by the data)")
    p.add_argument("--runs", type=positive_int, default=1, metavar="N", help="full-data models, averaged (default 1)")
    p.add_argument("--epochs", type=positive_int, nargs="+", metavar="E",
                   help="epochs whose hidden features are used (default: 1, 2 and the last)")
    p.add_argument("--families", nargs="+", choices=list(FAMILIES), metavar="F",
                   help=f"proxy families: {', '.join(FAMILIES)} (default: all but vog, whose memory is large and "
                        f"which measured uninformative; cleanlab when installed)")
    p.add_argument("--spaces", nargs="+", choices=list(SPACES), metavar="S",
                   help=f"feature spaces of kde, knn and lof: {', '.join(SPACES)} (default both)")
    p.add_argument("--bandwidth-scale", type=float, default=1.0, metavar="S",
                   help="kernel bandwidth = S x the median pairwise distance (default 1)")
    p.add_argument("--dynamics-every-steps", type=_every_steps, default="auto", metavar="auto|epoch|N",
                   help="how often learning speed is recorded: auto (10 per epoch), epoch, or every N steps")
    p.add_argument("--early-epoch", type=positive_int, default=None, metavar="E",
                   help="the epoch of EL2N, GraNd and early prototypicality (default: 10%% of training)")
    p.add_argument("--folds", type=positive_int, default=5, metavar="K", help="cross-validation folds of cleanlab (default 5)")
    p.add_argument("--vog-epochs", type=positive_int, nargs="+", default=None, metavar="E",
                   help="checkpoint epochs of VoG (default: every epoch)")
    p.add_argument("--device", type=device_name, default=None,
                   help="auto, cpu, cuda or cuda:N (default: " + ("%%config CScoreMagics.device" if session_defaults
                                                                  else "auto") + ")")


def _every_steps(text: str) -> int | str | None:
    if text in ("auto", "epoch"):
        return None if text == "epoch" else "auto"
    return positive_int(text)


def proxy_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of :func:`~cscore_lab.proxies.suite.compute_proxies` that the proxy options ask
    for (both front ends): options left at their defaults are not passed."""
    out: dict[str, Any] = {"runs": args.runs, "bandwidth_scale": args.bandwidth_scale,
                           "dynamics_every_steps": args.dynamics_every_steps, "folds": args.folds}
    for name, key in (("families", "families"), ("spaces", "spaces"), ("epochs", "epochs_for_features"),
                      ("vog_epochs", "vog_epochs")):
        value = getattr(args, name)
        if value:
            out[key] = tuple(value)
    if args.early_epoch is not None:
        out["early_epoch"] = args.early_epoch
    return out


# --------------------------------------------------------------------------- resolving an estimate


@dataclass
class EstimateOptions:
    """What a user asked of an estimate, front-end neutral: None means "the default"."""

    preset: str | None = None
    ratios: Sequence[float] | None = None
    runs: int | None = None
    seed: int = 0
    shard_size: int | None = None
    precision: str | None = None
    device: str | None = None
    backend: str = "local"
    address: str | None = None
    num_gpus: float | None = None
    eval_data: str | None = None
    out: str | Path | None = None

    @classmethod
    def from_namespace(cls, args: argparse.Namespace, **overrides: Any) -> "EstimateOptions":
        values = {f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)}
        values.update(overrides)
        return cls(**values)


def data_spec_from(args: argparse.Namespace | None = None, *, name: str | None = None, data: str | None = None,
                   label_noise: float = 0.0, ood: float = 0.0, ood_kind: str | None = None,
                   ood_source: str | None = None, seed: int = 0):
    """The :class:`~cscore_lab.runs.DataSpec` that dataset options ask for (from parsed ``args`` or keywords)."""
    from .runs import DataSpec

    if args is not None:
        name = getattr(args, "dataset", None) or name or "digits"
        data = getattr(args, "data", None)
        label_noise = getattr(args, "label_noise", 0.0) or 0.0
        ood = getattr(args, "ood", 0.0) or 0.0
        ood_kind = getattr(args, "ood_kind", None)
        ood_source = getattr(args, "ood_source", None)
        seed = getattr(args, "seed", 0) or 0
    return DataSpec(name=name or "digits", path=data, label_noise=label_noise, ood_fraction=ood, ood_kind=ood_kind,
                    ood_source=ood_source, seed=seed)


def resolve_estimation(options: EstimateOptions, loaded: Any, *, run_root: str | Path = "cscore-runs",
                       default_runs: int | None = None, default_device: str = "auto"):
    """The :class:`~cscore_lab.holdout.Estimation` that ``options`` ask for on ``loaded`` data.

    The one rule for presets (:func:`~cscore_lab.recipes.default_preset_name` of the data), plans
    (the preset's, with every option that is not None replaced), precision, run folders
    (``<run_root>/<dataset>-<preset>-seed<seed>``), backends and the noise entries: both front
    ends call it, so the same options give the same run.

    Parameters
    ----------
    options : EstimateOptions
    loaded : LoadedData
        The data set with its noise masks and spec (see :mod:`cscore_lab.runs`).
    run_root : path
        Where run folders go when ``options.out`` is None.
    default_runs, default_device
        Session defaults used when the options leave runs or device unset.
    """
    from .backends import backend_from_options
    from .holdout import Estimation, default_run_folder
    from .recipes import default_preset_name, get_preset

    ds = loaded.dataset
    preset = get_preset(options.preset or default_preset_name(ds.name, ds.input_shape))
    recipe = preset.recipe
    if ds.suggested_scaling and ds.suggested_scaling != recipe.input_scaling and options.preset is None:
        recipe = recipe.with_(input_scaling=ds.suggested_scaling)  # features that are not pixel intensities
    device = options.device or default_device
    reason = None
    if options.precision is not None:
        from .trainer import resolve_device, resolve_precision

        try:
            dev = resolve_device(device) if options.backend == "local" else None
        except ValueError:
            dev = None
        if dev is not None:
            chosen, reason = resolve_precision(options.precision, dev, recipe)
        elif options.precision == "auto":  # the workers' hardware cannot be probed from here
            chosen, reason = "fp32", "fp32: auto cannot see the workers' hardware; pass --precision bf16 to use it there"
        else:
            chosen, reason = options.precision, f"{options.precision}: requested"
        recipe = recipe.with_(precision=chosen)
    plan = preset.plan.with_overrides(ratios=options.ratios,
                                      runs=options.runs if options.runs is not None else default_runs,
                                      seed=options.seed, shard_size=options.shard_size)
    backend = backend_from_options(options.backend, address=options.address, num_gpus=options.num_gpus)
    if options.out is not None and not str(options.out).strip():
        raise ValueError("--out needs a folder, got an empty string (leave --out out for the default folder)")
    out = Path(options.out) if options.out else default_run_folder(ds.name, preset.recipe.name, plan.seed, run_root)
    spec = loaded.spec
    if options.eval_data is not None:
        from dataclasses import replace

        from .runs import load_eval_data

        if spec is not None:
            spec = replace(spec, eval_data=options.eval_data)
            eval_dataset = spec.load_eval()
        elif options.eval_data == "test":
            raise ValueError("--eval-data test needs a data set loaded by name (mnist, fashion-mnist, cifar10, "
                             "cifar100); pass an .npz file or an image folder instead")
        else:
            eval_dataset = load_eval_data(options.eval_data)
    else:
        eval_dataset = None
    est = Estimation(ds, recipe, plan, out=out, device=device, backend=backend, eval_dataset=eval_dataset,
                     masks=loaded.masks, original_labels=loaded.original_labels,
                     data_spec=None if spec is None else spec.to_dict())
    est.precision_reason = reason
    return est
