"""Equinox and Flax NNX modules as tasks: keys reach their dropout, fit and sweep train them, mistakes are named."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn.datasets import load
from jnn.sweep import sweep
from jnn.task import KeyIgnoredWarning, check_key_used
from jnn.train import TrainConfig, fit

CFG = TrainConfig(max_epochs=15, batch_size=32, learning_rate=0.1, early_stopping=None)


@pytest.fixture(scope="module")
def spirals():
    return load("spirals", seed=0)


def _outputs(task, key, train=True, rows=16, data=None):
    params = task.init(jax.random.key(0))
    x = jnp.asarray(data.x[:rows])
    return np.asarray(
        task.apply(params, x, key=key, train=train, hyper={k: jnp.float32(v) for k, v in task.hyper.items()})
    )


def _eqx_mlp():
    eqx = pytest.importorskip("equinox")

    class MLP(eqx.Module):
        l1: eqx.nn.Linear
        drop: eqx.nn.Dropout
        l2: eqx.nn.Linear

        def __init__(self, key):
            k1, k2 = jax.random.split(key)
            self.l1, self.drop, self.l2 = (
                eqx.nn.Linear(2, 32, key=k1),
                eqx.nn.Dropout(0.2),
                eqx.nn.Linear(32, 3, key=k2),
            )

        def __call__(self, x, *, key=None):
            return self.l2(self.drop(jax.nn.relu(self.l1(x)), key=key))

    return eqx, MLP


def test_an_equinox_module_gets_the_step_key_and_trains(spirals):
    train, test = spirals
    eqx, MLP = _eqx_mlp()
    task = jnn.Task.from_equinox(MLP, loss="softmax")  # built from the run's seed
    a, b = _outputs(task, jax.random.key(1), data=train), _outputs(task, jax.random.key(2), data=train)
    assert not np.array_equal(a, b)  # dropout masks come from the key
    assert np.array_equal(_outputs(task, None, train=False, data=train), _outputs(task, None, train=False, data=train))
    r = fit(train, CFG, task=task, callbacks=[jnn.Progress(bar=False)])
    assert r.history["train_loss"][-1] < r.history["train_loss"][0]
    assert jnn.evaluate(r.params, test, task)["accuracy"] > 0.5
    again = fit(train, CFG, task=task, callbacks=[jnn.Progress(bar=False)])
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(r.params), jax.tree.leaves(again.params)))
    seeds = [jax.tree.leaves(task.init(jax.random.key(s))) for s in (0, 1)]
    assert not np.array_equal(seeds[0][0], seeds[1][0])  # make(key): the seed sets the initial params


def test_an_equinox_dropout_rate_is_swept_in_one_compile(spirals):
    train, _ = spirals
    eqx, MLP = _eqx_mlp()
    task = jnn.Task.from_equinox(MLP(jax.random.key(0)), hyper={"p": 0.2},
                                 set_hyper=lambda m, h: eqx.tree_at(lambda m: m.drop.p, m, h["p"]))  # fmt: skip
    res = sweep(train, TrainConfig(max_epochs=3, batch_size=32, early_stopping=None), task=task, p=[0.0, 0.5],
                callbacks=[jnn.Progress(bar=False)])  # fmt: skip
    assert [r["p"] for r in res.rows] == [0.0, 0.5]
    h = res.histories
    assert h[0]["train_loss"] != h[1]["train_loss"]
    with pytest.raises(ValueError, match=r"hyper \['p'\] needs set_hyper"):
        jnn.Task.from_equinox(MLP(jax.random.key(0)), hyper={"p": 0.2})
    with pytest.raises(TypeError, match="model must be an equinox.Module or a function key -> Module; got int"):
        jnn.Task.from_equinox(3)


def _nnx_mlp():
    nnx = pytest.importorskip("flax.nnx")

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(2, 32, rngs=rngs)
            self.drop = nnx.Dropout(0.2, rngs=rngs)  # its stream is tagged "default"
            self.l2 = nnx.Linear(32, 3, rngs=rngs)

        def __call__(self, x):
            return self.l2(self.drop(nnx.relu(self.l1(x))))

    return nnx, MLP


def test_an_nnx_module_gets_the_step_key_and_trains(spirals):
    train, test = spirals
    nnx, MLP = _nnx_mlp()
    task = jnn.Task.from_nnx(lambda key: MLP(nnx.Rngs(key)))
    a, b = _outputs(task, jax.random.key(1), data=train), _outputs(task, jax.random.key(2), data=train)
    assert not np.array_equal(a, b)
    assert np.array_equal(_outputs(task, None, train=False, data=train), _outputs(task, None, train=False, data=train))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = fit(train, CFG, task=task, callbacks=[jnn.Progress(bar=False)])
    assert r.history["train_loss"][-1] < r.history["train_loss"][0]
    assert jnn.evaluate(r.params, test, task)["accuracy"] > 0.5


def test_an_adapter_whose_dropout_ignores_the_key_is_caught(spirals):
    train, _ = spirals
    nnx, MLP = _nnx_mlp()
    graphdef, params, rest = nnx.split(MLP(nnx.Rngs(0)), nnx.Param, ...)

    def apply(p, x, *, key, train, hyper):  # the 12-line adapter of the report: the key never reaches the module
        m = nnx.merge(graphdef, p, jax.tree.map(lambda a: a, rest))  # the TraceContextError fix of the report
        m.train() if train else m.eval()
        return m(x)

    naive = jnn.Task(init=lambda key: params, apply=apply)
    with pytest.warns(KeyIgnoredWarning, match="does not come from `key`"):
        fit(train, TrainConfig(max_epochs=1, batch_size=32), task=naive, callbacks=[jnn.Progress(bar=False)])
    deterministic = jnn.Task(init=lambda key: params, apply=lambda p, x, *, key, train, hyper: apply(p, x, key=key,
                             train=False, hyper=hyper))  # fmt: skip
    assert check_key_used(deterministic, train, {}, jnp.float32) is False  # alike in both modes: no warning


def test_errors_of_the_users_framework_name_the_piece(spirals):
    train, _ = spirals
    nnx, MLP = _nnx_mlp()
    with pytest.raises(ValueError, match="module holds batch statistics"):
        jnn.Task.from_nnx(nnx.BatchNorm(3, rngs=nnx.Rngs(0)))

    class Boom(Exception):
        pass

    def apply(p, x, *, key, train, hyper):
        raise Boom("framework says no")

    bad = jnn.Task(init=lambda key: {"w": jnp.zeros((2, 3))}, apply=apply)
    with pytest.raises(ValueError, match=r"task.apply\(params, x, train=True\) failed when traced: .*Boom: framework"):
        fit(train, TrainConfig(max_epochs=1), task=bad, callbacks=[jnn.Progress(bar=False)])
