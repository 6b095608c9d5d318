"""Data sets as a run folder remembers them, and opening a run folder with everything it holds.

A :class:`DataSpec` says how to get a data set back: which one (name and path), and which noise was
injected into it (label noise, out-of-distribution examples) with which seed. An estimation keeps
its spec, its labels and its noise masks in the run folder (the store's ``data`` entry), so
:func:`open_run` rebuilds exactly the data a run was made on and checks it by fingerprint: the
CLI, the magics and the report all open runs through it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .cscores import CScores, scores_from_store
from .data import DATASETS, Dataset, inject_label_noise, load_dataset
from .store import RunStore

__all__ = ["DataSpec", "LoadedData", "RunContents", "open_run", "counted_shards", "memorization_of", "influence_of"]


@dataclass(frozen=True)
class DataSpec:
    """How to load a data set, and the noise to inject into it, reproducibly.

    Parameters
    ----------
    name : str
        A loadable data set (see :data:`cscore_lab.data.DATASETS`).
    path : str, optional
        Its folder or file (all but ``digits``); stored absolute.
    label_noise : float, default 0
        Share of labels flipped to another class (:func:`~cscore_lab.data.inject_label_noise`).
    ood_fraction : float, default 0
        Share of examples replaced by out-of-distribution inputs (:func:`~cscore_lab.ood.inject_ood`).
    ood_kind : str, optional
        The kind of those inputs (``gaussian``, ``uniform``, ``inverted``, ``rotated``, ``shuffled``, ``foreign``).
    ood_source : str, optional
        Pictures for ``ood_kind="foreign"`` when the kind needs them (an MNIST folder for digits).
    seed : int, default 0
        Seeds both injections (the estimate's seed unless told otherwise).
    eval_data : str, optional
        An evaluation set every model is also scored on (influence): ``"test"`` (the data set's own
        test split) or an ``.npz`` file or image folder (stored absolute).
    """

    name: str = "digits"
    path: str | None = None
    label_noise: float = 0.0
    ood_fraction: float = 0.0
    ood_kind: str | None = None
    ood_source: str | None = None
    seed: int = 0
    eval_data: str | None = None

    def __post_init__(self) -> None:
        from .data import DataError

        if self.name not in DATASETS:
            raise DataError(f"unknown dataset {self.name!r}; choose one of: {', '.join(DATASETS)}")
        spec = DATASETS[self.name]
        if spec.needs_path and self.path is None:
            raise DataError(f"dataset {self.name!r} needs a path (--data PATH): {spec.description}")
        if not spec.needs_path and self.path is not None:
            raise DataError(f"dataset {self.name!r} is bundled and reads no --data; drop --data {self.path} "
                            f"(or name the data set it holds with --dataset)")
        if self.path is not None:
            object.__setattr__(self, "path", str(Path(self.path).expanduser().resolve()))
        for name, value in (("label_noise", self.label_noise), ("ood_fraction", self.ood_fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise DataError(f"{name.replace('_', '-')} must be a fraction in [0, 1], got {value!r}")
        if self.ood_fraction and not self.ood_kind:
            object.__setattr__(self, "ood_kind", "gaussian")
        if not self.ood_fraction and (self.ood_kind or self.ood_source):
            raise DataError("--ood-kind and --ood-source need --ood FRACTION (the share of examples to replace)")
        if self.ood_source is not None:
            object.__setattr__(self, "ood_source", str(Path(self.ood_source).expanduser().resolve()))
        if self.eval_data is not None and self.eval_data != "test":
            object.__setattr__(self, "eval_data", str(Path(self.eval_data).expanduser().resolve()))
        if self.eval_data == "test" and self.name not in TEST_SPLITS:
            raise DataError(f"{self.name!r} has no test split to read; pass --eval-data FILE.npz (or an image folder)")

    @property
    def modified(self) -> bool:
        return bool(self.label_noise or self.ood_fraction)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "DataSpec":
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})

    def load(self, *, path: str | Path | None = None) -> "LoadedData":
        """The data set with its noise injected, the masks of what was changed and the labels before.

        ``path`` replaces the stored path (the data moved since the run)."""
        if path is not None and not DATASETS[self.name].needs_path:
            from .data import DataError

            raise DataError(f"dataset {self.name!r} is bundled and reads no --data; drop --data {path}")
        ds = load_dataset(self.name, path if path is not None else self.path)
        masks: dict[str, np.ndarray] = {}
        original = None
        if self.ood_fraction:
            from .ood import inject_ood

            ds, masks["ood"] = inject_ood(ds, float(self.ood_fraction), self.ood_kind, seed=self.seed,
                                          source=self.ood_source)
        if self.label_noise:
            original = ds.labels.copy()
            ds, masks["flipped"] = inject_label_noise(ds, float(self.label_noise), seed=self.seed)
        return LoadedData(ds, masks, original, self)


    def load_eval(self, *, path: str | Path | None = None) -> Dataset | None:
        """The evaluation set (``eval_data``), scaled later with the training set's statistics; None without one."""
        return load_eval_data(self.eval_data, self.name, path if path is not None else self.path)


#: Data sets whose own test split ``--eval-data test`` reads.
TEST_SPLITS = ("mnist", "fashion-mnist", "cifar10", "cifar100")


def load_eval_data(eval_data: str | None, name: str | None = None, path: str | Path | None = None) -> Dataset | None:
    """The evaluation set that ``--eval-data`` names: ``"test"`` (the test split of data set ``name`` at
    ``path``), an ``.npz`` file or an image folder."""
    if eval_data is None:
        return None
    from . import data as d

    if eval_data == "test":
        loaders = {"mnist": d.load_mnist, "fashion-mnist": d.load_fashion_mnist, "cifar10": d.load_cifar10,
                   "cifar100": d.load_cifar100}
        if name not in loaders:
            raise d.DataError(f"{name!r} has no test split to read; pass --eval-data FILE.npz (or an image folder)")
        return loaders[name](path, split="test")
    target = Path(eval_data)
    return d.load_image_folder(target) if target.is_dir() else d.load_npz(target)


@dataclass
class LoadedData:
    """A data set with what is known of how it was made: noise masks, labels before the noise, its spec."""

    dataset: Dataset
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    original_labels: np.ndarray | None = None
    spec: DataSpec | None = None


@dataclass
class RunContents:
    """A run folder read back: its scores (finished or partial), data set, noise masks, manifest and
    whatever else it holds (``proxies.npz``)."""

    cscores: CScores
    dataset: Dataset
    masks: dict[str, np.ndarray]
    manifest: dict[str, Any]
    original_labels: np.ndarray | None = None
    spec: DataSpec | None = None
    proxies: Any = None
    folder: Path | None = None

    @property
    def noise_mask(self) -> np.ndarray | None:
        """The flipped-label mask, when labels were flipped."""
        return self.masks.get("flipped")

    @property
    def recipe(self):
        from .recipes import Recipe

        return Recipe.from_dict(self.manifest["identity"]["recipe"])

    def memorization(self):
        """Feldman & Zhang's memorization of every example, from this run's models (see :func:`memorization_of`)."""
        return memorization_of(RunStore(self.folder), labels=self.dataset.labels, dataset=self.dataset)

    def influence(self, *, k: int = 10, eval_dataset: Dataset | None = None, data: str | Path | None = None):
        """Top-k influence of training examples on each target (see :func:`influence_of`); the
        evaluation set the run recorded is rebuilt from its spec unless given."""
        if eval_dataset is None and self.spec is not None and self.spec.eval_data is not None:
            eval_dataset = self.spec.load_eval(path=data)
        return influence_of(RunStore(self.folder), labels=self.dataset.labels, k=k, eval_dataset=eval_dataset,
                            dataset=self.dataset)


_LEGACY_NOISE_NAME = re.compile(r"^(?P<base>.+)-noise(?P<fraction>[0-9.eE+-]+)$")


def open_run(path: str | Path, *, data: str | Path | None = None, dataset: Dataset | None = None) -> RunContents:
    """Read the run folder ``path`` with the data set it was made on.

    The data set is rebuilt from the spec the run keeps (``data`` overrides its stored path, for a
    folder moved to another machine), or taken as ``dataset``; either way its fingerprint must
    equal the run's. Labels and noise masks come from the run folder.

    Raises
    ------
    FileNotFoundError
        No run folder at ``path``.
    ValueError
        The data set cannot be rebuilt (``data`` missing, data of another run), or the run has no
        finished shard yet.
    """
    folder = Path(path)
    store = RunStore(folder)
    manifest = store.read_manifest()
    ident = manifest["identity"]
    stored = store.read_data()
    arrays, spec_dict = stored if stored is not None else ({}, None)
    spec = DataSpec.from_dict(spec_dict) if spec_dict else None
    original = arrays.get("original_labels")
    if dataset is None:
        if spec is not None:
            loaded = spec.load(path=data)
            ds, original = loaded.dataset, loaded.original_labels if original is None else original
        else:
            ds = _legacy_dataset(folder, manifest, arrays, data)
    else:
        if not isinstance(dataset, Dataset):
            raise TypeError(f"dataset must be a cscore_lab Dataset, got {type(dataset).__name__}")
        ds = dataset
    if ds.fingerprint != ident["fingerprint"]:
        raise ValueError(f"the data set loaded for run {folder} ({ds.name}, {len(ds)} examples) is not the data the "
                         f"run was made on ({ident['examples']} examples, fingerprint {ident['fingerprint'][:12]}); "
                         f"check --data")
    masks = {k[len("mask_"):]: np.asarray(v, dtype=bool) for k, v in arrays.items() if k.startswith("mask_")}
    cs = scores_from_store(folder, labels=ds.labels)  # the shards are the truth, finished or not
    proxies = None
    if (folder / "proxies.npz").is_file():
        from .proxies.suite import ProxyTable

        proxies = ProxyTable.load(folder / "proxies.npz")
    return RunContents(cs, ds, masks, manifest, original, spec, proxies, folder)


def _legacy_dataset(folder: Path, manifest: dict[str, Any], arrays: dict[str, np.ndarray],
                    data: str | Path | None) -> Dataset:
    """A run folder from before data specs were kept: load the data set by the name in its identity."""
    name = str(manifest["identity"]["dataset"])
    match = _LEGACY_NOISE_NAME.match(name)
    base = name if name in DATASETS or not match else match.group("base")
    if base not in DATASETS:
        raise ValueError(f"run {folder} was made on data set {name!r}, which cannot be loaded by name "
                         f"(loadable: {', '.join(DATASETS)}); open it from Python with open_run(path, dataset=...)")
    source = DATASETS[base]
    if source.needs_path and data is None:
        raise ValueError(f"run {folder} was made on {name!r}; pass --data PATH ({source.description})")
    ds = load_dataset(base, data if source.needs_path else None)
    if name != base:
        labels = arrays.get("labels")
        if labels is not None:
            ds = ds.with_labels(labels, name=name)
        else:  # made by an old CLI: inject_label_noise with the run's seed (checked by fingerprint after)
            ds, arrays["mask_flipped"] = inject_label_noise(ds, float(match.group("fraction")),
                                                            seed=int(manifest["plan"]["seed"]))
    return ds


# --------------------------------------------------------------------------- what else the shards hold


def counted_shards(store: Any, plan: Any | None = None) -> Any:
    """The shards an estimate counts (those :func:`~cscore_lab.shards.select_shards` reuses), with rows
    of runs beyond the plan left out: what memorization and influence are computed from too."""
    from .recipes import Plan
    from .shard_file import ShardResult
    from .shards import select_shards

    if plan is None:
        plan = Plan.from_dict(store.read_manifest()["plan"])
    for shard in store.iter_shards([s.key for s in select_shards(plan, store.finished_keys()).reuse]):
        keep = shard.runs < plan.runs
        if not keep.all():
            shard = ShardResult(shard.key, shard.ratio, shard.runs[keep], shard.heldout[keep], shard.correct[keep],
                                shard.seconds, None if shard.eval_correct is None else shard.eval_correct[keep],
                                shard.train_correct_known)
        yield shard


def _folder_of(store: Any) -> str:
    return str(store.path) if getattr(store, "path", None) is not None else "this estimation"


def _plan_and_labels(store: Any, plan: Any | None, labels: np.ndarray | None) -> tuple[Any, np.ndarray]:
    """``plan`` and ``labels``, by default the run's own (its manifest's plan, its stored labels)."""
    from .recipes import Plan

    if plan is None:
        plan = Plan.from_dict(store.read_manifest()["plan"])
    if labels is None:
        labels = store.stored_labels()
    if labels is None:
        raise ValueError(f"run folder {_folder_of(store)} holds no labels; open it with its data set (open_run)")
    return plan, labels


def _accumulate(acc: Any, shards: Iterable[Any], store: Any) -> None:
    """Add every shard to ``acc`` (memorization or influence); refuse shards without training correctness, or none."""
    for shard in shards:
        if not shard.train_correct_known:
            raise ValueError(f"run folder {_folder_of(store)} predates shards that record correctness on training "
                             f"examples (shard format 1, shard {shard.key}); memorization and influence need it: "
                             f"rerun the estimate in a new folder to add it")
        acc.add_shard(shard)
    if acc.models == 0:
        raise ValueError(f"{_folder_of(store)}: no finished shard yet; run the estimate first")


def memorization_of(store: Any, *, labels: np.ndarray | None = None, plan: Any | None = None,
                    dataset: Dataset | None = None):
    """Memorization (Feldman & Zhang 2020) of every example, from the models of a run.

    ``store`` is a :class:`~cscore_lab.store.RunStore` (or an estimation's ``store``); ``labels``
    default to the run's stored labels. A run folder whose shards predate correctness on training
    examples is a clear error.
    """
    from .memorization import MemorizationAccumulator

    plan, labels = _plan_and_labels(store, plan, labels)
    acc = MemorizationAccumulator(len(labels), plan.ratios)
    _accumulate(acc, counted_shards(store, plan), store)
    info = {"meta": {"models": acc.models, "plan": plan.to_dict()}}
    if dataset is not None:
        info.update(dataset=dataset.name, fingerprint=dataset.fingerprint)
    return acc.result(np.asarray(labels), **info)


def influence_of(store: Any, *, labels: np.ndarray | None = None, k: int = 10, plan: Any | None = None,
                 eval_dataset: Dataset | None = None, dataset: Dataset | None = None, min_models: int = 1):
    """Top-k influence (Feldman & Zhang 2020) of training examples, from the models of a run.

    The targets are the examples of the evaluation set the run recorded correctness on
    (``--eval-data``; pass it as ``eval_dataset`` for its labels), else the training examples
    themselves, each judged by the models that held it out.
    """
    from .influence import InfluenceAccumulator

    plan, labels = _plan_and_labels(store, plan, labels)
    ident = store.read_manifest()["identity"] if getattr(store, "path", None) is not None else {}
    recorded = ident.get("eval")
    if eval_dataset is not None and recorded is not None and eval_dataset.fingerprint != recorded["fingerprint"]:
        raise ValueError(f"the evaluation set given ({eval_dataset.name}) is not the one run {_folder_of(store)} "
                         f"recorded ({recorded['dataset']}, {recorded['examples']} examples)")
    shards = list(counted_shards(store, plan))
    with_eval = bool(shards) and shards[0].eval_correct is not None
    if with_eval and eval_dataset is None:
        raise ValueError(f"run {_folder_of(store)} recorded an evaluation set ({(recorded or {}).get('dataset', '?')}); "
                         f"pass it (eval_dataset=..., or --eval-data as for the estimate) for its labels")
    acc = InfluenceAccumulator(len(labels), plan.ratios, n_eval=len(eval_dataset) if with_eval else None)
    _accumulate(acc, shards, store)
    info: dict[str, Any] = {"meta": {"models": acc.models, "plan": plan.to_dict()}}
    if dataset is not None:
        info["dataset"] = dataset.name
    if with_eval:
        info["eval_dataset"] = eval_dataset.name
        return acc.result(np.asarray(labels), eval_dataset.labels, k=k, min_models=min_models, **info)
    return acc.result(np.asarray(labels), k=k, min_models=min_models, **info)

