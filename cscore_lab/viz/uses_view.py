"""The dashboard's Uses tab: the experiments of :mod:`cscore_lab.uses` run on the scores shown.

It draws the results the experiments returned (figures from :mod:`cscore_lab.viz.uses`, tables from
the results' own HTML); it runs nothing.
"""

from __future__ import annotations

import html
from typing import Any, Mapping

import ipywidgets as W

from ._parts import message, png

__all__ = ["UsesView", "HOW_TO_RUN"]

#: What the tab says when no experiment has been run on these scores.
HOW_TO_RUN = ("No experiments on these scores yet. Run one: %cscore prune (pruning curves: keep a fraction chosen by "
              "the score, train, test), %cscore curriculum (easy-to-hard and other curricula against random) or "
              "%cscore collect (collect data by score); add --score memorization or a proxy's name to use another "
              "score. From Python: cscore_lab.pruning_experiment(dataset, cscores), curriculum_experiment, "
              "active_collection_experiment. The experiments a run folder keeps (its uses/ folder) appear after "
              "%cscore load.")


class UsesView(W.VBox):
    """One experiment at a time, chosen by its folder name (the newest first shown): its figure and table.

    Parameters
    ----------
    experiments : dict of str to result, optional
        :class:`~cscore_lab.uses.CurriculumResult`, :class:`~cscore_lab.uses.PruningResult`,
        :class:`~cscore_lab.uses.CollectionResult` or :class:`~cscore_lab.uses.RegionTable`, by name
        (the session keeps them by folder name).
    """

    def __init__(self, experiments: Mapping[str, Any] | None = None):
        self.experiments = dict(experiments or {})
        self.select = W.Dropdown(options=list(self.experiments), description="experiment",
                                 layout=W.Layout(width="520px"), style={"description_width": "80px"})
        self.figure = W.Image(format="png", layout=W.Layout(width="560px"))
        self.table = W.HTML()
        self.table.add_class("cscore-uses-table")
        if not self.experiments:
            super().__init__([message(HOW_TO_RUN)])
        else:
            self.select.observe(lambda _: self.show(self.select.value), names="value")
            super().__init__([self.select, self.figure, self.table])
            self.select.value = list(self.experiments)[-1]
            self.show(self.select.value)
        self.add_class("cscore-uses")

    def show(self, name: str) -> None:
        """Draw experiment ``name``."""
        from .uses import experiment_figure

        result = self.experiments[name]
        self.figure.value = png(experiment_figure, result, figsize=(6.5, 4.0))
        self.table.value = (f"<div style='max-height:420px;overflow:auto'>{result._repr_html_()}</div>"
                            f"<p style='color:#777'>{html.escape(name)}</p>")
