"""Notebook views on ipywidgets: the live run monitor and the dashboard (Distribution,
Agreement, Ratios, Memorization, Gallery, Uses). They render objects the library computed; they never train.

Figures come from :mod:`cscore_lab.viz.plots`, drawn on pyplot-free Agg figures and shown as
PNG ``Image`` widgets, so a background estimation thread can redraw them safely. The Memorization
tab and the influence part of the gallery's detail live in :mod:`cscore_lab.viz.memorization`.
"""

from __future__ import annotations

import html
import math
import threading
import time
from typing import TYPE_CHECKING, Any, Sequence

import ipywidgets as W
import numpy as np

from . import plots
from ._parts import MASK_STYLES, check_influence, check_memorization, pm
from ._parts import close_tree as _close_tree
from ._parts import message as _message
from ._parts import png as _png
from .memorization import MemorizationView, influence_detail
from .uses_view import UsesView

if TYPE_CHECKING:  # pragma: no cover
    from ..cscores import CScores
    from ..data import Dataset
    from ..holdout import Estimation
    from ..influence import Influence
    from ..memorization import Memorization

__all__ = ["RunMonitor", "Dashboard", "DistributionView", "AgreementView", "RatiosView", "MemorizationView", "Gallery",
           "UsesView"]

# --------------------------------------------------------------------------- run monitor


class RunMonitor(W.VBox):
    """Live view of an :class:`~cscore_lab.holdout.Estimation`: progress, models/s, ETA, the
    split-half reliability so far and a histogram of the current estimates.

    It listens to the estimation (called from the running thread after every shard). Text
    and the progress bar update each time; the histogram is redrawn at most every
    ``interval`` seconds, and always when the run ends.
    """

    def __init__(self, estimation: "Estimation", *, interval: float = 1.0, bins: int = 30):
        self.estimation = estimation
        self.interval = float(interval)
        self.bins = int(bins)
        self._last_draw = -math.inf
        self._drawn_runs = -1
        self._drew_end = False
        self._lock = threading.Lock()
        self.redraws = 0
        self.reliability = float("nan")
        est = estimation
        where = f" → <code>{html.escape(str(est.out))}</code>" if est.out else ""
        self.title = W.HTML(f"<b>C-scores of {html.escape(est.dataset.name)}</b>, recipe "
                            f"<code>{html.escape(est.recipe.name)}</code>, {len(est.plan.ratios)} ratios × "
                            f"{est.plan.runs} runs{where}")
        self.bar = W.FloatProgress(value=0, min=0, max=max(1, est.progress.total_runs), description="runs",
                                   layout=W.Layout(width="420px"))
        self.status = W.HTML()
        self.histogram = W.Image(format="png", layout=W.Layout(width="480px"))
        self.stop_button = W.Button(description="Stop", icon="stop", tooltip="stop after dropping the shard in flight",
                                    layout=W.Layout(width="90px"))
        self.stop_button.on_click(lambda _: self.estimation.stop(wait=False))
        super().__init__([self.title, W.HBox([self.bar, self.stop_button]), self.status, self.histogram])
        self.add_class("cscore-run-monitor")
        est.add_listener(self._on_update)
        self.update(force=True)

    def _on_update(self, est: "Estimation") -> None:
        try:
            self.update()
        except Exception as exc:  # a display problem must never stop the run
            self.status.value = f"<span style='color:#b00020'>monitor error: {html.escape(repr(exc))}</span>"

    def text(self) -> str:
        """The state in one line (also the plain-text form of this widget): the progress line and the reliability."""
        rel = "" if not math.isfinite(self.reliability) else f", reliability {self.reliability:.3f}"
        return self.estimation.progress.line() + rel

    def update(self, force: bool = False) -> None:
        """Refresh from the estimation's state; redraw the histogram when due (or ``force``)."""
        with self._lock:
            est = self.estimation
            p = est.progress
            ended = p.state in ("finished", "stopped", "failed")
            changed = p.done_runs != self._drawn_runs  # progress within shards moves the bar, not the estimate
            due = force or (ended and not self._drew_end) or (
                changed and time.monotonic() - self._last_draw >= self.interval)
            cs = est.current() if (due and p.done_runs) else None
            if cs is not None:
                self.reliability = float(cs.reliability)
            self.bar.max = max(1, p.total_runs)
            self.bar.value = min(p.position, p.total_runs)
            self.bar.bar_style = {"finished": "success", "failed": "danger", "stopped": "warning"}.get(p.state, "")
            self.stop_button.disabled = p.state not in ("running", "pending")
            err = f"<br><span style='color:#b00020'>{html.escape(p.error)}</span>" if p.error else ""
            self.status.value = f"<span class='cscore-status'>{html.escape(self.text())}</span>{err}"
            if due and cs is not None and p.done_runs > 0:
                self.histogram.value = _png(plots.score_histogram, cs, figsize=(5.5, 2.6), bins=self.bins,
                                            title=f"current estimate ({p.done_runs} of {p.total_runs} runs)")
                self._last_draw = time.monotonic()
                self._drawn_runs = p.done_runs
                self._drew_end = ended
                self.redraws += 1

    def _repr_mimebundle_(self, **kwargs: Any) -> dict:
        data = super()._repr_mimebundle_(**kwargs)
        if isinstance(data, tuple):  # (data, metadata)
            data[0]["text/plain"] = self.text()
        elif isinstance(data, dict):
            data["text/plain"] = self.text()
        return data


# --------------------------------------------------------------------------- distribution


class DistributionView(W.VBox):
    """Histogram of the C-scores overall and per class, with the share below 0.5."""

    def __init__(self, cscores: "CScores", *, class_names: Sequence[str] | None = None):
        info = "; ".join(f"{k} {v}" for k, v in cscores.describe())
        self.summary = W.HTML(f"<p>{html.escape(info)}</p>")
        self.overall = W.Image(value=_png(plots.score_histogram, cscores, figsize=(6, 3)), format="png",
                               layout=W.Layout(width="520px"))
        self.per_class = W.Image(value=_png(plots.class_distributions, cscores, class_names=class_names,
                                            figsize=(max(6.0, 0.45 * cscores.num_classes + 2), 3)),
                                 format="png", layout=W.Layout(width="640px"))
        super().__init__([self.summary, self.overall, self.per_class])


# --------------------------------------------------------------------------- agreement


class AgreementView(W.VBox):
    """The correlation table with intervals, a heat map, and a scatter of a chosen proxy against the C-score.

    ``correlations`` is a :class:`~cscore_lab.analysis.CorrelationTable`; ``proxies`` a ProxyTable,
    a dict of arrays or a DataFrame with one column per proxy.
    """

    def __init__(self, cscores: "CScores", *, proxies: Any = None, correlations: Any = None,
                 masks: dict[str, np.ndarray] | None = None):
        self.cscores = cscores
        self.masks = masks or {}
        self.correlations = correlations
        if proxies is None and correlations is None:
            super().__init__([_message("No proxies yet: compute them with %cscore proxies "
                                       "(or pass proxies= and correlations=) to compare them with the C-score.")])
            self.proxy_select = None
            return
        top: W.Widget | None = None
        heatmap: W.Widget | None = None
        best: str | None = None
        if correlations is not None:
            # the table scrolls inside its own box: its Kendall columns stay reachable beside the figure
            self.table = W.HTML(f"<div class='cscore-correlations'>{correlations._repr_html_()}</div>",
                                layout=W.Layout(max_height="460px", overflow="auto", flex="1 1 0%", min_width="0"))
            overall = correlations.overall()
            top_children: list[W.Widget] = [self.table]
            if len(overall) and np.isfinite(overall["spearman_low"]).any():
                top_children.append(W.Image(
                    value=_png(plots.correlation_intervals, correlations, figsize=(5, 0.3 * len(overall) + 1.2)),
                    format="png", layout=W.Layout(width="400px", flex="0 0 auto")))
            top = W.HBox(top_children, layout=W.Layout(width="100%"))
            if len(correlations.groups) > 1:
                heatmap = W.Image(value=_png(plots.correlation_heatmap, correlations,
                                             figsize=(0.5 * len(correlations.groups) + 3.5, 0.32 * len(overall) + 1.2)),
                                  format="png", layout=W.Layout(width="540px"))
            if len(overall) and np.isfinite(overall["spearman"]).any():
                best = str(overall["spearman"].idxmax())
        self.columns = plots.proxy_columns(proxies) if proxies is not None else {}
        self.columns = {k: v for k, v in self.columns.items() if v.shape == (len(cscores),)}
        scatter_box: W.Widget | None = None
        if self.columns:
            names = list(self.columns)
            self.proxy_select = W.Dropdown(options=names, value=best if best in names else names[0],
                                           description="proxy")
            self.scatter = W.Image(format="png", layout=W.Layout(width="420px"))
            self.proxy_select.observe(lambda _: self._draw_scatter(), names="value")
            self._draw_scatter()
            scatter_box = W.VBox([self.proxy_select, self.scatter])
        else:
            self.proxy_select = None
        bottom = [w for w in (scatter_box, heatmap) if w is not None]
        super().__init__([w for w in (top, W.HBox(bottom) if bottom else None) if w is not None])

    def _draw_scatter(self) -> None:
        name = self.proxy_select.value
        rho = None
        if self.correlations is not None and name in self.correlations.proxies:
            rho = self.correlations.value(name)
        kind = next((k for k in MASK_STYLES if k in self.masks), None)  # flipped labels first, else ood inputs
        self.scatter.value = _png(plots.proxy_scatter, self.columns[name], self.cscores, name=name, correlation=rho,
                                  mask=self.masks.get(kind), mask_label=MASK_STYLES[kind][2] if kind else "flipped",
                                  figsize=(5, 4))


# --------------------------------------------------------------------------- ratios


class RatiosView(W.VBox):
    """Per-ratio held-out accuracy curves for groups of examples binned by C-score."""

    def __init__(self, cscores: "CScores"):
        self.cscores = cscores
        if not cscores.ratios:
            super().__init__([_message("These scores carry no per-ratio results (published scores hold only the "
                                       "final C-score).")])
            self.groups = None
            return
        self.groups = W.IntSlider(value=5, min=2, max=10, description="groups")
        self.binning = W.ToggleButtons(options=[("score ranges", "score"), ("equal sizes", "quantile")],
                                       value="score")
        self.figure = W.Image(format="png", layout=W.Layout(width="560px"))
        for w in (self.groups, self.binning):
            w.observe(lambda _: self._draw(), names="value")
        self._draw()
        super().__init__([W.HBox([self.groups, self.binning]), self.figure])

    def _draw(self) -> None:
        profiles = self.cscores.profiles(self.groups.value, self.binning.value)
        self.figure.value = _png(plots.consistency_profiles, profiles, figsize=(6.5, 3.8))


# --------------------------------------------------------------------------- gallery


class Gallery(W.VBox):
    """Examples chosen by class and by score (lowest, highest or a range), captioned with label and
    score. Choosing one shows its per-ratio scores, its nearest neighbours with their labels and,
    when a noise mask is known, whether its label was flipped; with a memorization table, its
    memorization; with an influence table, the training examples it depends on most (targets
    ``"train"``) and the examples that depend most on it (the targets whose kept top-k lists hold it).

    Parameters
    ----------
    cscores : CScores
    dataset : Dataset
        Supplies the images and class names (its labels are the ones scored).
    masks : dict of str to bool array [N], optional
        Injected examples: ``"flipped"`` labels, ``"ood"`` inputs (marked on the tiles and in the detail).
    original_labels : int array [N], optional
        The labels before flipping.
    neighbors : NeighborIndex, optional
        Nearest neighbours and their label agreement (:class:`cscore_lab.proxies.neighbors.NeighborIndex`);
        default: one on the data set's inputs.
    count : int, default 24
        How many images to show.
    memorization : Memorization, optional
        Feldman & Zhang's memorization of the same examples (:func:`cscore_lab.runs.memorization_of`).
    influence : Influence, optional
        Top-k influence of these training examples (:func:`cscore_lab.runs.influence_of`): on the
        training examples themselves (``target == "train"``) or on an evaluation set.
    eval_dataset : Dataset, optional
        The evaluation set of an influence table with ``target == "eval"`` (for its images).
    influence_count : int, default 6
        How many influential (and influenced) examples the detail shows.
    """

    def __init__(self, cscores: "CScores", dataset: "Dataset", *, masks: dict[str, np.ndarray] | None = None,
                 original_labels: np.ndarray | None = None, neighbors: Any = None,
                 count: int = 24, ncols: int = 8, neighbor_count: int = 6,
                 memorization: "Memorization | None" = None, influence: "Influence | None" = None,
                 eval_dataset: "Dataset | None" = None, influence_count: int = 6):
        if len(dataset) != len(cscores):
            raise ValueError(f"the data set {dataset.name!r} has {len(dataset)} examples, the C-scores {len(cscores)}")
        if memorization is not None:
            check_memorization(memorization, len(dataset), f"the data set {dataset.name!r}")
        if influence is not None:
            check_influence(influence, len(dataset), eval_dataset)
        self.memorization = memorization
        self.influence = influence
        self.eval_dataset = eval_dataset
        self.influence_count = int(influence_count)
        self.cscores = cscores
        self.dataset = dataset
        self.masks = {k: np.asarray(v, dtype=bool) for k, v in (masks or {}).items()}
        self.original_labels = original_labels
        if neighbors is None:
            from ..proxies.neighbors import NeighborIndex

            neighbors = NeighborIndex(dataset.inputs.reshape(len(dataset), -1), cscores.labels)
        self.neighbors = neighbors
        self.neighbor_count = neighbor_count
        self._png_cache: dict[tuple[int, int], bytes] = {}
        self.shown: list[int] = []
        self.selected: int | None = None
        names = dataset.class_names
        self.class_select = W.Dropdown(options=[("all classes", -1)] + [(f"{k}: {n}" if n != str(k) else n, k)
                                                                         for k, n in enumerate(names)],
                                       value=-1, description="class")
        self.order = W.ToggleButtons(options=[("lowest", "lowest"), ("highest", "highest"), ("score range", "range")],
                                     value="lowest", style={"button_width": "100px"})
        self.score_range = W.FloatRangeSlider(value=(0.4, 0.6), min=0.0, max=1.0, step=0.01, description="range",
                                              disabled=True, continuous_update=False)
        self.count = W.IntSlider(value=count, min=4, max=96, step=4, description="show", continuous_update=False)
        self.info = W.HTML()
        self.grid = W.GridBox(layout=W.Layout(grid_template_columns="repeat(auto-fill, 96px)", grid_gap="4px",
                                              flex="1 1 auto", max_width=f"{ncols * 100}px"))
        self.grid.add_class("cscore-gallery-grid")
        self.detail = W.VBox(layout=W.Layout(flex="0 0 380px", min_width="380px"))
        self.detail.add_class("cscore-gallery-detail")
        for w in (self.class_select, self.order, self.score_range, self.count):
            w.observe(lambda _: self.refresh(), names="value")
        controls = W.VBox([W.HBox([self.class_select, self.order]), W.HBox([self.score_range, self.count]), self.info])
        super().__init__([controls, W.HBox([self.grid, self.detail])])
        self.add_class("cscore-gallery")
        self.refresh()

    # -------------------------------------------------------------- choosing
    def indices(self) -> np.ndarray:
        """The examples the current controls choose, in display order."""
        scores = self.cscores.scores
        labels = self.cscores.labels
        pool = np.flatnonzero(np.isfinite(scores))
        if self.class_select.value >= 0:
            pool = pool[labels[pool] == self.class_select.value]
        order = self.order.value
        if order == "range":
            lo, hi = self.score_range.value
            pool = pool[(scores[pool] >= lo) & (scores[pool] <= hi)]
            pool = pool[np.argsort(scores[pool], kind="stable")]
        elif order == "lowest":
            pool = pool[np.argsort(scores[pool], kind="stable")]
        else:
            pool = pool[np.argsort(-scores[pool], kind="stable")]
        return pool[: self.count.value]

    def _image(self, i: int, size: int) -> bytes:
        key = (i, size)
        if key not in self._png_cache:
            self._png_cache[key] = plots.image_png(self.dataset.images[i], size=size)
        return self._png_cache[key]

    def _label(self, i: int) -> str:
        return self.dataset.class_names[int(self.cscores.labels[i])]

    @property
    def noise_mask(self) -> np.ndarray | None:
        return self.masks.get("flipped")

    def _marks(self, i: int) -> list[str]:
        return [name for name in MASK_STYLES if name in self.masks and bool(self.masks[name][i])]

    def _tile(self, i: int) -> W.VBox:
        marks = self._marks(i)
        img = W.Image(value=self._image(i, 72), format="png", layout=W.Layout(width="72px", height="72px"))
        caption = W.Button(description=f"{self._label(i)} · {self.cscores.scores[i]:.2f}",
                           tooltip=f"#{i}: label {self._label(i)}, C-score {self.cscores.scores[i]:.3f}"
                                   + "".join(f" ({MASK_STYLES[m][2]})" for m in marks),
                           button_style=MASK_STYLES[marks[0]][0] if marks else "",
                           layout=W.Layout(width="92px", height="24px"))
        caption.on_click(lambda _, i=i: self.select(i))
        tile = W.VBox([img, caption], layout=W.Layout(align_items="center"))
        tile.add_class("cscore-tile")
        return tile

    def refresh(self) -> None:
        """Rebuild the grid from the controls."""
        self.score_range.disabled = self.order.value != "range"
        idx = self.indices()
        old = list(self.grid.children)
        self.grid.children = [self._tile(int(i)) for i in idx]
        for tile in old:
            _close_tree(tile)
        self.shown = [int(i) for i in idx]
        what = {"lowest": "lowest", "highest": "highest", "range": "in range"}[self.order.value]
        cls = "all classes" if self.class_select.value < 0 else f"class {self.dataset.class_names[self.class_select.value]}"
        self.info.value = f"<span class='cscore-gallery-info'>{len(idx)} {what} C-scores, {html.escape(cls)}</span>"
        if self.shown and (self.selected is None or self.selected not in self.shown):
            self.select(self.shown[0])
        elif not self.shown:
            self.detail.children = [_message("no examples match")]

    # -------------------------------------------------------------- detail
    def select(self, index: int) -> None:
        """Show one example's details: per-ratio scores, neighbours, flipped or not."""
        i = int(index)
        cs = self.cscores
        self.selected = i
        err = cs.stderr[i]
        lines = [f"<b>#{i}</b> label <b>{html.escape(self._label(i))}</b>, C-score <b>{cs.scores[i]:.3f}</b>"
                 + (f" ± {err:.3f}" if np.isfinite(err) else "")]
        if self.noise_mask is None:
            lines.append("flipped label: unknown (no noise mask)")
        elif self.noise_mask[i]:
            was = ""
            if self.original_labels is not None:
                was = f" (was {html.escape(self.dataset.class_names[int(self.original_labels[i])])})"
            lines.append(f"<span style='color:#b00020'><b>flipped label</b>{was}</span>")
        else:
            lines.append("label not flipped")
        if "ood" in self.masks:
            lines.append(f"<span style='color:#e65100'><b>{MASK_STYLES['ood'][2]}</b></span>" if self.masks["ood"][i]
                         else "input in distribution")
        if self.memorization is not None:
            m = self.memorization
            lines.append(f"memorization <b>{pm(m.memorization[i], m.stderr[i], '.3f')}</b> (in-subset accuracy "
                         f"{pm(m.in_accuracy[i])}, held-out {pm(m.heldout_accuracy[i])})")
        k = min(self.neighbor_count, len(cs) - 1)
        near = self.neighbors.query(i, k)
        lines.append(f"{self.neighbors.agreement(i, k):.0%} of its {k} nearest neighbours share its label")
        header = W.HTML("<div class='cscore-detail-text'>" + "<br>".join(lines) + "</div>")
        big = W.Image(value=self._image(i, 128), format="png", layout=W.Layout(width="112px", height="112px"))
        curve = W.Image(value=_png(plots.example_profile, cs, i, figsize=(3.6, 2.4)), format="png",
                        layout=W.Layout(width="250px"))
        tiles = []
        for j in near:
            same = cs.labels[j] == cs.labels[i]
            tiles.append(W.VBox([
                W.Image(value=self._image(int(j), 48), format="png", layout=W.Layout(width="48px", height="48px")),
                W.HTML(f"<span style='color:{'#1b5e20' if same else '#b00020'}' title='#{int(j)}'>"
                       f"{html.escape(self._label(int(j)))}</span>"),
            ], layout=W.Layout(align_items="center", width="56px")))
        children = [header, W.HBox([big, curve]), W.HTML("<i>nearest neighbours (label)</i>"), W.HBox(tiles)]
        if self.influence is not None:
            children += influence_detail(self.influence, i, self.dataset, eval_dataset=self.eval_dataset,
                                         count=self.influence_count)
        old = list(self.detail.children)
        self.detail.children = children
        for w in old:
            _close_tree(w)


# --------------------------------------------------------------------------- dashboard


class Dashboard(W.Tab):
    """Tabs Distribution, Agreement, Ratios, Memorization, Gallery and Uses for one set of C-scores.

    Parameters
    ----------
    cscores : CScores
    dataset : Dataset, optional
        Needed for the gallery (images, class names).
    proxies : ProxyTable or DataFrame, optional
        One column per proxy, one row per example.
    correlations : CorrelationTable or DataFrame, optional
        Correlations of the proxies with the C-score (:func:`cscore_lab.analysis.correlate`).
    masks : dict of str to bool array, optional
        Injected examples (``"flipped"`` labels, ``"ood"`` inputs), when known.
    original_labels : array, optional
        The labels before flipping, when known.
    neighbors : NeighborIndex, optional
    memorization : Memorization, optional
        Fills the Memorization tab and the gallery's detail (:func:`cscore_lab.runs.memorization_of`).
    influence : Influence, optional
        Adds the influential examples to the gallery's detail (:func:`cscore_lab.runs.influence_of`).
    eval_dataset : Dataset, optional
        The evaluation set of ``influence`` when its targets are one (images of those targets).
    experiments : dict of str to result, optional
        Experiments of :mod:`cscore_lab.uses` run on these scores, by name: the Uses tab (:class:`UsesView`).
    """

    TITLES = ("Distribution", "Agreement", "Ratios", "Memorization", "Gallery", "Uses")

    def __init__(self, cscores: "CScores", dataset: "Dataset | None" = None, *, proxies: Any = None,
                 correlations: Any = None, masks: dict[str, np.ndarray] | None = None,
                 original_labels: np.ndarray | None = None, neighbors: Any = None,
                 memorization: "Memorization | None" = None, influence: "Influence | None" = None,
                 eval_dataset: "Dataset | None" = None, experiments: dict[str, Any] | None = None):
        names = dataset.class_names if dataset is not None else None
        self.distribution = DistributionView(cscores, class_names=names)
        self.agreement = AgreementView(cscores, proxies=proxies, correlations=correlations, masks=masks)
        self.ratios = RatiosView(cscores)
        if dataset is not None:
            self.gallery: W.Widget = Gallery(cscores, dataset, masks=masks, original_labels=original_labels,
                                             neighbors=neighbors, memorization=memorization, influence=influence,
                                             eval_dataset=eval_dataset)
        else:
            self.gallery = _message("The gallery needs the data set's images: pass dataset=.")
        self.memorization = MemorizationView(memorization, cscores, dataset, masks=masks,
                                             on_select=self.open_in_gallery if dataset is not None else None)
        self.uses = UsesView(experiments)
        super().__init__([self.distribution, self.agreement, self.ratios, self.memorization, self.gallery, self.uses],
                         titles=list(self.TITLES))
        self.add_class("cscore-dashboard")

    def open_in_gallery(self, index: int) -> None:
        """Show example ``index`` in the gallery's detail and switch to the Gallery tab."""
        self.gallery.select(index)
        self.selected_index = self.TITLES.index("Gallery")
