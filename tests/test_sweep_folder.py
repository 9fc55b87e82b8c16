"""A sweep folder is a run folder: one sweep per folder (lock), refusals of other sweeps, train runs and foreign
files, per-group checkpoints, and a resume that ends bit for bit like an uninterrupted sweep."""

import json

import jax
import numpy as np
import pytest

import jnn
from jnn import SweepFolder
from jnn.app import lock
from jnn.app.sweep_folder import SWEEP_RUN, group_path
from jnn.datasets import load
from jnn.sweep import sweep, zipped
from jnn.train import TrainConfig, fit

CFG = TrainConfig(max_epochs=6, batch_size=64, checkpoint_every=2, early_stopping=None)
AXES = zipped(hidden=[(8,), (16,), (8,)], seed=[0, 1, 2])  # two shape groups: members 0 and 2, member 1


@pytest.fixture(scope="module")
def spirals():
    return load("spirals", seed=0)[0]


@pytest.fixture(scope="module")
def uninterrupted(spirals):
    return sweep(spirals, CFG, **AXES)


class Boom(jnn.Callback):
    """Raises after ``member``'s epoch ``epoch`` (a crash in the middle of a shape group)."""

    def __init__(self, member, epoch):
        self.member, self.epoch = member, epoch

    def on_epoch_end(self, epoch, logs):
        if logs["member"] == self.member and epoch == self.epoch:
            raise RuntimeError("boom")


def _same(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_data_loss_a_crashed_sweep_resumes_bit_for_bit_from_its_group_checkpoints(spirals, uninterrupted, tmp_path):
    folder = tmp_path / "sw"
    with pytest.raises(RuntimeError, match="boom"):
        sweep(spirals, CFG, callbacks=[SweepFolder(folder), Boom(member=1, epoch=5)], **AXES)
    assert group_path(folder, 0).exists() and group_path(folder, 1).exists()  # group 1: its epoch-4 checkpoint
    assert not (folder / "sweep.json").exists()
    extras = jnn.checkpoint.read_extras(group_path(folder, 1))
    assert len(extras["history/0/train_loss"]) == 4
    res = sweep(spirals, CFG, callbacks=[SweepFolder(folder, resume=True)], **AXES)
    for i in range(3):
        assert _same(res.member_params(i), uninterrupted.member_params(i)), i
    assert [h.metrics for h in res.histories] == [h.metrics for h in uninterrupted.histories]
    assert res.rows == uninterrupted.rows
    model = jnn.load_run(folder, member=1)
    assert _same(model.params, uninterrupted.member_params(1))
    again = sweep(spirals, CFG, callbacks=[SweepFolder(folder, resume=True)], **AXES)  # finished: nothing to train
    assert again.rows == uninterrupted.rows and again.epoch_seconds == ()


def test_data_loss_a_sweep_folder_refuses_another_sweep_a_run_and_foreign_files(spirals, tmp_path):
    cfg = TrainConfig(max_epochs=1, batch_size=64, early_stopping=None)
    folder = tmp_path / "sw"
    sweep(spirals, cfg, callbacks=[SweepFolder(folder)], seed=[0, 1])
    record = json.loads((folder / SWEEP_RUN).read_text())
    assert record["axes"] == {"seed": [0, 1]} and record["config"]["max_epochs"] == 1
    before = (folder / "params.npz").read_bytes()
    with pytest.raises(ValueError, match="already holds a sweep; pass resume=True"):
        sweep(spirals, cfg, callbacks=[SweepFolder(folder)], seed=[0, 1])
    with pytest.raises(ValueError, match=r"is from another sweep; differences: axes: stored \{\"seed\": \[0, 1\]\}"):
        sweep(spirals, cfg, callbacks=[SweepFolder(folder, resume=True)], seed=[2, 3])
    assert (folder / "params.npz").read_bytes() == before  # nothing lost
    fresh = sweep(spirals, cfg, callbacks=[SweepFolder(folder, overwrite=True)], seed=[2, 3])
    assert json.loads((folder / "sweep.json").read_text())["rows"] == json.loads(json.dumps(fresh.rows))

    run = tmp_path / "run"
    fit(spirals, cfg, task=jnn.MLP(hidden=(4,)), callbacks=[jnn.RunFolder(run)])
    for kw in ({}, {"overwrite": True}, {"resume": True}):
        with pytest.raises(ValueError, match="holds a jnn train run"):
            sweep(spirals, cfg, callbacks=[SweepFolder(run, **kw)], seed=[0, 1])
    with pytest.raises(ValueError, match="not empty but holds no jnn run"):
        fit(spirals, cfg, callbacks=[jnn.RunFolder(folder)])  # and a run refuses the sweep's folder

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "sweep.csv").write_text("my own table\n")
    (mine / "notes.txt").write_text("keep me\n")
    with pytest.raises(ValueError, match=r"is not empty but holds no sweep of jnn \(files: notes.txt, sweep.csv\)"):
        sweep(spirals, cfg, callbacks=[SweepFolder(mine)], seed=[0, 1])
    assert (mine / "sweep.csv").read_text() == "my own table\n"
    sweep(spirals, cfg, callbacks=[SweepFolder(mine, overwrite=True)], seed=[0, 1])
    assert (mine / "notes.txt").read_text() == "keep me\n" and (mine / "sweep.csv").read_text().startswith("member")
    with pytest.raises(ValueError, match="not both"):
        SweepFolder(tmp_path / "x", resume=True, overwrite=True)


def test_data_loss_a_sweep_into_a_folder_in_use_is_refused_at_once(spirals, tmp_path):
    folder = tmp_path / "busy"
    folder.mkdir()
    held = lock.acquire(folder)
    try:
        with pytest.raises(lock.FolderInUse, match="is in use by process"):
            sweep(spirals, CFG, callbacks=[SweepFolder(folder)], seed=[0, 1])
    finally:
        held.release()
    assert sorted(p.name for p in folder.iterdir()) == [lock.LOCK_NAME]


def test_data_loss_the_cli_sweep_refuses_a_second_start_and_resumes(tmp_path, capsys):
    from jnn.app.cli import main

    out = tmp_path / "sw"
    argv = ["sweep", "--dataset", "spirals", "--hidden", "8", "--seeds", "0,1", "--max-epochs", "2", "--out", str(out)]
    assert main(argv) == 0
    first = json.loads((out / "sweep.json").read_text())["rows"]
    assert main(argv) == 2 and "already holds a sweep" in capsys.readouterr().err
    assert main(["sweep", "--out", str(out), "--resume"]) == 0  # config, axes and data from sweep_run.json
    assert json.loads((out / "sweep.json").read_text())["rows"] == first
    assert main([*argv, "--overwrite"]) == 0


def test_data_loss_sigterm_stops_a_sweep_of_several_shape_groups_cleanly_and_it_resumes(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "sw"
    cmd = [sys.executable, "-m", "jnn.app.cli", "sweep", "--dataset", "spirals", "--hiddens", "8;16", "--seeds", "0,1",
           "--max-epochs", "100000", "--no-early-stopping", "--checkpoint-every", "1", "--log-every", "1",
           "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "1"})  # fmt: skip
    for line in proc.stdout:
        if line.startswith("epoch"):
            break
    proc.send_signal(signal.SIGTERM)
    out_text, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Traceback" not in err, err[-2000:]
    assert "go on with: jnn sweep --out" in out_text
    assert (out / "sweep.json").exists() and (out / "checkpoints" / "group-000.npz").exists()


def test_data_loss_a_sweep_resumes_bit_for_bit_only_with_its_own_strategy(spirals, tmp_path):
    cfg, axes = (
        TrainConfig(max_epochs=6, batch_size=64, checkpoint_every=2, early_stopping=None),
        dict(seed=[0, 1, 2, 3]),
    )
    whole = sweep(spirals, cfg, strategy="programs", workers=2, **axes)
    folder = tmp_path / "sw"
    with pytest.raises(RuntimeError, match="boom"):
        sweep(spirals, cfg, workers=2, callbacks=[SweepFolder(folder), Boom(member=3, epoch=5)], **axes)
    stored = json.loads((folder / SWEEP_RUN).read_text())
    assert (stored["strategy"], stored["workers"], stored["devices"]) == ("programs", 2, ["cpu:0"])
    with pytest.raises(ValueError, match=r"was swept with strategy='programs', now strategy='stacked': .* pass "
                                         r"strategy='programs' \(--strategy programs\)"):  # fmt: skip
        sweep(spirals, cfg, strategy="stacked", callbacks=[SweepFolder(folder, resume=True)], **axes)
    # Each member runs its own program: another number of threads resumes to the same bits.
    res = sweep(spirals, cfg, workers=1, callbacks=[SweepFolder(folder, resume=True)], **axes)
    assert res.workers == 1 and _same(res.params, whole.params) and res.rows == whole.rows
    assert [h.metrics for h in res.histories] == [h.metrics for h in whole.histories]


def test_data_loss_a_sweep_folder_from_before_strategies_resumes_with_the_strategy_its_workers_meant(spirals, tmp_path):
    cfg, axes = TrainConfig(max_epochs=4, batch_size=64, early_stopping=None), dict(seed=[0, 1])
    for workers, strategy, other in ((1, "stacked", "programs"), (2, "programs", "stacked")):
        folder = tmp_path / f"w{workers}"
        with pytest.raises(RuntimeError, match="boom"):
            sweep(spirals, cfg, strategy=strategy, callbacks=[SweepFolder(folder), Boom(member=1, epoch=3)], **axes)
        record = json.loads((folder / SWEEP_RUN).read_text())
        for key in ("strategy", "devices"):  # what a folder written before strategies holds
            del record[key]
        (folder / SWEEP_RUN).write_text(json.dumps({**record, "workers": workers}))
        with pytest.raises(ValueError, match=f"was swept with strategy={strategy!r}, now strategy={other!r}"):
            sweep(spirals, cfg, strategy=other, callbacks=[SweepFolder(folder, resume=True)], **axes)
        res = sweep(spirals, cfg, strategy=strategy, callbacks=[SweepFolder(folder, resume=True)], **axes)
        whole = sweep(spirals, cfg, strategy=strategy, callbacks=[SweepFolder(tmp_path / f"whole{workers}")], **axes)
        assert _same(res.params, whole.params) and res.rows == whole.rows


def test_data_loss_a_threaded_sweep_resumes_bit_for_bit_after_members_stopped(spirals, tmp_path):
    # Members stop at different epochs (their learning rates); in threads a stopped member is no longer run, and a
    # crash after some stops resumes to the same bits.
    cfg = TrainConfig(max_epochs=40, batch_size=64, checkpoint_every=3, early_stopping=jnn.EarlyStopping(patience=2))
    axes = zipped(seed=[0, 1, 2, 3, 4], learning_rate=[0.5, 0.2, 0.05, 0.01, 0.002])
    plain = sweep(spirals, cfg, workers=2, **axes)
    stops = sorted(r["epochs"] for r in plain.rows)
    assert stops[0] < stops[-1] - 6  # staggered
    folder = tmp_path / "sw"
    crash_at = stops[1] + 4  # after two members stopped: the others were re-paired
    member = next(r["member"] for r in plain.rows if r["epochs"] > crash_at)
    with pytest.raises(RuntimeError, match="boom"):
        sweep(spirals, cfg, workers=2, callbacks=[SweepFolder(folder), Boom(member=member, epoch=crash_at)], **axes)
    res = sweep(spirals, cfg, workers=2, callbacks=[SweepFolder(folder, resume=True)], **axes)
    assert res.pack_sizes[-1] < 5  # after the resume only the members still running run
    assert _same(res.params, plain.params) and res.rows == plain.rows
    assert [h.metrics for h in res.histories] == [h.metrics for h in plain.histories]


@pytest.mark.parametrize(
    "other",
    [dict(config=dict(max_epochs=8)), dict(config=dict(learning_rate=0.3)), dict(axes=dict(seed=[5, 6, 7]))],
    ids=["epochs", "rate", "seeds"],
)
def test_silent_wrong_a_group_checkpoint_from_another_sweep_is_refused_naming_both_files(spirals, tmp_path, other):
    """Issue 37, finding 1: a group file copied from a sweep of other epochs, rates or seeds is not resumed."""
    import dataclasses
    import shutil

    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    sweep(spirals, CFG, callbacks=[SweepFolder(ours)], **AXES)
    cfg = dataclasses.replace(CFG, **other.get("config", {}))
    sweep(spirals, cfg, callbacks=[SweepFolder(theirs)], **{**AXES, **other.get("axes", {})})
    before = group_path(ours, 0).read_bytes()
    shutil.copyfile(group_path(theirs, 0), group_path(ours, 0))
    with pytest.raises(ValueError) as err:
        sweep(spirals, CFG, callbacks=[SweepFolder(ours, resume=True)], **AXES)
    text = str(err.value)
    assert str(group_path(ours, 0)) in text and str(ours / SWEEP_RUN) in text, text
    assert "sweep (a hash of the config, axes, models and data)" in text
    if "axes" in other:
        assert "members' axis values" in text
    group_path(ours, 0).write_bytes(before)  # its own file back: the refusal gave the lock back, changed nothing
    again = sweep(spirals, CFG, callbacks=[SweepFolder(ours, resume=True)], **AXES)
    assert again.epoch_seconds == ()  # finished: nothing to train


def test_silent_wrong_a_group_checkpoint_of_another_group_of_the_same_sweep_is_refused(spirals, tmp_path):
    import shutil

    ours = tmp_path / "ours"
    sweep(spirals, CFG, callbacks=[SweepFolder(ours)], **AXES)
    shutil.copyfile(group_path(ours, 1), group_path(ours, 0))
    with pytest.raises(ValueError, match=r"group index: 1 there, 0 in sweep_run.json.*members: \[1\] there, \[0, 2\]"):
        sweep(spirals, CFG, callbacks=[SweepFolder(ours, resume=True)], **AXES)


def test_silent_wrong_the_cli_refuses_a_copied_group_checkpoint_with_exit_2(tmp_path, capsys):
    import shutil

    from jnn.app.cli import main

    a, b = tmp_path / "a", tmp_path / "b"
    base = ["sweep", "--dataset", "spirals", "--hidden", "8", "--seeds", "0,1", "--max-epochs", "2"]
    assert main([*base, "--out", str(a)]) == 0
    assert main([*base, "--learning-rate", "0.3", "--out", str(b)]) == 0
    capsys.readouterr()
    shutil.copyfile(group_path(b, 0), group_path(a, 0))
    assert main(["sweep", "--out", str(a), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "group-000.npz" in err and "sweep_run.json" in err and "Traceback" not in err, err
