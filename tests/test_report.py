"""The HTML report: one self-contained file, and ``cscore-lab report --run DIR`` on a real run folder."""

from __future__ import annotations

import base64
import re
import shutil

import numpy as np
import pytest

from cscore_lab.report import report_html, write_report
from cscore_lab.runs import open_run

PNG = b"\x89PNG\r\n\x1a\n"


def _images(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", text)]


def test_report_is_one_self_contained_file(tmp_path, digits_cscores, digits):
    path = write_report(digits_cscores, digits, tmp_path / "sub" / "report", per_class=4)
    assert path == tmp_path / "sub" / "report.html" and path.is_file()
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert not re.search(r"(src|href)=['\"](?!data:)", text), "nothing may be fetched from elsewhere"
    images = _images(text)
    assert images and all(img.startswith(PNG) for img in images)
    # 3 figures (histogram, per class, profiles) + 10 classes x (4 lowest + 4 highest) example images
    assert len(images) == 3 + 10 * 8
    s = digits_cscores.summary()
    assert f"{s['mean_score']:.4f}" in text and "split-half reliability" in text
    low = int(digits_cscores.lowest(1)[0])
    assert f"#{low}<br>{digits_cscores.scores[low]:.2f}" in text


def test_report_with_proxies_correlations_and_noise(digits_cscores, digits):
    from cscore_lab.analysis import correlate

    rng = np.random.default_rng(0)
    proxies = {"good": digits_cscores.scores + rng.normal(0, 0.05, len(digits)), "noise": rng.normal(size=len(digits))}
    corr = correlate(proxies, digits_cscores, n_boot=20)
    mask = np.zeros(len(digits), dtype=bool)
    mask[digits_cscores.lowest(20)] = True
    text = report_html(digits_cscores, digits, proxies=proxies, correlations=corr, masks={"flipped": mask},
                       per_class=2)
    assert "Proxies and the C-score" in text and "Rank correlation with the C-score" in text
    assert "flipped labels" in text and text.count("border:2px solid #c62828") >= 10
    # histogram, per class, flipped histogram, profiles, intervals, heat map, 2 scatters, 10 x 4 examples
    assert len(_images(text)) == 8 + 40


def test_report_rejects_mismatched_inputs(digits_cscores, digits, tmp_path):
    with pytest.raises(ValueError, match="1796 examples, the C-scores 1797"):
        write_report(digits_cscores, digits.subset(np.arange(1796)), tmp_path / "r.html")
    with pytest.raises(ValueError, match="mask 'flipped' has shape"):
        write_report(digits_cscores, digits, tmp_path / "r.html", masks={"flipped": np.zeros(3, dtype=bool)})
    assert not (tmp_path / "r.html").exists()


def test_open_run_reads_scores_and_data_back(tiny_run, digits):
    folder, expected = tiny_run
    run = open_run(folder)
    np.testing.assert_array_equal(run.cscores.scores, expected.scores)
    assert run.dataset.fingerprint == digits.fingerprint and run.noise_mask is None


def test_open_run_of_a_cli_noise_run_rebuilds_the_noisy_labels(tmp_path, digits):
    from cscore_lab.cli import main

    folder = tmp_path / "noisy"
    assert main(["estimate", "--label-noise", "0.1", "--ratios", "0.5", "--runs", "2", "--seed", "2",
                 "--out", str(folder), "--device", "cpu", "--no-progress"]) == 0
    (folder / "cscores.npz").unlink()  # as if unfinished: the labels must be rebuilt from the name and seed
    run = open_run(folder)
    assert run.dataset.name == "digits-noise0.1" and run.noise_mask.sum() == 180
    np.testing.assert_array_equal(run.dataset.labels != digits.labels, run.noise_mask)


def test_open_run_refuses_data_that_are_not_the_runs(tiny_run, tmp_path, digits):
    import json

    from cscore_lab.store import StoreMismatchError

    with pytest.raises(ValueError, match="is not the data the run was made on"):
        open_run(tiny_run[0], dataset=digits.with_labels(np.roll(digits.labels, 1)))
    folder = tmp_path / "copy"
    shutil.copytree(tiny_run[0], folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["identity"]["fingerprint"] = "0" * 64  # an edited manifest: its files no longer belong to it
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(StoreMismatchError, match="entries/data.npz belongs to another run"):
        open_run(folder)
    shutil.rmtree(folder / "entries")  # a folder from before the data entry: the data set is found by name
    with pytest.raises(ValueError, match="is not the data the run was made on"):
        open_run(folder)
    manifest["identity"]["dataset"] = "mnist"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"pass --data PATH"):
        open_run(folder)


def test_cli_report_writes_the_file_and_prints_its_path(tiny_run, tmp_path, capsys):
    from cscore_lab.cli import main

    out = tmp_path / "r.html"
    assert main(["report", "--run", str(tiny_run[0]), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out}"
    assert out.is_file() and len(_images(out.read_text())) > 10
    assert main(["report", "--run", str(tmp_path / "none")]) == 2
    assert "no run store at" in capsys.readouterr().err


# --------------------------------------------------------------------------- memorization and influence


@pytest.fixture(scope="module")
def tiny_tables(tiny_run):
    run = open_run(tiny_run[0])
    return run, run.memorization(), run.influence(k=3)


def _section(text: str, name: str) -> str:
    start = text.index(f"<h2>{name}</h2>")
    end = text.find("<h2>", start + 1)
    return text[start:] if end < 0 else text[start:end]


def test_report_memorization_and_influence_sections(tiny_tables):
    run, mem, infl = tiny_tables
    cs, ds = run.cscores, run.dataset
    mask = np.zeros(len(ds), dtype=bool)
    mask[mem.most_memorized(5)] = True
    text = report_html(cs, ds, masks={"flipped": mask}, per_class=1, memorization=mem, influence=infl,
                       memorized=12, pairs=10)
    assert not re.search(r"(src|href)=['\"](?!data:)", text)
    memo = _section(text, "Memorization")
    s = mem.summary()
    assert f"Mean {s['mean_memorization']:.3f}, {s['above_0.5']} examples above 0.5" in memo
    # scatter + clean-vs-flipped histogram + the 12 most memorized, in order, with their numbers
    assert len(_images(memo)) == 2 + 12
    positions = [memo.index(f"#{i} · {ds.class_names[cs.labels[i]]}<br>m {mem.memorization[i]:.2f}")
                 for i in mem.most_memorized(12)]
    assert positions == sorted(positions)
    assert memo.count("border:2px solid #c62828") == 5  # the flipped ones are framed
    pairs_part = _section(text, "Influence")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pairs = infl.pairs(0.15, memorization=mem).head(10)
    assert len(_images(pairs_part)) == 2 * len(pairs)  # both images of every pair
    positions = [pairs_part.index(f"training example #{r.train_index} (label {ds.class_names[r.train_label]}, "
                                  f"memorization {r.memorization:.3f} ± {r.memorization_stderr:.3f}) → target "
                                  f"#{r.eval_index} (label {ds.class_names[r.eval_label]}): influence "
                                  f"{r.influence:.3f} ± {r.stderr:.3f}")
                 for r in pairs.itertuples()]
    assert positions == sorted(positions)
    assert f"↓ {pairs.influence.iloc[0]:+.2f}±{pairs.stderr.iloc[0]:.2f}" in pairs_part
    # with no memorization or influence, no such sections
    assert "<h2>Memorization</h2>" not in report_html(cs, ds, per_class=1)


def test_report_influence_on_an_evaluation_set(tiny_tables, digits):
    from cscore_lab.influence import Influence

    run, mem, _ = tiny_tables
    test = digits.subset(np.arange(10), name="digits-test")
    top = np.array([[3, 4]] * 10)
    value = np.tile([0.5, 0.1], (10, 1)) - np.arange(10)[:, None] * 0.01
    infl = Influence(top_index=top, top_value=value, top_stderr=np.full((10, 2), 0.04), train_labels=digits.labels,
                     eval_labels=test.labels, ratios=(0.5,), models_per_ratio=(8,))
    text = _section(report_html(run.cscores, run.dataset, memorization=mem, influence=infl, eval_dataset=test,
                                pairs=4, per_class=1), "Influence")
    assert "the 10 examples of the evaluation set digits-test" in text
    assert "10 kept pairs have influence above 0.15" in text
    assert len(_images(text)) == 8
    assert text.index("target #0 (label 0)") < text.index("target #1 (label 1)") < text.index("target #3 (label 3)")
    # the strongest pairs when none passes the threshold, and no images of an evaluation set not given
    text = _section(report_html(run.cscores, run.dataset, influence=infl, threshold=0.9, pairs=3, per_class=1),
                    "Influence")
    assert "0 kept pairs have influence above 0.9" in text and "The strongest kept pairs" in text
    assert "images are left out" in text and len(_images(text)) == 3  # the training images only
    with pytest.raises(ValueError, match="the evaluation set 'digits-test' has 10 examples, the influence table 5"):
        report_html(run.cscores, run.dataset, influence=Influence(
            top_index=top[:5], top_value=value[:5], top_stderr=np.full((5, 2), 0.04), train_labels=digits.labels,
            eval_labels=test.labels[:5], ratios=(0.5,), models_per_ratio=(8,)), eval_dataset=test)
    with pytest.raises(ValueError, match="memorization table has 1797 examples, the C-scores 10"):
        report_html(run.cscores.__class__(np.zeros(10), test.labels), test, memorization=mem)
    with pytest.raises(ValueError, match="memorized must be a positive integer"):
        report_html(run.cscores, run.dataset, memorization=mem, memorized=0)


def test_cli_report_adds_memorization_and_with_influence_the_pairs(tiny_run, tmp_path, capsys):
    from cscore_lab.cli import main
    from cscore_lab.influence import Influence
    from cscore_lab.memorization import Memorization

    folder = tmp_path / "run"
    shutil.copytree(tiny_run[0], folder)
    out = tmp_path / "r.html"
    assert main(["report", "--run", str(folder), "--out", str(out)]) == 0
    text = out.read_text()
    expected = open_run(folder).memorization()
    assert f"Mean {expected.summary()['mean_memorization']:.3f}" in _section(text, "Memorization")
    assert "<h2>Influence</h2>" not in text and not (folder / "influence.npz").exists()
    assert main(["report", "--run", str(folder), "--out", str(out), "--influence", "--k", "2"]) == 0
    assert "the 2 most influential training examples" in _section(out.read_text(), "Influence")
    kept = Influence.load(folder)
    assert kept.k == 2 and kept.target == "train"
    # a kept table of the same models is used as it is; one of other models is not
    assert main(["report", "--run", str(folder), "--out", str(out)]) == 0
    assert "<h2>Influence</h2>" in out.read_text()
    stale = Memorization.load(expected.save(tmp_path / "m.npz"))
    stale.meta = {**stale.meta, "models": 1}
    stale.in_correct[:] = 0  # would give another mean memorization
    stale.save(folder)
    assert main(["report", "--run", str(folder), "--out", str(out)]) == 0
    assert f"Mean {expected.summary()['mean_memorization']:.3f}" in _section(out.read_text(), "Memorization")
    capsys.readouterr()
