"""``%cscore`` driven through a real IPython InteractiveShell: parsing, help, usage errors,
%config traits, background runs (stop, resume, busy folders), loading, views and proxies."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from IPython.core.error import UsageError

from cscore_lab.cscores import CScores
from cscore_lab.magics import SUBCOMMANDS, CScoreSession

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
TINY = "--ratios 0.3 0.7 --runs 4 --shard-size 4"  # the plan of the tiny_run fixture: reusing its folder trains nothing


def _wait_for(predicate, timeout=300.0):
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")
        time.sleep(0.05)


# --------------------------------------------------------------------------- help and usage errors


def test_bare_cscore_lists_every_subcommand(run_cell, capsys):
    assert run_cell("%cscore") is None
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert f"  {name} " in out
    assert "%config CScoreMagics.device" in out


def test_subcommand_help_is_generated_from_the_declarations(run_cell, capsys):
    run_cell("%cscore estimate --help")
    out = capsys.readouterr().out
    assert out.startswith("usage: %cscore estimate")
    for option in ("--ratios", "--runs", "--preset", "--device", "--out", "--backend", "--wait", "-o NAME"):
        assert option in out


def test_question_mark_shows_the_full_help(ip, run_cell, capsys):
    doc = ip.find_line_magic("cscore").__doc__
    for name in SUBCOMMANDS:
        assert f"usage: %cscore {name}" in doc
    run_cell("%cscore?")
    assert "usage: %cscore load-published" in capsys.readouterr().out


@pytest.mark.parametrize("line, message", [
    ("%cscore estimate --runs x", "argument --runs: expected a positive integer, got 'x'"),
    ("%cscore estimate --ratios 1.5", "subset ratio 1.5 is outside (0, 1)"),
    ("%cscore estimate --colour red", "unrecognized arguments: --colour"),
    ("%cscore estimat", "unknown subcommand 'estimat' (did you mean 'estimate'?)"),
    ("%cscore estimate digitz", "unknown data set 'digitz' (did you mean 'digits'?)"),
    ("%cscore estimate mnist", "needs a path (--data PATH)"),
    ("%cscore estimate --preset huge", "argument --preset: invalid choice: 'huge'"),
    ("%cscore estimate --device tpu", "unknown device 'tpu'"),
    ("%cscore estimate --address 127.0.0.1:6379", "--address and --num-gpus apply only with --backend ray"),
    ("%cscore estimate --num-gpus lots", "argument --num-gpus: invalid float value: 'lots'"),
    ("%cscore noise digits 2", "fraction 2 is outside [0, 1]"),
    ("%cscore datasets -o 1x", "-o needs a Python variable name, got '1x'"),
    ("%cscore show", "no C-scores for digits yet"),
    ("%cscore compare", "no proxies for digits yet"),
    ("%cscore detect", "no noise mask for digits"),
    ("%cscore load /nonexistent/run", "no run store at /nonexistent/run"),
    ("%cscore wait", "no estimation of digits in this session"),
    ("%cscore wait --timeout -1", "timeout -1 is outside (0, inf)"),
    ("%cscore estimate --out 'unclosed", "cannot split the line"),
    ("%cscore estimate digits --dataset mnist", "two data sets given ('digits' and --dataset 'mnist')"),
])
def test_usage_mistakes_are_one_line_usage_errors(ip, run_cell, capsys, line, message):
    with pytest.raises(UsageError) as err:
        run_cell(line)
    assert message in str(err.value)
    capsys.readouterr()
    ip.run_cell(line)  # as a user sees it: one line on stderr, no traceback
    printed = capsys.readouterr().err.strip().splitlines()
    assert len(printed) == 1 and printed[0].startswith("UsageError: ") and message in printed[0]


# --------------------------------------------------------------------------- %config


def test_config_traits_set_the_session_defaults(session, run_cell, tmp_path):
    run_cell("%config CScoreMagics.device = 'cpu'")
    run_cell("%config CScoreMagics.runs = 3")
    run_cell(f"%config CScoreMagics.run_root = '{tmp_path / 'elsewhere'}'")
    s = session
    assert (s.device, s.runs, s.run_root) == ("cpu", 3, tmp_path / "elsewhere")
    rec = s.prepare("digits", ratios=(0.5,), monitor=False)
    assert rec.estimation.plan.runs == 3 and rec.estimation.device == "cpu"
    assert rec.run_folder == tmp_path / "elsewhere" / "digits-digits-mlp-seed0"


@pytest.mark.parametrize("setting", ["device = 'gpu'", "runs = 0", "monitor_interval = -1", "run_root = ' '"])
def test_config_rejects_bad_values_and_keeps_the_old_one(ip, run_cell, caplog, setting):
    magics = ip.magics_manager.registry["CScoreMagics"]
    name = setting.split()[0]
    before = getattr(magics, name)
    run_cell(f"%config CScoreMagics.{setting}")  # IPython logs the trait's error and carries on
    assert getattr(magics, name) == before
    assert getattr(magics.session, name) == (before if name != "run_root" else Path(before))
    assert "must be" in caplog.text


# --------------------------------------------------------------------------- data sets and noise


def test_datasets_lists_loadable_and_session_data(run_cell):
    run_cell("%cscore noise digits 0.1 --seed 3")
    table = run_cell("%cscore datasets -o table")
    assert {"digits", "mnist", "cifar10", "digits-noise0.1"} <= set(table.index)
    assert "180 labels flipped" in table.loc["digits-noise0.1", "description"]


def test_noise_makes_a_named_noisy_copy_and_remembers_its_mask(ip, session, run_cell, digits, capsys):
    assert run_cell("%cscore noise digits 0.05 --seed 1 -o noisy") is None
    assert "90 of 1797 labels flipped" in capsys.readouterr().out
    noisy = ip.user_ns["noisy"]
    rec = session.analyses["digits-noise0.05"]
    assert rec.dataset is noisy and rec.noise_mask.sum() == 90
    np.testing.assert_array_equal(noisy.labels != digits.labels, rec.noise_mask)
    np.testing.assert_array_equal(rec.original_labels, digits.labels)


def test_dataset_option_is_the_same_as_the_positional_name(session, run_cell, tiny_run):
    run_cell(f"%cscore estimate --dataset digits {TINY} --out {tiny_run[0]} --wait")
    assert session.current == "digits"


def test_a_variable_holding_a_dataset_can_be_named(ip, session, run_cell, digits):
    ip.user_ns["small"] = digits.subset(np.arange(300), name="digits-300")
    rec = session.prepare("small", ratios=(0.5,), runs=1, monitor=False)
    assert rec.dataset is ip.user_ns["small"]
    assert rec.run_folder.name == "digits-300-digits-mlp-seed0"
    assert [line.split(":")[0] for line in session.status()] == ["digits-300"]


# --------------------------------------------------------------------------- estimation


def test_estimate_runs_in_the_background_and_wait_returns_the_scores(ip, session, run_cell, capsys, tmp_path):
    t0 = time.perf_counter()
    assert run_cell("%cscore estimate digits --ratios 0.3 --runs 2 --shard-size 1 -o est") is None
    assert time.perf_counter() - t0 < 10  # returned at once; training goes on in its thread
    out = capsys.readouterr().out
    assert "estimating digits: 2 models (1 ratios × 2 runs)" in out and "running in the background" in out
    est = ip.user_ns["est"]
    assert est.thread is not None
    run_cell("%cscore status")
    assert "digits: " in capsys.readouterr().out
    cs = run_cell("%cscore wait -o cs")
    assert isinstance(cs, CScores) and ip.user_ns["cs"] is cs
    assert est.progress.state == "finished" and cs.runs == 2
    folder = tmp_path / "cscore-runs" / "digits-digits-mlp-seed0"
    assert (folder / "cscores.npz").is_file()
    monitor = session.analyses["digits"].monitor
    assert monitor.bar.value == 2 and monitor.redraws >= 1


def test_wait_runs_in_the_foreground_and_returns_cscores(session, run_cell, tiny_run):
    folder, expected = tiny_run
    cs = run_cell(f"%cscore estimate digits {TINY} --out {folder} --wait")
    assert isinstance(cs, CScores)
    np.testing.assert_array_equal(cs.scores, expected.scores)  # resumed: every shard was already there
    assert session.analyses["digits"].estimation.progress.resumed_runs == 8


def test_stop_keeps_finished_shards_and_the_same_estimate_resumes(session, run_cell, capsys, tmp_path):
    line = "%cscore estimate digits --ratios 0.3 0.6 --runs 2 --shard-size 1 --out run"
    run_cell(line)
    est = session.analyses["digits"].estimation
    _wait_for(lambda: est.progress.done_runs >= 1)
    run_cell("%cscore stop")
    assert "stopped digits" in capsys.readouterr().out
    assert est.progress.state == "stopped"
    kept = est.progress.done_runs
    assert 1 <= kept < 4 and len(list((tmp_path / "run" / "shards").glob("*.npz"))) == kept
    run_cell("%cscore status")
    assert "stopped" in capsys.readouterr().out
    run_cell(line)
    cs = run_cell("%cscore wait")
    again = session.analyses["digits"].estimation
    assert again is not est and again.progress.resumed_runs == kept
    assert again.progress.state == "finished" and cs.meta["runs_done"] == 4
    assert np.isfinite(cs.scores).mean() > 0.9  # with 2 runs a ratio, a few examples are never held out
    run_cell("%cscore stop")
    assert "nothing is running" in capsys.readouterr().out


def test_one_run_per_folder(session, run_cell, tmp_path):
    from cscore_lab.store import RunStore

    run_cell("%cscore estimate digits --ratios 0.5 --runs 4 --shard-size 1 --out busy")
    with pytest.raises(UsageError, match="already running in this session"):
        run_cell("%cscore estimate digits --ratios 0.5 --runs 4 --shard-size 1 --out busy")
    run_cell("%cscore stop")
    # a folder held by another estimation (another process, or this one) is refused before anything starts
    with RunStore(tmp_path / "busy").lock():
        with pytest.raises(UsageError, match="is in use by another estimation"):
            run_cell("%cscore estimate digits --ratios 0.5 --runs 4 --shard-size 1 --out busy")
    assert not session.analyses["digits"].running


def test_estimate_of_a_noisy_copy_stores_its_mask_and_labels(session, run_cell, tmp_path):
    run_cell("%cscore noise digits 0.1")
    rec = session.prepare("digits-noise0.1", ratios=(0.5,), runs=1, out=tmp_path / "noisy", monitor=False)
    rec.estimation.run()
    from cscore_lab.store import RunStore

    arrays, spec = RunStore(tmp_path / "noisy").read_data()
    np.testing.assert_array_equal(arrays["mask_flipped"], rec.noise_mask)
    np.testing.assert_array_equal(arrays["labels"], rec.dataset.labels)
    assert spec["name"] == "digits" and spec["label_noise"] == 0.1


# --------------------------------------------------------------------------- loading and views


def test_load_opens_a_run_folder_with_its_data(ip, session, run_cell, tiny_run):
    folder, expected = tiny_run
    cs = run_cell(f"%cscore load {folder} -o loaded")
    assert ip.user_ns["loaded"] is cs
    np.testing.assert_array_equal(cs.scores, expected.scores)
    assert session.current == "digits"


def test_show_and_gallery_build_the_widgets(ip, run_cell, tiny_run):
    from cscore_lab.viz.widgets import Dashboard, Gallery

    run_cell(f"%cscore load {tiny_run[0]}")
    dash = run_cell("%cscore show -o dash")
    assert isinstance(dash, Dashboard) and ip.user_ns["dash"] is dash
    assert "%cscore proxies" in dash.agreement.children[0].value
    g = run_cell("%cscore gallery --class 3 --order highest --count 8")
    assert isinstance(g, Gallery) and len(g.shown) == 8
    assert set(g.dataset.labels[g.shown]) == {3}
    with pytest.raises(UsageError, match="unknown class 'eleven'"):
        run_cell("%cscore gallery --class eleven")


def test_proxies_compare_and_detect_on_a_noisy_copy(ip, run_cell, tmp_path):
    run_cell("%cscore noise digits 0.1")
    run_cell("%cscore estimate --ratios 0.5 --runs 2 --shard-size 2 --wait -o cs")
    table = run_cell("%cscore proxies --families knn kde --spaces input --quiet -o px")
    assert ip.user_ns["px"] is table and "knn_input" in table.names
    corr = run_cell("%cscore compare --boot 20 -o corr")
    assert set(corr.proxies) == set(table.names) and corr.groups[0] == "all"
    det = run_cell("%cscore detect -o det")
    assert det.scores[0] == "cscore" and "knn_input" in det.scores
    assert 0.0 <= float(det.auroc[0]) <= 1.0
    dash = run_cell("%cscore show")
    assert "knn_input" in dash.agreement.table.value
    assert dash.gallery.noise_mask is not None


def test_load_published_mnist(session, run_cell):
    scores = SHARED_DATA / "published" / "mnist-cscores.npy"
    if not scores.is_file():
        pytest.skip(f"published scores not found at {scores}; this check needs ../shared/data (see its README.md)")
    cs = run_cell(f"%cscore load-published mnist {scores} --data {SHARED_DATA / 'mnist'} -o pub")
    assert cs.source == "published" and len(cs) == 60_000
    assert session.current == "mnist-published"
    with pytest.raises(UsageError, match="the following arguments are required: --data"):
        run_cell(f"%cscore load-published mnist {scores}")


def test_the_session_works_without_ipython(tmp_path, tiny_run):
    s = CScoreSession(device="cpu", run_root=tmp_path)
    cs = s.load(tiny_run[0])
    assert s.dashboard().titles[0] == "Distribution"
    assert s.gallery(label="7").class_select.value == 7
    assert len(cs) == 1797
