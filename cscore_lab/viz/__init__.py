"""Views of C-scores: figures (:mod:`.plots`, and :mod:`.uses` for the experiments of :mod:`cscore_lab.uses`;
matplotlib only) and notebook widgets (:mod:`.widgets`).

``import cscore_lab.viz`` loads neither matplotlib nor ipywidgets; the widget classes are
imported on first use.
"""

from __future__ import annotations

from typing import Any

from .plots import (  # noqa: F401
    class_distributions,
    consistency_profiles,
    correlation_heatmap,
    correlation_intervals,
    example_profile,
    figure_png,
    flipped_histogram,
    image_grid,
    image_png,
    influence_bars,
    influence_pairs,
    memorization_scatter,
    new_figure,
    proxy_scatter,
    render_png,
    score_histogram,
)
from .uses import collection_curves, curriculum_curves, pruning_curves, region_bars  # noqa: F401

_WIDGETS = ("Dashboard", "RunMonitor", "Gallery", "DistributionView", "AgreementView", "RatiosView",
            "MemorizationView", "UsesView")


def __getattr__(name: str) -> Any:
    if name in _WIDGETS:
        from . import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'cscore_lab.viz' has no attribute {name!r}")


__all__ = [
    "score_histogram", "class_distributions", "consistency_profiles", "example_profile", "proxy_scatter",
    "correlation_heatmap", "correlation_intervals", "flipped_histogram", "memorization_scatter", "influence_bars",
    "influence_pairs", "image_grid", "new_figure", "figure_png",
    "render_png", "image_png", "curriculum_curves", "pruning_curves", "collection_curves", "region_bars", *_WIDGETS,
]
