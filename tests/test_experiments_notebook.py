"""notebooks/experiments.ipynb runs top to bottom (tiny protocol, 2 seeds)."""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "experiments.ipynb"
SHARED_DATA = Path("/work/shared/data")


def test_notebook_runs(monkeypatch):
    if not (SHARED_DATA / "mnist").exists():
        pytest.skip("MNIST files are absent")
    monkeypatch.setenv("JSURGERY_DATA", str(SHARED_DATA))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    outputs = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "transplant" in outputs and "significant" in outputs
