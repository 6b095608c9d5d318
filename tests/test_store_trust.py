"""Trust nothing on disk (issue 9): faults in a run folder, each written by the test, then the next estimate.

Bad shards (copied under another name, legacy ones with correct bits outside the held-out mask,
edited, truncated, empty, from another run) are named by the readers and left out, moved aside by
the next estimate and recomputed, which then gives exactly an uninterrupted run's scores. A
refused estimate changes nothing; a grown run reuses every finished model; a lost manifest is
rebuilt from the shards; a full disk leaves nothing partial and stale temporaries are cleaned.

On what "the same scores" means when a run grows: every model's seeds (subset, initialisation,
batch order) depend only on (plan seed, ratio, run index), so a grown run trains the same models
as a fresh one. A fresh run with the *same shard layout* gives bitwise the same shards, by
construction. Across layouts (runs 0-3 then 4-7, or 0-7 in one shard) the models are stacked
with different mates; on the CPU in float32 this changes nothing either (the weights of models
4-7 trained in a group of 8 and in a group of 4 are ``torch.equal``, measured), and the tests
below assert it. On other hardware or in bf16 the products' summation order may depend on the
group, and a grown run may then differ from a fresh one in a few predictions near a tie.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from cscore_lab.cli import main
from cscore_lab.cscores import CScores
from cscore_lab.holdout import Estimation
from cscore_lab.recipes import Plan
from cscore_lab.runs import DataSpec, open_run
from cscore_lab.shard_file import _checksum
from cscore_lab.store import RunStore, StoreBusyError

RATIO = "r0500000"
FIRST, SECOND = f"{RATIO}_runs00000-00002", f"{RATIO}_runs00002-00004"
PLAN = Plan(ratios=(0.5,), runs=4, shard_size=2)
CLI_PLAN = ["--ratios", "0.5", "--runs", "4", "--shard-size", "2", "--device", "cpu", "--no-progress"]


def cli(*argv: str) -> tuple[int, str, str]:
    """``cscore-lab ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(argv))
        except SystemExit as exc:
            status = exc.code
    return status, out.getvalue(), err.getvalue()


def estimation(out: Path, plan: Plan = PLAN, *, seed: int | None = None) -> Estimation:
    """What 'cscore-lab estimate --ratios 0.5 --runs 4 --shard-size 2 --out OUT' builds, from Python."""
    loaded = DataSpec("digits").load()
    if seed is not None:
        plan = plan.with_overrides(seed=seed)
    return Estimation(loaded.dataset, "digits-mlp", plan, out=out, device="cpu", data_spec=loaded.spec.to_dict())


def same(a: CScores, b: CScores) -> bool:
    return (np.array_equal(a.scores, b.scores, equal_nan=True) and np.array_equal(a.stderr, b.stderr, equal_nan=True)
            and np.array_equal(a.heldout_counts, b.heldout_counts))


def files(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under ``folder``: its bytes and modification time."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))
            if p.is_file()}


def temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """An uninterrupted run (2 shards of 2 models) and another run's (another seed) files, same shard names."""
    root = tmp_path_factory.mktemp("trust")
    cs = estimation(root / "base").run()
    estimation(root / "other", seed=1).run()
    return root, cs


@pytest.fixture
def trained(monkeypatch):
    """Counts the models the local backend trains (a list of shard keys, one entry per shard)."""
    import cscore_lab.backends as backends

    keys: list[str] = []
    real = backends.compute_shard

    def counting(job, spec, *args, **kwargs):
        keys.append(spec.key)
        return real(job, spec, *args, **kwargs)

    monkeypatch.setattr(backends, "compute_shard", counting)
    return keys


def _copy(base, tmp_path, name="run") -> Path:
    root, _ = base
    dest = tmp_path / name
    shutil.copytree(root / "base", dest, ignore=shutil.ignore_patterns(".lock"))
    (dest / "cscores.npz").unlink()  # readers then read the shards, as for a run not yet finished
    return dest


# --------------------------------------------------------------------------- faults in shards


def _copied(run: Path, root: Path) -> None:
    shutil.copy(run / "shards" / f"{SECOND}.npz", run / "shards" / f"{FIRST}.npz")


def _legacy(run: Path, root: Path) -> None:
    """A format-1 shard (before checksums) whose correct bits are set outside the held-out mask."""
    good = RunStore(run).read_shard(FIRST)
    np.savez_compressed(run / "shards" / f"{FIRST}.npz", n=np.array(good.heldout.shape[1]), ratio=np.array(0.5),
                        runs=good.runs, heldout=np.packbits(good.heldout, axis=1),
                        correct=np.packbits(np.ones_like(good.correct), axis=1), seconds=np.array(1.0))


def _rewrite(run: Path, change, *, fix_checksum: bool) -> None:
    path = run / "shards" / f"{FIRST}.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    change(arrays)
    if fix_checksum:  # an editor who knows the format: the checksum holds, the claims do not
        header = json.loads(str(arrays["_shard"]))
        header["checksum"] = _checksum({k: arrays[k] for k in ("heldout", "correct", "runs") if k in arrays})
        arrays["_shard"] = np.array(json.dumps(header))
    np.savez_compressed(path, **arrays)


def _edited_runs(run: Path, root: Path) -> None:
    _rewrite(run, lambda a: a.__setitem__("runs", a["runs"] + 2), fix_checksum=False)


def _edited_runs_rechecksummed(run: Path, root: Path) -> None:
    _rewrite(run, lambda a: a.__setitem__("runs", a["runs"] + 2), fix_checksum=True)


def _heldout_edited(run: Path, root: Path) -> None:
    def hold_out_more(a):  # every bit of model 0's first byte set: it now "held out" up to 8 more examples
        a["heldout"][0, 0] = 0xFF

    _rewrite(run, hold_out_more, fix_checksum=True)


def _truncated(run: Path, root: Path) -> None:
    path = run / "shards" / f"{FIRST}.npz"
    path.write_bytes(path.read_bytes()[:300])


def _empty(run: Path, root: Path) -> None:
    (run / "shards" / f"{FIRST}.npz").write_bytes(b"")


def _foreign(run: Path, root: Path) -> None:
    shutil.copy(root / "other" / "shards" / f"{FIRST}.npz", run / "shards" / f"{FIRST}.npz")


FAULTS = {
    "copied-under-another-name": (_copied, "it is shard 'r0500000_runs00002-00004', stored under the name"),
    "legacy-correct-outside-heldout": (_legacy, "correct bits are set outside the held-out mask"),
    "edited-runs": (_edited_runs, "its arrays do not match their checksum"),
    "edited-runs-checksum-fixed": (_edited_runs_rechecksummed, "it holds runs \\[2, 3\\]..., its name says 0..1"),
    "heldout-edited-checksum-fixed": (_heldout_edited, "a model holds out 9\\d\\d examples; at ratio 0.5 of 1797 every "
                                                       "model holds out 899"),
    "truncated": (_truncated, "is unreadable \\(BadZipFile"),
    "empty": (_empty, "is unreadable \\(EOFError"),
    "foreign": (_foreign, "it belongs to another run"),
}


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_bad_shard_is_named_left_out_then_moved_aside_and_recomputed(base, tmp_path, trained, fault):
    root, uninterrupted = base
    run = _copy(base, tmp_path)
    damage, reason = FAULTS[fault]
    damage(run, root)
    named = f"shard {run}/shards/{FIRST}.npz: ?{reason}" if "unreadable" not in reason else \
        f"shard {run}/shards/{FIRST}.npz {reason}"
    before = files(run)

    # readers name it and leave it out; they move nothing
    with pytest.warns(RuntimeWarning, match=named + ".*left out"):
        partial = CScores.load(run)
    assert partial.meta["runs_done"] == 2 and np.nanmax(partial.scores) <= 1.0
    with pytest.warns(RuntimeWarning, match=named):
        assert open_run(run).cscores.meta["runs_done"] == 2
    status, out, err = cli("report", "--run", str(run), "--out", str(tmp_path / "report.html"))
    assert status == 0 and (tmp_path / "report.html").is_file(), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("cscore-lab: warning: shard ") and FIRST in lines[0], err
    assert "Traceback" not in err and files(run) == before

    # the next estimate moves it to rejected/ and recomputes it: the uninterrupted run's scores
    status, out, err = cli("estimate", *CLI_PLAN, "--out", str(run))
    assert status == 0, err
    assert f"{FIRST}.npz" in err and "moved to" in err and "rejected" in err and "Traceback" not in err
    assert trained == [FIRST]  # only the bad shard was trained again
    assert [p.name.split(".")[0] for p in (run / "rejected").iterdir()] == [FIRST]
    healed = CScores.load(run)
    assert same(healed, uninterrupted) and healed.meta["runs_done"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert same(open_run(run).cscores, uninterrupted)  # nothing left to warn about


def test_the_magics_heal_a_bad_shard_too(base, tmp_path, run_cell, trained):
    run = _copy(base, tmp_path)
    _truncated(run, base[0])
    with pytest.warns(RuntimeWarning, match=f"{FIRST}.npz is unreadable.*left out"):
        assert run_cell(f"%cscore load {run}").meta["runs_done"] == 2
    with pytest.warns(RuntimeWarning, match=f"{FIRST}.npz is unreadable.*moved to .*rejected"):
        cs = run_cell(f"%cscore estimate --ratios 0.5 --runs 4 --shard-size 2 --device cpu --out {run} --wait")
    assert trained == [FIRST] and same(cs, base[1])


# --------------------------------------------------------------------------- a refused estimate changes nothing

HOLD = textwrap.dedent("""
    import sys
    from cscore_lab.store import RunStore
    with RunStore(sys.argv[1]).lock():
        print("locked", flush=True)
        sys.stdin.readline()
""")


def test_an_estimate_refused_because_another_process_holds_the_folder_changes_nothing(base, tmp_path, ip, run_cell):
    run = _copy(base, tmp_path)
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        before = files(run)
        manifest = (run / "manifest.json").read_bytes()
        grown = [a if a != "4" else "8" for a in CLI_PLAN]  # another plan: it must not be written
        status, _, err = cli("estimate", *grown, "--out", str(run))
        assert status == 2 and "is in use by another estimation (pid" in err and len(err.strip().splitlines()) == 1
        assert files(run) == before
        from IPython.core.error import UsageError

        with pytest.raises(UsageError, match="in use by another estimation"):
            run_cell(f"%cscore estimate {' '.join(grown[:-1])} --out {run}")
        assert files(run) == before
        with pytest.raises(StoreBusyError, match="in use by another estimation"):
            estimation(run, Plan(ratios=(0.5,), runs=8, shard_size=2)).run()
        status, _, err = cli("repair", "--run", str(run))
        assert status == 2 and "in use" in err
        assert files(run) == before and (run / "manifest.json").read_bytes() == manifest
    finally:
        holder.communicate("\n", timeout=30)


# --------------------------------------------------------------------------- growing a run


def _shards(run: Path) -> dict[str, tuple[bytes, int]]:
    return {k: v for k, v in files(run).items() if k.startswith("shards/")}


def test_more_runs_with_the_default_shard_size_reuse_every_finished_model(tmp_path, trained):
    grown, fresh = tmp_path / "grown", tmp_path / "fresh"
    digits = ["--ratios", "0.5", "--device", "cpu", "--no-progress"]  # the preset's shard size: 100
    assert cli("estimate", *digits, "--runs", "4", "--out", str(grown))[0] == 0
    first = _shards(grown)
    assert list(first) == [f"shards/{RATIO}_runs00000-00004.npz"]
    trained.clear()
    assert cli("estimate", *digits, "--runs", "8", "--out", str(grown))[0] == 0
    assert trained == [f"{RATIO}_runs00004-00008"]  # the 4 finished models were reused, 4 trained
    after = _shards(grown)
    assert all(after[k] == v for k, v in first.items()) and len(after) == 2  # old shard untouched, no orphan
    assert not (grown / "superseded").exists()
    cs = CScores.load(grown)
    assert cs.meta["runs_done"] == 8 and cs.runs == 8
    for layout in ([], ["--shard-size", "4"]):  # one shard of 8 models, and the grown run's layout
        trained.clear()
        shutil.rmtree(fresh, ignore_errors=True)
        assert cli("estimate", *digits, "--runs", "8", *layout, "--out", str(fresh))[0] == 0
        assert len(trained) == (1 if not layout else 2)
        assert same(cs, CScores.load(fresh)), layout


def test_a_smaller_shard_size_then_the_default_reuses_every_model_and_retires_what_a_larger_shard_covers(
        tmp_path, trained):
    small, fresh = tmp_path / "small", tmp_path / "fresh"
    digits = ["--ratios", "0.5", "--device", "cpu", "--no-progress"]
    assert cli("estimate", *digits, "--runs", "4", "--shard-size", "2", "--out", str(small))[0] == 0
    first = _shards(small)
    assert len(first) == 2 and trained == [FIRST, SECOND]
    trained.clear()
    assert cli("estimate", *digits, "--runs", "8", "--out", str(small))[0] == 0
    assert trained == [f"{RATIO}_runs00004-00008"]
    assert all(_shards(small)[k] == v for k, v in first.items())
    grown = CScores.load(small)
    assert cli("estimate", *digits, "--runs", "8", "--out", str(fresh))[0] == 0
    reference = CScores.load(fresh)
    assert same(grown, reference)

    # a larger shard covering the small ones (a copy from the fresh run): they are retired, never counted twice
    shutil.copy(fresh / "shards" / f"{RATIO}_runs00000-00008.npz", small / "shards")
    (small / "cscores.npz").unlink()
    trained.clear()
    status, out, err = cli("estimate", *digits, "--runs", "8", "--out", str(small))
    assert status == 0, err
    assert trained == []
    assert sorted(p.name for p in (small / "superseded").iterdir()) == sorted(
        [f"{FIRST}.npz", f"{SECOND}.npz", f"{RATIO}_runs00004-00008.npz"])
    assert [p.name for p in (small / "shards").iterdir()] == [f"{RATIO}_runs00000-00008.npz"]
    again = CScores.load(small)
    assert again.meta["runs_done"] == 8 and same(again, reference)  # held-out counts equal: nothing counted twice


# --------------------------------------------------------------------------- a lost manifest


@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_a_lost_manifest_is_rebuilt_from_the_shards_and_the_same_estimate_resumes(base, tmp_path, trained, damage):
    run = _copy(base, tmp_path)
    (run / "shards" / f"{SECOND}.npz").unlink()  # the run was interrupted after its first shard
    manifest = run / "manifest.json"
    if damage == "deleted":
        manifest.unlink()
    else:
        manifest.write_text(manifest.read_text()[:100])
    status, _, err = cli("estimate", *CLI_PLAN, "--out", str(run))
    assert status == 2 and f"'cscore-lab repair --run {run}'" in err and len(err.strip().splitlines()) == 1
    status, out, err = cli("repair", "--run", str(run))
    assert status == 0, err
    assert f"rebuilt {manifest}" in out and "ratios [0.5], 2 runs per ratio" in out
    assert (run / "manifest.json.damaged").is_file() == (damage == "truncated")
    status, _, err = cli("estimate", *CLI_PLAN, "--out", str(run))
    assert status == 0, err
    assert trained == [SECOND] and same(CScores.load(run), base[1])


def test_repair_refuses_shards_of_two_runs(base, tmp_path):
    run = _copy(base, tmp_path)
    (run / "manifest.json").unlink()
    shutil.copy(base[0] / "other" / "shards" / f"{SECOND}.npz", run / "shards")
    status, _, err = cli("repair", "--run", str(run))
    assert status == 2 and "holds shards of 2 different runs" in err
    assert not (run / "manifest.json").exists()


# --------------------------------------------------------------------------- a full disk, stale temporaries


@pytest.fixture
def full_disk(monkeypatch):
    """Shard files cannot be written: the disk fills up after 1000 bytes of the first one."""
    real = np.savez_compressed

    def savez(file, *args, **kwargs):
        if "/shards/" in str(getattr(file, "name", file)):
            file.write(b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(file, *args, **kwargs)

    monkeypatch.setattr(np, "savez_compressed", savez)
    return monkeypatch


def test_a_full_disk_is_one_line_and_leaves_nothing_partial(base, tmp_path, full_disk, run_cell):
    run = tmp_path / "full"
    status, _, err = cli("estimate", *CLI_PLAN, "--out", str(run))
    assert status == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"cscore-lab estimate: error: {run}/shards/{RATIO}_runs000")
    assert lines[0].endswith(".npz: No space left on device")
    assert temporaries(run) == [] and list((run / "shards").iterdir()) == []
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match=f"%cscore estimate: {run}/shards/.*npz: No space left on device"):
        run_cell(f"%cscore estimate --ratios 0.5 --runs 4 --shard-size 2 --device cpu --out {run} --wait")
    assert temporaries(run) == []
    full_disk.undo()  # space again: the same command finishes, with the uninterrupted run's scores
    assert cli("estimate", *CLI_PLAN, "--out", str(run))[0] == 0
    assert same(CScores.load(run), base[1])


def test_stale_temporaries_of_dead_writers_are_cleaned_by_the_next_estimate(base, tmp_path):
    run = _copy(base, tmp_path)
    (run / "shards" / f"{SECOND}.npz").unlink()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        stale = [run / f".manifest.json.tmp-{dead.pid}", run / "shards" / f".{SECOND}.npz.tmp-{dead.pid}",
                 run / "entries" / f".data.npz.tmp-{dead.pid}"]
        busy = run / "shards" / f".{SECOND}.npz.tmp-{alive.pid}"  # another writer at work: left alone
        for p in (*stale, busy):
            p.write_bytes(b"half a file")
        assert cli("estimate", *CLI_PLAN, "--out", str(run))[0] == 0
        assert not any(p.exists() for p in stale) and busy.exists()
        assert same(CScores.load(run), base[1])
    finally:
        alive.communicate(b"", timeout=30)


def test_repair_of_a_folder_that_does_not_exist_creates_nothing(tmp_path):
    status, _, err = cli("repair", "--run", str(tmp_path / "typo"))
    assert status == 2 and f"{tmp_path / 'typo'}: no such run folder" in err and not (tmp_path / "typo").exists()
