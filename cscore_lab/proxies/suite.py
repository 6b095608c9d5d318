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

import html
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from ..npzfile import load_npz, save_npz  # re-exported for analysis.py

__all__ = ["ProxyTable", "compute_proxies", "FAMILIES", "SPACES", "save_npz", "load_npz", "html_table",
           "run_proxies_command"]

FORMAT = "cscore_lab.proxytable/1"
#: Proxy families :func:`compute_proxies` can compute.
FAMILIES: tuple[str, ...] = ("dynamics", "kde", "knn", "lof")
#: Feature spaces for the kde, knn and lof families.
SPACES: tuple[str, ...] = ("input", "hidden")


# --------------------------------------------------------------------------- plain-data plumbing



def html_table(title: str, frame, notes: Iterable[str] = (), max_rows: int = 60) -> str:
    """A titled HTML table of a DataFrame (floats to 3 decimals) with notes below it."""
    body = frame.to_html(float_format=lambda v: f"{v:.3f}", max_rows=max_rows, border=0, na_rep="–")
    extra = "".join(f"<p style='margin:2px 0'>{html.escape(n)}</p>" for n in notes)
    return f"<div><b>{html.escape(title)}</b>{body}{extra}</div>"


# --------------------------------------------------------------------------- the table


@dataclass
class ProxyTable:
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

    def save(self, path: str | Path) -> Path:
        """Write to ``path`` (.npz with a JSON header, no pickle)."""
        matrix = np.stack(list(self.values.values())) if self.values else np.zeros((0, len(self)))
        info = {"names": self.names, "dataset": self.dataset, "fingerprint": self.fingerprint,
                "class_names": list(self.class_names), "meta": self.meta}
        return save_npz(path, FORMAT, {"labels": self.labels, "values": matrix}, info)

    @classmethod
    def load(cls, path: str | Path) -> "ProxyTable":
        arrays, info = load_npz(path, FORMAT)
        values = dict(zip(info["names"], arrays["values"]))
        return cls(values, arrays["labels"], info["dataset"], info["fingerprint"], tuple(info["class_names"]), info["meta"])

    def __repr__(self) -> str:
        return f"ProxyTable(dataset={self.dataset!r}, examples={len(self)}, proxies={self.names})"

    def _repr_html_(self) -> str:
        frame = self.to_frame().drop(columns="label").describe().T[["mean", "std", "min", "50%", "max"]]
        notes = [f"{len(self)} examples; every column: higher = more regular"]
        if self.meta.get("recipe"):
            notes.append(f"recipe {self.meta['recipe'].get('name')}, runs {self.meta.get('runs')}, "
                         f"feature epochs {self.meta.get('feature_epochs')}")
        return html_table(f"Proxies of {self.dataset or 'a data set'}", frame, notes)


# --------------------------------------------------------------------------- computing


def _reporter(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        return lambda msg: print(f"[proxies] {msg}", file=sys.stderr, flush=True)
    return lambda msg: None


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
    def __init__(self, report: Callable[[str], None], runs: int, total: int):
        self.report, self.runs, self.total = report, runs, total

    def on_epoch_end(self, epoch: int, group) -> None:
        self.report(f"trained {self.runs} full-data model(s): epoch {epoch}/{self.total}")


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
    report = _reporter(progress)
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

    from ..backends import torch_threads
    from ..trainer import model_seeds, predict_correct, prepare_inputs, resolve_device, train_group
    from .dynamics import DynamicsRecorder, FeatureRecorder

    x, y = prepare_inputs(dataset, recipe, resolve_device(device))
    if "input" in spaces and space_families:
        t0 = time.perf_counter()
        report(f"input-space proxies: {', '.join(space_families)}")
        flat = x.reshape(len(dataset), -1).cpu().numpy()
        values.update(_space_proxies("input", [flat], labels, space_families, meta=meta, **options))
        meta["seconds"]["input"] = round(time.perf_counter() - t0, 3)

    hidden = "hidden" in spaces and bool(space_families)
    if "dynamics" in families or hidden:
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
    return ProxyTable(values, labels, dataset.name, dataset.fingerprint, dataset.class_names, meta)


# --------------------------------------------------------------------------- command line


def run_proxies_command(args, out=None) -> int:
    """The body of ``cscore-lab proxies``: compute every proxy, and with ``--run`` correlate them.

    ``args`` carries the dataset arguments of :func:`cscore_lab.cli.add_dataset_arguments`
    and ``run``, ``cscores`` (a saved CScores file, used when there is no run), ``preset``,
    ``runs``, ``epochs``, ``families``, ``spaces``, ``bandwidth_scale``, ``n_boot``, ``seed``,
    ``device``, ``save``, ``no_progress``. With a run folder the recipe is the
    run's, the data must be the run's (same fingerprint), and if labels were flipped the
    detection table is printed too.
    """
    from ..analysis import correlate, detect_label_noise
    from ..cli import CLIError, _default_preset, load_dataset_from_args
    from ..cscores import CScores
    from ..holdout import scores_from_store
    from ..recipes import Recipe
    from ..store import RunStore

    out = out or sys.stdout
    ds, flipped = load_dataset_from_args(args)
    recipe: Any = args.preset or _default_preset(args.dataset, ds.input_shape)
    cs = None
    if args.run:
        ident = RunStore(args.run).read_manifest()["identity"]
        if ident.get("fingerprint") != ds.fingerprint:
            raise CLIError(f"run folder {args.run} was estimated on other data ({ident.get('dataset')!r}); pass the same "
                           f"--dataset, --data, --label-noise and --seed as the estimate")
        if not args.preset:
            recipe = Recipe.from_dict(ident["recipe"])
        cs = scores_from_store(args.run, labels=ds.labels)
        mask_file = Path(args.run) / "flipped.npy"
        if flipped is None and mask_file.is_file():
            flipped = np.load(mask_file, allow_pickle=False)
    elif args.cscores:
        cs = CScores.load(args.cscores)
        if len(cs) != len(ds):
            raise CLIError(f"{args.cscores} holds {len(cs)} C-scores but {ds.name} has {len(ds)} examples")
    t0 = time.perf_counter()
    table = compute_proxies(ds, recipe, runs=args.runs, epochs_for_features=args.epochs, families=args.families,
                            spaces=args.spaces, bandwidth_scale=args.bandwidth_scale, device=args.device, seed=args.seed,
                            progress=not args.no_progress)
    print(f"{len(table.names)} proxies of {ds.name} ({len(ds)} examples) in {time.perf_counter() - t0:.1f} s; "
          f"higher = more regular", file=out)
    if args.save:
        print(f"saved: {table.save(args.save)}", file=out)
    if cs is None:
        print(table.to_frame().drop(columns="label").describe().T[["mean", "std", "min", "max"]].to_string(), file=out)
    else:
        print(f"\nRank correlation with the C-scores of {args.run or args.cscores}:", file=out)
        print(correlate(table, cs, n_boot=args.n_boot, seed=args.seed).to_string(), file=out)
    if flipped is not None:
        print("\nFinding the flipped labels (low score = suspect):", file=out)
        print(detect_label_noise(table, flipped, cscores=cs).to_string(), file=out)
    return 0
