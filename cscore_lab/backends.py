"""Where shards run. A backend takes the job and the shards still to do and calls
``on_result`` in the driver for each finished shard; the driver writes the store.

``local`` runs shards one after another in the calling thread (start the
:class:`~cscore_lab.holdout.Estimation` in a background thread to keep a notebook
usable). ``ray`` spreads them over a Ray cluster (``pip install 'cscore-lab[ray]'``).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Protocol, Sequence

from .holdout import ShardJob, ShardSpec, compute_shard
from .store import ShardResult

__all__ = ["Backend", "LocalBackend", "get_backend", "BACKENDS"]


class Backend(Protocol):
    def run(
        self,
        job: ShardJob,
        shards: Sequence[ShardSpec],
        on_result: Callable[[ShardResult], None],
        stop: threading.Event,
    ) -> None:
        """Compute ``shards``; call ``on_result`` for each as it finishes; return early once ``stop`` is set."""


class LocalBackend:
    """Shards one after another in this process. A stop request drops the shard in flight."""

    name = "local"

    def run(self, job: ShardJob, shards: Sequence[ShardSpec], on_result: Callable[[ShardResult], None],
            stop: threading.Event) -> None:
        for spec in shards:
            if stop.is_set():
                return
            on_result(compute_shard(job, spec, stop))

    def __repr__(self) -> str:
        return "LocalBackend()"


BACKENDS = ("local", "ray")


def get_backend(name: str, **options: Any) -> Backend:
    """A backend by name: ``"local"`` or ``"ray"`` (options go to the Ray backend)."""
    if name == "local":
        if options:
            raise ValueError(f"the local backend takes no options, got {sorted(options)}")
        return LocalBackend()
    if name == "ray":
        try:
            from .ray_backend import RayBackend
        except ImportError as exc:  # the module exists; Ray itself may not
            raise ImportError(f"{exc}") from exc
        return RayBackend(**options)
    raise ValueError(f"unknown backend {name!r}; choose one of: {', '.join(BACKENDS)}")
