"""Results files: arrays plus a JSON header in one ``.npz``, written atomically and read without pickle.

Every result object (``CScores``, ``ProxyTable``, ``CorrelationTable``, ``DetectionTable``) saves
through these two functions, tagged with its own format string.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

__all__ = ["save_npz", "load_npz"]


def save_npz(path: str | Path, fmt: str, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> Path:
    """Write ``arrays`` and a JSON header ``info`` (tagged with ``fmt``) to ``path`` (.npz, no pickle).

    Written to a temporary name and renamed, so a crash never leaves half a file.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    header = json.dumps({"format": fmt, **info}, allow_nan=True)
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez_compressed(tmp, _info=np.array(header), **arrays)
    tmp.replace(path)
    return path


def load_npz(path: str | Path, fmt: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read what :func:`save_npz` wrote; refuse files of another format."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        if "_info" not in z.files:
            raise ValueError(f"{path} is not a cscore_lab results file (no '_info' entry)")
        info = json.loads(str(z["_info"]))
        if info.get("format") != fmt:
            raise ValueError(f"{path}: format {info.get('format')!r}, expected {fmt!r}")
        return {k: z[k] for k in z.files if k != "_info"}, info
