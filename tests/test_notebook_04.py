"""Execute notebooks/04-reproduce-mnist.ipynb with nbclient (kernel working directory: notebooks/).

The notebook ends with a cell of asserts on what it computed; without the reference data in
../shared/data it prints why and skips its work, and this test skips with the same reason.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04-reproduce-mnist.ipynb"
DATA = ROOT.parent / "shared" / "data"


@pytest.mark.slow
def test_notebook_04_runs_and_its_checks_pass() -> None:
    nbformat = pytest.importorskip("nbformat", reason="executing notebooks needs nbformat (pip install 'cscore-lab[test]')")
    nbclient = pytest.importorskip("nbclient", reason="executing notebooks needs nbclient (pip install 'cscore-lab[test]')")
    if not (DATA / "mnist").is_dir() or not (DATA / "published" / "mnist-cscores.npy").is_file():
        pytest.skip(f"reference data not found at {DATA} (mnist/ and published/mnist-cscores.npy); notebook 04 needs it")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(NOTEBOOK.parent)}})
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    last = "".join(o.get("text", "") for o in nb.cells[-1].get("outputs", []) if o.get("output_type") == "stream")
    assert "all checks passed" in last
    print(f"notebook 04 executed in {seconds:.0f} s")


def test_notebook_04_skips_cleanly_without_data(tmp_path: Path, monkeypatch) -> None:
    """Run only the first cell from a folder with no shared/data above it: it prints the reason."""
    nbformat = pytest.importorskip("nbformat", reason="executing notebooks needs nbformat (pip install 'cscore-lab[test]')")
    nbclient = pytest.importorskip("nbclient", reason="executing notebooks needs nbclient (pip install 'cscore-lab[test]')")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    monkeypatch.delenv("CSCORE_SHARED_DATA", raising=False)
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    later = [c for c in nb.cells if c.cell_type == "code" and c is not first_code]
    nb.cells = [first_code, later[0], later[-1]]  # the data-loading cell and the checks would fail if they ran
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    text = "".join(o.get("text", "") for o in nb.cells[0].outputs if o.get("output_type") == "stream")
    assert text.startswith("skipped: no reference data found")
    assert all(not c.outputs for c in nb.cells[1:])
