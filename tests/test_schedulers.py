"""Successive halving with ASHA's asynchronous rule (issue 38): rung decisions against a hand computation on a
table of metrics, and a sweep whose weak members it stops, recorded as stopped by the scheduler."""

import math

import jax
import numpy as np
import pytest

import jnn
from jnn.datasets import load
from jnn.sweep import SuccessiveHalving, sweep
from jnn.train import TrainConfig
from jnn.train.callbacks import RunInfo


def _begin(s: SuccessiveHalving, max_epochs: int, keys=("train_loss", "val_loss", "val_accuracy")):
    s.on_train_begin(RunInfo(None, tuple(keys), 4, 0, max_epochs, {}))


def test_rung_decisions_follow_the_hand_computed_rule():
    s = SuccessiveHalving("val_loss", "min", min_epochs=1, reduction_factor=2)
    _begin(s, 8)
    assert s.rungs == (1, 2, 4)
    # epoch 1, members in order: cutoffs are the median (1/η = 50th percentile) of the values before each
    table = {0: 0.5, 1: 0.4, 2: 0.6, 3: 0.3}
    got = [s.on_epoch_end(1, {"member": m, "val_loss": v}) for m, v in table.items()]
    # member 0: first at the rung, goes on; 1: 0.4 ≤ median(0.5) = 0.5; 2: 0.6 > median(0.5, 0.4) = 0.45;
    # 3: 0.3 ≤ median(0.5, 0.4, 0.6) = 0.5
    assert got == [False, False, True, False]
    assert [d["cutoff"] for d in s.decisions] == [None, 0.5, 0.45, 0.5]
    assert s.on_epoch_end(3, {"member": 0, "val_loss": 9.0}) is False  # not a rung
    # epoch 2 (the members still running): 0 first; 1: 0.35 ≤ 0.45; 3: 0.4 = median(0.45, 0.35) goes on (a tie is
    # not worse); at epoch 4: 0: first; 1: 0.5 > 0.3 stops
    got = [s.on_epoch_end(2, {"member": m, "val_loss": v}) for m, v in {0: 0.45, 1: 0.35, 3: 0.4}.items()]
    assert got == [False, False, False] and s.decisions[-1]["cutoff"] == pytest.approx(0.4)
    got = [s.on_epoch_end(4, {"member": m, "val_loss": v}) for m, v in {0: 0.3, 1: 0.5}.items()]
    assert got == [False, True] and s.decisions[-1]["cutoff"] == 0.3


def test_max_mode_and_nan_values():
    s = SuccessiveHalving("val_accuracy", "max", min_epochs=2, reduction_factor=3)
    _begin(s, 20)
    assert s.rungs == (2, 6, 18)
    values = [0.6, 0.9, 0.7, float("nan"), 0.8]
    got = [s.on_epoch_end(2, {"member": m, "val_accuracy": v}) for m, v in enumerate(values)]
    # cutoffs: the (1 − 1/3) = 66.7th percentile of the earlier values (NaN left out); a NaN value stops
    three = np.percentile([0.6, 0.9, 0.7], 100 * 2 / 3)
    cut = [None, 0.6, np.percentile([0.6, 0.9], 100 * 2 / 3), three, three]
    for d, c in zip(s.decisions, cut):
        assert (d["cutoff"] is None and c is None) or d["cutoff"] == pytest.approx(c)
    assert got == [False, False, True, True, False]


@pytest.mark.parametrize(
    "kw, error, match",
    [
        (dict(mode="low"), ValueError, "mode must be 'min' or 'max'"),
        (dict(min_epochs=0), ValueError, r"min_epochs must be an integer in \[1, 2147483647\]"),
        (dict(reduction_factor=1), ValueError, r"reduction_factor must be an integer in \[2, 2147483647\]"),
        (dict(reduction_factor=2.5), TypeError, "reduction_factor must be an integer"),
        (dict(metric=""), TypeError, "metric must be a history key"),
    ],
)
def test_bad_arguments_are_named(kw, error, match):
    with pytest.raises(error, match=match):
        SuccessiveHalving(**kw)


def test_a_metric_the_run_does_not_record_is_refused_when_training_begins():
    s = SuccessiveHalving("val_f1")
    with pytest.raises(ValueError, match="metric 'val_f1' is not recorded by this run"):
        _begin(s, 10)


def test_a_sweep_stops_its_weak_members_at_rungs_recorded_as_stopped_by_the_scheduler(tmp_path):
    train, _ = load("spirals", seed=0)
    cfg = TrainConfig(max_epochs=9, batch_size=64, early_stopping=None)
    asha = SuccessiveHalving("val_loss", "min", min_epochs=1, reduction_factor=3)
    rates = [1e-4, 0.3, 3e-4, 0.1, 1e-3, 0.05]
    res = sweep(train, cfg, task=jnn.MLP(hidden=(16,)), learning_rate=rates, seed=list(range(6)), combine="zip",
                callbacks=[asha, jnn.SweepFolder(tmp_path / "sw")])  # fmt: skip
    assert asha.rungs == (1, 3)
    stopped = {d["member"]: d["epoch"] for d in asha.decisions if d["stopped"]}
    assert stopped, asha.decisions  # some member fell behind
    for row in res.rows:
        m = row["member"]
        if m in stopped:
            assert row["stopped_by"] == "scheduler" and row["epochs"] == stopped[m]
        else:
            assert row["stopped_by"] == "max_epochs" and row["epochs"] == 9
    # each decision is the rule applied to the values recorded before it at its rung (the record is the proof)
    for rung in asha.rungs:
        at = [d for d in asha.decisions if d["epoch"] == rung]
        for k, d in enumerate(at):
            cut = asha.cutoff([e["value"] for e in at[:k]])
            assert d["cutoff"] == cut and d["stopped"] == (cut is not None and d["value"] > cut)
            assert res.histories[d["member"]]["val_loss"][rung - 1] == d["value"]
    import json

    rows = json.loads((tmp_path / "sw" / "sweep.json").read_text())["rows"]
    assert [r["stopped_by"] for r in rows] == [r["stopped_by"] for r in res.rows]
    assert not any(math.isnan(v) for h in res.histories for v in h["val_loss"])


def test_data_loss_a_crashed_sweep_with_a_scheduler_resumes_to_the_same_decisions_and_bits(tmp_path):
    train, _ = load("spirals", seed=0)
    cfg = TrainConfig(max_epochs=9, batch_size=64, early_stopping=None, checkpoint_every=2, epochs_per_call=2)
    axes = dict(learning_rate=[1e-4, 0.3, 3e-4, 0.1, 1e-3, 0.05, 3e-3, 0.02], seed=list(range(8)), combine="zip")
    asha = lambda: SuccessiveHalving("val_loss", "min", min_epochs=1, reduction_factor=2)  # noqa: E731
    whole_asha = asha()
    whole = sweep(train, cfg, task=jnn.MLP(hidden=(16,)), callbacks=[whole_asha], **axes)
    assert any(d["stopped"] and d["epoch"] == 2 for d in whole_asha.decisions)  # decisions before the crash

    class Boom(jnn.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 5 and logs["member"] == 1:
                raise RuntimeError("boom")

    folder = tmp_path / "sw"
    with pytest.raises(RuntimeError, match="boom"):
        sweep(train, cfg, task=jnn.MLP(hidden=(16,)), callbacks=[asha(), jnn.SweepFolder(folder), Boom()], **axes)
    with pytest.raises(ValueError, match=r"kept with 1 scheduler state\(s\) \(SuccessiveHalving\('val_loss', 'min', "
                                         r"min_epochs=1, reduction_factor=2\) \(jnn sweep --scheduler asha "
                                         r"--rung-epochs 1 --reduction-factor 2\)\), and this sweep's stateful "
                                         r"callbacks are none"):  # fmt: skip
        sweep(train, cfg, task=jnn.MLP(hidden=(16,)), callbacks=[jnn.SweepFolder(folder, resume=True)], **axes)
    again_asha = asha()
    again = sweep(train, cfg, task=jnn.MLP(hidden=(16,)), callbacks=[again_asha, jnn.SweepFolder(folder, resume=True)],
                  **axes)  # fmt: skip
    assert again_asha.decisions == whole_asha.decisions
    assert again.rows == whole.rows
    for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(whole.params)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
