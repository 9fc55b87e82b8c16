"""Run folders never lose data: one run at a time (a lock), no write through a symbolic link, no takeover
of a folder jnn did not write, malformed config.json answered with a named error."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import jnn
from jnn import RunFolder
from jnn.app import atomic, lock
from jnn.app import checkpoint as ckpt
from jnn.app.run_dir import RUN_FILES
from jnn.datasets import load
from jnn.train import TrainConfig, fit

NET = jnn.MLP(hidden=(8,))
CFG = TrainConfig(batch_size=32, learning_rate=0.05, max_epochs=2, early_stopping=None)


@pytest.fixture(scope="module")
def xor():
    return load("xor", seed=0)[0]


def _snapshot(folder):
    return {p.name: (p.is_symlink(), p.read_bytes() if p.is_file() and not p.is_symlink() else None)
            for p in sorted(folder.iterdir())}  # fmt: skip


def test_concurrent_runs_a_second_start_is_refused_without_touching_the_folder(tmp_path, xor):
    run = tmp_path / "run"
    fit(xor, CFG, callbacks=[RunFolder(run)], task=NET)
    live_temp = run / f"{atomic.TEMP_PREFIX}12345-abcd-checkpoint.npz"
    live_temp.write_bytes(b"a live save of the first run")
    before = _snapshot(run)
    with lock.acquire(run):  # the first run holds the folder
        for kw in ({"resume": True}, {"overwrite": True}, {}):
            with pytest.raises(lock.FolderInUse, match=rf"in use by process {os.getpid()}"):
                fit(xor, CFG, callbacks=[RunFolder(run, **kw)], task=NET)
        assert _snapshot(run) == before  # its temp file included
    fit(xor, CFG, callbacks=[RunFolder(run, overwrite=True)], task=NET)  # free again: the stale temp file goes
    assert not live_temp.exists()


def test_concurrent_runs_a_lock_left_by_a_killed_process_is_free_at_once(tmp_path):
    code = (
        "import sys, time; from jnn.app import lock; lock.acquire(sys.argv[1]); print('held', flush=True); "
        "time.sleep(9)"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "held"
        with pytest.raises(lock.FolderInUse, match=str(child.pid)):
            lock.acquire(tmp_path)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    lock.acquire(tmp_path).release()


def test_concurrent_runs_the_cli_refuses_a_busy_folder_with_exit_2(tmp_path):
    run = tmp_path / "r2"
    cmd = [sys.executable, "-m", "jnn.app.cli", "train", "--dataset", "xor", "--hidden", "8", "--max-epochs", "100000",
           "--no-early-stopping", "--checkpoint-every", "1", "--out", str(run)]  # fmt: skip
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (run / "checkpoint.npz").exists():
            assert time.monotonic() < deadline and first.poll() is None, "the first run did not start"
            time.sleep(0.2)
        for extra in ([], ["--resume"], ["--overwrite"]):
            second = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=120)
            assert second.returncode == 2, second.stderr
            assert f"in use by process {first.pid}" in second.stderr
        assert first.poll() is None  # still training
        first.send_signal(signal.SIGINT)
        assert first.wait(timeout=120) == 130
        ckpt.verify(run / "checkpoint.npz")
    finally:
        if first.poll() is None:
            first.kill()


@pytest.mark.parametrize("name", ["config.json", *RUN_FILES])
def test_symlinks_no_write_goes_through_a_link_in_the_run_folder(tmp_path, xor, name):
    run, victim = tmp_path / "run", tmp_path / "victim"
    victim.write_text("keep")
    fit(xor, CFG, callbacks=[RunFolder(run)], task=NET)
    (run / name).unlink()
    (run / name).symlink_to(victim)
    for kw in ({"resume": True}, {}):
        with pytest.raises(ValueError, match=rf"{name}' is a symbolic link"):
            fit(xor, CFG, callbacks=[RunFolder(run, **kw)], task=NET)
    fit(
        xor, CFG, callbacks=[RunFolder(run, overwrite=True)], task=NET
    )  # overwrite replaces the link, not what it points to
    assert victim.read_text() == "keep" and not (run / name).is_symlink()


@pytest.mark.parametrize("name", ["summary.json", "curves.png", "config.json"])
def test_symlinks_a_fresh_folder_holding_only_a_link_is_refused(tmp_path, xor, name):
    run, victim = tmp_path / "t", tmp_path / "v"
    victim.write_text("keep")
    run.mkdir()
    (run / name).symlink_to(victim)
    with pytest.raises(ValueError, match="symbolic link"):
        fit(xor, CFG, callbacks=[RunFolder(run)], task=NET)
    assert victim.read_text() == "keep"


def test_symlinks_atomic_writes_replace_a_link_and_appends_refuse_one(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep")
    link = tmp_path / "history.csv"
    link.symlink_to(victim)
    assert atomic.append_text(link, "row\n") is False
    atomic.write_text(link, "new")
    assert victim.read_text() == "keep" and link.read_text() == "new" and not link.is_symlink()
    assert atomic.append_text(link, "+row") and link.read_text() == "new+row"
    os.mkfifo(tmp_path / "fifo")
    assert atomic.append_text(tmp_path / "fifo", "x") is False  # no reader: never blocks
    assert not list(tmp_path.glob(f"{atomic.TEMP_PREFIX}*"))


def test_symlinks_a_link_planted_in_history_csv_during_a_run_is_replaced(tmp_path, xor, monkeypatch):
    from jnn.app import live_history as records_module

    run, victim = tmp_path / "run", tmp_path / "victim"
    victim.write_text("keep")
    real, planted = records_module.LiveRecords.update, []

    def planting(self):  # after the first epoch's row, history.csv becomes a link
        p = self.folder / "history.csv"
        if not planted:
            p.unlink()
            p.symlink_to(victim)
            planted.append(p)
        real(self)

    monkeypatch.setattr(records_module.LiveRecords, "update", planting)
    res = fit(xor, CFG, callbacks=[RunFolder(run)], task=NET)
    assert victim.read_text() == "keep"
    monkeypatch.undo()
    lines = (run / "history.csv").read_text().splitlines()
    assert len(lines) == 1 + len(res.history)


def test_foreign_folders_a_folder_without_config_json_is_not_taken_over(tmp_path, xor):
    run = tmp_path / "r"
    fit(xor, CFG, callbacks=[RunFolder(run)], task=NET)
    (run / "config.json").unlink()
    before = _snapshot(run)
    for kw in ({}, {"resume": True}):
        with pytest.raises(ValueError, match=r"holds no jnn run \(no config.json; found checkpoint.npz"):
            fit(xor, CFG, callbacks=[RunFolder(run, **kw)], task=NET)
    assert _snapshot(run) == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("my notes")
    with pytest.raises(ValueError, match="found notes.txt"):
        fit(xor, CFG, callbacks=[RunFolder(other)], task=NET)
    fit(xor, CFG, callbacks=[RunFolder(other, overwrite=True)], task=NET)
    assert (other / "notes.txt").read_text() == "my notes" and (other / "model.npz").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    fit(xor, CFG, callbacks=[RunFolder(empty)], task=NET)  # an empty folder is fine


@pytest.mark.parametrize("text", ["[]", '{"config": "abc"}', "{not json", '"a string"'])
def test_malformed_config_json_is_a_named_error(tmp_path, xor, text):
    run = tmp_path / "run"
    fit(xor, CFG, callbacks=[RunFolder(run)], task=NET)
    (run / "config.json").write_text(text)
    for kw in ({"resume": True}, {}):
        with pytest.raises(ValueError, match=r"config.json"):
            fit(xor, CFG, callbacks=[RunFolder(run, **kw)], task=NET)
    fit(xor, CFG, callbacks=[RunFolder(run, overwrite=True)], task=NET)
    assert json.loads((run / "config.json").read_text())["mlp"]["hidden"] == [8]
