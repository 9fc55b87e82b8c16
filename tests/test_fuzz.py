"""Fuzzed input for every public constructor and entry point, with valid and invalid strategies kept apart.

For each entry point, a valid draw must be accepted (and give finite results), and a draw with exactly one
invalid argument must be refused with ValueError or TypeError whose message names that argument — never a
JAX trace error, a crash, or an invalid value silently accepted (that fails the test)."""

import math
import re

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jnn
from jnn.init import SCHEMES
from jnn.sweep import members_of
from jnn.train.config import OPTIMIZERS

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)


def junk(*valid_strings):
    """Values of the wrong kind for any argument here (text avoids the argument's valid strings)."""
    return st.one_of(
        st.none(),
        st.text(max_size=5).filter(lambda t: t not in valid_strings),
        st.just(object()),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    )


nonfinite = st.sampled_from([float("nan"), float("inf"), float("-inf")])


def refused(fn, name: str):
    """``fn()`` must raise ValueError/TypeError (not a JAX error) whose message names ``name``."""
    with pytest.raises((ValueError, TypeError)) as info:
        fn()
    err = info.value
    assert not type(err).__module__.startswith("jax"), f"a JAX error reached the user: {type(err)}: {err}"
    assert re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", str(err)), f"message does not name {name!r}: {err}"


def drawn(data, valid: dict, invalid: dict) -> tuple[dict, str | None]:
    """Draw every argument valid, or (when ``data`` says so) exactly one invalid; returns (kwargs, bad name)."""
    bad = data.draw(st.one_of(st.none(), st.sampled_from(sorted(invalid))))
    return {k: data.draw(invalid[k] if k == bad else v) for k, v in valid.items()}, bad


def check(fn, bad, accept=None):
    """Refused naming ``bad``, or (all valid) accepted and checked by ``accept(result)``."""
    if bad is not None:
        refused(fn, bad)
    else:
        out = fn()
        if accept is not None:
            accept(out)


def _finite(tree) -> bool:
    return all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------------------------------

INIT_VALID = {
    # a few shapes: each new shape compiles init_mlp once
    "sizes": st.sampled_from([[1, 1], [2, 3], [3, 4, 2], [5, 2, 3, 4]]),
    "scheme": st.sampled_from(list(SCHEMES)),
    "dtype": st.just("float32"),
}
INIT_INVALID = {
    "sizes": st.one_of(
        junk(),
        st.booleans(),
        st.lists(st.integers(1, 5), max_size=1),
        st.lists(st.integers(-3, 0), min_size=2, max_size=3),
        st.lists(st.floats(0.5, 3.5), min_size=2, max_size=3),
    ),
    "scheme": st.one_of(junk(*SCHEMES), st.sampled_from(["xavier", "", "Lecun_normal"])),
    "dtype": st.sampled_from(["int32", "bool", "nope", "complex64"]),
}


@SETTINGS
@given(data=st.data())
def test_init_mlp(data):
    kw, bad = drawn(data, INIT_VALID, INIT_INVALID)
    check(lambda: jnn.init_mlp(jax.random.key(0), **kw), bad, lambda p: _finite(p) or pytest.fail("non-finite"))


DROPOUT_VALID = {
    "keep_prob": st.floats(1e-6, 1.0),
    "mode": st.sampled_from(["inverted", "classic"]),
    "on_inputs": st.booleans(),
}
DROPOUT_INVALID = {
    "keep_prob": st.one_of(junk(), st.booleans(), nonfinite, st.floats(max_value=0.0), st.floats(1.0001, 1e9)),
    "mode": st.one_of(junk("inverted", "classic"), st.sampled_from(["Inverted", "standard"])),
    "on_inputs": st.one_of(junk(), st.sampled_from([0, 1, "yes"])),
}


@SETTINGS
@given(data=st.data())
def test_dropout(data):
    kw, bad = drawn(data, DROPOUT_VALID, DROPOUT_INVALID)
    check(lambda: jnn.Dropout(**kw), bad)


PARAMS = jnn.init_mlp(jax.random.key(0), [3, 4, 2])


def _x(shape, dtype=np.float32, fill=0.5):
    return np.full(shape, fill, dtype)


FORWARD_VALID = {
    "x": st.one_of(st.integers(1, 4).map(lambda b: _x((b, 3))), st.just(_x((3,)))),
    "activation": st.sampled_from(list(jnn.ACTIVATIONS)),
    "train": st.booleans(),
}
FORWARD_INVALID = {
    "x": st.one_of(
        st.sampled_from([np.int32, np.bool_, np.complex64]).map(lambda d: _x((2, 3), d, 1)),
        st.sampled_from([float("nan"), float("inf")]).map(lambda f: _x((2, 3), fill=f)),
        st.integers(0, 5).filter(lambda d: d != 3).map(lambda d: _x((2, d))),
        st.just(_x(())),
    ),
    "activation": st.one_of(junk(*jnn.ACTIVATIONS), st.sampled_from(["gelu", "ReLU"])),
    "train": st.one_of(junk(), st.sampled_from([0, 1, "True"])),
}


@SETTINGS
@given(data=st.data())
def test_forward(data):
    kw, bad = drawn(data, FORWARD_VALID, FORWARD_INVALID)
    fn = lambda: jnn.forward(PARAMS, dropout=jnn.Dropout(0.5), key=jax.random.key(1), **kw)
    check(fn, bad, lambda out: _finite(out) or pytest.fail("non-finite"))


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(["softmax", "binary"]), n=st.integers(1, 5))
def test_losses(data, kind, n):
    classes = 3 if kind == "softmax" else 2
    valid = {
        "logits": st.just(np.zeros((n, 3 if kind == "softmax" else 1), np.float32)),
        "y": st.lists(st.integers(0, classes - 1), min_size=n, max_size=n).map(np.asarray),
        "mask": st.one_of(st.none(), st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n).map(np.asarray)),
    }
    invalid = {
        "logits": st.just(np.full((n, 3 if kind == "softmax" else 1), np.nan, np.float32)),
        "y": st.one_of(
            st.lists(st.integers(0, classes - 1), min_size=n + 1, max_size=n + 2).map(np.asarray),
            st.lists(st.sampled_from([-1, classes, 7]), min_size=n, max_size=n).map(np.asarray),
        ),
        "mask": st.one_of(
            st.lists(st.sampled_from([0.0, 1.0]), min_size=n + 1, max_size=n + 2).map(np.asarray),
            st.lists(st.sampled_from([-1.0, 0.5, 2.0]), min_size=n, max_size=n).map(np.asarray),
        ),
    }
    kw, bad = drawn(data, valid, invalid)
    fn = jnn.softmax_cross_entropy if kind == "softmax" else jnn.binary_cross_entropy
    check(lambda: float(fn(kw["logits"], kw["y"], mask=kw["mask"])), bad, lambda v: math.isfinite(v) or pytest.fail())


L2_VALID = {"lam": st.floats(0.0, 1e6), "include_bias": st.booleans()}
L2_INVALID = {
    "lam": st.one_of(junk(), st.booleans(), nonfinite, st.floats(max_value=-1e-12)),
    "include_bias": st.one_of(junk(), st.sampled_from([0, 1])),
}


@SETTINGS
@given(data=st.data())
def test_l2_penalty(data):
    kw, bad = drawn(data, L2_VALID, L2_INVALID)
    check(lambda: jnn.l2_penalty(PARAMS, kw["lam"], include_bias=kw["include_bias"]), bad)


def _labels(n):
    return st.lists(st.integers(0, 2), min_size=n, max_size=n).map(lambda v: np.asarray(v, np.int32))


@SETTINGS
@given(data=st.data(), n=st.integers(1, 5), d=st.integers(1, 3))
def test_dataset(data, n, d):
    valid = {
        "x": st.just(np.ones((n, d), np.float32)),
        "y": st.one_of(
            _labels(n),
            st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n).map(lambda v: np.asarray(v, np.float32)),
            st.lists(st.lists(st.integers(0, 1), min_size=2, max_size=2), min_size=n, max_size=n).map(np.asarray),
        ),
        "num_classes": st.none(),
    }
    invalid = {
        "x": st.one_of(
            st.just(np.ones((n, d), np.int64)),
            st.just(np.full((n, d), np.nan, np.float32)),
            st.just(np.ones((0, d), np.float32)),
            st.just(np.ones((n,), np.float32)),
        ),
        "y": st.one_of(
            _labels(n + 1),
            st.just(np.array(["a"] * n)),
            st.just(np.full((n,), np.inf, np.float32)),
            st.just(np.full((n, 2), 3, np.int32)),
        ),
        "num_classes": st.one_of(
            st.text(max_size=3), st.just(object()), st.booleans(), st.integers(-1, 1), st.floats(2.5, 3.5)
        ),
    }
    kw, bad = drawn(data, valid, invalid)
    if bad == "num_classes" or kw["num_classes"] is not None:
        kw["y"] = np.arange(n, dtype=np.int32) % 2  # class labels, so num_classes applies
    check(lambda: jnn.Dataset(kw["x"], kw["y"], kw["num_classes"]), bad)


CONFIG_VALID = {
    "learning_rate": st.floats(1e-6, 10.0),
    "batch_size": st.integers(1, 10**6),
    "patience": st.integers(0, 100),
    "keep_prob": st.floats(1e-6, 1.0),
    "l2": st.floats(0.0, 10.0),
    "max_epochs": st.integers(1, 1000),
    "monitor": st.sampled_from(["val_loss", "val_accuracy", "train_loss", "val_r2"]),
    "hidden": st.lists(st.integers(1, 64), max_size=3),
    "optimizer": st.sampled_from(list(OPTIMIZERS)),
    "val_fraction": st.floats(0.0, 0.99),
    "seed": st.integers(0, 2**31),
}
CONFIG_INVALID = {
    "learning_rate": st.one_of(junk(), st.booleans(), nonfinite, st.floats(max_value=0.0)),
    "batch_size": st.one_of(junk(), st.booleans(), st.integers(max_value=0), st.floats(1.5, 9.5)),
    "patience": st.one_of(junk(), st.integers(max_value=-1), st.floats(0.5, 3.5)),
    "keep_prob": st.one_of(junk(), nonfinite, st.floats(max_value=0.0), st.floats(1.0001, 10.0)),
    "l2": st.one_of(junk(), nonfinite, st.floats(max_value=-1e-12)),
    "max_epochs": st.one_of(junk(), st.integers(max_value=0)),
    "monitor": st.one_of(st.none(), st.integers(), st.sampled_from(["loss", "", "val_kappa", "val loss", "test_loss"])),
    "hidden": st.one_of(st.none(), st.just("64"), st.lists(st.integers(-3, 0), min_size=1, max_size=3)),
    "optimizer": st.one_of(junk(*OPTIMIZERS), st.sampled_from(["rmsprop", "SGD"])),
    "val_fraction": st.one_of(junk(), nonfinite, st.floats(max_value=-1e-9), st.floats(1.0, 1e6)),
    "seed": st.one_of(junk(), st.integers(max_value=-1), st.floats(0.5, 2.5)),
}


@SETTINGS
@given(data=st.data())
def test_train_config(data):
    kw, bad = drawn(data, CONFIG_VALID, CONFIG_INVALID)
    rule = {k: kw.pop(k) for k in ("patience", "monitor") if k in kw}  # attributes of the early-stopping rule
    model = {k: kw.pop(k) for k in ("hidden", "keep_prob", "l2") if k in kw}  # fields of the MLP

    def build():
        return jnn.TrainConfig(**kw, early_stopping=jnn.EarlyStopping(**rule)), jnn.MLP(**model)

    check(build, bad)


SWEEP_VALID = {
    "seed": st.lists(st.integers(0, 100), min_size=1, max_size=3),
    "learning_rate": st.lists(st.floats(1e-4, 1.0), min_size=1, max_size=3),
    "l2": st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3),
    "keep_prob": st.lists(st.floats(0.1, 1.0), min_size=1, max_size=3),
}
SWEEP_INVALID = {
    "seed": st.one_of(junk(), st.just([]), st.lists(st.integers(max_value=-1), min_size=1, max_size=3)),
    "learning_rate": st.one_of(st.just(0.1), st.lists(st.floats(max_value=0.0), min_size=1, max_size=3)),
    "l2": st.one_of(st.just({"a": 1}), st.lists(st.floats(max_value=-1e-9), min_size=1, max_size=3)),
    "keep_prob": st.lists(st.floats(1.001, 5.0), min_size=1, max_size=3),
}


@SETTINGS
@given(axis=st.sampled_from(sorted(SWEEP_VALID)), valid=st.booleans(), data=st.data())
def test_sweep_axes(axis, valid, data):
    values = data.draw(SWEEP_VALID[axis] if valid else SWEEP_INVALID[axis])
    check(lambda: members_of(jnn.TrainConfig(), {axis: values}), None if valid else axis)


def test_unknown_and_unequal_sweep_axes_are_refused():
    refused(lambda: members_of(jnn.TrainConfig(), {"momentum": [0.9]}), "momentum")
    refused(lambda: members_of(jnn.TrainConfig(), {"seed": [0, 1], "l2": [0.0]}), "sweep")


def test_fit_rejects_non_dataset_and_bad_optimizer():
    train, _ = jnn.datasets.load("xor")
    with pytest.raises(TypeError, match="train must be a jnn.data.Dataset"):
        jnn.fit(np.zeros((3, 2)), jnn.TrainConfig())
    with pytest.raises(TypeError, match="optimizer must be an optax.GradientTransformation"):
        jnn.fit(train, jnn.TrainConfig(), optimizer="adam")
    with pytest.raises(TypeError, match="config must be a jnn.TrainConfig"):
        jnn.fit(train, {"max_epochs": 1})
    with pytest.raises(ValueError, match="stop_at_epoch must be a positive int"):
        jnn.fit(train, jnn.TrainConfig(), stop_at_epoch=0)


CLI_BAD = {
    "--learning-rate": ("learning_rate", st.one_of(st.floats(max_value=0.0), st.sampled_from(["nan", "inf"]))),
    "--batch-size": ("batch_size", st.integers(max_value=0)),
    "--keep-prob": ("keep_prob", st.one_of(st.floats(max_value=0.0), st.floats(min_value=1.0001, max_value=1e9))),
    "--patience": ("patience", st.integers(max_value=-1)),
    "--max-epochs": ("max_epochs", st.integers(max_value=0)),
    "--l2": ("l2", st.floats(max_value=-1e-12)),
    "--val-fraction": ("val_fraction", st.one_of(st.floats(min_value=1.0, max_value=1e6), st.floats(max_value=-1e-9))),
    "--hidden": ("hidden", st.sampled_from(["0", "-3,4", "4,0"])),
}


@settings(
    max_examples=100, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(flag=st.sampled_from(sorted(CLI_BAD)), data=st.data())
def test_cli_train_flags(flag, data, capsys):
    from jnn.app import cli

    field, strategy = CLI_BAD[flag]
    value = data.draw(strategy)
    try:
        code = cli.main(["train", "--dataset", "spirals", flag, str(value), "--out", "/nonexistent-never-written"])
    except SystemExit as exc:  # argparse: a value of the wrong kind
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2, (flag, value, err)
    assert field in err or flag in err or "argument" in err, err
    assert "Traceback" not in err
