"""The field's per-example hardness scores, computed from the full-data training the proxy suite runs.

The C-score's neighbours in the literature, each computed from M full-data models trained
together through :func:`cscore_lab.trainer.train_group` (different seeds; averaged over the
M models where the score asks for several seeds), and each oriented like the C-score,
**higher = more regular**:

=============================== =============================================================
column                          definition (source)
=============================== =============================================================
``aum``                         area under the margin: mean over the training records of the
                                assigned-class logit minus the largest other logit
                                (Pleiss et al., NeurIPS 2020), on logits as the paper does
``el2n_e<k>``                   minus the EL2N score ``||softmax(f(x)) - onehot(y)||_2`` after
                                epoch k, averaged over seeds (Paul et al., NeurIPS 2021)
``grand_e<k>``                  minus the GraNd score, the norm of the per-example loss
                                gradient w.r.t. *all* parameters after epoch k, averaged over
                                seeds (Paul et al., NeurIPS 2021)
``vog``                         minus the class-normalised variance of gradients: per-pixel
                                std across checkpoints of d(label logit)/d(input), averaged
                                over input dims (Agarwal et al., CVPR 2022)
``datamap_confidence``          mean over records of p(label) (Swayamdipta et al., EMNLP 2020)
``datamap_variability``         minus the std over records of p(label) (same paper)
``dataiq_aleatoric``            minus the mean over records of p(1 - p) (Seedat et al.,
                                NeurIPS 2022)
``final_loss``                  minus the cross-entropy after the last epoch
``final_margin``                label logit minus the largest other logit after the last epoch
``prototypicality_e<k>``        minus the cosine distance of the penultimate features after
                                epoch k to the example's class centroid (Sorscher et al.,
                                NeurIPS 2022, with class centroids for their k-means ones)
``cleanlab_self_confidence``    out-of-sample p(label) from K-fold cross-validation with the
                                same recipe, scored by cleanlab (Northcutt et al., JAIR 2021)
``cleanlab_label_issue``        0 where cleanlab's ``find_label_issues`` flags the label, else 1
=============================== =============================================================

How the pieces fit
------------------
* **Recorders** (``train_group`` callbacks, each in memory that does not grow with the
  number of classes): :class:`TrajectoryRecorder` keeps three numbers per (record, model,
  example) — the label logit, the largest other logit and the log-probability of the label —
  after every epoch, or every ``every_steps`` optimizer steps through the trainer's per-step
  hook (``on_step(step, group)``); :class:`NormRecorder` keeps the EL2N error norm and the exact
  per-example gradient norm after chosen epochs; :class:`InputGradientRecorder` keeps running
  moments (Welford) of the input gradients across checkpoints for VoG;
  :class:`~cscore_lab.proxies.dynamics.FeatureRecorder` keeps penultimate features.
  :class:`HardnessRecorder` bundles what a choice of score families needs into one callback.
* **Scores** are pure NumPy functions of the recorded arrays (:func:`aum`, :func:`el2n`,
  :func:`grand`, :func:`vog`, :func:`datamap_confidence`, ...), validated once.
* :func:`hardness_scores` is the one entry point: one full-data training with a
  :class:`HardnessRecorder` attached, plus the K fold models cleanlab needs
  (:func:`out_of_sample_probabilities`), which must be trained apart.

Memory: the trajectory holds ``12 * R * M * N`` bytes (R records), the VoG moments
``8 * M * N * D`` (D input dims; 1.1 GB for MNIST with M = 3), features ``4 * M * N * H`` per
prototype epoch. Scores with several definitions in use are pinned to their paper and the
choice is stated in each function's docstring.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

__all__ = [
    "HARDNESS_FAMILIES", "CLEANLAB_EXTRA",
    "Trajectory", "TrajectoryRecorder", "NormRecorder", "InputGradientRecorder", "HardnessRecorder",
    "aum", "el2n", "grand", "vog", "vog_raw", "datamap_confidence", "datamap_variability",
    "dataiq_aleatoric", "dataiq_epistemic", "final_loss", "final_margin", "prototypicality",
    "cleanlab_scores", "cleanlab_hardness", "out_of_sample_probabilities", "cross_validation_folds",
    "gradient_norms", "error_norms", "input_gradients", "default_early_epoch", "hardness_scores",
]

#: Score families :func:`hardness_scores` and :class:`HardnessRecorder` know, in column order.
HARDNESS_FAMILIES: tuple[str, ...] = ("aum", "el2n", "grand", "vog", "datamap", "dataiq", "final", "prototypicality",
                                      "cleanlab")
#: The pip extra that installs cleanlab (``pip install 'cscore-lab[bench]'``).
CLEANLAB_EXTRA = "bench"

_RECORDED = tuple(f for f in HARDNESS_FAMILIES if f != "cleanlab")  # what one full-data training gives
_TRAJECTORY = ("aum", "datamap", "dataiq", "final")
_GRAD_BUDGET = 1 << 28  # bytes of per-example parameter gradients held at once (generic models)


# --------------------------------------------------------------------------- validation


def _array(name: str, value: Any, ndim: int, what: str, *, finite: bool = True) -> np.ndarray:
    a = np.asarray(value)
    if a.dtype.kind not in "fiub":
        raise TypeError(f"{name} must be a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64, copy=False)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {what}, got shape {a.shape}")
    if 0 in a.shape:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    if finite and not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).sum())
        raise ValueError(f"{name} holds {bad} non-finite value(s); expected finite numbers")
    return a


def _probabilities(name: str, value: Any, ndim: int, what: str) -> np.ndarray:
    p = _array(name, value, ndim, what)
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"{name} must hold probabilities in [0, 1], got values in [{p.min():g}, {p.max():g}]")
    return p


def _labels(labels: Any, n: int, num_classes: int | None = None) -> np.ndarray:
    y = np.asarray(labels)
    if y.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers, got dtype {y.dtype}")
    if y.shape != (n,):
        raise ValueError(f"labels has shape {y.shape}, expected ({n},): one label per example")
    if y.min() < 0 or (num_classes is not None and y.max() >= num_classes):
        hi = "" if num_classes is None else f" and < {num_classes}"
        raise ValueError(f"labels must be >= 0{hi}, got values in [{y.min()}, {y.max()}]")
    return y.astype(np.int64, copy=False)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _epoch_list(name: str, epochs: Any, total: int) -> tuple[int, ...]:
    seq = (epochs,) if isinstance(epochs, (int, np.integer)) and not isinstance(epochs, bool) else tuple(epochs)
    if not seq:
        raise ValueError(f"{name} must name at least one epoch")
    for e in seq:
        if isinstance(e, bool) or not isinstance(e, (int, np.integer)) or not 1 <= e <= total:
            raise ValueError(f"{name} must be epochs in 1..{total} (epochs count from 1), got {e!r}")
    return tuple(sorted({int(e) for e in seq}))


def _families(families: Any, allowed: Sequence[str]) -> tuple[str, ...]:
    given = (families,) if isinstance(families, str) else tuple(families)
    unknown = [f for f in given if f not in allowed]
    if unknown or not given:
        raise ValueError(f"unknown hardness score families {unknown or given!r}; choose from {list(allowed)}")
    return tuple(f for f in allowed if f in given)


def default_early_epoch(epochs: int) -> int:
    """The epoch EL2N and GraNd are read at by default: 10% of training, at least epoch 1.

    Paul et al. (2021) read EL2N at epoch 20 of 200 on CIFAR-10 and GraNd at initialisation
    or early in training; we keep their *fraction* of training. For the short presets that
    is epoch 1 (digits-mlp's 12 epochs, mnist-mlp's 10) and epoch 3 for cifar-cnn's 30.
    """
    epochs = _positive_int("epochs", epochs)
    return max(1, math.floor(epochs / 10 + 0.5))


# --------------------------------------------------------------------------- scores (pure NumPy)


def aum(margin: np.ndarray) -> np.ndarray:
    """Area under the margin (Pleiss, Zhang, Elenberg & Weinberger, NeurIPS 2020).

    The margin of example (x, y) at record t is ``z_y(t) - max_{c != y} z_c(t)`` on the
    **logits** z (the paper's definition; some implementations use softmax outputs instead),
    and AUM is its mean over the training records; we average the per-model AUMs over the M
    models. The paper takes each example's logits from its mini-batch forward pass during
    every epoch; we take them for all examples after each epoch (or every k steps), the same
    trajectory sampled at the record times. Mislabeled examples have a negative AUM.

    Parameters
    ----------
    margin : float array [R, M, N]
        Margins at R records of M models (:attr:`Trajectory.margin`).

    Returns
    -------
    numpy.ndarray
        float64 [N]; higher = more regular (no negation needed).
    """
    m = _array("margin", margin, 3, "[records, models, examples]")
    return m.mean(axis=0).mean(axis=0)


def el2n(error_norm: np.ndarray) -> np.ndarray:
    """Negated EL2N score (Paul, Ganguli & Dziugaite, NeurIPS 2021).

    EL2N is ``E_w ||p(w_t, x) - onehot(y)||_2``: the L2 norm of the softmax output minus the
    one-hot label, for weights w_t early in training (epoch t), in expectation over
    initialisations; we average the norms (not the outputs) over the M seeds.

    Parameters
    ----------
    error_norm : float array [M, N]
        ``||softmax - onehot||_2`` of each model on each example at one epoch
        (:func:`error_norms`, kept by :class:`NormRecorder`); each value in [0, sqrt(2)].

    Returns
    -------
    numpy.ndarray
        float64 [N]: minus the mean over models; higher = more regular.
    """
    e = _array("error_norm", error_norm, 2, "[models, examples]")
    if e.min() < 0 or e.max() > math.sqrt(2) + 1e-6:
        raise ValueError(f"error_norm must lie in [0, sqrt(2)] (a norm of softmax - onehot), got [{e.min():g}, {e.max():g}]")
    return -e.mean(axis=0)


def grand(grad_norm: np.ndarray) -> np.ndarray:
    """Negated GraNd score (Paul, Ganguli & Dziugaite, NeurIPS 2021).

    GraNd is ``E_w ||grad_w loss(f(w_t, x), y)||_2``: the norm of the per-example
    cross-entropy gradient with respect to **all** parameters (weights and biases of every
    layer, not only the last one, as some implementations restrict it to), early in training,
    in expectation over initialisations; we average the norms over the M seeds.

    Parameters
    ----------
    grad_norm : float array [M, N]
        Per-example gradient norms of each model at one epoch (:func:`gradient_norms`,
        kept by :class:`NormRecorder`).

    Returns
    -------
    numpy.ndarray
        float64 [N]: minus the mean over models; higher = more regular.
    """
    g = _array("grad_norm", grad_norm, 2, "[models, examples]")
    if g.min() < 0:
        raise ValueError(f"grad_norm must be >= 0 (a norm), got a minimum of {g.min():g}")
    return -g.mean(axis=0)


def vog_raw(input_grads: np.ndarray) -> np.ndarray:
    """Per-model, unnormalised variance of gradients from the checkpoints' input gradients.

    Agarwal, D'souza & Hooker (CVPR 2022), eq. 1-2: with ``S_t`` the gradient of the
    pre-softmax score of the label with respect to the input at checkpoint t (of K), the
    per-dimension spread is ``sqrt(1/K sum_t (S_t - mean_t S_t)^2)`` (a population std), and
    VoG is its mean over the input dimensions. Image gradients ``[K, M, N, C, H, W]`` are
    first averaged over the colour channels, as the authors' code does before taking the
    spread (``np.mean(grad, axis=-1)`` in their ImageNet script). This is the reference
    computation :class:`InputGradientRecorder` streams with running moments.

    Parameters
    ----------
    input_grads : float array [K, M, N, D] or [K, M, N, C, H, W]
        K >= 2 checkpoints of M models' input gradients on N examples.

    Returns
    -------
    numpy.ndarray
        float64 [M, N], before class normalisation (pass it to :func:`vog`).
    """
    g = np.asarray(input_grads)
    if g.ndim not in (4, 6):
        raise ValueError(f"input_grads must be [checkpoints, models, examples, dims] or [..., channels, height, "
                         f"width], got shape {g.shape}")
    if g.ndim == 6:
        g = g.mean(axis=3)
    g = _array("input_grads", g.reshape(g.shape[0], g.shape[1], g.shape[2], -1), 4, "[K, M, N, D]")
    if g.shape[0] < 2:
        raise ValueError(f"VoG needs at least 2 checkpoints, got {g.shape[0]}")
    return g.std(axis=0).mean(axis=-1)


def vog(raw: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Negated, class-normalised variance of gradients (Agarwal, D'souza & Hooker, CVPR 2022).

    The paper normalises each example's VoG by the mean and (population) standard deviation
    of the VoG of its class, ``(v - mu_y) / sigma_y``, so that scores are comparable across
    classes; a class whose VoG does not vary gets 0. We normalise per model and average the
    normalised scores over the M models. High VoG marks hard, atypical or mislabeled
    examples; the negation makes higher = more regular.

    Parameters
    ----------
    raw : float array [M, N]
        Unnormalised VoG (:func:`vog_raw`, or :meth:`InputGradientRecorder.raw`).
    labels : int array [N]

    Returns
    -------
    numpy.ndarray
        float64 [N].
    """
    v = _array("raw", raw, 2, "[models, examples]")
    if v.min() < 0:
        raise ValueError(f"raw VoG must be >= 0 (a mean of standard deviations), got {v.min():g}")
    y = _labels(labels, v.shape[1])
    out = np.zeros_like(v)
    for c in np.unique(y):
        sel = y == c
        mu = v[:, sel].mean(axis=1, keepdims=True)
        sd = v[:, sel].std(axis=1, keepdims=True)
        out[:, sel] = np.divide(v[:, sel] - mu, sd, out=np.zeros_like(v[:, sel]), where=sd > 0)
    return -out.mean(axis=0)


def datamap_confidence(label_prob: np.ndarray) -> np.ndarray:
    """Data-map confidence (Swayamdipta et al., *Dataset Cartography*, EMNLP 2020).

    ``mu(x) = 1/E sum_e p_e(y | x)``: the mean over the training records (their: epochs) of
    the probability of the label, averaged over the M models. Higher = more regular.

    Parameters
    ----------
    label_prob : float array [R, M, N]
        p(label) at R records of M models (:attr:`Trajectory.label_prob`).
    """
    p = _probabilities("label_prob", label_prob, 3, "[records, models, examples]")
    return p.mean(axis=0).mean(axis=0)


def datamap_variability(label_prob: np.ndarray) -> np.ndarray:
    """Negated data-map variability (Swayamdipta et al., EMNLP 2020).

    Variability is ``sigma(x) = sqrt(1/E sum_e (p_e(y | x) - mu(x))^2)``, the population std
    over the records of p(label), per model, averaged over the M models.

    Orientation: variability is not monotone in regularity. Easy examples (learned at once)
    have low variability, *ambiguous* ones (the paper's high-variability region, learned and
    unlearned along the way) high, and hard-to-learn ones (often mislabeled) low again. We
    negate it, so that stable learning scores high, because on clean data the ambiguous
    examples are the irregular ones the C-score ranks low; a never-learned mislabeled
    example also scores high here, so read it together with :func:`datamap_confidence`.

    Parameters
    ----------
    label_prob : float array [R, M, N]
    """
    p = _probabilities("label_prob", label_prob, 3, "[records, models, examples]")
    return -p.std(axis=0).mean(axis=0)


def dataiq_aleatoric(label_prob: np.ndarray) -> np.ndarray:
    """Negated Data-IQ aleatoric uncertainty (Seedat, Crabbé, Bica & van der Schaar, NeurIPS 2022).

    ``v_al(x) = 1/E sum_e p_e(y | x) (1 - p_e(y | x))`` over the training records (their:
    checkpoints), per model, averaged over the M models. It is largest for examples whose
    label probability hovers near 1/2 (Data-IQ's *ambiguous* group); the negation makes
    higher = more regular (like the data-map variability, never-learned examples score high).

    Parameters
    ----------
    label_prob : float array [R, M, N]
    """
    p = _probabilities("label_prob", label_prob, 3, "[records, models, examples]")
    return -(p * (1.0 - p)).mean(axis=0).mean(axis=0)


def dataiq_epistemic(label_prob: np.ndarray) -> np.ndarray:
    """Negated Data-IQ epistemic uncertainty (Seedat et al., NeurIPS 2022).

    ``v_ep(x) = 1/E sum_e (p_e(y | x) - mean_e p_e)^2``, the variance over the records of
    p(label), averaged over the M models. Per model it is the square of the data-map
    variability, so for one model it ranks examples exactly as :func:`datamap_variability`
    does; :func:`hardness_scores` therefore leaves it out of the table.

    Parameters
    ----------
    label_prob : float array [R, M, N]
    """
    p = _probabilities("label_prob", label_prob, 3, "[records, models, examples]")
    return -p.var(axis=0).mean(axis=0)


def final_loss(label_logprob: np.ndarray) -> np.ndarray:
    """Minus the cross-entropy loss at the end of training, averaged over the M models.

    Parameters
    ----------
    label_logprob : float array [M, N]
        log p(label) after the last epoch (the last record of :class:`Trajectory`); <= 0.

    Returns
    -------
    numpy.ndarray
        float64 [N]: ``mean_m log p_m(y | x)`` = minus the mean loss; higher = more regular.
    """
    lp = _array("label_logprob", label_logprob, 2, "[models, examples]")
    if lp.max() > 1e-6:
        raise ValueError(f"label_logprob must be <= 0 (a log-probability), got a maximum of {lp.max():g}")
    return lp.mean(axis=0)


def final_margin(margin: np.ndarray) -> np.ndarray:
    """The margin at the end of training, label logit minus the largest other logit, averaged over models.

    Parameters
    ----------
    margin : float array [M, N]
        Margins after the last epoch. Higher = more regular; negative = misclassified.
    """
    return _array("margin", margin, 2, "[models, examples]").mean(axis=0)


def prototypicality(features: np.ndarray, labels: np.ndarray, *, metric: str = "cosine") -> np.ndarray:
    """Negated distance to the class prototype in hidden space (Sorscher et al., NeurIPS 2022).

    Sorscher, Geirhos, Shekhar, Ganguli & Morcos (*Beyond neural scaling laws*) cluster the
    embeddings of a self-supervised model with k-means and score each example by its cosine
    distance to the nearest centroid ("prototype"): far = hard. With labels at hand we use
    each class's centroid of the full-data model's penultimate features as its prototype:
    with ``metric="cosine"`` the features are L2-normalised, the centroid is the mean of the
    normalised features of the class (the example itself included, as in k-means), and the
    distance is ``1 - cos(f, centroid)``; ``"euclidean"`` uses raw features and their class
    mean. Per model, averaged over the M models, negated (higher = more regular).

    Parameters
    ----------
    features : float array [M, N, H]
        Penultimate-layer features (:class:`~cscore_lab.proxies.dynamics.FeatureRecorder`).
    labels : int array [N]
    metric : {"cosine", "euclidean"}, default "cosine"

    Returns
    -------
    numpy.ndarray
        float64 [N]. An all-zero feature vector (a dead ReLU layer) has cosine distance 1.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    f = _array("features", features, 3, "[models, examples, hidden]")
    y = _labels(labels, f.shape[1])
    if metric == "cosine":
        norm = np.linalg.norm(f, axis=-1, keepdims=True)
        f = np.divide(f, norm, out=np.zeros_like(f), where=norm > 0)
    dist = np.empty(f.shape[:2])
    for c in np.unique(y):
        sel = y == c
        centre = f[:, sel].mean(axis=1, keepdims=True)  # [M, 1, H]
        if metric == "cosine":
            cn = np.linalg.norm(centre, axis=-1, keepdims=True)
            centre = np.divide(centre, cn, out=np.zeros_like(centre), where=cn > 0)
            dist[:, sel] = 1.0 - (f[:, sel] * centre).sum(axis=-1)
        else:
            dist[:, sel] = np.linalg.norm(f[:, sel] - centre, axis=-1)
    return -dist.mean(axis=0)


# --------------------------------------------------------------------------- what one record keeps


def _label_index(logits, y):
    return y.view(1, -1, 1).expand(logits.shape[0], -1, 1)


def _summarise(logits, y):
    """(label logit, largest other logit, log p(label)), each [M, n] float32, from logits [M, n, C]."""
    import torch

    logits = logits.double()  # float64 for the log-sum-exp: a learned example's tiny loss keeps its digits
    idx = _label_index(logits, y)
    label = logits.gather(-1, idx).squeeze(-1)
    other = logits.scatter(-1, idx, float("-inf")).amax(dim=-1)
    logprob = (label - torch.logsumexp(logits, dim=-1)).clamp_max_(0.0)
    return label.float(), other.float(), logprob.float()


def _error_vector(logits, y):
    """softmax - onehot [M, n, C] with the label entry as minus the other classes' mass (no cancellation)."""
    p = logits.float().softmax(dim=-1)
    idx = _label_index(p, y)
    p = p.scatter(-1, idx, 0.0)
    return p.scatter(-1, idx, -p.sum(dim=-1, keepdim=True))


@dataclass
class Trajectory:
    """What :class:`TrajectoryRecorder` keeps: three numbers per (record, model, example).

    Attributes
    ----------
    epochs : float64 [R]
        When each record was taken, in epochs (fractional when recorded every k steps).
    label_logit, other_logit : float32 [R, M, N]
        The label's logit and the largest logit of any other class.
    label_logprob : float32 [R, M, N]
        log softmax probability of the label (kept as a log, so ``1 - p`` of a learned
        example and its loss keep their precision).
    """

    epochs: np.ndarray
    label_logit: np.ndarray
    other_logit: np.ndarray
    label_logprob: np.ndarray

    def __post_init__(self) -> None:
        self.epochs = np.asarray(self.epochs, dtype=np.float64)
        arrays = [np.asarray(getattr(self, n), dtype=np.float32) for n in ("label_logit", "other_logit", "label_logprob")]
        shape = arrays[0].shape
        if len(shape) != 3 or 0 in shape:
            raise ValueError(f"label_logit must be [records, models, examples] and non-empty, got shape {shape}")
        for name, a in zip(("other_logit", "label_logprob"), arrays[1:]):
            if a.shape != shape:
                raise ValueError(f"{name} has shape {a.shape}, expected {shape} like label_logit")
        if self.epochs.shape != (shape[0],):
            raise ValueError(f"epochs has shape {self.epochs.shape}, expected ({shape[0]},): one time per record")
        if np.any(np.diff(self.epochs) <= 0):
            raise ValueError(f"record times must increase, got {self.epochs.tolist()}")
        self.label_logit, self.other_logit, self.label_logprob = arrays

    @classmethod
    def from_logits(cls, logits: Any, labels: Any, epochs: Sequence[float]) -> "Trajectory":
        """The trajectory of full logits ``[R, M, N, C]`` (the reduction the recorder applies at each record)."""
        import torch

        z = torch.as_tensor(np.asarray(logits, dtype=np.float32))
        if z.ndim != 4 or z.shape[-1] < 2:
            raise ValueError(f"logits must be [records, models, examples, classes >= 2], got shape {tuple(z.shape)}")
        y = torch.from_numpy(_labels(labels, z.shape[2], z.shape[3]))
        parts = [_summarise(z[r], y) for r in range(z.shape[0])]
        return cls(epochs, *(np.stack([p[i].numpy() for p in parts]) for i in range(3)))

    @property
    def num_records(self) -> int:
        return int(self.label_logit.shape[0])

    @property
    def num_models(self) -> int:
        return int(self.label_logit.shape[1])

    def __len__(self) -> int:
        return int(self.label_logit.shape[2])

    @property
    def margin(self) -> np.ndarray:
        """float64 [R, M, N]: label logit minus the largest other logit."""
        return self.label_logit.astype(np.float64) - self.other_logit

    @property
    def label_prob(self) -> np.ndarray:
        """float64 [R, M, N]: softmax probability of the label."""
        return np.exp(self.label_logprob.astype(np.float64))

    def scores(self, families: Sequence[str] = _TRAJECTORY) -> dict[str, np.ndarray]:
        """The trajectory's columns (``aum``, ``datamap_*``, ``dataiq_aleatoric``, ``final_*``) for ``families``."""
        families = _families(families, _TRAJECTORY)
        out: dict[str, np.ndarray] = {}
        p = self.label_prob if ("datamap" in families or "dataiq" in families) else None
        if "aum" in families:
            out["aum"] = aum(self.margin)
        if "datamap" in families:
            out["datamap_confidence"] = datamap_confidence(p)
            out["datamap_variability"] = datamap_variability(p)
        if "dataiq" in families:
            out["dataiq_aleatoric"] = dataiq_aleatoric(p)
        if "final" in families:
            out["final_loss"] = final_loss(self.label_logprob[-1])
            out["final_margin"] = final_margin(self.margin[-1])
        return out


# --------------------------------------------------------------------------- per-example gradients


def _group_kind(group) -> str:
    from ..models import StackedMLP, StackedModules

    if isinstance(group, StackedMLP):
        return "mlp"
    if isinstance(group, StackedModules):
        return "modules"
    raise TypeError(f"per-example gradients need a StackedMLP or StackedModules group, got {type(group).__name__}")


def _mlp_forward(group, xc):
    """Inputs of every layer ([n, d] for the first, then [M, n, h]) and the logits [M, n, C]."""
    import torch

    acts = [xc]
    h = xc
    for w, b in zip(group.weights[:-1], group.biases[:-1]):
        h = torch.matmul(h, w.transpose(1, 2)).add_(b).relu_()
        acts.append(h)
    return acts, torch.matmul(h, group.weights[-1].transpose(1, 2)).add_(group.biases[-1])


def _modules_call(group, params, x, same_input: bool):
    from torch.func import functional_call, vmap

    def call(p, b, xi):
        return functional_call(group.base, (p, b), (xi,))

    return vmap(call, in_dims=(0, 0, None if same_input else 0))(params, group.buffers, x)


def error_norms(group, x, y):
    """EL2N's ``||softmax(f(x)) - onehot(y)||_2`` of every model on every example: torch float32 [M, N].

    ``1 - p(label)`` is summed from the other classes' probabilities, so a learned example's
    tiny norm keeps its relative precision.
    """
    import torch

    with torch.no_grad():
        return torch.linalg.vector_norm(_error_vector(group.logits(x), y), dim=-1)


def gradient_norms(group, x, y):
    """Exact per-example norms of the cross-entropy gradient w.r.t. all parameters: torch float32 [M, N].

    For :class:`~cscore_lab.models.StackedMLP` this is exact and cheap: the gradient of a
    layer with input ``a`` and back-propagated error ``delta`` (d loss / d pre-activation) is
    the outer product ``delta a^T`` for the weights and ``delta`` for the bias, so its squared
    norm is ``||delta||^2 (||a||^2 + 1)``; summing over layers needs one batched backward
    pass and no per-example gradient is ever formed. For any other architecture
    (:class:`~cscore_lab.models.StackedModules`) per-example gradients are computed with
    ``torch.func`` (``vmap`` over models of ``vmap`` over examples of ``grad``) in chunks that
    hold at most 256 MB of gradients. The loss is one example's cross-entropy (not divided by a
    batch size); weight decay is not part of it. BatchNorm layers (switched to batch statistics
    in stacked groups) see each example alone.
    """
    import torch

    kind = _group_kind(group)
    out = []
    if kind == "mlp":
        from ..models import EVAL_CHUNK

        with torch.no_grad():
            for xc, yc in zip(x.split(EVAL_CHUNK), y.split(EVAL_CHUNK)):
                acts, logits = _mlp_forward(group, xc)
                delta = _error_vector(logits, yc)
                sq = torch.zeros(delta.shape[:2], device=x.device)
                for layer in reversed(range(len(group.weights))):
                    a = acts[layer]
                    sq += delta.square().sum(dim=-1) * (a.square().sum(dim=-1) + 1.0)
                    if layer > 0:
                        delta = torch.bmm(delta, group.weights[layer]) * (a > 0)
                out.append(sq.sqrt_())
        return torch.cat(out, dim=1)

    import torch.nn.functional as F
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in group.params.items()}
    per_model = sum(v[0].numel() for v in params.values())
    chunk = int(max(1, min(1024, _GRAD_BUDGET // (4 * group.num_models * per_model))))

    def loss(p, b, xi, yi):
        return F.cross_entropy(functional_call(group.base, (p, b), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_example = vmap(vmap(grad(loss), in_dims=(None, None, 0, 0)), in_dims=(0, 0, None, None))
    for xc, yc in zip(x.split(chunk), y.split(chunk)):
        grads = per_example(params, group.buffers, xc, yc)  # name -> [M, n, *shape]
        sq = sum(g.reshape(g.shape[0], g.shape[1], -1).square().sum(dim=-1) for g in grads.values())
        out.append(sq.sqrt().detach())
    return torch.cat(out, dim=1)


def input_gradients(group, x, y):
    """Gradient of the label's logit (pre-softmax) w.r.t. the input, per model: torch float32 [M, N, ...].

    What VoG (Agarwal et al., 2022) tracks across checkpoints. Exact batched backward for
    :class:`~cscore_lab.models.StackedMLP`; autograd through ``torch.func`` for other groups
    (each example's logit depends only on its own input, so one backward of their sum gives
    every example's gradient, as long as no layer mixes examples).
    """
    import torch

    kind = _group_kind(group)
    out = []
    if kind == "mlp":
        from ..models import EVAL_CHUNK

        with torch.no_grad():
            for xc, yc in zip(x.split(EVAL_CHUNK), y.split(EVAL_CHUNK)):
                acts, logits = _mlp_forward(group, xc)
                delta = torch.zeros_like(logits).scatter_(-1, _label_index(logits, yc), 1.0)
                for layer in reversed(range(1, len(group.weights))):  # back to the first layer's output
                    delta = torch.bmm(delta, group.weights[layer]) * (acts[layer] > 0)
                out.append(torch.bmm(delta, group.weights[0]))
        return torch.cat(out, dim=1)

    from ..models import EVAL_CHUNK

    params = {k: v.detach() for k, v in group.params.items()}
    for xc, yc in zip(x.split(EVAL_CHUNK // 4), y.split(EVAL_CHUNK // 4)):
        xr = xc.unsqueeze(0).expand(group.num_models, *xc.shape).clone().requires_grad_(True)
        with torch.enable_grad():
            logits = _modules_call(group, params, xr, same_input=False)
            picked = logits.gather(-1, _label_index(logits, yc)).sum()
            (gx,) = torch.autograd.grad(picked, xr)
        out.append(gx.detach())
    return torch.cat(out, dim=1)


# --------------------------------------------------------------------------- recorders


class TrajectoryRecorder:
    """Training callback keeping label logit, largest other logit and log p(label) of every example.

    Parameters
    ----------
    x, y : torch.Tensor
        Inputs as the models see them and integer labels, on the training device.
    every_steps : int, optional
        Record every ``every_steps`` optimizer steps through the trainer's per-step hook
        (``on_step(step, group)``, steps counted from 1 over the whole training) instead of
        after every epoch; a last record is added after the final epoch if the steps did not
        end there. Needs ``steps_per_epoch`` and ``epochs``.
    steps_per_epoch : int, optional
        Optimizer steps per epoch (``ceil(train size / batch size)``): converts steps to epochs.
    epochs : int, optional
        Total epochs of the training (for the final record in step mode).

    Notes
    -----
    Memory: 12 bytes per (record, model, example), independent of the number of classes.
    """

    def __init__(self, x, y, *, every_steps: int | None = None, steps_per_epoch: int | None = None,
                 epochs: int | None = None):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
        self.x, self.y = x, y
        self.every_steps = None if every_steps is None else _positive_int("every_steps", every_steps)
        if self.every_steps is not None and (steps_per_epoch is None or epochs is None):
            raise ValueError("recording every k steps needs steps_per_epoch and epochs (to place records in epochs)")
        self.steps_per_epoch = None if steps_per_epoch is None else _positive_int("steps_per_epoch", steps_per_epoch)
        self.epochs = None if epochs is None else _positive_int("epochs", epochs)
        self._times: list[float] = []
        self._records: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._last_step = 0

    def _record(self, when: float, group) -> None:
        import torch

        with torch.no_grad():
            parts = _summarise(group.logits(self.x), self.y)
        self._times.append(float(when))
        self._records.append(tuple(p.cpu().numpy() for p in parts))

    def on_step(self, step: int, group) -> None:
        if self.every_steps is None or step <= self._last_step or step % self.every_steps:
            return
        self._last_step = int(step)
        self._record(step / self.steps_per_epoch, group)

    def on_epoch_end(self, epoch: int, group) -> None:
        if self.every_steps is None:
            self._record(epoch, group)
        elif epoch == self.epochs and self._last_step < epoch * self.steps_per_epoch:
            if not self._times:
                raise RuntimeError(
                    f"every_steps={self.every_steps} was asked for but the trainer never called on_step: this "
                    f"train_group has no per-step hook; record per epoch (every_steps=None) instead")
            self._last_step = epoch * self.steps_per_epoch
            self._record(epoch, group)

    @property
    def num_records(self) -> int:
        return len(self._records)

    def result(self) -> Trajectory:
        """The trajectory recorded so far."""
        if not self._records:
            raise ValueError("nothing was recorded: attach the recorder to train_group and train at least one epoch")
        return Trajectory(np.array(self._times), *(np.stack(r) for r in zip(*self._records)))


class NormRecorder:
    """Training callback keeping EL2N's error norms and GraNd's gradient norms after chosen epochs.

    Parameters
    ----------
    x, y : torch.Tensor
        Inputs as the models see them and labels, on the training device.
    epochs : int or sequence of int
        Epochs (from 1) after which to record.
    gradients : bool, default True
        Also compute the per-example gradient norms (:func:`gradient_norms`); False keeps
        only the error norms (one forward pass).

    Attributes
    ----------
    error_norm, grad_norm : dict of int to float32 [M, N]
    """

    def __init__(self, x, y, epochs, *, gradients: bool = True):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
        self.x, self.y, self.gradients = x, y, bool(gradients)
        self.epochs = _epoch_list("norm epochs", epochs, 10**9)
        self.error_norm: dict[int, np.ndarray] = {}
        self.grad_norm: dict[int, np.ndarray] = {}

    def on_epoch_end(self, epoch: int, group) -> None:
        if epoch not in self.epochs:
            return
        self.error_norm[epoch] = error_norms(group, self.x, self.y).cpu().numpy()
        if self.gradients:
            self.grad_norm[epoch] = gradient_norms(group, self.x, self.y).cpu().numpy()


class InputGradientRecorder:
    """Training callback streaming the moments VoG needs: input gradients across checkpoints, Welford-style.

    At each checkpoint epoch the gradient of the label's logit with respect to the input
    (:func:`input_gradients`; averaged over colour channels for images) updates a running mean
    and sum of squared deviations per (model, example, input dim), so memory is ``8 * M * N * D``
    bytes whatever the number of checkpoints. :meth:`raw` gives the per-model VoG before class normalisation, equal to
    :func:`vog_raw` of the stacked checkpoint gradients.

    Parameters
    ----------
    x, y : torch.Tensor
    epochs : sequence of int
        At least two checkpoint epochs (the paper uses checkpoints spread over training).
    """

    def __init__(self, x, y, epochs):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
        self.x, self.y = x, y
        self.epochs = _epoch_list("VoG checkpoint epochs", epochs, 10**9)
        if len(self.epochs) < 2:
            raise ValueError(f"VoG needs at least 2 checkpoint epochs, got {list(self.epochs)}")
        self.count = 0
        self._mean = None
        self._m2 = None

    def on_epoch_end(self, epoch: int, group) -> None:
        if epoch not in self.epochs:
            return
        g = input_gradients(group, self.x, self.y)
        if g.ndim == 5:  # images [M, N, C, H, W]: average over the colour channels first (see vog_raw)
            g = g.mean(dim=2)
        g = g.reshape(g.shape[0], g.shape[1], -1)
        self.count += 1
        if self._mean is None:
            self._mean = g.clone()
            self._m2 = g.new_zeros(g.shape)
            return
        delta = g - self._mean  # Welford, in place: one temporary the size of g
        self._mean.add_(delta, alpha=1.0 / self.count)
        self._m2.addcmul_(delta, g.sub_(self._mean))

    def raw(self) -> np.ndarray:
        """float64 [M, N]: per-model VoG (mean over input dims of the per-dim std across checkpoints)."""
        if self.count < 2:
            raise ValueError(f"VoG needs at least 2 recorded checkpoints, got {self.count}: train through epochs "
                             f"{list(self.epochs)} with this recorder attached")
        return (self._m2 / self.count).clamp_min_(0).sqrt_().mean(dim=-1).double().cpu().numpy()


class HardnessRecorder:
    """One training callback that records what the chosen hardness score families need.

    Attach it to the full-data training (:func:`cscore_lab.trainer.train_group`) and call
    :meth:`scores` afterwards. The cleanlab family needs its own K fold trainings and is
    not recorded here (see :func:`cleanlab_hardness`).

    Parameters
    ----------
    x, y : torch.Tensor
        Inputs as the models see them and labels, on the training device.
    epochs : int
        Total epochs of the training (the recipe's).
    early_epoch : int, optional
        Epoch for EL2N and GraNd (default :func:`default_early_epoch`).
    families : sequence of str
        Any of ``aum, el2n, grand, vog, datamap, dataiq, final, prototypicality``.
    prototype_epochs : int or sequence of int, optional
        Epochs whose penultimate features give ``prototypicality_e<k>`` (default: the
        early epoch and the last).
    vog_epochs : sequence of int, optional
        VoG checkpoints (default: every epoch; at least 2).
    every_steps : int, optional
        Record the trajectory (AUM, data maps, Data-IQ) every k optimizer steps through the
        trainer's per-step hook instead of after every epoch; needs ``steps_per_epoch``.
    steps_per_epoch : int, optional
    prototype_metric : {"cosine", "euclidean"}

    Notes
    -----
    :meth:`for_recipe` fills ``epochs`` and ``steps_per_epoch`` from a recipe.
    """

    def __init__(self, x, y, *, epochs: int, early_epoch: int | None = None, families: Sequence[str] = _RECORDED,
                 prototype_epochs: Sequence[int] | int | None = None, vog_epochs: Sequence[int] | None = None,
                 every_steps: int | None = None, steps_per_epoch: int | None = None,
                 prototype_metric: str = "cosine"):
        from .dynamics import FeatureRecorder

        self.families = _families(families, _RECORDED)
        self.total_epochs = _positive_int("epochs", epochs)
        if early_epoch is None:
            self.early_epoch = default_early_epoch(self.total_epochs)
        elif isinstance(early_epoch, bool) or not isinstance(early_epoch, (int, np.integer)):
            raise ValueError(f"early_epoch must be one epoch (an integer in 1..{self.total_epochs}), got {early_epoch!r}")
        else:
            self.early_epoch = _epoch_list("early_epoch", early_epoch, self.total_epochs)[0]
        if prototype_metric not in ("cosine", "euclidean"):
            raise ValueError(f"prototype_metric must be 'cosine' or 'euclidean', got {prototype_metric!r}")
        self.prototype_metric = prototype_metric
        self.y = y
        self.trajectory = self.norms = self.input_grads = self.features = None
        if any(f in self.families for f in _TRAJECTORY):
            self.trajectory = TrajectoryRecorder(x, y, every_steps=every_steps, steps_per_epoch=steps_per_epoch,
                                                 epochs=self.total_epochs)
        elif every_steps is not None:
            raise ValueError("every_steps applies to the trajectory families (aum, datamap, dataiq, final); none was chosen")
        if "el2n" in self.families or "grand" in self.families:
            self.norms = NormRecorder(x, y, self.early_epoch, gradients="grand" in self.families)
        if "vog" in self.families:
            if self.total_epochs < 2:
                raise ValueError(f"VoG needs checkpoints from at least 2 epochs but the training has {self.total_epochs}; "
                                 f"leave 'vog' out of families")
            vog_epochs = range(1, self.total_epochs + 1) if vog_epochs is None else vog_epochs
            self.input_grads = InputGradientRecorder(x, y, _epoch_list("vog_epochs", vog_epochs, self.total_epochs))
        if "prototypicality" in self.families:
            pe = (self.early_epoch, self.total_epochs) if prototype_epochs is None else prototype_epochs
            self.features = FeatureRecorder(x, _epoch_list("prototype_epochs", pe, self.total_epochs))
        self._parts = [p for p in (self.trajectory, self.norms, self.input_grads, self.features) if p is not None]

    @classmethod
    def for_recipe(cls, x, y, recipe, *, train_size: int, **options: Any) -> "HardnessRecorder":
        """A recorder for training ``recipe`` on subsets of ``train_size`` examples (fills epochs and steps per epoch)."""
        steps = math.ceil(_positive_int("train_size", train_size) / recipe.batch_size)
        return cls(x, y, epochs=recipe.epochs, steps_per_epoch=steps, **options)

    @property
    def every_steps(self) -> int | None:
        """The trajectory's step interval (None: records after epochs only); read by the trainer's per-step hook."""
        return None if self.trajectory is None else self.trajectory.every_steps

    def on_step(self, step: int, group) -> None:
        if self.trajectory is not None:
            self.trajectory.on_step(step, group)

    def on_epoch_end(self, epoch: int, group) -> None:
        for part in self._parts:
            part.on_epoch_end(epoch, group)

    @property
    def columns(self) -> list[str]:
        """The names :meth:`scores` returns, in order."""
        names = {"aum": ["aum"], "el2n": [f"el2n_e{self.early_epoch}"], "grand": [f"grand_e{self.early_epoch}"],
                 "vog": ["vog"], "datamap": ["datamap_confidence", "datamap_variability"],
                 "dataiq": ["dataiq_aleatoric"], "final": ["final_loss", "final_margin"],
                 "prototypicality": [f"prototypicality_e{e}" for e in (self.features.epochs if self.features else ())]}
        return [c for f in self.families for c in names[f]]

    def scores(self) -> dict[str, np.ndarray]:
        """Every recorded family's columns (float64 [N], higher = more regular), named as in :attr:`columns`."""
        labels = self.y.cpu().numpy()
        got: dict[str, np.ndarray] = {}
        if self.trajectory is not None:
            got.update(self.trajectory.result().scores([f for f in self.families if f in _TRAJECTORY]))
        k = self.early_epoch
        if self.norms is not None:
            if k not in self.norms.error_norm:
                raise ValueError(f"EL2N/GraNd were to be read after epoch {k}, which was not reached")
            if "el2n" in self.families:
                got[f"el2n_e{k}"] = el2n(self.norms.error_norm[k])
            if "grand" in self.families:
                got[f"grand_e{k}"] = grand(self.norms.grad_norm[k])
        if self.input_grads is not None:
            got["vog"] = vog(self.input_grads.raw(), labels)
        if self.features is not None:
            for e in self.features.epochs:
                if e not in self.features.features:
                    raise ValueError(f"prototypicality needs the features after epoch {e}, which was not reached")
                got[f"prototypicality_e{e}"] = prototypicality(self.features.features[e], labels,
                                                               metric=self.prototype_metric)
        return {c: got[c] for c in self.columns}


# --------------------------------------------------------------------------- cleanlab on out-of-sample probabilities


def _cleanlab():
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError as exc:
        raise ImportError(f"the cleanlab scores need cleanlab, which is not installed ({exc}): "
                          f"pip install 'cscore-lab[{CLEANLAB_EXTRA}]'") from None
    return get_label_quality_scores, find_label_issues


def cleanlab_scores(labels: np.ndarray, probs: np.ndarray) -> dict[str, np.ndarray]:
    """cleanlab's self-confidence and label-issue flags from out-of-sample predicted probabilities.

    Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) as implemented by cleanlab:
    ``cleanlab_self_confidence`` is ``get_label_quality_scores(labels, probs,
    method="self_confidence")``, the out-of-sample probability of the given label;
    ``cleanlab_label_issue`` is 0 where ``find_label_issues(labels, probs)`` (its default,
    prune by noise rate) flags the label and 1 elsewhere. Both: higher = more regular.
    The probabilities must be out-of-sample (:func:`out_of_sample_probabilities`), as
    cleanlab requires.

    Parameters
    ----------
    labels : int array [N]
    probs : float array [N, C]
        Rows are probability vectors (summing to 1 within 1e-4).

    Raises
    ------
    ImportError
        When cleanlab is missing, naming the extra that installs it.
    """
    p = _probabilities("probs", probs, 2, "[examples, classes]")
    if np.abs(p.sum(axis=1) - 1).max() > 1e-4:
        raise ValueError(f"probs rows must sum to 1, got sums in [{p.sum(axis=1).min():g}, {p.sum(axis=1).max():g}]")
    y = _labels(labels, p.shape[0], p.shape[1])
    quality_fn, issues_fn = _cleanlab()
    quality = np.asarray(quality_fn(y, p, method="self_confidence"), dtype=np.float64)
    issues = np.asarray(issues_fn(y, p), dtype=bool)
    return {"cleanlab_self_confidence": quality, "cleanlab_label_issue": (~issues).astype(np.float64)}


def cross_validation_folds(labels: np.ndarray, folds: int = 5, *, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """Stratified K folds with training subsets of one common size, as a stacked group needs.

    Examples are shuffled within each class and dealt to the folds in turn, class after
    class, so every fold holds each class's share and fold sizes differ by at most one.
    Fold f's model trains on the examples outside fold f; the complements of the smaller
    folds are one example larger, and lose one example chosen at random, so that all K
    training subsets have ``N - ceil(N / K)`` examples. Every example is out of sample for
    exactly its own fold's model.

    Returns
    -------
    fold_of : int64 [N]
        The fold each example belongs to.
    subsets : list of K sorted int64 arrays
        Training indices of each fold's model (none in its own fold).
    """
    y = np.asarray(labels)
    if y.ndim != 1:
        raise ValueError(f"labels must be 1-D, got shape {y.shape}")
    y = _labels(y, y.shape[0])
    folds = _positive_int("folds", folds)
    n = y.shape[0]
    if folds < 2 or n < 2 * folds:
        raise ValueError(f"folds must be in 2..{n // 2} for {n} examples (each fold model needs data), got {folds}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xF01D5, folds]))
    order = np.lexsort((rng.random(n), y))  # by class, random within a class
    fold_of = np.empty(n, dtype=np.int64)
    fold_of[order] = np.arange(n) % folds
    size = n - int(np.bincount(fold_of, minlength=folds).max())
    subsets = []
    for f in range(folds):
        outside = np.flatnonzero(fold_of != f)
        subsets.append(np.sort(rng.choice(outside, size, replace=False)) if outside.size > size else outside)
    return fold_of, subsets


def _fold_seeds(seed: int, folds: int):
    from ..trainer import ModelSeeds

    seeds = []
    for f in range(folds):  # a seed space of its own: never the holdout estimate's or the suite's models
        children = np.random.SeedSequence([int(seed), 0xC1EA71AB, folds, f]).spawn(3)
        seeds.append(ModelSeeds(*(int(c.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)) for c in children)))
    return seeds


def out_of_sample_probabilities(dataset, recipe="digits-mlp", *, folds: int = 5, seed: int = 0, device: str = "auto",
                                model_factory: Callable[[], Any] | None = None) -> np.ndarray:
    """K-fold cross-validated softmax probabilities of every example, with the same recipe.

    The K fold models (:func:`cross_validation_folds`) are trained together as one stacked
    group through :func:`cscore_lab.trainer.train_group`, each on its own training subset,
    with one torch thread like the estimator's shards; each example's probabilities come from
    the model of its own fold, which never saw it.

    Returns
    -------
    numpy.ndarray
        float64 [N, C].
    """
    import torch

    from ..trainer import prepare_inputs, resolve_device, train_group

    recipe = _recipe(dataset, recipe)
    fold_of, subsets = cross_validation_folds(dataset.labels, folds, seed=seed)
    x, y = prepare_inputs(dataset, recipe, resolve_device(device))
    with _torch_threads(1):
        group = train_group(x, y, subsets, recipe, _fold_seeds(seed, folds), num_classes=dataset.num_classes,
                            model_factory=model_factory)
        with torch.no_grad():
            probs = torch.softmax(group.logits(x).double(), dim=-1).cpu().numpy()  # [K, N, C]
    return probs[fold_of, np.arange(len(dataset))]


def cleanlab_hardness(dataset, recipe="digits-mlp", *, folds: int = 5, seed: int = 0, device: str = "auto",
                      model_factory: Callable[[], Any] | None = None) -> dict[str, np.ndarray]:
    """``cleanlab_self_confidence`` and ``cleanlab_label_issue`` from K-fold out-of-sample probabilities.

    :func:`out_of_sample_probabilities` then :func:`cleanlab_scores`; cleanlab is checked
    before anything is trained.
    """
    _cleanlab()
    probs = out_of_sample_probabilities(dataset, recipe, folds=folds, seed=seed, device=device,
                                        model_factory=model_factory)
    return cleanlab_scores(dataset.labels, probs)


# --------------------------------------------------------------------------- entry point


def _recipe(dataset, recipe):
    from ..data import Dataset
    from ..recipes import Recipe, get_preset

    if not isinstance(dataset, Dataset):
        raise TypeError(f"dataset must be a cscore_lab Dataset, got {type(dataset).__name__}")
    if isinstance(recipe, str):
        recipe = get_preset(recipe).recipe
    if not isinstance(recipe, Recipe):
        raise TypeError(f"recipe must be a Recipe or a preset name, got {type(recipe).__name__}")
    return recipe


def _torch_threads(n: int):
    """The project's thread policy (one torch thread per training), wherever it lives now."""
    try:
        from ..trainer import torch_threads as policy
    except ImportError:  # before the trainer held it
        from ..backends import torch_threads as policy
    return policy(n)


def _reporter(progress) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        return lambda msg: print(f"[hardness] {msg}", file=sys.stderr, flush=True)
    return lambda msg: None


class _EpochReport:
    def __init__(self, report: Callable[[str], None], runs: int, total: int):
        self.report, self.runs, self.total = report, runs, total

    def on_epoch_end(self, epoch: int, group) -> None:
        self.report(f"trained {self.runs} full-data model(s): epoch {epoch}/{self.total}")


def hardness_scores(
    dataset,
    recipe="digits-mlp",
    *,
    runs: int = 3,
    early_epoch: int | None = None,
    families: Sequence[str] = HARDNESS_FAMILIES,
    every_steps: int | None = None,
    prototype_metric: str = "cosine",
    vog_epochs: Sequence[int] | None = None,
    folds: int = 5,
    cleanlab: bool | str = "auto",
    device: str = "auto",
    seed: int = 0,
    progress: bool | Callable[[str], None] | None = None,
    model_factory: Callable[[], Any] | None = None,
) -> dict[str, np.ndarray]:
    """Every hardness score of the module docstring, one float64 [N] column each, higher = more regular.

    Trains ``runs`` full-data models together (seeds ``model_seeds(seed, 1.0, r)``, the proxy
    suite's, so they are the same models as :func:`~cscore_lab.proxies.suite.compute_proxies`
    trains) with a :class:`HardnessRecorder` attached, then, for the cleanlab family, ``folds``
    cross-validation models (:func:`out_of_sample_probabilities`).

    Parameters
    ----------
    dataset : Dataset
    recipe : Recipe or preset name, default "digits-mlp"
    runs : int, default 3
        Full-data models (seeds) the scores are averaged over.
    early_epoch : int, optional
        Epoch of EL2N and GraNd (default :func:`default_early_epoch`: 10% of training).
    families : sequence of str, default all of :data:`HARDNESS_FAMILIES`
    every_steps : int, optional
        Record the trajectory every k optimizer steps (needs the trainer's per-step hook).
    prototype_metric : {"cosine", "euclidean"}, default "cosine"
    vog_epochs : sequence of int, optional
        VoG's checkpoints (default: every epoch; at least two).
    folds : int, default 5
        Cross-validation folds for cleanlab's out-of-sample probabilities.
    cleanlab : bool or "auto", default "auto"
        Whether to compute the cleanlab family: True requires cleanlab (ImportError naming
        the extra), "auto" skips it with a progress note when cleanlab is missing.
    device : {"auto", "cpu", "cuda", "cuda:N"}
    seed : int, default 0
    progress : bool or callable(str), optional
        True prints one line per step to stderr; a callable receives the lines.
    model_factory : callable returning a torch.nn.Module, optional
        Train this architecture instead of the recipe's.

    Returns
    -------
    dict of str to numpy.ndarray
        Columns named as in the module docstring, in :data:`HARDNESS_FAMILIES` order.

    See Also
    --------
    HardnessRecorder : the same scores from a training you run yourself.
    cscore_lab.analysis.detect_label_noise, cscore_lab.analysis.correlate : compare them.
    """
    from ..trainer import model_seeds, prepare_inputs, resolve_device, train_group

    recipe = _recipe(dataset, recipe)
    runs = _positive_int("runs", runs)
    families = _families(families, HARDNESS_FAMILIES)
    if cleanlab not in (True, False, "auto"):
        raise ValueError(f"cleanlab must be True, False or 'auto', got {cleanlab!r}")
    report = _reporter(progress)
    want_cleanlab = "cleanlab" in families and cleanlab is not False
    if want_cleanlab:
        try:
            _cleanlab()
            cross_validation_folds(dataset.labels, folds, seed=seed)  # validate before training
        except ImportError:
            if cleanlab is True:
                raise
            report(f"cleanlab is not installed: its scores are left out (pip install 'cscore-lab[{CLEANLAB_EXTRA}]')")
            want_cleanlab = False
    recorded = [f for f in families if f != "cleanlab"]
    out: dict[str, np.ndarray] = {}
    if recorded:
        n = len(dataset)
        x, y = prepare_inputs(dataset, recipe, resolve_device(device))
        recorder = HardnessRecorder.for_recipe(x, y, recipe, train_size=n, early_epoch=early_epoch, families=recorded,
                                               every_steps=every_steps, prototype_metric=prototype_metric,
                                               vog_epochs=vog_epochs)
        t0 = time.perf_counter()
        seeds = [model_seeds(seed, 1.0, r) for r in range(runs)]
        with _torch_threads(1):
            train_group(x, y, [np.arange(n)] * runs, recipe, seeds, num_classes=dataset.num_classes,
                        model_factory=model_factory, callbacks=[recorder, _EpochReport(report, runs, recipe.epochs)])
        report(f"full-data training with recorders: {time.perf_counter() - t0:.1f} s")
        out.update(recorder.scores())
    if want_cleanlab:
        t0 = time.perf_counter()
        out.update(cleanlab_hardness(dataset, recipe, folds=folds, seed=seed, device=device, model_factory=model_factory))
        report(f"cleanlab on {folds}-fold out-of-sample probabilities: {time.perf_counter() - t0:.1f} s")
    return out
