"""The Ray backend on real local Ray instances, loopback only.

One head node is started with ``ray start --head --block`` for the module (as docs/ray.md
tells users to) and most tests connect to it by address; one test lets the backend start
and shut down its own instance. Every Ray process gets this module's own temporary folder,
and every socket stays on 127.0.0.1 (checked). Ray is never stopped with ``ray stop``: the
head node is ended through the PID of the ``ray start`` process this module started.
"""

from __future__ import annotations

import os

# Before anything imports Ray: single-node loopback mode, no auth token in the home folder.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import importlib.util  # noqa: E402
import json  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cscore_lab import ray_backend  # noqa: E402
from cscore_lab.backends import get_backend  # noqa: E402
from cscore_lab.holdout import Estimation, estimate  # noqa: E402
from cscore_lab.shards import ShardJob, shard_specs  # noqa: E402
from cscore_lab.recipes import Plan, get_preset  # noqa: E402
from cscore_lab.store import RunStore  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RECIPE = get_preset("digits-mlp").recipe.with_(epochs=3)
PLAN = Plan(ratios=(0.3, 0.6), runs=4, seed=11, shard_size=2)  # 4 shards of 2 models
LONG_PLAN = Plan(ratios=(0.3, 0.6), runs=8, seed=11, shard_size=2)  # 8 shards, for the kill tests

ray_mark = pytest.mark.ray
#: Tests that build a RayBackend need Ray installed, even those that start no Ray process.
needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="needs the ray extra: pip install 'cscore-lab[ray]'")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _loopback_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(ray_backend.LOOPBACK_ENV)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _listening(pids: set[int]) -> list[str]:
    """Local addresses on which processes ``pids`` listen (TCP)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        if any(f"pid={p}," in line for p in pids):
            found.append(line.split()[3])
    return found


def _descendants(root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    seen, todo = set(), [root]
    while todo:
        pid = todo.pop()
        for c in children.get(pid, []):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def _holding_files_under(folder: Path) -> set[int]:
    """PIDs of processes with a file open under ``folder`` (Ray processes of this module's sessions)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd).startswith(str(folder)) for fd in (entry / "fd").iterdir()):
                pids.add(int(entry.name))
        except OSError:
            continue
    return pids


def _ray_logs(folder: Path) -> str:
    tails = []
    for name in ("raylet.err", "gcs_server.err"):
        for f in sorted(folder.glob(f"**/session_latest/logs/{name}")):
            tails.append(f"--- {f}\n" + f.read_text(errors="replace")[-1500:])
    return "\n".join(tails)


@pytest.fixture(scope="module")
def ray_tmp() -> Path:
    """This module's own folder for Ray's sessions (short: Ray's socket paths must fit 107 bytes).

    Afterwards, any process still holding files there (helpers a failed Ray start left
    behind) is killed by PID, and the folder is removed.
    """
    import shutil
    import tempfile

    path = Path(tempfile.mkdtemp(prefix="cscray-", dir="/tmp"))
    yield path
    for pid in _holding_files_under(path):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def ray_env(ray_tmp) -> dict[str, str]:
    """The environment of every Ray process these tests start: loopback mode, this checkout.

    Where ``rfc3987_syntax`` is installed (jsonschema's format extra, which JupyterLab
    brings), it builds some 30 Earley parsers whenever a process imports Ray: about 3 s
    of CPU in each of Ray's six helper processes and every worker. On two shared cores
    that made the raylet miss its fixed 15 s wait for its agents (ray-project/ray#65983)
    most of the time. Ray does not use IRI format checks, so for Ray's processes here an
    import of ``rfc3987_syntax`` fails at once and jsonschema skips that optional checker.
    """
    import importlib.util

    env = _loopback_env()
    if importlib.util.find_spec("rfc3987_syntax") is not None:
        shim = ray_tmp / "shim" / "rfc3987_syntax"
        shim.mkdir(parents=True)
        (shim / "__init__.py").write_text('raise ImportError("rfc3987_syntax is left out of the Ray test processes")\n')
        env["PYTHONPATH"] = os.pathsep.join([str(shim.parent), env["PYTHONPATH"]])
    return env


def _start_head(folder: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``ray start --head --block`` on loopback with its own folder and free ports; (process, address)."""
    gcs, grpc_port, listen_port, metrics, env_agent, client = _free_ports(6)
    cmd = [
        sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={gcs}",
        f"--temp-dir={folder}", "--include-dashboard=false", "--num-cpus=2",
        f"--object-store-memory={256 << 20}", "--disable-usage-stats",
        # the helpers' ports too: nothing on a fixed default port (10001, ...) another user may hold
        f"--dashboard-agent-grpc-port={grpc_port}", f"--dashboard-agent-listen-port={listen_port}",
        f"--metrics-export-port={metrics}", f"--runtime-env-agent-port={env_agent}",
        f"--ray-client-server-port={client}",
    ]
    folder.mkdir(parents=True)
    log_path = folder / "start.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 150
    while "block forever" not in log_path.read_text():
        if proc.poll() is not None or time.time() > deadline:
            _end_head(proc, folder)
            raise RuntimeError(f"ray start --head did not come up (load average {os.getloadavg()}):\n"
                               f"{log_path.read_text()[-1200:]}\n{_ray_logs(folder)}")
        time.sleep(0.5)
    return proc, f"127.0.0.1:{gcs}"


def _end_head(proc: subprocess.Popen, folder: Path) -> None:
    """End a head node this module started: SIGTERM to its ``ray start --block`` (never ``ray stop``)."""
    if proc.poll() is None:
        proc.terminate()  # ray start --block takes its node's processes down with it
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pid in _holding_files_under(folder):  # helpers of a start that failed half-way
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def cluster(ray_tmp, ray_env):
    """A loopback head node started the way docs/ray.md tells users to; yields its address.

    Ray's raylet gives its helper processes 15 s to start (ray-project/ray#65983), which a
    machine shared with other heavy jobs can miss: up to three attempts.
    """
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'cscore-lab[ray]')")
    errors = []
    for attempt in range(3):
        try:
            proc, address = _start_head(ray_tmp / f"head{attempt}", ray_env)
            break
        except RuntimeError as exc:
            errors.append(str(exc))
    else:
        pytest.fail("\n\n".join(errors))
    try:
        addresses = _listening({proc.pid, *_descendants(proc.pid)})
        assert addresses, "found no listening socket of the head node"
        assert all(a.startswith(("127.", "[::1]:", "[::ffff:127.")) for a in addresses), addresses
        yield address
    finally:
        _end_head(proc, ray_tmp)


@pytest.fixture(scope="module")
def digits():
    from cscore_lab.data import load_digits

    return load_digits()


@pytest.fixture(scope="module")
def local_scores(digits):
    return estimate(digits, RECIPE, PLAN, device="cpu")


@pytest.fixture(scope="module")
def local_long_scores(digits):
    return estimate(digits, RECIPE, LONG_PLAN, device="cpu")


def _assert_same(a, b) -> None:
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.per_ratio, b.per_ratio)
    np.testing.assert_array_equal(a.stderr, b.stderr)
    np.testing.assert_array_equal(a.heldout_counts, b.heldout_counts)


# --------------------------------------------------------------------- no Ray process needed
def test_missing_ray_names_the_extra(monkeypatch):
    monkeypatch.setattr(ray_backend.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'cscore-lab\[ray\]'"):
        get_backend("ray")


@needs_ray
def test_option_and_address_errors():
    with pytest.raises(ValueError, match="'nohost' is not of the form HOST:PORT"):
        ray_backend.RayBackend("nohost")
    with pytest.raises(ValueError, match="pass address=None"):
        ray_backend.RayBackend("local")
    with pytest.raises(ValueError, match="num_gpus must be a number >= 0"):
        ray_backend.RayBackend(num_gpus=-1)
    with pytest.raises(ValueError, match="max_retries"):
        ray_backend.RayBackend(max_retries=1.5)
    port = _free_ports(1)[0]
    with pytest.raises(ConnectionError, match=f"cannot reach a Ray cluster at '127.0.0.1:{port}'"):
        ray_backend.check_reachable(f"127.0.0.1:{port}", timeout=2)


def test_worker_device_follows_the_gpus_ray_gave():
    assert ray_backend._worker_device("auto", []) == "cpu"
    assert ray_backend._worker_device("auto", [0]) == "cuda"
    assert ray_backend._worker_device("cuda:3", [1]) == "cuda"  # Ray shows the assigned GPU as the only one
    assert ray_backend._worker_device("cpu", [0]) == "cpu"


@needs_ray
def test_task_resources_gpu_only_when_shards_train_on_cuda():
    def fake(gpus: float):
        return SimpleNamespace(cluster_resources=lambda: {"CPU": 8.0, **({"GPU": gpus} if gpus else {})})

    b = ray_backend.RayBackend(num_gpus=0.25, num_cpus=2)
    assert b._task_options(fake(2), "auto")["num_gpus"] == 0.25
    assert b._task_options(fake(0), "auto")["num_gpus"] == 0
    assert b._task_options(fake(2), "cpu")["num_gpus"] == 0
    opts = b._task_options(fake(1), "cuda:0")
    assert opts["num_gpus"] == 0.25 and opts["num_cpus"] == 2 and opts["max_calls"] == 0
    with pytest.raises(ValueError, match="has no GPUs"):
        b._task_options(fake(0), "cuda")
    with pytest.raises(ValueError, match="num_gpus=0"):
        ray_backend.RayBackend(num_gpus=0)._task_options(fake(1), "cuda")
    assert ray_backend.RayBackend(num_gpus=0)._task_options(fake(1), "auto")["num_gpus"] == 0


@needs_ray
def test_local_instance_settings(digits):
    """A local instance: no dashboard, a modest object store, workers import this checkout of cscore_lab."""
    kw = ray_backend.RayBackend(num_cpus=1)._init_kwargs(ShardJob(digits, RECIPE, 0))
    assert kw == {"include_dashboard": False, "object_store_memory": 512 << 20}
    before = os.environ.get("PYTHONPATH")
    with ray_backend._workers_import_this_checkout():
        if ray_backend._package_root() is not None:  # not installed in site-packages: a clone, an editable install
            assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(REPO)
    assert os.environ.get("PYTHONPATH") == before
    assert ray_backend.RayBackend("10.1.2.3:6379")._init_kwargs(None) == {"address": "10.1.2.3:6379"}


# --------------------------------------------------------------------- real Ray
@needs_ray
@ray_mark
def test_local_instance_gives_the_local_backend_scores(digits, local_scores, ray_tmp, ray_env, monkeypatch):
    """No address: the backend starts a loopback instance, runs every shard on it and shuts it down."""
    import ray

    monkeypatch.setenv("PYTHONPATH", ray_env["PYTHONPATH"])  # Ray's processes inherit this process's environment
    seen = ray_tmp / "local-workers"
    seen.mkdir()
    monkeypatch.setattr(ray_backend, "_shard_task", _recording_task(str(seen)))
    backend = ray_backend.RayBackend(num_cpus=1, _temp_dir=str(ray_tmp / "local"), object_store_memory=128 << 20)
    cs = estimate(digits, RECIPE, PLAN, device="auto", backend=backend)
    _assert_same(cs, local_scores)
    assert not ray.is_initialized()  # shut down again
    records = [json.loads(p.read_text()) for p in seen.iterdir()]
    assert len(records) == len(shard_specs(PLAN))
    assert {r["pid"] for r in records}.isdisjoint({os.getpid()})  # really ran in Ray workers
    assert {r["module"] for r in records} == {ray_backend.__file__}  # this checkout's code, not another copy


@needs_ray
@ray_mark
def test_killed_worker_is_retried_and_scores_are_identical(digits, local_scores, cluster, ray_tmp, monkeypatch):
    """SIGKILL the worker in the middle of a shard: Ray reruns the shard, the run finishes with the same scores."""
    import ray

    pids = ray_tmp / "kill-worker"
    pids.mkdir()
    victim = shard_specs(PLAN)[0].key
    monkeypatch.setattr(ray_backend, "_shard_task", _blocking_task(str(pids), victim))
    est = Estimation(digits, RECIPE, PLAN, device="cpu", backend=ray_backend.RayBackend(cluster, max_retries=2))
    est.start()
    first = _wait_for(lambda: sorted(pids.glob(f"{victim}.*")), timeout=120, what="the victim shard to start")
    killed = int(first[0].name.rsplit(".", 1)[1])
    os.kill(killed, signal.SIGKILL)
    est.wait(timeout=180)
    assert est.progress.state == "finished", est.progress.error
    _assert_same(est.result, local_scores)
    attempts = sorted(int(p.name.rsplit(".", 1)[1]) for p in pids.glob(f"{victim}.*"))
    assert len(attempts) == 2 and killed in attempts  # ran twice: killed, then retried in another worker
    assert not ray.is_initialized()  # the driver disconnected ...
    ray_backend.check_reachable(cluster)  # ... and the cluster is still up


@needs_ray
@ray_mark
def test_progress_within_shards_reaches_the_driver(digits, cluster, ray_tmp, monkeypatch):
    """A task's progress report crosses to the driver while the shard still runs (the bar moves within shards)."""
    gate = ray_tmp / "progress-gate"
    gate.mkdir()
    monkeypatch.setattr(ray_backend, "_shard_task", _reporting_task(str(gate)))
    est = Estimation(digits, RECIPE, Plan(ratios=(0.5,), runs=2, shard_size=2), device="cpu",
                     backend=ray_backend.RayBackend(cluster))
    seen = []

    def listener(e):
        seen.append((e.progress.done_runs, e.progress.partial_runs))
        if e.progress.partial_runs > 0:
            (gate / "open").touch()  # the driver saw the shard half done: let it finish

    est.add_listener(listener)
    est.run()
    assert est.progress.state == "finished"
    assert (0, 1.0) in seen  # half of the 2-model shard, before it finished
    assert seen[-1] == (2, 0.0)


def _pids_alive(pids: set[int]) -> set[int]:
    return {p for p in pids if Path(f"/proc/{p}").exists() and "(Z)" not in _proc_state(p)}


def _proc_state(pid: int) -> str:
    try:
        return "(" + Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] + ")"
    except (OSError, IndexError):
        return "(gone)"


@needs_ray
@ray_mark
def test_stop_ends_outstanding_shards(digits, cluster, ray_tmp, monkeypatch):
    """``stop`` returns promptly while shards are blocked in workers; finished shards stay in the store.

    The backend opened the connection, so disconnecting ends the job: Ray kills its running tasks.
    """
    gate = ray_tmp / "stop-gate"
    gate.mkdir()
    specs = shard_specs(LONG_PLAN)
    monkeypatch.setattr(ray_backend, "_shard_task", _gated_task(str(gate), {s.key for s in specs[2:]}))
    out = ray_tmp / "stopped-run"
    est = Estimation(digits, RECIPE, LONG_PLAN, out=out, device="cpu", backend=ray_backend.RayBackend(cluster))
    est.start()
    _wait_for(lambda: len(RunStore(out).finished_keys()) >= 2 and len(list(gate.glob("waiting.*"))) >= 1,
              timeout=120, what="two shards stored and one blocked")
    t0 = time.perf_counter()
    est.stop(timeout=60)
    assert not est.thread.is_alive() and time.perf_counter() - t0 < 30
    assert est.progress.state == "stopped"
    assert RunStore(out).finished_keys() == {s.key for s in specs[:2]}
    blocked = {int(p.name.rsplit(".", 1)[1]) for p in gate.glob("waiting.*")}
    _wait_for(lambda: not _pids_alive(blocked), timeout=60, what="the blocked shards' workers to end")


@needs_ray
@ray_mark
def test_stop_cancels_shards_in_a_session_the_caller_keeps(digits, cluster, ray_tmp, monkeypatch):
    """In a Ray session opened by the caller, ``stop`` cancels the outstanding tasks and leaves Ray up."""
    import ray

    gate = ray_tmp / "cancel-gate"
    gate.mkdir()
    specs = shard_specs(LONG_PLAN)
    monkeypatch.setattr(ray_backend, "_shard_task", _gated_task(str(gate), {s.key for s in specs[2:]}))
    ray.init(address=cluster)
    try:
        est = Estimation(digits, RECIPE, LONG_PLAN, device="cpu", backend=ray_backend.RayBackend())
        est.start()
        _wait_for(lambda: est.progress.done_runs >= 4 and len(list(gate.glob("waiting.*"))) >= 2,
                  timeout=120, what="two shards done and two blocked")
        est.stop(timeout=60)
        assert est.progress.state == "stopped" and ray.is_initialized()
        _wait_for(lambda: len(list(gate.glob("cancelled.*"))) >= 2, timeout=60, what="the blocked shards to be cancelled")
    finally:
        ray.shutdown()


DRIVER = r"""
import os, sys
from cscore_lab import ray_backend
from cscore_lab.data import load_digits
from cscore_lab.holdout import estimate
from cscore_lab.shards import shard_specs
from cscore_lab.recipes import Plan, get_preset

address, out, gate = sys.argv[1], sys.argv[2], sys.argv[3]
plan = Plan(ratios=(0.3, 0.6), runs=8, seed=11, shard_size=2)
held = {s.key for s in shard_specs(plan)[2:]}

def gated(box, spec, reporter=None):  # defined in __main__, so Ray ships it by value
    import os, time
    from cscore_lab import ray_backend
    if gate != "-" and spec.key in held:
        open(os.path.join(gate, "waiting." + spec.key), "w").close()
        time.sleep(600)
    return ray_backend._shard_task(box, spec, reporter)  # the real task body (unpatched in the worker)

ray_backend._shard_task = gated
recipe = get_preset("digits-mlp").recipe.with_(epochs=3)
estimate(load_digits(), recipe, plan, out=out, device="cpu", backend=ray_backend.RayBackend(address))
print("finished")
"""


@needs_ray
@ray_mark
def test_killed_driver_resumes_from_the_store(cluster, local_long_scores, ray_tmp, ray_env):
    """SIGKILL the driver once shards are stored; a new driver finishes the run with identical scores."""
    from cscore_lab.cscores import scores_from_store

    out, gate = ray_tmp / "driver-run", ray_tmp / "driver-gate"
    gate.mkdir()
    script = ray_tmp / "driver.py"
    script.write_text(DRIVER)
    env = ray_env
    proc = subprocess.Popen([sys.executable, str(script), cluster, str(out), str(gate)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: proc.poll() is not None or (
            (out / "shards").is_dir() and len(RunStore(out).finished_keys()) >= 1 and any(gate.glob("waiting.*"))),
            timeout=150, what="a shard in the store")
        assert proc.poll() is None, f"the driver ended early:\n{proc.stdout.read()}"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
    stored = RunStore(out).finished_keys()
    assert 1 <= len(stored) < len(shard_specs(LONG_PLAN))
    again = subprocess.run([sys.executable, str(script), cluster, str(out), "-"], env=env,
                           capture_output=True, text=True, timeout=240)
    assert again.returncode == 0 and "finished" in again.stdout, again.stdout + again.stderr
    _assert_same(scores_from_store(out), local_long_scores)


# --------------------------------------------------------------------- task wrappers (run in Ray workers)
def _recording_task(folder: str):
    def task(box, spec, reporter=None):
        import json, os

        from cscore_lab import ray_backend as rb

        record = {"pid": os.getpid(), "module": rb.__file__}
        with open(os.path.join(folder, spec.key), "w") as fh:
            json.dump(record, fh)
        return rb._shard_task(box, spec, reporter)  # the real task body (unpatched in the worker)

    return task


def _blocking_task(folder: str, victim: str):
    """Writes ``<key>.<pid>`` first; the victim's first attempt then waits to be killed."""

    def task(box, spec, reporter=None):
        import glob, os, time

        from cscore_lab import ray_backend as rb

        first = not glob.glob(os.path.join(folder, f"{spec.key}.*"))
        open(os.path.join(folder, f"{spec.key}.{os.getpid()}"), "w").close()
        if spec.key == victim and first:
            time.sleep(600)
        return rb._shard_task(box, spec, reporter)  # the real task body (unpatched in the worker)

    return task


def _gated_task(folder: str, held: set[str]):
    """Shards in ``held`` write ``waiting.<key>.<pid>`` and wait (``cancelled.<key>`` if cancelled)."""

    def task(box, spec, reporter=None):
        import os, time

        from cscore_lab import ray_backend as rb

        if spec.key in held:
            open(os.path.join(folder, f"waiting.{spec.key}.{os.getpid()}"), "w").close()
            try:
                for _ in range(6000):  # short sleeps: ray.cancel's KeyboardInterrupt lands between bytecodes
                    time.sleep(0.1)
            except KeyboardInterrupt:  # how ray.cancel reaches a running task
                open(os.path.join(folder, f"cancelled.{spec.key}"), "w").close()
                raise
        return rb._shard_task(box, spec, reporter)  # the real task body (unpatched in the worker)

    return task


def _reporting_task(folder: str):
    """Reports half its steps done, then waits for the test to open the gate (the driver saw the report)."""

    def task(box, spec, reporter=None):
        import os, time

        import ray

        from cscore_lab import ray_backend as rb

        assert reporter is not None, "the driver asked for no progress"
        ray.get(reporter.report.remote(spec.key, 0.5))
        for _ in range(1200):
            if os.path.exists(os.path.join(folder, "open")):
                break
            time.sleep(0.1)
        return rb._shard_task(box, spec, None)

    return task


def _wait_for(cond, *, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
