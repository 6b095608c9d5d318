"""Recorders for full-data training and the learning-speed proxies they feed.

Two callbacks for :func:`cscore_lab.trainer.train_group` (its ``callbacks=`` hook is
called after every epoch with the group of M stacked models):

* :class:`DynamicsRecorder` keeps, at every ``every``-th epoch, each model's softmax
  probability of each example's label, its maximum probability, its entropy (float16)
  and whether it classifies the example correctly (bool): O(records x M x N) memory.
* :class:`FeatureRecorder` keeps the penultimate-layer representations
  (``group.features(x)``) at the epochs asked for, for kernel density and neighbour
  proxies in hidden space.

:class:`LearningDynamics` turns the recorded matrices into learning-speed proxies,
averaged over records and then over the M models (runs). All are oriented like the
C-score, **higher = more regular**:

================== =================================================================
``cum_accuracy``    mean over records of 0/1 correctness
``cum_label_prob``  mean over records of the softmax probability of the label
``cum_max_prob``    mean over records of the largest softmax probability
                    (label-agnostic: a confidently *mislabeled* example scores high)
``cum_neg_entropy`` minus the mean over records of the predictive entropy (nats)
``neg_forgetting``  minus the number of forgetting events (correct at one record,
                    incorrect at the next); following Toneva et al. (ICLR 2019),
                    a model that never classifies an example correctly counts
                    ``records`` events for it, more than any learned example can reach
================== =================================================================

Records are taken after epochs (the trainer's callback granularity); the paper's
"cumulative" statistics are these means over the training trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["DynamicsRecorder", "FeatureRecorder", "LearningDynamics", "DYNAMICS_PROXIES", "forgetting_events"]

#: Names of the learning-speed proxies, in the order :meth:`LearningDynamics.proxies` returns them.
DYNAMICS_PROXIES: tuple[str, ...] = ("cum_accuracy", "cum_label_prob", "cum_max_prob", "cum_neg_entropy", "neg_forgetting")


def forgetting_events(correct: np.ndarray) -> np.ndarray:
    """Forgetting events per (model, example) from correctness records.

    Parameters
    ----------
    correct : bool array, shape (R, ...)
        Correctness at R successive records (records on axis 0).

    Returns
    -------
    numpy.ndarray
        float64, shape ``correct.shape[1:]``: the number of ``r`` with
        ``correct[r-1] and not correct[r]``; ``R`` where ``correct`` is never true
        (never learned counts as more forgetting than any learned example can show).
    """
    c = np.asarray(correct, dtype=bool)
    if c.ndim < 1 or c.shape[0] < 1:
        raise ValueError(f"correct must have at least one record on axis 0, got shape {c.shape}")
    events = (c[:-1] & ~c[1:]).sum(axis=0).astype(np.float64)
    return np.where(c.any(axis=0), events, float(c.shape[0]))


@dataclass
class LearningDynamics:
    """Per-example training trajectories of M models, recorded after some epochs.

    Attributes
    ----------
    epochs : int64 [R]
        The epoch after which each record was taken.
    label_prob, max_prob, entropy : float16 [R, M, N]
        Softmax probability of the label, largest softmax probability, predictive
        entropy in nats.
    correct : bool [R, M, N]
        Whether the model's arg-max is the label.
    """

    epochs: np.ndarray
    label_prob: np.ndarray
    max_prob: np.ndarray
    entropy: np.ndarray
    correct: np.ndarray

    def __post_init__(self) -> None:
        self.epochs = np.asarray(self.epochs, dtype=np.int64)
        self.correct = np.asarray(self.correct, dtype=bool)
        shape = self.correct.shape
        if self.correct.ndim != 3 or shape[0] < 1:
            raise ValueError(f"correct must be [records, models, examples] with at least one record, got shape {shape}")
        if self.epochs.shape != (shape[0],):
            raise ValueError(f"epochs has shape {self.epochs.shape}, expected ({shape[0]},): one epoch per record")
        for name in ("label_prob", "max_prob", "entropy"):
            arr = np.asarray(getattr(self, name))
            if arr.shape != shape:
                raise ValueError(f"{name} has shape {arr.shape}, expected {shape} like correct")
            setattr(self, name, arr)

    @property
    def num_records(self) -> int:
        return int(self.correct.shape[0])

    @property
    def num_models(self) -> int:
        return int(self.correct.shape[1])

    def __len__(self) -> int:
        return int(self.correct.shape[2])

    def proxies(self) -> dict[str, np.ndarray]:
        """The learning-speed proxies (see the module docstring), float64 [N], higher = more regular.

        Each is averaged over the records of one model, then over the models.
        """
        def mean(a: np.ndarray) -> np.ndarray:
            return a.astype(np.float64).mean(axis=(0, 1))

        return {
            "cum_accuracy": mean(self.correct),
            "cum_label_prob": mean(self.label_prob),
            "cum_max_prob": mean(self.max_prob),
            "cum_neg_entropy": -mean(self.entropy),
            "neg_forgetting": -forgetting_events(self.correct).mean(axis=0),
        }


class DynamicsRecorder:
    """Training callback that records each example's learning trajectory on ``x``, ``y``.

    Parameters
    ----------
    x : torch.Tensor [N, ...]
        Inputs as the models see them (see :func:`cscore_lab.trainer.prepare_inputs`),
        on the training device.
    y : torch.Tensor [N]
        Integer labels on the same device.
    every : int, default 1
        Record after every ``every``-th epoch (epochs count from 1).

    Notes
    -----
    The trainer calls back once per epoch; finer records (every k steps) would need a
    per-step hook in :func:`cscore_lab.trainer.train_group`.
    """

    def __init__(self, x, y, *, every: int = 1):
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer (record every n-th epoch), got {every!r}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")
        self.x, self.y, self.every = x, y, every
        self._records: list[tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def on_epoch_end(self, epoch: int, group) -> None:
        if epoch % self.every:
            return
        import torch

        with torch.no_grad():
            logits = group.logits(self.x).float()  # [M, N, C]
            logp = torch.log_softmax(logits, dim=-1)
            p = logp.exp()
            label = self.y.view(1, -1, 1).expand(logits.shape[0], -1, 1)
            label_prob = p.gather(-1, label).squeeze(-1)
            max_prob, pred = p.max(dim=-1)
            entropy = -(p * logp).sum(dim=-1)
            correct = pred == self.y.view(1, -1)

        def f16(t):
            return t.to("cpu", torch.float16).numpy()

        self._records.append((epoch, f16(label_prob), f16(max_prob), f16(entropy), correct.cpu().numpy()))

    def result(self) -> LearningDynamics:
        """The trajectories recorded so far."""
        if not self._records:
            raise ValueError("nothing was recorded: train for at least `every` epochs with this recorder as a callback")
        epochs, lp, mp, ent, cor = zip(*self._records)
        return LearningDynamics(np.array(epochs), np.stack(lp), np.stack(mp), np.stack(ent), np.stack(cor))


@dataclass
class FeatureRecorder:
    """Training callback that keeps penultimate-layer features of ``x`` after chosen epochs.

    Parameters
    ----------
    x : torch.Tensor [N, ...]
        Inputs as the models see them, on the training device.
    epochs : sequence of int
        Epochs (counting from 1) after which to record. The paper finds early-training
        representations the most telling.
    dtype : numpy dtype, default float32
        Storage type of the features.

    Attributes
    ----------
    features : dict of int to numpy.ndarray
        ``features[epoch]`` is ``[M, N, H]`` (one row of features per model).
    """

    x: object
    epochs: Sequence[int]
    dtype: type = np.float32
    features: dict[int, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        epochs = tuple(self.epochs)
        if not epochs or any(isinstance(e, bool) or not isinstance(e, (int, np.integer)) or e < 1 for e in epochs):
            raise ValueError(f"feature epochs must be positive integers (epochs count from 1), got {epochs!r}")
        self.epochs = tuple(sorted({int(e) for e in epochs}))

    def on_epoch_end(self, epoch: int, group) -> None:
        if epoch in self.epochs:
            f = group.features(self.x)
            self.features[epoch] = f.reshape(f.shape[0], f.shape[1], -1).cpu().numpy().astype(self.dtype, copy=False)
