"""Stopping the jobs that train in background threads (estimations, experiments) when Python exits.

:func:`cscore_lab.holdout.stop_background` and :func:`cscore_lab.experiments.stop_background`
are registered with :mod:`atexit` and both stop their jobs through :func:`stop_jobs`: leaving
Python (a script, a notebook kernel, an IPython shell) with a job running ends it at its next
training step, keeping what it finished, instead of training what is still queued or killing a
thread inside torch (which aborts the process).
"""

from __future__ import annotations

import time
from typing import Any, Iterable

__all__ = ["stop_jobs"]


def stop_jobs(jobs: Iterable[Any], timeout: float) -> list[Any]:
    """Stop each of ``jobs`` that runs in a background thread at its next step; return those.

    A job has ``thread``, ``stop(wait=False)`` and ``_listeners``, which are dropped first
    (nothing is displayed any more at exit). They stop side by side: ``timeout`` seconds for
    all of them together.
    """
    running = [job for job in list(jobs) if job.thread is not None and job.thread.is_alive()]
    for job in running:
        job._listeners.clear()
        job.stop(wait=False)
    end = time.monotonic() + timeout
    for job in running:
        job.thread.join(max(0.0, end - time.monotonic()))
    return running
