"""notebooks/experiments.ipynb runs top to bottom, on the tiny protocol with 2 seeds: a cell after
the one tagged ``parameters`` overrides its 20 seeds and original protocol, as papermill would."""

import pytest
from shared_data import DATA_ROOT, HAS_MNIST, REPO, SKIP_REASON

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = REPO
NOTEBOOK = ROOT / "notebooks" / "experiments.ipynb"


def test_notebook_runs(monkeypatch):
    if not HAS_MNIST:
        pytest.skip(SKIP_REASON)
    monkeypatch.setenv("JSURGERY_DATA", str(DATA_ROOT))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = next(
        i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", ())
    )
    assert 'PROTOCOL = "original"' in notebook.cells[parameters].source
    notebook.cells.insert(parameters + 1, nbformat.v4.new_code_cell('PROTOCOL, SEEDS = "tiny", 2'))
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    outputs = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "transplant" in outputs and "significant" in outputs
    assert "IProgress" not in outputs  # no tqdm widget warning where ipywidgets is missing
