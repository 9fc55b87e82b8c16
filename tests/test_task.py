"""The open engine: a user's model, loss and metrics trained by fit/sweep, against hand-written references."""

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
from jnn.debug import trace_counts
from jnn.mlp import MLP_FIELDS
from jnn.sweep import sweep
from jnn.train import EarlyStopping, Keys, TrainConfig, fit

D, H = 5, 16


def residual_task(*, keep_prob=1.0, loss="mse", metrics=None, hyper=None, out=1, nan_leaf=False):
    """A residual MLP (not jnn's MLP): params are a nested dict, x + block(x) skip connections."""

    def init(key):
        k = jax.random.split(key, 4)
        return {
            "inp": {"w": jax.random.normal(k[0], (D, H)) / D**0.5, "b": jnp.zeros(H)},
            "blocks": [{"w": jax.random.normal(k[i + 1], (H, H)) * 0.1 / H**0.5} for i in range(2)],
            "out": {"w": jax.random.normal(k[3], (H, out)) / H**0.5, "b": jnp.zeros(out)},
        }

    def apply(params, x, *, key, train, hyper):
        h = jnp.tanh(x @ params["inp"]["w"] + params["inp"]["b"].reshape(1, -1))
        for i, blk in enumerate(params["blocks"]):
            r = jnp.tanh(h @ blk["w"])
            if train and keep_prob < 1.0:
                keep = jax.random.bernoulli(jax.random.fold_in(key, i), hyper["keep_prob"], r.shape)
                r = jnp.where(keep, r / hyper["keep_prob"], 0.0)
            h = h + r
        y = h @ params["out"]["w"] + params["out"]["b"].reshape(1, -1)
        if nan_leaf:  # finite value, NaN gradient for blocks[1].w only: d/dw sqrt(0·w) = 0·∞
            y = y + 0.0 * jnp.sum(jnp.sqrt(params["blocks"][1]["w"] * 0.0))
        return y

    def penalty(params, hyper):
        return hyper["l2"] * sum(jnp.sum(b["w"] ** 2) for b in params["blocks"])

    return jnn.Task(init=init, apply=apply, loss=loss, penalty=penalty, metrics=metrics,
                    hyper={"l2": 1e-3, "keep_prob": keep_prob, **(hyper or {})})  # fmt: skip


def regression_data(n=96, seed=0, k=None):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    w = rng.normal(size=(D,) if k is None else (D, k)).astype(np.float32)
    y = np.tanh(x @ w) + 0.1 * rng.normal(size=(n,) if k is None else (n, k)).astype(np.float32)
    return Dataset(x, y.astype(np.float32))


def rel_err(a, b) -> float:
    """Max-norm relative difference of two params pytrees as whole vectors: max|a − b| / max|b|."""
    diff = max(
        float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )
    return diff / max(float(np.max(np.abs(np.asarray(v)))) for v in jax.tree.leaves(b))


CFG = dict(optimizer="momentum", learning_rate=0.05, batch_size=16, max_epochs=4, early_stopping=None, val_fraction=0.0)


def optax_loop(task, ds, cfg):
    """The same training written as a plain optax loop: same keys, permutations, loss and updates."""
    keys = Keys.from_seed(cfg.seed)
    params = task.init(keys.init)
    hyper = {k: jnp.asarray(v, jnp.float32) for k, v in task.hyper.items()}
    tx = cfg.make_optimizer()
    opt = tx.init(params)
    loss_fn = jnn.losses.loss_function(task.loss)

    @jax.jit
    def step(params, opt, x, y, key, hyper):
        def objective(p):
            return jnp.mean(loss_fn(task.apply(p, x, key=key, train=True, hyper=hyper), y)) + task.penalty(p, hyper)

        grads = jax.grad(objective)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    n, t, s = len(ds), cfg.batch_size, 0
    for epoch in range(cfg.max_epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(keys.data, epoch), n))
        for i in range(0, n, t):
            idx = perm[i : i + t]
            params, opt = step(
                params, opt, jnp.asarray(ds.x[idx]), jnp.asarray(ds.y[idx]), jax.random.fold_in(keys.dropout, s), hyper
            )
            s += 1
    return params


@pytest.mark.parametrize("keep_prob", [1.0, 0.8])
@pytest.mark.slow
def test_custom_model_equals_a_plain_optax_loop_bitwise_with_full_batches(keep_prob):
    task, ds, cfg = residual_task(keep_prob=keep_prob), regression_data(96), TrainConfig(**CFG)
    r = fit(ds, cfg, task=task)
    ref = optax_loop(task, ds, cfg)
    assert r.stopped_by == "max_epochs" and int(r.state.step) == 4 * 96 // 16
    for a, b in zip(jax.tree.leaves(r.params), jax.tree.leaves(ref)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("keep_prob", [1.0, 0.8])
@pytest.mark.slow
def test_custom_model_with_a_ragged_last_batch_equals_the_loop_to_float_rounding(keep_prob):
    task, ds, cfg = residual_task(keep_prob=keep_prob), regression_data(100), TrainConfig(**CFG)
    r = fit(ds, cfg, task=task)  # 100 = 6 batches of 16 + one of 4, padded to 16 and masked
    ref = optax_loop(task, ds, cfg)
    assert int(r.state.step) == 4 * 7
    assert rel_err(r.params, ref) <= 1e-6


def test_one_trace_per_run_and_evaluate_compiles_once(fresh_programs):
    task, ds = residual_task(keep_prob=0.8), regression_data(100)
    before = dict(trace_counts())
    r = fit(
        ds,
        TrainConfig(**{**CFG, "val_fraction": 0.2, "early_stopping": EarlyStopping(patience=30), "max_epochs": 6}),
        task=task,
    )
    for name in ("run_epoch", "train_step", "eval_step"):
        assert trace_counts()[name] - before.get(name, 0) == 1, name
    before = dict(trace_counts())
    first = jnn.evaluate(r.params, ds, task)
    second = jnn.evaluate(r.params, ds.subset(np.arange(50)), task)  # another shape: one more trace
    third = jnn.evaluate(r.params, ds, task)
    assert trace_counts()["eval_step"] - before.get("eval_step", 0) == 2
    assert first == third and set(first) == {"loss", "mse", "mae", "r2", "n"} and second["n"] == 50


@pytest.mark.slow
def test_resume_of_a_custom_model_is_bitwise(tmp_path):
    task, ds = residual_task(keep_prob=0.8), regression_data(100)
    cfg = TrainConfig(**{**CFG, "max_epochs": 6, "val_fraction": 0.2, "early_stopping": EarlyStopping(patience=10)})
    whole = fit(ds, cfg, task=task)
    half = fit(ds, cfg, task=task, stop_at_epoch=3, callbacks=[RunFolder(tmp_path / "r")])
    assert half.stopped_by == "paused"
    rest = fit(ds, cfg, task=task, callbacks=[RunFolder(tmp_path / "r", resume=True)])
    for a, b in zip(jax.tree.leaves(rest.state.params), jax.tree.leaves(whole.state.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert rest.history.metrics == whole.history.metrics
    # config.json records the task, not the built-in MLP's fields, which this run never used.
    stored = json.loads((tmp_path / "r" / "config.json").read_text())
    assert not set(stored["config"]) & set(MLP_FIELDS) and stored["task"]["hyper"] == task.hyper
    assert "mlp" not in stored and "sizes" not in stored
    assert stored["config"]["learning_rate"] == cfg.learning_rate
    other = residual_task(keep_prob=0.8, out=2)  # another architecture: refused, nothing overwritten
    with pytest.raises(ValueError, match="leaf .*out.*w.* expected|another|structure|loss="):
        fit(regression_data(100, k=2), cfg, task=other, callbacks=[RunFolder(tmp_path / "r", resume=True)])


def test_non_finite_guard_names_the_leaf_of_a_nested_dict():
    r = fit(regression_data(64), TrainConfig(**CFG), task=residual_task(nan_leaf=True))
    assert r.stopped_by == "non_finite" and int(r.state.step) == 0
    assert "non-finite value in the gradient of ['blocks'][1]['w'] at step 0" in r.message, r.message


@pytest.mark.slow
def test_sweep_over_a_custom_hyperparameter_equals_separate_fits(fresh_programs):
    task, ds = residual_task(keep_prob=0.8), regression_data(100)
    cfg = TrainConfig(
        **{**CFG, "val_fraction": 0.2, "early_stopping": EarlyStopping("val_r2", patience=2), "max_epochs": 8}
    )
    before = dict(trace_counts())
    res = sweep(ds, cfg, task=task, test=ds, l2=[0.0, 1e-2, 1.0], seed=[0, 1, 0], combine="zip")
    assert trace_counts()["run_epoch"] - before.get("run_epoch", 0) == 1
    assert [r["l2"] for r in res.rows] == [0.0, 1e-2, 1.0] and "test_r2" in res.rows[0]
    for i, (l2, seed) in enumerate([(0.0, 0), (1e-2, 1), (1.0, 0)]):
        one = fit(ds, dataclasses.replace(cfg, seed=seed), task=task._replace(hyper={**task.hyper, "l2": l2}))
        assert rel_err(res.member_params(i), one.params) <= 1e-6  # vmapped matmuls round differently
        assert res.rows[i]["epochs"] == len(one.history)
    assert res.direction == "max" and res.best()["best_val"] == max(r["best_val"] for r in res.rows)
    with pytest.raises(
        ValueError,
        match=r"sweep axis must be one of \['learning_rate', 'batch_size', 'seed', 'l2', 'keep_prob'\], or a hyper"
        r"parameter .*; got 'width'",
    ):
        sweep(ds, cfg, task=task, width=[1, 2])


@pytest.mark.slow
def test_explicit_validation_warm_start_user_metrics_and_early_stopping_on_them(tmp_path):
    train, val = regression_data(100, seed=0), regression_data(40, seed=1)
    mse_plus = lambda out, y: jnp.mean((out - y.reshape(out.shape)) ** 2, axis=-1) + 1.0
    task = residual_task(metrics={"r2": "r2", "shifted": mse_plus})
    cfg = TrainConfig(
        **{
            **CFG,
            "early_stopping": EarlyStopping("val_shifted", patience=3, mode="min"),
            "max_epochs": 30,
            "val_fraction": 0.5,
        }
    )
    r = fit(train, cfg, task=task, val=val, callbacks=[RunFolder(tmp_path / "run")])
    assert len(r.history["val_r2"]) == int(r.state.epoch) > 0
    h = r.history
    assert h.keys == ["train_loss", "train_r2", "train_shifted", "val_loss", "val_r2", "val_shifted", "learning_rate"]
    ev = jnn.evaluate(r.state.params, val, task)
    assert h["val_shifted"][-1] == pytest.approx(ev["shifted"], rel=1e-5)
    assert h["val_shifted"][-1] == pytest.approx(ev["loss"] + 1.0, rel=1e-5)
    assert r.best_epoch == int(np.argmin(h["val_shifted"]))
    assert (tmp_path / "run" / "history.csv").read_text().splitlines()[
        0
    ] == "epoch,train_loss,train_r2,train_shifted,val_loss,val_r2,val_shifted,learning_rate"
    pytest.importorskip("matplotlib")
    from jnn.app.plots import plot_history

    png = plot_history(h, tmp_path / "h.png", best_epoch=r.best_epoch)
    assert png.stat().st_size > 10_000
    warm = fit(train, TrainConfig(**{**CFG, "max_epochs": 1}), task=task, init_params=r.params)
    cold = fit(train, TrainConfig(**{**CFG, "max_epochs": 1}), task=task)
    assert warm.history["train_loss"][0] < cold.history["train_loss"][0]
    with pytest.raises(
        ValueError,
        match=r"init_params\['out'\]\['b'\] must be float32\[1\] like the params from "
        r"task.init; got float32\[2\]",
    ):
        fit(train, TrainConfig(**CFG), task=task, init_params=residual_task(out=2).init(jax.random.key(0)))


@pytest.mark.slow
def test_the_builtin_mlp_through_the_contract_equals_fit_with_an_mlp():
    train, _ = jnn.datasets.load("spirals")
    for mode in ("inverted", "classic"):
        cfg = TrainConfig(max_epochs=3, batch_size=64)
        a = fit(train, cfg, task=jnn.MLP(hidden=(16, 16), keep_prob=0.8, l2=1e-3, dropout_mode=mode))
        sizes = (2, 16, 16, 3)
        task = jnn.mlp_task(sizes, keep_prob=0.8, l2=1e-3, dropout_mode=mode)
        b = fit(train, TrainConfig(max_epochs=3, batch_size=64), task=task)
        for u, v in zip(jax.tree.leaves(a.state.params), jax.tree.leaves(b.state.params)):
            np.testing.assert_array_equal(np.asarray(u), np.asarray(v))
        assert a.history.metrics == b.history.metrics


# ----------------------------------------------------------------------------------------------------
# built-in losses and metrics against NumPy / scikit-learn


def test_mse_and_multilabel_losses_match_numpy():
    rng = np.random.default_rng(0)
    f, y = rng.normal(size=(7, 3)).astype(np.float32), rng.normal(size=(7, 3)).astype(np.float32)
    assert float(jnn.mean_squared_error(f, y)) == pytest.approx(np.mean((f - y) ** 2), rel=1e-6)
    f1, y1 = f[:, :1], y[:, 0]
    assert float(jnn.mean_squared_error(f1, y1)) == pytest.approx(np.mean((f1[:, 0] - y1) ** 2), rel=1e-6)
    mask = np.array([1, 1, 0, 1, 0, 1, 1], bool)
    assert float(jnn.mean_squared_error(f, y, mask=mask)) == pytest.approx(np.mean((f - y)[mask] ** 2), rel=1e-6)
    t = (rng.random((7, 3)) > 0.5).astype(np.float32)
    p = 1 / (1 + np.exp(-f.astype(np.float64)))
    ref = -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))
    assert float(jnn.multilabel_cross_entropy(f, t)) == pytest.approx(ref, rel=1e-5)
    assert float(jnn.multilabel_cross_entropy(jnp.asarray([[1e4, -1e4]]), jnp.asarray([[1.0, 0.0]]))) == 0.0
    with pytest.raises(ValueError, match=r"y must have the shape of the logits \(7, 3\); got \(7,\)"):
        jnn.multilabel_cross_entropy(f, t[:, 0])


def test_sample_and_class_weights_match_a_weighted_numpy_mean():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(9, 3)).astype(np.float32)
    y = rng.integers(0, 3, 9).astype(np.int32)
    w = rng.random(9).astype(np.float32)
    logp = z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))
    per = -logp[np.arange(9), y]
    got = jnn.losses.masked_mean(jnn.per_example_loss("softmax", jnp.asarray(z), jnp.asarray(y)), None, jnp.asarray(w))
    assert float(got) == pytest.approx(np.average(per, weights=w), rel=1e-6)
    mask = np.arange(9) < 6
    got = jnn.losses.masked_mean(
        jnn.per_example_loss("softmax", jnp.asarray(z), jnp.asarray(y)), jnp.asarray(mask), jnp.asarray(w)
    )
    assert float(got) == pytest.approx(np.average(per[:6], weights=w[:6]), rel=1e-6)
    # class weights in fit: the per-example weights are sample_weight × class_weight[y]
    ds = Dataset(rng.normal(size=(9, 2)).astype(np.float32), y, sample_weight=w)
    cw = jnn.train.run_setup.class_weights(ds, {0: 2.0, 2: 0.5})
    np.testing.assert_allclose(cw, w * np.array([2.0, 1.0, 0.5])[y], rtol=1e-6)
    with pytest.raises(ValueError, match=r"class_weight keys must be class labels in \[0, 2\]; got \[3\]"):
        jnn.train.run_setup.class_weights(ds, {3: 1.0})


def test_a_weighted_fit_equals_a_fit_on_duplicated_rows():
    # Integer weights: weight 2 on a row is that row twice, under a full-batch gradient step.
    train, _ = jnn.datasets.load("spirals")
    x, y = train.x[:60], train.y[:60]
    w = np.where(np.arange(60) % 3 == 0, 2.0, 1.0).astype(np.float32)
    cfg = TrainConfig(optimizer="sgd", max_epochs=5, early_stopping=None, val_fraction=0.0)
    net = jnn.MLP(hidden=(8,), keep_prob=1.0, l2=0.0)
    weighted = fit(Dataset(x, y, sample_weight=w), dataclasses.replace(cfg, batch_size=60), task=net)
    rep = np.repeat(np.arange(60), w.astype(int))
    dup = fit(Dataset(x[rep], y[rep]), dataclasses.replace(cfg, batch_size=len(rep)), task=net)
    report = jnn.compare_grads(weighted.params, dup.params, rtol=1e-5)
    assert report.max_rel_err <= 1e-5, str(report)


def test_r2_matches_sklearn_and_regression_metrics_match_numpy():
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(2)
    for shape in ((50,), (50, 3)):
        y = rng.normal(size=shape).astype(np.float32)
        f = (y + 0.5 * rng.normal(size=shape)).astype(np.float32)
        out = f.reshape(50, -1)
        var = jnn.metrics.target_variance(jnp.asarray(y))
        assert float(jnp.mean(jnn.metrics.r2(out, y, y_var=var))) == pytest.approx(metrics.r2_score(y, f), rel=1e-5)
        assert float(jnp.mean(jnn.metrics.mae(out, y))) == pytest.approx(metrics.mean_absolute_error(y, f), rel=1e-5)
        assert float(jnp.mean(jnn.metrics.mse(out, y))) == pytest.approx(metrics.mean_squared_error(y, f), rel=1e-5)
    ds = regression_data(80)
    task = residual_task()
    params = task.init(jax.random.key(3))
    pred = np.asarray(task.apply(params, jnp.asarray(ds.x), key=None, train=False, hyper={}))[:, 0]
    ev = jnn.evaluate(params, ds, task)
    assert ev["r2"] == pytest.approx(metrics.r2_score(ds.y, pred), rel=1e-4, abs=1e-5)
    assert ev["loss"] == pytest.approx(ev["mse"], rel=1e-6)


def test_multilabel_mlp_trains_and_reports_accuracy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] + x[:, 2] > 0, x[:, 3] < 0.5], axis=1).astype(np.int32)
    ds = Dataset(x, y)
    r = fit(
        ds,
        TrainConfig(max_epochs=40, batch_size=32, learning_rate=0.1, early_stopping=EarlyStopping(patience=40)),
        task=jnn.MLP(loss="multilabel", hidden=(32,), keep_prob=1.0),
    )
    assert r.params[-1]["w"].shape == (32, 3)
    assert jnn.evaluate(r.params, ds, jnn.MLP(loss="multilabel", hidden=(32,)))["accuracy"] > 0.9


def test_mse_mlp_regression_learns():
    ds = regression_data(400, k=2)
    r = fit(
        ds,
        TrainConfig(
            max_epochs=60, batch_size=32, learning_rate=0.05, early_stopping=EarlyStopping("val_r2", patience=60)
        ),
        task=jnn.MLP(loss="mse", hidden=(32,), keep_prob=1.0),
    )
    assert r.params[-1]["w"].shape == (32, 2) and r.history["val_r2"][r.best_epoch] > 0.8


# ----------------------------------------------------------------------------------------------------
# bad input: a clear error naming the piece, before anything is compiled


def _bad(task, ds=None, cfg=None, **kw):
    before = trace_counts()["run_epoch"]
    fit(regression_data(32) if ds is None else ds, TrainConfig(**(cfg or CFG)), task=task, **kw)
    assert trace_counts()["run_epoch"] == before  # pragma: no cover - only reached if nothing raised


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (
            lambda: residual_task()._replace(apply=lambda p, x, *, key, train, hyper: x[:, :2] @ jnp.ones((2, 3))),
            ValueError,
            r"loss='mse' needs task.apply to return 1 value\(s\) per example .* got outputs of shape \(16, 3\)",
        ),
        (
            lambda: residual_task()._replace(apply=lambda p, x, *, key, train, hyper: x[:3]),
            ValueError,
            r"task.apply must return outputs \[batch, ...\] with batch = 16; got shape \(3, 5\)",
        ),
        (
            lambda: residual_task(loss=lambda out, y: jnp.mean((out[:, 0] - y) ** 2)),
            ValueError,
            r"task.loss\(outputs, y\) must return one value per example, shape \[batch\] = \(16,\); got shape "
            r"\(\) \(return the per-example values",
        ),
        (lambda: residual_task(metrics={"loss": "mse"}), ValueError, "metric name 'loss' clashes"),
        (lambda: residual_task(metrics=("accuracy",)), ValueError, "metric 'accuracy' needs a classification loss"),
        (
            lambda: residual_task(metrics={"bad": lambda out, y: out}),
            ValueError,
            r"metric 'bad' must return one value per example, shape \[batch\] = \(16,\); got shape \(16, 1\)",
        ),
        (
            lambda: residual_task()._replace(apply=lambda p, x, *, key, train, hyper: x @ p["nope"]),
            ValueError,
            r"task.apply\(params, x, train=True\) failed when traced: KeyError",
        ),
        (
            lambda: residual_task()._replace(penalty=lambda p, h: p["out"]["b"]),
            ValueError,
            r"task.penalty must return a scalar; got shape \(1,\)",
        ),
        (lambda: residual_task()._replace(hyper={"l2": "big"}), TypeError, r"task.hyper\['l2'\] must be a finite real"),
        (lambda: residual_task(loss="hinge"), ValueError, r"task.loss must be one of \['softmax', 'binary', 'mse', "),
        (
            lambda: (1, 2),
            TypeError,
            r"task must be a jnn.Task\(init, apply, loss, ...\), a jnn.MLP\(hidden, ...\) or "
            r"None \(the default MLP\); got tuple",
        ),  # fmt: skip
    ],
)
def test_a_bad_task_is_refused_before_training(make, exc, match):
    with pytest.raises(exc, match=match):
        _bad(make())


def test_targets_that_do_not_suit_the_loss_are_refused_without_advising_a_cast():
    x = np.zeros((20, 3), np.float32)
    reg = Dataset(x, np.linspace(25, 346, 20).round().astype(np.float32))  # whole-number regression targets
    with pytest.raises(
        ValueError,
        match=r"loss='softmax' needs integer class labels y \[n\] in the training data; "
        r"y holds real targets \(float32 of shape \(18,\), 18 distinct values\). "
        "For real-valued targets use loss='mse'",
    ) as err:
        fit(reg, TrainConfig(batch_size=4), task=jnn.MLP(hidden=(4,)))
    assert "astype" not in str(err.value)
    cls = Dataset(x, np.arange(20) % 3)
    with pytest.raises(
        ValueError,
        match=r"loss='mse' needs float targets y \[n\] or \[n, k\] in the training data; "
        r"y holds class labels \(int32",
    ):
        fit(cls, TrainConfig(batch_size=4), task=jnn.MLP(hidden=(4,), loss="mse"))
    with pytest.raises(ValueError, match="class_weight needs class labels; the data holds real targets"):
        fit(reg, TrainConfig(batch_size=4), task=jnn.MLP(hidden=(4,), loss="mse"), class_weight={0: 1.0})
    with pytest.raises(TypeError, match=r"task must be a jnn.Task.*, a jnn.MLP.* or None .*; got TrainConfig"):
        fit(reg, TrainConfig(batch_size=4), task=TrainConfig())
    with pytest.raises(ValueError, match=re.escape("val must hold data like train")):
        fit(reg, TrainConfig(batch_size=4), task=jnn.MLP(loss="mse", hidden=(4,)), val=cls)
