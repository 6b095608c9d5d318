"""The cscore-lab command line: real runs on small plans, one-line errors."""

import subprocess
import sys

import numpy as np
import pytest

from cscore_lab.cli import main
from cscore_lab.cscores import CScores


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "cscore_lab.cli", *args], capture_output=True, text=True, timeout=300)


def test_estimate_prints_summary_and_saves(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["estimate", "--dataset", "digits", "--ratios", "0.5", "0.8", "--runs", "4", "--shard-size", "4",
                 "--seed", "2", "--device", "cpu", "--out", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert code == 0
    for needle in ("examples          1797", "ratios            2 (0.5, 0.8)", "runs per ratio    4", "mean C-score",
                   "below 0.5", "reliability", "time"):
        assert needle in text
    cs = CScores.load(out / "cscores.npz")
    assert len(cs) == 1797 and cs.runs == 4
    # rerun resumes: nothing left to train, same scores
    assert main(["estimate", "--ratios", "0.5", "0.8", "--runs", "4", "--shard-size", "4", "--seed", "2",
                 "--device", "cpu", "--out", str(out), "--no-progress"]) == 0
    np.testing.assert_array_equal(CScores.load(out / "cscores.npz").scores, cs.scores)


def test_label_noise_saves_the_flipped_mask(tmp_path, capsys):
    out = tmp_path / "noisy"
    assert main(["estimate", "--label-noise", "0.1", "--ratios", "0.5", "--runs", "2", "--device", "cpu",
                 "--out", str(out), "--no-progress"]) == 0
    from cscore_lab.store import RunStore

    arrays, spec = RunStore(out).read_data()  # the run folder's data entry: labels, masks, how to rebuild the data
    assert arrays["mask_flipped"].sum() == 180 and spec["label_noise"] == 0.1 and spec["name"] == "digits"
    assert (arrays["labels"] != arrays["original_labels"]).sum() == 180


@pytest.mark.parametrize("args,message", [
    (["estimate", "--dataset", "imagenet"], "invalid choice: 'imagenet'"),
    (["estimate", "--preset", "resnet"], "invalid choice: 'resnet'"),
    (["estimate", "--ratios", "1.2"], "subset ratio 1.2 is outside (0, 1)"),
    (["estimate", "--runs", "0"], "expected a positive integer, got 0"),
    (["estimate", "--label-noise", "2"], "outside [0, 1]"),
])
def test_usage_errors_are_one_line(args, message):
    res = run_cli(*args)
    assert res.returncode == 2
    assert message in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize("args,message", [
    (["estimate", "--dataset", "mnist"], "dataset 'mnist' needs a path"),
    (["estimate", "--dataset", "mnist", "--data", "/nonexistent/mnist"], "mnist folder not found: /nonexistent/mnist"),
    (["estimate", "--device", "cuda"], "CUDA is not available"),
    (["estimate", "--ratios", "0.001"], "fewer than the 10 classes"),
    (["estimate", "--address", "1.2.3.4:6379"], "--address and --num-gpus apply only with --backend ray"),
])
def test_bad_values_are_one_line_errors(args, message, tmp_path):
    import torch

    if "cuda" in args and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = run_cli(*args, "--out", str(tmp_path / "r"))
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert res.stderr.startswith("cscore-lab estimate: error:")


def test_truncated_mnist_file_is_reported(tmp_path):
    from test_data import make_mnist_folder

    make_mnist_folder(tmp_path)
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(p.read_bytes()[:-100])
    res = run_cli("estimate", "--dataset", "mnist", "--data", str(tmp_path), "--out", str(tmp_path / "r"))
    assert res.returncode == 2 and "truncated" in res.stderr and "Traceback" not in res.stderr


def test_demo_runs_the_main_job(tmp_path):
    res = run_cli("demo", "--runs", "2", "--device", "cpu", "--out", str(tmp_path / "demo"), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "C-scores of digits" in res.stdout and "The 10 lowest-scoring examples" in res.stdout
    rows = res.stdout.split("The 10 lowest-scoring examples:")[1].strip().splitlines()[1:11]
    assert len(rows) == 10 and all(len(r.split()) == 4 for r in rows)
