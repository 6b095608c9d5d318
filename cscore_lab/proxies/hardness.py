"""The field's per-example hardness scores, as pure NumPy functions of what a full-data training recorded.

Each is computed from M full-data models (different seeds) trained together by the proxy suite
(:func:`cscore_lab.proxies.suite.compute_proxies`, which attaches the recorders of
:mod:`.recorders` to its one shared training), averaged over the M models where the score asks
for several seeds, and oriented like the C-score, **higher = more regular**:

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
=============================== =============================================================

cleanlab's confident-learning scores, which need their own cross-validation trainings, are in
:mod:`.label_issues`. Every function validates its arrays once (:mod:`._validation`) and is
tested against a hand-computed case or a brute-force reference. Where a definition differs
across implementations (AUM on logits or softmax; which epoch for EL2N), the docstring pins it
to the paper and says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import _validation as _v

__all__ = [
    "Trajectory", "default_early_epoch",
    "aum", "el2n", "grand", "vog", "vog_raw", "datamap_confidence", "datamap_variability",
    "dataiq_aleatoric", "dataiq_epistemic", "final_loss", "final_margin", "prototypicality",
]


def default_early_epoch(epochs: int) -> int:
    """The epoch EL2N and GraNd are read at by default: 10% of training, at least epoch 1.

    Paul et al. (2021) read EL2N at epoch 20 of 200 on CIFAR-10 and GraNd at initialisation
    or early in training; we keep their *fraction* of training. For the short presets that
    is epoch 1 (digits-mlp's 12 epochs, mnist-mlp's 10) and epoch 3 for cifar-cnn's 30.
    """
    epochs = _v.integer(epochs, "epochs", minimum=1)
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
    m = _v.real_array(margin, "margin", ndim=3, what="[records, models, examples]")
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
        (:func:`~.gradients.error_norms`, kept by :class:`~.recorders.NormRecorder`); each value in [0, sqrt(2)].

    Returns
    -------
    numpy.ndarray
        float64 [N]: minus the mean over models; higher = more regular.
    """
    e = _v.real_array(error_norm, "error_norm", ndim=2, what="[models, examples]")
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
        Per-example gradient norms of each model at one epoch (:func:`~.gradients.gradient_norms`,
        kept by :class:`~.recorders.NormRecorder`).

    Returns
    -------
    numpy.ndarray
        float64 [N]: minus the mean over models; higher = more regular.
    """
    g = _v.real_array(grad_norm, "grad_norm", ndim=2, what="[models, examples]")
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
    computation :class:`~.recorders.InputGradientRecorder` streams with running moments.

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
    g = _v.real_array(g.reshape(g.shape[0], g.shape[1], g.shape[2], -1), "input_grads", ndim=4, what="[K, M, N, D]")
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
        Unnormalised VoG (:func:`vog_raw`, or :meth:`~.recorders.InputGradientRecorder.raw`).
    labels : int array [N]

    Returns
    -------
    numpy.ndarray
        float64 [N].
    """
    v = _v.real_array(raw, "raw", ndim=2, what="[models, examples]")
    if v.min() < 0:
        raise ValueError(f"raw VoG must be >= 0 (a mean of standard deviations), got {v.min():g}")
    y = _v.labels(labels, v.shape[1])
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
    p = _v.probabilities(label_prob, "label_prob", ndim=3, what="[records, models, examples]")
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
    p = _v.probabilities(label_prob, "label_prob", ndim=3, what="[records, models, examples]")
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
    p = _v.probabilities(label_prob, "label_prob", ndim=3, what="[records, models, examples]")
    return -(p * (1.0 - p)).mean(axis=0).mean(axis=0)


def dataiq_epistemic(label_prob: np.ndarray) -> np.ndarray:
    """Negated Data-IQ epistemic uncertainty (Seedat et al., NeurIPS 2022).

    ``v_ep(x) = 1/E sum_e (p_e(y | x) - mean_e p_e)^2``, the variance over the records of
    p(label), averaged over the M models. Per model it is the square of the data-map
    variability, so for one model it ranks examples exactly as :func:`datamap_variability`
    does; the proxy suite therefore leaves it out of the table.

    Parameters
    ----------
    label_prob : float array [R, M, N]
    """
    p = _v.probabilities(label_prob, "label_prob", ndim=3, what="[records, models, examples]")
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
    lp = _v.real_array(label_logprob, "label_logprob", ndim=2, what="[models, examples]")
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
    return _v.real_array(margin, "margin", ndim=2, what="[models, examples]").mean(axis=0)


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
        Penultimate-layer features (:class:`~.recorders.FeatureRecorder`).
    labels : int array [N]
    metric : {"cosine", "euclidean"}, default "cosine"

    Returns
    -------
    numpy.ndarray
        float64 [N]. An all-zero feature vector (a dead ReLU layer) has cosine distance 1.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"metric must be 'cosine' or 'euclidean', got {metric!r}")
    f = _v.real_array(features, "features", ndim=3, what="[models, examples, hidden]")
    y = _v.labels(labels, f.shape[1])
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


# --------------------------------------------------------------------------- what a training record keeps


@dataclass
class Trajectory:
    """What :class:`~cscore_lab.proxies.recorders.TrajectoryRecorder` keeps: three numbers per (record, model, example).

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

        from .gradients import summarise_logits

        z = torch.as_tensor(np.asarray(logits, dtype=np.float32))
        if z.ndim != 4 or z.shape[-1] < 2:
            raise ValueError(f"logits must be [records, models, examples, classes >= 2], got shape {tuple(z.shape)}")
        y = torch.from_numpy(_v.labels(labels, z.shape[2], num_classes=z.shape[3]))
        parts = [summarise_logits(z[r], y) for r in range(z.shape[0])]
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
