"""Out-of-distribution detection end to end, from every door: ``%cscore ood``, ``estimate --ood``,
``%cscore detect --kind``, ``cscore-lab detect --run``; the dashboard, gallery and report mark the
injected inputs as they mark flipped labels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from IPython.core.error import UsageError

from cscore_lab.cli import main
from cscore_lab.detection import detect_injected, detect_masks
from cscore_lab.store import RunStore


@pytest.fixture(scope="module")
def both_run(cli_run):
    """A CLI run on digits with 10% flipped labels and 5% rotated inputs, and its proxies (knn, kde on inputs)."""
    return cli_run("ood", "--label-noise", "0.1", "--ood", "0.05", "--ood-kind", "rotated")


# --------------------------------------------------------------------------- the library piece


def test_detect_masks_rows_against_a_hand_computed_case():
    """C-score, memorization negated and a proxy, on 6 examples whose ranks are worked out by hand."""
    from cscore_lab.cscores import CScores
    from cscore_lab.memorization import Memorization

    labels = np.zeros(6, dtype=np.int64)
    cs = CScores(np.array([0.1, 0.2, 0.5, 0.6, 0.7, 0.8]), labels)
    mask = np.array([True, True, False, False, False, False])
    def memorization_of(values):  # one ratio, 10 models on each side, none right when held out
        counts = np.full((1, len(values)), 10)
        return Memorization(np.zeros(len(values), dtype=np.int64), (0.5,), counts, np.rint(10 * np.array([values])).astype(int),
                            counts, np.zeros_like(counts))

    mem = memorization_of([0.9, 0.0, 0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(mem.memorization, [0.9, 0.0, 0.1, 0.2, 0.3, 0.4])
    proxy = {"p": np.array([0.3, 0.9, 0.1, 0.5, 0.6, 0.7])}
    table = detect_masks(cs, {"ood": mask}, memorization=mem, proxies=proxy)["ood"]
    assert table.scores == ["cscore", "neg_memorization", "p"] and table.what == "out-of-distribution examples"
    # cscore: both injected below every clean one. neg_memorization = -mem: -0.9 is the most suspect (4 of 4
    # clean above it), 0.0 is the least (0 of 4): (4 + 0) / 8. p: 0.3 is below 3 of the 4 clean, 0.9 below none.
    np.testing.assert_allclose(table.auroc, [1.0, 0.5, 3 / 8])
    # the k = 2 lowest: (0.1, 0.2) both injected; (-0.9, -0.4): one; p's (0.1 clean, 0.3 injected): one
    np.testing.assert_allclose(table.precision_at_k, [1.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="memorization table has 5 examples, the C-scores 6"):
        detect_masks(cs, {"ood": mask}, memorization=memorization_of([0.1] * 5))
    with pytest.raises(ValueError, match="no injection mask given"):
        detect_masks(cs, {})


# --------------------------------------------------------------------------- the magics


def test_ood_makes_a_named_copy_and_remembers_its_mask(ip, session, run_cell, digits, capsys):
    out = run_cell("%cscore ood digits 0.05 --kind inverted --seed 2 -o bad")
    assert out is None  # bound with -o, not displayed
    copy = ip.user_ns["bad"]
    rec = session.analyses["digits-ood-inverted0.05"]
    assert rec.dataset is copy and session.current == copy.name
    assert rec.ood_mask.sum() == round(0.05 * len(digits)) and rec.noise_mask is None
    np.testing.assert_array_equal(copy.inputs[rec.ood_mask], 16 - digits.inputs[rec.ood_mask])
    assert rec.spec.ood_fraction == 0.05 and rec.spec.ood_kind == "inverted" and rec.spec.seed == 2
    printed = capsys.readouterr().out
    assert "90 of 1797 examples replaced by inverted inputs" in printed and "%cscore detect --kind ood" in printed
    run_cell("%cscore ood digits 0.1 --kind gaussian --name noisy-inputs")
    assert session.current == "noisy-inputs" and session.analyses["noisy-inputs"].ood_mask.sum() == 180


@pytest.mark.parametrize("line, message", [
    ("%cscore ood digits 0.1 --kind sparkly", "argument --kind: invalid choice: 'sparkly'"),
    ("%cscore ood digits 1.5", "fraction 1.5 is outside [0, 1]"),
    ("%cscore ood digits 0.1 --kind foreign", "uses MNIST downscaled to 8x8: pass source="),
    ("%cscore ood digits 0.1 --source /tmp", "source= is only used by kind='foreign'"),
    ("%cscore ood digits 0.1 --name ''", "--name needs a name for the copy"),
    ("%cscore detect --kind ood", "no ood mask for digits"),
    ("%cscore detect --kind labels", "argument --kind: invalid choice: 'labels'"),
])
def test_ood_and_detect_mistakes_are_one_line_usage_errors(ip, run_cell, line, message):
    with pytest.raises(UsageError) as err:
        run_cell(line)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_magic_and_cli_make_the_same_ood_run_folder(tmp_path, monkeypatch, run_cell):
    options = "--ood 0.05 --ood-kind shuffled --ratios 0.5 --runs 2 --seed 3 --shard-size 1 --device cpu"
    (tmp_path / "cli").mkdir()
    monkeypatch.chdir(tmp_path / "cli")
    assert main(["estimate", *options.split(), "--no-progress"]) == 0
    (tmp_path / "magic").mkdir()
    monkeypatch.chdir(tmp_path / "magic")
    run_cell(f"%cscore estimate digits {options} --wait")
    a, b = (next((tmp_path / door / "cscore-runs").iterdir()) for door in ("cli", "magic"))
    assert a.name == b.name == "digits-ood-shuffled0.05-digits-mlp-seed3"
    ma, mb = (json.loads((f / "manifest.json").read_text()) for f in (a, b))
    assert ma["identity"] == mb["identity"]
    (arrays_a, spec_a), (arrays_b, spec_b) = RunStore(a).read_data(), RunStore(b).read_data()
    assert spec_a == spec_b and spec_a["ood_kind"] == "shuffled" and spec_a["seed"] == 3
    np.testing.assert_array_equal(arrays_a["mask_ood"], arrays_b["mask_ood"])
    for sa, sb in zip(RunStore(a).iter_shards(), RunStore(b).iter_shards()):
        np.testing.assert_array_equal(sa.correct, sb.correct)


def test_detect_kind_ood_has_the_cscore_memorization_and_every_proxy(ip, session, run_cell, both_run):
    from cscore_lab.memorization import Memorization
    from cscore_lab.proxies.suite import ProxyTable
    from cscore_lab.runs import open_run

    run_cell(f"%cscore load {both_run}")
    rec = session.analysis()
    assert set(rec.masks) == {"flipped", "ood"}
    table = run_cell("%cscore detect --kind ood -o det")
    assert ip.user_ns["det"] is table and table.what == "out-of-distribution examples"
    proxies = ProxyTable.load(both_run)
    assert set(table.scores) == {"cscore", "neg_memorization", *proxies.names}
    run = open_run(both_run)
    mem = Memorization.load(both_run)  # kept by the session when it computed it
    expected = detect_injected({"neg_memorization": mem.regularity, **proxies.values}, run.masks["ood"],
                               cscores=run.cscores)
    frame, want = table.to_frame(), expected.to_frame()
    np.testing.assert_allclose(frame.loc[want.index, "auroc"], want["auroc"])
    np.testing.assert_allclose(frame.loc[want.index, "average_precision"], want["average_precision"])
    flipped = run_cell("%cscore detect")  # both masks: flipped labels by default
    assert flipped.what == "flipped labels" and int(flipped.meta["k"]) == int(run.masks["flipped"].sum())


def test_published_scores_are_detected_without_memorization(session, run_cell, both_run):
    """A record whose scores have no models behind them (as published scores) gets its table without memorization."""
    from cscore_lab.runs import open_run

    run = open_run(both_run)
    s = session
    s.load(both_run)
    rec = s.analysis()
    rec.run_folder, rec.cscores = None, run.cscores  # as for published scores: no models behind them
    table = run_cell("%cscore detect --kind ood")
    assert "neg_memorization" not in table.scores and "cscore" in table.scores


# --------------------------------------------------------------------------- the CLI


def test_cli_detect_prints_a_table_for_every_mask(both_run, capsys):
    from cscore_lab.runs import open_run

    capsys.readouterr()
    assert main(["detect", "--run", str(both_run)]) == 0
    out = capsys.readouterr().out
    assert "Finding the flipped labels" in out and "Finding the out-of-distribution examples" in out
    assert "memorization (negated)" in out and "4 proxies of proxies.npz" in out
    run = open_run(both_run)
    tables = detect_masks(run.cscores, run.masks, proxies=run.proxies)
    for table in tables.values():  # every row printed with its numbers
        for name, row in table.to_frame().iterrows():
            assert f"{name:<28} {row.auroc:7.3f} {row.average_precision:7.3f}" in out
    assert out.count("neg_memorization") == 2


def test_cli_detect_of_a_clean_run_says_what_to_do(tiny_run, capsys):
    assert main(["detect", "--run", str(tiny_run[0])]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no injected examples" in err and "--ood FRACTION" in err and "\n" not in err


# --------------------------------------------------------------------------- views mark the injected inputs


def test_agreement_scatter_marks_ood_inputs_when_no_label_was_flipped(digits_cscores, monkeypatch):
    from cscore_lab.viz import plots
    from cscore_lab.viz.widgets import AgreementView

    drawn = []
    real = plots.proxy_scatter
    monkeypatch.setattr(plots, "proxy_scatter", lambda *a, **k: drawn.append(k) or real(*a, **k))
    ood = np.zeros(len(digits_cscores), dtype=bool)
    ood[:40] = True
    AgreementView(digits_cscores, proxies={"p": digits_cscores.scores}, masks={"ood": ood})
    assert drawn[-1]["mask_label"] == "out-of-distribution input" and drawn[-1]["mask"] is ood
    AgreementView(digits_cscores, proxies={"p": digits_cscores.scores}, masks={"ood": ood, "flipped": ~ood})
    assert drawn[-1]["mask_label"] == "flipped label"


def test_dashboard_gallery_and_report_mark_ood_inputs(tmp_path, both_run):
    from cscore_lab.report import report_html
    from cscore_lab.runs import open_run
    from cscore_lab.session import CScoreSession
    from cscore_lab.viz._parts import MASK_STYLES

    s = CScoreSession(device="cpu", run_root=tmp_path)
    s.load(both_run)
    rec = s.analysis()
    ood = rec.masks["ood"]
    dash = s.dashboard()
    g = dash.gallery
    g.order.value, g.count.value = "lowest", 96
    marked = [i for i in g.shown if ood[i]]
    assert marked, "rotated digits are among the 96 lowest C-scores"
    tiles = dict(zip(g.shown, g.grid.children))
    for i in g.shown:
        caption = tiles[i].children[1]
        assert (MASK_STYLES["ood"][2] in caption.tooltip) == bool(ood[i])
        if ood[i] and not rec.masks["flipped"][i]:
            assert caption.button_style == "warning"
    g.select(marked[0])
    assert "out-of-distribution input" in g.detail.children[0].value
    g.select(int(np.flatnonzero(~ood)[0]))
    assert "input in distribution" in g.detail.children[0].value
    run = open_run(both_run)
    text = report_html(run.cscores, run.dataset, masks=run.masks, per_class=8)
    assert "out-of-distribution inputs" in text and "border:2px solid #ef6c00" in text
