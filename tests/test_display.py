"""Short views of results for terminals and notebooks: at most 20 lines, the facts a reader looks for."""

import pytest

import jnn
from jnn.datasets import load
from jnn.display import MAX_LINES, MAX_ROWS
from jnn.history import History
from jnn.sweep import sweep
from jnn.train import TrainConfig, fit

CFG = TrainConfig(max_epochs=3, batch_size=64)


@pytest.fixture(scope="module")
def spirals():
    return load("spirals", seed=0)[0]


def test_a_fit_result_shows_how_it_stopped_its_size_and_last_metrics_in_a_few_lines(spirals):
    r = fit(spirals, CFG, task=jnn.MLP(hidden=(16,)), callbacks=[jnn.Progress(bar=False)])
    text = repr(r)
    assert text.startswith("FitResult(") and text.endswith(")")
    assert len(text.splitlines()) <= MAX_LINES and len(text) < 1000  # the dataclass repr printed every array
    assert f"{r.stopped_by} after 3 epochs" in text
    n = sum(int(l.size) for l in __import__("jax").tree.leaves(r.params))
    assert f"{n:,} parameters (float32)" in text
    assert f"train_loss {r.history['train_loss'][-1]:.4g}" in text
    page = r._repr_html_()
    assert page.startswith("<div><b>FitResult</b>") and "parameters" in page and len(page) < 2000
    h = repr(r.history)
    assert h.startswith("History(") and "epochs: 3" in h and "val_loss" in h
    assert "no epoch" in repr(History.from_records({"train_loss": []}))


def test_a_sweep_result_shows_its_best_member_and_at_most_ten_rows(spirals):
    res = sweep(spirals, CFG, task=jnn.MLP(hidden=(8,)), seed=list(range(12)), callbacks=[jnn.Progress(bar=False)])
    text = repr(res)
    lines = text.splitlines()
    assert lines[0] == "SweepResult(" and lines[-1] == ")" and len(lines) <= MAX_LINES
    assert f"members: 12, workers={res.workers}" in text
    assert f"best: member {res.best()['member']} by val_loss (min)" in text
    assert f"... {12 - MAX_ROWS} more" in text
    assert sum(1 for line in lines if line.strip().startswith(tuple("0123456789"))) == MAX_ROWS
    page = res._repr_html_()
    assert page.count("<tr>") == MAX_ROWS + 1 and "<th>seed</th>" in page
