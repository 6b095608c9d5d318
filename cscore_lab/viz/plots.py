"""Figures of C-scores and proxies: pure functions that draw on an ``ax`` and return it.

Every function takes the objects the library computed (:class:`~cscore_lab.cscores.CScores`,
its :class:`~cscore_lab.cscores.Profiles`, a :class:`~cscore_lab.analysis.CorrelationTable`,
arrays) and ``ax=None``; with no ``ax`` it draws on a new pyplot figure. Nothing here computes
a statistic, an estimate or trains a model (the numbers come from the results objects), and
nothing imports widgets, so the same pictures serve notebooks, the dashboard
(:mod:`cscore_lab.viz.widgets`) and the HTML report.

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

    from ..analysis import CorrelationTable
    from ..cscores import CScores, Profiles
    from ..memorization import Memorization

__all__ = [
    "score_histogram",
    "class_distributions",
    "consistency_profiles",
    "example_profile",
    "proxy_scatter",
    "correlation_heatmap",
    "correlation_intervals",
    "flipped_histogram",
    "memorization_scatter",
    "influence_bars",
    "influence_pairs",
    "image_grid",
    "new_figure",
    "figure_png",
    "render_png",
    "image_png",
    "proxy_columns",
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
    label: str = "flipped",
) -> "Axes":
    """Overlaid histograms of a score for clean and injected examples (flipped labels, or whatever
    ``label`` names: "out-of-distribution"), as densities."""
    values = np.asarray(getattr(scores, "scores", scores), dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape:
        raise ValueError(f"mask has shape {mask.shape}, scores have {values.shape}")
    ax = _axes(ax, (6, 3.5))
    finite = np.isfinite(values)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
    edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    for sel, what, color in ((~mask, "clean", "C0"), (mask, label, "C3")):
        v = values[sel & finite]
        if v.size:
            ax.hist(v, bins=edges, density=True, alpha=0.6, color=color, label=f"{what} ({v.size})")
    ax.set_xlabel(name)
    ax.set_ylabel("density")
    ax.legend(frameon=False)
    return ax


# --------------------------------------------------------------------------- ratios


def consistency_profiles(
    profiles: "Profiles | CScores",
    ax: "Axes | None" = None,
    *,
    groups: int = 5,
    binning: str = "score",
) -> "Axes":
    """The paper's consistency profiles: held-out accuracy against subset ratio, one curve per
    group of examples binned by C-score.

    ``profiles`` is what :meth:`CScores.profiles` computed; given a :class:`CScores`, its
    ``profiles(groups, binning)`` are drawn.
    """
    if hasattr(profiles, "profiles"):
        profiles = profiles.profiles(groups, binning)
    ax = _axes(ax, (6, 3.5))
    if profiles.ratios.size == 0:
        ax.text(0.5, 0.5, "no per-ratio results in these scores", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    cmap = _cmap("viridis")
    g_count = len(profiles.counts)
    for g in range(g_count):
        if not profiles.counts[g]:
            continue
        color = cmap(g / max(1, g_count - 1))
        ax.plot(profiles.ratios, profiles.curves[g], marker="o", markersize=3, color=color,
                label=f"{profiles.edges[g]:.2f}–{profiles.edges[g + 1]:.2f} ({int(profiles.counts[g])})")
    ax.set_xlabel("subset ratio")
    ax.set_ylabel("held-out accuracy")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("consistency profiles by C-score group")
    ax.legend(title="C-score (examples)", fontsize=8, title_fontsize=8, frameon=False, loc="center left",
              bbox_to_anchor=(1.01, 0.5))
    return ax


def example_profile(cscores: "CScores", index: int, ax: "Axes | None" = None) -> "Axes":
    """One example's held-out accuracy at each subset ratio, with its binomial standard errors."""
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
    err = cscores.per_ratio_stderr[:, i]
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
    correlation: float | None = None,
    labels: np.ndarray | None = None,
    mask: np.ndarray | None = None,
    mask_label: str = "flipped",
) -> "Axes":
    """Scatter of a proxy against the C-score, titled with their Spearman ``correlation`` when given
    (from a :class:`~cscore_lab.analysis.CorrelationTable`: ``table.value(name)``).

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
        ax.scatter(x[m], y[m], s=10, color="C3", alpha=0.9, linewidths=0, label=f"{mask_label} ({int(m.sum())})")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel(name)
    ax.set_ylabel("C-score")
    title = f"{name} vs C-score"
    if correlation is not None and np.isfinite(correlation):
        title += f": Spearman {correlation:+.3f}"
    ax.set_title(title, fontsize=10)
    return ax


def correlation_heatmap(
    table: "CorrelationTable | pd.DataFrame",
    ax: "Axes | None" = None,
    *,
    stat: str = "spearman",
    title: str = "Spearman correlation with the C-score",
    fmt: str = ".2f",
) -> "Axes":
    """Heat map of correlations per group: rows are proxies, columns "all" and the classes, values
    in [-1, 1]; ``table`` is a CorrelationTable (its ``per_class(stat)``) or such a wide frame."""
    import seaborn as sns

    frame = table.per_class(stat) if hasattr(table, "per_class") else table
    ax = _axes(ax, (max(5.0, 0.55 * frame.shape[1] + 3), max(2.5, 0.4 * frame.shape[0] + 1)))
    annot = frame.shape[0] * frame.shape[1] <= 300
    sns.heatmap(frame.astype(float), ax=ax, vmin=-1, vmax=1, center=0, cmap="RdBu_r", annot=annot, fmt=fmt,
                annot_kws={"fontsize": 7}, cbar_kws={"shrink": 0.8}, linewidths=0.3, linecolor="white")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("")
    ax.set_ylabel("")
    return ax


def correlation_intervals(
    table: "CorrelationTable",
    ax: "Axes | None" = None,
    *,
    stat: str = "spearman",
    xlabel: str = "Spearman correlation with the C-score",
) -> "Axes":
    """Forest plot of a CorrelationTable's overall rows: each proxy's correlation and bootstrap interval,
    best at the top."""
    rows = table.overall()
    names = list(rows.index)
    v = rows[stat].to_numpy(dtype=np.float64)
    lo = rows[f"{stat}_low"].to_numpy(dtype=np.float64)
    hi = rows[f"{stat}_high"].to_numpy(dtype=np.float64)
    ax = _axes(ax, (5, max(2.0, 0.32 * len(names) + 1)))
    order = np.argsort(-np.nan_to_num(v, nan=-np.inf), kind="stable")[::-1]
    y = np.arange(len(order))
    ax.errorbar(v[order], y, xerr=[v[order] - lo[order], hi[order] - v[order]], fmt="o", markersize=4, capsize=2)
    ax.set_yticks(y, [str(names[i]) for i in order])
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(xlabel)
    return ax


def proxy_columns(proxies: Any) -> dict[str, np.ndarray]:
    """The per-example columns of a ProxyTable, a dict of arrays or a DataFrame (label columns left out)."""
    if hasattr(proxies, "values") and isinstance(getattr(proxies, "values"), dict):
        return dict(proxies.values)
    if hasattr(proxies, "select_dtypes"):
        frame = proxies.select_dtypes(include=[np.number]).drop(columns=["label", "labels", "cscore"], errors="ignore")
        return {str(c): frame[c].to_numpy(dtype=np.float64) for c in frame.columns}
    return {str(k): np.asarray(v, dtype=np.float64) for k, v in dict(proxies).items()}


# --------------------------------------------------------------------------- memorization and influence


#: How injected examples are drawn on scatter plots: (colour, legend label).
MASK_MARKS = {"flipped": ("C3", "flipped label"), "ood": ("C1", "out-of-distribution input")}


def memorization_scatter(
    memorization: "Memorization | np.ndarray",
    cscores: "CScores | np.ndarray",
    ax: "Axes | None" = None,
    *,
    masks: dict[str, np.ndarray] | None = None,
    title: str | None = None,
) -> "Axes":
    """Memorization (Feldman & Zhang 2020) against the C-score, one point per example.

    ``memorization`` is a :class:`~cscore_lab.memorization.Memorization` (its ``memorization``
    is drawn) or an array; ``cscores`` a :class:`CScores` or an array of the same length.
    ``masks`` (``"flipped"``, ``"ood"``: bool [N]) draws those examples in red and orange on top.

    The dashed diagonal ``memorization = 1 - C-score`` is where an example is fitted by every
    model that trained on it (in-subset accuracy 1, held-out accuracy = the C-score): memorized
    examples sit at its top left, regular ones at its bottom right, and examples below it are
    not fitted even when seen.
    """
    y = np.asarray(getattr(memorization, "memorization", memorization), dtype=np.float64)
    x = np.asarray(getattr(cscores, "scores", cscores), dtype=np.float64)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"memorization has {y.shape[0] if y.ndim else 0} values, the C-scores "
                         f"{x.shape[0] if x.ndim else 0}: pass both for the same examples")
    marks = {}
    for name, mask in (masks or {}).items():
        m = np.asarray(mask, dtype=bool)
        if m.shape != x.shape:
            raise ValueError(f"mask {name!r} has shape {m.shape}, expected {x.shape}")
        marks[name] = m
    ax = _axes(ax, (5, 4))
    ax.plot([0, 1], [1, 0], color="0.55", linestyle="--", linewidth=1, label="fitted whenever trained on")
    ax.axhline(0, color="0.8", linewidth=0.8)
    injected = np.zeros(x.shape, dtype=bool)
    for m in marks.values():
        injected |= m
    ax.scatter(x[~injected], y[~injected], s=6, color="C0", alpha=0.45, linewidths=0,
               label=f"{'clean' if marks else 'examples'} ({int((~injected).sum())})")
    for name, m in marks.items():
        color, what = MASK_MARKS.get(name, ("C2", name))
        ax.scatter(x[m], y[m], s=10, color=color, alpha=0.85, linewidths=0, label=f"{what} ({int(m.sum())})")
    finite = y[np.isfinite(y)]
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(min(-0.1, float(finite.min()) - 0.02) if finite.size else -0.1, 1.05)
    ax.set_xlabel("C-score (held-out accuracy)")
    ax.set_ylabel("memorization")
    ax.set_title(title if title is not None else f"memorization vs C-score ({x.size} examples)", fontsize=10)
    ax.legend(frameon=False, fontsize=8, loc="upper right")
    return ax


def _need_columns(frame: Any, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in getattr(frame, "columns", ())]
    if missing:
        raise ValueError(f"{what} needs a frame with columns {list(columns)} (missing {missing})")


def influence_bars(
    frame: "pd.DataFrame",
    ax: "Axes | None" = None,
    *,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> "Axes":
    """The training examples one target depends on most, as bars of influence ± standard error.

    ``frame`` is what :meth:`Influence.for_example(j) <cscore_lab.influence.Influence.for_example>`
    returns (columns ``train_index``, ``influence``, ``stderr``, ``train_label``; the target's
    label in ``frame.attrs["eval_label"]``). Bars of training examples with the target's label are
    green, others red; the strongest is at the top.
    """
    _need_columns(frame, ("train_index", "influence", "stderr", "train_label"), "influence_bars")
    values = frame["influence"].to_numpy(dtype=np.float64)
    errors = frame["stderr"].to_numpy(dtype=np.float64)
    labels = frame["train_label"].to_numpy()
    index = frame["train_index"].to_numpy()
    target_label = frame.attrs.get("eval_label")
    ax = _axes(ax, (4.5, max(1.6, 0.32 * len(values) + 0.9)))
    y = np.arange(len(values))[::-1]
    colors = ["C7" if target_label is None else ("C2" if lab == target_label else "C3") for lab in labels]
    ax.barh(y, values, xerr=np.nan_to_num(errors), color=colors, alpha=0.85, capsize=2, height=0.7)
    ax.set_yticks(y, [f"#{int(i)} ({_class_name(class_names, int(lab))})" for i, lab in zip(index, labels)])
    ax.axvline(0, color="0.5", linewidth=0.8)
    ax.set_xlabel("influence (± s.e.)")
    if title is None:
        j = frame.attrs.get("eval_index")
        title = "most influential training examples" + (f" on #{j}" if j is not None else "")
        if target_label is not None:
            title += f" (label {_class_name(class_names, int(target_label))})"
    ax.set_title(title, fontsize=10)
    return ax


def influence_pairs(
    pairs: "pd.DataFrame",
    train_images: np.ndarray,
    eval_images: np.ndarray | None = None,
    ax: "Axes | None" = None,
    *,
    max_pairs: int = 8,
    class_names: Sequence[str] | None = None,
    title: str | None = None,
) -> "Axes":
    """High-influence pairs as Feldman & Zhang show them: each column a training example (top) and
    the target it influences (below), captioned with labels, memorization and influence.

    ``pairs`` is what :meth:`Influence.pairs <cscore_lab.influence.Influence.pairs>` returns (or any
    frame with ``train_index``, ``eval_index``, ``influence``, ``train_label``, ``eval_label`` and
    optionally ``memorization``), drawn in its order, at most ``max_pairs``. ``eval_images`` are the
    targets' images (an evaluation set); without them the targets are training examples.
    """
    _need_columns(pairs, ("train_index", "eval_index", "influence", "train_label", "eval_label"), "influence_pairs")
    if isinstance(max_pairs, bool) or not isinstance(max_pairs, (int, np.integer)) or max_pairs < 1:
        raise ValueError(f"max_pairs must be a positive integer, got {max_pairs!r}")
    train_images = np.asarray(train_images)
    eval_images = train_images if eval_images is None else np.asarray(eval_images)
    rows = pairs.head(int(max_pairs))
    ax = _axes(ax, (1.15 * max(len(rows), 1) + 0.3, 3.0))
    if not len(rows):
        ax.text(0.5, 0.5, "no pairs to show", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return ax
    ti = rows["train_index"].to_numpy(dtype=np.int64)
    ej = rows["eval_index"].to_numpy(dtype=np.int64)
    if ti.max() >= len(train_images) or ej.max() >= len(eval_images):
        raise ValueError(f"pairs refer to examples beyond the {len(train_images)} training and {len(eval_images)} "
                         f"target images given")
    mem = rows["memorization"].to_numpy(dtype=np.float64) if "memorization" in rows else None
    top = [f"{_class_name(class_names, int(lab))}" + (f" m{m:.2f}" if mem is not None else "")
           for lab, m in zip(rows["train_label"], mem if mem is not None else [0] * len(rows))]
    bottom = [f"{_class_name(class_names, int(lab))} {v:+.2f}" for lab, v in zip(rows["eval_label"], rows["influence"])]
    images = np.concatenate([train_images[ti], eval_images[ej]])
    image_grid(images, ax=ax, captions=top + bottom, ncols=len(rows))
    ax.set_title(title if title is not None else "training example (top: label, memorization) → influenced "
                 "example (below: label, influence)", fontsize=9)
    return ax


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
