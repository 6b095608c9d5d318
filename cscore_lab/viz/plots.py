"""Figures of C-scores and proxies: pure functions that draw on an ``ax`` and return it.

Every function takes the objects the library computed (:class:`~cscore_lab.cscores.CScores`,
arrays, data frames) and ``ax=None``; with no ``ax`` it draws on a new pyplot figure. Nothing
here computes an estimate or trains a model, and nothing imports widgets, so the same
pictures serve notebooks, the dashboard (:mod:`cscore_lab.viz.widgets`) and the HTML report.

:func:`new_figure` and :func:`figure_png` render without pyplot (Agg canvas), which is safe
from a background thread.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from ..cscores import CScores

__all__ = [
    "score_histogram",
    "class_distributions",
    "consistency_profiles",
    "example_profile",
    "proxy_scatter",
    "correlation_heatmap",
    "correlation_intervals",
    "flipped_histogram",
    "image_grid",
    "new_figure",
    "figure_png",
    "render_png",
    "image_png",
    "proxy_frame",
    "correlation_frames",
]

LOW = 0.5  # the score below which an example is usually called hard or ambiguous


def _axes(ax: "Axes | None", figsize: tuple[float, float]) -> "Axes":
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=figsize)
    return ax


def _class_name(class_names: Sequence[str] | None, k: int) -> str:
    return str(class_names[k]) if class_names is not None and k < len(class_names) else str(k)


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[np.isfinite(x)]


# --------------------------------------------------------------------------- distributions


def score_histogram(
    cscores: "CScores | np.ndarray",
    ax: "Axes | None" = None,
    *,
    bins: int = 40,
    threshold: float = LOW,
    title: str | None = None,
    color: str = "C0",
) -> "Axes":
    """Histogram of the C-scores (log count axis), with the share below ``threshold`` marked.

    ``cscores`` is a :class:`CScores` or a plain array of scores (NaN are left out).
    """
    scores = _finite(getattr(cscores, "scores", cscores))
    ax = _axes(ax, (6, 3.5))
    ax.hist(scores, bins=np.linspace(0, 1, bins + 1), color=color, edgecolor="white", linewidth=0.4)
    if scores.size and np.ptp(np.histogram(scores, bins=bins, range=(0, 1))[0]) > 50:
        ax.set_yscale("log")
    share = float((scores < threshold).mean()) if scores.size else float("nan")
    ax.axvline(threshold, color="0.3", linestyle="--", linewidth=1)
    ax.text(threshold, 0.97, f" {100 * share:.1f}% below {threshold:g}", transform=ax.get_xaxis_transform(),
            va="top", ha="left", fontsize=9, color="0.2")
    ax.set_xlim(0, 1)
    ax.set_xlabel("C-score")
    ax.set_ylabel("examples")
    ax.set_title(title if title is not None else f"C-scores of {scores.size} examples")
    return ax


def class_distributions(
    cscores: "CScores",
    ax: "Axes | None" = None,
    *,
    class_names: Sequence[str] | None = None,
    threshold: float = LOW,
    max_classes: int = 30,
) -> "Axes":
    """Per-class C-score distributions (seaborn violins, cut at the extremes), with each class's
    share below ``threshold`` written above it. At most ``max_classes`` classes, those with the
    lowest mean score first when there are more."""
    import pandas as pd
    import seaborn as sns

    ax = _axes(ax, (8, 3.5))
    labels = np.asarray(cscores.labels)
    scores = np.asarray(cscores.scores, dtype=np.float64)
    ok = np.isfinite(scores)
    classes = np.unique(labels[ok])
    if classes.size > max_classes:
        means = np.array([scores[ok & (labels == c)].mean() for c in classes])
        classes = classes[np.argsort(means, kind="stable")[:max_classes]]
    names = [_class_name(class_names, int(c)) for c in classes]
    keep = ok & np.isin(labels, classes)
    frame = pd.DataFrame({
        "class": pd.Categorical([_class_name(class_names, int(c)) for c in labels[keep]], categories=names),
        "C-score": scores[keep],
    })
    sns.violinplot(data=frame, x="class", y="C-score", ax=ax, color="C0", cut=0, density_norm="width",
                   inner="quart", linewidth=0.8, order=names)
    for pos, c in enumerate(classes):
        s = scores[ok & (labels == c)]
        ax.text(pos, 1.04, f"{100 * (s < threshold).mean():.0f}%", ha="center", va="bottom", fontsize=8, color="0.3")
    ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1)
    ax.set_ylim(-0.02, 1.12)
    ax.set_title(f"per class (numbers: share below {threshold:g})", fontsize=10)
    if len(names) > 12:
        ax.tick_params(axis="x", labelrotation=90)
    return ax


def flipped_histogram(
    scores: "CScores | np.ndarray",
    mask: np.ndarray,
    ax: "Axes | None" = None,
    *,
    name: str = "C-score",
    bins: int = 30,
) -> "Axes":
    """Overlaid histograms of a score for clean and flipped (mislabeled) examples, as densities."""
    values = np.asarray(getattr(scores, "scores", scores), dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape:
        raise ValueError(f"mask has shape {mask.shape}, scores have {values.shape}")
    ax = _axes(ax, (6, 3.5))
    finite = np.isfinite(values)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    for sel, label, color in ((~mask, "clean", "C0"), (mask, "flipped", "C3")):
        v = values[sel & finite]
        if v.size:
            ax.hist(v, bins=edges, density=True, alpha=0.6, color=color, label=f"{label} ({v.size})")
    ax.set_xlabel(name)
    ax.set_ylabel("density")
    ax.legend(frameon=False)
    return ax


# --------------------------------------------------------------------------- ratios


def consistency_profiles(
    cscores: "CScores",
    ax: "Axes | None" = None,
    *,
    groups: int = 5,
    binning: str = "score",
) -> "Axes":
    """The paper's consistency profiles: held-out accuracy against subset ratio, one curve per
    group of examples binned by C-score.

    Parameters
    ----------
    groups : int, default 5
        How many groups.
    binning : {"score", "quantile"}, default "score"
        ``"score"``: equal-width C-score ranges over [0, 1]; ``"quantile"``: equal-size groups.
    """
    if binning not in ("score", "quantile"):
        raise ValueError(f"binning must be 'score' or 'quantile', got {binning!r}")
    if not (isinstance(groups, (int, np.integer)) and groups >= 1):
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    ax = _axes(ax, (6, 3.5))
    ratios = np.asarray(cscores.ratios, dtype=np.float64)
    if ratios.size == 0:
        ax.text(0.5, 0.5, "no per-ratio results in these scores", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    scores = np.asarray(cscores.scores, dtype=np.float64)
    ok = np.isfinite(scores)
    if binning == "score":
        edges = np.linspace(0.0, 1.0, groups + 1)
    else:
        edges = np.unique(np.quantile(scores[ok], np.linspace(0, 1, groups + 1))) if ok.any() else np.array([0.0, 1.0])
    which = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    cmap = _cmap("viridis")
    order = np.argsort(ratios)
    for g in range(len(edges) - 1):
        sel = ok & (which == g)
        if not sel.any():
            continue
        curve = np.nanmean(np.where(np.isfinite(cscores.per_ratio[:, sel]), cscores.per_ratio[:, sel], np.nan), axis=1)
        color = cmap(g / max(1, len(edges) - 2))
        ax.plot(ratios[order], curve[order], marker="o", markersize=3, color=color,
                label=f"{edges[g]:.2f}–{edges[g + 1]:.2f} ({int(sel.sum())})")
    ax.set_xlabel("subset ratio")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("consistency profiles by C-score group")
    ax.legend(title="C-score (examples)", fontsize=8, title_fontsize=8, frameon=False, loc="center left",
              bbox_to_anchor=(1.01, 0.5))
    return ax


def example_profile(cscores: "CScores", index: int, ax: "Axes | None" = None) -> "Axes":
    """One example's held-out accuracy at each subset ratio, with binomial standard errors."""
    n = len(cscores)
    if not (0 <= int(index) < n):
        raise ValueError(f"example index {index} is outside 0..{n - 1}")
    ax = _axes(ax, (4, 2.6))
    i = int(index)
    ratios = np.asarray(cscores.ratios, dtype=np.float64)
    if ratios.size == 0:
        ax.text(0.5, 0.5, f"C-score {cscores.scores[i]:.3f}\n(no per-ratio results)", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    p = cscores.per_ratio[:, i]
    k = cscores.heldout_counts[:, i].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        err = np.where(k > 0, np.sqrt(p * (1 - p) / k), np.nan)
    order = np.argsort(ratios)
    ax.errorbar(ratios[order], p[order], yerr=err[order], marker="o", markersize=4, capsize=2)
    ax.axhline(cscores.scores[i], color="0.4", linestyle=":", linewidth=1)
    ax.set_ylim(-0.05, 1.05)
    ax.set_xlabel("subset ratio")
    ax.set_ylabel("held-out acc.")
    ax.set_title(f"#{i}: C-score {cscores.scores[i]:.3f}", fontsize=10)
    return ax


# --------------------------------------------------------------------------- agreement


def proxy_scatter(
    proxy: np.ndarray,
    cscores: "CScores | np.ndarray",
    ax: "Axes | None" = None,
    *,
    name: str = "proxy",
    labels: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> "Axes":
    """Scatter of a proxy against the C-score, titled with their Spearman correlation.

    ``mask`` (flipped labels, say) draws those examples in red on top.
    """
    x = np.asarray(proxy, dtype=np.float64)
    y = np.asarray(getattr(cscores, "scores", cscores), dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"proxy {name!r} has {x.shape[0] if x.ndim else 0} values, the C-scores {y.shape[0]}")
    ax = _axes(ax, (5, 4))
    if labels is not None and mask is None:
        ax.scatter(x, y, s=6, c=np.asarray(labels), cmap=_cmap("tab10"), alpha=0.6, linewidths=0)
    else:
        ax.scatter(x, y, s=6, color="C0", alpha=0.5, linewidths=0)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        ax.scatter(x[m], y[m], s=10, color="C3", alpha=0.9, linewidths=0, label=f"flipped ({int(m.sum())})")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel(name)
    ax.set_ylabel("C-score")
    from ..cscores import _spearman

    ax.set_title(f"{name} vs C-score: Spearman {_spearman(x, y):+.3f}", fontsize=10)
    return ax


def correlation_heatmap(
    frame: "pd.DataFrame",
    ax: "Axes | None" = None,
    *,
    title: str = "Spearman correlation with the C-score",
    fmt: str = ".2f",
) -> "Axes":
    """Heat map of a wide table of correlations: rows are proxies, columns are groups
    ("all" and the classes), values in [-1, 1]."""
    import seaborn as sns

    ax = _axes(ax, (max(5.0, 0.55 * frame.shape[1] + 3), max(2.5, 0.4 * frame.shape[0] + 1)))
    annot = frame.shape[0] * frame.shape[1] <= 300
    sns.heatmap(frame.astype(float), ax=ax, vmin=-1, vmax=1, center=0, cmap="RdBu_r", annot=annot, fmt=fmt,
                annot_kws={"fontsize": 7}, cbar_kws={"shrink": 0.8}, linewidths=0.3, linecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("")
    ax.set_ylabel("")
    return ax


def correlation_intervals(
    names: Sequence[str],
    values: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    ax: "Axes | None" = None,
    *,
    xlabel: str = "Spearman correlation with the C-score",
) -> "Axes":
    """Forest plot: one row per proxy, its correlation and confidence interval, best at the top."""
    v = np.asarray(values, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    hi = np.asarray(high, dtype=np.float64)
    ax = _axes(ax, (5, max(2.0, 0.32 * len(names) + 1)))
    order = np.argsort(-np.nan_to_num(v, nan=-np.inf), kind="stable")[::-1]
    y = np.arange(len(order))
    ax.errorbar(v[order], y, xerr=[v[order] - lo[order], hi[order] - v[order]], fmt="o", markersize=4, capsize=2)
    ax.set_yticks(y, [str(names[i]) for i in order])
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(xlabel)
    return ax


# --------------------------------------------------------------------------- tables


def proxy_frame(proxies: Any) -> "pd.DataFrame":
    """The numeric per-example columns of a proxy table (anything with ``to_frame()``, a DataFrame or a dict)."""
    import pandas as pd

    frame = proxies.to_frame() if hasattr(proxies, "to_frame") else pd.DataFrame(proxies)
    return frame.select_dtypes(include=[np.number]).drop(columns=["label", "labels", "cscore"], errors="ignore")


def correlation_frames(correlations: Any, *, stat: str = "spearman") -> tuple["pd.DataFrame", "pd.DataFrame"]:
    """Split a correlation table into (overall rows: ``proxy``, ``value``, ``low``, ``high``; wide table
    proxies x groups of ``stat``, "all" first).

    ``correlations`` is a :class:`~cscore_lab.analysis.CorrelationTable` or its ``to_frame()``: one
    row per (proxy, group) with columns ``proxy``, ``group``, ``<stat>`` and optionally
    ``<stat>_low`` / ``<stat>_high``.
    """
    import pandas as pd

    frame = correlations.to_frame() if hasattr(correlations, "to_frame") else pd.DataFrame(correlations)
    missing = {"proxy", "group", stat} - set(frame.columns)
    if missing:
        raise ValueError(f"a correlation table needs columns proxy, group and {stat}; missing {sorted(missing)}")
    overall = frame[frame["group"].astype(str) == "all"]
    nan = np.full(len(overall), np.nan)
    rows = pd.DataFrame({
        "proxy": overall["proxy"].astype(str).to_numpy(),
        "value": overall[stat].to_numpy(dtype=np.float64),
        "low": overall[f"{stat}_low"].to_numpy(dtype=np.float64) if f"{stat}_low" in frame else nan,
        "high": overall[f"{stat}_high"].to_numpy(dtype=np.float64) if f"{stat}_high" in frame else nan,
    })
    proxies = list(dict.fromkeys(frame["proxy"].astype(str)))
    groups = list(dict.fromkeys(frame["group"].astype(str)))
    wide = frame.assign(proxy=frame["proxy"].astype(str), group=frame["group"].astype(str)).pivot(
        index="proxy", columns="group", values=stat).reindex(index=proxies, columns=groups)
    return rows, wide


# --------------------------------------------------------------------------- images


def image_grid(
    images: np.ndarray,
    ax: "Axes | None" = None,
    *,
    captions: Sequence[str] | None = None,
    ncols: int = 8,
    cmap: str = "gray_r",
    highlight: Sequence[bool] | None = None,
    title: str | None = None,
) -> "Axes":
    """A montage of uint8 images ([K, H, W] greyscale or [K, H, W, 3] colour) on one ``ax``,
    each captioned underneath; ``highlight`` frames chosen tiles in red."""
    imgs = np.asarray(images)
    if imgs.ndim not in (3, 4):
        raise ValueError(f"images must have shape [K, H, W] or [K, H, W, 3], got {imgs.shape}")
    k = imgs.shape[0]
    if captions is not None and len(captions) != k:
        raise ValueError(f"{len(captions)} captions for {k} images")
    ncols = max(1, min(int(ncols), max(k, 1)))
    nrows = max(1, -(-k // ncols))
    h, w = imgs.shape[1:3]
    pad_x, pad_y = max(1, w // 8), max(1, h // 8) + (max(3, h // 3) if captions is not None else 0)
    colour = imgs.ndim == 4
    canvas = np.zeros((nrows * (h + pad_y), ncols * (w + pad_x)) + ((3,) if colour else ()), dtype=np.float64)
    canvas[...] = np.nan if not colour else 1.0
    ax = _axes(ax, (1.1 * ncols, 1.25 * nrows + 0.3))
    for t in range(k):
        r, c = divmod(t, ncols)
        y0, x0 = r * (h + pad_y), c * (w + pad_x)
        canvas[y0:y0 + h, x0:x0 + w] = imgs[t] / 255.0
    if colour:
        ax.imshow(canvas, interpolation="nearest")
    else:
        cm = _cmap(cmap).with_extremes(bad="white")
        ax.imshow(np.ma.masked_invalid(canvas), cmap=cm, vmin=0, vmax=1, interpolation="nearest")
    for t in range(k):
        r, c = divmod(t, ncols)
        y0, x0 = r * (h + pad_y), c * (w + pad_x)
        if captions is not None:
            ax.text(x0 + w / 2 - 0.5, y0 + h, captions[t], ha="center", va="top", fontsize=7)
        if highlight is not None and highlight[t]:
            from matplotlib.patches import Rectangle

            ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), w, h, fill=False, edgecolor="C3", linewidth=1.5))
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return ax


# --------------------------------------------------------------------------- rendering


def _cmap(name: str):
    import matplotlib

    return matplotlib.colormaps[name]


def new_figure(figsize: tuple[float, float] = (6, 3.5), *, dpi: int = 100) -> "Figure":
    """A figure on its own Agg canvas, not registered with pyplot (safe in any thread, never shown twice)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: "Figure", *, dpi: int | None = None) -> bytes:
    """The figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def render_png(draw: Callable[..., Any], *args: Any, figsize: tuple[float, float] = (6, 3.5), ncols: int = 1,
               dpi: int = 100, **kwargs: Any) -> bytes:
    """PNG of ``draw(*args, ax=ax, **kwargs)`` on a new pyplot-free figure.

    With ``ncols > 1``, ``draw`` receives a list of axes as ``axes=`` instead of ``ax=``.
    """
    fig = new_figure(figsize, dpi=dpi)
    if ncols > 1:
        draw(*args, axes=list(fig.subplots(1, ncols)), **kwargs)
    else:
        draw(*args, ax=fig.add_subplot(), **kwargs)
    fig.tight_layout()
    return figure_png(fig)


def image_png(image: np.ndarray, *, size: int = 64, invert: bool = True) -> bytes:
    """One uint8 image ([H, W] or [H, W, 3]) as PNG bytes, scaled (nearest) so its longer side is about
    ``size``; with ``invert`` greyscale is drawn dark on light, as handwritten digits are usually shown."""
    from PIL import Image

    arr = np.asarray(image, dtype=np.uint8)
    if arr.ndim == 2 and invert:
        arr = 255 - arr
    pic = Image.fromarray(arr)
    scale = max(1, int(round(size / max(arr.shape[:2]))))
    pic = pic.resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return buf.getvalue()
