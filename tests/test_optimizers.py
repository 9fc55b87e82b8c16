"""Custom optimisers in sweeps, the learning_rate column, and weight averaging (EMA / Polyak) vs NumPy."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jnn
from jnn import TrainConfig, fit
from jnn.datasets import load
from jnn.sweep import sweep
from jnn.train import EarlyStopping
from jnn.train.averaging import AveragedState, averaged_params, weight_average
from jnn.train.optimizers import find_hyperparams, from_hyperparams, learning_rate_of, set_learning_rate

NET = jnn.MLP(hidden=(16,))
CFG = dict(batch_size=64, max_epochs=4, early_stopping=EarlyStopping(patience=50), learning_rate=0.05)


@pytest.fixture(scope="module")
def spirals():
    return load("spirals", seed=0)


def _member(res, i):
    return jax.tree.map(lambda a: a[i], res.params) if res.stacked else res.params[i]


def _close(a, b, tol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=tol)


def test_a_sweep_with_one_optax_chain_equals_separate_fits(spirals):
    train, _ = spirals
    cfg = TrainConfig(**CFG)

    def chain(lr):
        return optax.chain(optax.clip_by_global_norm(0.5), optax.inject_hyperparams(optax.sgd)(learning_rate=lr))

    res = sweep(train, cfg, optimizer=chain(0.05), learning_rate=[0.05, 0.2], seed=[0, 1], task=NET, combine="zip")
    for i, (lr, seed) in enumerate([(0.05, 0), (0.2, 1)]):
        one = fit(train, dataclasses.replace(cfg, seed=seed), optimizer=chain(lr), task=NET)
        _close(_member(res, i), one.params)
        np.testing.assert_allclose(res.histories[i]["train_loss"], one.history["train_loss"], rtol=0, atol=1e-6)
        # The learning rate column is the injected rate, as in the single fit; never NaN.
        assert res.histories[i]["learning_rate"] == pytest.approx([lr] * 4)
        assert one.history["learning_rate"] == pytest.approx([lr] * 4)


def test_a_sweep_with_an_optimizer_of_the_hyperparameters_equals_separate_fits(spirals):
    train, _ = spirals
    cfg = TrainConfig(**CFG)

    def build(h):
        return optax.chain(optax.clip_by_global_norm(h["clip"]), optax.sgd(h["learning_rate"], momentum=0.9))

    res = sweep(
        train, cfg, optimizer=build, learning_rate=[0.02, 0.05, 0.02], clip=[0.1, 1.0, 10.0], task=NET, combine="zip"
    )
    assert res.rows[0]["clip"] == 0.1 and res.rows[2]["clip"] == 10.0
    finals = []
    for i, (lr, clip) in enumerate([(0.02, 0.1), (0.05, 1.0), (0.02, 10.0)]):
        one = fit(train, cfg, optimizer=build({"learning_rate": lr, "clip": clip}), task=NET)
        _close(_member(res, i), one.params)
        np.testing.assert_allclose(res.histories[i]["val_loss"], one.history["val_loss"], rtol=0, atol=1e-6)
        # A plain optax.sgd holds no injected rate: the fit's history has no learning_rate column at all.
        assert "learning_rate" not in one.history
        finals.append(one.history["train_loss"][-1])
    assert len(set(finals)) == 3  # the clip norm reached every member: three different runs


def test_an_optimizer_without_an_injected_rate_omits_the_column_and_refuses_a_rate_axis(spirals):
    train, _ = spirals
    cfg = TrainConfig(**CFG)
    r = fit(train, cfg, optimizer=optax.adam(1e-2), task=NET)
    assert "learning_rate" not in r.history and all(np.isfinite(r.history["train_loss"]))
    res = sweep(train, cfg, optimizer=optax.adam(1e-2), seed=[0, 1], task=NET)
    assert all("learning_rate" not in h for h in res.histories)
    with pytest.raises(ValueError, match="learning_rate axis needs the optimizer's learning rate as state"):
        sweep(train, cfg, optimizer=optax.adam(1e-2), learning_rate=[0.1, 0.2], task=NET)
    with pytest.raises(ValueError, match="sweep axis must be one of"):
        sweep(train, cfg, optimizer=optax.adam(1e-2), clip=[0.1, 0.2], task=NET)
    with pytest.raises(TypeError, match="optimizer must be None"):
        sweep(train, cfg, optimizer="adam", seed=[0, 1], task=NET)


def test_hyperparameter_state_is_found_inside_chains_and_set_in_place():
    params = {"w": jnp.ones(3)}
    tx = optax.chain(optax.clip(1.0), weight_average(optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)))
    state = tx.init(params)
    assert float(learning_rate_of(state)) == pytest.approx(0.1)
    set_learning_rate(state, 0.3)
    assert float(learning_rate_of(state)) == pytest.approx(0.3)
    assert learning_rate_of(optax.sgd(0.1).init(params)) is None
    with pytest.raises(ValueError, match="holds no learning_rate"):
        set_learning_rate(optax.sgd(0.1).init(params), 0.2)
    hp = from_hyperparams(lambda h: optax.sgd(h["learning_rate"]), {"learning_rate": 0.25}).init(params)
    assert float(find_hyperparams(hp, "learning_rate")["learning_rate"]) == pytest.approx(0.25)


def _numpy_average(decay, steps=25):
    """Run SGD on a quadratic with weight_average and with a NumPy transcription of the module's formulas."""
    rng = np.random.default_rng(0)
    a_mat, b = rng.normal(size=(4, 4)), rng.normal(size=4)
    loss = lambda p: 0.5 * jnp.sum((jnp.asarray(a_mat) @ p["w"] - jnp.asarray(b)) ** 2)
    tx = weight_average(optax.sgd(0.01), decay=decay)
    params = {"w": jnp.asarray(rng.normal(size=4))}
    state = tx.init(params)
    theta = [np.asarray(params["w"])]
    for _ in range(steps):
        updates, state = tx.update(jax.grad(loss)(params), state, params)
        params = optax.apply_updates(params, updates)
        theta.append(np.asarray(params["w"]))
    if decay is None:
        want = np.mean(theta[1:], axis=0)
    else:
        want = theta[0]
        for t in theta[1:]:
            want = decay * want + (1 - decay) * t
    # The wrapped params are those of plain SGD, bit for bit.
    plain = {"w": jnp.asarray(theta[0])}
    sgd, s = optax.sgd(0.01), optax.sgd(0.01).init(plain)
    for _ in range(steps):
        u, s = sgd.update(jax.grad(loss)(plain), s, plain)
        plain = optax.apply_updates(plain, u)
    np.testing.assert_array_equal(np.asarray(plain["w"]), theta[-1])
    assert isinstance(state, AveragedState) and int(state.count) == steps
    return np.asarray(averaged_params(state)["w"]), want, theta


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.9])
def test_ema_equals_a_numpy_ema_of_the_iterates(decay):
    with jnn.float64_mode():
        got, want, theta = _numpy_average(decay)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if decay == 0.0:
        np.testing.assert_array_equal(got, theta[-1])  # d = 0: the average is the last iterate


def test_polyak_equals_the_numpy_mean_of_the_iterates():
    with jnn.float64_mode():
        got, want, _ = _numpy_average(None)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_averaging_in_fit_keeps_the_params_bit_for_bit(spirals):
    train, _ = spirals
    cfg = TrainConfig(**CFG)
    plain = fit(train, cfg, task=NET)
    assert plain.averaged_params is None
    for average, decay in (("ema", 0.9), ("polyak", 0.999)):
        r = fit(train, dataclasses.replace(cfg, average=average, average_decay=decay), task=NET)
        for x, y in zip(jax.tree.leaves(plain.params), jax.tree.leaves(r.params), strict=True):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        assert r.history["train_loss"] == plain.history["train_loss"]
        avg = jax.tree.leaves(r.averaged_params)
        assert all(np.all(np.isfinite(np.asarray(a))) for a in avg)
        assert any(not np.array_equal(np.asarray(a), np.asarray(p)) for a, p in zip(avg, jax.tree.leaves(r.params)))
    with pytest.raises(ValueError, match="average"):
        TrainConfig(**CFG, average="swa")
    with pytest.raises(ValueError, match="average_decay"):
        TrainConfig(**CFG, average="ema", average_decay=1.0)
