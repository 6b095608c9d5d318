"""Every per-example proxy and hardness score of a data set in one call, and the table that holds them.

:func:`compute_proxies` looks up the chosen families in the registry (:mod:`.families`: each
says what it needs and how it turns that into columns), trains the recipe's model on the *full*
data once (``runs`` models with different seeds, trained together as one stacked group) with
every recorder the families asked for attached, and lets each family compute its columns from
the recorders, from the feature spaces, or from trainings of its own (cleanlab's K fold models).

Columns (every one oriented like the C-score, **higher = more regular**):

================================ ==========================================================
``cum_accuracy`` …               learning speed (:mod:`.dynamics`), averaged over runs
``kde_<space>_<kind>``           kernel density (:mod:`.kde`), ``kind`` in density /
                                 same_label / signed
``knn_<space>``                  k-NN label agreement (:mod:`.neighbors`)
``lof_<space>``                  negated local outlier factor (:mod:`.neighbors`)
``aum``, ``el2n_e<k>``, ...      the field's hardness scores (:mod:`.hardness`)
``cleanlab_*``                   confident learning on out-of-sample probabilities
                                 (:mod:`.label_issues`, optional extra)
================================ ==========================================================

where ``space`` is ``input`` (the inputs flattened and scaled as the recipe scales them)
or ``hidden_e<epoch>`` (penultimate-layer features after that epoch; proxies are
computed per run and averaged). The result is a :class:`ProxyTable`: plain data with
``to_frame()``, ``save()``/``load()`` (.npz holding arrays and a JSON header, no pickle) and
``_repr_html_``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from ..results import ResultTable
from . import _validation as _v
from .families import (
    DEFAULT_FAMILIES,
    FAMILIES,
    REGISTRY,
    SPACES,
    Context,
    EpochTicks,
    ProxySetup,
    build_recorders,
    merge_requests,
)

__all__ = ["ProxyTable", "compute_proxies", "FAMILIES", "DEFAULT_FAMILIES", "SPACES"]

FORMAT = "cscore_lab.proxytable/1"


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
    """Progress of a proxy computation: one ``tqdm.auto`` bar over all its steps (a widget in a notebook,
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


def _chosen_families(families: Any) -> tuple[tuple[str, ...], dict[str, str]]:
    """The families to compute and, for defaults that cannot run here, why they were left out."""
    skipped: dict[str, str] = {}
    if families is None:
        chosen = []
        for name in DEFAULT_FAMILIES:
            why = REGISTRY[name].available()
            if why is None:
                chosen.append(name)
            else:
                skipped[name] = f"left out of the default families: {why}"
        return tuple(chosen), skipped
    chosen = _v.choices(families, FAMILIES, "proxy families", default=DEFAULT_FAMILIES)
    if not chosen:
        raise ValueError(f"no proxy family chosen; choose from {list(FAMILIES)}")
    for name in chosen:
        why = REGISTRY[name].available()
        if why is not None:
            raise ImportError(f"the {name} family was asked for but {why}")
    return chosen, skipped


def _resolve(dataset, recipe, *, families, spaces, runs, epochs_for_features, bandwidth, bandwidth_scale, knn_k,
             lof_neighbors, dynamics_every_steps, early_epoch, prototype_epochs, prototype_metric, vog_epochs, folds,
             seed) -> tuple[ProxySetup, dict[str, str]]:
    """Every option checked once, before anything is trained."""
    from .dynamics import record_interval
    from .hardness import default_early_epoch
    from .kde import BANDWIDTH_RULES

    dataset, recipe = _v.dataset(dataset), _v.recipe(recipe)
    epochs, n = recipe.epochs, len(dataset)
    chosen, skipped = _chosen_families(families)
    spaces = _v.choices(spaces, SPACES, "feature spaces", default=SPACES)
    space_families = [f for f in chosen if f in _SPACE_FAMILIES]
    if space_families and not spaces:
        raise ValueError(f"the {', '.join(space_families)} famil{'ies need' if len(space_families) > 1 else 'y needs'} "
                         f"a feature space; choose spaces from {list(SPACES)}")
    feature_epochs = (tuple(sorted({1, min(2, epochs), epochs})) if epochs_for_features is None
                      else _v.epoch_list(epochs_for_features, "epochs_for_features", epochs))
    early = (default_early_epoch(epochs) if early_epoch is None
             else _v.integer(early_epoch, "early_epoch", minimum=1, maximum=epochs))
    prototype_epochs = _v.epoch_list((early, epochs) if prototype_epochs is None else prototype_epochs,
                                     "prototype_epochs", epochs)
    if prototype_metric not in ("cosine", "euclidean"):
        raise ValueError(f"prototype_metric must be 'cosine' or 'euclidean', got {prototype_metric!r}")
    if "vog" in chosen and epochs < 2:
        raise ValueError(f"VoG needs checkpoints from at least 2 epochs but the recipe trains {epochs}; "
                         f"leave 'vog' out of families")
    vog_epochs = _v.epoch_list(range(1, epochs + 1) if vog_epochs is None else vog_epochs, "vog_epochs", epochs)
    if "vog" in chosen and len(vog_epochs) < 2:
        raise ValueError(f"VoG needs at least 2 checkpoint epochs, got vog_epochs={list(vog_epochs)}")
    if "cleanlab" in chosen:
        from .label_issues import cross_validation_folds

        cross_validation_folds(dataset.labels, folds, seed=seed)  # checks folds against the data
    steps_per_epoch = -(-n // recipe.batch_size)
    setup = ProxySetup(
        recipe=recipe, labels=dataset.labels, num_classes=dataset.num_classes,
        runs=_v.integer(runs, "runs", minimum=1), seed=_v.integer(seed, "seed"), families=chosen, spaces=spaces,
        feature_epochs=feature_epochs, early_epoch=early, prototype_epochs=prototype_epochs,
        prototype_metric=prototype_metric, vog_epochs=vog_epochs,
        dynamics_every_steps=record_interval(dynamics_every_steps, steps_per_epoch), steps_per_epoch=steps_per_epoch,
        bandwidth=_v.number_or_choice(bandwidth, "bandwidth", BANDWIDTH_RULES),
        bandwidth_scale=_v.positive_number(bandwidth_scale, "bandwidth_scale"),
        knn_k=_v.neighbour_count(knn_k, n, "knn_k") if "knn" in chosen else _v.integer(knn_k, "knn_k", minimum=1),
        lof_neighbors=(_v.neighbour_count(lof_neighbors, n, "lof_neighbors") if "lof" in chosen
                       else _v.integer(lof_neighbors, "lof_neighbors", minimum=1)),
        folds=_v.integer(folds, "folds", minimum=2))
    return setup, skipped


_SPACE_FAMILIES = ("kde", "knn", "lof")


def compute_proxies(
    dataset,
    recipe="digits-mlp",
    *,
    families: Sequence[str] | None = None,
    spaces: Sequence[str] | None = None,
    runs: int = 1,
    epochs_for_features: Sequence[int] | int | None = None,
    bandwidth: float | str = "median",
    bandwidth_scale: float = 1.0,
    knn_k: int = 10,
    lof_neighbors: int = 20,
    dynamics_every_steps: int | str | None = "auto",
    early_epoch: int | None = None,
    prototype_epochs: Sequence[int] | int | None = None,
    prototype_metric: str = "cosine",
    vog_epochs: Sequence[int] | None = None,
    folds: int = 5,
    device: str = "auto",
    seed: int = 0,
    model_factory: Callable[[], Any] | None = None,
    progress: bool | Callable[[str], None] = False,
) -> ProxyTable:
    """Compute the C-score's proxies and the field's hardness scores of ``dataset``, from one shared training.

    Parameters
    ----------
    dataset : Dataset
    recipe : Recipe or preset name, default "digits-mlp"
        How the full-data model(s) are trained and how inputs are scaled.
    families : sequence of str, optional
        Names from :data:`FAMILIES` (see :mod:`.families` for what each needs and adds). Default:
        :data:`DEFAULT_FAMILIES`, every family but ``vog`` (its memory is ``8 * M * N * D`` bytes,
        376 MB per model on MNIST, and it was measured uninformative), with ``cleanlab`` only
        where cleanlab is installed (``meta["skipped"]`` says when it was left out). A family
        named here that cannot run (cleanlab missing) raises an ImportError naming the extra.
    spaces : subset of {"input", "hidden"}, default both
        Where the kde, knn and lof families are computed.
    runs : int, default 1
        Full-data models (different seeds, trained together); every score that reads them is
        averaged over them (EL2N and GraNd are expectations over initialisations: give several).
    epochs_for_features : int or sequence of int, optional
        Epochs after which hidden representations are taken for kde/knn/lof (default: 1, 2 and
        the last).
    bandwidth : float or {"median", "scott"}, default "median"
        Kernel bandwidth (per space, and per run in hidden spaces); the values used are in
        ``meta["bandwidths"]``.
    bandwidth_scale : float, default 1.0
        Multiplies the bandwidth (rule or number): the paper tunes it, and the median rule gives
        a wide kernel.
    knn_k : int, default 10
        Neighbours of the k-NN label agreement.
    lof_neighbors : int, default 20
        Neighbourhood of the local outlier factor.
    dynamics_every_steps : int, "auto" or None, default "auto"
        Record the learning-speed trajectory every this many optimizer steps; None: after every
        epoch; "auto": about :data:`~cscore_lab.proxies.dynamics.RECORDS_PER_EPOCH` records per
        epoch (the measured effect is in :mod:`.dynamics`). AUM, data maps and Data-IQ are always
        recorded after every epoch, as their papers define them.
    early_epoch : int, optional
        Epoch of EL2N and GraNd (default: 10% of training, at least 1; see
        :func:`~.hardness.default_early_epoch`).
    prototype_epochs : int or sequence of int, optional
        Epochs whose penultimate features give ``prototypicality_e<k>`` (default: the early epoch
        and the last).
    prototype_metric : {"cosine", "euclidean"}, default "cosine"
    vog_epochs : sequence of int, optional
        VoG's checkpoints (default: every epoch; at least two).
    folds : int, default 5
        Cross-validation folds of cleanlab's out-of-sample probabilities.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    seed : int, default 0
        Seeds the full-data models (``model_seeds(seed, 1.0, run)``), the fold models and the
        bandwidth sample.
    model_factory : callable returning a torch.nn.Module, optional
        Train this architecture instead of the recipe's.
    progress : bool or callable(str)
        True shows one ``tqdm.auto`` bar over every step; a callable receives one message per step.

    Returns
    -------
    ProxyTable
        One column per score (higher = more regular), families in :data:`FAMILIES` order.
        ``meta`` holds the options, the bandwidths, the training accuracy, the seconds per
        family and the families ``skipped``.

    Notes
    -----
    The full-data models train with one torch thread, like the estimator's shards: the same
    seed gives the same scores on any CPU, and on a shared machine two threads of small products
    were up to 6x slower than one. Use a GPU (``device``) for large data.

    See Also
    --------
    cscore_lab.analysis.correlate : how well each score agrees with the C-scores.
    cscore_lab.analysis.detect_injected : how well each score finds flipped labels.
    """
    from ..trainer import prepare_inputs, resolve_device

    setup, skipped = _resolve(dataset, recipe, families=families, spaces=spaces, runs=runs,
                              epochs_for_features=epochs_for_features, bandwidth=bandwidth,
                              bandwidth_scale=bandwidth_scale, knn_k=knn_k, lof_neighbors=lof_neighbors,
                              dynamics_every_steps=dynamics_every_steps, early_epoch=early_epoch,
                              prototype_epochs=prototype_epochs, prototype_metric=prototype_metric,
                              vog_epochs=vog_epochs, folds=folds, seed=seed)
    x, y = prepare_inputs(dataset, setup.recipe, resolve_device(device))
    chosen = [REGISTRY[name] for name in setup.families]
    requests = merge_requests([f.requires(setup) for f in chosen])
    meta: dict[str, Any] = {"recipe": setup.recipe.to_dict(), "runs": setup.runs, "seed": setup.seed,
                            "families": list(setup.families), "spaces": list(setup.spaces),
                            "bandwidth_scale": setup.bandwidth_scale, "knn_k": setup.knn_k,
                            "lof_neighbors": setup.lof_neighbors, "options": setup.options(), "skipped": skipped,
                            "seconds": {}}
    if "hidden" in setup.spaces and any(f in _SPACE_FAMILIES for f in setup.families):
        meta["feature_epochs"] = list(setup.feature_epochs)
    total = (setup.recipe.epochs if requests else 0) + sum(f.steps(setup) if f.steps else 1 for f in chosen)
    report = _Reporter(progress, total, f"proxies {dataset.name}")
    for why in skipped.values():
        report(why)
    values: dict[str, np.ndarray] = {}
    try:
        recorders = _shared_training(setup, x, y, requests, report, meta, model_factory) if requests else {}
        ctx = Context(setup, recorders, x.reshape(len(dataset), -1).cpu().numpy(), x, y, meta, report, model_factory)
        for family in chosen:
            t0 = time.perf_counter()
            if family.steps is None:
                report(f"{family.name}: {family.columns}")
            values.update(family.compute(ctx))
            if family.steps is None:
                report(f"{family.name} done", advance=1)
            meta["seconds"][family.name] = round(time.perf_counter() - t0, 3)
    finally:
        report.close()
    return ProxyTable(values, setup.labels, dataset.name, dataset.fingerprint, dataset.class_names, meta)


def _shared_training(setup: ProxySetup, x, y, requests, report: _Reporter, meta: dict[str, Any],
                     model_factory) -> dict[str, Any]:
    """The one full-data training (``runs`` models, one stacked group) with every requested recorder attached."""
    from ..trainer import model_seeds, predict_correct, torch_threads, train_group
    t0 = time.perf_counter()
    recorders = build_recorders(setup, x, y, requests)
    ticks = EpochTicks(report, f"{setup.runs} full-data model(s)", setup.recipe.epochs)
    seeds = [model_seeds(setup.seed, 1.0, r) for r in range(setup.runs)]
    everything = np.arange(len(setup.labels))
    with torch_threads(1):  # as the estimator's shards: identical results on any CPU, no thread fights
        group = train_group(x, y, [everything] * setup.runs, setup.recipe, seeds, num_classes=setup.num_classes,
                            model_factory=model_factory, callbacks=[*recorders.values(), ticks])
        meta["train_accuracy"] = predict_correct(group, x, y).mean(axis=1).tolist()
    meta["recorders"] = sorted(recorders)
    meta["seconds"]["training"] = round(time.perf_counter() - t0, 3)
    return recorders
