"""Data pruning by a per-example score: keep a fraction of the training set, train, test.

The pruning curves of Paul, Ganguli & Dziugaite, *Deep Learning on a Data Diet* (NeurIPS 2021) and
Sorscher, Geirhos, Shekhar, Ganguli & Morcos, *Beyond neural scaling laws: beating power law scaling
via data pruning* (NeurIPS 2022): test accuracy against the kept fraction, for each score and rule.

Rules (``keep=``), on the order from the most regular example to the least (ties broken by a
seeded random permutation, :func:`~cscore_lab.uses.samplers.curriculum_order`):

* ``"most_regular"``: the first ``k`` (prune the hardest: Sorscher et al. find this best when data is scarce);
* ``"least_regular"``: the last ``k`` (prune the easiest: what Paul et al. and Sorscher et al. do
  with EL2N, forgetting or memorization scores when data is plentiful);
* ``"middle"``: the ``k`` around the median, ``order[(n-k)//2 : (n-k)//2 + k]`` (drop both tails);
* ``"random"``: ``k`` uniformly at random (the baseline every paper compares against).

``k = kept_count(fraction, n) = floor(fraction * n)`` (at least 1). With ``balance=True`` the rule is
applied within each class, with per-class quotas proportional to class size (largest remainders).

Training budget (``budget=``), a choice that changes the curves
-----------------------------------------------------------------
``"steps"`` (default)
    Every model takes the SGD steps of one recipe training on the *whole* training set
    (``epochs * ceil(n_train / batch)``), so smaller kept sets are seen for more epochs and every
    point of a curve costs the same compute. This is what Paul et al.'s released code does
    (``num_steps = 200 * 390`` full-CIFAR-10 epochs' steps for every subset size, learning-rate
    decays at fixed steps), and it isolates *which* examples are kept from *how much* training
    the model gets.
``"epochs"``
    The recipe's epochs over the kept set (``ceil(epochs * k / batch)`` steps): compute shrinks
    with the kept fraction, which is the practical saving pruning promises, but a small kept set
    is then also a short training. We could not check here which of the two Sorscher et al.
    used (their training details were not reachable from this machine); state the budget
    with any curve you report.

All models with the same kept size train together as one stacked group (one group per fraction;
the random baseline is shared by all scores). Models of one seed share their initialisation
across scores, rules and fractions, so differences between rules are paired.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..data import Dataset
from ..recipes import Recipe
from ..results import check_array
from ._experiment import (ExperimentProgress, ExperimentResult, GroupPlan, ModelPlan, Runner, budget_steps,
                          check_budget, derive_seed, last_counts, mean_stderr, paired_row, plan_groups, set_up)
from ._scores import scores_digest
from .samplers import EpochStream, curriculum_order

__all__ = ["KEEP_RULES", "kept_count", "select_kept", "pruning_experiment", "PruningResult", "DEFAULT_FRACTIONS"]

KEEP_RULES = ("most_regular", "least_regular", "middle", "random")
DEFAULT_FRACTIONS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def kept_count(fraction: float, n: int) -> int:
    """``floor(fraction * n)``, at least 1 (with a 1e-9 guard so ``0.29 * 100`` keeps 29)."""
    return max(1, math.floor(fraction * n + 1e-9))


def _check_fraction(f: Any) -> float:
    if isinstance(f, bool) or not isinstance(f, (int, float, np.floating)) or not (0.0 < float(f) <= 1.0):
        raise ValueError(f"kept fractions must be numbers in (0, 1], got {f!r}")
    return float(f)


def _pick(order: np.ndarray, k: int, keep: str, rng: np.random.Generator) -> np.ndarray:
    n = order.size
    if keep == "most_regular":
        return order[:k]
    if keep == "least_regular":
        return order[n - k:]
    if keep == "middle":
        start = (n - k) // 2
        return order[start:start + k]
    return rng.choice(order, size=k, replace=False)


def _quotas(k: int, counts: np.ndarray) -> np.ndarray:
    """Largest-remainder apportionment of ``k`` over classes of sizes ``counts`` (ties: lower class first)."""
    exact = k * counts / counts.sum()
    q = np.minimum(np.floor(exact).astype(np.int64), counts)
    rest = k - int(q.sum())
    for c in np.lexsort((np.arange(counts.size), -(exact - np.floor(exact)))):
        if rest <= 0:
            break
        if q[c] < counts[c]:
            q[c] += 1
            rest -= 1
    return q


def select_kept(scores: Any, fraction: float, keep: str = "most_regular", *, seed: int = 0,
                labels: Any = None) -> np.ndarray:
    """Sorted indices of the examples ``keep`` retains at ``fraction`` (see the module docstring).

    Parameters
    ----------
    scores : array-like [N] or a one-column score container
        Higher = more regular.
    fraction : float in (0, 1]
        Share of the examples to keep: ``kept_count(fraction, N)`` of them.
    keep : {"most_regular", "least_regular", "middle", "random"}, default "most_regular"
    seed : int, default 0
        Breaks ties in the score and draws the random rule.
    labels : int array [N], optional
        Apply the rule within each class (per-class quotas proportional to class size).

    Returns
    -------
    int64 [k], sorted
    """
    from .samplers import _check_labels, _scores_array

    s = _scores_array(scores)
    fraction = _check_fraction(fraction)
    if keep not in KEEP_RULES:
        raise ValueError(f"unknown keep rule {keep!r}; choose from {KEEP_RULES}")
    n = s.size
    k = kept_count(fraction, n)
    order = curriculum_order(s, seed=seed)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x9A]))
    if labels is None:
        return np.sort(_pick(order, k, keep, rng))
    lab = _check_labels(labels, n)
    counts = np.bincount(lab)
    quotas = _quotas(k, counts)
    parts = [_pick(order[lab[order] == c], int(quotas[c]), keep, rng) for c in range(counts.size) if quotas[c]]
    return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)


@dataclass
class PruningResult(ExperimentResult):
    """Test accuracy against the kept fraction, for each (score, rule) and seed.

    Attributes
    ----------
    configs : tuple of (score, keep) pairs
        ``("random", "random")`` for the random baseline.
    fractions : float64 [F]
    kept : int64 [F], training examples kept at each fraction
    correct : int64 [C, F, R], test examples each model got right
    reference : int64 [R], the same for models trained on the whole training set (empty if not trained)
    n_test : int
    meta : dict
    """

    FORMAT: ClassVar[str] = "cscore_lab.pruning/1"
    FILENAME: ClassVar[str] = "pruning.npz"

    configs: tuple[tuple[str, str], ...]
    fractions: np.ndarray
    kept: np.ndarray
    correct: np.ndarray
    reference: np.ndarray
    n_test: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.configs = tuple((str(a), str(b)) for a, b in self.configs)
        self.fractions = np.asarray(self.fractions, dtype=np.float64)
        f = self.fractions.size
        self.kept = check_array("kept", self.kept, (f,), np.int64)
        self._check_correct((len(self.configs), f, None))  # [C, F, R]
        self.reference = np.asarray(self.reference, dtype=np.int64).reshape(-1)

    def reference_accuracy(self) -> tuple[float, float]:
        """Mean and standard error of the full-training-set models' test accuracy (NaN if none)."""
        if not self.reference.size:
            return float("nan"), float("nan")
        m, se, _ = mean_stderr(self.reference / float(self.n_test))
        return float(m), float(se)

    def to_frame(self):
        """One row per (score, keep, fraction): ``kept``, ``accuracy`` (mean over seeds), ``stderr``, ``seeds``."""
        import pandas as pd

        mean, se, n = mean_stderr(self.accuracy, axis=2)
        rows = [{"score": sc, "keep": kp, "fraction": float(fr), "kept": int(self.kept[j]), "accuracy": mean[i, j],
                 "stderr": se[i, j], "seeds": n}
                for i, (sc, kp) in enumerate(self.configs) for j, fr in enumerate(self.fractions)]
        return pd.DataFrame(rows)

    def compare(self, baseline: tuple[str, str] = ("random", "random")):
        """Each (score, keep, fraction) with its paired difference (within seed) from ``baseline``."""
        import pandas as pd

        try:
            b = self.configs.index(tuple(baseline))
        except ValueError:
            raise KeyError(f"no configuration {baseline!r}; this result has {list(self.configs)}") from None
        acc = self.accuracy
        return pd.DataFrame([{"score": sc, "keep": kp, "fraction": float(fr),
                              **paired_row(acc[i, j], acc[b, j], "diff_vs_random")}
                             for i, (sc, kp) in enumerate(self.configs) for j, fr in enumerate(self.fractions)])

    def table(self):
        """The curves side by side: rows = fraction, columns = ``score/keep``, cells ``mean ± se`` strings."""
        frame = self.to_frame()
        frame["cell"] = [f"{a:.4f} ± {s:.4f}" for a, s in zip(frame["accuracy"], frame["stderr"])]
        frame["curve"] = [sc if sc == kp else f"{sc}/{kp}" for sc, kp in zip(frame["score"], frame["keep"])]
        return frame.pivot(index="fraction", columns="curve", values="cell")[
            [sc if sc == kp else f"{sc}/{kp}" for sc, kp in self.configs]]

    # ------------------------------------------------------------------ ResultTable
    def _arrays(self) -> dict[str, np.ndarray]:
        return {"fractions": self.fractions, "kept": self.kept, "correct": self.correct, "reference": self.reference}

    def _info(self) -> dict[str, Any]:
        return {"configs": [list(c) for c in self.configs], "n_test": self.n_test, "meta": self.meta}

    @classmethod
    def _from_saved(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> "PruningResult":
        return cls(tuple(tuple(c) for c in info["configs"]), arrays["fractions"], arrays["kept"], arrays["correct"],
                   arrays["reference"], int(info["n_test"]), info.get("meta", {}))

    def _html_title(self) -> str:
        return "Pruning: test accuracy against the kept fraction"

    def _html_frame(self):
        return self.table()

    def _html_notes(self) -> list[str]:
        notes = [(f"mean ± standard error over {self.seeds} seeds; {self.n_test} test examples; "
                  f"budget: {self.meta.get('settings', {}).get('budget', '?')}")]
        m, se = self.reference_accuracy()
        if math.isfinite(m):
            notes.append(f"whole training set: {m:.4f} ± {se:.4f}")
        return notes

    def __repr__(self) -> str:
        return (f"PruningResult(configs={len(self.configs)}, fractions={self.fractions.tolist()}, seeds={self.seeds}, "
                f"n_test={self.n_test})")


def pruning_experiment(
    dataset: Dataset,
    scores: Any,
    fractions: Sequence[float] = DEFAULT_FRACTIONS,
    keep: Sequence[str] = KEEP_RULES,
    *,
    recipe: Recipe | str = "digits-mlp",
    seeds: int = 3,
    seed: int = 0,
    test_fraction: float = 0.2,
    test: Dataset | None = None,
    budget: str = "steps",
    balance: bool = False,
    reference: bool = True,
    group_size: int | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    model_factory: Callable[[], Any] | None = None,
    progress: bool | Callable[[ExperimentProgress], None] = True,
    stop: threading.Event | None = None,
    workers: int | None = None,
) -> PruningResult:
    """Pruning curves: keep a fraction of the training set chosen by each score and rule, train, test.

    Parameters
    ----------
    dataset : Dataset
    scores : array [N], CScores, ProxyTable, dict of name -> array [N], DataFrame
        One or several scores of ``dataset``'s examples, each higher = more regular; the curves
        of several scores come side by side. Only the training examples' scores are used.
    fractions : sequence of float in (0, 1], default 0.1 … 0.9
    keep : sequence of {"most_regular", "least_regular", "middle", "random"}, default all four
        ``"random"`` is trained once, whatever the number of scores.
    recipe : Recipe or preset name, default "digits-mlp"
    seeds : int, default 3
        Models per (score, rule, fraction).
    seed : int, default 0
    test_fraction : float, default 0.2
        Stratified test split, when ``test`` is not given.
    test : Dataset, optional
        A separate test set (all of ``dataset`` is then training data).
    budget : {"steps", "epochs"}, default "steps"
        See the module docstring: the same SGD steps for every model (a full-data training's),
        or the recipe's epochs over the kept set.
    balance : bool, default False
        Apply each rule within every class (class proportions kept).
    reference : bool, default True
        Also train ``seeds`` models on the whole training set (the dashed line of the figure).
    group_size : int, optional
        At most this many models per stacked group (default: one group per fraction).
    out : path, optional
        Run folder to keep every finished group in and resume from; the result is saved there.
    device, model_factory, progress, stop, workers
        As for :func:`~cscore_lab.uses.curriculum_experiment`.

    Returns
    -------
    PruningResult

    See Also
    --------
    select_kept : the rule alone. cscore_lab.viz.uses.pruning_curves : the figure.
    """
    fractions = tuple(_check_fraction(f) for f in fractions)
    if not fractions or len({f"{f:.6f}" for f in fractions}) != len(fractions):
        raise ValueError(f"fractions must be a non-empty sequence of numbers in (0, 1] that differ at 6 decimals, "
                         f"got {fractions!r}")
    keep = (keep,) if isinstance(keep, str) else tuple(keep)
    if not keep or any(k not in KEEP_RULES for k in keep) or len(set(keep)) != len(keep):
        raise ValueError(f"keep must be distinct rules from {KEEP_RULES}, got {keep!r}")
    budget = check_budget(budget)
    setup = set_up(dataset, scores, recipe=recipe, seeds=seeds, seed=seed, group_size=group_size, test=test,
                   test_fraction=test_fraction, device=device)
    recipe, data, seeds, seed, train_cols = setup.recipe, setup.data, setup.seeds, setup.seed, setup.scores
    if "random" in train_cols and "random" in keep:
        raise ValueError("a score may not be called 'random' (the name of the random baseline); rename it")
    n = data.n_train
    labels = data.labels if balance else None
    configs = [(name, k) for name in train_cols for k in keep if k != "random"]
    if "random" in keep:
        configs.append(("random", "random"))
    if not configs:
        raise ValueError("nothing to train: no score given for the non-random rules")
    batch = recipe.batch_size

    def stream(score: str, rule: str, fraction: float, r: int) -> Callable[[], Any]:
        def build() -> EpochStream:
            values = train_cols[score] if score in train_cols else np.zeros(n)
            kept = select_kept(values, fraction, rule, seed=derive_seed(seed, "select", r, rule if rule == "random" else "score"),
                               labels=labels)
            return EpochStream(kept, batch, derive_seed(seed, "order", r, score, rule, round(fraction * 1e6)))
        return build

    per_fraction: list[list[GroupPlan]] = []
    steps_of: dict[str, int] = {}
    for fr in fractions:
        steps = steps_of[f"{fr:g}"] = budget_steps(budget, recipe, n, kept_count(fr, n))
        plans = [ModelPlan(stream(sc, kp, fr, r), derive_seed(seed, "init", r)) for sc, kp in configs for r in range(seeds)]
        per_fraction.append(plan_groups(f"prune-f{fr:.6f}-", plans, steps, setup.group_size))
    groups = [g for fraction_groups in per_fraction for g in fraction_groups]
    if reference:
        steps = budget_steps(budget, recipe, n, n)
        everything = np.arange(n)
        plans = [ModelPlan((lambda r=r: EpochStream(everything, batch, derive_seed(seed, "order", r, "full"))),
                           derive_seed(seed, "init", r)) for r in range(seeds)]
        groups.append(GroupPlan("prune-full", plans, steps, np.array([steps], dtype=np.int64)))

    settings = {"fractions": list(fractions), "keep": list(keep), "seeds": seeds, "seed": seed, "budget": budget,
                "balance": bool(balance), "reference": bool(reference), "group_size": setup.group_size,
                "scores": list(train_cols)}
    runner = Runner("pruning", data, recipe, scores_digest(train_cols), settings, out=out,
                    model_factory=model_factory, progress=progress, stop=stop, workers=workers)
    results = runner.run(groups)
    correct = np.stack([last_counts(results, gs).reshape(len(configs), seeds) for gs in per_fraction], axis=1)  # [C, F, R]
    ref = results["prune-full"][:, 0] if reference else np.empty(0, dtype=np.int64)
    kept = np.array([kept_count(fr, n) for fr in fractions], dtype=np.int64)
    meta = runner.meta()
    meta["steps"] = steps_of
    result = PruningResult(tuple(configs), np.array(fractions), kept, correct, ref, data.n_test, meta)
    runner.save(result)
    return result
