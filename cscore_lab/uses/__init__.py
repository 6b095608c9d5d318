"""What the scores are for: curricula, pruning, and where to collect more data.

Each experiment is one call that trains many small models together (stacked groups), resumes
from a run folder, and returns a results table (:class:`~cscore_lab.results.ResultTable`) with
``to_frame()``; the figures are in :mod:`cscore_lab.viz.uses`.

* :func:`curriculum_experiment` -> :class:`CurriculumResult`; samplers for your own loop:
  :class:`CurriculumSampler`, :func:`curriculum_order`, :class:`Pacing`, :func:`score_weights`.
* :func:`pruning_experiment` -> :class:`PruningResult`; the selection rule alone: :func:`select_kept`.
* :func:`low_score_regions` -> :class:`RegionTable`; :func:`active_collection_experiment` ->
  :class:`CollectionResult`.

Every score is oriented like the C-score: higher = more regular.

Example::

    from cscore_lab import Plan, estimate, load_dataset
    from cscore_lab.uses import curriculum_experiment, pruning_experiment
    from cscore_lab.viz.uses import curriculum_curves, pruning_curves

    ds = load_dataset("digits")
    cs = estimate(ds, "digits-mlp", Plan(runs=20))
    res = pruning_experiment(ds, cs, out="runs/prune-digits")   # 20% test split; a rerun resumes
    res.table(); pruning_curves(res)
    cur = curriculum_experiment(ds, cs, strategies=("curriculum", "anti-curriculum", "random"))
    cur.compare("random"); curriculum_curves(cur)
"""

from ._experiment import ExperimentProgress, mean_stderr, split_indices
from ._scores import score_columns
from .collection import CollectionResult, RegionTable, active_collection_experiment, collection_round, low_score_regions
from .curriculum import CurriculumResult, curriculum_experiment
from .pruning import KEEP_RULES, PruningResult, kept_count, pruning_experiment, select_kept
from .samplers import PACINGS, STRATEGIES, CurriculumSampler, Pacing, balanced_order, curriculum_order, score_weights

__all__ = [
    "curriculum_experiment", "CurriculumResult", "CurriculumSampler", "Pacing", "curriculum_order", "balanced_order",
    "score_weights", "PACINGS", "STRATEGIES",
    "pruning_experiment", "PruningResult", "select_kept", "kept_count", "KEEP_RULES",
    "low_score_regions", "RegionTable", "active_collection_experiment", "CollectionResult", "collection_round",
    "ExperimentProgress", "mean_stderr", "split_indices", "score_columns",
]
