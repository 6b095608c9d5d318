"""The proxy registry: every family of per-example scores the suite computes, by name.

Each :class:`Family` says what it needs and how it turns that into columns:

* **features of a space**: ``input`` (the inputs flattened and scaled as the recipe scales them,
  no training) or ``hidden_e<k>`` (penultimate features after epoch k of the shared training);
* **recorders** on the one shared full-data training (``requires``: recorder kind -> request;
  the requests of every chosen family are merged, so each recorder is built once and several
  families read it);
* **trainings of its own** (cleanlab's K fold models), run by its ``compute``.

================ ========================================= ============================================ =======
family           needs                                     columns (higher = more regular)              default
================ ========================================= ============================================ =======
dynamics         DynamicsRecorder (every few steps)        cum_accuracy, cum_label_prob, cum_max_prob,  yes
                                                           cum_neg_entropy, neg_forgetting
kde              features of each space                    kde_<space>_{density,same_label,signed}      yes
knn              features of each space                    knn_<space>                                  yes
lof              features of each space                    lof_<space>                                  yes
aum              TrajectoryRecorder (per epoch)            aum                                          yes
el2n             NormRecorder (early epoch)                el2n_e<k>                                    yes
grand            NormRecorder with gradients (early epoch) grand_e<k>                                   yes
vog              InputGradientRecorder (every epoch)       vog                                          no
datamap          TrajectoryRecorder                        datamap_confidence, datamap_variability      yes
dataiq           TrajectoryRecorder                        dataiq_aleatoric                             yes
loss             TrajectoryRecorder                        final_loss, final_margin                     yes
prototypicality  FeatureRecorder (early and last epoch)    prototypicality_e<k>                         yes
cleanlab         K fold trainings of its own; cleanlab     cleanlab_self_confidence,                    when
                                                           cleanlab_label_issue                         installed
================ ========================================= ============================================ =======

Definitions and sources: :mod:`.dynamics`, :mod:`.kde`, :mod:`.neighbors`, :mod:`.hardness`,
:mod:`.label_issues`. VoG is not a default: its running moments take ``8 * M * N * D`` bytes
(376 MB per model on MNIST, 60,000 x 784 x 8; 410 MB on CIFAR-10, whose colour channels are
averaged into 1,024 dims), it costs a backward pass over all the data at every epoch, and it was
measured uninformative where we could check it (anti-correlated with the published MNIST
C-scores, Spearman -0.17; AUROC 0.33 for flipped digits labels; ``benchmarks/RESULTS.md``). Ask
for it by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

__all__ = ["Family", "ProxySetup", "Context", "EpochTicks", "REGISTRY", "FAMILIES", "DEFAULT_FAMILIES", "SPACES",
           "merge_requests", "build_recorders"]

#: Feature spaces of the kde, knn and lof families.
SPACES: tuple[str, ...] = ("input", "hidden")


@dataclass(frozen=True)
class ProxySetup:
    """The resolved options of one :func:`~cscore_lab.proxies.suite.compute_proxies` call: what families read."""

    recipe: Any
    labels: np.ndarray
    num_classes: int
    runs: int
    seed: int
    families: tuple[str, ...]
    spaces: tuple[str, ...]
    feature_epochs: tuple[int, ...]
    early_epoch: int
    prototype_epochs: tuple[int, ...]
    prototype_metric: str
    vog_epochs: tuple[int, ...]
    dynamics_every_steps: int | None
    steps_per_epoch: int
    bandwidth: float | str
    bandwidth_scale: float
    knn_k: int
    lof_neighbors: int
    folds: int

    def options(self) -> dict[str, Any]:
        """The options as JSON-serialisable values (for a table's ``meta``)."""
        skip = {"recipe", "labels"}
        out = {}
        for name in self.__dataclass_fields__:
            if name not in skip:
                value = getattr(self, name)
                out[name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclass
class Context:
    """What a family's ``compute`` reads: the setup, the shared training's recorders, the feature spaces.

    Attributes
    ----------
    setup : ProxySetup
    recorders : dict of str to recorder
        The shared training's recorders by kind (empty when nothing was trained).
    input_features : numpy.ndarray [N, D]
        The inputs as the models see them, flattened.
    x, y : torch.Tensor
        The same on the training device (for families that train models of their own).
    meta : dict
        The table's ``meta``, which families annotate (bandwidths used, record counts, ...).
    report : callable(str, advance=0)
        The progress bar of the whole computation.
    model_factory : callable or None
    """

    setup: ProxySetup
    recorders: dict[str, Any]
    input_features: np.ndarray
    x: Any
    y: Any
    meta: dict[str, Any]
    report: Callable[..., None]
    model_factory: Callable[[], Any] | None = None
    _neighbours: dict[str, list[dict[str, np.ndarray]]] = field(default_factory=dict)

    def recorder(self, kind: str) -> Any:
        return self.recorders[kind]

    def spaces(self) -> dict[str, list[np.ndarray]]:
        """Feature space name -> one ``[N, d]`` array per full-data run (the input space has one)."""
        out: dict[str, list[np.ndarray]] = {}
        if "input" in self.setup.spaces:
            out["input"] = [self.input_features]
        if "hidden" in self.setup.spaces:
            feats = self.recorder("features")
            for epoch in self.setup.feature_epochs:
                out[f"hidden_e{epoch}"] = list(feats.get(epoch))
        return out

    def neighbour_scores(self, space: str, features: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """k-NN agreement and negated LOF of ``space``, per run, from one neighbour search (shared by knn and lof)."""
        if space not in self._neighbours:
            from .neighbors import neighbor_proxies

            s = self.setup
            self._neighbours[space] = [
                neighbor_proxies(f, s.labels, k=s.knn_k if "knn" in s.families else None,
                                 n_neighbors=s.lof_neighbors if "lof" in s.families else None) for f in features]
        return self._neighbours[space]


@dataclass(frozen=True)
class Family:
    """One entry of the registry.

    Attributes
    ----------
    name : str
    columns : str
        The columns it adds, as a reader sees them (``"knn_<space>"``).
    compute : callable(Context) -> dict of str to float64 [N]
    requires : callable(ProxySetup) -> dict of str to dict
        Recorder kind -> request on the shared training (see :data:`RECORDERS`); empty for none.
    steps : callable(ProxySetup) -> int, optional
        Progress-bar steps ``compute`` reports itself; None: the suite reports one step around it.
    default : bool
        In the default families (subject to ``available``).
    available : callable() -> str or None
        None when it can run here, else why not (a missing optional extra, with its pip line).
    """

    name: str
    columns: str
    compute: Callable[[Context], dict[str, np.ndarray]]
    requires: Callable[[ProxySetup], dict[str, dict[str, Any]]] = lambda s: {}
    steps: Callable[[ProxySetup], int] | None = None
    default: bool = True
    available: Callable[[], str | None] = lambda: None


# --------------------------------------------------------------------------- recorders of the shared training


def _recorder_builders() -> dict[str, Callable[..., Any]]:
    from .recorders import DynamicsRecorder, FeatureRecorder, InputGradientRecorder, NormRecorder, TrajectoryRecorder

    return {
        "dynamics": lambda s, x, y, r: DynamicsRecorder(x, y, every_steps=s.dynamics_every_steps,
                                                        steps_per_epoch=s.steps_per_epoch, epochs=s.recipe.epochs),
        "trajectory": lambda s, x, y, r: TrajectoryRecorder(x, y),
        "features": lambda s, x, y, r: FeatureRecorder(x, sorted(r["epochs"])),
        "norms": lambda s, x, y, r: NormRecorder(x, y, sorted(r["epochs"]), gradients=r.get("gradients", False)),
        "input_gradients": lambda s, x, y, r: InputGradientRecorder(x, y, s.vog_epochs),
    }


def merge_requests(requests: list[Mapping[str, Mapping[str, Any]]]) -> dict[str, dict[str, Any]]:
    """One request per recorder kind: sets are united, flags or-ed."""
    out: dict[str, dict[str, Any]] = {}
    for request in requests:
        for kind, wants in request.items():
            have = out.setdefault(kind, {})
            for key, value in wants.items():
                if isinstance(value, (set, frozenset)):
                    have[key] = set(have.get(key, set())) | set(value)
                else:
                    have[key] = bool(have.get(key, False)) or bool(value)
    return out


def build_recorders(setup: ProxySetup, x, y, requests: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The recorders the merged ``requests`` ask for, keyed by kind."""
    builders = _recorder_builders()
    return {kind: builders[kind](setup, x, y, request) for kind, request in requests.items()}


# --------------------------------------------------------------------------- the families


def _dynamics(ctx: Context) -> dict[str, np.ndarray]:
    rec = ctx.recorder("dynamics")
    ctx.meta["dynamics_records"] = {"every_steps": rec.every_steps, "records": rec.num_records}
    return rec.result().proxies()


def _space_requires(s: ProxySetup) -> dict[str, dict[str, Any]]:
    return {"features": {"epochs": set(s.feature_epochs)}} if "hidden" in s.spaces else {}


def _space_steps(s: ProxySetup) -> int:
    return int("input" in s.spaces) + (len(s.feature_epochs) if "hidden" in s.spaces else 0)


def _bandwidth(features: np.ndarray, s: ProxySetup) -> float | str:
    from .kde import select_bandwidth

    if s.bandwidth_scale == 1:
        return s.bandwidth
    return s.bandwidth_scale * select_bandwidth(features, s.bandwidth, seed=s.seed)


def _kde(ctx: Context) -> dict[str, np.ndarray]:
    from .kde import kde_scores

    s, out = ctx.setup, {}
    rule = s.bandwidth if isinstance(s.bandwidth, str) else "fixed"
    for space, feats in ctx.spaces().items():
        ctx.report(f"kernel densities in {space}")
        results = [kde_scores(f, s.labels, bandwidth=_bandwidth(f, s), seed=s.seed) for f in feats]
        for kind in ("density", "same_label", "signed"):
            out[f"kde_{space}_{kind}"] = np.mean([getattr(r, kind) for r in results], axis=0)
        ctx.meta.setdefault("bandwidths", {})[f"kde_{space}"] = {
            "rule": rule if s.bandwidth_scale == 1 else f"{s.bandwidth_scale:g} x {rule}",
            "bandwidth": [r.bandwidth for r in results]}
        ctx.report(f"kernel densities in {space} done", advance=1)
    return out


def _neighbour_family(name: str, what: str) -> Callable[[Context], dict[str, np.ndarray]]:
    def compute(ctx: Context) -> dict[str, np.ndarray]:
        out = {}
        for space, feats in ctx.spaces().items():
            ctx.report(f"{what} in {space}")
            out[f"{name}_{space}"] = np.mean([r[name] for r in ctx.neighbour_scores(space, feats)], axis=0)
            ctx.report(f"{what} in {space} done", advance=1)
        return out

    return compute


def _trajectory(ctx: Context):
    return ctx.recorder("trajectory").result()


def _aum(ctx: Context) -> dict[str, np.ndarray]:
    from .hardness import aum

    return {"aum": aum(_trajectory(ctx).margin)}


def _datamap(ctx: Context) -> dict[str, np.ndarray]:
    from .hardness import datamap_confidence, datamap_variability

    p = _trajectory(ctx).label_prob
    return {"datamap_confidence": datamap_confidence(p), "datamap_variability": datamap_variability(p)}


def _dataiq(ctx: Context) -> dict[str, np.ndarray]:
    from .hardness import dataiq_aleatoric

    return {"dataiq_aleatoric": dataiq_aleatoric(_trajectory(ctx).label_prob)}


def _loss(ctx: Context) -> dict[str, np.ndarray]:
    from .hardness import final_loss, final_margin

    t = _trajectory(ctx)
    return {"final_loss": final_loss(t.label_logprob[-1]), "final_margin": final_margin(t.margin[-1])}


def _el2n(ctx: Context) -> dict[str, np.ndarray]:
    from .hardness import el2n

    k = ctx.setup.early_epoch
    return {f"el2n_e{k}": el2n(ctx.recorder("norms").get("error", k))}


def _grand(ctx: Context) -> dict[str, np.ndarray]:
    from .hardness import grand

    k = ctx.setup.early_epoch
    return {f"grand_e{k}": grand(ctx.recorder("norms").get("gradient", k))}


def _vog(ctx: Context) -> dict[str, np.ndarray]:
    from .hardness import vog

    return {"vog": vog(ctx.recorder("input_gradients").raw(), ctx.setup.labels)}


def _prototypicality(ctx: Context) -> dict[str, np.ndarray]:
    from .hardness import prototypicality

    s, feats = ctx.setup, ctx.recorder("features")
    return {f"prototypicality_e{e}": prototypicality(feats.get(e), s.labels, metric=s.prototype_metric)
            for e in s.prototype_epochs}


class EpochTicks:
    """A ``train_group`` callback that advances the progress bar once per epoch."""

    def __init__(self, report: Callable[..., None], what: str, total: int):
        self.report, self.what, self.total = report, what, total

    def on_epoch_end(self, epoch: int, group) -> None:
        self.report(f"{self.what}: epoch {epoch}/{self.total}", advance=1)


def _cleanlab(ctx: Context) -> dict[str, np.ndarray]:
    from .label_issues import cleanlab_scores, fold_probabilities, require_cleanlab

    require_cleanlab()
    s = ctx.setup
    ticks = EpochTicks(ctx.report, f"{s.folds} cross-validation models for cleanlab", s.recipe.epochs)
    probs = fold_probabilities(ctx.x, ctx.y, s.labels, s.recipe, folds=s.folds, seed=s.seed,
                               num_classes=s.num_classes, model_factory=ctx.model_factory, callbacks=[ticks])
    ctx.report("cleanlab on the out-of-sample probabilities")
    out = cleanlab_scores(s.labels, probs)
    ctx.report("cleanlab done", advance=1)
    return out


def _cleanlab_missing() -> str | None:
    from .label_issues import INSTALL_HINT, cleanlab_available

    return None if cleanlab_available() else f"cleanlab is not installed ({INSTALL_HINT})"


_TRAJECTORY = {"trajectory": {}}

#: The registry, in column order.
REGISTRY: dict[str, Family] = {f.name: f for f in (
    Family("dynamics", "cum_accuracy, cum_label_prob, cum_max_prob, cum_neg_entropy, neg_forgetting", _dynamics,
           requires=lambda s: {"dynamics": {}}),
    Family("kde", "kde_<space>_density, kde_<space>_same_label, kde_<space>_signed", _kde,
           requires=_space_requires, steps=_space_steps),
    Family("knn", "knn_<space>", _neighbour_family("knn", "k-NN label agreement"), requires=_space_requires,
           steps=_space_steps),
    Family("lof", "lof_<space>", _neighbour_family("lof", "local outlier factor"), requires=_space_requires,
           steps=_space_steps),
    Family("aum", "aum", _aum, requires=lambda s: _TRAJECTORY),
    Family("el2n", "el2n_e<k>", _el2n, requires=lambda s: {"norms": {"epochs": {s.early_epoch}}}),
    Family("grand", "grand_e<k>", _grand, requires=lambda s: {"norms": {"epochs": {s.early_epoch}, "gradients": True}}),
    Family("vog", "vog", _vog, requires=lambda s: {"input_gradients": {}}, default=False),
    Family("datamap", "datamap_confidence, datamap_variability", _datamap, requires=lambda s: _TRAJECTORY),
    Family("dataiq", "dataiq_aleatoric", _dataiq, requires=lambda s: _TRAJECTORY),
    Family("loss", "final_loss, final_margin", _loss, requires=lambda s: _TRAJECTORY),
    Family("prototypicality", "prototypicality_e<k>", _prototypicality,
           requires=lambda s: {"features": {"epochs": set(s.prototype_epochs)}}),
    Family("cleanlab", "cleanlab_self_confidence, cleanlab_label_issue", _cleanlab,
           steps=lambda s: s.recipe.epochs + 1, available=_cleanlab_missing),
)}

#: Every family's name, in column order (the front ends' ``--families`` choices).
FAMILIES: tuple[str, ...] = tuple(REGISTRY)
#: The families computed when none are named (cleanlab only where it is installed).
DEFAULT_FAMILIES: tuple[str, ...] = tuple(name for name, f in REGISTRY.items() if f.default)
