"""Where to collect more data: where the low-score mass lies, and a simulation of adding by score.

:func:`low_score_regions` summarises, per class and per cluster of the inputs (k-means, or your
own cluster ids), how many examples fall below a score threshold, their share of all low-score
examples, the mean score and the lowest examples: the regions of the input space a model finds
irregular, where more (or cleaner) examples would help most, in the paper's reading of the low end.

:func:`active_collection_experiment` simulates collection: start from a stratified random subset
of the training split, and in each round add ``add_per_round`` examples from the rest (the pool),
chosen by score: ``"lowest"`` first (collect examples like the irregular ones), ``"highest"``
first, or ``"random"``. After each round a fresh set of models trains on the current set and is
tested on the held-out split. The scores of the pool are those of the examples themselves,
computed beforehand, so this measures how useful the *kind* of example a score points at is (an
oracle of the score), not an acquisition function that sees only unlabeled inputs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..data import Dataset
from ..recipes import Recipe
from ..results import ResultTable, check_array
from ._experiment import (ExperimentProgress, ExperimentResult, ModelPlan, Runner, budget_steps, check_budget,
                          check_positive_int, derive_seed, last_counts, mean_stderr, paired_row, plan_groups, set_up)
from ._scores import scores_digest, single_score
from .samplers import EpochStream, curriculum_order

__all__ = ["low_score_regions", "RegionTable", "active_collection_experiment", "CollectionResult",
           "collection_round", "COLLECTION_STRATEGIES"]

COLLECTION_STRATEGIES = ("lowest", "highest", "random")


# --------------------------------------------------------------------------- regions


@dataclass
class RegionTable(ResultTable):
    """Per class and per cluster: how much of the low-score mass lies there.

    Attributes
    ----------
    kinds : tuple of str, ``"class"`` or ``"cluster"`` per region
    regions : int64 [R], the class index or cluster id
    names : tuple of str, class name (classes) or ``"cluster j"``
    examples, below : int64 [R], examples in the region and how many score below ``threshold``
    mean_score : float64 [R]
    majority : int64 [R], the most frequent label of a cluster (its class for a class)
    purity : float64 [R], that label's share of the region (1 for a class)
    lowest : int64 [R, k], the region's lowest-scoring examples, lowest first (-1 pads small regions)
    lowest_scores : float64 [R, k], their scores (NaN pads)
    threshold : float
    score_name : str
    meta : dict
    """

    FORMAT: ClassVar[str] = "cscore_lab.regions/1"
    FILENAME: ClassVar[str] = "regions.npz"

    kinds: tuple[str, ...]
    regions: np.ndarray
    names: tuple[str, ...]
    examples: np.ndarray
    below: np.ndarray
    mean_score: np.ndarray
    majority: np.ndarray
    purity: np.ndarray
    lowest: np.ndarray
    lowest_scores: np.ndarray
    threshold: float
    score_name: str = "score"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.kinds = tuple(str(k) for k in self.kinds)
        self.names = tuple(str(n) for n in self.names)
        r = len(self.kinds)
        if len(self.names) != r:
            raise ValueError(f"{len(self.names)} names for {r} regions")
        self.regions = check_array("regions", self.regions, (r,), np.int64)
        self.examples = check_array("examples", self.examples, (r,), np.int64)
        self.below = check_array("below", self.below, (r,), np.int64)
        self.mean_score = check_array("mean_score", self.mean_score, (r,))
        self.majority = check_array("majority", self.majority, (r,), np.int64)
        self.purity = check_array("purity", self.purity, (r,))
        k = np.shape(self.lowest)[1] if np.ndim(self.lowest) == 2 else 0
        self.lowest = check_array("lowest", self.lowest, (r, k), np.int64)
        self.lowest_scores = check_array("lowest_scores", self.lowest_scores, (r, k))
        self.threshold = float(self.threshold)

    @property
    def share_below(self) -> np.ndarray:
        """Share of each region's examples below the threshold."""
        return self.below / np.maximum(self.examples, 1)

    def share_of_low(self) -> np.ndarray:
        """Each region's share of all below-threshold examples (within its kind; sums to 1 per kind)."""
        out = np.zeros(len(self.kinds))
        for kind in set(self.kinds):
            m = np.array([k == kind for k in self.kinds])
            total = self.below[m].sum()
            out[m] = self.below[m] / total if total else 0.0
        return out

    def to_frame(self):
        """One row per region: kind, region, name, examples, below, share_below, share_of_low, mean_score,
        majority, purity and the lowest examples (a list of indices)."""
        import pandas as pd

        return pd.DataFrame({
            "kind": list(self.kinds), "region": self.regions, "name": list(self.names), "examples": self.examples,
            "below": self.below, "share_below": self.share_below, "share_of_low": self.share_of_low(),
            "mean_score": self.mean_score, "majority": self.majority, "purity": self.purity,
            "lowest": [row[row >= 0].tolist() for row in self.lowest],
        })

    def worst(self, kind: str = "class", k: int = 5):
        """The ``k`` regions of ``kind`` with the largest share below the threshold."""
        frame = self.to_frame()
        return frame[frame["kind"] == kind].sort_values(["share_below", "mean_score"], ascending=[False, True]).head(k)

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"regions": self.regions, "examples": self.examples, "below": self.below, "mean_score": self.mean_score,
                "majority": self.majority, "purity": self.purity, "lowest": self.lowest,
                "lowest_scores": self.lowest_scores}

    def _info(self) -> dict[str, Any]:
        return {"kinds": list(self.kinds), "names": list(self.names), "threshold": self.threshold,
                "score_name": self.score_name, "meta": self.meta}

    @classmethod
    def _from_saved(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> "RegionTable":
        return cls(tuple(info["kinds"]), arrays["regions"], tuple(info["names"]), arrays["examples"], arrays["below"],
                   arrays["mean_score"], arrays["majority"], arrays["purity"], arrays["lowest"],
                   arrays["lowest_scores"], float(info["threshold"]), info.get("score_name", "score"),
                   info.get("meta", {}))

    def _html_title(self) -> str:
        return f"Where the low scores lie ({self.score_name} < {self.threshold:g})"

    def _html_frame(self):
        return self.to_frame().drop(columns=["lowest"])

    def _html_notes(self) -> list[str]:
        total = int(self.below[np.array([k == "class" for k in self.kinds])].sum()) if "class" in self.kinds else 0
        return [f"{total} examples below {self.threshold:g} in all"]


def low_score_regions(
    scores: Any,
    labels: Any,
    *,
    threshold: float = 0.5,
    clusters: int | np.ndarray | None = None,
    features: np.ndarray | None = None,
    lowest: int = 5,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
) -> RegionTable:
    """Per class and per cluster: share below ``threshold``, mean score, the lowest examples.

    Parameters
    ----------
    scores : array [N] or a one-column score container
        Higher = more regular.
    labels : int array [N] or Dataset
        A ``Dataset`` also supplies ``features`` (its inputs, flattened) and ``class_names``, and
        its fingerprint is checked against the scores'.
    threshold : float, default 0.5
        Scores strictly below it count as low (0.5 suits the C-score; for a proxy on another
        scale pass, e.g., ``np.quantile(proxy, 0.1)``).
    clusters : int, int array [N] or None
        ``k``: k-means (scikit-learn, ``n_init=4``, seeded) with ``k`` clusters on ``features``;
        an array: your own cluster ids; None: classes only.
    features : array [N, ...], optional
        Inputs to cluster (flattened); required for ``clusters=k`` unless ``labels`` is a Dataset.
    lowest : int, default 5
        Lowest examples listed per region.
    class_names : sequence of str, optional
    seed : int, default 0
        k-means initialisation.

    Returns
    -------
    RegionTable
    """
    if isinstance(scores, Dataset):  # the experiments take (dataset, scores); this one reads (scores, labels)
        raise TypeError("low_score_regions takes the scores first, then the labels or the Dataset: "
                        "low_score_regions(scores, dataset); got a Dataset as the scores")
    fingerprint = ""
    if isinstance(labels, Dataset):
        ds = labels
        labels, fingerprint = ds.labels, ds.fingerprint
        class_names = class_names if class_names is not None else ds.class_names
        if features is None:
            features = ds.inputs
    lab = np.asarray(labels)
    if lab.ndim != 1 or not np.issubdtype(lab.dtype, np.integer) or lab.size == 0 or lab.min() < 0:
        raise ValueError(f"labels must be non-negative integers of shape (N,), got {lab.dtype} of shape {lab.shape}")
    n = lab.size
    score_name, s = single_score(scores, n, what="low_score_regions", labels=lab, fingerprint=fingerprint)
    if not (isinstance(threshold, (int, float)) and np.isfinite(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    lowest = check_positive_int("lowest", lowest)
    k_classes = int(lab.max()) + 1
    if class_names is not None and len(class_names) < k_classes:
        raise ValueError(f"{len(class_names)} class names for labels up to {k_classes - 1}")

    cluster_ids = None
    meta: dict[str, Any] = {"examples": n}
    if clusters is not None:
        if isinstance(clusters, (int, np.integer)) and not isinstance(clusters, bool):
            k = int(clusters)
            if not (2 <= k <= n):
                raise ValueError(f"clusters must be between 2 and the {n} examples, got {k}")
            if features is None:
                raise ValueError("clusters=k needs features (the inputs to cluster) or a Dataset as labels")
            f = np.asarray(features, dtype=np.float32).reshape(n, -1) if np.shape(features)[0] == n else None
            if f is None:
                raise ValueError(f"features must have {n} rows, got shape {np.shape(features)}")
            from sklearn.cluster import KMeans

            cluster_ids = KMeans(n_clusters=k, n_init=4, random_state=int(seed) % (2**32)).fit_predict(f).astype(np.int64)
            meta["kmeans"] = {"k": k, "seed": int(seed)}
        else:
            cluster_ids = np.asarray(clusters)
            if cluster_ids.shape != (n,) or not np.issubdtype(cluster_ids.dtype, np.integer):
                raise ValueError(f"clusters must be an int, or integer cluster ids of shape ({n},); got "
                                 f"{cluster_ids.dtype} of shape {cluster_ids.shape}")
            cluster_ids = cluster_ids.astype(np.int64)

    rows: list[tuple[str, int, str, np.ndarray]] = []
    for c in range(k_classes):
        rows.append(("class", c, str(class_names[c]) if class_names is not None else str(c), np.flatnonzero(lab == c)))
    if cluster_ids is not None:
        for j in np.unique(cluster_ids):
            rows.append(("cluster", int(j), f"cluster {int(j)}", np.flatnonzero(cluster_ids == j)))

    r = len(rows)
    examples = np.zeros(r, np.int64)
    below = np.zeros(r, np.int64)
    mean = np.full(r, np.nan)
    majority = np.zeros(r, np.int64)
    purity = np.full(r, np.nan)
    low_idx = np.full((r, lowest), -1, np.int64)
    low_s = np.full((r, lowest), np.nan)
    for i, (_, _, _, members) in enumerate(rows):
        examples[i] = members.size
        if not members.size:
            continue
        v = s[members]
        below[i] = int((v < threshold).sum())
        mean[i] = v.mean()
        counts = np.bincount(lab[members], minlength=k_classes)
        majority[i] = int(counts.argmax())
        purity[i] = counts.max() / members.size
        first = members[np.argsort(v, kind="stable")[:lowest]]
        low_idx[i, :first.size] = first
        low_s[i, :first.size] = s[first]
    return RegionTable(tuple(x[0] for x in rows), np.array([x[1] for x in rows]), tuple(x[2] for x in rows), examples,
                       below, mean, majority, purity, low_idx, low_s, float(threshold), score_name, meta)


# --------------------------------------------------------------------------- active collection


@dataclass
class CollectionResult(ExperimentResult):
    """Test accuracy against examples added, for each collection strategy and seed.

    Attributes
    ----------
    strategies : tuple of str
    added : int64 [J], examples added before each round (0 first)
    sizes : int64 [J], training-set size in each round
    correct : int64 [S, J, R], test examples each model got right (round 0 is shared by all strategies)
    n_test : int
    score_name : str
    meta : dict
    """

    FORMAT: ClassVar[str] = "cscore_lab.collection/1"
    FILENAME: ClassVar[str] = "collection.npz"

    strategies: tuple[str, ...]
    added: np.ndarray
    sizes: np.ndarray
    correct: np.ndarray
    n_test: int
    score_name: str = "score"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.strategies = tuple(str(s) for s in self.strategies)
        self.added = np.asarray(self.added, dtype=np.int64)
        j = self.added.size
        self.sizes = check_array("sizes", self.sizes, (j,), np.int64)
        self._check_correct((len(self.strategies), j, None))  # [S, J, R]

    def to_frame(self):
        """One row per (strategy, round): added, train_size, accuracy (mean over seeds), stderr, seeds."""
        import pandas as pd

        mean, se, n = mean_stderr(self.accuracy, axis=2)
        rows = [{"strategy": st, "round": j, "added": int(self.added[j]), "train_size": int(self.sizes[j]),
                 "accuracy": mean[i, j], "stderr": se[i, j], "seeds": n}
                for i, st in enumerate(self.strategies) for j in range(self.added.size)]
        return pd.DataFrame(rows)

    def compare(self, baseline: str = "random"):
        """Each (strategy, round) with its paired difference (within seed) from ``baseline``."""
        import pandas as pd

        if baseline not in self.strategies:
            raise KeyError(f"no strategy {baseline!r}; this result has {', '.join(self.strategies)}")
        b = self.strategies.index(baseline)
        acc = self.accuracy
        return pd.DataFrame([{"strategy": st, "added": int(self.added[j]),
                              **paired_row(acc[i, j], acc[b, j], f"diff_vs_{baseline}")}
                             for i, st in enumerate(self.strategies) for j in range(self.added.size)])

    def _arrays(self) -> dict[str, np.ndarray]:
        return {"added": self.added, "sizes": self.sizes, "correct": self.correct}

    def _info(self) -> dict[str, Any]:
        return {"strategies": list(self.strategies), "n_test": self.n_test, "score_name": self.score_name,
                "meta": self.meta}

    @classmethod
    def _from_saved(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> "CollectionResult":
        return cls(tuple(info["strategies"]), arrays["added"], arrays["sizes"], arrays["correct"], int(info["n_test"]),
                   info.get("score_name", "score"), info.get("meta", {}))

    def _html_title(self) -> str:
        return f"Active collection by {self.score_name}: test accuracy against examples added"

    def _html_frame(self):
        frame = self.to_frame()
        frame["cell"] = [f"{a:.4f} ± {s:.4f}" for a, s in zip(frame["accuracy"], frame["stderr"])]
        return frame.pivot(index="added", columns="strategy", values="cell")[list(self.strategies)]

    def _html_notes(self) -> list[str]:
        return [(f"start {int(self.sizes[0])} examples; mean ± standard error over {self.seeds} seeds; "
                 f"{self.n_test} test examples")]

    def __repr__(self) -> str:
        return (f"CollectionResult(strategies={list(self.strategies)}, rounds={self.added.size - 1}, "
                f"seeds={self.seeds}, n_test={self.n_test})")


def _count(name: str, value: Any, n: int) -> int:
    """An example count given as an int, or as a fraction in (0, 1) of ``n``."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a count or a fraction, got {value!r}")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
        return int(value)
    if isinstance(value, (float, np.floating)) and 0.0 < value < 1.0:
        return max(1, int(np.floor(value * n + 1e-9)))
    raise ValueError(f"{name} must be a positive count or a fraction in (0, 1) of the {n} training examples, got {value!r}")


def _start_set(labels: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A stratified random subset of ``size`` training positions (every class once at least, if it fits)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(labels.size)
    try:
        _, start = train_test_split(idx, test_size=size, stratify=labels, random_state=seed % (2**32))
    except ValueError:  # fewer start examples than classes: fall back to a plain random subset
        start = np.random.default_rng(seed).choice(idx, size=size, replace=False)
    return np.sort(start)


def collection_round(scores: np.ndarray, labels: np.ndarray, *, n_start: int, n_add: int, strategy: str,
                     rounds_done: int, seed: int) -> np.ndarray:
    """Sorted training positions of one seed's set after ``rounds_done`` rounds of adding ``n_add`` by ``strategy``.

    The starting set is a stratified random ``n_start`` (the same for every strategy of a seed);
    the pool is everything else, ordered lowest score first (``"lowest"``; ties at random),
    highest first (``"highest"``) or at random, and round ``j`` adds the first ``j * n_add`` of it,
    so the sets of one strategy are nested.
    """
    first = _start_set(labels, n_start, derive_seed(seed, "start"))
    if rounds_done == 0:
        return first
    pool = np.setdiff1d(np.arange(labels.size), first)
    if strategy == "random":
        order = np.random.default_rng(derive_seed(seed, "random")).permutation(pool.size)
    elif strategy in ("lowest", "highest"):
        order = curriculum_order(scores[pool], reverse=strategy == "lowest", seed=derive_seed(seed, "ties"))
    else:
        raise ValueError(f"unknown collection strategy {strategy!r}; choose from {COLLECTION_STRATEGIES}")
    return np.sort(np.concatenate([first, pool[order[:rounds_done * n_add]]]))


def active_collection_experiment(
    dataset: Dataset,
    scores: Any,
    *,
    start: int | float = 0.1,
    add_per_round: int | float = 0.1,
    rounds: int = 5,
    strategies: Sequence[str] = COLLECTION_STRATEGIES,
    recipe: Recipe | str = "digits-mlp",
    seeds: int = 3,
    seed: int = 0,
    test_fraction: float = 0.2,
    test: Dataset | None = None,
    budget: str = "steps",
    group_size: int | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    model_factory: Callable[[], Any] | None = None,
    progress: bool | Callable[[ExperimentProgress], None] = True,
    stop: threading.Event | None = None,
    workers: int | None = None,
) -> CollectionResult:
    """Simulate collecting data by score: start small, add examples from a pool each round, test.

    Parameters
    ----------
    dataset : Dataset
    scores : array [N] or a one-column score container
        Higher = more regular; the pool examples' own scores choose them.
    start : int or float in (0, 1), default 0.1
        Size of the starting set (a count, or a fraction of the training split): a stratified
        random subset, different for each seed, shared by all strategies of that seed.
    add_per_round : int or float in (0, 1), default 0.1
        Examples added per round (a count, or a fraction of the training split).
    rounds : int, default 5
        Rounds of adding; round 0 is the starting set alone.
    strategies : sequence of {"lowest", "highest", "random"}, default all three
        Lowest score first, highest first, or at random.
    recipe, seeds, seed, test_fraction, test, group_size, out, device, model_factory, progress, stop, workers
        As for :func:`~cscore_lab.uses.pruning_experiment`.
    budget : {"steps", "epochs"}, default "steps"
        Every model takes a full-training-split training's SGD steps, or the recipe's epochs
        over its own (growing) set.

    Returns
    -------
    CollectionResult
    """
    strategies = (strategies,) if isinstance(strategies, str) else tuple(strategies)
    if not strategies or any(s not in COLLECTION_STRATEGIES for s in strategies) or len(set(strategies)) != len(strategies):
        raise ValueError(f"strategies must be distinct choices from {COLLECTION_STRATEGIES}, got {strategies!r}")
    rounds = check_positive_int("rounds", rounds)
    budget = check_budget(budget)
    setup = set_up(dataset, scores, recipe=recipe, seeds=seeds, seed=seed, group_size=group_size, test=test,
                   test_fraction=test_fraction, device=device, single="active_collection_experiment")
    recipe, data, seeds, seed = setup.recipe, setup.data, setup.seeds, setup.seed
    (score_name, train_scores), = setup.scores.items()
    n = data.n_train
    n_start = _count("start", start, n)
    n_add = _count("add_per_round", add_per_round, n)
    if n_start + rounds * n_add > n:
        raise ValueError(f"start {n_start} + {rounds} rounds x {n_add} = {n_start + rounds * n_add} examples, more than "
                         f"the {n} in the training split; use fewer rounds or smaller steps")
    batch = recipe.batch_size

    def plan(strategy: str, r: int, j: int) -> ModelPlan:
        def build() -> EpochStream:
            members = collection_round(train_scores, data.labels, n_start=n_start, n_add=n_add, strategy=strategy,
                                       rounds_done=j, seed=derive_seed(seed, "pool", r))
            return EpochStream(members, batch, derive_seed(seed, "order", r, strategy, j))
        return ModelPlan(build, derive_seed(seed, "init", r))

    sizes = [n_start + j * n_add for j in range(rounds + 1)]
    per_round = []
    for j in range(rounds + 1):
        plans = [plan(st, r, j) for st in (("start",) if j == 0 else strategies) for r in range(seeds)]
        per_round.append(plan_groups(f"collect-r{j:03d}-", plans, budget_steps(budget, recipe, n, sizes[j]),
                                     setup.group_size))

    settings = {"start": n_start, "add_per_round": n_add, "rounds": rounds, "strategies": list(strategies),
                "seeds": seeds, "seed": seed, "budget": budget, "group_size": setup.group_size, "score_name": score_name}
    runner = Runner("collection", data, recipe, scores_digest(setup.scores), settings, out=out,
                    model_factory=model_factory, progress=progress, stop=stop, workers=workers)
    results = runner.run([g for round_groups in per_round for g in round_groups])
    correct = np.zeros((len(strategies), rounds + 1, seeds), dtype=np.int64)
    correct[:, 0, :] = last_counts(results, per_round[0])[None, :]
    for j in range(1, rounds + 1):
        correct[:, j, :] = last_counts(results, per_round[j]).reshape(len(strategies), seeds)
    result = CollectionResult(strategies, np.array([j * n_add for j in range(rounds + 1)]), np.array(sizes), correct,
                              data.n_test, score_name, runner.meta())
    runner.save(result)
    return result
