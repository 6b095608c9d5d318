"""Small pieces the notebook views share: how injected examples are marked, messages, PNG rendering,
the checks of a memorization or influence table against the examples shown."""

from __future__ import annotations

import html
from typing import Any, Callable

import ipywidgets as W
import numpy as np

from . import plots

#: How injected examples are marked (the same colours as the HTML report).
MASK_STYLES = {"flipped": ("danger", "#b00020", "flipped label"), "ood": ("warning", "#e65100", "out-of-distribution input")}


def message(text: str, kind: str = "info") -> W.HTML:
    color = {"info": "#555", "error": "#b00020"}[kind]
    return W.HTML(f"<p style='color:{color}'>{html.escape(text)}</p>")


def close_tree(widget: W.Widget) -> None:
    """Close a widget and the widgets inside it (their front-end models go too)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    widget.close()


def png(draw: Callable[..., Any], *args: Any, **kwargs: Any) -> bytes:
    return plots.render_png(draw, *args, **kwargs)


def pm(value: float, err: float | None = None, fmt: str = ".2f") -> str:
    """``value ± err`` (the error left out when unknown)."""
    text = f"{value:{fmt}}" if np.isfinite(value) else "n/a"
    if err is not None and np.isfinite(err) and np.isfinite(value):
        text += f" ± {err:{fmt}}"
    return text


def check_memorization(memorization: Any, n: int, what: str) -> None:
    if len(memorization) != n:
        raise ValueError(f"the memorization table has {len(memorization)} examples, {what} {n}")


def check_influence(influence: Any, n: int, eval_dataset: Any) -> None:
    if influence.n_train != n:
        raise ValueError(f"the influence table is of {influence.n_train} training examples, the data set has {n}")
    if eval_dataset is not None and len(eval_dataset) != influence.n_eval:
        raise ValueError(f"the evaluation set {eval_dataset.name!r} has {len(eval_dataset)} examples, the influence "
                         f"table {influence.n_eval} targets")
