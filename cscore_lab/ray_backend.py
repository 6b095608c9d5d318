"""The ``ray`` backend: one Ray task per shard, on a local Ray instance or a cluster.

The driver puts the :class:`~cscore_lab.shards.ShardJob` (data set, recipe, seed) in
Ray's object store once, submits one task per shard and hands each finished shard to
``on_result`` in the order they arrive; the run store is written by the driver only, so
its guarantees (atomic shard files, resume) are those of the local backend. Shards are
pure, so a task that dies with its worker is simply run again (``max_retries``) and
gives the same result.

Ray is an optional dependency: ``pip install 'cscore-lab[ray]'`` on every node.
See ``docs/ray.md`` for starting a cluster and sizing ``num_gpus``.
"""

from __future__ import annotations

import importlib.util
import os
import site
import socket
import sys
import threading
import warnings
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .shard_file import ShardResult
from .shards import ShardJob, ShardSpec, compute_shard
from .trainer import check_device_name, torch_threads

__all__ = ["RayBackend", "check_reachable", "RAY_EXTRA", "LOOPBACK_ENV"]

RAY_EXTRA = "pip install 'cscore-lab[ray]'"

#: Set (if unset) before ``import ray`` when this backend starts a local instance: Ray then
#: binds every socket to 127.0.0.1 and writes no token under the home folder.
LOOPBACK_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "disabled"}

_MiB = 1 << 20


# ---------------------------------------------------------------------- worker side
# A worker process keeps the last few jobs it has seen, keyed by the job's object id, with
# their inputs already prepared on the worker's device: the data set crosses the object
# store once per worker, not once per shard.
_JOB_CACHE: "OrderedDict[str, ShardJob]" = OrderedDict()
_JOB_CACHE_SIZE = 2


def _worker_device(requested: str, gpu_ids: Sequence[Any]) -> str:
    """The device a worker trains on, from the job's device and the GPUs Ray gave the task.

    ``"auto"`` means CUDA exactly when the task was given a GPU. Ray makes the assigned GPU
    the worker's only visible one, so any ``"cuda:N"`` becomes ``"cuda"`` there.
    """
    if requested == "auto":
        return "cuda" if gpu_ids else "cpu"
    if requested.startswith("cuda"):
        return "cuda"
    return requested


def _worker_job(box: list) -> ShardJob:
    """The job behind ``box[0]`` (an ObjectRef, boxed so Ray passes the reference itself)."""
    import ray

    ref = box[0]
    key = ref.hex()
    job = _JOB_CACHE.get(key)
    if job is not None:
        _JOB_CACHE.move_to_end(key)
        return job
    job = ray.get(ref)
    job.device = _worker_device(job.device, ray.get_gpu_ids())
    with warnings.catch_warnings():
        # the data set's arrays are read-only views of the object store; nothing writes them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        job.prepared()
    _JOB_CACHE[key] = job
    while len(_JOB_CACHE) > _JOB_CACHE_SIZE:
        _JOB_CACHE.popitem(last=False)
    return job


def _shard_task(box: list, spec: ShardSpec, reporter: Any = None) -> dict:
    """Body of one Ray task: compute the shard, return its arrays (bits packed).

    Training is single-threaded, as in the local backend, so a shard's result is the same
    wherever it runs (``num_cpus`` is a reservation; shards, not threads, use the CPUs).
    With a ``reporter`` (a :class:`_ProgressBox` actor) the task reports the share of its steps
    done, at most every 2% of them.
    """
    job = _worker_job(box)
    progress = None if reporter is None else _reporting(reporter, spec.key)
    with torch_threads(1):
        return compute_shard(job, spec, progress=progress).to_arrays()


def _reporting(reporter: Any, key: str) -> Callable[[int, int], None]:
    """A train_group progress callback that sends the shard's fraction done to ``reporter``, every 2% of steps."""
    last = [-1.0]

    def progress(done: int, total: int) -> None:
        fraction = done / total
        if fraction - last[0] >= 0.02 or done == total:
            last[0] = fraction
            reporter.report.remote(key, fraction)

    return progress


class _ProgressBox:
    """A tiny actor that holds the latest training fraction of every shard in flight; the driver drains it."""

    def __init__(self) -> None:
        self.latest: dict[str, float] = {}

    def report(self, key: str, fraction: float) -> None:
        self.latest[key] = fraction

    def drain(self) -> dict[str, float]:
        out, self.latest = self.latest, {}
        return out


# ---------------------------------------------------------------------- driver side
def _import_ray(loopback: bool):
    """Import Ray, first setting :data:`LOOPBACK_ENV` when ``loopback`` and Ray is not imported yet."""
    if importlib.util.find_spec("ray") is None:
        raise ImportError(f"the 'ray' backend needs Ray, which is not installed; install it with: {RAY_EXTRA} "
                          f"(on every node of the cluster)")
    if loopback and "ray" not in sys.modules:
        for key, value in LOOPBACK_ENV.items():
            os.environ.setdefault(key, value)
    import ray

    return ray


def _split_address(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a ``host:port`` or ``ray://host:port`` address; None for ``"auto"``."""
    if address == "auto":
        return None
    if address == "local":
        raise ValueError("for a local Ray instance pass address=None (the default), not 'local'")
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"Ray address {address!r} is not of the form HOST:PORT (e.g. 10.0.0.1:6379), "
                         f"ray://HOST:PORT or 'auto'")
    return host, int(port)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """Raise :class:`ConnectionError` naming ``address`` when nothing listens there.

    ``ray.init`` itself waits minutes on a wrong address before failing; this check
    answers in at most ``timeout`` seconds.
    """
    hp = _split_address(address)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout):
            pass
    except OSError as exc:
        raise ConnectionError(
            f"cannot reach a Ray cluster at {address!r} ({exc.strerror or exc}); start one on the head node with "
            f"'ray start --head --port=6379' and pass the address it prints (HEAD_IP:6379)"
        ) from None


def _package_root() -> str | None:
    """The folder this ``cscore_lab`` was imported from, unless it is an installed site-packages."""
    root = str(Path(__file__).resolve().parent.parent)
    try:
        dirs = [*site.getsitepackages(), site.getusersitepackages()]
    except AttributeError:  # some embedded or old virtualenv interpreters lack these
        dirs = []
    installed = {str(Path(p).resolve()) for p in dirs}
    return None if root in installed else root


@contextmanager
def _workers_import_this_checkout() -> Iterator[None]:
    """Around starting a local instance: its processes get this cscore_lab's folder first on ``PYTHONPATH``.

    Ray's processes inherit the environment of the process that starts them, so workers
    import cscore_lab from where this driver did (a git checkout that is not installed,
    say). Done through the environment rather than a ``runtime_env``: a job with a
    runtime_env cannot use the workers Ray starts in advance, which cost seconds.
    """
    root = _package_root()
    if root is None:
        yield
        return
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (root, old) if p)
    try:
        yield
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def _job_nbytes(job: ShardJob) -> int:
    ds = job.dataset
    return int(ds.inputs.nbytes + ds.labels.nbytes + ds.images.nbytes)


class RayBackend:
    """Run shards as Ray tasks, on a local Ray instance or on a cluster.

    Parameters
    ----------
    address : str, optional
        A running cluster: ``"HEAD_IP:6379"`` (what ``ray start --head`` prints),
        ``"ray://HEAD_IP:10001"`` (Ray Client) or ``"auto"`` (the cluster this machine
        belongs to, or ``RAY_ADDRESS``). The driver connects and disconnects; the cluster
        keeps running. None (default): start a local Ray instance for the run and shut it
        down at the end; it listens on loopback only (see :data:`LOOPBACK_ENV`; this needs
        the backend to be the first to import Ray in the process).
        If this process has already called ``ray.init()``, that session is used as is.
    num_gpus : float, default 0.25
        GPUs per shard when shards train on CUDA: 0.25 lets four shards share a card.
        Shards train on CUDA when the job's device is ``"cuda"``/``"cuda:N"``, or ``"auto"``
        and the cluster has GPUs; ``num_gpus=0`` keeps ``"auto"`` on CPUs.
    num_cpus : float, default 1
        CPUs reserved per shard (GPU shards reserve them too). Shards train with one torch
        thread, as with the local backend, so that results are identical everywhere; more
        shards at once, not more threads, is what uses a node's CPUs.
    max_retries : int, default 3
        Times a shard is run again when its worker dies (shards are pure, so a retry
        gives the same result). ``-1`` retries without limit.
    connect_timeout : float, default 5
        Seconds to wait for ``address`` to answer before raising :class:`ConnectionError`.
    start_attempts : int, default 2
        Tries at starting a local instance (Ray's startup can time out on a busy machine).
    poll_interval : float, default 0.2
        Seconds between checks of ``stop`` while waiting for shards.
    **init_kwargs
        Passed to ``ray.init`` (e.g. ``_temp_dir=...``, ``object_store_memory=...``,
        ``runtime_env={"py_modules": [cscore_lab]}``). To size a local instance
        (``ray.init(num_cpus=8)``), call ``ray.init`` yourself first.

    Notes
    -----
    Each worker fetches the data set once and caches its prepared inputs on its device,
    so fractional-GPU workers on one card each hold a copy of the (scaled) inputs.
    GPU workers are reused across shards (Ray's default for GPU tasks is one task per
    worker process).

    See Also
    --------
    cscore_lab.backends.get_backend : ``get_backend("ray", address=...)``.
    cscore_lab.holdout.Estimation : ``Estimation(..., backend=RayBackend(...))``.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        num_gpus: float = 0.25,
        num_cpus: float = 1,
        max_retries: int = 3,
        connect_timeout: float = 5.0,
        start_attempts: int = 2,
        poll_interval: float = 0.2,
        **init_kwargs: Any,
    ) -> None:
        if address is not None:
            if not isinstance(address, str) or not address.strip():
                raise ValueError(f"address must be a Ray address such as 'HEAD_IP:6379' or None, got {address!r}")
            address = address.strip()
            _split_address(address)
        if not (isinstance(num_gpus, (int, float)) and 0 <= num_gpus):
            raise ValueError(f"num_gpus must be a number >= 0 (a fraction of a GPU per shard), got {num_gpus!r}")
        if num_gpus > 1 and num_gpus != int(num_gpus):
            raise ValueError(f"num_gpus above 1 must be a whole number of GPUs, got {num_gpus!r}")
        if not (isinstance(num_cpus, (int, float)) and num_cpus > 0):
            raise ValueError(f"num_cpus must be a number > 0, got {num_cpus!r}")
        if not (isinstance(max_retries, int) and max_retries >= -1):
            raise ValueError(f"max_retries must be an integer >= 0, or -1 for no limit, got {max_retries!r}")
        if importlib.util.find_spec("ray") is None:
            raise ImportError(f"the 'ray' backend needs Ray, which is not installed; install it with: {RAY_EXTRA} "
                              f"(on every node of the cluster)")
        self.address = address
        self.num_gpus = float(num_gpus)
        self.num_cpus = float(num_cpus)
        self.max_retries = max_retries
        self.connect_timeout = float(connect_timeout)
        if not (isinstance(start_attempts, int) and start_attempts >= 1):
            raise ValueError(f"start_attempts must be an integer >= 1, got {start_attempts!r}")
        self.start_attempts = start_attempts
        self.poll_interval = float(poll_interval)
        self.init_kwargs = init_kwargs

    def __repr__(self) -> str:
        extra = "".join(f", {k}={v!r}" for k, v in self.init_kwargs.items())
        return (f"RayBackend(address={self.address!r}, num_gpus={self.num_gpus:g}, num_cpus={self.num_cpus:g}, "
                f"max_retries={self.max_retries}{extra})")

    # ------------------------------------------------------------------ session
    def _init_kwargs(self, job: ShardJob | None) -> dict[str, Any]:
        kwargs = dict(self.init_kwargs)
        if self.address is not None:
            kwargs["address"] = self.address
            return kwargs
        kwargs.setdefault("include_dashboard", False)
        if "object_store_memory" not in kwargs:
            need = 2 * _job_nbytes(job) if job is not None else 0
            kwargs["object_store_memory"] = max(512 * _MiB, need + 256 * _MiB)
        return kwargs

    @contextmanager
    def session(self, job: ShardJob | None = None) -> Iterator[Any]:
        """Connect to (or start) Ray for the duration of the block; yield the ``ray`` module.

        A session this backend opened is closed at the end: a local instance is shut
        down, a cluster is only disconnected from. A session the caller opened with
        ``ray.init()`` is used and left open.
        """
        with self._session(job) as (ray, _):
            yield ray

    @contextmanager
    def _session(self, job: ShardJob | None) -> Iterator[tuple[Any, bool]]:
        """Like :meth:`session`; also yields whether this backend opened the session."""
        ray = _import_ray(loopback=self.address is None)
        if ray.is_initialized():
            self._check_same_cluster(ray)
            yield ray, False
            return
        kwargs = self._init_kwargs(job)
        if self.address is not None:
            check_reachable(self.address, self.connect_timeout)
            ray.init(**kwargs)
        else:
            self._start_local(ray, kwargs)
        try:
            yield ray, True
        finally:
            ray.shutdown()

    def _start_local(self, ray: Any, kwargs: dict[str, Any]) -> None:
        """``ray.init`` a local instance, trying again when it fails to come up.

        On a busy machine Ray's raylet can give up on its helper agents (it waits 15 s
        for them, ray-project/ray#65983); a second attempt usually finds them faster.
        """
        for attempt in range(1, self.start_attempts + 1):
            try:
                with _workers_import_this_checkout():
                    ray.init(**kwargs)
                return
            except Exception as exc:  # Ray raises a bare Exception when the node times out
                ray.shutdown()
                if attempt == self.start_attempts:
                    where = kwargs.get("_temp_dir") or os.path.join(os.environ.get("RAY_TMPDIR", "/tmp"), "ray")
                    raise RuntimeError(
                        f"could not start a local Ray instance after {attempt} attempt(s): {exc}\n"
                        f"Ray's logs are under {where}/session_latest/logs (raylet.err first). On a busy machine, "
                        f"start Ray yourself ('ray start --head --port=6379') and pass address='127.0.0.1:6379'."
                    ) from exc
                warnings.warn(f"starting a local Ray instance failed ({exc}); trying again", RuntimeWarning, stacklevel=3)

    def _check_same_cluster(self, ray: Any) -> None:
        hp = _split_address(self.address) if self.address else None
        if hp is None or self.address.startswith("ray://"):
            return
        current = ray.get_runtime_context().gcs_address
        c_host, _, c_port = current.rpartition(":")
        same_host = hp[0] == c_host or {hp[0], c_host} <= {"127.0.0.1", "localhost", "::1"}
        if not (same_host and str(hp[1]) == c_port):
            raise ValueError(f"this process is already connected to the Ray cluster at {current!r}, not {self.address!r}; "
                             f"call ray.shutdown() first or use address={current!r}")

    def check_device(self, device: str) -> None:
        """Only the name's form: the workers have the hardware, so a CPU laptop can ask a GPU cluster for cuda."""
        check_device_name(device)

    def _task_options(self, ray: Any, device: str) -> dict[str, Any]:
        """Resources for one shard task: GPUs when the shard trains on CUDA, else CPUs only."""
        if device == "cpu":
            use_gpu = False
        else:
            cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
            if device == "auto":
                use_gpu = self.num_gpus > 0 and cluster_gpus > 0
            else:  # "cuda" / "cuda:N"
                if self.num_gpus <= 0:
                    raise ValueError(f"device {device!r} needs GPUs but the Ray backend has num_gpus=0; "
                                     f"set num_gpus (e.g. 0.25) or use device 'cpu'")
                if cluster_gpus <= 0:
                    where = self.address or "the local Ray instance"
                    raise ValueError(f"device {device!r} was requested but the Ray cluster ({where}) has no GPUs; "
                                     f"use device 'auto' or 'cpu', or add GPU nodes")
                use_gpu = True
        return {
            "num_cpus": self.num_cpus,
            "num_gpus": self.num_gpus if use_gpu else 0,
            "max_retries": self.max_retries,
            "retry_exceptions": False,  # an exception in the shard's code is a bug, not bad luck
            "max_calls": 0,  # reuse workers (and their cached inputs) for GPU shards too
        }

    # ------------------------------------------------------------------ run
    def run(
        self,
        job: ShardJob,
        shards: Sequence[ShardSpec],
        on_result: Callable[[ShardResult], None],
        stop: threading.Event,
        on_progress: Callable[[ShardSpec, float], None] | None = None,
    ) -> None:
        """Compute ``shards`` as Ray tasks; call ``on_result`` in the driver as each arrives.

        Returns when every shard is done, or soon after ``stop`` is set: outstanding tasks
        end with the session (or are cancelled in a session the caller keeps open);
        finished shards have already been handed over. A shard whose code
        raises re-raises here; one whose worker died more than ``max_retries`` times
        raises :class:`RuntimeError` naming it.
        """
        if not shards or stop.is_set():
            return
        with self._session(job) as (ray, owned):
            task = ray.remote(**self._task_options(ray, job.device))(_shard_task)
            box = [ray.put(job)]  # one copy in the object store; tasks get the reference
            reporter = ray.remote(num_cpus=0)(_ProgressBox).remote() if on_progress is not None else None
            pending = {task.options(name=f"cscore:{spec.key}").remote(box, spec, reporter): spec for spec in shards}
            by_key = {spec.key: spec for spec in shards}
            interrupted = False
            try:
                while pending:
                    if stop.is_set():
                        return
                    ready, _ = ray.wait(list(pending), num_returns=1, timeout=self.poll_interval)
                    for ref in ready:
                        spec = pending.pop(ref)
                        on_result(self._fetch(ray, ref, spec))
                    if reporter is not None:
                        in_flight = {s.key for s in pending.values()}
                        for key, fraction in ray.get(reporter.drain.remote()).items():
                            if key in in_flight:
                                on_progress(by_key[key], fraction)
            except KeyboardInterrupt:
                interrupted = True
                raise
            finally:
                # Shards still out end with the session when this backend opened it (the job ends and
                # Ray kills its tasks). ray.cancel only in a session the caller keeps open, and not on
                # Ctrl-C: there, racing a task's completion, it aborted the driver with "Tried to
                # complete task that was not pending" in 2 of 9 tries (Ray 2.60; the race family of
                # ray-project/ray#54798), and without it in none of 8.
                if pending and not owned and not interrupted:
                    for ref in pending:
                        ray.cancel(ref)

    def _fetch(self, ray: Any, ref: Any, spec: ShardSpec) -> ShardResult:
        try:
            arrays = ray.get(ref)
        except ray.exceptions.RayTaskError:
            raise  # the shard's own exception (also an instance of its class), with the worker's traceback
        except ray.exceptions.RayError as exc:
            raise RuntimeError(f"shard {spec.key} failed on Ray after {self.max_retries} retries: "
                               f"{type(exc).__name__}: {exc}") from exc
        return ShardResult.from_arrays(spec.key, arrays)
