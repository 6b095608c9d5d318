"""Where shards run. A backend takes the job and the shards still to do and calls
``on_result`` in the driver for each finished shard; the driver writes the store.

``local`` runs shards on worker threads of this process (start the
:class:`~cscore_lab.holdout.Estimation` in a background thread to keep a notebook
usable). ``ray`` spreads them over a Ray cluster (``pip install 'cscore-lab[ray]'``).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Protocol, Sequence

from .holdout import ShardJob, ShardSpec, compute_shard
from .store import ShardResult

__all__ = ["Backend", "LocalBackend", "get_backend", "backend_from_options", "BACKENDS"]


class Backend(Protocol):
    def run(
        self,
        job: ShardJob,
        shards: Sequence[ShardSpec],
        on_result: Callable[[ShardResult], None],
        stop: threading.Event,
    ) -> None:
        """Compute ``shards``; call ``on_result`` for each as it finishes; return early once ``stop`` is set."""


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` intra-op torch threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class LocalBackend:
    """Shards in this process, ``workers`` at a time, each on one thread.

    Every shard trains with single-threaded torch: the small batched products of stacked
    models scale poorly across threads but independent shards scale perfectly, and a fixed
    thread count keeps results identical whatever the machine (and to the Ray backend, whose
    one-CPU tasks also run one thread). ``workers`` defaults to the number of CPU cores, or 1
    on a GPU. A stop request drops the shards in flight; finished ones have been delivered.
    """

    name = "local"

    def __init__(self, workers: int | None = None):
        if workers is not None and (not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers

    def _workers(self, device_type: str, n_shards: int) -> int:
        if self.workers is not None:
            return min(self.workers, max(1, n_shards))
        default = 1 if device_type == "cuda" else (os.cpu_count() or 1)
        return max(1, min(default, n_shards))

    def run(self, job: ShardJob, shards: Sequence[ShardSpec], on_result: Callable[[ShardResult], None],
            stop: threading.Event) -> None:
        if not shards:
            return
        device, _, _ = job.prepared()  # once, before any worker starts
        workers = self._workers(device.type, len(shards))
        with torch_threads(1):
            if workers == 1:
                for spec in shards:
                    if stop.is_set():
                        return
                    on_result(compute_shard(job, spec, stop))
                return
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cscore-shard") as pool:
                pending = {pool.submit(compute_shard, job, spec, stop) for spec in shards}
                try:
                    while pending:
                        done, pending = wait(pending, return_when=FIRST_COMPLETED)
                        failed = [f.exception() for f in done if f.exception() is not None]
                        for fut in done:  # deliver what finished before raising anything
                            if fut.exception() is None:
                                on_result(fut.result())
                        if failed:
                            raise failed[0]
                except BaseException:
                    stop.set()  # shards in flight end at their next step; queued ones never start
                    for fut in pending:
                        fut.cancel()
                    raise

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
        try:
            from .ray_backend import RayBackend
        except ImportError as exc:  # the module exists; Ray itself may not
            raise ImportError(f"{exc}") from exc
        return RayBackend(**options)
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
