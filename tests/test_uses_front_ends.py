"""Curriculum, pruning and collection from every door: ``%cscore curriculum|prune|collect`` (background
with progress and stop, or ``--wait``), ``cscore-lab curriculum|prune|collect``, the session, the
dashboard's Uses tab and the report; the scores by name; the default folders that resume."""

from __future__ import annotations

import argparse
import shutil

import numpy as np
import pytest
from IPython.core.error import UsageError

from cscore_lab import experiments as E
from cscore_lab.cli import main

SMALL_PRUNE = "--fractions 0.3 0.7 --keep most_regular random --seeds 2"
SMALL_CURRICULUM = "--strategies curriculum random --seeds 2 --steps 120"


@pytest.fixture(scope="module")
def clean_run(cli_run):
    """A finished CLI run on digits with its proxies (k-NN and kernel density on the inputs)."""
    return cli_run("uses")


@pytest.fixture
def run_copy(clean_run, tmp_path):
    """A copy of the run folder this test may add experiments to."""
    folder = tmp_path / "run"
    shutil.copytree(clean_run, folder)
    return folder


# --------------------------------------------------------------------------- the shared pieces


@pytest.mark.parametrize("command", list(E.EXPERIMENTS))
def test_options_are_the_library_keywords_and_only_those_set(command):
    p = argparse.ArgumentParser()
    E.add_experiment_options(p, command)
    assert E.experiment_options(command, p.parse_args([])) == {}  # every default is the library's
    line = {"curriculum": "--strategies curriculum random --pacing root --steps 50 --no-balance --seeds 2",
            "prune": "--fractions 0.2 0.5 --keep middle --budget epochs --balance --no-reference --seeds 2",
            "collect": "--start 40 --add 0.05 --rounds 2 --strategies lowest random --seeds 2"}[command]
    args = p.parse_args([*line.split(), "--score", "cscore", "--out", "x", "--workers", "1", "--test-fraction", "0.3"])
    options = E.experiment_options(command, args)
    assert set(options) <= E.experiment_named(command).parameters()  # each one a keyword of the function
    assert "score" not in options and "out" not in options and options["workers"] == 1
    assert options["seeds"] == 2 and options["test_fraction"] == 0.3
    expected = {"curriculum": {"strategies": ("curriculum", "random"), "pacing": "root", "steps": 50, "balance": False},
                "prune": {"fractions": (0.2, 0.5), "keep": ("middle",), "budget": "epochs", "balance": True,
                          "reference": False},
                "collect": {"start": 40, "add_per_round": 0.05, "rounds": 2, "strategies": ("lowest", "random")}}
    assert expected[command].items() <= options.items()


def test_declared_choices_are_the_librarys_and_the_parser_imports_no_torch():
    import subprocess
    import sys

    from cscore_lab.uses import KEEP_RULES, PACINGS, STRATEGIES
    from cscore_lab.uses.collection import COLLECTION_STRATEGIES

    assert E.CHOICES == {"strategies": STRATEGIES, "pacing": PACINGS, "keep": KEEP_RULES,
                         "collection": COLLECTION_STRATEGIES}
    code = "import sys; from cscore_lab.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_option_types_refuse_bad_values():
    with pytest.raises(argparse.ArgumentTypeError, match="kept fraction 0 is outside"):
        E.kept_fraction("0")
    assert E.count_or_fraction("25") == 25 and E.count_or_fraction("0.25") == 0.25
    with pytest.raises(argparse.ArgumentTypeError, match="a count or a fraction in \\(0, 1\\), got 1.5"):
        E.count_or_fraction("1.5")
    with pytest.raises(argparse.ArgumentTypeError, match="test fraction 1 is outside"):
        E.test_fraction("1")


def test_scores_by_name(clean_run):
    from cscore_lab.cscores import CScores
    from cscore_lab.runs import open_run

    run = open_run(clean_run)
    mem = run.memorization()
    cols = E.pick_scores(("cscore", "memorization", "knn_input"), run.dataset, cscores=run.cscores,
                         memorization=lambda: mem, proxies=run.proxies)
    assert list(cols) == ["cscore", "neg_memorization", "knn_input"]
    np.testing.assert_array_equal(cols["cscore"], run.cscores.scores)
    np.testing.assert_array_equal(cols["neg_memorization"], -mem.memorization)  # higher = more regular
    np.testing.assert_array_equal(cols["knn_input"], run.proxies["knn_input"])
    with pytest.raises(ValueError, match="unknown score 'knn_inptu' \\(did you mean 'knn_input'\\?\\)"):
        E.pick_scores(("knn_inptu",), run.dataset, proxies=run.proxies)
    with pytest.raises(ValueError, match="compute the proxies first"):
        E.pick_scores(("knn_input",), run.dataset)
    with pytest.raises(ValueError, match="no memorization for digits"):
        E.pick_scores(("memorization",), run.dataset, memorization=lambda: None)
    partial = CScores(np.where(np.arange(len(run.dataset)) < 3, np.nan, run.cscores.scores), run.dataset.labels)
    with pytest.raises(ValueError, match="3 of 1797 examples of digits have no C-score yet"):
        E.pick_scores(("cscore",), run.dataset, cscores=partial)
    other = CScores(run.cscores.scores, np.roll(run.dataset.labels, 1))
    with pytest.raises(ValueError, match="labels differ from the data set's"):
        E.pick_scores(("cscore",), run.dataset, cscores=other)
    with pytest.raises(ValueError, match="curriculum takes one score, got 2"):
        E.score_names(["cscore", "knn_input"], "curriculum")
    assert E.score_names(None, "prune") == ("cscore",)


def test_default_folders_resume_the_same_call_and_separate_different_ones(clean_run, digits):
    from cscore_lab.recipes import get_preset

    exp, recipe = E.experiment_named("prune"), get_preset("digits-mlp").recipe
    scores = {"cscore": np.linspace(0, 1, len(digits))}

    def folder(scores=scores, recipe=recipe, **options):
        return E.default_folder(exp, scores, recipe, options, run_folder=clean_run, root="unused", dataset_name="digits")

    a = folder(seeds=2)
    assert a.parent == clean_run / "uses" and a.name.startswith("pruning-cscore-") and len(a.name) == 23
    assert folder(seeds=2, device="cuda", workers=3) == a  # where and how fast it runs changes no number
    assert len({a, folder(seeds=3), folder(seeds=2, recipe=recipe.with_(epochs=3)),
                folder({"cscore": scores["cscore"][::-1]}, seeds=2)}) == 4
    assert E.default_folder(exp, scores, recipe, {}, run_folder=None, root="runs", dataset_name="digits").parent \
        .as_posix() == "runs/digits-uses"


def test_prepare_refuses_what_the_function_does_not_take(digits):
    with pytest.raises(TypeError, match="pruning_experiment takes no option 'rounds'"):
        E.prepare_experiment("prune", digits, cscores=None, rounds=3)
    with pytest.raises(ValueError, match="unknown experiment 'distill'"):
        E.prepare_experiment("distill", digits)
    with pytest.raises(ValueError, match="--out needs a folder"):
        E.prepare_experiment("prune", digits, "s", proxies={"s": np.zeros(len(digits))}, out=" ")


# --------------------------------------------------------------------------- the magics


def test_prune_wait_prints_the_table_shows_the_figure_and_the_same_line_resumes(ip, session, run_cell, capsys, run_copy):
    from cscore_lab.uses import PruningResult

    run_cell(f"%cscore load {run_copy}")
    line = f"%cscore prune --score cscore knn_input {SMALL_PRUNE} --quiet --wait -o pr"
    res = run_cell(line)  # the result, shown as its table; the figure displayed before it
    assert ip.user_ns["pr"] is res
    assert isinstance(res, PruningResult) and res.configs == (("cscore", "most_regular"), ("knn_input", "most_regular"),
                                                              ("random", "random"))
    out = capsys.readouterr().out
    assert out.index("Image object") < out.index("PruningResult(configs=3")
    assert "cscore/most_regular" in res._repr_html_() and "± " in res._repr_html_()
    kept = list((run_copy / "uses").iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("pruning-cscore+knn_input-")
    assert PruningResult.load(kept[0]).meta["groups_trained"] == 3
    run_cell(line)
    again = ip.user_ns["pr"]
    assert again.meta["groups_trained"] == 0 and again.meta["groups_resumed"] == 3
    np.testing.assert_array_equal(again.correct, res.correct)
    assert list(session.analysis().experiments) == [kept[0].name]


def test_curriculum_in_the_background_then_its_table_and_figure_below_the_cell(ip, session, run_cell, run_copy,
                                                                             monkeypatch):
    import ipywidgets as W

    from cscore_lab import magics
    from cscore_lab.uses import CurriculumResult

    shown = []
    monkeypatch.setattr(magics, "display", shown.append)
    run_cell(f"%cscore load {run_copy}")
    assert run_cell(f"%cscore curriculum --score memorization {SMALL_CURRICULUM} -o job") is None
    job = ip.user_ns["job"]
    assert isinstance(job, E.ExperimentJob) and job.scores.keys() == {"neg_memorization"}
    area = shown[-1]
    assert isinstance(area, W.Output)
    run_cell("%cscore wait --timeout 120")  # waits for the record's experiments too
    result = job.result
    assert job.state == "finished" and isinstance(result, CurriculumResult)
    assert result.score_name == "neg_memorization" and result.eval_steps[-1] == 120
    for _ in range(100):  # the listener runs at the end of the training thread
        if area.outputs:
            break
        job.thread.join(0.05)
    text = "".join(o.get("text", "") for o in area.outputs)
    assert "curriculum on neg_memorization: finished" in text
    kinds = [next(iter(o["data"].keys() - {"text/plain"})) for o in area.outputs if "data" in o]
    assert kinds == ["text/html", "image/png"]  # the table, then the figure
    assert "diff_vs_random" in area.outputs[1]["data"]["text/html"]
    lines = session.status()
    assert any("curriculum on neg_memorization: finished" in s for s in lines)
    dash = run_cell("%cscore show")
    assert dash.titles[-1] == "Uses" and dash.uses.select.value == job.name
    assert bytes(dash.uses.figure.value).startswith(b"\x89PNG") and "diff_vs_random" in dash.uses.table.value


def test_stop_stops_an_experiment_and_the_same_line_resumes_to_the_uninterrupted_numbers(ip, run_cell, capsys,
                                                                                         run_copy, tmp_path):
    from cscore_lab.runs import open_run
    from cscore_lab.uses import active_collection_experiment

    run_cell(f"%cscore load {run_copy}")
    line = "%cscore collect --rounds 4 --seeds 2 --group-size 1 --out col --quiet"
    run_cell(line + " -o job")
    job = ip.user_ns["job"]
    for _ in range(2400):
        if job.progress is not None and job.progress.groups_done >= 1:
            break
        job.thread.join(0.05)
    capsys.readouterr()
    run_cell("%cscore stop")
    out = capsys.readouterr().out
    assert "stopped collection-cscore" not in out  # an --out folder is named as given
    assert "stopped col: " in out and "the same %cscore collect again to resume" in out
    assert job.state == "stopped"
    kept = len(list((tmp_path / "col" / "entries").glob("*.npz")))
    assert 1 <= kept < 2 + 4 * 3 * 2
    run_cell(line.replace("--quiet", "--quiet --wait") + " -o res")
    res = ip.user_ns["res"]
    assert res.meta["groups_resumed"] == kept
    run = open_run(run_copy)
    fresh = active_collection_experiment(run.dataset, run.cscores, rounds=4, seeds=2, group_size=1,
                                         recipe="digits-mlp", device="cpu", progress=False)
    np.testing.assert_array_equal(res.correct, fresh.correct)
    run_cell("%cscore stop")
    assert "nothing is running" in capsys.readouterr().out


@pytest.mark.parametrize("line, message", [
    ("%cscore prune --score nope", "unknown score 'nope'; choose from cscore, memorization"),
    ("%cscore curriculum --score cscore knn_input", "curriculum takes one score, got 2 (cscore, knn_input)"),
    ("%cscore prune --fractions 0 0.5", "kept fraction 0 is outside (0, 1]"),
    ("%cscore collect --strategies best", "argument --strategies: invalid choice: 'best'"),
    ("%cscore collect --rounds 500 --wait", "more than the 1437 in the training split"),
    ("%cscore collect --rounds 500", "more than the 1437 in the training split"),  # refused before it runs
    ("%cscore curriculum --seeds 2 --steps 50 --weight-ratio 0.5", "weight_ratio must be a number >= 1"),
    ("%cscore curriculum --out ''", "--out needs a folder"),
])
def test_experiment_mistakes_are_one_line_usage_errors(session, run_cell, clean_run, line, message):
    run_cell(f"%cscore load {clean_run}")
    with pytest.raises(UsageError) as err:
        run_cell(line)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert not session.analysis().jobs and not (clean_run / "uses").exists()  # nothing ran, nothing was kept


def test_experiments_need_scores_first(ip, run_cell):
    with pytest.raises(UsageError, match="no C-scores for digits yet"):
        run_cell("%cscore prune")
    with pytest.raises(UsageError, match="compute the proxies first"):
        run_cell("%cscore prune --score knn_input")


# --------------------------------------------------------------------------- the CLI, the report, the session


def test_cli_and_magic_are_two_doors_to_one_experiment(ip, run_cell, run_copy, tmp_path, capsys):
    from cscore_lab.uses import PruningResult

    figure = tmp_path / "prune.png"
    assert main(["prune", "--run", str(run_copy), *SMALL_PRUNE.split(), "--score", "knn_input", "--no-progress",
                 "--figure", str(figure)]) == 0
    out = capsys.readouterr().out
    assert "knn_input/most_regular" in out and "3 groups trained, 0 resumed" in out
    assert figure.read_bytes().startswith(b"\x89PNG")
    (folder,) = (run_copy / "uses").iterdir()
    assert f"saved: {folder / 'pruning.npz'}" in out
    run_cell(f"%cscore load {run_copy}")
    res = run_cell(f"%cscore prune --score knn_input {SMALL_PRUNE} --quiet --wait")
    assert res.meta["out"] == str(folder) and res.meta["groups_resumed"] == 3 and res.meta["groups_trained"] == 0
    np.testing.assert_array_equal(res.correct, PruningResult.load(folder).correct)


def test_cli_experiment_from_a_cscores_file(clean_run, tmp_path, capsys, monkeypatch):
    from cscore_lab.uses import CurriculumResult

    monkeypatch.chdir(tmp_path)
    assert main(["curriculum", "--cscores", str(clean_run / "cscores.npz"), "--dataset", "digits",
                 *SMALL_CURRICULUM.split(), "--no-progress"]) == 0
    (folder,) = (tmp_path / "cscore-runs" / "digits-uses").iterdir()
    assert CurriculumResult.load(folder).strategies == ("curriculum", "random")
    assert "diff_vs_random" in capsys.readouterr().out
    for args, message in ((["collect"], "give the scores: --run DIR"),
                          (["collect", "--run", str(clean_run), "--cscores", "x"], "give one"),
                          (["collect", "--run", str(clean_run), "--dataset", "digits"], "drop --dataset"),
                          (["collect", "--run", str(clean_run), "--score", "memorization", "cscore"],
                           "collect takes one score, got 2")):
        assert main(args) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err
    with pytest.raises(SystemExit) as exit_:  # a parse error: argparse's one line, status 2
        main(["prune", "--run", str(clean_run), "--keep", "hardest"])
    assert exit_.value.code == 2 and "invalid choice: 'hardest'" in capsys.readouterr().err


def test_the_report_and_a_loaded_run_show_the_kept_experiments(run_copy, tmp_path, capsys):
    from cscore_lab.session import CScoreSession
    from cscore_lab.viz.uses_view import HOW_TO_RUN

    empty = CScoreSession(device="cpu", run_root=tmp_path)
    empty.load(run_copy)
    assert HOW_TO_RUN[:40] in empty.dashboard().uses.children[0].value
    assert main(["collect", "--run", str(run_copy), "--rounds", "2", "--seeds", "2", "--no-progress"]) == 0
    assert main(["report", "--run", str(run_copy)]) == 0
    text = (run_copy / "report.html").read_text()
    (folder,) = (run_copy / "uses").iterdir()
    assert "<h2>Uses of the scores</h2>" in text and f"<h3>{folder.name}</h3>" in text
    assert "Active collection by cscore" in text
    s = CScoreSession(device="cpu", run_root=tmp_path)
    s.load(run_copy)
    assert list(s.analysis().experiments) == [folder.name]
    assert s.dashboard().uses.select.value == folder.name


def test_a_separate_test_set_is_scaled_with_the_training_statistics(digits):
    """uses.prepare_data: a model deployed on new data sees it through the training set's scaling."""
    from cscore_lab.recipes import get_preset
    from cscore_lab.uses._experiment import prepare_data

    recipe = get_preset("digits-mlp").recipe.with_(input_scaling="standardize")
    train, test = digits.subset(np.arange(1200)), digits.subset(np.arange(1200, 1797))
    data = prepare_data(train, test=test, test_fraction=0.2, seed=0, recipe=recipe, device="cpu")
    x = train.inputs.reshape(len(train), -1).astype(np.float64)
    mean, std = x.mean(axis=0), np.maximum(x.std(axis=0, ddof=1), 1e-6)
    want = (test.inputs.reshape(len(test), -1) - mean) / std
    np.testing.assert_allclose(data.x_test.numpy(), want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(data.x.numpy(), (x - mean) / std, rtol=1e-4, atol=1e-4)
    assert data.identity["test"]["scaling"] == "training statistics"
