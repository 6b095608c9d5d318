"""Execute notebooks 01-03, 05 and 06 top to bottom in a real kernel (nbclient); each ends with a cell of asserts.

They run in one temporary copy of ``notebooks/``, in order, so 02 reuses the run folder of 01 as a user's
would; each prints how long it took. Notebook 05 also runs its MNIST part when ../shared/data holds MNIST
(and says why it skips it otherwise); 04 has its own test (it needs the published scores).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="executing notebooks needs nbformat (pip install 'cscore-lab[test]')")
nbclient = pytest.importorskip("nbclient", reason="executing notebooks needs nbclient (pip install 'cscore-lab[test]')")

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("notebooks")
    for nb in [*NOTEBOOKS.glob("0[1-3]-*.ipynb"), NOTEBOOKS / "05-memorization-and-generalization.ipynb",
               NOTEBOOKS / "06-using-the-scores.ipynb"]:
        shutil.copy(nb, folder / nb.name)
    return folder


def execute(path: Path) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    nbformat.write(nb, path)  # the executed copy stays in the test's folder for inspection
    print(f"{path.name} executed in {seconds:.0f} s ({path})")
    return nb, seconds


def outputs(nb, kind: str) -> list:
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if kind in o.get("data", {})]


def checks_passed(nb) -> bool:
    last = nb.cells[-1]
    return any("all checks passed" in o.get("text", "") for o in last.get("outputs", []))


@pytest.mark.slow
def test_01_quickstart(workdir):
    nb, _ = execute(workdir / "01-quickstart.ipynb")
    assert checks_passed(nb)
    assert len(outputs(nb, WIDGET)) >= 2  # the run monitor and the dashboard
    assert outputs(nb, "image/png")  # the matplotlib figures
    assert nb.metadata.get("widgets"), "the widget state is saved with the notebook"
    assert (workdir / "cscore-runs" / "quickstart-report.html").is_file()


@pytest.mark.slow
def test_02_proxies(workdir):
    nb, _ = execute(workdir / "02-proxies.ipynb")
    assert checks_passed(nb)
    assert len(outputs(nb, "image/png")) >= 3


@pytest.mark.slow
def test_03_mislabeled_examples(workdir):
    nb, _ = execute(workdir / "03-mislabeled-examples.ipynb")
    assert checks_passed(nb)
    assert outputs(nb, WIDGET)  # the gallery


def stream_text(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])
                   if o.get("output_type") == "stream")


@pytest.mark.slow
def test_05_memorization_and_generalization(workdir, monkeypatch):
    mnist = (SHARED_DATA / "mnist").is_dir()
    if mnist:  # the notebook runs in a temporary folder: point it at the reference data
        monkeypatch.setenv("CSCORE_SHARED_DATA", str(SHARED_DATA))
    else:
        monkeypatch.delenv("CSCORE_SHARED_DATA", raising=False)
    nb, _ = execute(workdir / "05-memorization-and-generalization.ipynb")
    assert checks_passed(nb)
    assert len(outputs(nb, "image/png")) >= (7 if mnist else 6)
    assert outputs(nb, WIDGET)  # the dashboard
    text = stream_text(nb)
    assert "of the 24 most memorized have a flipped label" in text
    if mnist:
        assert "MNIST: 24 models" in text
    else:
        print(f"notebook 05 ran without its MNIST part: no MNIST files at {SHARED_DATA / 'mnist'}")
        assert "skipped: no MNIST files found" in text


@pytest.mark.slow
def test_06_using_the_scores(workdir):
    """Out-of-distribution detection, a pruning curve and a curriculum comparison on digits (about 30 s)."""
    nb, _ = execute(workdir / "06-using-the-scores.ipynb")
    assert checks_passed(nb)
    assert len(outputs(nb, "image/png")) >= 4  # detection figure, pruning and curriculum (each twice: magic, pair)
    assert len(outputs(nb, WIDGET)) >= 4  # two run monitors, the gallery, the dashboard
    uses = workdir / "cscore-runs" / "digits-digits-mlp-seed0" / "uses"
    assert sorted(p.name.split("-")[0] for p in uses.iterdir()) == ["curriculum", "pruning"]
