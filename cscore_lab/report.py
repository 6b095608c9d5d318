"""A self-contained HTML report of C-scores, and opening a run folder with its data set.

:func:`write_report` renders what the library computed (scores, proxies, correlations) into
one HTML file: figures embedded as base64 PNG, tables, and the lowest- and highest-scoring
examples of every class. :func:`open_run` reads a run folder back with the data set named in
its manifest, so ``cscore-lab report --run DIR`` and ``%cscore load DIR`` need nothing else.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .cscores import CScores, _spearman
from .data import DATASETS, Dataset, inject_label_noise, load_dataset

__all__ = ["write_report", "report_html", "open_run", "RunContents"]


# --------------------------------------------------------------------------- opening a run


@dataclass
class RunContents:
    """A run folder read back: its scores (finished or partial), data set, noise mask and manifest."""

    cscores: CScores
    dataset: Dataset
    noise_mask: np.ndarray | None
    manifest: dict[str, Any]


_NOISE_NAME = re.compile(r"^(?P<base>.+)-noise(?P<fraction>[0-9.eE+-]+)$")


def open_run(path: str | Path, *, data: str | Path | None = None) -> RunContents:
    """Read the run folder ``path`` with the data set named in its manifest.

    The data set is loaded by name (``data`` is the folder or file that all but ``digits``
    need). For a run on a label-noise copy (``<name>-noise<fraction>``) the noisy labels come
    from the folder (``labels.npy`` or the final ``cscores.npz``) or are rebuilt with the run's
    seed. Either way the data set's fingerprint must equal the run's.

    Raises
    ------
    FileNotFoundError
        No run folder at ``path``.
    ValueError
        The data set cannot be loaded by name, ``data`` is missing, or the data differ from the run's.
    """
    from .holdout import scores_from_store
    from .store import RunStore

    folder = Path(path)
    manifest = RunStore(folder).read_manifest()
    ident = manifest["identity"]
    name = str(ident["dataset"])
    match = _NOISE_NAME.match(name)
    base = name if name in DATASETS or not match else match.group("base")
    if base not in DATASETS:
        raise ValueError(f"run {folder} was made on data set {name!r}, which cannot be loaded by name "
                         f"(loadable: {', '.join(DATASETS)}); open it from Python with holdout.scores_from_store")
    spec = DATASETS[base]
    if spec.needs_path and data is None:
        raise ValueError(f"run {folder} was made on {name!r}; pass --data PATH ({spec.description})")
    ds = load_dataset(base, data)
    mask = np.load(folder / "flipped.npy", allow_pickle=False) if (folder / "flipped.npy").is_file() else None
    if name != base:
        labels = _stored_labels(folder)
        if labels is not None:
            ds = ds.with_labels(labels, name=name)
        else:  # rebuilt as the CLI made it: inject_label_noise with the run's seed
            ds, rebuilt = inject_label_noise(ds, float(match.group("fraction")), seed=int(manifest["plan"]["seed"]))
            mask = rebuilt if mask is None else mask
    if ds.fingerprint != ident["fingerprint"]:
        raise ValueError(f"the data set loaded for run {folder} ({ds.name}, {len(ds)} examples) is not the data the "
                         f"run was made on ({ident['examples']} examples, fingerprint {ident['fingerprint'][:12]}); "
                         f"check --data")
    cs = scores_from_store(folder, labels=ds.labels)
    return RunContents(cs, ds, None if mask is None else np.asarray(mask, dtype=bool), manifest)


def _stored_labels(folder: Path) -> np.ndarray | None:
    if (folder / "labels.npy").is_file():
        return np.load(folder / "labels.npy", allow_pickle=False)
    if (folder / "cscores.npz").is_file():
        return CScores.load(folder / "cscores.npz").labels
    return None


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
                   noise_mask: np.ndarray | None) -> str:
    from .viz.plots import image_png

    scores, labels = cs.scores, cs.labels
    classes = [c for c in range(dataset.num_classes) if np.isfinite(scores[labels == c]).any()]
    note = ""
    if len(classes) > max_classes:
        means = {c: float(np.nanmean(scores[labels == c])) for c in classes}
        classes = sorted(classes, key=lambda c: means[c])[:max_classes]
        note = f"<p>The {max_classes} classes with the lowest mean C-score of {dataset.num_classes}.</p>"

    def cell(i: int) -> str:
        flipped = noise_mask is not None and bool(noise_mask[i])
        style = "border:2px solid #c62828" if flipped else "border:2px solid transparent"
        tip = f"#{i}, C-score {scores[i]:.3f}" + (", flipped label" if flipped else "")
        return (f"<td title='{tip}'><div style='{style}'>{_img(image_png(dataset.images[i], size=48), f'example {i}')}"
                f"</div><div class='cap'>#{i}<br>{scores[i]:.2f}</div></td>")

    rows = []
    for c in classes:
        idx = np.flatnonzero((labels == c) & np.isfinite(scores))
        order = idx[np.argsort(scores[idx], kind="stable")]
        low, high = order[:per_class], order[::-1][:per_class]
        rows.append(f"<tr><th rowspan='2'>{html.escape(dataset.class_names[c])}</th><td class='kind'>lowest</td>"
                    + "".join(cell(int(i)) for i in low) + "</tr>"
                    + "<tr><td class='kind'>highest</td>" + "".join(cell(int(i)) for i in high) + "</tr>")
    legend = " Red frames mark flipped labels." if noise_mask is not None else ""
    return (note + f"<p>Captions: example index and C-score.{legend}</p>"
            f"<table class='examples'>{''.join(rows)}</table>")


def report_html(cscores: CScores, dataset: Dataset | None, *, proxies: Any = None, correlations: Any = None,
                noise_mask: np.ndarray | None = None, title: str | None = None, per_class: int = 8,
                max_classes: int = 20) -> str:
    """The report as an HTML string; see :func:`write_report`."""
    from .viz import plots

    cs = cscores
    if dataset is not None and len(dataset) != len(cs):
        raise ValueError(f"the data set {dataset.name!r} has {len(dataset)} examples, the C-scores {len(cs)}")
    if noise_mask is not None:
        noise_mask = np.asarray(noise_mask, dtype=bool)
        if noise_mask.shape != cs.scores.shape:
            raise ValueError(f"noise_mask has shape {noise_mask.shape}, expected ({len(cs)},)")
    name = cs.dataset or (dataset.name if dataset is not None else "data")
    title = title or f"C-scores of {name}"
    names = dataset.class_names if dataset is not None else None
    s = cs.summary()
    facts: list[tuple[str, str]] = [
        ("data set", f"{name} ({s['examples']} examples, {cs.num_classes} classes)"),
        ("source", cs.source),
        ("subset ratios", ", ".join(f"{r:g}" for r in cs.ratios) or "not recorded"),
        ("runs per ratio", str(cs.runs or "not recorded")),
        ("mean C-score", f"{s['mean_score']:.4f}"),
        ("below 0.5", f"{s['below_0.5']} ({100 * s['below_0.5'] / max(1, s['examples']):.1f}%)"),
        ("split-half reliability", f"{s['reliability']:.4f}" if math.isfinite(s["reliability"]) else "unknown"),
        ("mean standard error", f"{s['mean_stderr']:.4f}" if math.isfinite(s["mean_stderr"]) else "unknown"),
    ]
    recipe = cs.meta.get("recipe")
    if isinstance(recipe, dict):
        facts.append(("recipe", ", ".join(f"{k}={v}" for k, v in recipe.items())))
    if noise_mask is not None:
        facts.append(("flipped labels", f"{int(noise_mask.sum())}"))
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p class='meta'>cscore-lab report, {_dt.datetime.now().isoformat(timespec='seconds')}</p>",
             "<table class='facts'>" + "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                                              for k, v in facts) + "</table>"]

    parts.append("<h2>Distribution</h2>")
    parts.append(_figure(plots.score_histogram, cs, alt="histogram of C-scores", figsize=(6.5, 3.2)))
    parts.append(_figure(plots.class_distributions, cs, class_names=names, alt="C-scores per class",
                         figsize=(max(6.5, 0.45 * min(cs.num_classes, 30) + 2), 3.2)))
    if noise_mask is not None:
        parts.append(_figure(plots.flipped_histogram, cs, noise_mask, alt="C-scores of clean and flipped labels",
                             figsize=(6, 3)))

    if cs.ratios:
        parts.append("<h2>Consistency profiles</h2><p>Held-out accuracy at each subset ratio, for examples "
                     "grouped by C-score.</p>")
        parts.append(_figure(plots.consistency_profiles, cs, alt="consistency profiles", figsize=(6.5, 3.8)))

    if correlations is not None or proxies is not None:
        parts.append("<h2>Proxies and the C-score</h2>")
    if correlations is not None:
        parts.append(f"<div class='corr'>{_table_html(correlations)}</div>")
        rows, wide = plots.correlation_frames(correlations)
        if len(rows) and np.isfinite(rows["low"]).any():
            parts.append(_figure(plots.correlation_intervals, rows["proxy"], rows["value"], rows["low"], rows["high"],
                                 alt="correlations with intervals", figsize=(5.5, 0.32 * len(rows) + 1.2)))
        if wide.shape[1] > 1:
            parts.append(_figure(plots.correlation_heatmap, wide, alt="correlations per class",
                                 figsize=(0.5 * wide.shape[1] + 3.5, 0.38 * wide.shape[0] + 1.2)))
    if proxies is not None:
        frame = plots.proxy_frame(proxies)
        if len(frame) == len(cs):
            ranked = sorted(frame.columns, key=lambda c: -np.nan_to_num(abs(_spearman(frame[c].to_numpy(float), cs.scores))))
            figs = [_figure(plots.proxy_scatter, frame[c].to_numpy(float), cs, name=str(c), mask=noise_mask,
                            alt=f"{c} against the C-score", figsize=(4.2, 3.4), width=380) for c in ranked[:3]]
            parts.append("<p>The three proxies that agree most with the C-score:</p><div class='row'>"
                         + "".join(figs) + "</div>")

    if dataset is not None:
        parts.append("<h2>Lowest and highest C-scores per class</h2>")
        parts.append(_examples_html(cs, dataset, per_class, max_classes, noise_mask))

    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}th,td{padding:2px 6px;text-align:left;vertical-align:top}"
             "table.facts th{color:#555;font-weight:normal}table.table td,table.table th{border-bottom:1px solid #ddd}"
             "table.examples td{text-align:center;font-size:11px}.cap{color:#444}.kind{color:#777;font-size:11px}"
             "figure{margin:0.5em 0}.row{display:flex;flex-wrap:wrap;gap:8px}.meta{color:#777}")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_report(cscores: CScores, dataset: Dataset | None, path: str | Path, *, proxies: Any = None,
                 correlations: Any = None, noise_mask: np.ndarray | None = None, title: str | None = None,
                 per_class: int = 8) -> Path:
    """Write one self-contained HTML file about ``cscores`` and return its path.

    Parameters
    ----------
    cscores : CScores
    dataset : Dataset or None
        Supplies images and class names; without it the report has no example images.
    path : path
        The file to write (``.html`` is added when it has no suffix); parent folders are made.
    proxies : ProxyTable or DataFrame, optional
        Adds scatter plots of the three proxies that agree most with the C-score.
    correlations : CorrelationTable or DataFrame, optional
        Adds the correlation table, its intervals and a per-class heat map.
    noise_mask : bool array, optional
        Flipped labels: marked in the galleries, with a clean-vs-flipped histogram.
    per_class : int, default 8
        Lowest and highest examples shown per class.

    See Also
    --------
    open_run : the scores and data set of a run folder.
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".html")
    text = report_html(cscores, dataset, proxies=proxies, correlations=correlations, noise_mask=noise_mask,
                       title=title, per_class=per_class)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
