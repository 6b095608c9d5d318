"""Shared fixtures: data, small C-score objects, a real IPython shell with ``%cscore`` loaded.

Keep this file small and generic; fixtures used by one test module belong in that module.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # before anything imports pyplot: tests draw real figures, headless

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Property tests draw fresh examples on every run where people develop (that is how they find cases);
# CI sets HYPOTHESIS_PROFILE=ci and draws the same examples every time, so a landing never hangs on a
# newly drawn case (each property test also passed 600 examples per run when last explored).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits as a cscore_lab Dataset (bundled, no download)."""
    from cscore_lab.data import load_digits

    return load_digits()


def synthetic_cscores(labels: np.ndarray, *, ratios=(0.2, 0.5, 0.8), seed: int = 0, dataset: str = "synthetic"):
    """C-scores built from binomial held-out counts (no training): a realistic spread, known structure."""
    from cscore_lab.cscores import CScores, aggregate_counts

    rng = np.random.default_rng(seed)
    n = len(labels)
    heldout = rng.integers(4, 12, size=(len(ratios), n))
    p = rng.beta(6, 1, size=n)
    grow = np.linspace(0.8, 1.0, len(ratios))[:, None]
    correct = rng.binomial(heldout, np.clip(p[None] * grow, 0, 1))
    per_ratio, score, stderr = aggregate_counts(correct, heldout)
    return CScores(score, labels, ratios, per_ratio, heldout, stderr, reliability=0.8, runs=8, dataset=dataset)


@pytest.fixture(scope="session")
def digits_cscores(digits):
    """Synthetic C-scores for the digits (same labels, no training)."""
    return synthetic_cscores(digits.labels, dataset="digits")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, digits):
    """A finished real estimation on digits (2 ratios x 4 runs) in a run folder; returns (folder, CScores)."""
    from cscore_lab.holdout import Estimation
    from cscore_lab.recipes import Plan

    folder = tmp_path_factory.mktemp("runs") / "digits-tiny"
    est = Estimation(digits, "digits-mlp", Plan(ratios=(0.3, 0.7), runs=4, shard_size=4), out=folder, device="cpu")
    return folder, est.run()


@pytest.fixture(scope="session")
def shell():
    """The one real IPython ``InteractiveShell`` of the test process (display() needs the singleton)."""
    from IPython.core.interactiveshell import InteractiveShell

    return InteractiveShell.instance()


@pytest.fixture
def ip(shell, tmp_path, monkeypatch):
    """The shell with a fresh ``%cscore`` (new session state), working in ``tmp_path``.

    Running estimations are stopped afterwards, and the user namespace is cleared.
    """
    from cscore_lab.magics import load_ipython_extension

    monkeypatch.chdir(tmp_path)
    shell.reset(new_session=False)
    shell.config.pop("CScoreMagics", None)  # %config values of an earlier test
    load_ipython_extension(shell)
    magics = shell.magics_manager.registry["CScoreMagics"]
    yield shell
    magics.session.stop(all=True)
    shell.configurables[:] = [c for c in shell.configurables if c is not magics]


@pytest.fixture
def session(ip):
    """The :class:`~cscore_lab.session.CScoreSession` behind ``ip``'s fresh ``%cscore``."""
    return ip.magics_manager.registry["CScoreMagics"].session


@pytest.fixture
def run_cell(ip) -> Callable[[str], Any]:
    """Run a cell in the real shell; errors are raised (UsageError included); returns the cell's value."""

    def run(code: str) -> Any:
        result = ip.run_cell(code)
        result.raise_error()
        return result.result

    return run


#: 2 ratios x 16 runs of digits: every example is held out by some model (no NaN score), in about 3 s
CLI_PLAN = ("--ratios", "0.3", "0.7", "--runs", "16", "--shard-size", "16", "--device", "cpu")


@pytest.fixture(scope="session")
def cli_run(tmp_path_factory) -> Callable[..., Path]:
    """``cli_run(name, *options)``: the folder of a finished ``cscore-lab estimate`` of digits (:data:`CLI_PLAN`,
    with ``options``) and its proxies (k-NN and kernel density on the inputs), in a new folder named after ``name``."""
    from cscore_lab.cli import main

    def make(name: str, *options: str) -> Path:
        folder = tmp_path_factory.mktemp(name) / "run"
        assert main(["estimate", *options, *CLI_PLAN, "--out", str(folder), "--no-progress"]) == 0
        assert main(["proxies", "--run", str(folder), "--families", "knn", "kde", "--spaces", "input", "--n-boot", "0",
                     "--no-progress"]) == 0
        return folder

    return make


def pytest_report_header(config) -> str:
    return f"cscore_lab tests; chromium: {'present' if os.path.exists('/usr/bin/chromium') else 'absent'}"
