"""Mixed precision: bfloat16 forward/backward, float32 master params, gradients and optimiser state."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn.datasets import load
from jnn.task import check_task
from jnn.train import TrainConfig, fit
from jnn.train.precision import compute_task

NET = jnn.MLP(hidden=(32, 32), keep_prob=0.8)


@pytest.fixture(scope="module")
def spirals():
    return load("spirals", seed=0)


def test_the_compute_task_casts_in_and_out_and_its_gradient_is_float32(spirals):
    train, _ = spirals
    task = NET.task_for(train)
    ct = check_task(task, train, batch_size=16)
    low = compute_task(ct, "bfloat16")
    assert compute_task(ct, None) is ct and compute_task(ct, "float32") is ct
    params = task.init(jax.random.key(0))
    x, hyper = jnp.asarray(train.x[:16]), {k: jnp.float32(v) for k, v in ct.hyper.items()}
    out = low.task.apply(params, x, key=None, train=False, hyper=hyper)
    cast = jax.tree.map(lambda a: a.astype(jnp.bfloat16), params)
    by_hand = task.apply(cast, x.astype(jnp.bfloat16), key=None, train=False, hyper=hyper)  # hyper stays float32
    assert out.dtype == jnp.float32 and by_hand.dtype == jnp.bfloat16
    assert np.array_equal(np.asarray(out), np.asarray(by_hand.astype(jnp.float32)))
    full = task.apply(params, x, key=None, train=False, hyper=hyper)
    assert 0 < float(jnp.max(jnp.abs(out - full))) < 0.05  # computed in bfloat16: close, not equal
    loss = lambda p: jnp.mean(low.task.apply(p, x, key=jax.random.key(1), train=True, hyper=hyper) ** 2)
    grads = jax.grad(loss)(params)
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(grads))
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))


def test_a_bfloat16_run_keeps_float32_params_and_state_and_learns(spirals):
    train, test = spirals
    cfg = TrainConfig(max_epochs=30, batch_size=32, learning_rate=0.1, early_stopping=None)
    full = fit(train, cfg, task=NET, callbacks=[jnn.Progress(bar=False)])
    low = fit(train, TrainConfig(**{**cfg.to_dict(), "compute_dtype": "bfloat16"}), task=NET,
              callbacks=[jnn.Progress(bar=False)])  # fmt: skip
    floats = [l for l in jax.tree.leaves((low.params, low.state.opt_state)) if jnp.issubdtype(l.dtype, jnp.floating)]
    assert floats and all(l.dtype == jnp.float32 for l in floats)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(low.params)))
    acc = {k: jnn.evaluate(r.params, test, NET)["accuracy"] for k, r in (("f32", full), ("bf16", low))}
    assert acc["bf16"] >= acc["f32"] - 0.05, acc
    assert low.history["train_loss"][-1] < 0.7 * low.history["train_loss"][0]


def test_compute_dtype_is_validated_and_float16_is_refused():
    with pytest.raises(ValueError, match="compute_dtype='float16' needs loss scaling"):
        TrainConfig(compute_dtype="float16")
    with pytest.raises(ValueError, match=r"compute_dtype must be one of \['bfloat16', 'float32'\]; got 'int8'"):
        TrainConfig(compute_dtype="int8")
    with pytest.raises(TypeError, match="compute_dtype must be a string"):
        TrainConfig(compute_dtype=16)
    assert TrainConfig.from_dict(TrainConfig(compute_dtype="bfloat16").to_dict()).compute_dtype == "bfloat16"


@pytest.mark.slow
def test_mnist1d_in_bfloat16_stays_in_the_float32_accuracy_band():
    train, test = load("mnist1d")
    net = jnn.MLP(hidden=(100, 100), keep_prob=0.9)
    accs = {}
    for dtype in (None, "bfloat16"):
        cfg = TrainConfig(max_epochs=60, early_stopping=None, compute_dtype=dtype)
        accs[dtype] = jnn.evaluate(fit(train, cfg, task=net, callbacks=[jnn.Progress(bar=False)]).params, test,
                                   net)["accuracy"]  # fmt: skip
    assert accs[None] >= 0.6, accs
    assert abs(accs["bfloat16"] - accs[None]) <= 0.03, accs
