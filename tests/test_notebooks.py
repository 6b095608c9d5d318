"""Execute the notebooks top to bottom in a real kernel (nbclient); each ends with a cell of asserts.

01-03, 05 and 06 run in one temporary copy of ``notebooks/``, in order, so 02 reuses the run folder of
01 as a user's would; each prints how long it took. Notebook 05 also runs its MNIST part when
../shared/data holds MNIST (and says why it skips it otherwise). 04 needs the published scores: it runs
in ``notebooks/`` itself (kernel working directory) and is skipped with the reason without them; from a
folder without ../shared/data its first cell says why it does nothing.
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


def run(nb: nbformat.NotebookNode, folder: Path, timeout: int = 600) -> float:
    """Execute ``nb`` in place in a python3 kernel working in ``folder``; the seconds it took."""
    client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    t0 = time.perf_counter()
    client.execute()
    return time.perf_counter() - t0


def execute(path: Path) -> tuple[nbformat.NotebookNode, float]:
    nb = nbformat.read(path, as_version=4)
    seconds = run(nb, path.parent)
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


NOTEBOOK_04 = NOTEBOOKS / "04-reproduce-mnist.ipynb"


@pytest.mark.slow
def test_notebook_04_runs_and_its_checks_pass() -> None:
    if not (SHARED_DATA / "mnist").is_dir() or not (SHARED_DATA / "published" / "mnist-cscores.npy").is_file():
        pytest.skip(f"reference data not found at {SHARED_DATA} (mnist/ and published/mnist-cscores.npy); "
                    f"notebook 04 needs it")
    nb = nbformat.read(NOTEBOOK_04, as_version=4)
    seconds = run(nb, NOTEBOOK_04.parent)  # not written back: notebooks/ keeps the committed copy
    assert checks_passed(nb)
    print(f"notebook 04 executed in {seconds:.0f} s")


def test_notebook_04_skips_cleanly_without_data(tmp_path: Path, monkeypatch) -> None:
    """Run only the first cell from a folder with no shared/data above it: it prints the reason."""
    nb = nbformat.read(NOTEBOOK_04, as_version=4)
    monkeypatch.delenv("CSCORE_SHARED_DATA", raising=False)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    later = [c for c in nb.cells if c.cell_type == "code" and c is not first_code]
    nb.cells = [first_code, later[0], later[-1]]  # the data-loading cell and the checks would fail if they ran
    run(nb, tmp_path, timeout=120)
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.get("output_type") == "stream")
    assert text.startswith("skipped: no reference data found")
    assert all(not c.outputs for c in nb.cells[1:])
