"""Divergence can be rolled back: a run whose loss explodes stops while still finite, the message names the
last sane epoch, the last K checkpoints (and the best) are kept, and ``from_epoch`` restarts from one."""

import math
import subprocess
import sys

import numpy as np
import pytest

import jnn
from jnn import RunFolder
from jnn.app import checkpoint as ckpt
from jnn.app.run_dir import kept_checkpoints
from jnn.datasets import load
from jnn.train import TrainConfig, fit
from jnn.train.loop import last_sane_epoch

#: The spirals case of the issue: an identity network at a rate that explodes at epoch 13.
NET = jnn.MLP(hidden=(16, 16), activation="identity")
SMALL = jnn.MLP(hidden=(8,))
DIVERGING = dict(max_epochs=30, early_stopping=None, checkpoint_every=1,
                 learning_rate=0.7)  # fmt: skip


@pytest.fixture(scope="module")
def spirals():
    return load("spirals", seed=0)[0]


def test_divergence_stops_while_finite_and_resumes_from_the_kept_sane_epoch(tmp_path, spirals):
    run = tmp_path / "d"
    first = fit(spirals, TrainConfig(**DIVERGING), callbacks=[RunFolder(run)], task=NET)
    losses = first.history["train_loss"]
    assert first.stopped_by == "diverged" and all(math.isfinite(v) for v in losses)
    stop = len(losses)
    assert losses[-1] > 10 * min(losses[:-1]) and losses[-1] > losses[0]
    sane = last_sane_epoch(losses, 10.0)
    assert sane == stop - 1 and f"The last sane epoch is {sane}" in first.message
    assert first.message.endswith(f"with a lower rate: RunFolder(path, resume=True, from_epoch={sane}).")
    kept = kept_checkpoints(run)
    best = 1 + int(np.argmin(losses))
    assert set(kept) == {stop - 2, stop - 1, stop} | {best}  # the last 3 and the best
    for p in kept.values():
        ckpt.verify(p)
    # A plain resume takes the diverged state and stops again; from the sane epoch it trains to the end.
    again = fit(
        spirals,
        TrainConfig(**{**DIVERGING, "learning_rate": 0.001}),
        callbacks=[RunFolder(run, resume=True, from_epoch=sane)],
        task=NET,
    )
    assert again.stopped_by == "max_epochs" and len(again.history) == 30
    assert again.history["train_loss"][:sane] == losses[:sane]
    assert all(math.isfinite(v) and v < 10 * losses[0] for v in again.history["train_loss"])
    assert max(kept_checkpoints(run)) == 30


def test_from_epoch_equals_an_uninterrupted_run_from_that_state_bitwise(tmp_path, spirals):
    cfg = TrainConfig(max_epochs=8, early_stopping=None, checkpoint_every=1, keep_checkpoints=8)
    run = tmp_path / "r"
    whole = fit(spirals, cfg, callbacks=[RunFolder(run)], task=SMALL)
    again = fit(spirals, cfg, callbacks=[RunFolder(run, resume=True, from_epoch=5)], task=SMALL)
    assert sorted(kept_checkpoints(run)) == list(range(1, 9))
    assert again.history.metrics == whole.history.metrics
    for a, b in zip(jax_leaves(again.params), jax_leaves(whole.params)):
        assert a.tobytes() == b.tobytes()


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def test_from_epoch_names_the_kept_epochs_and_needs_resume(tmp_path, spirals):
    cfg = TrainConfig(max_epochs=4, early_stopping=None, checkpoint_every=1, keep_checkpoints=2)
    run = tmp_path / "r"
    fit(spirals, cfg, callbacks=[RunFolder(run)], task=SMALL)
    kept = sorted(kept_checkpoints(run))
    assert kept[-2:] == [3, 4] and len(kept) <= 3  # the last two, and the best epoch when older
    listed = ", ".join(map(str, kept))
    with pytest.raises(ValueError, match=rf"from_epoch=99: .* keeps checkpoints of epochs \[{listed}\]"):
        fit(spirals, cfg, callbacks=[RunFolder(run, resume=True, from_epoch=99)], task=SMALL)
    with pytest.raises(ValueError, match="needs resume=True"):
        fit(spirals, cfg, callbacks=[RunFolder(run, from_epoch=3)], task=SMALL)


def test_divergence_rule_ignores_noise_below_the_first_epochs_loss():
    assert last_sane_epoch([1.0, 0.01, 0.2, 0.05], 10.0) == 4  # 20x the best, but below the first epoch's
    assert last_sane_epoch([1.0, 0.5, 4.0, 1.0], 10.0) == 4
    assert last_sane_epoch([1.0, 0.5, 60.0], 10.0) == 2
    assert last_sane_epoch([1.0, float("nan")], None) == 1
    assert last_sane_epoch([float("inf")], 10.0) is None


def test_the_cli_prints_the_rollback_command_and_takes_from_epoch(tmp_path):
    run = tmp_path / "d"
    cmd = [sys.executable, "-m", "jnn.app.cli", "train", "--dataset", "spirals", "--hidden", "16,16", "--activation",
           "identity", "--max-epochs", "30", "--no-early-stopping", "--checkpoint-every", "1", "--learning-rate",
           "0.7", "--out", str(run)]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"jnn train --out {run} --resume --from-epoch 12" in out.stdout
    back = subprocess.run([sys.executable, "-m", "jnn.app.cli", "train", "--out", str(run), "--resume", "--from-epoch",
                           "12", "--learning-rate", "0.001"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert back.returncode == 0 and "stopped: max_epochs. 30 epochs" in back.stdout, back.stdout + back.stderr
