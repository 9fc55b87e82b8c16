"""Checkpoints: bitwise round trip, refusal of foreign or corrupt files, bitwise resume across processes."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn import RunFolder
from jnn.app import checkpoint as ckpt
from jnn.app.run_dir import save_checkpoint
from jnn.datasets import load
from jnn.train import EarlyStopping, TrainConfig, fit

ROOT = Path(__file__).resolve().parents[1]
NET = jnn.MLP(hidden=(32, 32), keep_prob=0.7)
PLAIN = jnn.MLP(hidden=(32, 32), keep_prob=1.0)
CFG = dict(batch_size=64, max_epochs=8, early_stopping=EarlyStopping(patience=50), learning_rate=0.05)


def _state():
    return {
        "w": jnp.arange(6.0).reshape(2, 3),
        "step": jnp.asarray(3, jnp.int32),
        "key": jax.random.key(7),
        "raw": jax.random.PRNGKey(1),
        "flag": jnp.asarray(True),
    }


def _equal(a, b) -> bool:
    def raw(x):
        return np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)

    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        raw(x).dtype == raw(y).dtype and raw(x).tobytes() == raw(y).tobytes() for x, y in zip(la, lb)
    )


def test_round_trip_is_bitwise_with_typed_keys(tmp_path):
    s = _state()
    ckpt.save(tmp_path / "c.npz", s, meta={"config": {"a": 1}})
    r = ckpt.restore(tmp_path / "c.npz", s)
    assert _equal(s, r) and jnp.issubdtype(r["key"].dtype, jax.dtypes.prng_key)
    np.testing.assert_array_equal(jax.random.normal(r["key"], (3,)), jax.random.normal(s["key"], (3,)))
    assert ckpt.read_header(tmp_path / "c.npz")["meta"] == {"config": {"a": 1}}
    assert not list(tmp_path.glob(".jnn-ckpt-*"))  # no temp file left


def test_no_pickle_in_the_file(tmp_path):
    ckpt.save(tmp_path / "c.npz", _state())
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_truncated_and_corrupt_files_are_refused(tmp_path):
    p = tmp_path / "c.npz"
    ckpt.save(p, _state())
    data = p.read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        ckpt.restore(tmp_path / "t.npz", _state())
    flipped = bytearray(data)
    i = data.index(np.arange(6.0, dtype=np.float32).reshape(2, 3).tobytes())  # the bytes of leaf "w"
    flipped[i + 5] ^= 0xFF
    (tmp_path / "f.npz").write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match=r"(checksum|corrupt)"):
        ckpt.restore(tmp_path / "f.npz", _state())
    with pytest.raises(ValueError, match="does not exist"):
        ckpt.restore(tmp_path / "missing.npz", _state())


def test_another_structure_or_dtype_is_refused(tmp_path):
    p = tmp_path / "c.npz"
    ckpt.save(p, _state())
    other = dict(_state(), w=jnp.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"leaf \['w'\] is <f4\[2, 3\], expected <f4\[3, 2\]"):
        ckpt.restore(p, other)
    with pytest.raises(ValueError, match="another state structure"):
        ckpt.restore(p, {"w": jnp.zeros((2, 3))})


@pytest.mark.slow
def test_a_checkpoint_from_another_config_is_refused_with_the_differences(tmp_path):
    train, _ = load("spirals")
    fit(train, TrainConfig(**{**CFG, "max_epochs": 2}), callbacks=[RunFolder(tmp_path)], task=NET)
    with pytest.raises(ValueError, match=r"from another run; differences: mlp.l2: stored 0.0001, now 0.001"):
        fit(train, TrainConfig(**{**CFG, "max_epochs": 2}), task=jnn.MLP(hidden=(32, 32), keep_prob=0.7, l2=1e-3),
            callbacks=[RunFolder(tmp_path, resume=True)])  # fmt: skip
    with pytest.raises(ValueError, match=r"differences: model: stored the MLP, now a task"):
        fit(train, TrainConfig(**{**CFG, "max_epochs": 2}), task=NET.task_for(train),
            callbacks=[RunFolder(tmp_path, resume=True)])  # fmt: skip
    with pytest.raises(ValueError, match="already holds a run"):
        fit(train, TrainConfig(**{**CFG, "max_epochs": 2}), callbacks=[RunFolder(tmp_path)], task=NET)
    before = (tmp_path / "checkpoint.npz").read_bytes()
    with pytest.raises(ValueError, match="data: stored hash"):
        other, _ = load("spirals", seed=1)
        fit(other, TrainConfig(**{**CFG, "max_epochs": 2}), callbacks=[RunFolder(tmp_path, resume=True)], task=NET)
    assert (tmp_path / "checkpoint.npz").read_bytes() == before  # nothing overwritten


def test_stale_temp_files_are_removed_at_start(tmp_path):
    (tmp_path / ".jnn-ckpt-123-checkpoint.npz").write_bytes(b"half a file")
    train, _ = load("spirals")
    fit(train, TrainConfig(**{**CFG, "max_epochs": 1}), callbacks=[RunFolder(tmp_path)], task=NET)
    assert not list(tmp_path.glob(".jnn-ckpt-*"))


def test_a_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    p = tmp_path / "c.npz"
    ckpt.save(p, _state())
    before = p.read_bytes()

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt.np, "savez", broken)
    with pytest.raises(OSError, match="No space left"):
        ckpt.save(p, dict(_state(), w=jnp.ones((2, 3))))
    assert p.read_bytes() == before and not list(tmp_path.glob(".jnn-ckpt-*"))


_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, jax
    from jnn.datasets import load
    from jnn.train import EarlyStopping, TrainConfig, fit
    from jnn import MLP, RunFolder
    from jnn.app import checkpoint as ckpt
    cfg = TrainConfig(batch_size=64, max_epochs=8, early_stopping=EarlyStopping(patience=50), learning_rate=0.05)
    net = MLP(hidden=(32, 32), keep_prob=0.7)
    out, mode = sys.argv[1], sys.argv[2]
    train, _ = load("spirals")
    if mode == "full":
        r = fit(train, cfg, task=net)
    elif mode == "first":
        r = fit(train, cfg, task=net, stop_at_epoch=4, callbacks=[RunFolder(out + "/run")])
    else:
        r = fit(train, cfg, task=net, callbacks=[RunFolder(out + "/run", resume=True)])
    leaves = {f"p{i}": np.asarray(l) for i, l in enumerate(jax.tree.leaves(r.state.params))}
    hist = {k: np.asarray(v) for k, v in r.history.metrics.items()}
    np.savez(out + f"/{mode}.npz", **leaves, **hist, step=int(r.state.step))
    print(r.stopped_by, int(r.state.epoch))
""")


def _run(tmp_path, mode):
    proc = subprocess.run(
        [sys.executable, "-c", _SCRIPT, str(tmp_path), mode], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


@pytest.mark.slow
def test_same_seed_is_bitwise_identical_across_processes_and_resume_is_bitwise(tmp_path):
    assert _run(tmp_path, "full") == ["max_epochs", "8"]
    a = dict(np.load(tmp_path / "full.npz"))
    (tmp_path / "again").mkdir()
    _run(tmp_path / "again", "full")
    b = dict(np.load(tmp_path / "again" / "full.npz"))
    assert a.keys() == b.keys() and all(a[k].tobytes() == b[k].tobytes() for k in a)

    assert _run(tmp_path, "first") == ["paused", "4"]
    assert _run(tmp_path, "second") == ["max_epochs", "8"]
    c = dict(np.load(tmp_path / "second.npz"))
    assert all(a[k].tobytes() == c[k].tobytes() for k in a), [k for k in a if a[k].tobytes() != c[k].tobytes()]

    # Negative control: the same resume with another dropout key gives other params.
    path = tmp_path / "run" / "checkpoint.npz"
    header = ckpt.read_header(path)
    train, _ = load("spirals")
    cfg = TrainConfig(**CFG)
    r = fit(train, cfg, stop_at_epoch=4, callbacks=[RunFolder(tmp_path / "ctl")], task=NET)
    tampered = r.state._replace(dropout_key=jax.random.key(12345))
    save_checkpoint(tmp_path / "ctl", tampered, r.history.metrics, header["meta"])
    d = fit(train, cfg, callbacks=[RunFolder(tmp_path / "ctl", resume=True)], task=NET)
    leaves = [np.asarray(l) for l in jax.tree.leaves(d.state.params)]
    assert int(d.state.epoch) == 8
    assert any(l.tobytes() != a[f"p{i}"].tobytes() for i, l in enumerate(leaves))
    assert json.loads((tmp_path / "run" / "history.json").read_text())["epochs"] == 8


def test_a_checkpoint_of_another_jnn_version_is_refused(tmp_path, monkeypatch):
    p = tmp_path / "c.npz"
    ckpt.save(p, _state())
    monkeypatch.setattr(ckpt, "__version__", "9.9.9")
    with pytest.raises(ValueError, match=r"written by jnn 0.1.0; this is jnn 9.9.9"):
        ckpt.restore(p, _state())
    assert _equal(ckpt.restore(p, _state(), allow_other_version=True), _state())


@pytest.mark.slow
def test_a_diverged_run_resumes_from_its_last_finite_checkpoint_with_a_lower_rate(tmp_path):
    train, _ = load("spirals")
    # A real divergence: the run stops, names the step and leaf, and saves its last finite state.
    bad = TrainConfig(**{**CFG, "max_epochs": 6, "optimizer": "sgd", "learning_rate": 1e12})
    r = fit(train, bad, callbacks=[RunFolder(tmp_path / "real")], task=PLAIN)
    assert r.stopped_by == "non_finite"
    saved = ckpt.restore(tmp_path / "real" / "checkpoint.npz", r.state)
    assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves(saved.params))
    again = fit(
        train, bad, callbacks=[RunFolder(tmp_path / "real", resume=True)], task=PLAIN
    )  # same rate: stays stopped
    assert again.stopped_by == "non_finite" and int(again.state.step) == int(r.state.step)
    # (With lr 1e12 the last finite weights are ~1e22, past saving.) The resume mechanism on a run whose last
    # finite state is sane: a checkpoint marked non-finite after 2 epochs at lr 0.5, resumed at lr 0.05.
    hot = TrainConfig(**{**CFG, "max_epochs": 6, "optimizer": "sgd", "learning_rate": 0.5})
    r1 = fit(train, hot, stop_at_epoch=2, callbacks=[RunFolder(tmp_path / "run")], task=PLAIN)
    header = ckpt.read_header(tmp_path / "run" / "checkpoint.npz")
    marked = r1.state._replace(
        status=jnp.asarray(5, jnp.int32), bad_step=r1.state.step, bad_leaf=jnp.asarray(3, jnp.int32)
    )
    save_checkpoint(tmp_path / "run", marked, r1.history.metrics, header["meta"])
    fixed = TrainConfig(**{**CFG, "max_epochs": 6, "optimizer": "sgd", "learning_rate": 0.05})
    r2 = fit(train, fixed, callbacks=[RunFolder(tmp_path / "run", resume=True)], task=PLAIN)
    assert r2.stopped_by == "max_epochs" and int(r2.state.epoch) == 6 and int(r2.state.step) > int(r1.state.step)
    assert float(r2.state.opt_state.hyperparams["learning_rate"]) == pytest.approx(0.05)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["config"]["learning_rate"] == 0.05
    assert cfg["resumed_with_changes"] == [{"learning_rate": {"was": 0.5, "now": 0.05}}]
    with pytest.raises(ValueError, match="another state structure"):  # a custom optimizer's state differs
        import optax

        fit(
            train,
            TrainConfig(**{**CFG, "max_epochs": 6, "optimizer": "sgd", "learning_rate": 0.01}),
            optimizer=optax.sgd(0.01),
            callbacks=[RunFolder(tmp_path / "run", resume=True)],
            task=PLAIN,
        )


def _resume_rewritten(tmp_path, rewrite):
    """A run paused after 2 of 4 epochs whose ``config.json`` and checkpoint header are rewritten by
    ``rewrite(meta)`` (as an older jnn wrote them), resumed: checked bit for bit against an uninterrupted run.
    Returns ``(train, test, run folder, resumed FitResult)``."""
    train, test = load("spirals")
    cfg = TrainConfig(**{**CFG, "max_epochs": 4})
    full = fit(train, cfg, task=NET)
    run = tmp_path / "old"
    r = fit(train, cfg, stop_at_epoch=2, callbacks=[RunFolder(run)], task=NET)
    (run / "config.json").write_text(json.dumps(rewrite(json.loads((run / "config.json").read_text()))))
    save_checkpoint(run, r.state, r.history.metrics, rewrite(ckpt.read_header(run / "checkpoint.npz")["meta"]))
    d = fit(train, cfg, callbacks=[RunFolder(run, resume=True)], task=NET)
    assert int(d.state.epoch) == 4 and d.history["val_loss"] == full.history["val_loss"]
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(d.params), jax.tree.leaves(full.params)))
    return train, test, run, d


def test_a_run_folder_from_before_a_config_field_existed_resumes_bitwise(tmp_path):
    def without_averaging(meta: dict) -> dict:  # what a jnn without the weight-averaging fields wrote
        for k in ("average", "average_decay"):
            del meta["config"][k]
        return meta

    train, _, run, _ = _resume_rewritten(tmp_path, without_averaging)
    # A field that differs from its default is still a difference.
    with pytest.raises(ValueError, match="average_decay: stored 0.999, now 0.5"):
        fit(train, TrainConfig(**{**CFG, "max_epochs": 6, "average_decay": 0.5}), task=NET,
            callbacks=[RunFolder(run, resume=True)])  # fmt: skip


def test_a_run_folder_with_the_flat_early_stopping_fields_of_older_versions_resumes_bitwise(tmp_path):
    def flat(meta: dict) -> dict:  # what jnn wrote before early stopping became one field
        config = meta["config"]
        rule = config.pop("early_stopping")
        config.update(early_stopping=True, monitor=rule["monitor"], patience=rule["patience"],
                      min_delta=rule["min_delta"], start_epoch=rule["start_epoch"], restore_best=rule["restore_best"],
                      monitor_mode=rule["mode"], loss_tol=None, tol_patience=10)  # fmt: skip
        return meta

    train, _, run, _ = _resume_rewritten(tmp_path, flat)
    with pytest.raises(ValueError, match=r"early_stopping: stored \{'monitor': 'val_loss', 'patience': 50, .*"
                                         r"now \{'monitor': 'val_loss', 'patience': 7"):  # fmt: skip
        fit(train, TrainConfig(**{**CFG, "max_epochs": 6, "early_stopping": EarlyStopping(patience=7)}),
            callbacks=[RunFolder(run, resume=True)], task=NET)  # fmt: skip


def test_a_run_folder_from_before_the_mlp_left_the_config_resumes_bitwise_and_loads(tmp_path):
    def inline(meta: dict) -> dict:  # what jnn wrote while the MLP's fields were TrainConfig fields
        meta["config"].update(meta.pop("mlp"))
        return meta

    train, test, run, d = _resume_rewritten(tmp_path, inline)
    model = jnn.load_run(run)
    assert model.evaluate(test) == jnn.evaluate(d.params, test, NET)
    cfg = TrainConfig(**{**CFG, "max_epochs": 4})
    with pytest.raises(ValueError, match=r"mlp.hidden: stored \[32, 32\], now \[16\]"):
        fit(train, cfg, task=jnn.MLP(hidden=(16,), keep_prob=0.7), callbacks=[RunFolder(run, resume=True)])
