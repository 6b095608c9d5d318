"""The run store: an append-only folder that is the truth of an estimation.

Layout::

    RUN/manifest.json        recipe, plan, data fingerprint, versions
    RUN/shards/<key>.npz     one file per finished shard (written to a temporary name, then renamed)
    RUN/.lock                held while an estimation writes here

A crash loses at most the shard in flight; running again resumes. Shards from another
recipe, data set, seed or shard size are refused. Nothing here is pickled.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import platform
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

__all__ = ["RunStore", "ShardResult", "StoreMismatchError", "StoreBusyError"]

MANIFEST = "manifest.json"
ENTRY_FORMAT = "cscore_lab.runentry/1"
FORMAT = "cscore_lab.runstore/1"


class StoreMismatchError(ValueError):
    """The folder holds a run of another recipe, data set, seed or shard size."""


class StoreBusyError(RuntimeError):
    """Another estimation is writing to this folder."""


@dataclass
class ShardResult:
    """What one shard produced: for each of its runs, which examples it held out and got right."""

    key: str
    ratio: float
    runs: np.ndarray  # int64 [M] run indices
    heldout: np.ndarray  # bool [M, N]
    correct: np.ndarray  # bool [M, N] (only meaningful where heldout)
    seconds: float = 0.0

    def to_arrays(self) -> dict[str, np.ndarray]:
        n = self.heldout.shape[1]
        return {
            "ratio": np.array(self.ratio), "runs": self.runs.astype(np.int64), "n": np.array(n),
            "heldout": np.packbits(self.heldout, axis=1), "correct": np.packbits(self.correct & self.heldout, axis=1),
            "seconds": np.array(self.seconds),
        }

    @classmethod
    def from_arrays(cls, key: str, z: Any) -> "ShardResult":
        n = int(z["n"])
        return cls(
            key=key, ratio=float(z["ratio"]), runs=z["runs"].astype(np.int64),
            heldout=np.unpackbits(z["heldout"], axis=1, count=n).astype(bool),
            correct=np.unpackbits(z["correct"], axis=1, count=n).astype(bool),
            seconds=float(z["seconds"]),
        )


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or not all(c.isalnum() or c in "-_." for c in key) or key.startswith("."):
        raise ValueError(f"entry key must be letters, digits, '-', '_' or '.', not starting with '.', got {key!r}")


def _versions() -> dict[str, str]:
    from . import __version__

    v = {"cscore_lab": __version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        import torch

        v["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return v


class RunStore:
    """A run folder. ``RunStore.open_or_create(path, identity)`` is the usual entry.

    ``identity`` holds what must match for shards to be mixed: data set name,
    fingerprint and size, recipe, seed and shard size (and the model factory's name).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.shard_dir = self.path / "shards"

    # ------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> dict[str, Any]:
        if not self.exists():
            raise FileNotFoundError(f"no run store at {self.path} (no {MANIFEST}); start one with 'cscore-lab estimate --out {self.path}'")
        with open(self.manifest_path) as fh:
            m = json.load(fh)
        if m.get("format") != FORMAT:
            raise StoreMismatchError(f"{self.manifest_path}: format {m.get('format')!r}, expected {FORMAT!r}")
        return m

    def _write_json(self, path: Path, obj: Any) -> None:
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=2, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, identity: dict[str, Any], plan: dict[str, Any]) -> "RunStore":
        """Open the store at ``path`` if it matches ``identity``, else create it; refuse a mismatch."""
        store = cls(path)
        if store.exists():
            manifest = store.read_manifest()
            store.check_identity(manifest["identity"], identity)
            if manifest.get("plan") != plan:
                manifest["plan"] = plan
                manifest["updated"] = _dt.datetime.now().isoformat(timespec="seconds")
                store._write_json(store.manifest_path, manifest)
            return store
        if store.path.exists() and any(store.path.iterdir()):
            raise StoreMismatchError(f"{store.path} exists, is not empty and holds no {MANIFEST}; choose an empty or new folder")
        store.shard_dir.mkdir(parents=True, exist_ok=True)
        store._write_json(store.manifest_path, {
            "format": FORMAT, "identity": identity, "plan": plan, "versions": _versions(),
            "created": _dt.datetime.now().isoformat(timespec="seconds"),
        })
        return store

    def check_identity(self, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
        diffs = []
        for key in sorted(set(stored) | set(wanted)):
            if stored.get(key) != wanted.get(key):
                diffs.append(f"{key}: store has {stored.get(key)!r}, this run has {wanted.get(key)!r}")
        if diffs:
            raise StoreMismatchError(
                f"run folder {self.path} belongs to another estimation; refusing to mix results:\n  "
                + "\n  ".join(diffs) + "\nUse another --out folder (or delete this one)."
            )

    # ------------------------------------------------------------------ shards
    def finished_keys(self) -> set[str]:
        if not self.shard_dir.is_dir():
            return set()
        return {p.name[: -len(".npz")] for p in self.shard_dir.glob("*.npz") if not p.name.startswith(".")}

    def write_shard(self, result: ShardResult) -> Path:
        """Write atomically: a temporary file, fsync, rename. A crash leaves no partial shard."""
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        final = self.shard_dir / f"{result.key}.npz"
        tmp = self.shard_dir / f".{result.key}.{os.getpid()}.tmp.npz"
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **result.to_arrays())
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(final)
        return final

    def read_shard(self, key: str) -> ShardResult:
        path = self.shard_dir / f"{key}.npz"
        try:
            with np.load(path, allow_pickle=False) as z:
                return ShardResult.from_arrays(key, z)
        except (OSError, ValueError, KeyError) as exc:
            raise StoreMismatchError(f"shard {path} is unreadable ({exc}); delete it and run again to recompute it") from exc

    def iter_shards(self, keys: set[str] | None = None) -> Iterator[ShardResult]:
        for key in sorted(self.finished_keys() if keys is None else keys):
            yield self.read_shard(key)

    # ------------------------------------------------------------------ entries
    # Named arrays that belong to the run but are not shards: the noise mask and labels of a noisy
    # copy, an experiment's per-model results. Each is one npz (see cscore_lab.results), written
    # atomically and tagged with the run's identity digest, so a file copied from another run is refused.
    @property
    def entry_dir(self) -> Path:
        return self.path / "entries"

    def write_entry(self, key: str, arrays: dict[str, np.ndarray], info: dict[str, Any] | None = None) -> Path:
        """Write the entry ``key`` (letters, digits, ``-_.``) atomically; it replaces an older one."""
        from .results import save_npz

        _check_key(key)
        self.entry_dir.mkdir(parents=True, exist_ok=True)
        return save_npz(self.entry_dir / f"{key}.npz", ENTRY_FORMAT, arrays,
                        {"key": key, "identity": self.identity_digest(), **(info or {})})

    def read_entry(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and header of entry ``key``; a foreign or damaged file is a clear error naming it."""
        from .results import load_npz

        _check_key(key)
        path = self.entry_dir / f"{key}.npz"
        arrays, info = load_npz(path, ENTRY_FORMAT)
        if info.get("key") != key or info.get("identity") != self.identity_digest():
            raise StoreMismatchError(f"{path} belongs to another run or entry (key {info.get('key')!r}); "
                                     f"delete it and run again to recompute it")
        return arrays, info

    def has_entry(self, key: str) -> bool:
        return (self.entry_dir / f"{key}.npz").is_file()

    def entry_keys(self, prefix: str = "") -> list[str]:
        """Keys of the entries present, sorted, optionally only those starting with ``prefix``."""
        if not self.entry_dir.is_dir():
            return []
        return sorted(p.stem for p in self.entry_dir.glob("*.npz")
                      if not p.name.startswith(".") and p.stem.startswith(prefix))

    def identity_digest(self) -> str:
        """SHA-256 of the manifest's identity (canonical JSON): what every file of this run is tagged with."""
        import hashlib

        ident = self.read_manifest()["identity"]
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()

    # ------------------------------------------------------------------ lock
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one estimation; a second one gets :class:`StoreBusyError`."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock_path = self.path / ".lock"
        fh = open(lock_path, "a+")
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                raise StoreBusyError(
                    f"run folder {self.path} is in use by another estimation ({holder}); "
                    f"wait for it, stop it, or choose another folder"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {platform.node()}")
            fh.flush()
            yield
        finally:
            if not fh.closed:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                fh.close()
