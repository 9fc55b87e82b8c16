"""One record per loss and per metric: every table is derived from them, and Huber (added as one record) works
through fit, evaluation, the CLI's train and predict, and the run folder."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jnn
from jnn import losses, metrics
from jnn.app import cli, tabular
from jnn.losses import REGISTRY, Loss
from jnn.train import stopping


def test_every_table_is_derived_from_the_records():
    assert losses.LOSSES == tuple(REGISTRY) and "huber" in REGISTRY
    assert losses.LOSS_TARGETS == {n: losses.TARGETS[r.kind] for n, r in REGISTRY.items()}
    assert tabular.KIND_OF_LOSS == {n: r.kind for n, r in REGISTRY.items()}
    assert metrics.DEFAULT_METRICS == {n: r.default_metrics for n, r in REGISTRY.items()}
    assert losses.CLASSIFICATION_LOSSES == ("softmax", "binary")  # the lecture's: hand backprop covers them
    assert {stopping.MODE_BY_SUFFIX[n] for n in ("accuracy", "r2")} == {"max"}
    assert {stopping.MODE_BY_SUFFIX[n] for n in ("mse", "mae", "loss")} == {"min"}
    for name, record in REGISTRY.items():
        assert record.name == name and callable(record.fn)
        for m in record.default_metrics:  # each default metric applies to its loss
            assert metrics.METRICS[m].applies_to(record), (name, m)
        assert (record.accuracy is not None) == record.classifies


def test_cli_choices_come_from_the_registry():
    p = cli.build_parser()
    sub = next(a for a in p._actions if a.dest == "command").choices
    train_loss = next(a for a in sub["train"]._actions if a.dest == "loss")
    grad_loss = next(a for a in sub["gradcheck"]._actions if a.dest == "loss")
    assert list(train_loss.choices) == list(losses.LOSSES)
    assert list(grad_loss.choices) == list(losses.CLASSIFICATION_LOSSES)  # offers only what it then checks


def test_gradcheck_refuses_a_loss_the_hand_backprop_does_not_write(capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["gradcheck", "--loss", "mse"])
    assert err.value.code == 2 and "invalid choice: 'mse'" in capsys.readouterr().err


def test_a_bad_record_is_refused_naming_the_field():
    with pytest.raises(ValueError, match="kind must be one of"):
        Loss("x", lambda f, y: f, "regression", "targets", "identity", ())
    with pytest.raises(ValueError, match="output_activation must be one of"):
        Loss("x", lambda f, y: f, "values", "targets", "relu", ())


def test_a_metric_that_does_not_apply_names_the_losses_it_needs():
    want = r"metric 'accuracy' needs a classification loss \['softmax', 'binary', 'multilabel'\]"
    with pytest.raises(ValueError, match=want):
        metrics.resolve_metrics(("accuracy",), "huber")
    with pytest.raises(ValueError, match=r"metric 'r2' needs a regression loss \['mse', 'huber'\]"):
        metrics.resolve_metrics(("r2",), "softmax")


@pytest.mark.parametrize("shape", [(7,), (7, 1), (7, 3)])
def test_huber_equals_optax_and_its_gradient_is_the_clipped_residual(shape, x64):
    f = jax.random.normal(jax.random.key(0), shape, jnp.float64) * 2.0
    y = jax.random.normal(jax.random.key(1), shape, jnp.float64)
    terms = REGISTRY["huber"].fn(f, y)
    k = 1 if len(shape) == 1 else shape[1]
    want = optax.huber_loss(f.reshape(7, -1), y.reshape(7, -1), delta=losses.HUBER_DELTA).mean(-1)
    np.testing.assert_allclose(terms, want, rtol=0, atol=1e-15)
    assert np.any(np.abs(f - y) > 1) and np.any(np.abs(f - y) < 1)  # both pieces are exercised
    g = jax.grad(lambda ff: jnp.mean(REGISTRY["huber"].fn(ff, y)))(f)
    np.testing.assert_allclose(g, np.clip(f - y, -1.0, 1.0) / (7 * k), rtol=1e-14, atol=1e-16)


def _regression(n=300, seed=0, outliers=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1 * rng.normal(size=n)).astype(np.float32)
    y[:outliers] += 50.0
    return jnn.Dataset(x, y)


def test_huber_resists_outliers_that_pull_an_mse_fit():
    train, test = _regression(outliers=15), _regression(seed=1)
    config = jnn.TrainConfig(max_epochs=60, batch_size=32, learning_rate=0.05, early_stopping=None, seed=0)
    scores = {}
    for loss in ("mse", "huber"):
        model = jnn.MLP(hidden=(), loss=loss, l2=0.0, keep_prob=1.0)
        res = jnn.fit(train, config, task=model, callbacks=[jnn.Progress(bar=False, log_every=0)])
        scores[loss] = jnn.evaluate(res.params, test, model)
        assert set(scores[loss]) >= {"loss", "mse", "mae", "r2"}  # the regression metrics, from the record
    assert scores["huber"]["mse"] < 0.5 * scores["mse"]["mse"], scores


def test_huber_trains_and_predicts_in_the_targets_own_units_from_the_cli(tmp_path, capsys):
    ds = _regression(n=240)
    data = tmp_path / "data.npz"
    np.savez(data, x=ds.x, y=ds.y * 100 + 500, x_test=ds.x[:40], y_test=ds.y[:40] * 100 + 500)
    run = tmp_path / "run"
    argv = ["train", "--data", str(data), "--loss", "huber", "--standardize", "--hidden", "16", "--keep-prob", "1",
            "--max-epochs", "40", "--out", str(run)]  # fmt: skip
    assert cli.main(argv) == 0
    assert "huber" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["r2"] > 0.8, summary["test"]
    model = jnn.load_run(run)
    assert model.loss == "huber" and model.preprocessing.target_mean is not None
    pred = model.predict(ds.x[:40])
    assert abs(float(np.mean(pred)) - float(np.mean(ds.y[:40] * 100 + 500))) < 60  # own units, not standardised
    with pytest.raises(TypeError, match="predict_proba is for classification models"):
        model.predict_proba(ds.x[:3])
    assert cli.main(["predict", str(run), "--data", str(data), "--split", "test"]) == 0
    rows = capsys.readouterr().out.splitlines()
    np.testing.assert_allclose([float(v) for v in rows[1:]], pred, rtol=1e-5)
