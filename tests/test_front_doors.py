"""The CLI and the magics are two doors into one house: the same options make the same run folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cscore_lab.cli import main
from cscore_lab.cscores import CScores
from cscore_lab.store import RunStore

OPTIONS = "--label-noise 0.1 --ratios 0.5 --runs 2 --seed 3 --shard-size 1 --device cpu"


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}


def test_cli_and_magic_make_the_same_run_folder(tmp_path, monkeypatch, run_cell):
    """One estimate through each door: identical manifests (identity and plan), files, data entries and shards."""
    cli_root, magic_root = tmp_path / "cli", tmp_path / "magic"
    cli_root.mkdir()
    monkeypatch.chdir(cli_root)  # both use their default run folder under ./cscore-runs
    assert main(["estimate", *OPTIONS.split(), "--no-progress"]) == 0
    magic_root.mkdir()
    monkeypatch.chdir(magic_root)
    run_cell(f"%cscore estimate digits {OPTIONS} --wait")
    a = next((cli_root / "cscore-runs").iterdir())
    b = next((magic_root / "cscore-runs").iterdir())
    assert a.name == b.name == "digits-noise0.1-digits-mlp-seed3"
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    assert ma["identity"] == mb["identity"] and ma["plan"] == mb["plan"]
    assert _files(a) == _files(b)
    da, db = RunStore(a).read_data(), RunStore(b).read_data()
    assert da[1] == db[1] and da[1]["label_noise"] == 0.1 and da[1]["seed"] == 3
    assert set(da[0]) == set(db[0]) == {"labels", "mask_flipped", "original_labels"}
    for key in da[0]:
        np.testing.assert_array_equal(da[0][key], db[0][key])
    for sa, sb in zip(RunStore(a).iter_shards(), RunStore(b).iter_shards()):
        assert sa.key == sb.key
        np.testing.assert_array_equal(sa.correct, sb.correct)
        np.testing.assert_array_equal(sa.heldout, sb.heldout)
    np.testing.assert_array_equal(CScores.load(a).scores, CScores.load(b).scores)


def test_a_run_folder_loads_wherever_a_result_file_does(tiny_run, tmp_path):
    """CScores.load takes the run folder a user has, finished or not."""
    import shutil

    folder, expected = tiny_run
    np.testing.assert_array_equal(CScores.load(folder).scores, expected.scores)
    partial = tmp_path / "partial"
    shutil.copytree(folder, partial)
    (partial / "cscores.npz").unlink()
    for shard in sorted((partial / "shards").glob("*.npz"))[1:]:
        shard.unlink()  # one shard left: a run stopped early
    cs = CScores.load(partial)
    assert cs.meta["runs_done"] == 4 and not cs.finished
    assert np.isfinite(cs.scores).any()
    with pytest.raises(FileNotFoundError, match="no run store"):
        CScores.load(tmp_path)  # a folder that is not a run


def test_memorization_and_influence_from_each_door(tmp_path, monkeypatch, run_cell, capsys):
    """The same run's memorization and influence from the CLI, the magics and Python agree."""
    from cscore_lab.influence import Influence
    from cscore_lab.memorization import Memorization
    from cscore_lab.runs import open_run

    monkeypatch.chdir(tmp_path)
    assert main(["estimate", *OPTIONS.replace("--runs 2", "--runs 4").split(), "--out", "run", "--no-progress"]) == 0
    assert main(["memorization", "--run", "run", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "The 3 most memorized examples" in out and "memorization.npz" in out
    assert main(["influence", "--run", "run", "--k", "3", "--top", "5"]) == 0
    assert "held-out training examples" in capsys.readouterr().out
    from_cli = Memorization.load("run")
    from_python = open_run("run").memorization()
    np.testing.assert_array_equal(from_cli.memorization, from_python.memorization)
    run_cell("%cscore load run")
    mem = run_cell("%cscore memorization -o mem")
    np.testing.assert_array_equal(mem.memorization, from_python.memorization)
    infl = run_cell("%cscore influence --k 3")
    np.testing.assert_array_equal(infl.top_index, Influence.load("run").top_index)


def test_a_run_folder_of_old_shards_says_it_predates_memorization(tiny_run, tmp_path):
    """Shards of format 1 (held-out correctness only) still give C-scores; memorization says why it cannot."""
    import shutil

    from cscore_lab.runs import open_run

    folder = tmp_path / "old"
    shutil.copytree(tiny_run[0], folder)
    store = RunStore(folder)
    for key in store.finished_keys():  # rewrite each shard as format 1 wrote it
        s = store.read_shard(key)
        np.savez_compressed(store.shard_dir / f"{key}.npz", ratio=np.array(s.ratio), runs=s.runs, n=np.array(s.heldout.shape[1]),
                            heldout=np.packbits(s.heldout, axis=1), correct=np.packbits(s.correct & s.heldout, axis=1),
                            seconds=np.array(s.seconds))
    run = open_run(folder)
    np.testing.assert_array_equal(run.cscores.scores, tiny_run[1].scores)
    with pytest.raises(ValueError, match="predates shards that record correctness on training examples"):
        run.memorization()


def test_precision_from_each_door_is_part_of_the_identity(tmp_path, monkeypatch, run_cell, capsys):
    """--precision bf16 trains bf16 models; fp32 and bf16 shards never share a run folder."""
    monkeypatch.chdir(tmp_path)
    tiny = "--ratios 0.5 --runs 2 --device cpu"
    assert main(["estimate", *tiny.split(), "--precision", "bf16", "--out", "bf16", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bf16: requested" in out and "precision         bf16" in out
    ident = json.loads((tmp_path / "bf16" / "manifest.json").read_text())["identity"]
    assert ident["recipe"]["precision"] == "bf16"
    from IPython.core.error import UsageError

    with pytest.raises(UsageError, match="precision"):  # a bf16 folder refuses fp32 shards
        run_cell(f"%cscore estimate digits {tiny} --precision fp32 --out bf16 --wait")
    run_cell(f"%cscore estimate digits {tiny} --precision auto --out auto --wait")
    chosen = json.loads((tmp_path / "auto" / "manifest.json").read_text())["identity"]["recipe"]["precision"]
    assert chosen in ("fp32", "bf16")  # what this machine's hardware and the fidelity table allow
