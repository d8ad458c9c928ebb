"""Execute every notebook in notebooks/ top to bottom, failing on any cell error.

Each notebook runs in the venv's `python3` kernel with ABCRNN_FAST=1, so notebooks
must read that variable and shorten their slow steps. The working directory is a
temporary folder, so a notebook cannot rely on paths relative to its own location,
and files it writes to relative paths stay out of the repository.
"""

import json
import os
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CELL_TIMEOUT_S = 300


# Starting a kernel and importing torch alone take several seconds.
@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_runs(path: Path, tmp_path: Path) -> None:
    nbclient = pytest.importorskip(
        "nbclient", reason="nbclient is not installed: pip install nbclient ipykernel"
    )
    import nbformat  # installed with nbclient

    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )

    # Raises CellExecutionError, which shows the failing cell and its traceback.
    client.execute(env={**os.environ, "ABCRNN_FAST": "1"})

    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells, f"{path.name} has no code cells"
    assert all(cell.execution_count is not None for cell in code_cells)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda path: path.name)
def test_notebook_stored_without_outputs(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code_cells = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    with_outputs = [i for i, cell in enumerate(code_cells) if cell["outputs"]]
    with_counts = [i for i, cell in enumerate(code_cells) if cell["execution_count"]]

    assert with_outputs == [], f"{path.name}: clear the outputs of code cells"
    assert with_counts == [], f"{path.name}: clear the execution counts"
