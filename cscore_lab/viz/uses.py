"""Figures of the experiments in :mod:`cscore_lab.uses`: draw a result on ``ax`` and return it.

Each function takes the result object an experiment returned (:class:`~cscore_lab.uses.CurriculumResult`,
:class:`~cscore_lab.uses.PruningResult`, :class:`~cscore_lab.uses.CollectionResult`,
:class:`~cscore_lab.uses.RegionTable`) and ``ax=None`` (a new pyplot figure then). The means and
standard errors come from the result's ``to_frame()``; nothing here trains or computes a statistic.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

from .plots import _axes

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes

    from ..uses import CollectionResult, CurriculumResult, PruningResult, RegionTable

__all__ = ["curriculum_curves", "pruning_curves", "collection_curves", "region_bars", "experiment_figure"]


def _band(ax: "Axes", x, mean, se, label: str, **kw) -> None:
    line, = ax.plot(x, mean, label=label, **kw)
    if se.notna().any():
        ax.fill_between(x, mean - se, mean + se, color=line.get_color(), alpha=0.18, linewidth=0)


def _accuracy_axes(ax: "Axes", xlabel: str, title: str) -> "Axes":
    """The labels, grid and legend every accuracy figure of the experiments shares."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return ax


def curriculum_curves(result: "CurriculumResult", *, ax: "Axes | None" = None,
                      strategies: Sequence[str] | None = None) -> "Axes":
    """Test accuracy against training steps, one line per strategy, shaded ± one standard error."""
    ax = _axes(ax, (6.5, 4.0))
    frame = result.to_frame()
    for st in strategies or result.strategies:
        f = frame[frame["strategy"] == st]
        if f.empty:
            raise KeyError(f"no strategy {st!r}; this result has {', '.join(result.strategies)}")
        _band(ax, f["step"], f["accuracy"], f["stderr"], st, linestyle="--" if st.startswith("random") else "-")
    return _accuracy_axes(ax, "training step", f"Curriculum by {result.score_name} ({result.seeds} seeds, mean ± s.e.)")


def pruning_curves(result: "PruningResult", *, ax: "Axes | None" = None,
                   configs: Sequence[tuple[str, str]] | None = None, reference: bool = True) -> "Axes":
    """Test accuracy against the kept fraction, one line per (score, rule), error bars of one standard error.

    The dashed line (and band) is the accuracy of models trained on the whole training set.
    """
    ax = _axes(ax, (6.5, 4.0))
    frame = result.to_frame()
    for sc, kp in configs or result.configs:
        f = frame[(frame["score"] == sc) & (frame["keep"] == kp)]
        if f.empty:
            raise KeyError(f"no curve {(sc, kp)!r}; this result has {list(result.configs)}")
        label = "random" if kp == "random" else f"{sc}: {kp.replace('_', ' ')}"
        ax.errorbar(f["fraction"], f["accuracy"], yerr=f["stderr"].fillna(0), marker="o", markersize=3, capsize=2,
                    label=label, linestyle="--" if kp == "random" else "-", color="0.35" if kp == "random" else None)
    m, se = result.reference_accuracy()
    if reference and math.isfinite(m):
        ax.axhline(m, color="0.2", linestyle=":", linewidth=1, label="whole training set")
        if math.isfinite(se):
            ax.axhspan(m - se, m + se, color="0.5", alpha=0.12, linewidth=0)
    budget = result.meta.get("settings", {}).get("budget", "")
    return _accuracy_axes(ax, "fraction of the training set kept",
                          f"Pruning curves ({result.seeds} seeds, mean ± s.e.{', budget: ' + budget if budget else ''})")


def collection_curves(result: "CollectionResult", *, ax: "Axes | None" = None) -> "Axes":
    """Test accuracy against examples added, one line per collection strategy, shaded ± one standard error."""
    ax = _axes(ax, (6.5, 4.0))
    frame = result.to_frame()
    for st in result.strategies:
        f = frame[frame["strategy"] == st]
        _band(ax, f["added"], f["accuracy"], f["stderr"], f"{st} {result.score_name} first" if st != "random" else st,
              marker="o", markersize=3, linestyle="--" if st == "random" else "-")
    return _accuracy_axes(ax, f"examples added to the starting {int(result.sizes[0])}",
                          f"Active collection ({result.seeds} seeds, mean ± s.e.)")


def region_bars(table: "RegionTable", *, ax: "Axes | None" = None, kind: str = "class") -> "Axes":
    """Share of each region's examples below the threshold (bars), with the count written beside each bar."""
    frame = table.to_frame()
    frame = frame[frame["kind"] == kind]
    if frame.empty:
        raise ValueError(f"this table has no {kind!r} regions (it has: {', '.join(sorted(set(table.kinds)))})")
    ax = _axes(ax, (6.0, max(2.5, 0.32 * len(frame) + 1)))
    y = range(len(frame))
    ax.barh(list(y), frame["share_below"], color="tab:red", alpha=0.75)
    for yi, (share, below, n) in enumerate(zip(frame["share_below"], frame["below"], frame["examples"])):
        ax.text(share, yi, f" {below}/{n}", va="center", fontsize="small")
    ax.set_yticks(list(y))
    ax.set_yticklabels(frame["name"])
    ax.invert_yaxis()
    ax.set_xlabel(f"share with {table.score_name} < {table.threshold:g}")
    ax.set_title(f"Where the low scores lie, by {kind}")
    ax.set_xlim(0, max(0.05, float(frame["share_below"].max()) * 1.25))
    return ax


def experiment_figure(result: "CurriculumResult | PruningResult | CollectionResult | RegionTable", *,
                      ax: "Axes | None" = None) -> "Axes":
    """The figure of any experiment's result: :func:`curriculum_curves`, :func:`pruning_curves`,
    :func:`collection_curves` or :func:`region_bars`, chosen by its type."""
    from ..uses import CollectionResult, CurriculumResult, PruningResult, RegionTable

    for cls, draw in ((CurriculumResult, curriculum_curves), (PruningResult, pruning_curves),
                      (CollectionResult, collection_curves), (RegionTable, region_bars)):
        if isinstance(result, cls):
            return draw(result, ax=ax)
    raise TypeError(f"expected the result of an experiment of cscore_lab.uses, got {type(result).__name__}")
