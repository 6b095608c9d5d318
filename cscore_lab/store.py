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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterable, Iterator

import numpy as np

from .results import TMP_MARK, atomic_write, load_npz, make_folder, remove_stale_temporaries, save_npz

__all__ = ["RunStore", "MemoryStore", "ShardResult", "StoreMismatchError", "StoreBusyError", "ShardError",
           "identity_digest", "shard_key", "parse_shard_key"]

MANIFEST = "manifest.json"
FORMAT = "cscore_lab.runstore/1"
SHARD_FORMAT = "cscore_lab.shard/2"
ENTRY_FORMAT = "cscore_lab.runentry/1"
#: Ratios are keyed (and seeded) by round(ratio * RATIO_SCALE): two ratios closer than 1/RATIO_SCALE collide.
RATIO_SCALE = 1_000_000


class StoreMismatchError(ValueError):
    """The folder holds a run of another recipe, data set, seed or engine, or is not a run folder."""


class StoreBusyError(RuntimeError):
    """Another estimation is writing to this folder."""


class ShardError(ValueError):
    """A shard file is damaged or is not what its name says."""


def identity_digest(identity: dict[str, Any]) -> str:
    """SHA-256 of an identity as canonical JSON: what every file of a run is tagged with."""
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def shard_key(ratio: float, start: int, stop: int) -> str:
    """The file name (without .npz) of the shard of runs ``start .. stop-1`` at ``ratio``."""
    return f"r{int(round(ratio * RATIO_SCALE)):07d}_runs{start:05d}-{stop:05d}"


def parse_shard_key(key: str) -> tuple[int, int, int] | None:
    """(ratio key, start, stop) of a shard key, or None when ``key`` is not one (either naming scheme)."""
    try:
        head, runs = key.split("_runs")
        start, stop = (int(v) for v in runs.split("-"))
        if not head.startswith("r"):
            return None
        body = head[1:]
        ratio_key = int(round(float(body) * RATIO_SCALE)) if "." in body else int(body)
    except ValueError:
        return None
    return ratio_key, start, stop


@dataclass
class ShardResult:
    """What one shard produced: for each of its models, which examples it held out and which it got right.

    ``correct`` covers every example (in-subset and held-out), so memorization can be estimated;
    ``eval_correct`` is the models' correctness on an evaluation set when one was given (influence).
    Shards written before format 2 hold correctness on held-out examples only: ``train_correct_known``
    is False for them.
    """

    key: str
    ratio: float
    runs: np.ndarray  # int64 [M] run indices
    heldout: np.ndarray  # bool [M, N]
    correct: np.ndarray  # bool [M, N]
    seconds: float = 0.0
    eval_correct: np.ndarray | None = None  # bool [M, N_eval]
    train_correct_known: bool = True

    @property
    def trained(self) -> np.ndarray:
        """bool [M, N]: which examples each model trained on."""
        return ~self.heldout

    def _packed(self) -> dict[str, np.ndarray]:
        arrays = {"heldout": np.packbits(self.heldout, axis=1), "correct": np.packbits(self.correct, axis=1),
                  "runs": self.runs.astype(np.int64)}
        if self.eval_correct is not None:
            arrays["eval_correct"] = np.packbits(self.eval_correct, axis=1)
        return arrays

    def to_arrays(self, identity: str = "") -> dict[str, np.ndarray]:
        """The arrays of the shard file: bit-packed masks, its claims (key, ratio, shapes, identity) and a checksum."""
        packed = self._packed()
        header = {"format": SHARD_FORMAT, "key": self.key, "ratio": self.ratio, "n": int(self.heldout.shape[1]),
                  "n_eval": None if self.eval_correct is None else int(self.eval_correct.shape[1]),
                  "identity": identity, "seconds": self.seconds, "checksum": _checksum(packed)}
        return {"_shard": np.array(json.dumps(header)), **packed}

    @classmethod
    def from_arrays(cls, key: str, z: Any, *, identity: str | None = None, examples: int | None = None) -> "ShardResult":
        """Read and verify a shard's arrays; a :class:`ShardError` says what is wrong.

        ``identity`` (a digest) and ``examples`` are checked when given; the key, ratio, run range,
        shapes, checksum and the held-out counts are always checked.
        """
        files = set(z.files) if hasattr(z, "files") else set(z)
        if "_shard" not in files:
            return cls._legacy(key, z, examples)
        try:
            header = json.loads(str(z["_shard"]))
            packed = {k: np.asarray(z[k]) for k in ("heldout", "correct", "runs", "eval_correct") if k in files}
            n = int(header["n"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ShardError(f"malformed shard header ({exc})") from None
        if header.get("format") != SHARD_FORMAT:
            raise ShardError(f"shard format {header.get('format')!r}, expected {SHARD_FORMAT!r}")
        if header.get("key") != key:
            raise ShardError(f"it is shard {header.get('key')!r}, stored under the name {key!r}")
        if identity is not None and header.get("identity") != identity:
            raise ShardError("it belongs to another run (its identity differs from the run folder's)")
        if _checksum(packed) != header.get("checksum"):
            raise ShardError("its arrays do not match their checksum (edited or damaged)")
        n_eval = header.get("n_eval")
        result = cls(
            key=key, ratio=float(header["ratio"]), runs=packed["runs"].astype(np.int64),
            heldout=_unpack(packed, "heldout", n), correct=_unpack(packed, "correct", n),
            seconds=float(header.get("seconds", 0.0)),
            eval_correct=None if n_eval is None else _unpack(packed, "eval_correct", int(n_eval)),
        )
        result.verify(examples)
        return result

    @classmethod
    def _legacy(cls, key: str, z: Any, examples: int | None) -> "ShardResult":
        """A format-1 shard (before checksums): held-out correctness only, checked for consistency."""
        try:
            n = int(z["n"])
            result = cls(key=key, ratio=float(z["ratio"]), runs=np.asarray(z["runs"]).astype(np.int64),
                         heldout=_unpack(z, "heldout", n), correct=_unpack(z, "correct", n),
                         seconds=float(z["seconds"]), train_correct_known=False)
        except (KeyError, TypeError, ValueError) as exc:
            raise ShardError(f"not a shard file ({type(exc).__name__}: {exc})") from None
        if (result.correct & ~result.heldout).any():
            raise ShardError("correct bits are set outside the held-out mask")
        result.verify(examples)
        return result

    def verify(self, examples: int | None = None) -> None:
        """Check that the shard is what its key claims: ratio, run range, shapes, held-out counts."""
        parsed = parse_shard_key(self.key)
        if parsed is None:
            raise ShardError(f"{self.key!r} is not a shard name")
        ratio_key, start, stop = parsed
        if int(round(self.ratio * RATIO_SCALE)) != ratio_key:
            raise ShardError(f"it holds ratio {self.ratio:g}, its name says {ratio_key / RATIO_SCALE:g}")
        if not np.array_equal(self.runs, np.arange(start, stop)):
            raise ShardError(f"it holds runs {self.runs.tolist()[:6]}..., its name says {start}..{stop - 1}")
        m = stop - start
        n = self.heldout.shape[1] if self.heldout.ndim == 2 else -1
        if examples is not None and n != examples:
            raise ShardError(f"it covers {n} examples, the run has {examples}")
        for name, arr in (("heldout", self.heldout), ("correct", self.correct)):
            if arr.shape != (m, n):
                raise ShardError(f"{name} has shape {arr.shape}, expected ({m}, {n})")
        if self.eval_correct is not None and (self.eval_correct.ndim != 2 or self.eval_correct.shape[0] != m):
            raise ShardError(f"eval_correct has shape {self.eval_correct.shape}, expected ({m}, N_eval)")
        held = n - int(np.floor(self.ratio * n))
        counts = self.heldout.sum(axis=1)
        if not (counts == held).all():
            raise ShardError(f"a model holds out {int(counts[counts != held][0])} examples; at ratio {self.ratio:g} "
                             f"of {n} every model holds out {held}")


def _checksum(packed: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(packed):
        arr = np.ascontiguousarray(packed[name])
        h.update(f"{name}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _unpack(z: Any, name: str, n: int) -> np.ndarray:
    packed = np.asarray(z[name])
    if packed.ndim != 2 or packed.dtype != np.uint8 or packed.shape[1] != (n + 7) // 8:
        raise ShardError(f"{name} is {packed.dtype} {packed.shape}, not the packed bits of {n} examples")
    return np.unpackbits(packed, axis=1, count=n).astype(bool)


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
        diffs = []
        for key in sorted(set(stored) | set(wanted)):
            if stored.get(key) != wanted.get(key):
                diffs.append(f"{key}: store has {stored.get(key)!r}, this run has {wanted.get(key)!r}")
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
