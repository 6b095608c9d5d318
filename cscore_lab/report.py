"""A self-contained HTML report of C-scores: one file a user can mail or archive.

:func:`write_report` renders what the library computed (scores, proxies, correlations, noise
masks, memorization, influence and the experiments run on the scores) into one HTML file: figures embedded as base64 PNG, tables,
the lowest- and highest-scoring examples of every class, the most memorized examples and the
strongest influence pairs with both images. It computes nothing itself; ``cscore-lab report``
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
from .results import atomic_write, make_folder

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


def _pm(value: float, err: float | None = None) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.3f}" + (f" ± {err:.3f}" if err is not None and np.isfinite(err) else "")


def _thumb(dataset: Dataset | None, i: int, masks: Mapping[str, np.ndarray], alt: str, size: int = 48) -> str:
    """One example's image, framed in its mask's colour ('' without a data set)."""
    from .viz.plots import image_png

    if dataset is None:
        return ""
    marks = [name for name in MASK_STYLES if name in masks and bool(masks[name][i])]
    color = MASK_STYLES[marks[0]][0] if marks else "transparent"
    return f"<div style='border:2px solid {color};display:inline-block'>{_img(image_png(dataset.images[i], size=size), alt)}</div>"


def _grid(cells: list[str], kind: str, per_row: int = 12) -> str:
    """``cells`` (``<td>`` elements) as a table of ``per_row`` columns, of class ``examples <kind>``."""
    rows = "".join("<tr>" + "".join(cells[k:k + per_row]) + "</tr>" for k in range(0, len(cells), per_row))
    return f"<table class='examples {kind}'>{rows}</table>"


def _memorization_html(mem: Any, cs: CScores, dataset: Dataset | None, masks: Mapping[str, np.ndarray],
                       count: int) -> str:
    from .viz import plots

    s = mem.summary()
    parts = [(f"<p>Memorization (Feldman &amp; Zhang 2020) of example <i>i</i> = accuracy on <i>i</i> of the models "
             f"that trained on it − accuracy of those that held it out, per subset ratio and pooled like the "
             f"C-score, from the same {s['models']} models. High for examples the models only get right when they "
             f"saw them (rare, ambiguous, mislabeled); near 0 for regular ones. Mean {s['mean_memorization']:.3f}, "
             f"{s['above_0.5']} examples above 0.5; mean in-subset accuracy {s['mean_in_accuracy']:.3f}, held-out "
             f"{s['mean_heldout_accuracy']:.3f}; split-half reliability {s['reliability']:.3f}.</p>")]
    parts.append(_figure(plots.memorization_scatter, mem, cs, masks=dict(masks), alt="memorization against the "
                         "C-score", figsize=(5.5, 4.3), width=480))
    for mask_name, mask in masks.items():
        what = MASK_STYLES.get(mask_name, (None, mask_name))[1]
        parts.append(_figure(plots.flipped_histogram, mem.memorization, mask, name="memorization", label=what,
                             alt=f"memorization of clean examples and {what}s", figsize=(6, 3)))
    names = dataset.class_names if dataset is not None else None
    cells = []
    for i in mem.most_memorized(count):
        i = int(i)
        label = html.escape(names[int(cs.labels[i])] if names is not None else str(int(cs.labels[i])))
        flags = "".join(f", {MASK_STYLES[m][1]}" for m in MASK_STYLES if m in masks and bool(masks[m][i]))
        tip = (f"#{i}, label {label}, memorization {_pm(mem.memorization[i], mem.stderr[i])}, in-subset accuracy "
               f"{_pm(mem.in_accuracy[i])}, held-out accuracy {_pm(mem.heldout_accuracy[i])}, C-score "
               f"{_pm(cs.scores[i])}{flags}")
        err = f"±{mem.stderr[i]:.2f}" if np.isfinite(mem.stderr[i]) else ""
        cells.append(f"<td title='{html.escape(tip)}'>{_thumb(dataset, i, masks, f'example {i}')}<div class='cap'>"
                     f"#{i} · {label}<br>m {mem.memorization[i]:.2f}{err}<br>C {cs.scores[i]:.2f}</div></td>")
    parts.append(f"<h3>The {count} most memorized examples</h3><p>Captions: example index · label; memorization "
                 f"(m) ± its standard error; C-score (C). Hover for the in-subset and held-out accuracies.</p>"
                 + _grid(cells, "memorized"))
    return "\n".join(parts)


def _influence_html(infl: Any, mem: Any, dataset: Dataset | None, eval_dataset: Dataset | None,
                    masks: Mapping[str, np.ndarray], threshold: float, count: int) -> str:
    import warnings

    s = infl.summary()
    on_eval = infl.target == "eval"
    targets = eval_dataset if on_eval else dataset
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pairs = infl.pairs(threshold, memorization=mem)
    what = (f"the {s['targets']} examples of the evaluation set{f' {eval_dataset.name}' if eval_dataset else ''}"
            if on_eval else f"the {s['targets']} training examples themselves, each judged by the models that held it out")
    parts = [(f"<p>Influence (Feldman &amp; Zhang 2020) of training example <i>i</i> on target <i>j</i> = accuracy on "
             f"<i>j</i> of the models that trained on <i>i</i> − of those that did not. Targets: {what}; the "
             f"{s['k']} most influential training examples of each are kept, from {s['models']} models over "
             f"{s['ratios']} ratios. {len(pairs)} kept pairs have influence above {threshold:g} (Feldman &amp; "
             f"Zhang's threshold). With few models many of them are chance: compare each influence with its "
             f"standard error.</p>")]
    parts += [f"<p class='meta'>{html.escape(str(w.message))}</p>" for w in caught]
    if not len(pairs):
        frame = infl.to_frame()
        pairs = frame.sort_values(["influence", "eval_index", "train_index"], ascending=[False, True, True],
                                  kind="stable").drop(columns="rank")
        pairs["same_label"] = pairs["eval_label"].to_numpy() == pairs["train_label"].to_numpy()
        parts.append("<p>The strongest kept pairs:</p>")
    names = dataset.class_names if dataset is not None else None

    def name(k: int) -> str:
        return html.escape(names[k] if names is not None and k < len(names) else str(k))

    if targets is None and on_eval:
        parts.append("<p class='meta'>The evaluation set was not given: its images are left out.</p>")
    has_mem = "memorization" in pairs
    cells = []
    for r in pairs.head(count).itertuples():
        i, j = int(r.train_index), int(r.eval_index)
        memo = f"<br>m {r.memorization:.2f}" if has_mem and np.isfinite(r.memorization) else ""
        other = "" if r.same_label else " style='color:#c62828'"
        tip = (f"training example #{i} (label {name(int(r.train_label))}"
               + (f", memorization {_pm(r.memorization, getattr(r, 'memorization_stderr', None))}" if has_mem else "")
               + f") → target #{j} (label {name(int(r.eval_label))}): influence {_pm(r.influence, r.stderr)}")
        cells.append(f"<td title='{html.escape(tip)}'>{_thumb(dataset, i, masks, f'training example {i}')}"
                     f"<div class='cap'>#{i} · {name(int(r.train_label))}{memo}</div><div class='arrow'>↓ "
                     f"{r.influence:+.2f}±{r.stderr:.2f}</div>{_thumb(targets, j, {} if on_eval else masks, f'target {j}')}"
                     f"<div class='cap'{other}>#{j} · {name(int(r.eval_label))}</div></td>")
    parts.append("<p>Each column: a training example (index · label, its memorization m), the influence ± s.e. "
                 "on the target below it (index · label; red when the labels differ), strongest first.</p>"
                 + _grid(cells, "pairs"))
    return "\n".join(parts)


def _experiments_html(experiments: Mapping[str, Any]) -> str:
    """Each experiment of :mod:`cscore_lab.uses`: its figure and its table (the result's own HTML)."""
    from .viz.uses import experiment_figure

    parts = [f"<p>Experiments of <code>cscore_lab.uses</code> run on these scores ({len(experiments)}; each kept in "
             f"the run folder's <code>uses/</code> under the name shown, where a rerun resumes): test accuracy, mean ± "
             f"standard error over seeds.</p>"]
    for name, result in experiments.items():
        parts.append(f"<h3>{html.escape(name)}</h3>")
        parts.append(_figure(experiment_figure, result, alt=f"figure of {name}", figsize=(6.5, 4.0), width=560))
        parts.append(f"<div class='corr'>{result._repr_html_()}</div>")
    return "\n".join(parts)


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
                max_classes: int = 20, memorization: Any = None, influence: Any = None,
                eval_dataset: Dataset | None = None, memorized: int = 24, threshold: float = 0.15,
                pairs: int = 24, experiments: Mapping[str, Any] | None = None) -> str:
    """The report as an HTML string; see :func:`write_report`."""
    from .viz import plots

    cs = cscores
    if dataset is not None and len(dataset) != len(cs):
        raise ValueError(f"the data set {dataset.name!r} has {len(dataset)} examples, the C-scores {len(cs)}")
    masks = _check_masks(masks, len(cs))
    for value, what in ((per_class, "per_class"), (memorized, "memorized"), (pairs, "pairs")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{what} must be a positive integer, got {value!r}")
    if memorization is not None and len(memorization) != len(cs):
        raise ValueError(f"the memorization table has {len(memorization)} examples, the C-scores {len(cs)}")
    if influence is not None:
        if influence.n_train != len(cs):
            raise ValueError(f"the influence table is of {influence.n_train} training examples, the C-scores {len(cs)}")
        if eval_dataset is not None and len(eval_dataset) != influence.n_eval:
            raise ValueError(f"the evaluation set {eval_dataset.name!r} has {len(eval_dataset)} examples, the "
                             f"influence table {influence.n_eval} targets")
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
            kind = next((k for k in MASK_STYLES if k in masks), None)  # flipped labels first, else ood inputs
            figs = [_figure(plots.proxy_scatter, columns[p], cs, name=str(p), correlation=correlations.value(p),
                            mask=masks.get(kind), mask_label=MASK_STYLES[kind][1] if kind else "flipped",
                            alt=f"{p} against the C-score", figsize=(4.2, 3.4), width=380)
                    for p in ranked]
            parts.append("<p>The three proxies that agree most with the C-score:</p><div class='row'>"
                         + "".join(figs) + "</div>")

    if dataset is not None:
        parts.append("<h2>Lowest and highest C-scores per class</h2>")
        parts.append(_examples_html(cs, dataset, per_class, max_classes, masks))

    if memorization is not None:
        parts.append("<h2>Memorization</h2>")
        parts.append(_memorization_html(memorization, cs, dataset, masks, memorized))
    if influence is not None:
        parts.append("<h2>Influence</h2>")
        parts.append(_influence_html(influence, memorization, dataset, eval_dataset, masks, threshold, pairs))
    if experiments:
        parts.append("<h2>Uses of the scores</h2>")
        parts.append(_experiments_html(experiments))

    style = ("body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse}th,td{padding:2px 6px;text-align:left;vertical-align:top}"
             "table.facts th{color:#555;font-weight:normal}table.table td,table.table th{border-bottom:1px solid #ddd}"
             "table.examples td{text-align:center;font-size:11px}.cap{color:#444}.kind{color:#777;font-size:11px}"
             "figure{margin:0.5em 0}.row{display:flex;flex-wrap:wrap;gap:8px}.meta{color:#777}"
             ".arrow{font-size:11px;color:#1b5e20;margin:2px 0;white-space:nowrap}table.pairs td{padding:4px 6px}")
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")


def write_report(cscores: CScores, dataset: Dataset | None, path: str | Path, *, proxies: Any = None,
                 correlations: Any = None, masks: Mapping[str, np.ndarray] | None = None, title: str | None = None,
                 per_class: int = 8, memorization: Any = None, influence: Any = None,
                 eval_dataset: Dataset | None = None, memorized: int = 24, threshold: float = 0.15,
                 pairs: int = 24, experiments: Mapping[str, Any] | None = None) -> Path:
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
    memorization : Memorization, optional
        Adds a "Memorization" section: memorization against the C-score, clean against injected
        examples, and the ``memorized`` most memorized examples with their images.
    influence : Influence, optional
        Adds an "Influence" section: the ``pairs`` strongest kept pairs above ``threshold`` (Feldman
        & Zhang's 0.15), each with the training example's and the target's images, the influence ±
        its standard error and the training example's memorization (from ``memorization``).
    eval_dataset : Dataset, optional
        The evaluation set of an influence table whose targets are one (their images).
    experiments : dict of str to result, optional
        Adds a "Uses of the scores" section: the figure and table of each experiment of
        :mod:`cscore_lab.uses` (:func:`cscore_lab.experiments.kept_experiments` reads a run folder's).

    See Also
    --------
    cscore_lab.runs.open_run : the scores, data set, masks and proxies of a run folder.
    cscore_lab.runs.memorization_of, cscore_lab.runs.influence_of : memorization and influence of a run.
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_suffix(".html")
    text = report_html(cscores, dataset, proxies=proxies, correlations=correlations, masks=masks,
                       title=title, per_class=per_class, memorization=memorization, influence=influence,
                       eval_dataset=eval_dataset, memorized=memorized, threshold=threshold,
                       pairs=pairs, experiments=experiments).encode("utf-8")
    make_folder(path.parent)
    return atomic_write(path, lambda fh: fh.write(text))
