"""Several epochs per compiled call, and the non-finite guard replayed only when a call went non-finite."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jnn
from jnn import RunFolder
from jnn.data import Dataset
from jnn.debug import trace_counts
from jnn.sweep import sweep, zipped
from jnn.train import EarlyStopping, Keys, TrainConfig, fit
from jnn.train import multi_epoch as calls_module
from jnn.train.program import RUN

D, H = 4, 8


def _data(n=96, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    return Dataset(x, (x[:, 0] * x[:, 1] > 0).astype(np.int32))


def _leaves(tree):
    return [np.asarray(a) for a in jax.tree.leaves(tree) if not jnp.issubdtype(a.dtype, jax.dtypes.prng_key)]


def _same(a, b):
    la, lb = _leaves(a), _leaves(b)
    same = (u.dtype == v.dtype and np.array_equal(u, v, equal_nan=True) for u, v in zip(la, lb))
    return len(la) == len(lb) and all(same)


def _same_history(a, b):
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


NET = jnn.MLP(hidden=(H,), keep_prob=0.8)
BASE = dict(batch_size=16, learning_rate=0.05, val_fraction=0.25,
            early_stopping=EarlyStopping(patience=3), max_epochs=60, seed=1)  # fmt: skip


def test_epochs_per_call_changes_no_bit_and_a_stop_mid_call_lands_on_the_same_epoch():
    ds = _data()
    one = fit(ds, TrainConfig(**BASE, epochs_per_call=1), task=NET)
    assert one.stopped_by == "early_stopping" and int(one.state.epoch) % 7 != 0  # the stop falls inside a call of 7
    for per_call in (7, None):
        other = fit(ds, TrainConfig(**BASE, epochs_per_call=per_call), task=NET)
        assert _same(other.state, one.state) and _same(other.params, one.params)
        assert other.history.metrics == one.history.metrics and other.message.split(".")[0] == one.message.split(".")[0]
        assert len(other.epoch_seconds) == int(one.state.epoch)


def test_a_sweep_runs_several_epochs_per_call_bit_for_bit():
    ds = _data()
    a = sweep(ds, TrainConfig(**BASE, epochs_per_call=1), seed=[0, 1, 2], l2=[0.0, 1e-3, 1e-2], task=NET, combine="zip")
    b = sweep(ds, TrainConfig(**BASE, epochs_per_call=5), seed=[0, 1, 2], l2=[0.0, 1e-3, 1e-2], task=NET, combine="zip")
    assert _same(a.state, b.state) and _same(a.params, b.params)
    assert [h.metrics for h in a.histories] == [h.metrics for h in b.histories]


def test_epochs_per_call_is_validated():
    for bad in (0, -1, 1 << 17):
        with pytest.raises(ValueError, match=r"epochs_per_call must be .*\[1, 65536\].*got"):
            TrainConfig(epochs_per_call=bad)
    with pytest.raises(TypeError, match="epochs_per_call"):
        TrainConfig(epochs_per_call=2.5)


def _nan_at_step(bad_step: int, seed: int) -> jnn.Task:
    """A task whose loss stays finite while the gradient of ``w2`` is NaN at exactly one step: the step
    whose key is ``fold_in(dropout_key, bad_step)`` (sqrt(0·w)'s derivative is 0·∞)."""
    bad_key = jax.random.key_data(jax.random.fold_in(Keys.from_seed(seed).dropout, bad_step))

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"w1": jax.random.normal(k1, (D, H)) / 2, "w2": jax.random.normal(k2, (H, 2)) / 3}

    def apply(params, x, *, key, train, hyper):
        out = jnp.tanh(x @ params["w1"]) @ params["w2"]
        if train:
            bad = jnp.all(jax.random.key_data(key) == bad_key)
            out = out + 0.0 * jnp.sum(jnp.sqrt(params["w2"] * 0.0 + jnp.where(bad, 0.0, 1.0)))
        return out

    return jnn.Task(init=init, apply=apply, loss="softmax")


def _always_guarded(self, state, data, n):
    """Every call through the per-step-checked program (what checking every step did before)."""
    new, rows, suspect = self.guarded(state, data, jnp.int32(n))
    return new, np.asarray(jax.device_get(rows)), np.asarray(jax.device_get(suspect))


@pytest.mark.parametrize("per_call", [None, 4])
def test_a_nan_at_a_chosen_step_is_found_by_the_replay_exactly_as_by_checking_every_step(
    tmp_path, monkeypatch, per_call, fresh_programs
):
    bad_step, ds = 15, _data()  # 6 steps per epoch: step 15 is the 4th of epoch 3 (from 1), inside a call
    cfg = TrainConfig(batch_size=16, val_fraction=0.0, early_stopping=None, max_epochs=20, seed=0,
                      epochs_per_call=per_call, checkpoint_every=2)  # fmt: skip
    task = _nan_at_step(bad_step, cfg.seed)
    before = trace_counts()["run_epoch"]
    fast = fit(ds, cfg, task=task, callbacks=[RunFolder(tmp_path / "fast")])
    assert trace_counts()["run_epoch"] - before == 2  # the unchecked program, then the replay's checked one
    assert fast.stopped_by == "non_finite" and int(fast.state.bad_step) == bad_step
    assert f"non-finite value in the gradient of ['w2'] at step {bad_step} (epoch 3)" in fast.message, fast.message
    with monkeypatch.context() as m:
        m.setattr(calls_module.EpochCaller, "__call__", _always_guarded)
        guarded = fit(ds, cfg, task=task, callbacks=[RunFolder(tmp_path / "guarded")])
    assert fast.message.split(" in ")[0] == guarded.message.split(" in ")[0]
    assert _same(fast.state, guarded.state) and _same_history(fast.history.metrics, guarded.history.metrics)
    saved = [jnn.checkpoint.restore(tmp_path / d / "checkpoint.npz", fast.state) for d in ("fast", "guarded")]
    assert _same(saved[0], saved[1]) and _same(saved[0].params, fast.state.params)
    # The kept state is the one after the bad_step finite steps: a clean run stopped there by max_steps.
    clean = fit(ds, dataclasses.replace(cfg, max_steps=bad_step), task=task)
    assert clean.stopped_by == "max_steps" and _same(clean.state.params, fast.state.params)
    assert all(np.all(np.isfinite(a)) for a in _leaves(fast.state.params))


def test_a_clean_run_never_compiles_the_checked_program(fresh_programs):
    before = trace_counts()["run_epoch"]
    r = fit(_data(), TrainConfig(**BASE), task=NET)
    assert r.stopped_by == "early_stopping" and trace_counts()["run_epoch"] - before == 1


def test_check_finite_false_keeps_the_nan_state_and_replays_nothing(fresh_programs):
    cfg = TrainConfig(batch_size=16, val_fraction=0.0, early_stopping=None, max_epochs=20, check_finite=False)
    before = trace_counts()["run_epoch"]
    r = fit(_data(), cfg, task=_nan_at_step(15, cfg.seed))
    assert trace_counts()["run_epoch"] - before == 1
    # The NaN gradient was applied at step 15; the loss of step 16 is NaN, which stops the run there.
    assert r.stopped_by == "non_finite" and int(r.state.bad_step) == 16
    assert any(np.isnan(a).any() for a in _leaves(r.state.params))


def test_a_second_fit_with_another_seed_rate_l2_or_keep_prob_compiles_nothing_and_changes_no_bit(fresh_programs):
    ds = _data()
    fit(ds, TrainConfig(**BASE), task=NET)
    other, net = dict(BASE, seed=5, learning_rate=0.1), jnn.MLP(hidden=(H,), l2=1e-2, keep_prob=0.6)
    before = trace_counts()["run_epoch"]
    reused = fit(ds, TrainConfig(**other), task=net)
    assert trace_counts()["run_epoch"] == before  # the program of the first fit
    RUN.clear_cache()
    fresh = fit(ds, TrainConfig(**other), task=net)
    assert trace_counts()["run_epoch"] == before + 1
    assert _same(reused.state, fresh.state) and reused.history.metrics == fresh.history.metrics
    fit(ds, TrainConfig(**BASE), task=jnn.MLP(hidden=(H + 1,), keep_prob=0.8))  # another shape, another program
    fit(ds, TrainConfig(**BASE), task=jnn.MLP(hidden=(H,), keep_prob=1.0))  # no dropout at all: another program
    fit(
        ds, TrainConfig(**dict(BASE, early_stopping=EarlyStopping(patience=4))), task=NET
    )  # another stopping rule: another program
    assert trace_counts()["run_epoch"] == before + 4


def test_a_users_task_object_is_compiled_once_per_object(fresh_programs):
    ds, cfg = _data(), TrainConfig(batch_size=16, max_epochs=3, early_stopping=None, val_fraction=0.0)
    task = _nan_at_step(10**6, 0)  # never NaN
    fit(ds, cfg, task=task)
    before = trace_counts()["run_epoch"]
    fit(ds, dataclasses.replace(cfg, seed=3), task=task)
    assert trace_counts()["run_epoch"] == before
    fit(ds, cfg, task=_nan_at_step(10**6, 0))  # an equal but new object may close over other values
    assert trace_counts()["run_epoch"] == before + 1


def test_a_stacked_sweep_repacks_its_running_members_at_fixed_epochs_whatever_the_call_lengths(tmp_path):
    # All members in one vmapped batch (each its own program: tests/test_member_threads.py).
    # Members stop at very different epochs (6 to 40, through their learning rates): 8 -> 4 -> 2 running.
    ds = _data(160)
    axes = zipped(seed=list(range(8)), learning_rate=[0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.005, 0.002])
    cfg = TrainConfig(**{**BASE, "early_stopping": EarlyStopping(patience=2), "max_epochs": 40, "epochs_per_call": 3})
    # A sweep folder keeps the batch whole (a resume meets the batches the uninterrupted sweep ran).
    plain = sweep(ds, cfg, strategy="stacked", callbacks=[jnn.SweepFolder(tmp_path / "sw")], **axes, task=NET)
    packed = sweep(ds, cfg, strategy="stacked", **axes, task=NET)
    epochs = [r["epochs"] for r in plain.rows]
    assert min(epochs) < max(epochs) // 2  # staggered stops
    assert plain.pack_sizes == (8,) and packed.pack_sizes == (8, 4, 2)
    assert list(packed.pack_sizes) == sorted(packed.pack_sizes, reverse=True)
    assert all(s & (s - 1) == 0 and s >= 2 for s in packed.pack_sizes[1:])  # powers of two, at least 2
    # Re-packing happens at multiples of REPACK_EVERY, never where a call happened to end: calls of 7 epochs (or
    # the timed default) give the same bits as calls of 3.
    for other in (7, None):
        again = sweep(ds, dataclasses.replace(cfg, epochs_per_call=other), strategy="stacked", **axes, task=NET)
        assert again.pack_sizes == packed.pack_sizes
        assert _same(again.state, packed.state) and again.rows == packed.rows
        assert [h.metrics for h in again.histories] == [h.metrics for h in packed.histories]
    # Another batch size may round a member differently in general (see jnn.train.repacking); on this small net the
    # bits happen to agree, and the stopping epochs must.
    assert [r["epochs"] for r in packed.rows] == epochs
    assert _same(plain.state, packed.state) and _same(plain.params, packed.params)
    for old in ("repack", "exact"):  # the flags the strategies replaced: a clear error, not an unknown axis
        with pytest.raises(TypeError, match=rf"sweep\({old}=...\) is replaced by strategy=: 'programs'"):
            sweep(ds, cfg, **{old: True}, **axes, task=NET)
    with pytest.raises(ValueError, match=r"strategy must be one of \['programs', 'stacked'\] .*; got 'threads'"):
        sweep(ds, cfg, strategy="threads", **axes, task=NET)
    with pytest.raises(ValueError, match="workers is the threads of strategy='programs'"):
        sweep(ds, cfg, strategy="stacked", workers=2, **axes, task=NET)


def test_members_as_programs_equal_the_stacked_batch_to_rounding_and_any_threads_give_the_same_bits(tmp_path):
    # 9 members: stacked (one batch of 9, kept whole by a sweep folder), or programs in 1, 2 or 4 threads.
    ds = _data(160)
    axes = zipped(seed=list(range(9)), learning_rate=[0.3, 0.2, 0.1, 0.05, 0.03, 0.02, 0.01, 0.005, 0.002])
    cfg = TrainConfig(**{**BASE, "early_stopping": EarlyStopping(patience=2), "max_epochs": 24})
    stacked = sweep(ds, cfg, strategy="stacked", callbacks=[jnn.SweepFolder(tmp_path / "sw")], **axes, task=NET)
    runs = {w: sweep(ds, cfg, strategy="programs", workers=w, **axes, task=NET) for w in (1, 2, 4)}
    assert [r.workers for r in runs.values()] == [1, 2, 4] and stacked.workers == 1
    assert (stacked.strategy, runs[2].strategy) == ("stacked", "programs")
    again = sweep(ds, cfg, workers=2, **axes, task=NET)
    assert _same(again.state, runs[2].state) and again.rows == runs[2].rows
    for w in (1, 4):  # own programs either way
        assert _same(runs[w].state, runs[2].state) and runs[w].rows == runs[2].rows
    for w in (2, 4):  # each member's rows, history and state are its own, whatever slice it ran in
        assert [r["epochs"] for r in runs[w].rows] == [r["epochs"] for r in stacked.rows]
        rel = jnn.compare_grads(stacked.params, runs[w].params, rtol=1e-5)
        assert rel.max_rel_err <= 1e-5, str(rel)
    with pytest.raises(ValueError, match=r"workers must be an integer in \[1, 1024\]; got 0"):
        sweep(ds, cfg, workers=0, **axes, task=NET)
    with pytest.raises(TypeError, match="workers must be an integer; got True"):
        sweep(ds, cfg, workers=True, **axes, task=NET)


def test_a_second_sweep_of_the_same_shapes_compiles_nothing(fresh_programs):
    ds, cfg = _data(), TrainConfig(**{**BASE, "max_epochs": 4})
    sweep(ds, cfg, strategy="stacked", seed=[0, 1], l2=[0.0, 1e-3], task=NET, combine="zip")
    before = trace_counts()["run_epoch"]
    sweep(ds, cfg, strategy="stacked", **zipped(seed=[2, 3], l2=[1e-2, 1e-4], keep_prob=[0.5, 0.9]), task=NET)
    assert trace_counts()["run_epoch"] == before
    sweep(ds, cfg, seed=[2, 3, 4], l2=[1e-2, 1e-4, 0.0], task=NET, combine="zip")  # programs: each member's own
    programs = trace_counts()["run_epoch"]  # program (one compile), whatever the number of members
    sweep(ds, cfg, seed=[5, 6, 7, 8, 9], l2=[1e-2], task=NET)
    assert trace_counts()["run_epoch"] == programs
    sweep(ds, cfg, strategy="stacked", **zipped(seed=[2, 3, 4], l2=[1e-2, 1e-4, 0.0]), task=NET)  # a batch of three:
    assert trace_counts()["run_epoch"] == programs + 1  # another shape


def test_a_custom_optax_chain_and_a_new_but_equal_mlp_task_compile_nothing_the_second_time(fresh_programs):
    ds, cfg, net = _data(), TrainConfig(**{**BASE, "max_epochs": 4}), jnn.MLP(hidden=(H,), keep_prob=1.0)
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.inject_hyperparams(optax.sgd)(learning_rate=0.05))
    fit(ds, cfg, optimizer=tx, task=net)
    before = trace_counts()["run_epoch"]
    again = fit(ds, dataclasses.replace(cfg, seed=7), optimizer=tx, task=net)
    assert trace_counts()["run_epoch"] == before  # the chain built once serves both fits
    tx2 = optax.chain(optax.clip_by_global_norm(1.0), optax.inject_hyperparams(optax.sgd)(learning_rate=0.05))
    fresh = fit(ds, dataclasses.replace(cfg, seed=7), optimizer=tx2, task=net)  # new functions: compiled anew
    assert trace_counts()["run_epoch"] == before + 1
    assert _same(again.state.params, fresh.state.params)
    # Two MLP tasks of one description have equal functions (their default hyperparameters differ): one compile.
    sizes = (D, H, 2)
    a, b = jnn.mlp_task(sizes, keep_prob=0.8), jnn.mlp_task(sizes, keep_prob=0.6, l2=1e-3)
    assert (a.init, a.apply, a.draw, a.penalty) == (b.init, b.apply, b.draw, b.penalty)
    assert a.apply != jnn.mlp_task(sizes, keep_prob=1.0).apply  # no dropout path: another function
    task_cfg = TrainConfig(
        batch_size=16, learning_rate=0.05, val_fraction=0.25, max_epochs=4, early_stopping=EarlyStopping(patience=3)
    )
    fit(ds, task_cfg, task=a)
    before = trace_counts()["run_epoch"]
    fit(ds, task_cfg, task=b)
    assert trace_counts()["run_epoch"] == before
    # evaluate with an MLP compiles once per kind of data, whatever the MLP's λ.
    before = trace_counts()["eval_step"]
    params = fit(ds, cfg, task=net).params
    jnn.evaluate(params, ds, net)
    mid = trace_counts()["eval_step"]
    jnn.evaluate(params, ds, dataclasses.replace(net, l2=0.5))
    assert trace_counts()["eval_step"] == mid and mid - before >= 1
