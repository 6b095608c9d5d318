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
