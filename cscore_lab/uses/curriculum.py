"""Curriculum learning driven by a per-example score: does easy-to-hard help, on this data, with this model?

:func:`curriculum_experiment` trains one model per (strategy, seed) on a training split, all of
them together as one stacked group (same batch size, each model its own batch indices), and
evaluates every model on a held-out test set after regular steps. Strategies are those of
:mod:`cscore_lab.uses.samplers` (curriculum, anti-curriculum, random-curriculum, random,
score-weighted). The result, :class:`CurriculumResult`, holds test accuracy against training
steps for every model and reports mean ± standard error over seeds; :meth:`CurriculumResult.compare`
gives each strategy's paired difference from a baseline (models of one seed share their
initialisation and the test set, so the difference is measured within each seed).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Sequence

import numpy as np

from ..data import Dataset
from ..recipes import Recipe
from ._experiment import (ExperimentProgress, ExperimentResult, ModelPlan, Runner, check_positive_int, derive_seed,
                          mean_stderr, paired_row, plan_groups, set_up)
from ._scores import scores_digest
from .samplers import PACED, STRATEGIES, Pacing, make_stream

__all__ = ["curriculum_experiment", "CurriculumResult", "DEFAULT_STRATEGIES"]

DEFAULT_STRATEGIES = ("curriculum", "anti-curriculum", "random-curriculum", "random", "weighted-easy", "weighted-hard")


@dataclass
class CurriculumResult(ExperimentResult):
    """Test accuracy against training steps for each strategy and seed.

    Attributes
    ----------
    strategies : tuple of str
    eval_steps : int64 [E]
        Steps after which the models were evaluated (0 = at initialisation).
    correct : int64 [S, R, E]
        Test examples model (strategy s, seed r) got right after each evaluation step.
    n_test : int
    score_name : str
    meta : dict
        Recipe, pacing, settings, data set and test set, timings, groups trained and resumed.
    """

    FORMAT: ClassVar[str] = "cscore_lab.curriculum/1"
    FILENAME: ClassVar[str] = "curriculum.npz"
    SEED_AXIS: ClassVar[int] = 1

    strategies: tuple[str, ...]
    eval_steps: np.ndarray
    correct: np.ndarray
    n_test: int
    score_name: str = "score"
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.strategies = tuple(str(s) for s in self.strategies)
        self.eval_steps = np.asarray(self.eval_steps, dtype=np.int64)
        self._check_correct((len(self.strategies), None, self.eval_steps.size))  # [S, R, E]

    def _index(self, strategy: str) -> int:
        try:
            return self.strategies.index(strategy)
        except ValueError:
            raise KeyError(f"no strategy {strategy!r}; this result has {', '.join(self.strategies)}") from None

    def _column(self, step: int | None) -> int:
        if step is None:
            return self.eval_steps.size - 1
        hits = np.flatnonzero(self.eval_steps == step)
        if not hits.size:
            raise KeyError(f"no evaluation at step {step}; evaluated at {self.eval_steps.tolist()}")
        return int(hits[0])

    def to_frame(self):
        """One row per (strategy, step): ``accuracy`` (mean over seeds), ``stderr``, ``seeds``."""
        import pandas as pd

        mean, se, n = mean_stderr(self.accuracy, axis=1)  # [S, E]
        rows = [{"strategy": st, "step": int(step), "accuracy": mean[i, j], "stderr": se[i, j], "seeds": n}
                for i, st in enumerate(self.strategies) for j, step in enumerate(self.eval_steps)]
        return pd.DataFrame(rows)

    def compare(self, baseline: str = "random", *, step: int | None = None):
        """Each strategy at ``step`` (default: the last) with its paired difference from ``baseline``.

        The difference is computed within each seed (the models of one seed share their
        initialisation and the test set), then averaged: ``diff`` ± ``diff_stderr`` over seeds.
        """
        import pandas as pd

        j = self._column(step)
        acc = self.accuracy[:, :, j]
        base = acc[self._index(baseline)]
        return pd.DataFrame([{"strategy": st, "step": int(self.eval_steps[j]),
                              **paired_row(acc[i], base, f"diff_vs_{baseline}")} for i, st in enumerate(self.strategies)])

    # ------------------------------------------------------------------ ResultTable
    def _arrays(self) -> dict[str, np.ndarray]:
        return {"eval_steps": self.eval_steps, "correct": self.correct}

    def _info(self) -> dict[str, Any]:
        return {"strategies": list(self.strategies), "n_test": self.n_test, "score_name": self.score_name,
                "meta": self.meta}

    @classmethod
    def _from_saved(cls, arrays: dict[str, np.ndarray], info: dict[str, Any]) -> "CurriculumResult":
        return cls(tuple(info["strategies"]), arrays["eval_steps"], arrays["correct"], int(info["n_test"]),
                   info.get("score_name", "score"), info.get("meta", {}))

    def _html_title(self) -> str:
        return f"Curriculum: test accuracy by strategy ({self.score_name})"

    def _html_frame(self):
        return self.compare("random") if "random" in self.strategies else self.to_frame()

    def _html_notes(self) -> list[str]:
        m = self.meta
        notes = [(f"{self.seeds} seeds, {self.n_test} test examples, evaluated at {self.eval_steps.size} steps "
                  f"up to {int(self.eval_steps[-1])}; mean ± standard error over seeds")]
        if m.get("pacing"):
            notes.append(f"pacing {m['pacing'].get('kind')}: start {m['pacing'].get('start')}, "
                         f"full at {m['pacing'].get('full_at')} of the steps")
        return notes

    def __repr__(self) -> str:
        return (f"CurriculumResult(strategies={list(self.strategies)}, seeds={self.seeds}, "
                f"steps={int(self.eval_steps[-1])}, n_test={self.n_test})")


def _eval_steps(steps: int, eval_every: int) -> np.ndarray:
    return np.unique(np.concatenate([[0], np.arange(eval_every, steps + 1, eval_every), [steps]])).astype(np.int64)


def curriculum_experiment(
    dataset: Dataset,
    scores: Any,
    recipe: Recipe | str = "digits-mlp",
    *,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    pacing: Pacing | str = "linear",
    steps: int | None = None,
    eval_every: int | None = None,
    seeds: int = 5,
    seed: int = 0,
    test_fraction: float = 0.2,
    test: Dataset | None = None,
    balance: bool = True,
    weight_ratio: float = 10.0,
    group_size: int | None = None,
    out: str | Path | None = None,
    device: str = "auto",
    model_factory: Callable[[], Any] | None = None,
    progress: bool | Callable[[ExperimentProgress], None] = True,
    stop: threading.Event | None = None,
    workers: int | None = None,
) -> CurriculumResult:
    """Train with each score-driven sampling strategy and compare held-out accuracy against steps.

    Parameters
    ----------
    dataset : Dataset
        Training data (and the test split, unless ``test`` is given).
    scores : array [N], CScores, ProxyTable or one-entry dict
        One score per example of ``dataset``, higher = more regular. Only the training
        examples' scores are used.
    recipe : Recipe or preset name, default "digits-mlp"
        Model, optimiser, batch size and input scaling (its ``epochs`` sets the default ``steps``).
    strategies : sequence of {"curriculum", "anti-curriculum", "random-curriculum", "random", "weighted-easy", "weighted-hard"}
        See :mod:`cscore_lab.uses.samplers`. Default: all six.
    pacing : Pacing or {"linear", "root", "step", "exponential"}, default "linear"
        The pool growth of the paced strategies, laid over ``steps``.
    steps : int, optional
        SGD steps of every model; default ``recipe.epochs * ceil(n_train / batch_size)``.
    eval_every : int, optional
        Evaluate after every this many steps (and at 0 and at the end); default ``steps // 20``.
    seeds : int, default 5
        Models per strategy. Seed ``r``'s models share their initialisation across strategies.
    seed : int, default 0
        Base seed of the split, the initialisations, tie-breaks and batches.
    test_fraction : float, default 0.2
        Stratified test split of ``dataset`` (fixed by ``seed``), when ``test`` is not given.
    test : Dataset, optional
        A separate test set; then all of ``dataset`` is training data.
    balance : bool, default True
        Class-balance the curriculum orders (as Wu et al. 2021 do).
    weight_ratio : float, default 10
        Weighted strategies: most / least likely example.
    group_size : int, optional
        Models per stacked group (default: all in one group, the fastest). Smaller groups make
        finer resume points. Part of the run folder's identity.
    out : path, optional
        Run folder: every finished group is kept, a rerun resumes and gives identical numbers,
        and the result is saved there (``CurriculumResult.load(out)``).
    device : {"auto", "cpu", "cuda", "cuda:N"}
    model_factory : callable returning a torch.nn.Module, optional
        Train this architecture instead of the recipe's.
    progress : bool or callable, default True
        A tqdm.auto bar over SGD steps, nothing, or ``fn(ExperimentProgress)``.
    stop : threading.Event, optional
        Set it to stop after the current step (raises :class:`cscore_lab.trainer.Interrupted`;
        finished groups stay in ``out``).
    workers : int, optional
        Groups trained at once, each on one thread with single-threaded torch (default: the CPU
        cores, 1 on a GPU). Results do not depend on it. With one group, set ``group_size`` to
        use several cores.

    Returns
    -------
    CurriculumResult

    See Also
    --------
    cscore_lab.uses.CurriculumSampler : the same strategies for your own training loop.
    cscore_lab.viz.uses.curriculum_curves : the figure.
    """
    strategies = tuple(strategies)
    if not strategies or any(s not in STRATEGIES for s in strategies):
        raise ValueError(f"strategies must be a non-empty sequence of {STRATEGIES}, got {strategies!r}")
    if len(set(strategies)) != len(strategies):
        raise ValueError(f"strategies must be distinct, got {strategies!r}")
    pacing = Pacing.of(pacing)
    if not (isinstance(weight_ratio, (int, float)) and weight_ratio >= 1):
        raise ValueError(f"weight_ratio must be a number >= 1, got {weight_ratio!r}")
    setup = set_up(dataset, scores, recipe=recipe, seeds=seeds, seed=seed, group_size=group_size, test=test,
                   test_fraction=test_fraction, device=device, single="curriculum_experiment")
    recipe, data, seeds, seed = setup.recipe, setup.data, setup.seeds, setup.seed
    (score_name, train_scores), = setup.scores.items()
    batch = recipe.batch_size
    if steps is None:
        steps = recipe.epochs * -(-data.n_train // batch)
    steps = check_positive_int("steps", steps)
    eval_every = check_positive_int("eval_every", eval_every if eval_every is not None else max(1, steps // 20))
    eval_steps = _eval_steps(steps, eval_every)
    labels = data.labels if balance else None

    def stream(strategy: str, r: int) -> Callable[[], Any]:
        return lambda: make_stream(strategy, train_scores, batch_size=batch, steps=steps, pacing=pacing,
                                   labels=labels, weight_ratio=weight_ratio, seed=derive_seed(seed, "stream", r, strategy))

    plans = [ModelPlan(stream(s, r), derive_seed(seed, "init", r)) for r in range(seeds) for s in strategies]
    groups = plan_groups("curriculum-", plans, steps, setup.group_size, eval_steps)
    settings = {
        "strategies": list(strategies), "pacing": {"kind": pacing.kind, "start": pacing.start, "full_at": pacing.full_at,
                                                   "inc": pacing.inc},
        "steps": steps, "eval_every": eval_every, "seeds": seeds, "seed": seed, "balance": bool(balance),
        "weight_ratio": float(weight_ratio), "group_size": setup.group_size, "score_name": score_name,
    }
    runner = Runner("curriculum", data, recipe, scores_digest(setup.scores), settings, out=out,
                    model_factory=model_factory, progress=progress, stop=stop, workers=workers)
    results = runner.run(groups)
    flat = np.concatenate([results[g.key] for g in groups], axis=0)  # [R*S, E], seed-major
    correct = flat.reshape(seeds, len(strategies), eval_steps.size).transpose(1, 0, 2)
    meta = runner.meta()
    meta["pacing"] = settings["pacing"]
    meta["paced_strategies"] = [s for s in strategies if s in PACED]
    result = CurriculumResult(strategies, eval_steps, correct, data.n_test, score_name, meta)
    runner.save(result)
    return result
