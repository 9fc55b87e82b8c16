"""The example notebook, executed in a Jupyter kernel: no error, short outputs, the views and the bar as promised."""

from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebook.ipynb"


def _texts(cell) -> list[str]:
    out = []
    for o in cell.get("outputs", []):
        if o["output_type"] == "stream":
            out.append(o["text"])
        for v in o.get("data", {}).values():
            out.append(v if isinstance(v, str) else str(v))
    return out


@pytest.mark.slow
def test_the_notebook_runs_and_every_output_is_short(monkeypatch):
    monkeypatch.delenv("CI", raising=False)  # the kernel inherits the environment: let it show its bar
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": "."}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    for c in code:
        assert not [o for o in c.outputs if o["output_type"] == "error"], c.source
        for text in _texts(c):
            assert len(text) < 4000, (c.source, len(text))  # a FitResult printed 35,052 characters before
            assert "TqdmWarning" not in text and "IProgress not found" not in text
    fit_cell = next(c for c in code if "jnn.fit(" in c.source)
    shown = {k: v for o in fit_cell.outputs for k, v in o.get("data", {}).items()}
    assert shown["text/plain"].startswith("FitResult(") and "after 20 epochs" in shown["text/plain"]
    assert shown["text/html"].startswith("<div><b>FitResult</b>")
    assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in fit_cell.outputs)  # the bar
    logs = "".join(o["text"] for o in fit_cell.outputs if o["output_type"] == "stream")
    assert "epoch   10  train_loss" in logs and "epoch   20  train_loss" in logs
    assert "20/20" in logs  # the bar's final state as text: what a saved notebook keeps of the widget
    sweep_cell = next(c for c in code if "sweep(" in c.source)
    text = next(o["data"]["text/plain"] for o in sweep_cell.outputs if "data" in o and "SweepResult" in str(o["data"]))
    assert "best: member" in text and len(text.splitlines()) <= 20
    assert "PASSED" in "".join(_texts(code[-1]))
