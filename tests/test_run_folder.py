"""The run folder as a job uses it: continuing a finished run with a larger budget, live history files,
summary and model written by ``fit`` itself, TensorBoard events."""

import csv
import json
import math
import struct

import jax
import numpy as np
import pytest

import jnn
from jnn import RunFolder
from jnn.app import checkpoint as ckpt
from jnn.app import live_history as records_module
from jnn.datasets import load
from jnn.train import EarlyStopping, TrainConfig, fit

NET = jnn.MLP(hidden=(16,), keep_prob=0.7)
CFG = dict(batch_size=32, learning_rate=0.05, early_stopping=None)


def _bits(tree):
    raw = lambda l: jax.random.key_data(l) if jax.dtypes.issubdtype(l.dtype, jax.dtypes.prng_key) else l
    return [np.asarray(raw(l)).tobytes() for l in jax.tree.leaves(tree)]


@pytest.fixture(scope="module")
def spirals():
    return load("spirals", seed=0)[0]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_a_finished_run_continues_with_a_larger_budget_bitwise(tmp_path, spirals, mode):
    cfg = lambda n: TrainConfig(**CFG, max_epochs=n)
    net = jnn.MLP(hidden=(16,), keep_prob=0.7, dropout_mode=mode)
    first = fit(spirals, cfg(6), callbacks=[RunFolder(tmp_path / "run")], task=net)
    assert first.stopped_by == "max_epochs" and len(first.history) == 6
    more = fit(spirals, cfg(12), callbacks=[RunFolder(tmp_path / "run", resume=True)], task=net)
    whole = fit(spirals, cfg(12), task=net)
    assert more.stopped_by == "max_epochs" and int(more.state.step) == int(whole.state.step)
    assert more.history.metrics == whole.history.metrics  # 6 + 6 epochs == 12 epochs, every value
    assert _bits(more.state) == _bits(whole.state)
    stored = json.loads((tmp_path / "run" / "config.json").read_text())
    assert stored["resumed_with_changes"] == [{"max_epochs": {"was": 6, "now": 12}}]
    # A budget that is not larger leaves the finished run as it was.
    again = fit(spirals, cfg(12), callbacks=[RunFolder(tmp_path / "run", resume=True)], task=net)
    assert again.history.metrics == whole.history.metrics and again.epoch_seconds == ()


@pytest.mark.parametrize("per_call", [1, 2])
def test_history_csv_grows_every_call_and_the_json_is_complete_at_the_end(tmp_path, spirals, monkeypatch, per_call):
    seen = []
    real = records_module.LiveRecords.update

    def spy(self):
        real(self)
        with open(tmp_path / "run" / "history.csv") as fh:
            seen.append(len(list(csv.reader(fh))) - 1)

    monkeypatch.setattr(records_module.LiveRecords, "update", spy)
    r = fit(
        spirals,
        TrainConfig(**CFG, max_epochs=5, epochs_per_call=per_call),
        callbacks=[RunFolder(tmp_path / "run")],
        task=NET,
    )
    # the rows of every call on disk as soon as it returns, before the run ends
    assert seen == ([1, 2, 3, 4, 5] if per_call == 1 else [2, 4, 5]) + [5]  # and once more at the end
    with open(tmp_path / "run" / "history.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [float(row["train_loss"]) for row in rows] == r.history["train_loss"]
    assert json.loads((tmp_path / "run" / "history.json").read_text())["train_loss"] == r.history["train_loss"]


def test_fit_writes_summary_model_and_curves(tmp_path, spirals):
    r = fit(
        spirals,
        TrainConfig(**{**CFG, "early_stopping": EarlyStopping(patience=2)}, max_epochs=30),
        callbacks=[RunFolder(tmp_path)],
        task=NET,
    )
    s = json.loads((tmp_path / "summary.json").read_text())
    assert s["stopped_by"] == r.stopped_by and s["epochs"] == len(r.history) and s["best_epoch"] == r.best_epoch + 1
    assert s["last"]["val_loss"] == r.history["val_loss"][-1] and s["monitor"] == "val_loss"
    assert (tmp_path / "curves.png").stat().st_size > 1000
    params = ckpt.restore(tmp_path / "model.npz", r.params)
    assert _bits(params) == _bits(r.params)  # the best epoch's params, as returned


def test_the_checkpoint_carries_the_history(tmp_path, spirals):
    r = fit(spirals, TrainConfig(**CFG, max_epochs=3), callbacks=[RunFolder(tmp_path)], task=NET)
    extras = ckpt.read_extras(tmp_path / "checkpoint.npz")
    assert list(extras["history/train_loss"]) == r.history["train_loss"]
    ckpt.verify(tmp_path / "checkpoint.npz")  # the extras are checksummed too


def _tfrecords(path):
    """Records of a TFRecord file: length (u64), its crc, the bytes, their crc."""
    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        out.append(data[i + 12 : i + 12 + n])
        i += 12 + n + 4
    return out


def test_tensorboard_events_read_back(tmp_path, spirals):
    pytest.importorskip("tensorboardX")
    from tensorboardX.proto import event_pb2

    r = fit(spirals, TrainConfig(**CFG, max_epochs=3), callbacks=[RunFolder(tmp_path, tensorboard=True)], task=NET)
    files = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    scalars = {}
    for raw in _tfrecords(files[0]):
        ev = event_pb2.Event.FromString(raw)
        for v in ev.summary.value:
            scalars.setdefault(v.tag, []).append((ev.step, v.simple_value))
    assert [s for s, _ in scalars["train_loss"]] == [1, 2, 3]
    np.testing.assert_allclose([v for _, v in scalars["val_accuracy"]], r.history["val_accuracy"], rtol=1e-6)
    assert not any(math.isnan(v) for _, v in scalars["learning_rate"])


def test_tensorboard_without_tensorboardx_is_refused_before_anything_is_written(tmp_path, spirals, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_tbx(name, *a, **k):
        if name.startswith("tensorboardX"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_tbx)
    with pytest.raises(ImportError, match=r"pip install 'jnn\[tensorboard\]'"):
        fit(
            spirals,
            TrainConfig(**CFG, max_epochs=2),
            callbacks=[RunFolder(tmp_path / "run", tensorboard=True)],
            task=NET,
        )
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_interrupted_is_a_keyboard_interrupt_with_the_result():
    assert issubclass(jnn.train.Interrupted, KeyboardInterrupt)


@pytest.mark.parametrize("schedule, warmup", [("cosine", 0), ("warmup-cosine", 2)])
def test_the_learning_rate_column_follows_the_schedule(spirals, schedule, warmup):
    import optax

    cfg = TrainConfig(**CFG, optimizer="adamw", weight_decay=1e-3, lr_schedule=schedule,
                      warmup_epochs=warmup, max_epochs=6)  # fmt: skip
    r = fit(spirals, cfg, task=jnn.MLP(hidden=(16,), keep_prob=1.0))
    spe = cfg.steps_per_epoch(len(spirals) - round(cfg.val_fraction * len(spirals)))
    total = 6 * spe
    sched = (optax.cosine_decay_schedule(0.05, total) if schedule == "cosine" else
             optax.warmup_cosine_decay_schedule(0.0, 0.05, warmup * spe, total))  # fmt: skip
    # The rate recorded for epoch e is the one its last step used (step count (e + 1) · spe − 1).
    with jax.numpy_dtype_promotion("standard"):  # optax's own schedules mix int and float
        want = [float(sched((e + 1) * spe - 1)) for e in range(6)]
    np.testing.assert_allclose(r.history["learning_rate"], want, rtol=1e-5)
    assert r.history["learning_rate"][-1] < 0.05 * 0.1 and r.history["train_loss"][-1] < r.history["train_loss"][0]


def test_a_schedule_refuses_a_longer_resume(tmp_path, spirals):
    cfg = lambda n: TrainConfig(**CFG, lr_schedule="cosine", max_epochs=n)
    fit(spirals, cfg(3), callbacks=[RunFolder(tmp_path)], task=NET)
    with pytest.raises(ValueError, match="lr_schedule='cosine' spans the run's max_epochs"):
        fit(spirals, cfg(6), callbacks=[RunFolder(tmp_path, resume=True)], task=NET)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_load_run_predicts_what_evaluate_scores_in_both_dropout_modes(tmp_path, mode):
    train, test = load("mnist1d")
    cfg, net = TrainConfig(max_epochs=3), jnn.MLP(hidden=(64,), keep_prob=0.5, dropout_mode=mode)
    r = fit(train, cfg, callbacks=[RunFolder(tmp_path)], task=net)
    model = jnn.load_run(tmp_path)
    assert _bits(model.params) == _bits(r.params)
    acc = float(np.mean(model.predict(test.x) == test.y))
    assert acc == pytest.approx(jnn.evaluate(r.params, test, net)["accuracy"], abs=1e-6)
    assert model.evaluate(test) == jnn.evaluate(r.params, test, net)
    proba = model.predict_proba(test.x)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    if mode == "classic":  # the plain forward pass (no expected weights) scores differently: the trap load_run avoids
        with pytest.warns(jnn.model.ClassicDropoutWarning, match="trained with classic dropout"):
            plain = np.argmax(np.asarray(jnn.forward(r.params, test.x, activation=net.activation)), axis=1)
        assert not np.array_equal(plain, model.predict(test.x))


def test_load_run_of_a_custom_task_needs_the_task(tmp_path):
    import jax.numpy as jnp

    train, _ = load("spirals")

    def init(key):
        return {"w": jax.random.normal(key, (2, 3)) * 0.1, "b": jnp.zeros(3)}

    task = jnn.Task(init=init, apply=lambda p, x, *, key, train, hyper: x @ p["w"] + p["b"][None, :])
    r = fit(train, TrainConfig(max_epochs=2), task=task, callbacks=[RunFolder(tmp_path)])
    with pytest.raises(ValueError, match=r"pass it: load_run\(run_dir, task=task\)"):
        jnn.load_run(tmp_path)
    model = jnn.load_run(tmp_path, task=task)
    assert _bits(model.params) == _bits(r.params) and model.predict(train.x).shape == (len(train),)


def test_load_run_refuses_an_unfinished_or_foreign_folder(tmp_path):
    with pytest.raises(ValueError, match="holds no run"):
        jnn.load_run(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"config": {}}))
    with pytest.raises(ValueError, match="has no model.npz: the run has not finished"):
        jnn.load_run(tmp_path)


def test_an_interrupted_sweep_saves_its_partial_table(tmp_path, monkeypatch, capsys):
    import signal

    from jnn.app import cli
    from jnn.train import host_loop as host

    calls = []
    monkeypatch.setattr(host, "_agreed", lambda s: calls.append(1) or (signal.SIGINT if len(calls) == 2 else None))
    code = cli.main(["sweep", "--dataset", "xor", "--hidden", "4", "--loss", "binary", "--seeds", "0,1",
                     "--max-epochs", "50", "--no-early-stopping", "--out", str(tmp_path)])  # fmt: skip
    assert code == 130
    assert "interrupted after 2 sweep epochs; partial results in" in capsys.readouterr().out
    with open(tmp_path / "sweep.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["stopped_by"] for r in rows] == ["interrupted", "interrupted"] and rows[0]["epochs"] == "2"
    assert jnn.load_run(tmp_path, member=1).predict(np.zeros((3, 2), np.float32)).shape == (3,)
