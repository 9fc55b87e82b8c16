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
    assert f"members: 12, programs, workers={res.workers}" in text
    assert f"best: member {res.best()['member']} by {res.best_rule()}: " in text
    assert f"... {12 - MAX_ROWS} more" in text
    assert sum(1 for line in lines if line.strip().startswith(tuple("0123456789"))) == MAX_ROWS
    page = res._repr_html_()
    assert page.count("<tr>") == MAX_ROWS + 1 and "<th>seed</th>" in page


def test_a_trained_model_shows_its_folder_loss_size_and_classes(spirals, tmp_path):
    fit(spirals, CFG, task=jnn.MLP(hidden=(16,)), callbacks=[jnn.RunFolder(tmp_path / "run"), jnn.Progress(bar=False)])
    text = repr(jnn.load_run(tmp_path / "run"))
    assert text.startswith("TrainedModel(") and f"run: {tmp_path / 'run'}" in text and "loss: softmax" in text
    assert "parameters (float32)" in text and len(text.splitlines()) <= MAX_LINES
    assert "<li>loss: softmax</li>" in jnn.load_run(tmp_path / "run")._repr_html_()


def test_a_long_gradient_report_keeps_its_verdict_within_twenty_lines():
    import jax.numpy as jnp

    tree = {f"w{i:02d}": jnp.linspace(-1.0, 1.0, 3) + i for i in range(30)}
    report = jnn.check_grads(lambda t: sum(jnp.sum(jnp.sin(v)) for v in t.values()), tree)
    full, short = str(report).splitlines(), repr(report).splitlines()
    assert len(full) > MAX_LINES and len(short) == MAX_LINES
    assert short[-1] == full[-1] and short[-1].startswith("PASSED")
    assert f"... {len(full) - MAX_LINES + 1} more lines (print(report))" == short[-2]
    assert report._repr_html_().startswith("<pre>check_grads:")
