"""The tutorial notebook runs top to bottom (on a small budget) with nbclient."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "example_training.ipynb"


def test_example_training_notebook_executes(tmp_path, monkeypatch):
    monkeypatch.setenv("NF_NOTEBOOK_EPOCHS", "2")
    monkeypatch.setenv("NF_NOTEBOOK_N", "3000")
    monkeypatch.setenv("NF_NOTEBOOK_JIT", "0")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "3")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails
    outputs = "".join(o.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                      for o in cell.get("outputs", []))
    assert "test log-likelihood" in outputs and "integral of the model density" in outputs
    assert "reloaded from" in outputs


def test_notebook_has_no_stored_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
