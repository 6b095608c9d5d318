"""The learning-speed proxies of the C-score (Jiang et al., ICML 2021, section 5), from training trajectories.

:class:`LearningDynamics` holds what :class:`~cscore_lab.proxies.recorders.DynamicsRecorder`
records during a full-data training and turns it into learning-speed proxies, averaged over the
records of each model and then over the M models (runs). All are oriented like the C-score,
**higher = more regular**:

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

The paper's "cumulative" statistics are these means over the training trajectory, and how
finely it is sampled matters. Records are taken after every epoch, or every k optimizer steps
through the trainer's per-step hook (``DynamicsRecorder(every_steps=k)``);
:func:`~cscore_lab.proxies.suite.compute_proxies` takes :data:`RECORDS_PER_EPOCH` = 10 records per
epoch by default (:func:`record_interval`). Measured with ``benchmarks/bench_hardness.py
--dynamics-steps`` (Spearman with the C-scores, one full-data run, ``benchmarks/RESULTS.md``):

============================ ============ =========== =========== ============
MNIST, mnist-mlp (published) per epoch    2 per epoch 4 per epoch 10 per epoch
============================ ============ =========== =========== ============
``cum_accuracy``             0.471        0.602       0.693       **0.775**
``neg_forgetting``           0.369        0.510       0.622       **0.734**
``cum_label_prob``           0.668        0.694       0.710       **0.714**
seconds recording            21           45          87          216
============================ ============ =========== =========== ============

On digits (9 x 200 C-scores) cumulative accuracy goes 0.578 -> 0.757 and forgetting
0.419 -> 0.766 from per-epoch records to the default (every 6 of the 57 steps of an epoch;
0.774 / 0.756 with a record after every step); the probability-based proxies move by < 0.01
there. Short recipes learn most
examples inside the first epoch, and records after whole epochs see them as "always right,
never forgotten". The price: each record is one evaluation of the M models on all N examples,
about a third of an epoch of an MLP's training, so 10 per epoch make the learning-speed records
cost about 3x the training on a CPU (MNIST, 1 run, a loaded 2-core machine: 216 s of records,
65 s of training); ``dynamics_every_steps=None`` records per epoch only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _validation as _v

__all__ = ["LearningDynamics", "DYNAMICS_PROXIES", "RECORDS_PER_EPOCH", "forgetting_events", "record_interval"]

#: Records per epoch of the learning-speed trajectory that compute_proxies takes by default
#: (``dynamics_every_steps="auto"``: every ``round(steps per epoch / RECORDS_PER_EPOCH)`` steps).
RECORDS_PER_EPOCH = 10

#: Names of the learning-speed proxies, in the order :meth:`LearningDynamics.proxies` returns them.
DYNAMICS_PROXIES: tuple[str, ...] = ("cum_accuracy", "cum_label_prob", "cum_max_prob", "cum_neg_entropy", "neg_forgetting")


def record_interval(every_steps: int | str | None, steps_per_epoch: int) -> int | None:
    """The step interval of the learning-speed records that ``every_steps`` asks for (None: after every epoch).

    ``"auto"`` gives ``round(steps_per_epoch / RECORDS_PER_EPOCH)`` (at least 1), or None when that is
    a whole epoch or more; an integer is taken as it is; None stays None.
    """
    steps_per_epoch = _v.integer(steps_per_epoch, "steps_per_epoch", minimum=1)
    if every_steps is None:
        return None
    if every_steps == "auto":
        k = max(1, round(steps_per_epoch / RECORDS_PER_EPOCH))
        return None if k >= steps_per_epoch else k
    if isinstance(every_steps, str):
        raise ValueError(f"dynamics_every_steps must be 'auto', None or a positive integer, got {every_steps!r}")
    return _v.integer(every_steps, "dynamics_every_steps", minimum=1)


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
    epochs : float64 [R]
        When each record was taken, in epochs (fractional for records between epochs).
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
        self.epochs = np.asarray(self.epochs, dtype=np.float64)
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
