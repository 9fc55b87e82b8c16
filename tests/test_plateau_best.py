"""ReduceLROnPlateau and the best k epochs, both on device: their state machines against plain-Python references
(the Keras callback's ``on_epoch_end`` copied line by line; a sorted top-k), then inside ``fit``: the same bits as
a plain fit when the plateau rule never fires, the same bits for any epochs per call, bitwise resume, the files
of ``RUN/best``, the CLI flags and the errors."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jnn
from jnn.app.cli import build_parser
from jnn.train.best_k import ranked


def keras_plateau(values, lr, *, factor, patience, min_delta, cooldown, min_lr, mode="min"):
    """Keras 3's ReduceLROnPlateau.on_epoch_end, line by line, in float32 like the device: the rate of each
    epoch after its end."""
    op = (lambda a, b: np.less(a, b - min_delta)) if mode == "min" else (lambda a, b: np.greater(a, b + min_delta))
    best = np.inf if mode == "min" else -np.inf
    wait = cooldown_counter = 0
    lr = np.float32(lr)
    out = []
    for current in values:
        if cooldown_counter > 0:
            cooldown_counter -= 1
            wait = 0
        if op(current, best):
            best = current
            wait = 0
        elif not cooldown_counter > 0:
            wait += 1
            if wait >= patience:
                if lr > np.float32(min_lr):
                    lr = max(np.float32(lr * np.float32(factor)), np.float32(min_lr))
                    cooldown_counter = cooldown
                    wait = 0
        out.append(float(lr))
    return out


def device_plateau(rule, values, lr):
    state = rule.init()
    lr = jnp.asarray(lr, jnp.float32)
    out = []
    step = jax.jit(rule.update)
    for v in values:
        state, lr = step(state, jnp.float32(v), lr)
        out.append(float(lr))
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(
    "kw",
    [dict(factor=0.5, patience=2, min_delta=0.0, cooldown=0, min_lr=0.0),
     dict(factor=0.1, patience=3, min_delta=0.01, cooldown=2, min_lr=1e-3),
     dict(factor=0.3, patience=0, min_delta=0.0, cooldown=1, min_lr=0.0)],
)  # fmt: skip
def test_plateau_rule_equals_keras_on_random_curves(seed, kw):
    rng = np.random.default_rng(seed)
    curve = np.float32(1.0) - np.cumsum(rng.normal(0.0, 0.02, 60)).astype(np.float32)  # a noisy walk with plateaus
    curve[rng.integers(0, 60, 3)] = np.nan  # a NaN epoch never improves
    want = keras_plateau(curve, 0.1, **kw)
    got = device_plateau(jnn.ReduceLROnPlateau(**kw), curve, 0.1)
    assert got == want
    assert len(set(want)) > 1  # the curves do trigger reductions


def test_plateau_max_mode_and_cooldown_semantics():
    rule = jnn.ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1, cooldown=2, min_delta=0.0)
    assert rule.direction == "max"
    curve = [0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.7, 0.6]
    assert device_plateau(rule, curve, 1.0) == keras_plateau(curve, 1.0, factor=0.5, patience=1, cooldown=2,
                                                               min_delta=0.0, min_lr=0.0, mode="max")  # fmt: skip
    # epoch 2 is bad (patience 1): halved, cooldown 2. Epoch 3: the cooldown counts down to 1 and the epoch is not
    # counted; epoch 4: it counts down to 0 before the check (Keras's order), so the epoch counts: halved again.
    # Epoch 5 is cooldown, epoch 6 improves, epoch 7 is bad: halved.
    assert device_plateau(rule, curve, 1.0) == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]


def test_min_lr_floors_the_rate_and_then_nothing_changes():
    rule = jnn.ReduceLROnPlateau(factor=0.1, patience=1, min_lr=0.005, min_delta=0.0)
    assert device_plateau(rule, [1.0] * 5, 0.1) == pytest.approx([0.1, 0.01, 0.005, 0.005, 0.005])


def reference_top_k(values, k, mode):
    """The k best (epoch, value) of a curve: strictly better than the worst kept enters; ties keep the earlier."""
    kept = []
    sign = 1.0 if mode == "min" else -1.0
    for e, v in enumerate(values):
        if math.isnan(v):
            continue
        if len(kept) < k:
            kept.append((e, v))
            continue
        worst = max(kept, key=lambda t: (sign * t[1], t[0]))  # among equal worst values the latest leaves
        if sign * v < sign * worst[1]:
            kept.remove(worst)
            kept.append((e, v))
    return sorted(kept, key=lambda t: (sign * t[1], t[0]))


@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("k", [1, 3, 5])
def test_best_k_slots_equal_a_sorted_reference(mode, k):
    rng = np.random.default_rng(k)
    values = np.round(rng.uniform(0, 1, 40), 1).astype(np.float32)  # many ties
    values[[3, 17]] = np.nan
    rule = jnn.BestCheckpoints(k=k, monitor="val_loss" if mode == "min" else "val_accuracy")
    params = {"w": jnp.zeros((2,), jnp.float32)}
    state = rule.init(params)
    update = jax.jit(rule.update)
    for e, v in enumerate(values):
        state = update(state, v, e, {"w": jnp.full((2,), e, jnp.float32)})
    got = [(e, v) for _, e, v in ranked(state, mode)]
    want = reference_top_k(values.tolist(), k, mode)
    assert got == [(e, float(np.float32(v))) for e, v in want]
    for slot, e, _ in ranked(state, mode):  # each slot holds the params of its epoch
        assert np.all(np.asarray(state.params["w"][slot]) == e)


def _data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return jnn.Dataset(x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int32))


QUIET = [jnn.Progress(bar=False)]
BASE = dict(max_epochs=25, batch_size=40, early_stopping=None)


def _fit(config, **kw):
    return jnn.fit(_data(), config, task=jnn.MLP(hidden=(12,)), callbacks=kw.pop("callbacks", []) + QUIET, **kw)


def _leaves(tree):
    return [np.asarray(jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a)
            for a in jax.tree.leaves(tree)]  # fmt: skip


def _same_bits(a, b) -> bool:
    la, lb = _leaves(a), _leaves(b)
    return len(la) == len(lb) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(la, lb))


def test_a_plateau_rule_that_never_fires_gives_the_plain_fit_bit_for_bit():
    plain = _fit(jnn.TrainConfig(**BASE))
    quiet = _fit(jnn.TrainConfig(**BASE, reduce_lr=jnn.ReduceLROnPlateau(patience=1000)))
    assert _same_bits(plain.params, quiet.params)
    assert plain.history["val_loss"] == quiet.history["val_loss"]


def test_plateau_in_fit_follows_keras_on_the_recorded_curve():
    rule = jnn.ReduceLROnPlateau(factor=0.5, patience=2, min_delta=0.0, cooldown=1)
    r = _fit(jnn.TrainConfig(**BASE, reduce_lr=rule))
    rates = r.history["learning_rate"]  # the rate each epoch trained with
    after = keras_plateau(np.float32(r.history["val_loss"]), 0.02, factor=0.5, patience=2, min_delta=0.0,
                          cooldown=1, min_lr=0.0)  # fmt: skip
    assert rates[1:] == after[:-1]
    assert rates[0] == pytest.approx(0.02) and min(rates) < 0.02  # it did reduce on this run


def test_plateau_and_best_k_give_the_same_bits_for_any_epochs_per_call():
    rules = dict(reduce_lr=jnn.ReduceLROnPlateau(factor=0.5, patience=2), best_checkpoints=jnn.BestCheckpoints(k=3))
    one = _fit(jnn.TrainConfig(**BASE, **rules, epochs_per_call=1))
    many = _fit(jnn.TrainConfig(**BASE, **rules, epochs_per_call=7))
    assert _same_bits(one.state, many.state)
    assert one.history["learning_rate"] == many.history["learning_rate"]


def test_resume_is_bitwise_with_plateau_and_best_k(tmp_path):
    config = jnn.TrainConfig(**BASE, reduce_lr=jnn.ReduceLROnPlateau(factor=0.5, patience=2),
                             best_checkpoints=jnn.BestCheckpoints(k=3, monitor="val_accuracy"))  # fmt: skip
    whole = _fit(config, callbacks=[jnn.RunFolder(tmp_path / "whole")])
    first = _fit(config, stop_at_epoch=11, callbacks=[jnn.RunFolder(tmp_path / "parts")])
    assert first.stopped_by == "paused"
    rest = _fit(config, callbacks=[jnn.RunFolder(tmp_path / "parts", resume=True)])
    assert _same_bits(whole.state, rest.state)
    assert whole.history["learning_rate"] == rest.history["learning_rate"]
    index = [json.loads((tmp_path / d / "best" / "best.json").read_text()) for d in ("whole", "parts")]
    assert index[0] == index[1]
    files = [sorted(p.name for p in (tmp_path / d / "best").iterdir()) for d in ("whole", "parts")]
    assert files[0] == files[1] and len(files[0]) == 4  # three epochs and best.json


def test_best_k_files_hold_the_k_best_epochs_of_the_history(tmp_path):
    config = jnn.TrainConfig(**{**BASE, "early_stopping": jnn.EarlyStopping("val_loss", patience=1000)},
                             best_checkpoints=jnn.BestCheckpoints(k=4, monitor="val_loss"))  # fmt: skip
    r = _fit(config, callbacks=[jnn.RunFolder(tmp_path / "run")])
    want = reference_top_k(np.float32(r.history["val_loss"]).tolist(), 4, "min")
    kept = r.best_checkpoints()
    assert [(b.epoch, b.value) for b in kept] == [(e + 1, v) for e, v in want]
    index = json.loads((tmp_path / "run" / "best" / "best.json").read_text())
    assert [c["epoch"] for c in index["checkpoints"]] == [b.epoch for b in kept]
    assert sorted(p.name for p in (tmp_path / "run" / "best").glob("epoch-*.npz")) == sorted(
        f"epoch-{b.epoch:06d}.npz" for b in kept)  # fmt: skip
    # rank 1 by val_loss is the epoch early stopping restores: the same params, in memory and from the files
    assert _same_bits(kept[0].params, r.params)
    assert _same_bits(jnn.load_run(tmp_path / "run", best=1).params, jnn.load_run(tmp_path / "run").params)
    for b in kept:
        assert _same_bits(jnn.load_run(tmp_path / "run", best=b.rank).params, b.params)
    with pytest.raises(ValueError, match=r"best must be a rank in \[1, 4\].*got 5"):
        jnn.load_run(tmp_path / "run", best=5)


def test_states_without_the_rules_keep_their_leaves():
    r = _fit(jnn.TrainConfig(**{**BASE, "max_epochs": 2}))
    assert r.state.plateau is None and r.state.top_k is None
    from jnn.app.checkpoint import entry_names

    assert not any("plateau" in n or "top_k" in n for n in entry_names(r.state))  # old checkpoints still restore


def test_sweep_members_each_reduce_their_own_rate():
    from jnn.sweep import sweep

    rule = jnn.ReduceLROnPlateau(factor=0.5, patience=2)
    res = sweep(_data(), jnn.TrainConfig(**BASE, reduce_lr=rule), task=jnn.MLP(hidden=(12,)),
                learning_rate=[0.02, 0.2], callbacks=QUIET)  # fmt: skip
    for m, lr in enumerate([0.02, 0.2]):
        own = _fit(jnn.TrainConfig(**{**BASE, "learning_rate": lr}, reduce_lr=rule))
        assert res.histories[m]["learning_rate"] == own.history["learning_rate"]  # each member is its own fit
        assert min(own.history["learning_rate"]) < lr


@pytest.mark.parametrize(
    "make, match",
    [(lambda: jnn.ReduceLROnPlateau(factor=1.0), r"factor must be .*\(0, 1\).*1"),
     (lambda: jnn.ReduceLROnPlateau(patience=-1), "patience"),
     (lambda: jnn.ReduceLROnPlateau(monitor="val_acc"), "did you mean 'val_accuracy'"),
     (lambda: jnn.BestCheckpoints(k=0), r"k must be .*1"),
     (lambda: jnn.BestCheckpoints(monitor="loss"), "train_<name> or val_<name>"),
     (lambda: jnn.TrainConfig(reduce_lr=0.5), "jnn.ReduceLROnPlateau")],
)  # fmt: skip
def test_bad_rules_are_refused(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_plateau_refuses_a_schedule_and_an_optimizer_without_a_rate():
    rule = jnn.ReduceLROnPlateau()
    with pytest.raises(ValueError, match="schedule overwrites"):
        _fit(jnn.TrainConfig(**BASE, lr_schedule="cosine", reduce_lr=rule))
    with pytest.raises(ValueError, match="holds its learning_rate as state"):
        _fit(jnn.TrainConfig(**BASE, reduce_lr=rule), optimizer=optax.sgd(0.1))
    with pytest.raises(ValueError, match="reduce_lr.monitor must be one of"):
        _fit(jnn.TrainConfig(**BASE, reduce_lr=jnn.ReduceLROnPlateau(monitor="val_r2")))
    injected = optax.inject_hyperparams(optax.adam)(learning_rate=0.01)
    r = _fit(jnn.TrainConfig(**BASE, reduce_lr=jnn.ReduceLROnPlateau(factor=0.5, patience=1)), optimizer=injected)
    assert min(r.history["learning_rate"]) < 0.01  # a custom optimizer holding its rate works


def test_cli_flags_and_toml_tables_build_the_rules(tmp_path):
    from jnn.app.cli import _train_config

    args = build_parser().parse_args(["train", "--plateau-factor", "0.5", "--plateau-patience", "4", "--best-k", "2",
                                      "--best-monitor", "val_accuracy"])  # fmt: skip
    _, config, _ = _train_config(args)
    assert config.reduce_lr == jnn.ReduceLROnPlateau(factor=0.5, patience=4)
    assert config.best_checkpoints == jnn.BestCheckpoints(k=2, monitor="val_accuracy")
    toml = tmp_path / "c.toml"
    toml.write_text("[reduce_lr]\nfactor = 0.2\ncooldown = 3\n[best_checkpoints]\nk = 5\n")
    _, config, _ = _train_config(build_parser().parse_args(["train", "--config", str(toml)]))
    assert config.reduce_lr == jnn.ReduceLROnPlateau(factor=0.2, cooldown=3)
    assert config.best_checkpoints == jnn.BestCheckpoints(k=5)
    assert jnn.TrainConfig.from_dict(config.to_dict()) == config
    _, plain, _ = _train_config(build_parser().parse_args(["train"]))
    assert plain.reduce_lr is None and plain.best_checkpoints is None


def test_the_memory_check_counts_the_k_best_copies():
    from jnn.train.run_setup import check_memory, checked_task

    ds = _data(100)
    config = jnn.TrainConfig(best_checkpoints=jnn.BestCheckpoints(k=5))
    ct = checked_task(jnn.MLP(hidden=(8,)), config, ds, ds, ds)
    tx = config.make_optimizer()
    params = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(ct.task.init(jax.random.key(0))))
    assert check_memory(ct, tx, config=config) - check_memory(ct, tx) == 5 * params
    with pytest.raises(ValueError, match="5 best epochs' params"):
        check_memory(ct, tx, config=config, bound=(1000, "a small memory"))
