"""A self-contained HTML report of C-scores: one file a user can mail or archive.

:func:`write_report` renders what the library computed (scores, proxies, correlations, noise
masks) into one HTML file: figures embedded as base64 PNG, tables, and the lowest- and
highest-scoring examples of every class. It computes nothing itself; ``cscore-lab report``
opens the run with :func:`cscore_lab.runs.open_run` and passes what it holds.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .cscores import CScores
from .data import Dataset
from .results import atomic_write

__all__ = ["write_report", "report_html"]

#: How injected examples are marked in galleries and figures.
MASK_STYLES = {"flipped": ("#c62828", "flipped label"), "ood": ("#ef6c00", "out-of-distribution input")}


# --------------------------------------------------------------------------- the report


def _img(png: bytes, alt: str, width: int | None = None) -> str:
    w = f" width='{width}'" if width else ""
    return f"<img alt='{html.escape(alt)}'{w} src='data:image/png;base64,{base64.b64encode(png).decode()}'>"


def _figure(draw: Any, *args: Any, alt: str, width: int | None = None, **kwargs: Any) -> str:
    from .viz.plots import render_png

    return f"<figure>{_img(render_png(draw, *args, **kwargs), alt, width)}</figure>"


def _frame_html(frame: Any, max_rows: int = 60) -> str:
    return frame.to_html(float_format=lambda v: f"{v:.3f}", max_rows=max_rows, border=0, classes="table")


def _table_html(obj: Any) -> str:
    if hasattr(obj, "_repr_html_"):
        return obj._repr_html_()
    return _frame_html(obj.to_frame() if hasattr(obj, "to_frame") else obj)


def _examples_html(cs: CScores, dataset: Dataset, per_class: int, max_classes: int,
                   masks: Mapping[str, np.ndarray]) -> str:
    from .viz.plots import image_png

    scores, labels = cs.scores, cs.labels
    classes = [c for c in range(dataset.num_classes) if np.isfinite(scores[labels == c]).any()]
    note = ""
    if len(classes) > max_classes:
        means = {c: float(np.nanmean(scores[labels == c])) for c in classes}
        classes = sorted(classes, key=lambda c: means[c])[:max_classes]
        note = f"<p>The {max_classes} classes with the lowest mean C-score of {dataset.num_classes}.</p>"

    def cell(i: int) -> str:
        marks = [name for name in MASK_STYLES if name in masks and bool(masks[name][i])]
        color = MASK_STYLES[marks[0]][0] if marks else "transparent"
        tip = f"#{i}, C-score {scores[i]:.3f}" + "".join(f", {MASK_STYLES[m][1]}" for m in marks)
        return (f"<td title='{tip}'><div style='border:2px solid {color}'>"
                f"{_img(image_png(dataset.images[i], size=48), f'example {i}')}"
                f"</div><div class='cap'>#{i}<br>{scores[i]:.2f}</div></td>")

    rows = []
    for c in classes:
        idx = np.flatnonzero((labels == c) & np.isfinite(scores))
        order = idx[np.argsort(scores[idx], kind="stable")]
        low, high = order[:per_class], order[::-1][:per_class]
        rows.append(f"<tr><th rowspan='2'>{html.escape(dataset.class_names[c])}</th><td class='kind'>lowest</td>"
                    + "".join(cell(int(i)) for i in low) + "</tr>"
                    + "<tr><td class='kind'>highest</td>" + "".join(cell(int(i)) for i in high) + "</tr>")
    legend = "".join(f" {'Red' if name == 'flipped' else 'Orange'} frames mark {MASK_STYLES[name][1]}s."
                     for name in MASK_STYLES if name in masks)
    return (note + f"<p>Captions: example index and C-score.{legend}</p>"
            f"<table class='examples'>{''.join(rows)}</table>")


def _check_masks(masks: Mapping[str, np.ndarray] | None, n: int) -> dict[str, np.ndarray]:
    out = {}
    for name, mask in (masks or {}).items():
        m = np.asarray(mask, dtype=bool)
        if m.shape != (n,):
            raise ValueError(f"mask {name!r} has shape {m.shape}, expected ({n},)")
        out[name] = m
    return out


def report_html(cscores: CScores, dataset: Dataset | None, *, proxies: Any = None, correlations: Any = None,
                masks: Mapping[str, np.ndarray] | None = None, title: str | None = None, per_class: int = 8,
                max_classes: int = 20) -> str:
    """The report as an HTML string; see :func:`write_report`."""
    from .viz import plots

    cs = cscores
    if dataset is not None and len(dataset) != len(cs):
        raise ValueError(f"the data set {dataset.name!r} has {len(dataset)} examples, the C-scores {len(cs)}")
    masks = _check_masks(masks, len(cs))
    if proxies is not None and correlations is None:
        from .analysis import correlate

        correlations = correlate(proxies, cs, n_boot=0, per_class=False)  # to rank the proxies' scatter plots
    name = cs.dataset or (dataset.name if dataset is not None else "data")
    title = title or f"C-scores of {name}"
    names = dataset.class_names if dataset is not None else None
    facts: list[tuple[str, str]] = [("data set", f"{name} ({len(cs)} examples, {cs.num_classes} classes)"),
                                    ("source", cs.source)]
    facts += [(k if k != "reliability" else "split-half reliability", v) for k, v in cs.describe() if k != "examples"]
    recipe = cs.meta.get("recipe")
    if isinstance(recipe, dict):
        facts.append(("recipe", ", ".join(f"{k}={v}" for k, v in recipe.items())))
    for mask_name, mask in masks.items():
        facts.append((f"{MASK_STYLES.get(mask_name, (None, mask_name))[1]}s", f"{int(mask.sum())}"))
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>cscore-lab report, {_dt.datetime.now().isoformat(timespec='seconds')}</p>",
             "<table class='facts'>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                                              for k, v in facts) + "</table>"]

    parts.append("<h2>Distribution</h2>")
    parts.append(_figure(plots.score_histogram, cs, alt="histogram of C-scores", figsize=(6.5, 3.2)))
    parts.append(_figure(plots.class_distributions, cs, class_names=names, alt="C-scores per class",
                         figsize=(max(6.5, 0.45 * min(cs.num_classes, 30) + 2), 3.2)))
    for mask_name, mask in masks.items():
        what = MASK_STYLES.get(mask_name, (None, mask_name))[1]
        parts.append(_figure(plots.flipped_histogram, cs, mask, label=what, alt=f"C-scores of clean examples and "
                             f"{what}s", figsize=(6, 3)))

    if cs.ratios:
        parts.append("<h2>Consistency profiles</h2><p>Held-out accuracy at each subset ratio, for examples "
                     "grouped by C-score.</p>")
        parts.append(_figure(plots.consistency_profiles, cs.profiles(), alt="consistency profiles", figsize=(6.5, 3.8)))

    if correlations is not None:
        parts.append("<h2>Proxies and the C-score</h2>")
        parts.append(f"<div class='corr'>{_table_html(correlations)}</div>")
        overall = correlations.overall()
        if len(overall) and np.isfinite(overall["spearman_low"]).any():
            parts.append(_figure(plots.correlation_intervals, correlations, alt="correlations with intervals",
                                 figsize=(5.5, 0.32 * len(overall) + 1.2)))
        if len(correlations.groups) > 1:
            parts.append(_figure(plots.correlation_heatmap, correlations, alt="correlations per class",
                                 figsize=(0.5 * len(correlations.groups) + 3.5, 0.38 * len(overall) + 1.2)))
        if proxies is not None:
            columns = plots.proxy_columns(proxies)
            ranked = [p for p in overall.reindex(overall["spearman"].abs().sort_values(ascending=False).index).index
                      if p in columns][:3]
            flipped = masks.get("flipped")
            figs = [_figure(plots.proxy_scatter, columns[p], cs, name=str(p), correlation=correlations.value(p),
                            mask=flipped, alt=f"{p} against the C-score", figsize=(4.2, 3.4), width=380)
                    for p in ranked]
            parts.append("<p>The three proxies that agree most with the C-score:</p><div class='row'>"
                         + "".join(figs) + "</div>")

    if dataset is not None:
        parts.append("<h2>Lowest and highest C-scores per class</h2>")
        parts.append(_examples_html(cs, dataset, per_class, max_classes, masks))

    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}th,td{padding:2px 6px;text-align:left;vertical-align:top}"
             "table.facts th{color:#555;font-weight:normal}table.table td,table.table th{border-bottom:1px solid #ddd}"
             "table.examples td{text-align:center;font-size:11px}.cap{color:#444}.kind{color:#777;font-size:11px}"
             "figure{margin:0.5em 0}.row{display:flex;flex-wrap:wrap;gap:8px}.meta{color:#777}")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_report(cscores: CScores, dataset: Dataset | None, path: str | Path, *, proxies: Any = None,
                 correlations: Any = None, masks: Mapping[str, np.ndarray] | None = None, title: str | None = None,
                 per_class: int = 8) -> Path:
    """Write one self-contained HTML file about ``cscores`` and return its path.

    Parameters
    ----------
    cscores : CScores
    dataset : Dataset or None
        Supplies images and class names; without it the report has no example images.
    path : path
        The file to write (``.html`` is added when it has no suffix); parent folders are made.
    proxies : ProxyTable, dict of arrays or DataFrame, optional
        Adds scatter plots of the three proxies that agree most with the C-score.
    correlations : CorrelationTable, optional
        Adds the correlation table, its intervals and a per-class heat map (computed without
        intervals from ``proxies`` when not given).
    masks : dict of str to bool array, optional
        Injected examples: ``"flipped"`` labels and ``"ood"`` inputs, marked in the galleries, each
        with a clean-vs-injected histogram.
    per_class : int, default 8
        Lowest and highest examples shown per class.

    See Also
    --------
    cscore_lab.runs.open_run : the scores, data set, masks and proxies of a run folder.
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".html")
    text = report_html(cscores, dataset, proxies=proxies, correlations=correlations, masks=masks,
                       title=title, per_class=per_class).encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda fh: fh.write(text))
