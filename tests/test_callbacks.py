"""Callbacks: hook order, logs equal to the history, a stop after exactly epoch e, periodic state, sweeps."""

import csv

import jax
import numpy as np
import pytest

import jnn
from jnn import RunFolder
from jnn.datasets import load
from jnn.sweep import sweep, zipped
from jnn.train import EarlyStopping, TrainConfig, fit

NET = jnn.MLP(hidden=(16,))
CFG = dict(batch_size=64, max_epochs=6, early_stopping=EarlyStopping(patience=50), learning_rate=0.05)


@pytest.fixture(scope="module")
def spirals():
    return load("spirals", seed=0)


class Recorder(jnn.Callback):
    """Records every hook call; stops after epoch ``stop_at`` (of member ``member`` in a sweep)."""

    def __init__(self, stop_at=None, member=None, every=0):
        self.events, self.stop_at, self.member, self.every = [], stop_at, member, every
        self.states = []

    def on_train_begin(self, run):
        self.events.append(("begin", run.members, run.initial_epoch, run.keys))

    def on_epoch_end(self, epoch, logs):
        self.events.append(("epoch", epoch, logs))
        mine = self.member is None or logs.get("member") == self.member
        return self.stop_at is not None and mine and epoch == self.stop_at

    def on_state(self, epoch, state):
        self.states.append((epoch, int(np.max(np.asarray(state.epoch)))))

    def on_train_end(self, result):
        self.events.append(("end", result.stopped_by if hasattr(result, "stopped_by") else None))

    def on_train_abort(self, error):
        self.events.append(("abort", type(error).__name__))


def _same_bits(a, b):
    def bits(x):
        return np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)

    return all(np.array_equal(bits(x), bits(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_hooks_run_in_order_and_the_logs_are_the_history_rows(spirals):
    train, _ = spirals
    rec = Recorder()
    r = fit(train, TrainConfig(**CFG), callbacks=[rec], task=NET)
    kinds = [e[0] for e in rec.events]
    assert kinds == ["begin"] + ["epoch"] * 6 + ["end"]
    begin = rec.events[0]
    assert begin[1] == 1 and begin[2] == 0 and begin[3] == tuple(r.history.keys)
    for epoch, (_, e, logs) in enumerate(rec.events[1:-1], start=1):
        assert e == epoch and "member" not in logs
        for k, v in logs.items():
            assert v == r.history[k][epoch - 1] or (np.isnan(v) and np.isnan(r.history[k][epoch - 1]))
    assert rec.events[-1] == ("end", "max_epochs")


@pytest.mark.parametrize("stop_at", [1, 3, 6])
def test_a_stop_after_epoch_e_equals_a_run_of_e_epochs_bit_for_bit(spirals, stop_at):
    train, _ = spirals
    rec = Recorder(stop_at=stop_at)
    r = fit(train, TrainConfig(**CFG), callbacks=[rec], task=NET)
    plain = fit(train, TrainConfig(**{**CFG, "max_epochs": stop_at}), task=NET)
    assert int(r.state.epoch) == stop_at and len(r.history) == stop_at
    assert r.stopped_by == ("callback" if stop_at < 6 else "max_epochs")
    assert _same_bits(r.state.params, plain.state.params) and _same_bits(r.params, plain.params)
    assert int(r.state.step) == int(plain.state.step)
    assert r.history.keys == plain.history.keys
    for k in r.history.keys:
        np.testing.assert_array_equal(r.history[k], plain.history[k])
    if stop_at < 6:
        assert "a callback asked" in r.message


def test_every_k_hands_over_the_state_and_changes_no_bit(spirals):
    train, _ = spirals
    rec = Recorder(every=2)
    r = fit(train, TrainConfig(**{**CFG, "max_epochs": 7}), callbacks=[rec], task=NET)
    plain = fit(train, TrainConfig(**{**CFG, "max_epochs": 7}), task=NET)
    assert rec.states == [(2, 2), (4, 4), (6, 6)]
    assert _same_bits(r.state.params, plain.state.params)
    assert r.history["train_loss"] == plain.history["train_loss"]


def test_a_raising_callback_aborts_the_run_and_every_callback_hears_of_it(spirals):
    train, _ = spirals

    class Boom(jnn.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                raise RuntimeError("boom")

    rec = Recorder()
    with pytest.raises(RuntimeError, match="boom"):
        fit(train, TrainConfig(**CFG), callbacks=[rec, Boom()], task=NET)
    assert rec.events[-1] == ("abort", "RuntimeError")
    assert [e[0] for e in rec.events].count("end") == 0


def test_bad_callbacks_are_refused_before_training(spirals):
    train, _ = spirals
    with pytest.raises(TypeError, match="callbacks must be a list"):
        fit(train, TrainConfig(**CFG), callbacks=Recorder(), task=NET)
    with pytest.raises(TypeError, match=r"callbacks\[0\] must be a jnn.Callback"):
        fit(train, TrainConfig(**CFG), callbacks=[object()], task=NET)
    with pytest.raises(ValueError, match=r"callbacks\[0\].every"):
        fit(train, TrainConfig(**CFG), callbacks=[Recorder(every=-1)], task=NET)


def test_a_sweep_member_stops_alone_and_the_others_are_unchanged(spirals):
    train, _ = spirals
    cfg = TrainConfig(**CFG)
    axes = zipped(seed=[0, 1, 2], learning_rate=[0.05, 0.1, 0.02])
    rec = Recorder(stop_at=2, member=1)
    res = sweep(train, cfg, callbacks=[rec], **axes, task=NET)
    plain = sweep(train, cfg, **axes, task=NET)
    assert [row["epochs"] for row in res.rows] == [6, 2, 6]
    assert [row["stopped_by"] for row in res.rows] == ["max_epochs", "callback", "max_epochs"]
    for i in (0, 2):
        assert _same_bits(res.member_params(i), plain.member_params(i))
    # The stopped member's params are those of a 2-epoch sweep member (bit for bit).
    short = sweep(train, TrainConfig(**{**CFG, "max_epochs": 2}), **axes, task=NET)
    assert _same_bits(res.member_params(1), short.member_params(1))
    seen = sorted({(e[2]["member"], e[1]) for e in rec.events if e[0] == "epoch"})
    assert seen == sorted([(0, e) for e in range(1, 7)] + [(1, 1), (1, 2)] + [(2, e) for e in range(1, 7)])
    assert rec.events[0][1] == 3


def test_csv_logger_writes_the_history(spirals, tmp_path):
    train, _ = spirals
    path = tmp_path / "log.csv"
    r = fit(train, TrainConfig(**CFG), callbacks=[jnn.CSVLogger(path)], task=NET)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", *r.history.keys]
    assert [int(row["epoch"]) for row in rows] == list(range(1, 7))
    np.testing.assert_array_equal([float(row["train_loss"]) for row in rows], r.history["train_loss"])
    # append=True to a file with the same columns adds rows; other columns are refused.
    fit(train, TrainConfig(**{**CFG, "max_epochs": 2}), callbacks=[jnn.CSVLogger(path, append=True)], task=NET)
    with open(path, newline="") as fh:
        assert len(list(csv.DictReader(fh))) == 8
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="has the columns"):
        fit(train, TrainConfig(**CFG), callbacks=[jnn.CSVLogger(path, append=True)], task=NET)
    assert path.read_text() == "a,b\n1,2\n"  # nothing lost


def test_csv_logger_in_a_sweep_has_a_member_column(spirals, tmp_path):
    train, _ = spirals
    path = tmp_path / "sweep.csv"
    res = sweep(train, TrainConfig(**{**CFG, "max_epochs": 3}), callbacks=[jnn.CSVLogger(path)], seed=[0, 1], task=NET)
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6 and rows[0]["member"] in ("0", "1")
    for m in (0, 1):
        mine = [float(r["train_loss"]) for r in rows if r["member"] == str(m)]
        np.testing.assert_array_equal(mine, res.histories[m]["train_loss"])


def test_mlflow_logger_round_trips_through_a_local_store(spirals, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for this before a local file store
    from mlflow.tracking import MlflowClient

    train, _ = spirals
    uri = (tmp_path / "mlruns").as_uri()
    logger = jnn.MLflowLogger("jnn-test", run_name="one", tracking_uri=uri)
    r = fit(train, TrainConfig(**CFG), callbacks=[logger], task=NET)
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(logger.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["jnn.stopped_by"] == "max_epochs"
    assert run.data.params["learning_rate"] == "0.05"
    hist = client.get_metric_history(logger.run_id, "train_loss")
    assert [m.step for m in sorted(hist, key=lambda m: m.step)] == list(range(1, 7))
    np.testing.assert_allclose([m.value for m in sorted(hist, key=lambda m: m.step)], r.history["train_loss"])

    sw = jnn.MLflowLogger("jnn-test", run_name="sweep", tracking_uri=uri)
    res = sweep(train, TrainConfig(**{**CFG, "max_epochs": 3}), callbacks=[sw], seed=[0, 1], task=NET)
    assert len(sw.member_run_ids) == 2
    for m, rid in sw.member_run_ids.items():
        child = client.get_run(rid)
        assert child.data.tags["mlflow.parentRunId"] == sw.run_id
        vals = [x.value for x in sorted(client.get_metric_history(rid, "train_loss"), key=lambda x: x.step)]
        np.testing.assert_allclose(vals, res.histories[m]["train_loss"])


class CallEnds(jnn.Callback):
    """Records the call boundaries; never asks for a stop."""

    stops = False

    def __init__(self):
        self.ends = []

    def on_epoch_end(self, epoch, logs):
        self.ends.append(("epoch", epoch))

    def on_call_end(self, epoch, state):
        self.ends.append(("call", epoch, int(state.epoch)))


def test_on_call_end_follows_every_compiled_call_and_a_non_stopping_callback_changes_no_bit(spirals, tmp_path):
    train, _ = spirals
    cfg = TrainConfig(**{**CFG, "max_epochs": 7, "early_stopping": None, "epochs_per_call": 3})
    plain = fit(train, cfg, task=NET)
    cb = CallEnds()
    seen = fit(train, cfg, callbacks=[RunFolder(tmp_path / "run"), cb], task=NET)
    calls = [e for e in cb.ends if e[0] == "call"]
    assert calls == [("call", 3, 3), ("call", 6, 6), ("call", 7, 7)]  # calls of 3, 3 and 1 epochs
    assert [e[1] for e in cb.ends if e[0] == "epoch"] == list(range(1, 8))
    assert cb.ends.index(("call", 3, 3)) == 3  # after the call's three epochs, before the next call's
    assert _same_bits(plain.state, seen.state)
    # The run folder is such a callback: its checkpoint holds the final state.
    saved = jnn.checkpoint.restore(tmp_path / "run" / "checkpoint.npz", plain.state)
    assert _same_bits(saved, seen.state)


def test_the_run_folder_runs_first_wherever_it_is_listed_and_at_most_one_is_taken(spirals, tmp_path):
    train, _ = spirals
    seen = []

    class AtEnd(jnn.Callback):
        def on_train_end(self, result):  # the folder's on_train_end has written the model already
            seen.append(sorted(p.name for p in (tmp_path / "run").iterdir() if p.suffix == ".npz"))

    r = fit(train, TrainConfig(**CFG), callbacks=[AtEnd(), RunFolder(tmp_path / "run")], task=NET)
    assert seen == [["checkpoint.npz", "model.npz"]] and r.run_dir == tmp_path / "run"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(
        ValueError,
        match=r"at most one run folder \(jnn.RunFolder or another jnn.RunStore\); got one at each of \[0, 2\]",
    ):
        fit(
            train,
            TrainConfig(**CFG),
            callbacks=[RunFolder(tmp_path / "a"), AtEnd(), RunFolder(tmp_path / "b")],
            task=NET,
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # refused before any folder was made


def test_progress_prints_every_k_epochs_and_the_last_and_bar_false_prints_nothing(spirals, capsys):
    train, _ = spirals
    plain = fit(train, TrainConfig(**CFG), callbacks=[jnn.Progress(bar=False)], task=NET)
    assert capsys.readouterr().out == ""
    shown = fit(
        train, TrainConfig(**{**CFG, "max_epochs": 5}), callbacks=[jnn.Progress(bar=False, log_every=2)], task=NET
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:2] for line in lines] == [["epoch", "2"], ["epoch", "4"], ["epoch", "5"]]
    loss = f"train_loss {shown.history['train_loss'][1]:.4f}"
    assert loss in lines[0]  # the line is that epoch's history row
    assert np.array_equal(plain.history["train_loss"][:5], shown.history["train_loss"])  # the display changes no bit


def test_a_sweep_shows_one_progress_per_shape_group_and_takes_at_most_one(spirals, capsys):
    train, _ = spirals
    cfg = TrainConfig(**{**CFG, "max_epochs": 4})
    axes = zipped(hidden=[(8,), (4,), (8,), (4,)], seed=[0, 1, 2, 3])
    sweep(train, cfg, **axes, callbacks=[jnn.Progress(bar=False, log_every=2)], task=NET)
    lines = capsys.readouterr().out.splitlines()
    assert lines == [
        "shape group 1/2: hidden 8, batch 64 (2 members)",
        "epoch    2  members running 2/2",
        "epoch    4  members running 0/2",
        "shape group 2/2: hidden 4, batch 64 (2 members)",
        "epoch    2  members running 2/2",
        "epoch    4  members running 0/2",
    ]
    with pytest.raises(ValueError, match=r"at most one jnn.Progress; got one at each of \[0, 1\]"):
        sweep(train, cfg, seed=[0, 1], callbacks=[jnn.Progress(), jnn.Progress()], task=NET)
