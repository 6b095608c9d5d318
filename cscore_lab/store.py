"""The run store: an append-only folder that is the truth of an estimation, and that checks itself.

Layout::

    RUN/manifest.json        identity (what must match: data, recipe, seed, engine), plan, versions
    RUN/shards/<key>.npz     one file per finished shard, verified when read (see ShardResult)
    RUN/entries/<key>.npz    named arrays of the run: its labels and noise masks ("data"), experiments
    RUN/rejected/            shards that failed verification, moved aside to be recomputed
    RUN/.lock                held while an estimation writes here

Every file is written by :func:`cscore_lab.results.atomic_write` (temporary name, fsync, rename),
so a crash loses at most the shard in flight; running again resumes. Every shard carries the
run's identity, its own key, ratio and run indices and a SHA-256 of its arrays: a file that is
truncated, copied under another name, edited or taken from another run is reported by name and
recomputed, never used. Nothing here is pickled. :class:`MemoryStore` is the same interface in
memory, for estimations without a folder.
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import hashlib
import json
import os
import platform
import warnings
import zipfile
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, ContextManager, Iterable, Iterator

import numpy as np

from .results import TMP_MARK, atomic_write, load_npz, make_folder, remove_stale_temporaries, save_npz
from .shard_file import ShardError, ShardResult, parse_shard_key, shard_key

__all__ = ["RunStore", "MemoryStore", "ShardResult", "StoreMismatchError", "StoreBusyError", "ShardError",
           "identity_digest", "shard_key", "parse_shard_key"]

MANIFEST = "manifest.json"
FORMAT = "cscore_lab.runstore/1"
ENTRY_FORMAT = "cscore_lab.runentry/1"


class StoreMismatchError(ValueError):
    """The folder holds a run of another recipe, data set, seed or engine, or is not a run folder."""


class StoreBusyError(RuntimeError):
    """Another estimation is writing to this folder."""


def identity_digest(identity: dict[str, Any]) -> str:
    """SHA-256 of an identity as canonical JSON: what every file of a run is tagged with."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def _versions() -> dict[str, str]:
    from . import __version__

    v = {"cscore_lab": __version__, "numpy": np.__version__, "python": platform.python_version()}
    try:
        import torch

        v["torch"] = torch.__version__
    except ImportError:  # pragma: no cover
        pass
    return v


def _check_key(key: str) -> None:
    if not isinstance(key, str) or not key or not all(c.isalnum() or c in "-_." for c in key) or key.startswith("."):
        raise ValueError(f"entry key must be letters, digits, '-', '_' or '.', not starting with '.', got {key!r}")


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def _differences(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    """One line per differing key, nested dicts compared key by key (``recipe.precision: ...``)."""
    out = []
    for key in sorted(set(stored) | set(wanted), key=str):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: store has {a!r}, this run has {b!r}")
    return out


class RunStore:
    """A run folder. :meth:`prepare` (under :meth:`lock`) creates or updates it; readers only read.

    ``identity`` holds what must match for shards to be mixed: engine version, data set name,
    fingerprint and size, recipe, seed (and the model factory's name). The plan (ratios, runs,
    shard size) may change between runs of one folder: a larger plan reuses every finished model.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.shard_dir = self.path / "shards"
        self._digest: str | None = None

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    # ------------------------------------------------------------------ manifest
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def exists(self) -> bool:
        return self.manifest_path.is_file()

    def read_manifest(self) -> dict[str, Any]:
        """The manifest, checked: a missing, empty, truncated or malformed one is an error naming the file."""
        path = self.manifest_path
        if not path.is_file():
            if self.path.is_file():
                raise StoreMismatchError(f"{self.path} is a file, not a run folder")
            hint = (f"; its shards can rebuild it: 'cscore-lab repair --run {self.path}'"
                    if self.shard_dir.is_dir() and any(self.shard_dir.glob("*.npz")) else
                    f"; start one with 'cscore-lab estimate --out {self.path}'")
            raise FileNotFoundError(f"no run store at {self.path} (no {MANIFEST}){hint}")
        text = path.read_text(encoding="utf-8", errors="replace")
        repair = f"; 'cscore-lab repair --run {self.path}' rebuilds it from the shards"
        if not text.strip():
            raise StoreMismatchError(f"{path} is empty{repair}")
        try:
            m = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StoreMismatchError(f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}){repair}") from None
        if not isinstance(m, dict):
            raise StoreMismatchError(f"{path} holds a JSON {type(m).__name__}, not a run manifest{repair}")
        if m.get("format") != FORMAT:
            raise StoreMismatchError(f"{path}: format {m.get('format')!r}, expected {FORMAT!r}{repair}")
        for key, kind in (("identity", dict), ("plan", dict)):
            if not isinstance(m.get(key), kind):
                raise StoreMismatchError(f"{path} has no valid {key!r} section{repair}")
        for key in ("examples", "fingerprint", "dataset", "recipe", "seed"):
            if key not in m["identity"]:
                raise StoreMismatchError(f"{path}: its identity lacks {key!r}{repair}")
        return m

    def identity_digest(self) -> str:
        """SHA-256 of the manifest's identity: what every file of this run is tagged with."""
        if self._digest is None:
            self._digest = identity_digest(self.read_manifest()["identity"])
        return self._digest

    def _write_manifest(self, manifest: dict[str, Any]) -> None:
        text = json.dumps(manifest, indent=2, sort_keys=True).encode()
        atomic_write(self.manifest_path, lambda fh: fh.write(text))
        self._digest = None

    def check_compatible(self, identity: dict[str, Any]) -> None:
        """Refuse (without writing anything) a folder that cannot hold a run of ``identity``."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreMismatchError(f"{self.path} is a file, not a run folder; choose a folder for --out")
        if self.exists():
            self.check_identity(self.read_manifest()["identity"], identity)
        elif self.path.is_dir() and any(p for p in self.path.iterdir() if p.name != ".lock"):
            if any(self.shard_dir.glob("*.npz")):  # nothing when there is no shard folder
                raise StoreMismatchError(f"{self.path} holds shards but no {MANIFEST} (deleted?); rebuild it from "
                                         f"them: 'cscore-lab repair --run {self.path}', then run the estimate again")
            raise StoreMismatchError(f"{self.path} exists, is not empty and holds no {MANIFEST}; choose an empty or "
                                     f"new folder")

    def prepare(self, identity: dict[str, Any], plan: dict[str, Any]) -> None:
        """Create the folder for a run of ``identity`` or update its plan. Call under :meth:`lock`."""
        self.check_compatible(identity)
        remove_stale_temporaries(self.path)
        remove_stale_temporaries(self.shard_dir)
        remove_stale_temporaries(self.entry_dir)
        if self.exists():
            manifest = self.read_manifest()
            if manifest.get("plan") != plan:
                manifest["plan"] = plan
                manifest["updated"] = _now()
                self._write_manifest(manifest)
            return
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        self._write_manifest({"format": FORMAT, "identity": identity, "plan": plan, "versions": _versions(),
                              "created": _now()})

    @classmethod
    def open_or_create(cls, path: str | os.PathLike, identity: dict[str, Any], plan: dict[str, Any]) -> "RunStore":
        """Open the store at ``path`` if it matches ``identity``, else create it; refuse a mismatch.

        Holds the folder's lock while it writes, so a folder in use is never changed.
        """
        store = cls(path)
        store.check_compatible(identity)
        with store.lock():
            store.prepare(identity, plan)
        return store

    def check_identity(self, stored: dict[str, Any], wanted: dict[str, Any]) -> None:
        diffs = _differences(stored, wanted)
        if diffs:
            raise StoreMismatchError(f"run folder {self.path} belongs to another estimation; refusing to mix results:"
                                     "\n  " + "\n  ".join(diffs) + "\nUse another --out folder (or delete this one).")

    def rebuild_manifest(self) -> dict[str, Any]:
        """Write a manifest rebuilt from the shards (each carries the run's identity); return it.

        For a folder whose manifest was deleted, emptied or damaged. The plan is the largest one
        the shards cover (their ratios, the highest run index + 1, the most common shard size).
        """
        if not self.path.is_dir():
            raise StoreMismatchError(f"{self.path}: no such run folder")
        identities: dict[str, dict[str, Any]] = {}
        ratios: set[float] = set()
        runs, sizes = 0, []
        for path in sorted(self.shard_dir.glob("r*.npz")) if self.shard_dir.is_dir() else []:
            try:
                with np.load(path, allow_pickle=False) as z:
                    header = json.loads(str(z["_shard"]))
                    ident = json.loads(str(z["_identity"])) if "_identity" in z.files else None
            except Exception:  # noqa: BLE001 - a damaged shard cannot vote
                continue
            if ident is None:
                continue
            identities.setdefault(header.get("identity", ""), ident)
            parsed = parse_shard_key(path.stem)
            if parsed:
                ratios.add(float(header["ratio"]))
                runs = max(runs, parsed[2])
                sizes.append(parsed[2] - parsed[1])
        if not identities:
            raise StoreMismatchError(f"{self.shard_dir}: no readable shard of format 2 to rebuild the manifest from")
        if len(identities) > 1:
            raise StoreMismatchError(f"{self.shard_dir} holds shards of {len(identities)} different runs; "
                                     f"move the foreign ones away first")
        (digest, identity), = identities.items()
        if identity_digest(identity) != digest:
            raise StoreMismatchError(f"{self.shard_dir}: the shards' identity does not match its digest")
        shard_size = max(set(sizes), key=sizes.count)
        plan = {"ratios": sorted(ratios), "runs": runs, "seed": identity["seed"], "shard_size": shard_size}
        manifest = {"format": FORMAT, "identity": identity, "plan": plan, "versions": _versions(),
                    "created": _now(), "rebuilt": _now()}
        if self.manifest_path.exists():
            self.manifest_path.replace(self.path / f"{MANIFEST}.damaged")
        self._write_manifest(manifest)
        return manifest

    # ------------------------------------------------------------------ shards
    def finished_keys(self) -> set[str]:
        if not self.shard_dir.is_dir():
            return set()
        return {p.stem for p in self.shard_dir.glob("*.npz") if not p.name.startswith(".") and TMP_MARK not in p.name}

    def write_shard(self, result: ShardResult) -> Path:
        """Write atomically, tagged with the run's identity: a crash leaves no partial shard."""
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        arrays = result.to_arrays(self.identity_digest())
        arrays["_identity"] = np.array(json.dumps(self.read_manifest()["identity"], sort_keys=True))
        return atomic_write(self.shard_dir / f"{result.key}.npz", lambda fh: np.savez_compressed(fh, **arrays))

    def read_shard(self, key: str) -> ShardResult:
        """Read and verify one shard; a :class:`ShardError` names the file and what is wrong with it."""
        path = self.shard_dir / f"{key}.npz"
        examples = int(self.read_manifest()["identity"]["examples"])
        try:
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                return ShardResult.from_arrays(key, z, identity=self._shard_identity(z), examples=examples)
        except ShardError as exc:
            raise ShardError(f"shard {path}: {exc}") from None
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise ShardError(f"shard {path} is unreadable ({type(exc).__name__}: {exc})") from None

    def _shard_identity(self, z: Any) -> str | None:
        # format-1 shards carry no identity: only their consistency can be checked
        return self.identity_digest() if "_shard" in z.files else None

    def iter_shards(self, keys: Iterable[str] | None = None, *, on_bad: str = "warn") -> Iterator[ShardResult]:
        """The verified shards ``keys`` (default all), sorted by key.

        A shard that fails verification is never yielded: ``on_bad="warn"`` warns naming it,
        ``"reject"`` also moves it to ``rejected/`` so the next estimate recomputes it (use under
        :meth:`lock`), ``"raise"`` raises :class:`ShardError`.
        """
        if on_bad not in ("warn", "reject", "raise"):
            raise ValueError(f"on_bad must be 'warn', 'reject' or 'raise', got {on_bad!r}")
        for key in sorted(self.finished_keys() if keys is None else keys):
            try:
                yield self.read_shard(key)
            except ShardError as exc:
                if on_bad == "raise":
                    raise
                if on_bad == "reject":
                    moved = self.reject(key)
                    warnings.warn(f"{exc}; moved to {moved} and will be recomputed", RuntimeWarning, stacklevel=2)
                else:
                    warnings.warn(f"{exc}; left out (run the estimate again to recompute it)", RuntimeWarning,
                                  stacklevel=2)

    def reject(self, key: str) -> Path:
        """Move a bad shard aside (``rejected/``), keeping it for inspection; return where it went."""
        src = self.shard_dir / f"{key}.npz"
        dest_dir = self.path / "rejected"
        dest_dir.mkdir(exist_ok=True)
        dest = dest_dir / f"{key}.{_dt.datetime.now().strftime('%Y%m%dT%H%M%S')}.npz"
        src.replace(dest)
        return dest

    def retire(self, keys: Iterable[str]) -> list[Path]:
        """Move shards that a larger shard makes redundant to ``superseded/`` (nothing is deleted)."""
        moved = []
        dest_dir = self.path / "superseded"
        for key in keys:
            src = self.shard_dir / f"{key}.npz"
            if src.is_file():
                dest_dir.mkdir(exist_ok=True)
                moved.append(src.replace(dest_dir / src.name))
        return moved

    # ------------------------------------------------------------------ entries
    # Named arrays that belong to the run but are not shards: its labels and noise masks ("data"),
    # an experiment's per-model results. Each is one npz tagged with the run's identity digest, so a
    # file copied from another run is refused.
    @property
    def entry_dir(self) -> Path:
        return self.path / "entries"

    def write_entry(self, key: str, arrays: dict[str, np.ndarray], info: dict[str, Any] | None = None) -> Path:
        """Write the entry ``key`` (letters, digits, ``-_.``) atomically; it replaces an older one."""
        _check_key(key)
        self.entry_dir.mkdir(parents=True, exist_ok=True)
        return save_npz(self.entry_dir / f"{key}.npz", ENTRY_FORMAT, arrays,
                        {"key": key, "identity": self.identity_digest(), **(info or {})})

    def read_entry(self, key: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The arrays and header of entry ``key``; a foreign or damaged file is a clear error naming it."""
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

    def write_data(self, labels: np.ndarray, *, masks: dict[str, np.ndarray] | None = None,
                   original_labels: np.ndarray | None = None, spec: dict[str, Any] | None = None) -> None:
        """Keep the run's labels, its injected-noise masks (``flipped``, ``ood``) and how to rebuild its data."""
        arrays = {"labels": np.asarray(labels, dtype=np.int64)}
        for name, mask in (masks or {}).items():
            arrays[f"mask_{name}"] = np.asarray(mask, dtype=bool)
        if original_labels is not None:
            arrays["original_labels"] = np.asarray(original_labels, dtype=np.int64)
        self.write_entry("data", arrays, {"spec": spec})

    def read_data(self) -> tuple[dict[str, np.ndarray], dict[str, Any] | None] | None:
        """(arrays, spec) of the run's ``data`` entry (labels, ``mask_<name>``, original labels), or None.

        Folders made before the entry existed are read from their ``labels.npy`` / ``flipped.npy``.
        """
        if self.has_entry("data"):
            arrays, info = self.read_entry("data")
            return arrays, info.get("spec")
        legacy: dict[str, np.ndarray] = {}
        for name, key in (("labels.npy", "labels"), ("flipped.npy", "mask_flipped")):
            if (self.path / name).is_file():
                legacy[key] = np.load(self.path / name, allow_pickle=False)
        return (legacy, None) if legacy else None

    def stored_labels(self) -> np.ndarray | None:
        data = self.read_data()
        return None if data is None else data[0].get("labels")

    # ------------------------------------------------------------------ lock
    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one estimation; a second one gets :class:`StoreBusyError`."""
        if self.path.exists() and not self.path.is_dir():
            raise StoreMismatchError(f"{self.path} is a file, not a run folder; choose a folder for --out")
        make_folder(self.path)
        lock_path = self.path / ".lock"
        fh = open(lock_path, "a+")
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another process"
                fh.close()
                raise StoreBusyError(f"run folder {self.path} is in use by another estimation ({holder}); "
                                     f"wait for it, stop it, or choose another folder") from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"pid {os.getpid()} on {platform.node()}")
            fh.flush()
            yield
        finally:
            if not fh.closed:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
                fh.close()


class MemoryStore:
    """The store of an estimation without a folder: the same interface, in memory, for one process."""

    path = None

    def __init__(self) -> None:
        self._shards: dict[str, ShardResult] = {}
        self._entries: dict[str, tuple[dict[str, np.ndarray], dict[str, Any]]] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._shards)} shards)"

    def check_compatible(self, identity: dict[str, Any]) -> None:
        pass

    def prepare(self, identity: dict[str, Any], plan: dict[str, Any]) -> None:
        pass

    def lock(self) -> ContextManager[None]:
        return nullcontext()

    def finished_keys(self) -> set[str]:
        return set(self._shards)

    def write_shard(self, result: ShardResult) -> None:
        self._shards[result.key] = result

    def read_shard(self, key: str) -> ShardResult:
        return self._shards[key]

    def iter_shards(self, keys: Iterable[str] | None = None, *, on_bad: str = "warn") -> Iterator[ShardResult]:
        for key in sorted(self._shards if keys is None else keys):
            yield self._shards[key]

    def retire(self, keys: Iterable[str]) -> list[Path]:
        for key in keys:
            self._shards.pop(key, None)
        return []

    def write_data(self, labels: np.ndarray, **_: Any) -> None:
        pass
