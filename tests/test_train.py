"""The training engine: compiled epochs, stopping rules, restore-best, non-finite guard, determinism."""

import dataclasses
import json
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jnn
from jnn import RunFolder
from jnn.data import Dataset
from jnn.datasets import load
from jnn.debug import trace_counts
from jnn.train import Batch, EarlyStopping, Keys, TrainConfig, evaluate, fit, make_eval, make_train_step
from jnn.train.run_setup import initial_state, resolve_task


def _spirals():
    return load("spirals", seed=0)


def _mlp_step(cfg, params, net, n=8, d=2, k=3):
    """The train step, eval function and first state of the MLP ``net`` for ``params`` (a tiny data set)."""
    ds = Dataset(np.zeros((n, d), np.float32), np.arange(n) % k)
    ct = resolve_task(net, cfg, ds, None)
    tx = cfg.make_optimizer()
    step = make_train_step(ct, tx, check_finite=cfg.check_finite, max_steps=cfg.max_steps)
    keys = Keys(jax.random.key(0), jax.random.key(1), jax.random.key(2), jax.random.key(3))
    return step, make_eval(ct), initial_state(ct, cfg, tx, params, keys), ct


NET = jnn.MLP(hidden=(32, 32))
SMALL = dict(batch_size=64, max_epochs=12, early_stopping=EarlyStopping(patience=50), learning_rate=0.05)


def test_a_short_run_lowers_the_loss_and_learns():
    train, test = _spirals()
    r = fit(train, TrainConfig(**{**SMALL, "max_epochs": 60}), task=NET)
    h = r.history
    assert r.stopped_by == "max_epochs" and len(h) == 60
    assert h["train_loss"][-1] < 0.6 * h["train_loss"][0]
    assert evaluate(r.params, test, NET)["accuracy"] > 0.6


def test_one_trace_per_compiled_function_with_a_ragged_last_batch(fresh_programs):
    train, _ = _spirals()
    cfg = TrainConfig(**{**SMALL, "batch_size": 70})  # 1080 training rows: 15 full batches + one of 30
    assert (len(train) - round(0.1 * len(train))) % 70 != 0
    before = dict(trace_counts())
    r = fit(train, cfg, task=NET)
    assert r.stopped_by == "max_epochs" and int(r.state.epoch) == 12
    for name in ("run_epoch", "train_step", "eval_step"):
        assert trace_counts()[name] - before.get(name, 0) == 1, name


@pytest.mark.slow
def test_padded_batch_step_equals_the_unpadded_step():
    train, _ = _spirals()
    cfg = TrainConfig(optimizer="sgd", learning_rate=0.1)
    params = jnn.init_mlp(jax.random.key(0), [2, 8, 3])
    net = jnn.MLP(hidden=(8,), keep_prob=1.0, l2=1e-3)
    train_step, _, s0, _ = _mlp_step(dataclasses.replace(cfg, batch_size=8), params, net)
    x, y = jnp.asarray(train.x[:10]), jnp.asarray(train.y[:10])
    pad_x = jnp.concatenate([x, jnp.asarray(train.x[10:16])])
    pad_y = jnp.concatenate([y, jnp.asarray(train.y[10:16])])
    a, ma = train_step(s0, Batch(x, y, jnp.ones(10, bool)))
    b, mb = train_step(s0, Batch(pad_x, pad_y, jnp.arange(16) < 10))
    for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_allclose(u, v, rtol=1e-6, atol=1e-7)
    assert float(ma["count"]) == float(mb["count"]) == 10.0


@pytest.mark.parametrize(
    "extra, mode",
    [
        ({}, "inverted"),
        ({"max_steps": 37, "drop_last": False, "batch_size": 70}, "inverted"),
        ({"optimizer": "momentum"}, "classic"),
    ],  # fmt: skip
)
@pytest.mark.slow
def test_epoch_masks_drawn_up_front_give_the_per_step_run_bit_for_bit(monkeypatch, extra, mode):
    import jnn.train.epoch as epoch_mod

    train, _ = _spirals()
    cfg = TrainConfig(**{**SMALL, "max_epochs": 4, **extra})
    net = jnn.MLP(hidden=NET.hidden, keep_prob=0.6, dropout_mode=mode)
    up_front = fit(train, cfg, task=net)
    monkeypatch.setattr(epoch_mod, "NOISE_UP_FRONT_MAX", 0)  # every step draws its own masks
    per_step = fit(train, cfg, task=net)
    assert up_front.stopped_by == per_step.stopped_by and int(up_front.state.step) == int(per_step.state.step)
    for a, b in zip(jax.tree.leaves(up_front.state), jax.tree.leaves(per_step.state)):
        np.testing.assert_array_equal(
            jax.random.key_data(a) if jnp.issubdtype(a.dtype, jax.dtypes.prng_key) else a,
            jax.random.key_data(b) if jnp.issubdtype(b.dtype, jax.dtypes.prng_key) else b,
        )


def test_train_step_jits_with_donation_and_steps_the_state():
    cfg = TrainConfig(batch_size=8)
    params = jnn.init_mlp(jax.random.key(0), [2, 4, 3])
    train_step, eval_fn, s, _ = _mlp_step(cfg, params, jnn.MLP(hidden=(4,), keep_prob=0.5))
    step = jax.jit(train_step, donate_argnums=0)
    batch = Batch(jnp.ones((8, 2)), jnp.zeros(8, jnp.int32), jnp.ones(8, bool))
    s1, m = step(s, batch)
    w1 = np.asarray(s1.params[0]["w"])  # read before s1 is donated
    s2, m = step(s1, batch)
    assert int(s2.step) == 2 and float(m["count"]) == 8.0
    assert not np.array_equal(np.asarray(s2.params[0]["w"]), w1)
    out = jax.jit(eval_fn)(s2.params, batch.x, batch.y, None, s2.hyper)
    assert set(out) == {"loss", "accuracy"} and np.isfinite(float(out["loss"]))


@pytest.mark.slow
def test_restore_best_returns_the_best_epoch_params():
    train, _ = _spirals()
    cfg = TrainConfig(**{**SMALL, "max_epochs": 40, "learning_rate": 0.3, "early_stopping": EarlyStopping(patience=5)})
    r = fit(train, cfg, task=NET)
    fit_ds, val_ds = jnn.train.prepare_data(train, cfg)
    val = r.history["val_loss"]
    assert r.best_epoch == int(np.argmin(val))
    assert evaluate(r.params, val_ds, NET)["loss"] == pytest.approx(min(val), rel=1e-5)
    if r.stopped_by == "early_stopping":
        assert len(val) == r.best_epoch + 1 + cfg.early_stopping.patience
    r2 = fit(
        train,
        TrainConfig(
            **{
                **SMALL,
                "max_epochs": 40,
                "learning_rate": 0.3,
                "early_stopping": EarlyStopping(patience=5, restore_best=False),
            }
        ),  # fmt: skip, task=NET
    )
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(r2.params), jax.tree.leaves(r2.state.params)))


def test_early_stopping_on_a_scripted_validation_curve(monkeypatch, fresh_programs):
    # The validation loss is scripted: it falls until epoch 4 (0-based), then rises.
    curve = jnp.array([5.0, 4.0, 3.0, 2.0, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5])
    real = jnn.train.program.make_run_epoch
    seen = []

    def val_fn(params, x, y, epoch):
        return {"loss": curve[epoch], "accuracy": jnp.asarray(0.5)}

    def scripted(*args, **kwargs):
        seen.append(True)
        return real(*args, **{**kwargs, "val_fn": val_fn})

    monkeypatch.setattr(jnn.train.program, "make_run_epoch", scripted)
    train, _ = _spirals()
    r = fit(train, TrainConfig(**{**SMALL, "early_stopping": EarlyStopping(patience=3)}), task=NET)
    assert seen and r.stopped_by == "early_stopping"
    assert r.best_epoch == 4 and int(r.state.epoch) == 8  # epochs 5, 6, 7 are the 3 bad ones
    assert r.history["val_loss"] == pytest.approx([5.0, 4.0, 3.0, 2.0, 1.0, 1.5, 2.0, 2.5])
    assert r.message.startswith("stopped: early stopping on val_loss after 3 epochs")
    # The returned params are those saved at the best epoch, not the last ones.
    assert not np.array_equal(r.params[0]["w"], r.state.params[0]["w"])
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(r.params), jax.tree.leaves(r.state.best_params)))


@pytest.mark.slow
def test_max_steps_and_loss_tolerance_stop_the_run():
    train, _ = _spirals()
    r = fit(train, TrainConfig(**{**SMALL, "max_steps": 20}), task=NET)  # 17 steps per epoch
    assert r.stopped_by == "max_steps" and int(r.state.step) == 20 and int(r.state.epoch) == 2
    tol = EarlyStopping("train_loss", patience=3, min_delta=10.0, restore_best=False)
    r = fit(train, TrainConfig(**{**SMALL, "max_epochs": 200, "loss_tol": tol, "early_stopping": None}), task=NET)
    assert r.stopped_by == "loss_tol" and int(r.state.epoch) == 4  # epoch 1 sets the best, 3 more fail by 10


def test_non_finite_gradient_stops_with_the_step_and_leaf_named(tmp_path):
    train, _ = _spirals()
    cfg = TrainConfig(**{**SMALL, "optimizer": "sgd", "learning_rate": 1e12})
    r = fit(train, cfg, callbacks=[RunFolder(tmp_path / "run")], task=jnn.MLP(hidden=NET.hidden, keep_prob=1.0, l2=0.0))
    assert r.stopped_by == "non_finite"
    assert re.search(
        rf"non-finite value in the gradient of layers\[\d\]\.[wb] at step {int(r.state.bad_step)} ", r.message
    ), r.message
    assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves(r.state.params))
    saved = jnn.checkpoint.restore(tmp_path / "run" / "checkpoint.npz", r.state)
    assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves(saved.params))


@pytest.mark.parametrize("check", [True, False])
def test_check_finite_refuses_or_applies_a_non_finite_gradient_under_a_finite_loss(check):
    # A NaN in a padded (masked) row: the loss ignores the row, but its gradient is NaN·0 = NaN.
    cfg = TrainConfig(optimizer="sgd", check_finite=check, batch_size=4)
    params = jnn.init_mlp(jax.random.key(0), [2, 4, 3])
    train_step, _, s0, _ = _mlp_step(cfg, params, jnn.MLP(hidden=(4,), keep_prob=1.0))
    x = jnp.ones((4, 2)).at[3].set(jnp.nan)
    s1, m = train_step(s0, Batch(x, jnp.zeros(4, jnp.int32), jnp.arange(4) < 3))
    w1 = np.asarray(s1.params[0]["w"])
    if check:
        assert int(s1.status) == 5 and int(s1.bad_leaf) >= 0 and int(s1.step) == 0
        np.testing.assert_array_equal(w1, np.asarray(params[0]["w"]))
    else:
        assert int(s1.status) == 0 and int(s1.step) == 1 and np.isnan(w1).any()
    with pytest.raises(TypeError, match="check_finite must be a bool; got 'no'"):
        TrainConfig(check_finite="no")


@pytest.mark.slow
def test_same_seed_same_run_different_seed_different_run():
    train, _ = _spirals()
    cfg = TrainConfig(**{**SMALL, "max_epochs": 5})
    a, b = fit(train, cfg, task=NET), fit(train, cfg, task=NET)
    c = fit(train, TrainConfig(**{**SMALL, "max_epochs": 5, "seed": 1}), task=NET)
    assert all(
        np.array_equal(u, v)
        for u, v in zip(jax.tree.leaves(a.state), jax.tree.leaves(b.state))
        if not jnp.issubdtype(u.dtype, jax.dtypes.prng_key)
    )
    assert not np.array_equal(a.params[0]["w"], c.params[0]["w"])


@pytest.mark.slow
def test_any_optax_optimizer_works():
    train, _ = _spirals()
    # Runs under the suite's strict dtype promotion, which optax's Adam alone would not survive.
    r = fit(
        train, TrainConfig(**SMALL), optimizer=optax.chain(optax.clip_by_global_norm(1.0), optax.adam(1e-2)), task=NET
    )
    r_adam = fit(train, TrainConfig(**{**SMALL, "optimizer": "adam", "learning_rate": 1e-2}), task=NET)
    assert r_adam.history["train_loss"][-1] < r_adam.history["train_loss"][0]
    assert r.history["train_loss"][-1] < r.history["train_loss"][0]
    assert "learning_rate" not in r.history.metrics  # omitted for a transform without injected hyperparams


def test_run_folder_files(tmp_path):
    train, _ = _spirals()
    r = fit(train, TrainConfig(**{**SMALL, "max_epochs": 3}), callbacks=[RunFolder(tmp_path / "run")], task=NET)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["config"]["max_epochs"] == 3 and cfg["environment"]["jax"] == jax.__version__ and cfg["config_hash"]
    hist = json.loads((tmp_path / "run" / "history.json").read_text())
    assert hist["epochs"] == 3 and len(hist["val_accuracy"]) == 3
    assert (tmp_path / "run" / "history.csv").read_text().splitlines()[
        0
    ] == "epoch,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate"
    assert r.history["learning_rate"] == pytest.approx([0.05] * 3)


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(learning_rate=0.0), ValueError, r"learning_rate must be in \(0, inf\]; got 0"),
        (dict(learning_rate=-1.0), ValueError, "learning_rate must be in"),
        (dict(batch_size=0), ValueError, r"batch_size must be an integer in \[1, 2147483647\]; got 0"),
        (dict(early_stopping={"patience": -1}), ValueError, "patience must be an integer"),
        (
            dict(early_stopping={"monitor": "acc"}),
            ValueError,
            "monitor must name a recorded metric, train_<name> or val_<name>",
        ),
        (
            dict(early_stopping={"monitor": "val_kappa"}),
            ValueError,
            r"'val_kappa' is not a metric jnn knows: .*mode must be 'min' or 'max'",
        ),
        (dict(early_stopping={"mode": "up"}), ValueError, r"mode must be one of \['min', 'max'\]; got 'up'"),
        (dict(dropout_mode="standard"), ValueError, "mode must be one of"),
        (dict(keep_prob=0.0), ValueError, r"keep_prob must be in \(0, 1\]"),
        (dict(optimizer="rmsprop"), ValueError, r"optimizer must be one of \['sgd', 'momentum', 'adam', 'adamw'\]"),
        (dict(lr_schedule="cosine", warmup_epochs=3), ValueError, "warmup_epochs is for lr_schedule='warmup-cosine'"),
        (
            dict(lr_schedule="warmup-cosine", warmup_epochs=5, max_epochs=5),
            ValueError,
            r"warmup_epochs must be in \[0, 4\]",
        ),
        (dict(weight_decay=-1.0), ValueError, r"weight_decay must be in \[0, inf\]"),
        (dict(hidden=(8, 0)), ValueError, r"hidden\[1\] must be an integer in \[1, 2147483647\]; got 0"),
        (dict(max_epochs=0), ValueError, "max_epochs must be an integer"),
        (dict(l2=-1e-3), ValueError, r"l2 must be in \[0, inf\]"),
    ],
)
def test_config_validation(kwargs, exc, match):
    cls = jnn.MLP if set(kwargs) <= set(jnn.mlp.MLP_FIELDS) else TrainConfig
    with pytest.raises(exc, match=match):
        cls.from_dict(kwargs)


def test_a_config_refuses_the_mlps_fields_naming_jnn_mlp():
    with pytest.raises(ValueError, match=r"config key\(s\) \['hidden', 'l2'\] describe the model.*jnn.MLP"):
        TrainConfig.from_dict({"hidden": [8], "l2": 0.1, "max_epochs": 3})
    with pytest.raises(TypeError, match="unexpected keyword argument 'hidden'"):
        TrainConfig(hidden=(8,))
    with pytest.raises(ValueError, match=r"unknown MLP key\(s\) \['max_epochs'\]"):
        jnn.MLP.from_dict({"max_epochs": 3})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            dict(early_stopping=False),
            r"early_stopping must be a jnn.EarlyStopping or None \(None trains for the budget",
        ),
        (dict(early_stopping={"patience": 3}), "early_stopping must be a jnn.EarlyStopping or None"),
        (
            dict(loss_tol=0.1),
            r"loss_tol must be a jnn.EarlyStopping or None \(a tolerance t on the training loss over "
            r"k epochs is EarlyStopping\('train_loss', patience=k, min_delta=t, restore_best=False\)\)",
        ),
        (dict(loss_tol=EarlyStopping("train_loss")), None),
    ],
)
def test_stopping_rules_are_early_stopping_objects(kwargs, match):
    if match is None:
        with pytest.raises(ValueError, match="loss_tol.restore_best must be False"):
            TrainConfig(**kwargs)
        return
    with pytest.raises(TypeError, match=match):
        TrainConfig(**kwargs)


def test_flat_early_stopping_keys_of_older_configs_are_read():
    old = {"early_stopping": True, "monitor": "val_accuracy", "patience": 7, "min_delta": 0.01, "start_epoch": 2,
           "restore_best": False, "monitor_mode": "max", "loss_tol": 0.5, "tol_patience": 4}  # fmt: skip
    c = TrainConfig.from_dict(old)
    assert c.early_stopping == EarlyStopping("val_accuracy", 7, 0.01, 2, False, "max")
    assert c.loss_tol == EarlyStopping("train_loss", 4, 0.5, 0, False)
    assert TrainConfig.from_dict({"early_stopping": False, "patience": 3, "loss_tol": None}).early_stopping is None
    assert TrainConfig.from_dict({"patience": 3}).early_stopping == EarlyStopping(patience=3)
    assert TrainConfig.from_dict({"early_stopping": {"monitor": "train_loss"}}).early_stopping == EarlyStopping(
        "train_loss", patience=30
    )  # a partial table keeps the default rule's other attributes
    tol = EarlyStopping("train_loss", restore_best=False)
    now = TrainConfig(early_stopping=EarlyStopping("val_accuracy", 7), loss_tol=tol)
    assert TrainConfig.from_dict(now.to_dict()) == now
    assert TrainConfig.from_dict(json.loads(json.dumps(now.to_dict()))) == now
    with pytest.raises(ValueError, match=r"unknown early_stopping key\(s\) \['wait'\]"):
        TrainConfig.from_dict({"early_stopping": {"wait": 3}})
    with pytest.raises(ValueError, match="not both early_stopping=None and the flat key"):
        TrainConfig.from_dict({"early_stopping": None, "patience": 3})


def test_data_dependent_validation():
    train, _ = _spirals()
    with pytest.raises(ValueError, match=r"batch_size must be in \[1, 1080\] .* got 5000"):
        fit(train, TrainConfig(batch_size=5000), task=NET)
    with pytest.raises(ValueError, match="sizes must start with the data's 2 features and end with 3"):
        fit(train, TrainConfig(), task=jnn.MLP(sizes=(3, 8, 3)))
    with pytest.raises(ValueError, match="loss='binary' needs training data with 2 classes; it has 3"):
        fit(train, TrainConfig(), task=jnn.MLP(loss="binary"))
    with pytest.raises(ValueError, match="early_stopping on 'val_loss' needs a validation set"):
        fit(train, TrainConfig(val_fraction=0.0), task=NET)
    with pytest.raises(
        ValueError,
        match=r"monitor must be one of the recorded metrics \['train_loss', "
        r"'train_accuracy', 'val_loss', 'val_accuracy'\]; got 'val_r2'",
    ):
        fit(train, TrainConfig(early_stopping=EarlyStopping("val_r2")), task=NET)
    with pytest.raises(TypeError, match="train must be a jnn.data.Dataset"):
        fit((train.x, train.y), TrainConfig(), task=NET)
    with pytest.raises(ValueError, match="split part 1 .* would be empty"):
        fit(Dataset(np.zeros((3, 2), np.float32), np.array([0, 1, 2])), TrainConfig(batch_size=1), task=NET)


def test_binary_loss_trains_on_xor():
    train, test = load("xor")
    cfg = TrainConfig(batch_size=32, max_epochs=80, learning_rate=0.1, early_stopping=EarlyStopping(patience=80))
    net = jnn.MLP(hidden=(16,), loss="binary", activation="tanh", keep_prob=1.0)
    r = fit(train, cfg, task=net)
    assert evaluate(r.params, test, net)["accuracy"] > 0.95


@pytest.mark.slow
def test_rbg_generator_is_deterministic_resumable_and_learns(tmp_path):
    train, test = _spirals()
    cfg = TrainConfig(**{**SMALL, "max_epochs": 40, "prng_impl": "rbg"})
    net = jnn.MLP(hidden=NET.hidden, keep_prob=0.8)
    a, b = fit(train, cfg, task=net), fit(train, cfg, task=net)
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)))
    three = fit(train, TrainConfig(**{**SMALL, "max_epochs": 40}), task=net)
    assert not np.array_equal(a.params[0]["w"], three.params[0]["w"])  # other random bits
    rbg_keys, three_keys = Keys.from_seed(0, "rbg"), Keys.from_seed(0)
    for i in (0, 3):  # the init and split streams do not depend on the generator choice
        np.testing.assert_array_equal(jax.random.key_data(rbg_keys[i]), jax.random.key_data(three_keys[i]))
    assert evaluate(a.params, test, net)["accuracy"] > 0.6
    half = fit(train, cfg, stop_at_epoch=20, callbacks=[RunFolder(tmp_path / "r")], task=net)
    assert half.stopped_by == "paused"
    rest = fit(train, cfg, callbacks=[RunFolder(tmp_path / "r", resume=True)], task=net)
    assert all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(rest.params), jax.tree.leaves(a.params)))
    with pytest.raises(ValueError, match=r"prng_impl must be one of \['threefry2x32', 'rbg'\]; got 'philox'"):
        TrainConfig(prng_impl="philox")
