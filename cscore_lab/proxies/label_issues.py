"""cleanlab's confident learning on out-of-sample probabilities made with the recipe being scored.

Confident learning (Northcutt, Jiang & Chuang, *Confident Learning: Estimating Uncertainty in
Dataset Labels*, JAIR 2021) needs predicted probabilities of every example from a model that did
not train on it. :func:`out_of_sample_probabilities` makes them by K-fold cross-validation with
the same recipe as the C-score (the K fold models trained together as one stacked group), and
:func:`cleanlab_scores` turns them into two columns, both higher = more regular:

``cleanlab_self_confidence``  the out-of-sample probability of the given label
                              (``cleanlab.rank.get_label_quality_scores``, self-confidence)
``cleanlab_label_issue``      0 where ``cleanlab.filter.find_label_issues`` flags the label, else 1

cleanlab is an optional extra (``pip install 'cscore-lab[hardness]'``); everything here that
needs it says so by name when it is missing.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from . import _validation as _v

__all__ = ["CLEANLAB_EXTRA", "INSTALL_HINT", "cleanlab_available", "require_cleanlab", "cleanlab_scores",
           "cross_validation_folds", "out_of_sample_probabilities", "fold_probabilities", "cleanlab_hardness"]

#: The pip extra that installs cleanlab.
CLEANLAB_EXTRA = "hardness"
INSTALL_HINT = f"pip install 'cscore-lab[{CLEANLAB_EXTRA}]'"


def require_cleanlab():
    """cleanlab's two functions used here; an ImportError naming the extra when cleanlab is missing."""
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError as exc:
        raise ImportError(f"the cleanlab scores need cleanlab, which is not installed ({exc}): "
                          f"{INSTALL_HINT}") from None
    return get_label_quality_scores, find_label_issues


def cleanlab_available() -> bool:
    """Whether cleanlab imports (the ``cleanlab`` family of the suite is in its defaults only then)."""
    try:
        require_cleanlab()
    except ImportError:
        return False
    return True


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
    p = _v.probabilities(probs, "probs", ndim=2, what="[examples, classes]")
    if np.abs(p.sum(axis=1) - 1).max() > 1e-4:
        raise ValueError(f"probs rows must sum to 1, got sums in [{p.sum(axis=1).min():g}, {p.sum(axis=1).max():g}]")
    y = _v.labels(labels, p.shape[0], num_classes=p.shape[1])
    quality_fn, issues_fn = require_cleanlab()
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
    y = _v.labels(y, y.shape[0])
    n = y.shape[0]
    if n < 4:
        raise ValueError(f"cross-validation needs at least 4 examples (2 folds of 2), got {n}")
    folds = _v.integer(folds, "folds", minimum=2, maximum=n // 2)
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
                                model_factory: Callable[[], Any] | None = None,
                                callbacks: Sequence[Any] = ()) -> np.ndarray:
    """K-fold cross-validated softmax probabilities of every example, with the same recipe.

    The K fold models (:func:`cross_validation_folds`) are trained together as one stacked
    group through :func:`cscore_lab.trainer.train_group`, each on its own training subset,
    with one torch thread like the estimator's shards (seeds of their own, never the estimate's
    or the full-data models'); each example's probabilities come from the model of its own
    fold, which never saw it.

    Parameters
    ----------
    dataset : Dataset
    recipe : Recipe or preset name, default "digits-mlp"
    folds : int, default 5
    seed : int, default 0
    device : {"auto", "cpu", "cuda", "cuda:N"}
    model_factory : callable returning a torch.nn.Module, optional
    callbacks : sequence, optional
        More ``train_group`` callbacks for the fold training (a progress bar's epoch ticks).

    Returns
    -------
    numpy.ndarray
        float64 [N, C].
    """
    from ..trainer import prepare_inputs, resolve_device

    dataset, recipe = _v.dataset(dataset), _v.recipe(recipe)
    x, y = prepare_inputs(dataset, recipe, resolve_device(device))
    return fold_probabilities(x, y, dataset.labels, recipe, folds=folds, seed=seed, num_classes=dataset.num_classes,
                              model_factory=model_factory, callbacks=callbacks)


def fold_probabilities(x, y, labels: np.ndarray, recipe, *, folds: int, seed: int, num_classes: int,
                       model_factory: Callable[[], Any] | None = None, callbacks: Sequence[Any] = ()) -> np.ndarray:
    """:func:`out_of_sample_probabilities` from inputs already prepared on the device (``x``, ``y``)."""
    import torch

    from ..trainer import torch_threads, train_group

    fold_of, subsets = cross_validation_folds(labels, folds, seed=seed)
    with torch_threads(1):
        group = train_group(x, y, subsets, recipe, _fold_seeds(seed, folds), num_classes=num_classes,
                            model_factory=model_factory, callbacks=callbacks)
        with torch.no_grad():
            probs = torch.softmax(group.logits(x).double(), dim=-1).cpu().numpy()  # [K, N, C]
    return probs[fold_of, np.arange(len(labels))]


def cleanlab_hardness(dataset, recipe="digits-mlp", *, folds: int = 5, seed: int = 0, device: str = "auto",
                      model_factory: Callable[[], Any] | None = None) -> dict[str, np.ndarray]:
    """``cleanlab_self_confidence`` and ``cleanlab_label_issue`` from K-fold out-of-sample probabilities.

    :func:`out_of_sample_probabilities` then :func:`cleanlab_scores`; cleanlab is checked
    before anything is trained (an ImportError naming the extra when it is missing).
    """
    require_cleanlab()
    probs = out_of_sample_probabilities(dataset, recipe, folds=folds, seed=seed, device=device,
                                        model_factory=model_factory)
    return cleanlab_scores(dataset.labels, probs)
