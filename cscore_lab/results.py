"""The one small base of every results object, and the one atomic file writer.

Every result cscore_lab computes (``CScores``, ``ProxyTable``, ``CorrelationTable``,
``DetectionTable``, the memorization and influence tables, the experiments' tables) is plain
data that is computed once and rendered many times. They share, through :class:`ResultTable`:

* shape checks (:func:`check_array`): one message format naming the field, the shape found and
  the shape expected;
* ``save(path)`` / ``load(path)``: one ``.npz`` of arrays plus a JSON header tagged with the
  class's ``FORMAT``, written atomically (:func:`atomic_write`) and read without pickle;
  ``load`` also takes a run folder and reads the class's file there (``FILENAME``);
* ``_repr_html_``: a titled table (:func:`html_table`) of what ``_html_frame()`` returns.

:func:`atomic_write` is also what the run store writes its shards and manifest with: a
temporary name in the same folder, ``fsync``, rename, ``fsync`` of the folder, so a crash,
a kill or a full disk leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import errno
import html
import json
import os
from pathlib import Path
from typing import IO, Any, Callable, ClassVar, Iterable, Mapping, TypeVar

import numpy as np

__all__ = ["ResultTable", "atomic_write", "make_folder", "save_npz", "load_npz", "html_table", "check_array", "TMP_MARK"]

#: Temporary files carry this in their name; readers ignore them and writers clean up stale ones.
TMP_MARK = ".tmp-"

T = TypeVar("T", bound="ResultTable")


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write ``path`` through ``write(fh)`` so that it appears whole or not at all.

    The bytes go to a hidden temporary file in the same folder (``.<name>.tmp-<pid>``),
    are flushed and fsynced, and the file is renamed over ``path``; the folder is fsynced
    too, so the rename survives a power cut. On any error the temporary file is removed
    and the error propagates (an ``OSError`` keeps naming the path).
    """
    path = Path(path)
    _check_folder(path.parent, path.name)
    tmp = path.with_name(f".{path.name}{TMP_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno is not None and exc.filename in (None, str(tmp)):
            # a full disk, a read-only folder: name the file the user asked for, not our temporary one
            raise OSError(exc.errno, exc.strerror or os.strerror(exc.errno), str(path)) from exc
        raise
    try:
        fd = os.open(path.parent, os.O_RDONLY)
    except OSError:  # some file systems do not open folders; the rename itself has happened
        return path
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
    return path


def _check_folder(folder: Path, name: str) -> None:
    """Raise an ``OSError`` naming ``folder`` when ``name`` cannot be created in it because it is missing
    or is not a folder (rather than an error about a temporary file the user never named)."""
    if folder.is_dir():
        return
    for above in (folder, *folder.parents):
        if above.exists() and not above.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"is a file, not a folder (cannot write {name} under it)",
                                     str(above))
    raise FileNotFoundError(errno.ENOENT, f"no such folder (cannot write {name} into it)", str(folder))


def make_folder(folder: str | os.PathLike) -> Path:
    """``mkdir -p folder``; a file in the way is an ``OSError`` that names it."""
    folder = Path(folder)
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(above))
            break
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def remove_stale_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete temporary files that a killed writer left in ``folder`` (not recursive); return them.

    Only files of processes that no longer run are removed, so a writer at work is never disturbed.
    """
    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        if TMP_MARK not in p.name or not p.name.startswith("."):
            continue
        pid = p.name.rsplit(TMP_MARK, 1)[1]
        if pid.isdigit() and _alive(int(pid)):
            continue
        try:
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def save_npz(path: str | os.PathLike, fmt: str, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> Path:
    """Write ``arrays`` and a JSON header ``info`` tagged with ``fmt`` to ``path`` (.npz added), atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(".npz")
    header = json.dumps({"format": fmt, **info}, allow_nan=True)
    return atomic_write(path, lambda fh: np.savez_compressed(fh, _info=np.array(header), **arrays))


def load_npz(path: str | os.PathLike, fmt: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read what :func:`save_npz` wrote; refuse other files with a message that names ``path``."""
    import zipfile

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "_info" not in z.files:
                raise ValueError(f"{path} is not a cscore_lab results file (no '_info' entry)")
            info = json.loads(str(z["_info"]))
            if not isinstance(info, dict) or info.get("format") != fmt:
                found = info.get("format") if isinstance(info, dict) else type(info).__name__
                raise ValueError(f"{path}: format {found!r}, expected {fmt!r}")
            return {k: z[k] for k in z.files if k != "_info"}, info
    except (zipfile.BadZipFile, EOFError, json.JSONDecodeError, KeyError) as exc:
        raise ValueError(f"{path}: not a readable cscore_lab results file ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(f"{path}: not a readable cscore_lab results file ({exc})") from None


def html_table(title: str, frame: Any, notes: Iterable[str] = (), max_rows: int = 60) -> str:
    """A titled HTML table of a DataFrame (floats to 3 decimals) with notes below it.

    The table scrolls sideways inside its own box rather than overflowing the page or the
    widget that holds it.
    """
    body = frame.to_html(float_format=lambda v: f"{v:.3f}", max_rows=max_rows, border=0, na_rep="–")
    extra = "".join(f"<p style='margin:2px 0'>{html.escape(n)}</p>" for n in notes)
    return (f"<div class='cscore-table'><b>{html.escape(title)}</b>"
            f"<div style='overflow-x:auto;max-width:100%'>{body}</div>{extra}</div>")


def check_array(name: str, value: Any, shape: tuple[int, ...], dtype: Any = np.float64) -> np.ndarray:
    """``value`` as an array of ``dtype``; a :class:`ValueError` names ``name`` when its shape is not ``shape``."""
    arr = np.asarray(value, dtype=dtype)
    if arr.shape != tuple(shape):
        raise ValueError(f"{name} has shape {arr.shape}, expected {tuple(shape)}")
    return arr


class ResultTable:
    """Base of every results object: ``save``/``load`` as one npz, ``_repr_html_`` as one table.

    A subclass sets ``FORMAT`` (the tag its files carry) and ``FILENAME`` (its file in a run
    folder) and implements ``_arrays()``, ``_info()``, ``_from_saved(arrays, info)``,
    ``to_frame()`` and ``_html_title()``; it may override ``_html_frame()`` and ``_html_notes()``.
    """

    FORMAT: ClassVar[str] = ""
    FILENAME: ClassVar[str] = ""

    # ------------------------------------------------------------------ to implement
    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def _from_saved(cls: type[T], arrays: dict[str, np.ndarray], info: dict[str, Any]) -> T:
        raise NotImplementedError

    def to_frame(self):  # pragma: no cover - every subclass has one
        raise NotImplementedError

    def _html_title(self) -> str:
        return type(self).__name__

    def _html_frame(self):
        return self.to_frame()

    def _html_notes(self) -> list[str]:
        return []

    # ------------------------------------------------------------------ shared
    def save(self, path: str | os.PathLike) -> Path:
        """Write to ``path`` (.npz with a JSON header, no pickle), atomically; returns the path written.

        A folder (a run folder, say) gets the class's own file name inside it.
        """
        path = Path(path)
        if path.is_dir() and self.FILENAME:
            path = path / self.FILENAME
        return save_npz(path, self.FORMAT, self._arrays(), self._info())

    @classmethod
    def load(cls: type[T], path: str | os.PathLike) -> T:
        """Read a file written by :meth:`save`, or the class's file in a run folder."""
        path = Path(path)
        if path.is_dir():
            return cls._load_folder(path)
        arrays, info = load_npz(path, cls.FORMAT)
        try:
            return cls._from_saved(arrays, info)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"{path}: a {cls.FORMAT!r} file with missing or malformed entries ({exc})") from None

    @classmethod
    def _load_folder(cls: type[T], folder: Path) -> T:
        target = folder / cls.FILENAME if cls.FILENAME else None
        if target is None or not target.is_file():
            raise FileNotFoundError(f"{folder}: is a folder without a {cls.FILENAME or cls.__name__} file; "
                                    f"pass the file itself")
        return cls.load(target)

    def _repr_html_(self) -> str:
        return html_table(self._html_title(), self._html_frame(), self._html_notes())
