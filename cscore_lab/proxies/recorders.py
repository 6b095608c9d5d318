"""Training callbacks that record, during one full-data training, what the proxies and hardness scores need.

Each is a callback of :func:`cscore_lab.trainer.train_group`: the trainer calls
``on_epoch_end(epoch, group)`` after every epoch and, on a callback whose ``every_steps`` is an
integer, ``on_step(step, group)`` every ``every_steps`` optimizer steps (steps count from 1 over
the whole training), with the group of M stacked models. Several recorders share one training;
the proxy suite (:func:`cscore_lab.proxies.suite.compute_proxies`) attaches the ones its
families ask for.

========================== ============================================ ================= =====================
recorder                   keeps, per record x model x example          memory            feeds
========================== ============================================ ================= =====================
:class:`DynamicsRecorder`  p(label), max p, entropy (float16), correct  ``7 R M N`` bytes learning speed
:class:`TrajectoryRecorder` label logit, largest other logit, log        ``12 R M N``      AUM, data maps,
                           p(label) (float32)                                             Data-IQ, final loss
:class:`FeatureRecorder`   penultimate features after chosen epochs     ``4 M N H``/epoch hidden-space kde/knn/
                                                                                          lof, prototypicality
:class:`NormRecorder`      EL2N error norm, GraNd gradient norm         ``8 M N``/epoch   EL2N, GraNd
:class:`InputGradientRecorder` running moments of input gradients       ``8 M N D``       VoG
========================== ============================================ ================= =====================

``R`` is the number of records, ``H`` the penultimate width, ``D`` the input size (colour
channels averaged). The two trajectory recorders record after every epoch (or every
``every``-th), or every ``every_steps`` steps plus once at the end of training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import _validation as _v
from .dynamics import LearningDynamics
from .gradients import error_norms, gradient_norms, input_gradients, summarise_logits
from .hardness import Trajectory

__all__ = ["DynamicsRecorder", "TrajectoryRecorder", "FeatureRecorder", "NormRecorder", "InputGradientRecorder"]


def _same_length(x, y) -> None:
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x has {x.shape[0]} examples but y has {y.shape[0]}")


class _Schedule:
    """When a trajectory recorder records, and the record times in epochs (fractional between epochs).

    After every ``every``-th epoch; or, with ``every_steps``, every ``every_steps`` optimizer steps
    through the trainer's per-step hook and once more after the last epoch when the steps did not
    end there (so the last record is the trained model).
    """

    def __init__(self, *, every: int = 1, every_steps: int | None = None, steps_per_epoch: int | None = None,
                 epochs: int | None = None):
        self.every = _v.integer(every, "every", minimum=1)
        self.every_steps = None if every_steps is None else _v.integer(every_steps, "every_steps", minimum=1)
        self.steps_per_epoch = None if steps_per_epoch is None else _v.integer(steps_per_epoch, "steps_per_epoch",
                                                                              minimum=1)
        self.epochs = None if epochs is None else _v.integer(epochs, "epochs", minimum=1)
        if self.every_steps is not None:
            if self.steps_per_epoch is None or self.epochs is None:
                raise ValueError("recording every k steps needs steps_per_epoch and epochs (to place records in epochs)")
            if self.every != 1:
                raise ValueError(f"give every (epochs) or every_steps, not both (got every={every}, "
                                 f"every_steps={every_steps})")
            total = self.steps_per_epoch * self.epochs
            if self.every_steps > total:
                raise ValueError(f"every_steps={self.every_steps} is more than the {total} steps of the training")
        self.times: list[float] = []
        self._last_step = 0

    @classmethod
    def for_recipe(cls, x, y, recipe, *, train_size: int, **options: Any):
        """A recorder for training ``recipe`` on subsets of ``train_size`` examples (fills ``steps_per_epoch``
        and ``epochs``)."""
        steps = math.ceil(_v.integer(train_size, "train_size", minimum=1) / recipe.batch_size)
        return cls(x, y, steps_per_epoch=steps, epochs=recipe.epochs, **options)

    def _record(self, group) -> None:  # pragma: no cover - every recorder defines it
        raise NotImplementedError

    def on_step(self, step: int, group) -> None:
        if self.every_steps is None or step <= self._last_step or step % self.every_steps:
            return
        self._last_step = int(step)
        self.times.append(step / self.steps_per_epoch)
        self._record(group)

    def on_epoch_end(self, epoch: int, group) -> None:
        if self.every_steps is None:
            if epoch % self.every == 0:
                self.times.append(float(epoch))
                self._record(group)
        elif epoch == self.epochs and self._last_step < epoch * self.steps_per_epoch:
            if not self.times:
                raise RuntimeError(
                    f"every_steps={self.every_steps} was asked for but the trainer never called on_step: this "
                    f"training loop has no per-step hook; record per epoch (every_steps=None) instead")
            self._last_step = epoch * self.steps_per_epoch
            self.times.append(float(epoch))
            self._record(group)

    @property
    def num_records(self) -> int:
        return len(self.times)


class DynamicsRecorder(_Schedule):
    """Records each example's learning trajectory on ``x``, ``y`` for the learning-speed proxies.

    At each record, every model's softmax probability of each example's label, its maximum
    probability and its entropy (float16), and whether it classifies the example correctly
    (bool); :meth:`result` gives the :class:`~cscore_lab.proxies.dynamics.LearningDynamics`.

    Parameters
    ----------
    x : torch.Tensor [N, ...]
        Inputs as the models see them (see :func:`cscore_lab.trainer.prepare_inputs`), on the
        training device.
    y : torch.Tensor [N]
        Integer labels on the same device.
    every : int, default 1
        Record after every ``every``-th epoch (epochs count from 1).
    every_steps : int, optional
        Record every ``every_steps`` optimizer steps instead (and after the last epoch), through
        the trainer's per-step hook; needs ``steps_per_epoch`` and ``epochs`` (:meth:`for_recipe`
        fills them). Finer records change the 0/1 proxies most: on short recipes most examples
        are learned within the first epoch, and records after whole epochs see them as "always
        right, never forgotten" (measured in :mod:`cscore_lab.proxies.dynamics`).
    steps_per_epoch, epochs : int, optional
        Optimizer steps per epoch (``ceil(train size / batch size)``) and epochs of the training.

    Notes
    -----
    Each record is one evaluation of the M models on all N examples; memory is 7 bytes per
    (record, model, example).
    """

    def __init__(self, x, y, *, every: int = 1, every_steps: int | None = None, steps_per_epoch: int | None = None,
                 epochs: int | None = None):
        _same_length(x, y)
        super().__init__(every=every, every_steps=every_steps, steps_per_epoch=steps_per_epoch, epochs=epochs)
        self.x, self.y = x, y
        self._records: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []

    def _record(self, group) -> None:
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

        self._records.append((f16(label_prob), f16(max_prob), f16(entropy), correct.cpu().numpy()))

    def result(self) -> LearningDynamics:
        """The trajectories recorded so far."""
        if not self._records:
            raise ValueError("nothing was recorded: train for at least `every` epochs with this recorder as a callback")
        lp, mp, ent, cor = zip(*self._records)
        return LearningDynamics(np.array(self.times), np.stack(lp), np.stack(mp), np.stack(ent), np.stack(cor))


class TrajectoryRecorder(_Schedule):
    """Records label logit, largest other logit and log p(label) of every example, for the hardness scores.

    Parameters
    ----------
    x, y : torch.Tensor
        Inputs as the models see them and integer labels, on the training device.
    every, every_steps, steps_per_epoch, epochs
        When to record, as for :class:`DynamicsRecorder` (default: after every epoch, the record
        AUM, data maps and Data-IQ are defined on).

    Notes
    -----
    Memory: 12 bytes per (record, model, example), independent of the number of classes.
    """

    def __init__(self, x, y, *, every: int = 1, every_steps: int | None = None, steps_per_epoch: int | None = None,
                 epochs: int | None = None):
        _same_length(x, y)
        super().__init__(every=every, every_steps=every_steps, steps_per_epoch=steps_per_epoch, epochs=epochs)
        self.x, self.y = x, y
        self._records: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def _record(self, group) -> None:
        import torch

        with torch.no_grad():
            parts = summarise_logits(group.logits(self.x), self.y)
        self._records.append(tuple(p.cpu().numpy() for p in parts))

    def result(self) -> Trajectory:
        """The trajectory recorded so far."""
        if not self._records:
            raise ValueError("nothing was recorded: attach the recorder to train_group and train at least one epoch")
        return Trajectory(np.array(self.times), *(np.stack(r) for r in zip(*self._records)))


@dataclass
class FeatureRecorder:
    """Keeps penultimate-layer features of ``x`` after chosen epochs.

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
        self.epochs = _v.epoch_list(self.epochs, "feature epochs")

    def on_epoch_end(self, epoch: int, group) -> None:
        if epoch in self.epochs:
            f = group.features(self.x)
            self.features[epoch] = f.reshape(f.shape[0], f.shape[1], -1).cpu().numpy().astype(self.dtype, copy=False)

    def get(self, epoch: int) -> np.ndarray:
        """The features after ``epoch`` ([M, N, H]); a clear error when that epoch was not reached."""
        if epoch not in self.features:
            raise ValueError(f"no features after epoch {epoch}: this recorder keeps epochs {list(self.epochs)} and "
                             f"has reached {sorted(self.features)}")
        return self.features[epoch]


class NormRecorder:
    """Keeps EL2N's error norms and GraNd's gradient norms after chosen epochs.

    Parameters
    ----------
    x, y : torch.Tensor
        Inputs as the models see them and labels, on the training device.
    epochs : int or sequence of int
        Epochs (from 1) after which to record.
    gradients : bool, default True
        Also compute the per-example gradient norms (:func:`~.gradients.gradient_norms`); False
        keeps only the error norms (one forward pass).

    Attributes
    ----------
    error_norm, grad_norm : dict of int to float32 [M, N]
    """

    def __init__(self, x, y, epochs, *, gradients: bool = True):
        _same_length(x, y)
        self.x, self.y, self.gradients = x, y, bool(gradients)
        self.epochs = _v.epoch_list(epochs, "norm epochs")
        self.error_norm: dict[int, np.ndarray] = {}
        self.grad_norm: dict[int, np.ndarray] = {}

    def on_epoch_end(self, epoch: int, group) -> None:
        if epoch not in self.epochs:
            return
        self.error_norm[epoch] = error_norms(group, self.x, self.y).cpu().numpy()
        if self.gradients:
            self.grad_norm[epoch] = gradient_norms(group, self.x, self.y).cpu().numpy()

    def get(self, kind: str, epoch: int) -> np.ndarray:
        """``"error"`` or ``"gradient"`` norms after ``epoch``; a clear error when they were not recorded."""
        kept = self.error_norm if kind == "error" else self.grad_norm
        if epoch not in kept:
            raise ValueError(f"no {kind} norms after epoch {epoch}: recorded after {sorted(kept)} "
                             f"(asked for {list(self.epochs)}{'' if self.gradients or kind == 'error' else ', without gradients'})")
        return kept[epoch]


class InputGradientRecorder:
    """Streams the moments VoG needs: input gradients across checkpoints, Welford-style.

    At each checkpoint epoch the gradient of the label's logit with respect to the input
    (:func:`~.gradients.input_gradients`; averaged over colour channels for images) updates a
    running mean and sum of squared deviations per (model, example, input dim), so memory is
    ``8 * M * N * D`` bytes whatever the number of checkpoints. :meth:`raw` gives the per-model
    VoG before class normalisation, equal to :func:`~.hardness.vog_raw` of the stacked
    checkpoint gradients.

    Parameters
    ----------
    x, y : torch.Tensor
    epochs : sequence of int
        At least two checkpoint epochs (the paper uses checkpoints spread over training).
    """

    def __init__(self, x, y, epochs):
        _same_length(x, y)
        self.x, self.y = x, y
        self.epochs = _v.epoch_list(epochs, "VoG checkpoint epochs")
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
