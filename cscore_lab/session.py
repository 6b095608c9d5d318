"""What ``%cscore`` does, as plain Python: :class:`CScoreSession` and its per-data-set :class:`Analysis`.

A session remembers what it has loaded and computed (data sets with their noise masks and specs,
running estimations, scores, proxies, correlations, the experiments run on the scores) and does every subcommand's work by calling
the library; the magics (:mod:`cscore_lab.magics`) only parse and display. Nothing here imports
IPython, so everything ``%cscore`` does can be done from a script with one call on a session.
Estimates are built by :func:`cscore_lab.options.resolve_estimation`, as the CLI builds them.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .cscores import CScores
from .data import DATASETS, Dataset
from .runs import DataSpec, LoadedData
from .store import StoreBusyError

if TYPE_CHECKING:  # pragma: no cover
    from .holdout import Estimation
    from .viz.widgets import Dashboard, Gallery, RunMonitor

__all__ = ["CScoreSession", "Analysis", "PUBLISHED_NAMES"]

PUBLISHED_NAMES = ("mnist", "cifar10", "cifar100")


@dataclass(eq=False)
class Analysis:
    """What a session knows about one data set."""

    dataset: Dataset
    spec: DataSpec | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    original_labels: np.ndarray | None = None
    cscores: CScores | None = None
    estimation: "Estimation | None" = None
    monitor: "RunMonitor | None" = None
    proxies: Any = None
    correlations: Any = None
    run_folder: Path | None = None
    memorization: Any = None
    influence: Any = None
    experiments: dict[str, Any] = field(default_factory=dict)  # finished experiments of cscore_lab.uses, by folder name
    jobs: dict[str, Any] = field(default_factory=dict)  # ExperimentJobs started on this record, by folder name

    @property
    def noise_mask(self) -> np.ndarray | None:
        """Which labels were flipped (None when none were)."""
        return self.masks.get("flipped")

    @property
    def ood_mask(self) -> np.ndarray | None:
        """Which examples were replaced by out-of-distribution inputs (None when none were)."""
        return self.masks.get("ood")

    @property
    def running(self) -> bool:
        t = self.estimation.thread if self.estimation is not None else None
        return t is not None and t.is_alive()

    @property
    def busy(self) -> bool:
        """An estimation or an experiment of this record is running."""
        return self.running or any(j.running for j in self.jobs.values())

    def loaded(self) -> LoadedData:
        return LoadedData(self.dataset, dict(self.masks), self.original_labels, self.spec)

    def scores(self) -> CScores | None:
        """The finished or loaded scores, or the estimate so far while a run is going."""
        est = self.estimation
        if est is not None:
            if est.result is not None and not self.running:
                self.cscores = est.result
            elif est.progress.done_runs > 0 or self.cscores is None:
                return est.current() if est.progress.done_runs > 0 else self.cscores
        return self.cscores


class CScoreSession:
    """The work behind ``%cscore``, as plain Python.

    Parameters
    ----------
    device : str, default "auto"
        Device for training (``auto``, ``cpu``, ``cuda``, ``cuda:N``).
    run_root : path, default "cscore-runs"
        Where run folders go when none is given.
    runs : int, optional
        Models per ratio when an estimate names none (default: the preset's).
    monitor_interval : float, default 1.0
        Least seconds between redraws of a run monitor's histogram.
    namespace : dict, optional
        Where data set names are also looked up as variables holding a :class:`Dataset`.
    """

    def __init__(self, *, device: str = "auto", run_root: str | Path = "cscore-runs", runs: int | None = None,
                 monitor_interval: float = 1.0, namespace: dict[str, Any] | None = None):
        from .trainer import check_device_name

        self.device = check_device_name(device)
        self.run_root = Path(run_root)
        self.runs = runs
        self.monitor_interval = monitor_interval
        self.namespace = namespace if namespace is not None else {}
        self.analyses: dict[str, Analysis] = {}
        self.current: str | None = None

    # ------------------------------------------------------------------ data sets
    def analysis(self, name: str | None = None, *, data: str | Path | None = None) -> Analysis:
        """The record of data set ``name`` (default: the one used last, else digits), loading it if new.

        ``name`` is looked up as a variable holding a :class:`Dataset` (the session's record of the
        same data is kept), then among the session's data sets (noisy copies, loaded runs), then
        among the loadable :data:`~cscore_lab.data.DATASETS` (``data`` is the path those need).
        """
        if name is None:
            name = self.current or "digits"
        var = self.namespace.get(name)
        if isinstance(var, Dataset) and data is None:
            rec = self.analyses.get(name)
            if rec is None or (rec.dataset is not var and rec.dataset.fingerprint != var.fingerprint):
                rec = next((r for r in self.analyses.values() if r.dataset is var), None) or Analysis(var)
                self.analyses[name] = rec
            self.current = name
            return rec
        if name in self.analyses and data is None:
            self.current = name
            return self.analyses[name]
        if name not in DATASETS:
            known = sorted(set(self.analyses) | set(DATASETS))
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown data set {name!r}{hint}; known: {', '.join(known)}, "
                             f"or the name of a variable holding a Dataset")
        loaded = DataSpec(name, None if data is None else str(data)).load()
        self.analyses[name] = Analysis(loaded.dataset, spec=loaded.spec)
        self.current = name
        return self.analyses[name]

    def datasets(self):
        """A table of what can be loaded and what this session holds."""
        import pandas as pd

        rows = [{"name": s.name, "needs --data": s.needs_path, "in session": s.name in self.analyses,
                 "description": s.description} for s in DATASETS.values()]
        for name, rec in self.analyses.items():
            if name not in DATASETS:
                what = f"{len(rec.dataset)} examples"
                for mask_name, mask in rec.masks.items():
                    what += f", {int(mask.sum())} {'labels flipped' if mask_name == 'flipped' else 'examples replaced (ood)'}"
                rows.append({"name": name, "needs --data": False, "in session": True, "description": what})
        return pd.DataFrame(rows).set_index("name")

    def _derived(self, base: Analysis, spec: DataSpec | None, dataset: Dataset, masks: dict[str, np.ndarray],
                 original_labels: np.ndarray | None, name: str | None) -> Analysis:
        if name:
            dataset = Dataset(dataset.inputs, dataset.labels, dataset.images, dataset.class_names, name,
                              dataset.value_range, dataset.source)
        rec = Analysis(dataset, spec=spec, masks={**base.masks, **masks},
                       original_labels=original_labels if original_labels is not None else base.original_labels)
        self.analyses[dataset.name] = rec
        self.current = dataset.name
        return rec

    def noise(self, dataset: str | None, fraction: float, *, seed: int = 0, data: str | Path | None = None,
              name: str | None = None) -> Analysis:
        """A copy of a data set with ``fraction`` of its labels flipped; the session remembers the mask
        and the original labels under the copy's name."""
        from dataclasses import replace

        from .data import inject_label_noise

        if name is not None and not name.strip():
            raise ValueError("--name needs a name for the noisy copy, got an empty string")
        base = self.analysis(dataset, data=data)
        noisy, mask = inject_label_noise(base.dataset, fraction, seed=seed)
        spec = base.spec
        rebuildable = spec is not None and not spec.label_noise and (not spec.ood_fraction or spec.seed == seed)
        spec = replace(spec, label_noise=float(fraction), seed=seed) if rebuildable else None
        return self._derived(base, spec, noisy, {"flipped": mask}, base.dataset.labels.copy(), name)

    def ood(self, dataset: str | None, fraction: float, kind: str = "gaussian", *, seed: int = 0,
            data: str | Path | None = None, source: str | Path | None = None, name: str | None = None) -> Analysis:
        """A copy of a data set with ``fraction`` of its examples replaced by out-of-distribution inputs
        (:func:`~cscore_lab.ood.inject_ood`); the session remembers the mask."""
        from dataclasses import replace

        from .ood import inject_ood

        if name is not None and not name.strip():
            raise ValueError("--name needs a name for the copy, got an empty string")
        base = self.analysis(dataset, data=data)
        copy, mask = inject_ood(base.dataset, fraction, kind, seed=seed, source=source)
        spec = base.spec
        rebuildable = spec is not None and not spec.label_noise and not spec.ood_fraction
        spec = (replace(spec, ood_fraction=float(fraction), ood_kind=kind, seed=seed,
                        ood_source=None if source is None or isinstance(source, Dataset) else str(source))
                if rebuildable and not isinstance(source, Dataset) else None)
        return self._derived(base, spec, copy, {"ood": mask}, None, name)

    # ------------------------------------------------------------------ estimation
    def prepare(self, dataset: str | None = None, *, data: str | Path | None = None, label_noise: float = 0.0,
                ood: float = 0.0, ood_kind: str | None = None, ood_source: str | None = None,
                monitor: bool = True, **options: Any) -> Analysis:
        """Set up an estimation (and its monitor) without running it; see :meth:`estimate`.

        ``label_noise``/``ood`` make (or reuse) the noisy copy first, as ``%cscore noise``/``ood``
        would, seeded by the estimate's seed, so the run equals the CLI's on the same options.
        """
        from .options import EstimateOptions, resolve_estimation

        opts = EstimateOptions(**options)
        rec = self.analysis(dataset, data=data)
        if ood:
            rec = self.ood(self.current, ood, ood_kind or "gaussian", seed=opts.seed, source=ood_source)
        elif ood_kind or ood_source:
            raise ValueError("--ood-kind and --ood-source need --ood FRACTION (the share of examples to replace)")
        if label_noise:
            rec = self.noise(self.current, label_noise, seed=opts.seed)
        if rec.running:
            raise StoreBusyError(f"an estimation of {rec.dataset.name} is already running in this session "
                                 f"({rec.estimation.progress.line()}); %cscore stop it or %cscore wait for it")
        est = resolve_estimation(opts, rec.loaded(), run_root=self.run_root, default_runs=self.runs,
                                 default_device=self.device)
        for other in self._records():
            if other.running and other.run_folder is not None and other.run_folder.resolve() == est.out.resolve():
                raise StoreBusyError(f"run folder {est.out} is in use by the running estimation of "
                                     f"{other.dataset.name}; %cscore stop it first")
        with est.store.lock():  # another process holding the folder fails here, before any thread starts
            pass
        rec.estimation, rec.run_folder = est, est.out
        rec.monitor = None
        if monitor:
            from .viz.widgets import RunMonitor

            rec.monitor = RunMonitor(est, interval=self.monitor_interval)
        return rec

    def estimate(self, dataset: str | None = None, *, wait: bool = False, **options: Any) -> "Estimation | CScores":
        """Estimate C-scores: in a background thread (returns the running :class:`Estimation`),
        or with ``wait=True`` in the foreground (returns :class:`CScores`).

        Options are those of :class:`~cscore_lab.options.EstimateOptions` (``preset``, ``ratios``,
        ``runs``, ``seed``, ``shard_size``, ``precision``, ``device``, ``backend``, ``address``,
        ``num_gpus``, ``eval_data``, ``out``) and of :meth:`prepare` (``data``, ``label_noise``,
        ``ood``, ``ood_kind``, ``ood_source``, ``monitor``). Running the same estimate again resumes.
        """
        rec = self.prepare(dataset, **options)
        if wait:
            return self.run(rec)
        rec.estimation.start()
        return rec.estimation

    def run(self, rec: Analysis) -> CScores:
        """Run a prepared estimation in this thread; an interrupt keeps the finished shards."""
        try:
            cs = rec.estimation.run()
        except KeyboardInterrupt:
            cs = rec.estimation.current()
        rec.cscores = cs
        return cs

    def wait(self, dataset: str | None = None, timeout: float | None = None) -> CScores:
        """Wait for the background work of ``dataset`` (default: current): its estimate, then its running
        experiments; return its scores. A failure raises RuntimeError naming it."""
        rec = self.analysis(dataset)
        jobs = [job for job in rec.jobs.values() if job.running]
        if rec.estimation is None and not jobs:
            if rec.cscores is not None:
                return rec.cscores
            raise ValueError(f"no estimation of {rec.dataset.name} in this session; start one with %cscore estimate")
        if rec.estimation is not None:
            rec.estimation.wait(timeout)
            if rec.estimation.progress.state == "failed":
                raise RuntimeError(f"the estimation of {rec.dataset.name} failed: {rec.estimation.progress.error}")
        for job in jobs:
            job.wait(timeout)
        return self._scores_of(rec)

    def status(self) -> list[str]:
        """One line per estimation and experiment of this session."""
        lines = []
        for rec in self._records():
            if rec.estimation is not None:
                line = rec.monitor.text() if rec.monitor is not None else rec.estimation.progress.line()
                lines.append(f"{rec.dataset.name}: {line} [{rec.run_folder}]")
            lines += [f"{rec.dataset.name}: {job.line()} [{job.out}]" for job in rec.jobs.values()]
        return lines

    def _records(self) -> list[Analysis]:
        """Each record once (a data set can be known under several names)."""
        return list({id(r): r for r in self.analyses.values()}.values())

    def stop(self, dataset: str | None = None, *, all: bool = False, timeout: float | None = None) -> list[str]:
        """Stop running estimations and experiments: those of ``dataset``, every one with ``all``, else the
        current data set's (or every one when it runs none). They stop at their next training step; the
        shards or groups in flight are dropped, finished ones stay. Returns one line per stopped run."""
        running = [r for r in self._records() if r.busy]
        if dataset is not None and not all:
            if dataset not in self.analyses:  # not a data set to load: there is nothing of it to stop
                raise ValueError(f"no estimation of {dataset!r} in this session; running: "
                                 f"{', '.join(r.dataset.name for r in running) or 'none'}")
            targets = [self.analyses[dataset]]
        elif not all and self.current in self.analyses and self.analyses[self.current].busy:
            targets = [self.analyses[self.current]]
        else:
            targets = running
        jobs = [j for rec in targets for j in rec.jobs.values() if j.running]
        estimating = [rec for rec in targets if rec.running or (rec.estimation is not None and not rec.jobs)]
        for rec in estimating:  # ask every one first, then wait: they stop together
            if rec.running:
                rec.estimation.stop(wait=False)
        for job in jobs:
            job.stop(wait=False)
        done = []
        for job in jobs:
            job.stop(wait=True, timeout=timeout)
            p = job.progress
            kept = f"{p.groups_done}/{p.groups_total} groups" if p is not None else "the finished groups"
            done.append(f"stopped {job.name}: {kept} kept in {job.out}; run the same %cscore "
                        f"{job.experiment.command} again to resume")
        for rec in estimating:
            if rec.estimation.thread is None:
                continue
            rec.estimation.stop(wait=True, timeout=timeout)
            p = rec.estimation.progress
            done.append(f"stopped {rec.dataset.name}: {p.done_runs}/{p.total_runs} runs kept in {rec.run_folder}; "
                        f"run the same %cscore estimate again to resume")
        return done

    def load(self, path: str | Path, *, data: str | Path | None = None) -> CScores:
        """Open a run folder (finished or not) with its data set; its noise masks and proxies are remembered."""
        from .runs import open_run

        run = open_run(path, data=data)
        from .experiments import kept_experiments

        rec = Analysis(run.dataset, spec=run.spec, masks=run.masks, original_labels=run.original_labels,
                       cscores=run.cscores, proxies=run.proxies, run_folder=Path(path),
                       experiments=kept_experiments(path))
        self.analyses[run.dataset.name] = rec
        self.current = run.dataset.name
        return run.cscores

    def load_published(self, name: str, path: str | Path, *, data: str | Path) -> CScores:
        """The authors' published scores for ``name`` (mnist, cifar10, cifar100), checked against the
        training set read from ``data`` (official order); kept under ``<name>-published``."""
        from .published import load_published

        loaded = DataSpec(name, str(data)).load()
        cs = load_published(name, path, loaded.dataset)
        key = f"{name}-published"
        self.analyses[key] = Analysis(loaded.dataset, spec=loaded.spec, cscores=cs)
        self.current = key
        return cs

    # ------------------------------------------------------------------ proxies and comparisons
    def _scores_of(self, rec: Analysis) -> CScores:
        cs = rec.scores()
        if cs is None:
            raise ValueError(f"no C-scores for {rec.dataset.name} yet: %cscore estimate {rec.dataset.name} "
                             f"(or %cscore load RUN_FOLDER)")
        return cs

    def _recipe_of(self, rec: Analysis, preset: str | None):
        from .recipes import Recipe, default_preset_name, get_preset

        if preset:
            return get_preset(preset).recipe
        if rec.estimation is not None:
            return rec.estimation.recipe
        if rec.run_folder is not None and (rec.run_folder / "manifest.json").is_file():
            from .store import RunStore

            return Recipe.from_dict(RunStore(rec.run_folder).read_manifest()["identity"]["recipe"])
        return get_preset(default_preset_name(rec.dataset.name, rec.dataset.input_shape)).recipe

    def proxies(self, dataset: str | None = None, *, data: str | Path | None = None, preset: str | None = None,
                device: str | None = None, progress: bool = True, **options: Any) -> Any:
        """Compute the cheap proxies of a data set with :func:`~cscore_lab.proxies.suite.compute_proxies`
        (``options`` go to it: ``runs``, ``families``, ``spaces``, ``epochs_for_features``, ...).

        The recipe is the data set's run's (else the preset's, else the default for the data); with a
        run folder of the same data, the table is also saved there (``proxies.npz``).
        """
        from .proxies.suite import compute_proxies

        rec = self.analysis(dataset, data=data)
        recipe = self._recipe_of(rec, preset)
        rec.proxies = compute_proxies(rec.dataset, recipe, device=device or self.device, progress=progress, **options)
        rec.correlations = None
        if rec.run_folder is not None and (rec.run_folder / "manifest.json").is_file():
            rec.proxies.save(rec.run_folder / "proxies.npz")
        return rec.proxies

    def compare(self, dataset: str | None = None, **options: Any) -> Any:
        """Correlate every proxy with the C-score (:func:`~cscore_lab.analysis.correlate`; ``options``
        such as ``n_boot`` go to it)."""
        from .analysis import correlate

        rec = self.analysis(dataset)
        if rec.proxies is None:
            raise ValueError(f"no proxies for {rec.dataset.name} yet: %cscore proxies {rec.dataset.name}")
        rec.correlations = correlate(rec.proxies, self._scores_of(rec), **options)
        return rec.correlations

    def detect(self, dataset: str | None = None, *, kind: str | None = None) -> Any:
        """How well the C-score, memorization (negated) and each proxy rank the injected examples first:
        ``kind="flipped"`` (label noise, :meth:`noise`) or ``"ood"`` (out-of-distribution inputs, :meth:`ood`);
        default the record's mask (flipped labels when it has both). Memorization is that of the
        estimate's models (computed when none is kept); published scores have none
        (:func:`~cscore_lab.detection.detect_masks`)."""
        from .detection import INJECTED, detect_masks

        if kind is not None and kind not in INJECTED:
            raise ValueError(f"kind must be one of {', '.join(INJECTED)}, got {kind!r}")
        rec = self.analysis(dataset)
        kind = kind or next((k for k in INJECTED if k in rec.masks), None)
        if kind is None or kind not in rec.masks:
            how = {"flipped": "%cscore noise DATASET FRACTION", "ood": "%cscore ood DATASET FRACTION --kind KIND",
                   None: "%cscore noise DATASET FRACTION (flipped labels) or %cscore ood DATASET FRACTION "
                         "(out-of-distribution inputs)"}[kind]
            raise ValueError(f"no {'noise' if kind != 'ood' else 'ood'} mask for {rec.dataset.name}: make a copy "
                             f"with {how} and estimate that")
        cs = self._scores_of(rec)
        return detect_masks(cs, {kind: rec.masks[kind]}, memorization=self._memorization_for_view(rec, cs),
                            proxies=rec.proxies)[kind]

    # ------------------------------------------------------------------ memorization and influence
    def _models_of(self, rec: Analysis):
        """(store, plan, evaluation set) of the models behind a record's scores."""
        from .store import RunStore

        if rec.estimation is not None:
            return rec.estimation.store, rec.estimation.plan, rec.estimation.eval_dataset
        if rec.run_folder is not None:
            spec = rec.spec
            return RunStore(rec.run_folder), None, spec.load_eval() if spec is not None and spec.eval_data else None
        raise ValueError(f"no models for {rec.dataset.name}: memorization and influence come from an estimate's "
                         f"models (%cscore estimate {rec.dataset.name}, or %cscore load RUN_FOLDER); published "
                         f"scores carry none")

    def memorization(self, dataset: str | None = None) -> Any:
        """Feldman & Zhang's memorization of every example, from the models of the record's estimate
        (:func:`cscore_lab.runs.memorization_of`); kept in the run folder as ``memorization.npz``."""
        return self._memorize(self.analysis(dataset))

    def _memorize(self, rec: Analysis) -> Any:
        from .runs import memorization_of

        store, plan, _ = self._models_of(rec)
        rec.memorization = memorization_of(store, labels=rec.dataset.labels, plan=plan, dataset=rec.dataset)
        if getattr(store, "path", None) is not None:
            rec.memorization.save(store.path)
        return rec.memorization

    def influence(self, dataset: str | None = None, *, k: int = 10) -> Any:
        """Top-k influence of training examples on each target (:func:`cscore_lab.runs.influence_of`): the
        evaluation set the estimate recorded, else the training examples themselves; kept in the run
        folder as ``influence.npz``."""
        from .runs import influence_of

        rec = self.analysis(dataset)
        store, plan, eval_dataset = self._models_of(rec)
        rec.influence = influence_of(store, labels=rec.dataset.labels, k=k, plan=plan, eval_dataset=eval_dataset,
                                     dataset=rec.dataset)
        if getattr(store, "path", None) is not None:
            rec.influence.save(store.path)
        return rec.influence

    # ------------------------------------------------------------------ uses of the scores
    def experiment(self, command: str, dataset: str | None = None, *, score: str | Sequence[str] | None = None,
                   preset: str | None = None, out: str | Path | None = None, wait: bool = False,
                   progress: bool = True, **options: Any) -> Any:
        """Run an experiment of :mod:`cscore_lab.uses` on a data set's scores: ``command`` is ``"curriculum"``,
        ``"prune"`` or ``"collect"`` (:func:`~cscore_lab.experiments.prepare_experiment` checks it all first).

        ``score`` names the scores: ``cscore`` (default), ``memorization`` (negated) or a column of the
        record's proxies; the recipe is that of the record's estimate unless ``preset``; ``options``
        go to the experiment's function (``seeds``, ``fractions``, ``strategies``, ``device``, ...).
        Kept in ``out`` (default ``<run folder>/uses/<experiment>-<scores>-<digest>``): the same call
        resumes. Runs in a background thread (returns the :class:`~cscore_lab.experiments.ExperimentJob`;
        :meth:`stop` stops it) or, with ``wait=True``, here (returns the result, None when interrupted).
        A finished result is kept on the record (``experiments``) for the dashboard's Uses tab.
        """
        from .experiments import prepare_experiment

        rec = self.analysis(dataset)
        options.setdefault("device", self.device)
        job = prepare_experiment(command, rec.dataset, score, cscores=lambda: self._scores_of(rec),
                                 memorization=lambda: self._memorization_for_view(rec, self._scores_of(rec)),
                                 proxies=rec.proxies, recipe=self._recipe_of(rec, preset), out=out,
                                 run_folder=rec.run_folder, root=self.run_root, **options)
        if any(j.running and j.out.resolve() == job.out.resolve() for r in self._records() for j in r.jobs.values()):
            raise StoreBusyError(f"experiment folder {job.out} is in use by a running experiment; %cscore stop it first")
        job.add_listener(lambda j: rec.experiments.__setitem__(j.name, j.result) if j.state == "finished" else None)
        rec.jobs[job.name] = job
        try:
            if wait:
                return job.run(progress=progress)
            job.start(progress=progress)  # returns once the options, the data and the folder are checked
        except Exception:
            rec.jobs.pop(job.name, None)
            raise
        return job

    def curriculum(self, dataset: str | None = None, **options: Any) -> Any:
        """:meth:`experiment` ``"curriculum"`` (:func:`~cscore_lab.uses.curriculum_experiment`)."""
        return self.experiment("curriculum", dataset, **options)

    def prune(self, dataset: str | None = None, **options: Any) -> Any:
        """:meth:`experiment` ``"prune"`` (:func:`~cscore_lab.uses.pruning_experiment`)."""
        return self.experiment("prune", dataset, **options)

    def collect(self, dataset: str | None = None, **options: Any) -> Any:
        """:meth:`experiment` ``"collect"`` (:func:`~cscore_lab.uses.active_collection_experiment`)."""
        return self.experiment("collect", dataset, **options)

    # ------------------------------------------------------------------ views
    def _neighbors(self, rec: Analysis):
        from .proxies.neighbors import NeighborIndex

        return NeighborIndex(rec.dataset.inputs.reshape(len(rec.dataset), -1), rec.dataset.labels)

    def _memorization_for_view(self, rec: Analysis, cs: CScores) -> Any:
        """The record's memorization, computed (it is cheap) when none is kept or the kept one counts other
        models than ``cs``; None where the scores have no models behind them (published, format-1 shards)."""
        mem = rec.memorization
        if mem is not None and (cs.meta.get("runs_done") is None or mem.meta.get("models") == cs.meta["runs_done"]):
            return mem
        try:
            return self._memorize(rec)
        except ValueError:  # no models, or shards from before correctness on training examples: the tab says so
            return None
        except OSError:  # computed, but the run folder cannot keep it (read-only): show it all the same
            return rec.memorization

    def _influence_for_view(self, rec: Analysis) -> tuple[Any, Dataset | None]:
        """The record's influence table, when computed, and the evaluation set its targets are in."""
        infl = rec.influence
        if infl is None or infl.target != "eval":
            return infl, None
        try:
            return infl, self._models_of(rec)[2]
        except (ValueError, OSError):  # the evaluation set cannot be loaded: its images are left out
            return infl, None

    def dashboard(self, dataset: str | None = None) -> "Dashboard":
        """The dashboard (Distribution, Agreement, Ratios, Memorization, Gallery) of a data set's current scores.

        Memorization is computed from the estimate's models when none is kept (it is cheap); influence
        is shown in the gallery when :meth:`influence` has computed it.
        """
        from .viz.widgets import Dashboard

        rec = self.analysis(dataset)
        cs = self._scores_of(rec)
        if rec.proxies is not None and rec.correlations is None:
            self.compare(rec.dataset.name)
        influence, eval_dataset = self._influence_for_view(rec)
        return Dashboard(cs, rec.dataset, proxies=rec.proxies, correlations=rec.correlations, masks=rec.masks,
                         original_labels=rec.original_labels, neighbors=self._neighbors(rec),
                         memorization=self._memorization_for_view(rec, cs), influence=influence,
                         eval_dataset=eval_dataset, experiments=rec.experiments)

    def gallery(self, dataset: str | None = None, *, label: str | int | None = None, order: str = "lowest",
                count: int = 24) -> "Gallery":
        """The gallery alone, optionally opened on one class (name or index) and order."""
        from .viz.widgets import Gallery

        if order not in ("lowest", "highest", "range"):
            raise ValueError(f"order must be lowest, highest or range, got {order!r}")
        rec = self.analysis(dataset)
        cs = self._scores_of(rec)
        influence, eval_dataset = self._influence_for_view(rec)
        g = Gallery(cs, rec.dataset, masks=rec.masks, original_labels=rec.original_labels, count=count,
                    neighbors=self._neighbors(rec), memorization=self._memorization_for_view(rec, cs),
                    influence=influence, eval_dataset=eval_dataset)
        if label is not None:
            names = rec.dataset.class_names
            k = names.index(str(label)) if str(label) in names else (int(label) if str(label).isdigit() else -2)
            if not 0 <= k < len(names):
                raise ValueError(f"unknown class {label!r}; classes: {', '.join(names)}")
            g.class_select.value = k
        g.order.value = order
        return g

