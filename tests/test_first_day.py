"""Small things a Keras or scikit-learn user meets on the first day: the study modules after ``import jnn``, a
summary that shows the test score first, a sweep's progress in a log file, a monitor name with a typo."""

import subprocess
import sys

import numpy as np
import pytest

import jnn


def test_jnn_sweep_is_reachable_after_a_plain_import_jnn():
    code = "import jnn; print(jnn.sweep.sweep.__name__, jnn.search.uniform.__name__, jnn.axes.grid.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["sweep", "uniform", "grid"]


def test_a_monitor_with_a_typo_names_the_recorded_metrics_first():
    with pytest.raises(ValueError) as err:
        jnn.EarlyStopping("val_acc")
    text = str(err.value)
    assert text.startswith("monitor 'val_acc' is not a metric jnn knows: did you mean 'val_accuracy'?")
    assert text.index("recorded metrics") < text.index("mode must be")


def _sweep(**kw):
    from jnn.sweep import sweep

    train, test = jnn.datasets.load("mnist1d")
    config = jnn.TrainConfig(max_epochs=3, batch_size=50, early_stopping=None)
    return sweep(train.subset(np.arange(400)), config, task=jnn.MLP(hidden=(8,)), test=test.subset(np.arange(200)),
                 keep_prob=[0.7, 0.9], seed=[0, 1], **kw)  # fmt: skip


def test_a_summary_shows_and_plots_the_test_score_first():
    from jnn.results import summarize

    s = summarize(_sweep(callbacks=[jnn.Progress(bar=False, log_every=0)]), by=["keep_prob"])  # 2 seeds each
    assert s.headline() == "test_accuracy" and s.ordered()[0] == "test_accuracy"
    header = repr(s).splitlines()[4]
    assert header.split()[:3] == ["keep_prob", "n", "test_accuracy_mean"]
    assert all(f"{m}_mean" in repr(s) for m in s.metrics)  # every metric when the table fits
    pytest.importorskip("matplotlib")
    assert s.plot().axes[0].get_ylabel() == "test_accuracy"


def test_a_sweep_not_on_a_terminal_prints_one_line_per_finished_member(capsys):
    _sweep(callbacks=[jnn.Progress(log_every=0)])  # the bar chosen automatically: none under pytest
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("member ")]
    assert len(lines) == 4 and lines[-1].endswith("4 of 4 finished")
    assert all("finished after 3 epochs (max_epochs)" in ln for ln in lines)
    _sweep(callbacks=[jnn.Progress(bar=False, log_every=0)])  # an explicit bar=False stays quiet
    assert "member " not in capsys.readouterr().out


def test_make_train_installs_what_training_needs_and_not_the_test_extra():
    from pathlib import Path

    make = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert "train: $(TRAIN_STAMP)" in make
    recipe = make[make.index("$(TRAIN_STAMP): pyproject.toml") :].split("\n\n")[0]
    assert '-e ".[mnist1d]"' in recipe and "test" not in recipe.replace("test -x", "")
