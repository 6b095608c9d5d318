"""Every bad input a clear message (issue 9): one table of cases, each tried from its front end.

Each row is (front end, the bad input, the expected message). ``cli`` rows run ``cscore-lab``'s
``main`` and expect exit status 2 and one line ``cscore-lab CMD: error: ...`` on stderr, no
traceback; ``magic`` rows run a line in a real IPython shell and expect one ``UsageError`` line
(``%config`` rows: the trait's error logged, the old value kept); ``python`` rows call the API
and expect a specific exception type whose message matches. The inputs are files this module
writes (:func:`build_workspace`): a gzip file with an altered body, an IDX header that lies,
npz files of strings, complex numbers and absurd labels, run folders whose manifest is truncated,
empty, not JSON, a list, without identity or deleted, a run with no finished shard, a file where
a folder is expected, a folder this process cannot write (skipped, with the reason, where none
can be made).

Every outcome is classified as *clear*, *unclear* (an error, but not the expected one line),
*traceback* (an unexpected exception) or *silent* (accepted). The tests assert *clear*; the counts
are printed at the end of the module's run, and ``python tests/test_bad_inputs.py`` prints the
whole table with the counts without pytest.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import logging
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

#: The plan of the workspace's finished run (``run/``), as CLI / magic options.
TINY = "--ratios 0.5 --runs 2 --shard-size 2 --device cpu"
NO_PROGRESS = "--no-progress"


# --------------------------------------------------------------------------- the files the cases read


def _idx(arr: np.ndarray) -> bytes:
    arr = np.asarray(arr, dtype=np.uint8)
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def make_unwritable(folder: Path) -> tuple[str | None, Callable[[], None]]:
    """Make ``folder`` a place this process cannot create files in; return (how, undo) or (None, undo).

    ``chmod`` does not stop root: as root the folder is made immutable (``chattr +i``) instead.
    """
    folder.mkdir(parents=True, exist_ok=True)

    def writable() -> bool:
        probe = folder / "probe"
        try:
            probe.mkdir()
        except OSError:
            return False
        probe.rmdir()
        return True

    if os.geteuid() != 0:
        folder.chmod(0o555)
        if not writable():
            return "chmod 555", lambda: folder.chmod(0o755)
        folder.chmod(0o755)
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(folder)], capture_output=True).returncode == 0:
        undo = lambda: subprocess.run([chattr, "-i", str(folder)], capture_output=True)  # noqa: E731
        if not writable():
            return "chattr +i (root ignores chmod)", undo
        undo()
    return None, lambda: None


def build_workspace(root: Path) -> dict[str, Any]:
    """Write every file the cases use under ``root``; returns the placeholders of the table."""
    from cscore_lab.holdout import Estimation
    from cscore_lab.recipes import Plan
    from cscore_lab.runs import DataSpec

    root.mkdir(parents=True, exist_ok=True)
    (root / "cwd").mkdir()  # the cases run here: a case that wrongly succeeds writes nothing elsewhere
    (root / "afile").write_text("not a folder\n")

    # a finished run made as 'cscore-lab estimate --ratios 0.5 --runs 2 --shard-size 2' makes it
    loaded = DataSpec("digits").load()
    run = root / "run"
    Estimation(loaded.dataset, "digits-mlp", Plan(ratios=(0.5,), runs=2, shard_size=2), out=run, device="cpu",
               data_spec=loaded.spec.to_dict()).run()

    def copy(name: str) -> Path:
        dest = root / name
        shutil.copytree(run, dest, ignore=shutil.ignore_patterns(".lock"))
        (dest / "cscores.npz").unlink()
        return dest

    shutil.rmtree(copy("empty-run") / "shards")
    (root / "empty-run" / "shards").mkdir()
    manifest = (run / "manifest.json").read_text()
    broken = {"truncated": manifest[: len(manifest) // 3], "empty": "", "garbage": "this is not JSON {",
              "list": json.dumps([1, 2, 3]),
              "no-identity": json.dumps({k: v for k, v in json.loads(manifest).items() if k != "identity"})}
    for name, text in broken.items():
        (copy(f"manifest-{name}") / "manifest.json").write_text(text)
    (copy("manifest-deleted") / "manifest.json").unlink()

    # data files that lie
    images = np.random.default_rng(6).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    labels = np.arange(40) % 10
    crc = root / "mnist-crc"
    crc.mkdir()
    body = bytearray(gzip.compress(_idx(images), compresslevel=0))  # stored blocks: only the CRC can tell
    body[len(body) // 2] ^= 0xFF
    (crc / "train-images-idx3-ubyte.gz").write_bytes(bytes(body))
    (crc / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx(labels)))
    lie = root / "mnist-header"
    lie.mkdir()
    (lie / "train-images-idx3-ubyte").write_bytes(
        struct.pack(">HBB", 0, 0x08, 3) + struct.pack(">3I", 2**32 - 1, 2**32 - 1, 28) + bytes(784))
    (lie / "train-labels-idx1-ubyte").write_bytes(_idx(labels))
    np.savez(root / "strings.npz", x=np.array([[b"a", b"b"], [b"c", b"d"]]), y=np.array([0, 1]))
    np.savez(root / "complex.npz", x=np.ones((4, 3), np.complex64), y=np.array([0, 1, 0, 1]))
    np.savez(root / "labels-huge.npz", x=np.zeros((3, 2), np.float32), y=np.array([0, 10**9, 1]))
    rng = np.random.default_rng(0)
    np.savez(root / "cifar10-cscores-orig-order.npz", labels=rng.integers(0, 10, 50_000), scores=rng.random(50_000))

    how, undo = make_unwritable(root / "readonly")
    return {"ws": str(root), "ro": str(root / "readonly"), "ro_how": how, "undo": undo}


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Case:
    """One bad input: where it is typed, what it is, and what the user must be told."""

    front: str  # "cli" | "magic" | "python"
    point: int  # issue 9's point
    what: str  # the bad input, in words
    command: str | Callable[[dict[str, Any]], Any]  # argv / magic line with {ws}, {ro}; or a callable(places)
    message: str  # what the one line says (a regex for python rows, a substring otherwise; {ws}, {ro} filled in)
    error: type | tuple[type, ...] = ValueError  # python rows: the exception type expected
    lock: str | None = None  # a run folder (under {ws}) held by another estimation while the case runs
    timeout: float = 120.0
    needs: str | None = None  # "ro": needs a folder this process cannot write
    multiline: bool = False  # the message lists several lines on purpose (an identity diff)

    @property
    def id(self) -> str:
        words = re.sub(r"[^a-z0-9]+", "-", self.what.lower()).strip("-")
        return f"{self.front}-{words}"


def _py(fn: Callable[..., Any]) -> Callable[[dict[str, Any]], Any]:
    return fn


def _digits():
    from cscore_lab.data import load_digits

    return load_digits()


def _small():
    return _digits().subset(np.arange(0, 1797, 6), name="digits-sixth")


def _estimation(places, out, **kw):
    from cscore_lab.holdout import Estimation
    from cscore_lab.recipes import Plan
    from cscore_lab.runs import DataSpec

    loaded = DataSpec("digits").load()
    plan = kw.pop("plan", Plan(ratios=(0.5,), runs=2, shard_size=2))
    return Estimation(loaded.dataset, "digits-mlp", plan, out=Path(out.format(**places)), device="cpu",
                      data_spec=loaded.spec.to_dict(), **kw)


def _load_cscores(places, folder):
    from cscore_lab.cscores import CScores

    return CScores.load(Path(folder.format(**places)))


def _diverge(places):
    from cscore_lab.holdout import estimate
    from cscore_lab.recipes import Plan, Recipe

    hot = Recipe(name="too-hot", hidden=(32,), learning_rate=1e6, momentum=0.9, batch_size=32, epochs=2)
    return estimate(_small(), hot, Plan(ratios=(0.5,), runs=2, shard_size=2), device="cpu")


def _factory(factory):
    def call(places):
        from cscore_lab.holdout import Estimation
        from cscore_lab.recipes import Plan

        return Estimation(_small(), "digits-mlp", Plan(ratios=(0.5,), runs=2, shard_size=2), device="cpu",
                          model_factory=factory)

    return call


def _wrong_outputs():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(64, 6))


def _wrong_inputs():
    import torch

    return torch.nn.Sequential(torch.nn.Linear(784, 10))


def _save_published(places, dest):
    from cscore_lab.published import load_published

    cs = load_published("cifar10", Path(places["ws"]) / "cifar10-cscores-orig-order.npz")
    return cs.save(Path(dest.format(**places)))


def _report(places, dest):
    from cscore_lab.report import write_report
    from cscore_lab.runs import open_run

    run = open_run(Path(places["ws"]) / "run")
    return write_report(run.cscores, run.dataset, Path(dest.format(**places)))


def _open_run(places, folder):
    from cscore_lab.runs import open_run

    return open_run(Path(folder.format(**places)))


def _read_manifest(places, folder):
    from cscore_lab.store import RunStore

    return RunStore(Path(folder.format(**places))).read_manifest()


def _mismatch():
    from cscore_lab.store import StoreMismatchError

    return StoreMismatchError


def _busy():
    from cscore_lab.store import StoreBusyError

    return StoreBusyError


def _data_error():
    from cscore_lab.data import DataError

    return DataError


def _diverged():
    from cscore_lab.shards import TrainingDiverged

    return TrainingDiverged


def _load_npz(places, name):
    from cscore_lab.data import load_npz

    return load_npz(Path(places["ws"]) / name)


def _load_mnist(places, name):
    from cscore_lab.data import load_mnist

    return load_mnist(Path(places["ws"]) / name)


def _from_arrays(inputs, labels):
    def call(places):
        from cscore_lab.data import from_arrays

        return from_arrays(inputs, labels)

    return call


def _plan(**kw):
    def call(places):
        from cscore_lab.recipes import Plan

        return Plan(**kw)

    return call


def _data_spec(places):
    from cscore_lab.runs import DataSpec

    return DataSpec("digits", path=places["ws"])


CRC = "train-images-idx3-ubyte.gz: corrupt or truncated gzip file"
HEADER = "header claims shape (4294967295, 4294967295, 28)"
BYTES = "inputs must be real numbers, got dtype |S1 (byte strings)"
COMPLEX = "inputs must be real numbers, got dtype complex64 (complex numbers)"
LABELS = "label 1000000000 at index 1 would make 1,000,000,001 classes; at most MAX_CLASSES = 100,000"
COLLIDE = "subset ratios 0.5 and 0.5000001 are closer than 1e-06"
BUSY = "is in use by another estimation"
RUNS = "runs per ratio must be at most 100,000, got 1,000,000,000,000"
SHARD = "shard_size must be at most 10,000 models, got 1,000,000,000"
REPAIR = "'cscore-lab repair --run {ws}/manifest-deleted'"
EMPTY = "no finished shard yet (0 of 2 models)"
NO_DATA = "dataset 'digits' is bundled and reads no --data"
M = "{ws}/manifest-"  # the run folders whose manifest is damaged

E = f"estimate {TINY} {NO_PROGRESS}"  # an estimate of the workspace's tiny plan
ME = f"%cscore estimate {TINY}"

CASES: list[Case] = [
    # 1. data files are verified: a gzip body altered, an IDX header that lies, non-real dtypes, absurd labels
    Case("cli", 1, "gzip with an altered body", "estimate --dataset mnist --data {ws}/mnist-crc", CRC),
    Case("cli", 1, "IDX header claiming 2**32 x 2**32 images", "estimate --dataset mnist --data {ws}/mnist-header", HEADER),
    Case("cli", 1, "npz of byte strings", "estimate --dataset npz --data {ws}/strings.npz", BYTES),
    Case("cli", 1, "npz of complex inputs", "estimate --dataset npz --data {ws}/complex.npz", COMPLEX),
    Case("cli", 1, "npz with a label of 10**9", "estimate --dataset npz --data {ws}/labels-huge.npz", LABELS),
    Case("magic", 1, "gzip with an altered body", "%cscore estimate mnist --data {ws}/mnist-crc", CRC),
    Case("magic", 1, "IDX header claiming 2**32 x 2**32 images", "%cscore estimate mnist --data {ws}/mnist-header", HEADER),
    Case("magic", 1, "npz of byte strings", "%cscore estimate npz --data {ws}/strings.npz", BYTES),
    Case("magic", 1, "npz of complex inputs", "%cscore proxies npz --data {ws}/complex.npz", COMPLEX),
    Case("magic", 1, "npz with a label of 10**9", "%cscore estimate npz --data {ws}/labels-huge.npz", LABELS),
    Case("python", 1, "gzip with an altered body", lambda p: _load_mnist(p, "mnist-crc"), re.escape(CRC) + ".*CRC",
         _data_error()),
    Case("python", 1, "IDX header claiming 2**32 x 2**32 images", lambda p: _load_mnist(p, "mnist-header"),
         re.escape(HEADER), _data_error()),
    Case("python", 1, "npz of byte strings", lambda p: _load_npz(p, "strings.npz"), re.escape(BYTES), _data_error()),
    Case("python", 1, "complex arrays", _from_arrays(np.ones((4, 3), np.complex128), [0, 1, 0, 1]),
         r"got dtype complex128 \(complex numbers\)", _data_error()),
    Case("python", 1, "a label of 10**9", _from_arrays(np.zeros((3, 2)), np.array([0, 10**9, 1])), re.escape(LABELS),
         _data_error()),
    # 3. ratios that would share shard files and seeds
    Case("cli", 3, "ratios 0.5 and 0.5000001", "estimate --ratios 0.5 0.5000001 --runs 2", COLLIDE),
    Case("magic", 3, "ratios 0.5 and 0.5000001", "%cscore estimate --ratios 0.5 0.5000001 --runs 2", COLLIDE),
    Case("python", 3, "ratios 0.5 and 0.5000001", _plan(ratios=(0.5, 0.5000001)), re.escape(COLLIDE)),
    Case("cli", 3, "the same ratio twice", "estimate --ratios 0.5 0.5", "subset ratios must be distinct"),
    # 4. a folder in use by another estimation
    Case("cli", 4, "a run folder in use", E.replace("--runs 2", "--runs 4") + " --out {ws}/run", BUSY, lock="run"),
    Case("magic", 4, "a run folder in use", ME.replace("--runs 2", "--runs 4") + " --out {ws}/run", BUSY, lock="run"),
    Case("python", 4, "a run folder in use", lambda p: _estimation(p, "{ws}/run").run(), BUSY, _busy(), lock="run"),
    # 6. absurd sizes fail at once, with the bound
    Case("cli", 6, "--runs 10**12", "estimate --runs 1000000000000", RUNS, timeout=20),
    Case("cli", 6, "--shard-size 10**9", "estimate --shard-size 1000000000", SHARD, timeout=20),
    Case("magic", 6, "--runs 10**12", "%cscore estimate --runs 1000000000000", RUNS, timeout=20),
    Case("magic", 6, "--shard-size 10**9", "%cscore estimate --shard-size 1000000000", SHARD, timeout=20),
    Case("magic", 6, "%config runs 10**12", "%config CScoreMagics.runs = 10**12",
         "runs must be a positive integer up to 100,000", timeout=20),
    Case("python", 6, "Plan(runs=10**12)", _plan(runs=10**12), re.escape(RUNS), timeout=20),
    Case("python", 6, "Plan(shard_size=10**9)", _plan(shard_size=10**9), re.escape(SHARD), timeout=20),
    # 7. damaged manifests name the file; a deleted one offers the repair
    Case("cli", 7, "a truncated manifest", E + " --out " + M + "truncated",
         M + "truncated/manifest.json is not valid JSON"),
    Case("cli", 7, "an empty manifest", E + " --out " + M + "empty", M + "empty/manifest.json is empty"),
    Case("cli", 7, "a manifest that is not JSON", E + " --out " + M + "garbage",
         M + "garbage/manifest.json is not valid JSON"),
    Case("cli", 7, "a manifest that is a JSON list", E + " --out " + M + "list",
         M + "list/manifest.json holds a JSON list, not a run manifest"),
    Case("cli", 7, "a manifest without identity", E + " --out " + M + "no-identity",
         M + "no-identity/manifest.json has no valid 'identity' section"),
    Case("cli", 7, "a deleted manifest", E + " --out " + M + "deleted", REPAIR),
    Case("cli", 7, "report of a manifest that is not JSON", "report --run " + M + "garbage",
         M + "garbage/manifest.json is not valid JSON"),
    Case("magic", 7, "load of a truncated manifest", "%cscore load " + M + "truncated",
         M + "truncated/manifest.json is not valid JSON"),
    Case("magic", 7, "a manifest that is a JSON list", ME + " --out " + M + "list",
         M + "list/manifest.json holds a JSON list"),
    Case("magic", 7, "load of a deleted manifest", "%cscore load " + M + "deleted", REPAIR),
    Case("magic", 7, "a deleted manifest", ME + " --out " + M + "deleted", REPAIR),
    Case("python", 7, "an empty manifest", lambda p: _read_manifest(p, M + "empty"), "manifest.json is empty",
         _mismatch()),
    Case("python", 7, "a manifest that is a JSON list", lambda p: _load_cscores(p, M + "list"),
         "holds a JSON list, not a run manifest", _mismatch()),
    Case("python", 7, "a manifest without identity", lambda p: _estimation(p, M + "no-identity"),
         "has no valid 'identity' section", _mismatch()),
    Case("python", 7, "a deleted manifest", lambda p: _estimation(p, M + "deleted"),
         re.escape("cscore-lab repair --run"), _mismatch()),
    Case("python", 7, "load of a deleted manifest", lambda p: _load_cscores(p, M + "deleted"),
         re.escape("cscore-lab repair --run"), FileNotFoundError),
    # 8. I/O failures: one line naming the path and the reason
    Case("cli", 8, "--out a file", E + " --out {ws}/afile", "{ws}/afile is a file, not a run folder"),
    Case("cli", 8, "--out under a file", E + " --out {ws}/afile/run", "{ws}/afile: is a file, not a folder"),
    Case("cli", 8, "--out in a read-only folder", E + " --out {ro}/run", "{ro}/run: ", needs="ro"),
    Case("cli", 8, "--out an empty string", "estimate --out ''", "--out needs a folder, got an empty string"),
    Case("cli", 8, "report --out under a file", "report --run {ws}/run --out {ws}/afile/r.html",
         "{ws}/afile: is a file, not a folder"),
    Case("cli", 8, "report --out in a read-only folder", "report --run {ws}/run --out {ro}/r.html", "{ro}/r.html: ",
         needs="ro"),
    Case("cli", 8, "published --save into a missing folder",
         "published cifar10 {ws}/cifar10-cscores-orig-order.npz --save {ws}/missing/scores.npz",
         "{ws}/missing: no such folder (cannot write scores.npz into it)"),
    Case("cli", 8, "published --save under a file",
         "published cifar10 {ws}/cifar10-cscores-orig-order.npz --save {ws}/afile/scores.npz",
         "{ws}/afile: is a file, not a folder"),
    Case("cli", 8, "published --save in a read-only folder",
         "published cifar10 {ws}/cifar10-cscores-orig-order.npz --save {ro}/scores.npz", "{ro}/scores.npz: ",
         needs="ro"),
    Case("magic", 8, "--out a file", ME + " --out {ws}/afile", "{ws}/afile is a file, not a run folder"),
    Case("magic", 8, "--out under a file", ME + " --out {ws}/afile/run", "{ws}/afile: is a file, not a folder"),
    Case("magic", 8, "--out in a read-only folder", ME + " --out {ro}/run", "{ro}/run: ", needs="ro"),
    Case("python", 8, "out= a file", lambda p: _estimation(p, "{ws}/afile"), "is a file, not a run folder",
         _mismatch()),
    Case("python", 8, "out= under a file", lambda p: _estimation(p, "{ws}/afile/run").run(), "is a file, not a folder",
         NotADirectoryError),
    Case("python", 8, "out= in a read-only folder", lambda p: _estimation(p, "{ro}/run").run(), "", PermissionError,
         needs="ro"),
    Case("python", 8, "save into a missing folder", lambda p: _save_published(p, "{ws}/missing/s.npz"),
         "no such folder", FileNotFoundError),
    Case("python", 8, "report under a file", lambda p: _report(p, "{ws}/afile/r.html"), "is a file, not a folder",
         NotADirectoryError),
    # 9. nothing silently ignored, nothing silently empty
    Case("cli", 9, "--data with the bundled digits", "estimate --dataset digits --data {ws}", NO_DATA),
    Case("cli", 9, "proxies with --run and --cscores", "proxies --run {ws}/run --cscores {ws}/run", "give one"),
    Case("cli", 9, "proxies of a run with no finished shard", "proxies --run {ws}/empty-run", EMPTY),
    Case("cli", 9, "report of a run with no finished shard", "report --run {ws}/empty-run", EMPTY),
    Case("cli", 9, "report --device without --proxies", "report --run {ws}/run --device cpu", "without --proxies"),
    Case("magic", 9, "--data with the bundled digits", "%cscore estimate digits --data {ws}", NO_DATA),
    Case("magic", 9, "load of a run with no finished shard", "%cscore load {ws}/empty-run", EMPTY),
    Case("python", 9, "a data spec of digits with a path", _data_spec, re.escape(NO_DATA), _data_error()),
    Case("python", 9, "CScores.load of a run with no finished shard", lambda p: _load_cscores(p, "{ws}/empty-run"),
         re.escape(EMPTY)),
    Case("python", 9, "open_run of a run with no finished shard", lambda p: _open_run(p, "{ws}/empty-run"),
         re.escape(EMPTY)),
    # 10. diverged or broken training
    Case("python", 10, "learning rate 1e6", _diverge,
         r"training diverged: recipe 'too-hot' \(learning rate 1e\+06.*lower the learning rate", _diverged()),
    Case("python", 10, "a model_factory with 6 outputs", _factory(_wrong_outputs),
         re.escape("returns (2, 6) for a batch of 2; expected logits of shape (2, 10)")),
    Case("python", 10, "a model_factory for other inputs", _factory(_wrong_inputs),
         re.escape("cannot take this data set's inputs of shape [batch, 64]")),
    Case("python", 10, "a model_factory that is not callable", _factory(3),
         "model_factory must be a callable that returns a torch.nn.Module, got a int", TypeError),
    # argparse mistakes are one line too; more values checked before any work
    Case("cli", 0, "--runs x", "estimate --runs x", "argument --runs: expected a positive integer, got 'x'"),
    Case("cli", 0, "an unknown subcommand", "estimat", "invalid choice: 'estimat'"),
    Case("cli", 0, "--n-boot -5", "proxies --run {ws}/run --n-boot -5", "argument --n-boot: expected an integer >= 0"),
    Case("cli", 0, "repair of a folder that does not exist", "repair --run {ws}/nothing", "{ws}/nothing: no such run folder"),
    Case("magic", 0, "--boot -1", "%cscore compare --boot -1", "argument --boot: expected an integer >= 0, got -1"),
    Case("magic", 0, "noise --name empty", "%cscore noise digits 0.1 --name ''", "--name needs a name"),
    Case("magic", 0, "stop of a data set never estimated", "%cscore stop mnist", "no estimation of 'mnist' in this session"),
    # an influence threshold no pair can pass (influence is a difference of probabilities)
    Case("cli", 0, "influence --threshold 2", "influence --run {ws}/run --threshold 2",
         "argument --threshold: threshold 2 is outside [-1, 1)"),
    Case("magic", 0, "influence --threshold 2", "%cscore influence --threshold 2", "threshold 2 is outside [-1, 1)"),
    Case("python", 0, "Influence.pairs(threshold=1)", lambda p: _open_run(p, "{ws}/run").influence(k=2).pairs(1.0),
         re.escape("threshold must be a number in [-1, 1)")),
]


# --------------------------------------------------------------------------- running a case


@dataclass
class Outcome:
    kind: str  # clear | unclear | traceback | silent
    text: str = ""
    extra: list[str] = field(default_factory=list)


def _fill(text: str, places: dict[str, Any]) -> str:
    return text.format(**{k: v for k, v in places.items() if isinstance(v, str)})


def cli_outcome(case: Case, places: dict[str, Any]) -> Outcome:
    import shlex

    from cscore_lab.cli import main

    argv = shlex.split(_fill(case.command, places))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:
            status = exc.code
        except BaseException as exc:  # noqa: BLE001 - what the user would see as a traceback
            return Outcome("traceback", f"{type(exc).__name__}: {exc}")
    text = err.getvalue()
    if "Traceback" in text:
        return Outcome("traceback", text)
    if status == 0:
        return Outcome("silent", out.getvalue()[-300:])
    lines = [ln for ln in text.strip().splitlines() if not ln.startswith("cscore-lab: warning:")]
    prefix = f"cscore-lab {argv[0]}: error: " if argv and not argv[0].startswith("-") else "cscore-lab"
    first = lines[0] if lines else ""
    ok = (status == 2 and first.startswith(("cscore-lab: error: ", prefix))
          and _fill(case.message, places) in (text if case.multiline else first)
          and (len(lines) == 1 or case.multiline))
    return Outcome("clear" if ok else "unclear", text.strip())


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def magic_outcome(case: Case, places: dict[str, Any], shell: Any) -> Outcome:
    from IPython.core.error import UsageError

    line = _fill(case.command, places)
    magics = shell.magics_manager.registry["CScoreMagics"]
    before = magics.runs
    records = _Records()
    logging.getLogger().addHandler(records)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            result = shell.run_cell(line)
    finally:
        logging.getLogger().removeHandler(records)
    exc = result.error_before_exec or result.error_in_exec
    expected = _fill(case.message, places)
    if line.startswith("%config"):  # IPython logs a trait's error and keeps the old value
        if exc is not None:
            return Outcome("traceback", f"{type(exc).__name__}: {exc}")
        logged = " | ".join(records.messages)
        ok = expected in logged and magics.runs == before and magics.session.runs == before
        return Outcome("clear" if ok else ("silent" if not records.messages else "unclear"), logged)
    if exc is None:
        return Outcome("silent", err.getvalue()[-300:])
    if not isinstance(exc, UsageError):
        return Outcome("traceback", f"{type(exc).__name__}: {exc}")
    printed = [ln for ln in err.getvalue().strip().splitlines() if ln.strip()]
    ok = expected in str(exc) and len(printed) == 1 and printed[0].startswith("UsageError: %cscore ")
    return Outcome("clear" if ok else "unclear", str(exc))


def python_outcome(case: Case, places: dict[str, Any]) -> Outcome:
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            case.command(places)
    except case.error as exc:
        ok = re.search(_fill(case.message, places), str(exc)) is not None and (case.multiline or "\n" not in str(exc))
        return Outcome("clear" if ok else "unclear", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - another type than promised: a traceback to the user
        return Outcome("traceback", f"{type(exc).__name__}: {exc}")
    return Outcome("silent")


@contextlib.contextmanager
def _held(case: Case, places: dict[str, Any]):
    """Hold ``case.lock``'s run folder as a running estimation would (another open file: flock conflicts)."""
    if case.lock is None:
        yield
        return
    from cscore_lab.store import RunStore

    with RunStore(Path(places["ws"]) / case.lock).lock():
        yield


def outcome(case: Case, places: dict[str, Any], shell: Any = None) -> Outcome:
    cwd = os.getcwd()
    os.chdir(Path(places["ws"]) / "cwd")
    try:
        with _held(case, places):
            if case.front == "cli":
                return cli_outcome(case, places)
            if case.front == "magic":
                return magic_outcome(case, places, shell)
            return python_outcome(case, places)
    finally:
        os.chdir(cwd)


# --------------------------------------------------------------------------- the tests

_TALLY: Counter = Counter()
_KINDS = ("clear", "unclear", "traceback", "silent")


@pytest.fixture(scope="module")
def places(tmp_path_factory, request):
    p = build_workspace(tmp_path_factory.mktemp("bad-inputs"))
    yield p
    p["undo"]()
    if sum(_TALLY.values()):
        line = (f"issue 9 table: {sum(_TALLY.values())} inputs tried: "
                + ", ".join(f"{_TALLY[k]} {k}" for k in _KINDS))
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        if reporter is not None and capture is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("\n" + line)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=pytest.mark.timeout(c.timeout)) for c in CASES])
def test_bad_input_gets_one_clear_line(case, places, request):
    if case.needs == "ro" and places["ro_how"] is None:
        pytest.skip("no folder can be made unwritable here (chmod does not stop root and chattr +i failed)")
    shell = request.getfixturevalue("ip") if case.front == "magic" else None
    got = outcome(case, places, shell)
    _TALLY[got.kind] += 1
    assert got.kind == "clear", f"{got.kind}: {got.text}"
    if case.lock == "run":  # a refused estimate changed nothing
        assert json.loads((Path(places["ws"]) / "run" / "manifest.json").read_text())["plan"]["runs"] == 2


def test_the_table_covers_every_point_from_every_front_end():
    fronts: dict[int, set[str]] = {}
    for c in CASES:
        fronts.setdefault(c.point, set()).add(c.front)
    for point in (1, 3, 4, 6, 7, 8, 9):
        assert fronts[point] == {"cli", "magic", "python"}, point
    assert "python" in fronts[10]
    assert len({c.id for c in CASES}) == len(CASES)


def test_digits_saved_as_an_npz_estimate_like_digits(tmp_path, capsys, monkeypatch):
    """Point 11 from the CLI: the arrays of the bundled digits (0..16) in an .npz file get value range 16,
    the summary says so, and they score like the bundled set."""
    from cscore_lab.cli import main
    from cscore_lab.cscores import CScores

    digits = _digits()
    np.savez(tmp_path / "mydigits.npz", x=digits.inputs.astype(np.float64), y=digits.labels)
    monkeypatch.chdir(tmp_path)
    plan = ["--ratios", "0.5", "--runs", "2", "--shard-size", "2", "--device", "cpu", "--no-progress"]
    assert main(["estimate", "--dataset", "npz", "--data", str(tmp_path / "mydigits.npz"), *plan,
                 "--out", str(tmp_path / "npz")]) == 0
    assert "inputs: value range 16 inferred: integer-valued inputs in 0..16" in capsys.readouterr().out
    assert main(["estimate", *plan, "--out", str(tmp_path / "bundled")]) == 0
    got, ref = CScores.load(tmp_path / "npz"), CScores.load(tmp_path / "bundled")
    assert np.nanmean(ref.scores) > 0.9 and abs(np.nanmean(got.scores) - np.nanmean(ref.scores)) < 0.01


# --------------------------------------------------------------------------- the whole table, without pytest


def main() -> int:
    from IPython.core.interactiveshell import InteractiveShell

    from cscore_lab.magics import load_ipython_extension

    shell = InteractiveShell.instance()
    load_ipython_extension(shell)
    tally: Counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        p = build_workspace(Path(tmp) / "ws")
        try:
            for case in CASES:
                if case.needs == "ro" and p["ro_how"] is None:
                    print(f"{'skipped':9} {case.id}: no unwritable folder can be made here")
                    continue
                got = outcome(case, p, shell)
                tally[got.kind] += 1
                first = got.text.strip().splitlines()[0] if got.text.strip() else ""
                print(f"{got.kind:9} {case.id}: {first[:150]}")
        finally:
            p["undo"]()
    print(f"\n{sum(tally.values())} inputs tried: " + ", ".join(f"{tally[k]} {k}" for k in _KINDS))
    return 0 if tally["clear"] == sum(tally.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
