"""Views of memorization and influence (Feldman & Zhang 2020): the dashboard's Memorization tab and the
influence part of the gallery's detail. They draw the tables :mod:`cscore_lab.memorization` and
:mod:`cscore_lab.influence` computed; they compute no statistic and never train."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any, Callable

import ipywidgets as W
import numpy as np

from . import plots
from ._parts import MASK_STYLES, check_memorization, close_tree, message, pm, png

if TYPE_CHECKING:  # pragma: no cover
    from ..cscores import CScores
    from ..data import Dataset
    from ..influence import Influence
    from ..memorization import Memorization

__all__ = ["MemorizationView", "influence_detail"]


class MemorizationView(W.VBox):
    """Memorization (Feldman & Zhang 2020) next to the C-score: the summary, the scatter of one
    against the other (injected examples marked) and the most memorized examples.

    Parameters
    ----------
    memorization : Memorization or None
        From :func:`cscore_lab.runs.memorization_of` (``%cscore memorization``); without it the
        view says how to get one.
    cscores : CScores
    dataset : Dataset, optional
        Images and class names of the most memorized examples (a table without it).
    masks : dict of str to bool array [N], optional
        ``"flipped"`` labels and ``"ood"`` inputs, marked on the scatter and the tiles.
    count : int, default 16
        How many of the most memorized examples to show (a slider changes it).
    on_select : callable, optional
        Called with an example's index when its caption is clicked (the dashboard opens it in the gallery).
    """

    def __init__(self, memorization: "Memorization | None", cscores: "CScores", dataset: "Dataset | None" = None, *,
                 masks: dict[str, np.ndarray] | None = None, count: int = 16,
                 on_select: Callable[[int], None] | None = None):
        self.memorization = memorization
        self.cscores = cscores
        self.dataset = dataset
        self.masks = {k: np.asarray(v, dtype=bool) for k, v in (masks or {}).items()}
        self.on_select = on_select
        self.shown: list[int] = []
        if memorization is None:
            self.count = None
            super().__init__([message(
                "No memorization for these scores yet: %cscore memorization computes it from the estimate's models "
                "(or pass memorization= from cscore_lab.runs.memorization_of). Published scores, and run folders "
                "from before shards recorded correctness on training examples, carry none.")])
            return
        check_memorization(memorization, len(cscores), "the C-scores")
        if dataset is not None and len(dataset) != len(cscores):
            raise ValueError(f"the data set {dataset.name!r} has {len(dataset)} examples, the C-scores {len(cscores)}")
        s = memorization.summary()
        self.summary = W.HTML(
            f"<p class='cscore-memorization-summary'>{s['examples']} examples, {s['models']} models over "
            f"{s['ratios']} ratios: mean memorization <b>{s['mean_memorization']:.3f}</b>, <b>{s['above_0.5']}</b> "
            f"examples above 0.5; mean in-subset accuracy {s['mean_in_accuracy']:.3f}, held-out "
            f"{s['mean_heldout_accuracy']:.3f}; split-half reliability {s['reliability']:.3f}. "
            f"<i>Memorization = accuracy of the models that trained on an example − accuracy of those that "
            f"did not (Feldman &amp; Zhang 2020): high for examples only learnt by heart.</i></p>")
        self.scatter = W.Image(value=png(plots.memorization_scatter, memorization, cscores, masks=self.masks,
                                          figsize=(5.2, 4.2)), format="png", layout=W.Layout(width="460px"))
        self.count = W.IntSlider(value=count, min=4, max=64, step=4, description="show", continuous_update=False)
        self.examples = W.GridBox(layout=W.Layout(grid_template_columns="repeat(auto-fill, 100px)", grid_gap="4px",
                                                  width="100%"))
        self.examples.add_class("cscore-memorized-grid")
        self.count.observe(lambda _: self.refresh(), names="value")
        title = W.HTML("<b>The most memorized examples</b> (caption: label · memorization; below: ± s.e., "
                       "C-score)" + (" — click one to open it in the gallery" if on_select is not None else ""))
        super().__init__([self.summary, W.HBox([self.scatter, W.VBox([title, self.count, self.examples],
                                                                     layout=W.Layout(flex="1 1 auto"))])])
        self.add_class("cscore-memorization")
        self.refresh()

    def _tile(self, i: int) -> W.Widget:
        mem, cs = self.memorization, self.cscores
        marks = [name for name in MASK_STYLES if name in self.masks and bool(self.masks[name][i])]
        label = self.dataset.class_names[int(cs.labels[i])]
        caption = W.Button(description=f"{label} · {mem.memorization[i]:.2f}",
                           tooltip=f"#{i}: label {label}, memorization {pm(mem.memorization[i], mem.stderr[i], '.3f')}, "
                                   f"C-score {cs.scores[i]:.3f}" + "".join(f" ({MASK_STYLES[m][2]})" for m in marks),
                           button_style=MASK_STYLES[marks[0]][0] if marks else "",
                           layout=W.Layout(width="96px", height="24px"))
        if self.on_select is not None:
            caption.on_click(lambda _, i=i: self.on_select(i))
        err = f"± {mem.stderr[i]:.2f}" if np.isfinite(mem.stderr[i]) else ""
        tile = W.VBox([W.Image(value=plots.image_png(self.dataset.images[i], size=72), format="png",
                               layout=W.Layout(width="72px", height="72px")),
                       caption,
                       W.HTML(f"<span class='cscore-tile-note' style='font-size:11px;color:#555'>{err} · C "
                              f"{cs.scores[i]:.2f}</span>")],
                      layout=W.Layout(align_items="center"))
        tile.add_class("cscore-tile")
        return tile

    def refresh(self) -> None:
        """Show the ``count`` most memorized examples."""
        idx = [int(i) for i in self.memorization.most_memorized(self.count.value)]
        old = list(self.examples.children)
        if self.dataset is not None:
            self.examples.children = [self._tile(i) for i in idx]
        else:
            frame = self.memorization.to_frame().iloc[idx][["label", "memorization", "stderr", "in_accuracy",
                                                              "heldout_accuracy"]]
            frame["cscore"] = self.cscores.scores[idx]
            self.examples.children = [W.HTML(frame.to_html(float_format=lambda v: f"{v:.3f}", border=0))]
        for w in old:
            close_tree(w)
        self.shown = idx


# --------------------------------------------------------------------------- influence in the gallery


def _influence_tile(images: Any, j: int, label: str, same: bool, value: float, err: float) -> W.VBox:
    picture = (W.Image(value=plots.image_png(images[j], size=48), format="png",
                       layout=W.Layout(width="48px", height="48px"))
               if images is not None else W.HTML(f"<span style='font-size:11px'>#{j}</span>"))
    tile = W.VBox([picture, W.HTML(
        f"<span style='color:{'#1b5e20' if same else '#b00020'};font-size:11px' title='#{j}'>{html.escape(label)}"
        f"</span><br><span style='font-size:10px'>{value:+.2f}" + (f"±{err:.2f}" if np.isfinite(err) else "")
        + "</span>")], layout=W.Layout(align_items="center", width="60px"))
    tile.add_class("cscore-influence-tile")
    return tile


def influence_detail(influence: "Influence", i: int, dataset: "Dataset", *, eval_dataset: "Dataset | None" = None,
                     count: int = 6) -> list[W.Widget]:
    """Captions and tiles, for the gallery's detail, of the training examples ``i`` depends on most (targets
    ``"train"``) and of the targets that depend most on it (those whose kept top-k lists hold it, strongest
    first, ties by index). ``dataset`` supplies the training images, labels and class names,
    ``eval_dataset`` the images of evaluation targets (an index stands in for them without it)."""
    infl, k = influence, int(count)
    label = int(dataset.labels[i])
    names = dataset.class_names
    out: list[W.Widget] = []
    if infl.target == "train":
        frame = infl.for_example(i).head(k)
        tiles = [_influence_tile(dataset.images, int(r.train_index), names[int(r.train_label)],
                                 int(r.train_label) == label, float(r.influence), float(r.stderr))
                 for r in frame.itertuples()]
        out.append(W.HTML("<i>training examples it depends on most (label, influence ± s.e.)</i>"))
        out.append(W.HBox(tiles) if tiles else message("no influence estimated for this example"))
    j, q = np.nonzero(infl.top_index == i)
    order = np.lexsort((j, -infl.top_value[j, q]))[:k]
    j, q = j[order], q[order]
    on_eval = infl.target == "eval"
    images = dataset.images if not on_eval else (eval_dataset.images if eval_dataset is not None else None)
    tiles = [_influence_tile(images, int(t), names[int(infl.eval_labels[t])], int(infl.eval_labels[t]) == label,
                             float(infl.top_value[t, r]), float(infl.top_stderr[t, r])) for t, r in zip(j, q)]
    what = "evaluation examples" if on_eval else "examples"
    out.append(W.HTML(f"<i>{what} that depend on it most (among each one's top {infl.k}; label, influence ± s.e.)</i>"))
    out.append(W.HBox(tiles) if tiles else message(f"not in the top {infl.k} of any {what[:-1]}"))
    return out
