"""The notebooks run top to bottom (nbclient), as a user would run them."""

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import ROOT


@pytest.mark.parametrize("name", ["energy_report.ipynb"])
def test_notebook_executes(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SDDPM_REPORT_DIR", str(tmp_path))
    notebook = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [o for cell in notebook.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 5  # three saved plots, the per-step curve, the conventions
    assert (tmp_path / "compare.json").is_file()
    assert (tmp_path / "profile.h5").is_file() and (tmp_path / "energy.json").is_file()
