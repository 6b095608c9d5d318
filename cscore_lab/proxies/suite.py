"""Every cheap proxy of the C-score in one call, and the table that holds them.

:func:`compute_proxies` trains the recipe's model on the *full* data (one run, or a
few with different seeds, trained together as one stacked group), records learning
dynamics and hidden representations through trainer callbacks, and computes

============================== ==========================================================
``cum_accuracy`` …             learning speed (:mod:`.dynamics`), averaged over runs
``kde_<space>_<kind>``         kernel density (:mod:`.kde`), ``kind`` in density /
                               same_label / signed
``knn_<space>``                k-NN label agreement (:mod:`.neighbors`)
``lof_<space>``                negated local outlier factor (:mod:`.neighbors`)
============================== ==========================================================

where ``space`` is ``input`` (the inputs flattened and scaled as the recipe scales them)
or ``hidden_e<epoch>`` (penultimate-layer features after that epoch; proxies are
computed per run and averaged). Every column is oriented like the C-score: **higher =
more regular**. The result is a :class:`ProxyTable`: plain data with ``to_frame()``,
``save()``/``load()`` (.npz holding arrays and a JSON header, no pickle) and
``_repr_html_``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..results import ResultTable

__all__ = ["ProxyTable", "compute_proxies", "FAMILIES", "SPACES"]

FORMAT = "cscore_lab.proxytable/1"
#: Proxy families :func:`compute_proxies` can compute.
FAMILIES: tuple[str, ...] = ("dynamics", "kde", "knn", "lof")
#: Feature spaces for the kde, knn and lof families.
SPACES: tuple[str, ...] = ("input", "hidden")


# --------------------------------------------------------------------------- the table


@dataclass
class ProxyTable(ResultTable):
    """Per-example proxy scores of one data set, one named column per proxy (higher = more regular).

    Attributes
    ----------
    values : dict of str to float64 [N]
        The proxies, in computation order.
    labels : int64 [N]
        The labels the proxies were computed with.
    dataset, fingerprint : str
        Name and content fingerprint of the data set ("" when unknown).
    class_names : tuple of str
    meta : dict
        JSON-serialisable facts: recipe, runs, seed, feature epochs, bandwidths used,
        neighbour counts, timings, training accuracy.
    """

    FORMAT = FORMAT
    FILENAME = "proxies.npz"

    values: dict[str, np.ndarray]
    labels: np.ndarray
    dataset: str = ""
    fingerprint: str = ""
    class_names: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.labels.ndim != 1:
            raise ValueError(f"labels must be 1-D, got shape {self.labels.shape}")
        n = self.labels.shape[0]
        values = {}
        for name, arr in dict(self.values).items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"proxy names must be non-empty strings, got {name!r}")
            a = np.asarray(arr, dtype=np.float64)
            if a.shape != (n,):
                raise ValueError(f"proxy {name!r} has shape {a.shape}, expected ({n},): one value per example")
            values[name] = a
        self.values = values
        self.class_names = tuple(str(c) for c in self.class_names)

    @property
    def names(self) -> list[str]:
        return list(self.values)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __contains__(self, name: object) -> bool:
        return name in self.values

    def __getitem__(self, name: str) -> np.ndarray:
        try:
            return self.values[name]
        except KeyError:
            raise KeyError(f"no proxy {name!r}; this table has: {', '.join(self.values)}") from None

    def select(self, names: Sequence[str]) -> "ProxyTable":
        """A table with only the proxies ``names``, in that order."""
        unknown = [n for n in names if n not in self.values]
        if unknown:
            raise ValueError(f"unknown proxy names {unknown}; this table has: {', '.join(self.values)}")
        return ProxyTable({n: self.values[n] for n in names}, self.labels, self.dataset, self.fingerprint,
                          self.class_names, dict(self.meta))

    def to_frame(self):
        """A pandas DataFrame: one row per example, ``label`` then one column per proxy."""
        import pandas as pd

        df = pd.DataFrame({"label": self.labels, **self.values})
        df.index.name = "example"
        return df

    def _arrays(self) -> dict[str, np.ndarray]:
        matrix = np.stack(list(self.values.values())) if self.values else np.zeros((0, len(self)))
        return {"labels": self.labels, "values": matrix}

    def _info(self) -> dict[str, Any]:
        return {"names": self.names, "dataset": self.dataset, "fingerprint": self.fingerprint,
                "class_names": list(self.class_names), "meta": self.meta}

    @classmethod
    def _from_saved(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> "ProxyTable":
        if arrays["values"].shape[0] != len(info["names"]):
            raise ValueError(f"{len(info['names'])} proxy names for {arrays['values'].shape[0]} columns")
        values = dict(zip(info["names"], arrays["values"]))
        return cls(values, arrays["labels"], info["dataset"], info["fingerprint"], tuple(info["class_names"]),
                   info["meta"])

    def __repr__(self) -> str:
        return f"ProxyTable(dataset={self.dataset!r}, examples={len(self)}, proxies={self.names})"

    def _html_title(self) -> str:
        return f"Proxies of {self.dataset or 'a data set'}"

    def _html_frame(self):
        return self.to_frame().drop(columns="label").describe().T[["mean", "std", "min", "50%", "max"]]

    def _html_notes(self) -> list[str]:
        notes = [f"{len(self)} examples; every column: higher = more regular"]
        if self.meta.get("recipe"):
            notes.append(f"recipe {self.meta['recipe'].get('name')}, runs {self.meta.get('runs')}, "
                         f"feature epochs {self.meta.get('feature_epochs')}")
        return notes


# --------------------------------------------------------------------------- computing


class _Reporter:
    """Progress of a proxy computation: a ``tqdm.auto`` bar over its steps (a widget in a notebook,
    a line in a terminal), or a callable that receives one message per step, or nothing."""

    def __init__(self, progress: bool | Callable[[str], None], total: int, desc: str):
        self.callback = progress if callable(progress) else None
        self.bar = None
        if progress is True:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", dynamic_ncols=True)

    def __call__(self, msg: str, advance: int = 0) -> None:
        if self.callback is not None:
            self.callback(msg)
        if self.bar is not None:
            self.bar.set_postfix_str(msg, refresh=False)
            self.bar.update(advance)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _check_choices(given: Sequence[str], allowed: Sequence[str], what: str) -> tuple[str, ...]:
    given = (given,) if isinstance(given, str) else tuple(given)
    unknown = [g for g in given if g not in allowed]
    if unknown:
        raise ValueError(f"unknown {what} {unknown}; choose from {list(allowed)}")
    return given


def _space_proxies(space: str, feats: Sequence[np.ndarray], labels: np.ndarray, families: Sequence[str], *,
                   bandwidth: float | str, bandwidth_scale: float, knn_k: int, lof_neighbors: int, seed: int,
                   meta: dict) -> dict[str, np.ndarray]:
    """kde/knn/lof proxies of one feature space; ``feats`` holds one [N, d] array per run, results are averaged."""
    from .neighbors import neighbor_proxies

    out: dict[str, np.ndarray] = {}
    if "kde" in families:
        from .kde import kde_scores, select_bandwidth

        def h(f: np.ndarray) -> float | str:
            return bandwidth if bandwidth_scale == 1 else bandwidth_scale * select_bandwidth(f, bandwidth, seed=seed)

        results = [kde_scores(f, labels, bandwidth=h(f), seed=seed) for f in feats]
        for kind in ("density", "same_label", "signed"):
            out[f"kde_{space}_{kind}"] = np.mean([getattr(r, kind) for r in results], axis=0)
        rule = bandwidth if isinstance(bandwidth, str) else "fixed"
        meta.setdefault("bandwidths", {})[f"kde_{space}"] = {
            "rule": rule if bandwidth_scale == 1 else f"{bandwidth_scale:g} x {rule}",
            "bandwidth": [r.bandwidth for r in results]}
    if "knn" in families or "lof" in families:
        per_run = [neighbor_proxies(f, labels, k=knn_k if "knn" in families else None,
                                    n_neighbors=lof_neighbors if "lof" in families else None) for f in feats]
        for name in per_run[0]:
            out[f"{name}_{space}"] = np.mean([r[name] for r in per_run], axis=0)
    return out


def _feature_epochs(epochs: Sequence[int] | int | None, total: int) -> tuple[int, ...]:
    if epochs is None:
        return tuple(sorted({1, min(2, total), total}))
    epochs = (epochs,) if isinstance(epochs, (int, np.integer)) else tuple(epochs)
    bad = [e for e in epochs if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or not 1 <= e <= total]
    if bad or not epochs:
        raise ValueError(f"epochs_for_features must be integers in 1..{total} (the recipe trains {total} epochs), got {list(epochs)}")
    return tuple(sorted({int(e) for e in epochs}))


class _EpochReport:
    def __init__(self, report: _Reporter, runs: int, total: int):
        self.report, self.runs, self.total = report, runs, total

    def on_epoch_end(self, epoch: int, group) -> None:
        self.report(f"trained {self.runs} full-data model(s): epoch {epoch}/{self.total}", advance=1)


def compute_proxies(
    dataset,
    recipe="digits-mlp",
    *,
    runs: int = 1,
    epochs_for_features: Sequence[int] | int | None = None,
    families: Sequence[str] = FAMILIES,
    spaces: Sequence[str] = SPACES,
    bandwidth: float | str = "median",
    bandwidth_scale: float = 1.0,
    knn_k: int = 10,
    lof_neighbors: int = 20,
    device: str = "auto",
    seed: int = 0,
    model_factory: Callable[[], Any] | None = None,
    progress: bool | Callable[[str], None] = False,
) -> ProxyTable:
    """Compute every cheap C-score proxy of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
    recipe : Recipe or preset name, default "digits-mlp"
        How the full-data model(s) are trained and how inputs are scaled.
    runs : int, default 1
        Full-data models (different seeds, trained together); dynamics and hidden-space
        proxies are averaged over them.
    epochs_for_features : int or sequence of int, optional
        Epochs after which hidden representations are taken (default: 1, 2 and the last).
    families : subset of {"dynamics", "kde", "knn", "lof"}, default all
    spaces : subset of {"input", "hidden"}, default both
        Where the kde, knn and lof families are computed.
    bandwidth : float or {"median", "scott"}, default "median"
        Kernel bandwidth (per space, and per run in hidden spaces); the values used are in
        ``meta["bandwidths"]``.
    bandwidth_scale : float, default 1.0
        Multiplies the bandwidth (rule or number): the paper tunes it, and the median rule
        gives a wide kernel.
    knn_k : int, default 10
        Neighbours for the k-NN label agreement.
    lof_neighbors : int, default 20
        Neighbourhood of the local outlier factor.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    seed : int, default 0
        Seeds the full-data models (initialisation and batch order) and the bandwidth sample.
    model_factory : callable returning a torch.nn.Module, optional
        Train this architecture instead of the recipe's.
    progress : bool or callable(str)
        True prints one line per step to stderr; a callable receives the lines.

    Returns
    -------
    ProxyTable
        One column per proxy (higher = more regular), named as in the module docstring.

    Notes
    -----
    The full-data models train with one torch thread, like the estimator's shards: the
    same seed gives the same proxies on any CPU, and on a shared machine two threads of
    small products were up to 6x slower than one. Use a GPU (``device``) for large data.

    See Also
    --------
    cscore_lab.analysis.correlate : how well each proxy agrees with the C-scores.
    """
    from ..data import Dataset
    from ..recipes import Recipe, get_preset
    from .neighbors import _check_k

    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a cscore_lab Dataset, got {type(dataset).__name__}")
    if isinstance(recipe, str):
        recipe = get_preset(recipe).recipe
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe or a preset name, got {type(recipe).__name__}")
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive integer, got {runs!r}")
    families = _check_choices(families, FAMILIES, "proxy families")
    spaces = _check_choices(spaces, SPACES, "feature spaces")
    feature_epochs = _feature_epochs(epochs_for_features, recipe.epochs)
    labels = dataset.labels
    space_families = [f for f in families if f != "dynamics"]
    if "knn" in families:
        _check_k(knn_k, len(dataset), "knn_k")
    if "lof" in families:
        _check_k(lof_neighbors, len(dataset), "lof_neighbors")
    if not (isinstance(bandwidth_scale, (int, float)) and np.isfinite(bandwidth_scale) and bandwidth_scale > 0):
        raise ValueError(f"bandwidth_scale must be a positive finite number, got {bandwidth_scale!r}")
    options = dict(bandwidth=bandwidth, bandwidth_scale=float(bandwidth_scale), knn_k=knn_k,
                   lof_neighbors=lof_neighbors, seed=seed)
    meta: dict[str, Any] = {"recipe": recipe.to_dict(), "runs": runs, "seed": seed, "families": list(families),
                            "spaces": list(spaces), "bandwidth_scale": float(bandwidth_scale), "knn_k": knn_k,
                            "lof_neighbors": lof_neighbors, "seconds": {}}
    values: dict[str, np.ndarray] = {}

    from ..trainer import model_seeds, predict_correct, prepare_inputs, resolve_device, torch_threads, train_group
    from .dynamics import DynamicsRecorder, FeatureRecorder

    x, y = prepare_inputs(dataset, recipe, resolve_device(device))
    input_step = "input" in spaces and bool(space_families)
    hidden = "hidden" in spaces and bool(space_families)
    trains = "dynamics" in families or hidden
    steps = int(input_step) + (recipe.epochs if trains else 0) + (len(feature_epochs) if hidden else 0)
    report = _Reporter(progress, steps, f"proxies {dataset.name}")
    try:
        _compute(dataset, recipe, x, y, values, meta, report, options, runs=runs, seed=seed, families=families,
                 space_families=space_families, feature_epochs=feature_epochs, input_step=input_step, hidden=hidden,
                 trains=trains, model_factory=model_factory, torch_threads=torch_threads, model_seeds=model_seeds,
                 predict_correct=predict_correct, train_group=train_group, recorders=(DynamicsRecorder, FeatureRecorder))
    finally:
        report.close()
    return ProxyTable(values, labels, dataset.name, dataset.fingerprint, dataset.class_names, meta)


def _compute(dataset, recipe, x, y, values, meta, report, options, *, runs, seed, families, space_families,
             feature_epochs, input_step, hidden, trains, model_factory, torch_threads, model_seeds, predict_correct,
             train_group, recorders) -> None:
    DynamicsRecorder, FeatureRecorder = recorders
    labels = dataset.labels
    if input_step:
        t0 = time.perf_counter()
        report(f"input-space proxies: {', '.join(space_families)}")
        flat = x.reshape(len(dataset), -1).cpu().numpy()
        values.update(_space_proxies("input", [flat], labels, space_families, meta=meta, **options))
        meta["seconds"]["input"] = round(time.perf_counter() - t0, 3)
        report("input-space proxies done", advance=1)

    if trains:
        t0 = time.perf_counter()
        dyn = DynamicsRecorder(x, y) if "dynamics" in families else None
        feats = FeatureRecorder(x, feature_epochs) if hidden else None
        callbacks = [c for c in (dyn, feats, _EpochReport(report, runs, recipe.epochs)) if c is not None]
        seeds = [model_seeds(seed, 1.0, r) for r in range(runs)]
        everything = np.arange(len(dataset))
        with torch_threads(1):  # as the estimator's shards: identical results on any CPU, no thread fights
            group = train_group(x, y, [everything] * runs, recipe, seeds, num_classes=dataset.num_classes,
                                model_factory=model_factory, callbacks=callbacks)
        meta["train_accuracy"] = predict_correct(group, x, y).mean(axis=1).tolist()
        meta["seconds"]["training"] = round(time.perf_counter() - t0, 3)
        del group
        if dyn is not None:
            values.update(dyn.result().proxies())
        if feats is not None:
            meta["feature_epochs"] = list(feature_epochs)
            for epoch in feature_epochs:
                t0 = time.perf_counter()
                report(f"hidden-space proxies after epoch {epoch}: {', '.join(space_families)}")
                per_run = list(feats.features.pop(epoch))
                values.update(_space_proxies(f"hidden_e{epoch}", per_run, labels, space_families, meta=meta, **options))
                meta["seconds"][f"hidden_e{epoch}"] = round(time.perf_counter() - t0, 3)
                report(f"hidden-space proxies after epoch {epoch} done", advance=1)
