"""The file of one finished shard: what it claims to be, and the checks that it is.

A shard file (``RUN/shards/<key>.npz``, written by :class:`cscore_lab.store.RunStore`) holds
bit-packed held-out and correctness masks of its models, their run indices and a JSON header
with the run's identity digest, its own key, ratio, shapes and a SHA-256 of the arrays. Reading
one back checks every claim (:meth:`ShardResult.from_arrays`), so a file truncated, copied under
another name, edited or taken from another run is a :class:`ShardError`, never a result.
Shards of format 1 (before the header) are read as held-out correctness only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from .recipes import RATIO_SCALE  # ratios are keyed by round(ratio * RATIO_SCALE)

__all__ = ["ShardResult", "ShardError", "shard_key", "parse_shard_key", "SHARD_FORMAT"]

SHARD_FORMAT = "cscore_lab.shard/2"


class ShardError(ValueError):
    """A shard file is damaged or is not what its name says."""


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
