"""Predictions from memory (FitResult, SweepResult) equal load_run's, with the run's dropout rule."""

import warnings

import numpy as np
import pytest

import jnn
from jnn.model import ClassicDropoutWarning
from jnn.sweep import sweep

QUIET = [jnn.Progress(bar=False, log_every=0)]


@pytest.fixture(scope="module")
def mnist():
    train, test = jnn.datasets.load("mnist1d")
    return train.subset(np.arange(1200)), test.subset(np.arange(300))


@pytest.mark.parametrize("mode", ["classic", "inverted"])
def test_a_fits_predictions_equal_load_runs_bit_for_bit(mnist, tmp_path, mode):
    train, test = mnist
    net = jnn.MLP(hidden=(32,), keep_prob=0.6, dropout_mode=mode)
    r = jnn.fit(train, jnn.TrainConfig(max_epochs=4), task=net, callbacks=[*QUIET, jnn.RunFolder(tmp_path)])
    model = jnn.load_run(tmp_path)
    np.testing.assert_array_equal(r.predict_proba(test.x), model.predict_proba(test.x))
    np.testing.assert_array_equal(r.predict(test.x), model.predict(test.x))
    acc = float(np.mean(r.predict(test.x) == test.y))
    assert acc == pytest.approx(jnn.evaluate(r.params, test, net)["accuracy"], abs=1e-6)
    assert r.predict(test.x[0]).shape == (1,)  # one example [d] is a batch of one


def test_forward_without_the_rule_warns_only_for_classic_dropout_params(mnist):
    train, test = mnist
    net = jnn.MLP(hidden=(32,), keep_prob=0.6, dropout_mode="classic")
    classic = jnn.fit(train, jnn.TrainConfig(max_epochs=3), task=net, callbacks=QUIET)
    with pytest.warns(ClassicDropoutWarning, match=r"Pass dropout=jnn.Dropout\(0.6, 'classic'\)"):
        plain = jnn.forward(classic.params, test.x)
    assert np.any(np.argmax(np.asarray(plain), 1) != classic.predict(test.x))  # the trap the warning names
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ruled = jnn.forward(classic.params, test.x, dropout=jnn.Dropout(0.6, "classic"))
        np.testing.assert_array_equal(np.argmax(np.asarray(ruled), 1), classic.predict(test.x))
        inverted = jnn.fit(train, jnn.TrainConfig(max_epochs=1), task=jnn.MLP(hidden=(32,), keep_prob=0.6),
                           callbacks=QUIET)  # fmt: skip
        jnn.forward(inverted.params, test.x)  # inverted params need no rule: no warning


def test_a_sweep_members_predictions_equal_its_own_fits(mnist):
    train, test = mnist
    net = jnn.MLP(hidden=(16,), dropout_mode="classic")
    config = jnn.TrainConfig(max_epochs=3, early_stopping=None)
    s = sweep(train, config, task=net, keep_prob=[0.6, 0.9], seed=[0, 1], strategy="programs", callbacks=QUIET)
    for k in range(len(s.rows)):
        r = jnn.fit(train, s.members[k], task=jnn.MLP(hidden=(16,), dropout_mode="classic",
                                                      keep_prob=s.rows[k]["keep_prob"]), callbacks=QUIET)  # fmt: skip
        np.testing.assert_array_equal(s.predict_proba(test.x, member=k), r.predict_proba(test.x))
        np.testing.assert_array_equal(s.predict(test.x, member=k), r.predict(test.x))
    with pytest.raises(ValueError, match=r"member must be in \[0, 3\]; got 4"):
        s.predict(test.x, member=4)


def test_regression_predicts_values_and_refuses_probabilities():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3)).astype(np.float32)
    ds = jnn.Dataset(x, (x @ np.array([1.0, -1.0, 0.5])).astype(np.float32))
    config = jnn.TrainConfig(max_epochs=3, early_stopping=None, batch_size=16)
    r = jnn.fit(ds, config, task=jnn.MLP(hidden=(8,), loss="huber"), callbacks=QUIET)
    assert r.predict(x).shape == (80,) and r.predict(x).dtype == np.float32
    with pytest.raises(TypeError, match="predict_proba is for classification models; this run's loss is 'huber'"):
        r.predict_proba(x)
