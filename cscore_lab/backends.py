"""Where shards run. A backend takes the job and the shards still to do and calls ``on_result``
in the driver for each finished shard (the driver writes the store), and ``on_progress`` as the
shards in flight train; it says how it checks the requested device (``check_device``).

``local`` runs shards on worker threads of this process (start the
:class:`~cscore_lab.holdout.Estimation` in a background thread to keep a notebook usable).
``ray`` spreads them over a Ray cluster (``pip install 'cscore-lab[ray]'``). Backends import
:mod:`cscore_lab.shards` and nothing above it.
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable, Protocol, Sequence

from .shard_file import ShardResult
from .shards import ShardJob, ShardSpec, compute_shard

__all__ = ["Backend", "LocalBackend", "get_backend", "backend_from_options", "BACKENDS", "ProgressCallback"]

#: ``on_progress(spec, fraction)``: shard ``spec`` has trained ``fraction`` of its steps.
ProgressCallback = Callable[[ShardSpec, float], None]


class Backend(Protocol):
    def check_device(self, device: str) -> None:
        """Raise ``ValueError`` now if shards cannot train on ``device`` (as far as the driver can tell)."""

    def run(
        self,
        job: ShardJob,
        shards: Sequence[ShardSpec],
        on_result: Callable[[ShardResult], None],
        stop: threading.Event,
        on_progress: ProgressCallback | None = None,
    ) -> None:
        """Compute ``shards``; call ``on_result`` for each as it finishes; return early once ``stop`` is set."""


class LocalBackend:
    """Shards in this process, ``workers`` at a time, each on one thread.

    Every shard trains with single-threaded torch: the small batched products of stacked
    models scale poorly across threads but independent shards scale perfectly, and a fixed
    thread count keeps results identical whatever the machine (and to the Ray backend, whose
    one-CPU tasks also run one thread). ``workers`` defaults to the number of CPU cores, or 1
    on a GPU. Workers are daemon threads that stop at the next training step once ``stop`` is
    set, so neither a stop request nor leaving Python waits for queued shards.
    """

    name = "local"

    def __init__(self, workers: int | None = None):
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers

    def check_device(self, device: str) -> None:
        from .trainer import resolve_device

        resolve_device(device)  # the hardware is here: fail now, not in the first shard

    def _workers(self, device_type: str, n_shards: int) -> int:
        if self.workers is not None:
            return min(self.workers, max(1, n_shards))
        default = 1 if device_type == "cuda" else (os.cpu_count() or 1)
        return max(1, min(default, n_shards))

    def run(self, job: ShardJob, shards: Sequence[ShardSpec], on_result: Callable[[ShardResult], None],
            stop: threading.Event, on_progress: ProgressCallback | None = None) -> None:
        if not shards:
            return
        from .trainer import torch_threads

        device, _, _ = job.prepared()  # once, before any worker starts
        workers = self._workers(device.type, len(shards))
        # longest first (a shard's training grows with ratio x models): the last shard to finish is a short
        # one, so no core idles long at the end (9 shards of 16 on 2 cores: makespan 3.94 -> 3.65 units).
        # Shards are pure, so the order changes no result.
        shards = sorted(shards, key=lambda s: -s.ratio * s.size)

        def shard(spec: ShardSpec) -> ShardResult:
            report = None if on_progress is None else (lambda done, total, spec=spec: on_progress(spec, done / total))
            return compute_shard(job, spec, stop, progress=report)

        with torch_threads(1):
            if workers == 1:
                for spec in shards:
                    if stop.is_set():
                        return
                    on_result(shard(spec))
                return
            self._run_threads(shards, shard, on_result, stop, workers)

    @staticmethod
    def _run_threads(shards: Sequence[ShardSpec], shard: Callable[[ShardSpec], ShardResult],
                     on_result: Callable[[ShardResult], None], stop: threading.Event, workers: int) -> None:
        from .trainer import Interrupted

        todo: "queue.SimpleQueue[ShardSpec]" = queue.SimpleQueue()
        for spec in shards:
            todo.put(spec)
        done: "queue.SimpleQueue[tuple[str, Any]]" = queue.SimpleQueue()

        def work() -> None:
            while not stop.is_set():
                try:
                    spec = todo.get_nowait()
                except queue.Empty:
                    break
                try:
                    done.put(("ok", shard(spec)))
                except Interrupted:
                    break
                except BaseException as exc:  # delivered to the driver, which stops the others
                    done.put(("error", exc))
                    break
            done.put(("exit", None))

        threads = [threading.Thread(target=work, name=f"cscore-shard-{i}", daemon=True) for i in range(workers)]
        for t in threads:
            t.start()
        running, error = len(threads), None
        try:
            while running:
                try:
                    kind, value = done.get(timeout=0.25)  # a timeout keeps Ctrl-C responsive
                except queue.Empty:
                    continue
                if kind == "exit":
                    running -= 1
                elif kind == "error":
                    error = error or value
                    stop.set()  # shards in flight end at their next step; queued ones never start
                elif error is None:
                    on_result(value)  # deliver what finished before raising anything
        except BaseException:  # Ctrl-C, SIGTERM: the workers stop at their next step; wait for them, since
            stop.set()          # leaving Python with a thread inside torch aborts the process
            for t in threads:
                t.join()
            raise
        if error is not None:
            raise error

    def __repr__(self) -> str:
        return f"LocalBackend(workers={self.workers})"


BACKENDS = ("local", "ray")


def backend_from_options(name: str, *, address: str | None = None, num_gpus: float | None = None) -> Backend:
    """The backend that the CLI's and the magics' ``--backend/--address/--num-gpus`` ask for."""
    if name != "ray" and (address or num_gpus is not None):
        raise ValueError("--address and --num-gpus apply only with --backend ray")
    options: dict[str, Any] = {}
    if address:
        options["address"] = address
    if num_gpus is not None:
        options["num_gpus"] = num_gpus
    return get_backend(name, **options)


def get_backend(name: str, **options: Any) -> Backend:
    """A backend by name: ``"local"`` or ``"ray"`` (options go to the Ray backend)."""
    if name == "local":
        unknown = set(options) - {"workers"}
        if unknown:
            raise ValueError(f"the local backend takes only 'workers', got {sorted(unknown)}")
        return LocalBackend(**options)
    if name == "ray":
        from .ray_backend import RayBackend

        return RayBackend(**options)
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
