"""Fuzzed bad input: every public constructor and entry point gets wrong types, NaN/Inf, negative and huge
values, empty arrays, wrong shapes and wrong label dtypes, and must answer with ValueError or TypeError whose
message names the argument — never a JAX trace error, a crash or a silent wrong result."""

import math
import re

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jnn
from jnn.sweep import members_of

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)

junk = st.one_of(
    st.none(),
    st.text(max_size=5),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.just(object()),
    st.just(float("nan")),
    st.just(float("inf")),
    st.just(-1),
    st.just(0),
    st.just(10**12),
    st.just(-1e300),
)


def _raises_named(fn, *names):
    """fn() must either work or raise ValueError/TypeError mentioning one of ``names``."""
    try:
        fn()
    except (ValueError, TypeError) as err:
        msg = str(err)
        assert not type(err).__module__.startswith("jax"), f"a JAX error reached the user: {type(err)}: {msg}"
        assert any(re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", msg) for n in names), (
            f"message does not name {names}: {msg}"
        )
        COUNTS[fn.__qualname__.split(".")[0]] = COUNTS.get(fn.__qualname__.split(".")[0], 0) + 1
        return True
    return False


COUNTS: dict = {}


@SETTINGS
@given(
    sizes=st.one_of(junk, st.lists(st.one_of(st.integers(-3, 5), st.floats(allow_nan=True), st.none()), max_size=4)),
    scheme=st.one_of(junk, st.sampled_from(["lecun_normal", "xavier", ""])),
    dtype=st.one_of(st.sampled_from(["float32", "int32", "float16", "bool", "nope"]), junk),
)
def test_init_mlp(sizes, scheme, dtype):
    def call():
        p = jnn.init_mlp(jax.random.key(0), sizes, scheme=scheme, dtype=dtype)
        assert all(np.all(np.isfinite(np.asarray(l))) for l in jax.tree.leaves(p))

    _raises_named(call, "sizes", "scheme", "dtype")


@SETTINGS
@given(
    keep=st.one_of(junk, st.floats(allow_nan=True, allow_infinity=True)),
    mode=st.one_of(junk, st.sampled_from(["inverted", "classic", "Inverted"])),
    on_inputs=st.one_of(st.booleans(), junk),
)
def test_dropout(keep, mode, on_inputs):
    raised = _raises_named(lambda: jnn.Dropout(keep, mode, on_inputs), "keep_prob", "mode", "on_inputs")
    if not raised:
        assert 0.0 < float(keep) <= 1.0 and mode in ("inverted", "classic")


PARAMS = jnn.init_mlp(jax.random.key(0), [3, 4, 2])


@SETTINGS
@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    dtype=st.sampled_from([np.float32, np.float64, np.int32, np.bool_, np.complex64]),
    fill=st.sampled_from([0.5, float("nan"), float("inf"), -1e30]),
    activation=st.one_of(st.sampled_from(["relu", "gelu"]), junk),
    train=st.one_of(st.booleans(), junk),
)
def test_forward(shape, dtype, fill, activation, train):
    x = np.full(shape, fill if np.issubdtype(dtype, np.floating) else 1, dtype=dtype)

    def call():
        out = jnn.forward(
            PARAMS, x, activation=activation, dropout=jnn.Dropout(0.5), key=jax.random.key(1), train=train
        )
        assert np.all(np.isfinite(np.asarray(out)))

    _raises_named(call, "x", "activation", "train", "params")


@SETTINGS
@given(
    n=st.integers(0, 5),
    labels=st.lists(st.one_of(st.integers(-2, 12), st.floats(-1, 3)), max_size=6),
    kind=st.sampled_from(["softmax", "binary"]),
    mask=st.one_of(st.none(), st.lists(st.floats(-1, 2), max_size=6)),
)
def test_losses(n, labels, kind, mask):
    logits = np.zeros((n, 3 if kind == "softmax" else 1), np.float32)
    y = np.asarray(labels)
    m = None if mask is None else np.asarray(mask, np.float32)
    fn = jnn.softmax_cross_entropy if kind == "softmax" else jnn.binary_cross_entropy

    def call():
        v = float(fn(logits, y, mask=m))
        assert math.isfinite(v) or n == 0

    _raises_named(call, "y", "mask", "logits")


@SETTINGS
@given(lam=st.one_of(junk, st.floats(allow_nan=True, allow_infinity=True)), bias=st.one_of(st.booleans(), junk))
def test_l2_penalty(lam, bias):
    raised = _raises_named(lambda: jnn.l2_penalty(PARAMS, lam, include_bias=bias), "lam", "include_bias")
    if not raised:
        assert float(lam) >= 0 and math.isfinite(float(lam))


@SETTINGS
@given(
    nx=st.integers(0, 4),
    ny=st.integers(0, 4),
    d=st.integers(0, 3),
    xdtype=st.sampled_from([np.float32, np.int64, np.bool_]),
    ydtype=st.sampled_from([np.int32, np.float32, np.bool_, np.int64]),
    nan=st.booleans(),
    k=st.one_of(st.none(), st.integers(-1, 4), junk),
)
def test_dataset(nx, ny, d, xdtype, ydtype, nan, k):
    x = np.ones((nx, d), xdtype)
    if nan and nx and d and np.issubdtype(xdtype, np.floating):
        x[0, 0] = np.nan
    y = (np.arange(ny) % 3).astype(ydtype)
    _raises_named(lambda: jnn.Dataset(x, y, k), "x", "y", "num_classes")


FIELDS = {
    "learning_rate": st.one_of(st.floats(allow_nan=True, allow_infinity=True), junk),
    "batch_size": st.one_of(st.integers(-5, 10**9), junk),
    "patience": st.one_of(st.integers(-5, 5), junk),
    "keep_prob": st.one_of(st.floats(-1, 2), junk),
    "l2": st.one_of(st.floats(allow_nan=True, allow_infinity=True), junk),
    "max_epochs": st.one_of(st.integers(-2, 3), junk),
    "monitor": st.one_of(st.sampled_from(["val_loss", "loss"]), junk),
    "hidden": st.one_of(st.lists(st.integers(-1, 3), max_size=3), junk),
    "optimizer": st.one_of(st.sampled_from(["sgd", "rmsprop"]), junk),
    "val_fraction": st.one_of(st.floats(-1, 2), junk),
    "seed": st.one_of(st.integers(-3, 3), junk),
}


@SETTINGS
@given(field=st.sampled_from(sorted(FIELDS)), data=st.data())
def test_train_config(field, data):
    value = data.draw(FIELDS[field])
    _raises_named(lambda: jnn.TrainConfig(**{field: value}), field, "hidden", "monitor", "early stopping")


@SETTINGS
@given(
    axis=st.sampled_from(["seed", "learning_rate", "l2", "keep_prob", "momentum"]),
    values=st.one_of(junk, st.lists(st.one_of(st.floats(-1, 2), st.integers(-2, 3), junk), max_size=3)),
)
def test_sweep_axes(axis, values):
    _raises_named(lambda: members_of(jnn.TrainConfig(), {axis: values}), "sweep", axis)


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
    from jnn import cli

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
