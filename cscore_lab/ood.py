"""Out-of-distribution injection: replace a fraction of a data set's inputs with foreign ones.

The paper (Jiang et al., ICML 2021, Sec. 5) finds out-of-distribution and mislabeled examples
at the low end of the C-score. :func:`inject_ood` makes the out-of-distribution half of that
claim testable without a download, as :func:`cscore_lab.data.inject_label_noise` does for the
mislabeled half: it returns a copy of the data set in which ``round(fraction * N)`` examples,
chosen uniformly, have their input (and display image) replaced by a foreign one and carry a
label drawn uniformly over the classes, and the boolean mask of those examples. A detection
score oriented like the C-score (higher = more regular) should rank the masked examples first
from the bottom.

Kinds (:data:`OOD_KINDS`):

``"gaussian"``
    i.i.d. normal pixels with the data's per-channel mean and standard deviation (per feature
    for non-image vectors), clipped to the value range.
``"uniform"``
    i.i.d. uniform pixels over the value range (per feature over its observed range for vectors).
``"inverted"``
    ``low + high - x`` of the example itself (``value_range - x`` for pixel data).
``"rotated"``
    the example itself rotated by 90, 180 or 270 degrees (180 only for non-square pictures).
``"shuffled"``
    the example's pixel positions randomly permuted (colour channels move together), or its
    features for vectors.
``"foreign"``
    pictures from another source resized to the data's shape: for 28x28 greyscale data
    (MNIST-shaped) scikit-learn's digits upscaled to 20x20 and centred in 28x28 as MNIST's
    digits are; for 8x8 data (the digits) MNIST downscaled, which needs ``source=`` (an MNIST
    folder or a :class:`~cscore_lab.data.Dataset`); otherwise random patches of scikit-learn's
    two sample photographs (``china.jpg``, ``flower.jpg``, shipped inside scikit-learn), in
    grey or colour as the data are. ``source=`` (a Dataset or an MNIST folder) overrides the
    default for any shape.

Values generated for integer-valued data (digits 0..16, 8-bit pixels) are rounded, so an
injected example cannot be told apart by its fractional part alone.
"""

from __future__ import annotations

import math
import os
from dataclasses import replace
from typing import Any

import numpy as np

from .dataset import Dataset, _range_stats

__all__ = ["inject_ood", "OOD_KINDS"]

#: The kinds of foreign input :func:`inject_ood` can make, none needing a download.
OOD_KINDS: tuple[str, ...] = ("gaussian", "uniform", "inverted", "rotated", "shuffled", "foreign")

_PICTURE_ONLY = ("rotated", "foreign")


def inject_ood(
    dataset: Dataset,
    fraction: float,
    kind: str = "gaussian",
    seed: int = 0,
    *,
    source: Dataset | str | os.PathLike | None = None,
) -> tuple[Dataset, np.ndarray]:
    """Replace ``round(fraction * N)`` examples' inputs with foreign ones that keep a random label.

    Parameters
    ----------
    dataset : Dataset
        Flat inputs [N, d] (pictures when d is a square), channel-first pictures [N, C, H, W]
        or [N, H, W]; "rotated" and "foreign" need pictures.
    fraction : float in [0, 1]
        Share of examples replaced; the examples are chosen uniformly without replacement.
    kind : {"gaussian", "uniform", "inverted", "rotated", "shuffled", "foreign"}, default "gaussian"
        What replaces them (see the module docstring).
    seed : int >= 0, default 0
        The same seed and fraction choose the same examples and labels for every kind; the
        content drawn also depends on the kind.
    source : Dataset or path to an MNIST folder, optional
        Pictures for ``kind="foreign"`` (required for 8x8 data); refused for other kinds.

    Returns
    -------
    (Dataset, numpy.ndarray of bool)
        The copy, named ``<name>-ood-<kind><fraction>`` (same value range, class names and
        source), and the mask of replaced examples. Injected labels are uniform over all
        classes, so a tiny data set may lose a class, which the Dataset reports.

    Raises
    ------
    ValueError
        For an unknown kind, a fraction outside [0, 1], a bad seed, a picture-only kind on
        non-picture inputs, ``source`` given to a kind that does not use it, or "foreign" on 8x8
        data without ``source``.
    TypeError
        When ``dataset`` is not a Dataset or ``source`` is neither a Dataset nor a path.

    See Also
    --------
    cscore_lab.data.inject_label_noise : the same for flipped labels.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"inject_ood expects a cscore_lab Dataset, got {type(dataset).__name__}")
    if kind not in OOD_KINDS:
        raise ValueError(f"unknown out-of-distribution kind {kind!r}; choose one of: {', '.join(OOD_KINDS)}")
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)) \
            or not (0.0 <= float(fraction) <= 1.0):
        raise ValueError(f"out-of-distribution fraction must be a number in [0, 1], got {fraction!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if source is not None:
        if kind != "foreign":
            raise ValueError(f"source= is only used by kind='foreign', not {kind!r}; drop it or use kind='foreign'")
        if not isinstance(source, (Dataset, str, os.PathLike)):
            raise TypeError(f"source must be a Dataset or the path of an MNIST folder, got {type(source).__name__}")
    layout = _Layout.of(dataset)
    if kind in _PICTURE_ONLY and layout.vector:
        raise ValueError(f"kind={kind!r} needs picture-shaped inputs ([N, H*W] with a square side, [N, H, W] or "
                         f"[N, C, H, W]); {dataset.name!r} has inputs of shape {dataset.input_shape}")
    if kind == "foreign" and source is None and (layout.h, layout.w) == (8, 8):
        raise ValueError("kind='foreign' on 8x8 data (the digits) uses MNIST downscaled to 8x8: pass source= an MNIST "
                         "folder (e.g. ../shared/data/mnist) or a Dataset")

    n, k = len(dataset), dataset.num_classes
    m = int(round(float(fraction) * n))
    pick_rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x00D5]))
    idx = np.sort(pick_rng.choice(n, size=m, replace=False))
    new_labels = pick_rng.integers(0, k, size=m)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x00D5, 1 + OOD_KINDS.index(kind)]))

    inputs, labels, images = dataset.inputs.copy(), dataset.labels.copy(), dataset.images.copy()
    if m:
        lo, hi, integer = _bounds(dataset)
        originals = layout.to_work(dataset.inputs[idx])
        made = _MAKERS[kind](originals, rng=rng, lo=lo, hi=hi, dataset=dataset, layout=layout, source=source)
        made = np.clip(made, lo, hi)
        if integer:
            made = np.rint(made)
        made = made.astype(np.float32)
        inputs[idx] = layout.from_work(made)
        images[idx] = _display(made, lo, hi, images.shape[1:], layout)
        labels[idx] = new_labels
    mask = np.zeros(n, dtype=bool)
    mask[idx] = True
    out = replace(dataset, inputs=inputs, labels=labels, images=images,
                  name=f"{dataset.name}-ood-{kind}{float(fraction):g}")
    return out, mask


# --------------------------------------------------------------------------- layout of the inputs


class _Layout:
    """How a data set's inputs map to a working array: pictures [m, H, W, C] or vectors [m, d]."""

    def __init__(self, shape: tuple[int, ...], h: int, w: int, c: int, kind: str) -> None:
        self.shape, self.h, self.w, self.c, self.kind = shape, h, w, c, kind
        self.vector = kind == "vector"

    @classmethod
    def of(cls, ds: Dataset) -> "_Layout":
        shape = ds.input_shape
        if len(shape) == 1:
            side = math.isqrt(shape[0])
            if side > 1 and side * side == shape[0]:
                return cls(shape, side, side, 1, "flat")
            return cls(shape, 1, shape[0], 1, "vector")
        if len(shape) == 2:
            return cls(shape, shape[0], shape[1], 1, "hw")
        if len(shape) == 3 and shape[0] in (1, 2, 3, 4):
            return cls(shape, shape[1], shape[2], shape[0], "chw")
        return cls(shape, 1, int(np.prod(shape)), 1, "vector")

    def to_work(self, x: np.ndarray) -> np.ndarray:
        m = x.shape[0]
        if self.kind == "vector":
            return x.reshape(m, -1).astype(np.float64)
        if self.kind == "chw":
            return x.transpose(0, 2, 3, 1).astype(np.float64)
        return x.reshape(m, self.h, self.w, 1).astype(np.float64)

    def from_work(self, p: np.ndarray) -> np.ndarray:
        m = p.shape[0]
        if self.kind == "chw":
            return np.ascontiguousarray(p.transpose(0, 3, 1, 2))
        return p.reshape(m, *self.shape)


def _bounds(ds: Dataset) -> tuple[float, float, bool]:
    """The interval injected values live in, and whether the data are integer-valued."""
    lo, hi, integer, _ = _range_stats(ds.inputs)
    if ds.suggested_scaling == "range" and lo >= 0:
        return 0.0, float(ds.value_range), integer
    return lo, (hi if hi > lo else lo + 1.0), integer


def _display(made: np.ndarray, lo: float, hi: float, target: tuple[int, ...], layout: _Layout) -> np.ndarray:
    """uint8 display images of the working array, shaped like the data set's own display images."""
    span = hi - lo
    pics = np.rint(np.clip((made - lo) / span, 0, 1) * 255).astype(np.uint8)
    if layout.vector:
        pics = pics.reshape(len(pics), 1, -1, 1)
    if pics.shape[-1] == 1:
        pics = pics[..., 0]
    elif pics.shape[-1] == 2:
        pics = pics[..., 0]
    elif pics.shape[-1] > 3:
        pics = pics[..., :3]
    if pics.shape[1:] == tuple(target):
        return pics
    return np.stack([_resize(p, target) for p in pics])


def _resize(pic: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    """One uint8 picture [h, w] or [h, w, 3] resized and converted to ``target`` ([H, W] or [H, W, 3])."""
    from PIL import Image

    im = Image.fromarray(pic)
    im = im.convert("RGB" if len(target) == 3 else "L")
    h, w = target[0], target[1]
    if (im.height, im.width) != (h, w):
        shrink = im.height > h and im.width > w
        im = im.resize((w, h), Image.Resampling.BOX if shrink else Image.Resampling.BILINEAR)
    out = np.asarray(im)
    if len(target) == 3 and target[2] != 3:
        out = np.repeat(out[..., :1], target[2], axis=2)
    return out


# --------------------------------------------------------------------------- the kinds


def _moments(dataset: Dataset, layout: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation per feature (vectors) or per channel (pictures), shaped to broadcast
    against the working array; accumulated in float64 over chunks of examples, no full copy."""
    n = len(dataset)
    total = sq = None
    count = 0
    for start in range(0, n, 4096):
        chunk = layout.to_work(dataset.inputs[start:start + 4096])
        axes = (0,) if layout.vector else (0, 1, 2)
        s1, s2 = chunk.sum(axis=axes, keepdims=True), (chunk * chunk).sum(axis=axes, keepdims=True)
        total, sq = (s1, s2) if total is None else (total + s1, sq + s2)
        count += chunk.size // s1.size
    mean = total / count
    return mean, np.sqrt(np.maximum(sq / count - mean * mean, 0.0))


def _gaussian(x: np.ndarray, *, rng: np.random.Generator, dataset: Dataset, layout: _Layout, **_: Any) -> np.ndarray:
    mean, std = _moments(dataset, layout)
    return mean + std * rng.standard_normal(x.shape)


def _uniform(x: np.ndarray, *, rng: np.random.Generator, lo: float, hi: float, dataset: Dataset, layout: _Layout,
             **_: Any) -> np.ndarray:
    if layout.vector:  # each feature over its own observed range
        flat = dataset.inputs.reshape(len(dataset), -1)
        lo, hi = flat.min(axis=0).astype(np.float64), flat.max(axis=0).astype(np.float64)
    return lo + (hi - lo) * rng.random(x.shape)


def _inverted(x: np.ndarray, *, lo: float, hi: float, **_: Any) -> np.ndarray:
    return lo + hi - x


def _rotated(x: np.ndarray, *, rng: np.random.Generator, layout: _Layout, **_: Any) -> np.ndarray:
    turns = rng.integers(1, 4, size=len(x)) if layout.h == layout.w else np.full(len(x), 2)
    return np.stack([np.rot90(p, int(t), axes=(0, 1)) for p, t in zip(x, turns)])


def _shuffled(x: np.ndarray, *, rng: np.random.Generator, layout: _Layout, **_: Any) -> np.ndarray:
    out = np.empty_like(x)
    if layout.vector:
        for i, v in enumerate(x):
            out[i] = v[rng.permutation(v.shape[0])]
        return out
    m, h, w, c = x.shape
    for i, p in enumerate(x.reshape(m, h * w, c)):
        out[i] = p[rng.permutation(h * w)].reshape(h, w, c)
    return out


def _foreign(x: np.ndarray, *, rng: np.random.Generator, lo: float, hi: float, layout: _Layout,
             source: Dataset | str | os.PathLike | None, **_: Any) -> np.ndarray:
    m, h, w, c = x.shape
    target = (h, w) if c == 1 else (h, w, 3)
    if source is not None:
        pics = _from_source(source, m, target, rng)
    elif (h, w, c) == (28, 28, 1):
        pics = _digits_as_mnist(m, rng)
    else:
        pics = _photo_patches(m, target, rng)
    pics = pics.astype(np.float64)
    if pics.ndim == 3:
        pics = pics[..., None]
    if pics.shape[-1] != c:  # 2 or 4 channels: repeat grey / pad with the first channel
        pics = np.concatenate([pics, np.repeat(pics[..., :1], c, axis=-1)], axis=-1)[..., :c]
    return lo + pics / 255.0 * (hi - lo)


def _from_source(source: Dataset | str | os.PathLike, m: int, target: tuple[int, ...],
                 rng: np.random.Generator) -> np.ndarray:
    if not isinstance(source, Dataset):
        from .data import load_mnist

        source = load_mnist(source)
    pick = rng.choice(len(source), size=m, replace=m > len(source))
    pics = source.images[pick]
    if pics.shape[1:3] == (28, 28) and target[:2] == (8, 8):
        pics = pics[:, 4:24, 4:24]  # MNIST digits fill the central 20x20 box, as the 8x8 digits fill theirs
    return np.stack([_resize(p, target) for p in pics])


def _digits_as_mnist(m: int, rng: np.random.Generator) -> np.ndarray:
    """scikit-learn's 8x8 digits upscaled to 20x20 and centred in a 28x28 frame, like MNIST's digits."""
    from .data import load_digits

    digits = load_digits().images
    pick = rng.choice(len(digits), size=m, replace=m > len(digits))
    out = np.zeros((m, 28, 28), dtype=np.uint8)
    for i, p in enumerate(digits[pick]):
        out[i, 4:24, 4:24] = _resize(p, (20, 20))
    return out


def _photo_patches(m: int, target: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random crops of scikit-learn's two sample photographs, resized to ``target``."""
    from sklearn.datasets import load_sample_images

    photos = load_sample_images().images
    h, w = target[0], target[1]
    out = np.empty((m, *target), dtype=np.uint8)
    for i in range(m):
        photo = photos[int(rng.integers(len(photos)))]
        ph, pw = photo.shape[:2]
        scale = min(ph / h, pw / w)  # the largest crop of the target's aspect that fits
        frac = rng.uniform(0.15, 0.6)
        ch, cw = max(1, int(round(h * scale * frac))), max(1, int(round(w * scale * frac)))
        top, left = int(rng.integers(0, ph - ch + 1)), int(rng.integers(0, pw - cw + 1))
        out[i] = _resize(np.ascontiguousarray(photo[top:top + ch, left:left + cw]), target)
    return out


_MAKERS = {
    "gaussian": _gaussian,
    "uniform": _uniform,
    "inverted": _inverted,
    "rotated": _rotated,
    "shuffled": _shuffled,
    "foreign": _foreign,
}
