"""The metrics papers report (F1, precision, recall, ROC AUC, top-k accuracy, the confusion matrix) equal
scikit-learn's on random data, inside training (early stopping on them) and in a run folder."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

import jnn
from jnn.app import cli
from jnn.metrics import resolve_metrics

SET_METRICS = ("f1", "precision", "recall", "f1_macro", "f1_micro", "precision_macro", "recall_macro", "roc_auc")


def _want(name: str, y, p):
    pred, k = p.argmax(1), p.shape[1]
    avg = "binary" if k == 2 else "macro"
    return {
        "f1": lambda: skm.f1_score(y, pred, average=avg),
        "precision": lambda: skm.precision_score(y, pred, average=avg, zero_division=0),
        "recall": lambda: skm.recall_score(y, pred, average=avg),
        "f1_macro": lambda: skm.f1_score(y, pred, average="macro"),
        "f1_micro": lambda: skm.f1_score(y, pred, average="micro"),
        "precision_macro": lambda: skm.precision_score(y, pred, average="macro", zero_division=0),
        "recall_macro": lambda: skm.recall_score(y, pred, average="macro"),
        "roc_auc": lambda: skm.roc_auc_score(y, p[:, 1]) if k == 2 else skm.roc_auc_score(y, p, multi_class="ovr"),
    }[name]()


@pytest.mark.parametrize("loss,k", [("softmax", 5), ("softmax", 2), ("binary", 2)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_set_metrics_equal_scikit_learns_on_random_data_with_padding_rows_left_out(loss, k, seed):
    rng = np.random.default_rng(seed)
    n = 257
    out = rng.normal(size=(n, k if loss == "softmax" else 1)).astype(np.float32) * 2
    y = rng.integers(0, k, n).astype(np.int32)
    mask = rng.random(n) < 0.8  # padding rows (0) are left out exactly
    fns = dict(resolve_metrics(SET_METRICS, loss))
    z = out if loss == "softmax" else np.column_stack([np.zeros(n, np.float32), out[:, 0]])
    p = np.asarray(jax.nn.softmax(jnp.asarray(z), axis=-1)) if loss == "softmax" else np.column_stack(
        [1 - np.asarray(jax.nn.sigmoid(out[:, 0])), np.asarray(jax.nn.sigmoid(out[:, 0]))])  # fmt: skip
    for name, fn in fns.items():
        assert fn.set_metric
        got = float(fn(jnp.asarray(out), jnp.asarray(y), jnp.asarray(mask)))
        assert got == pytest.approx(_want(name, y[mask], p[mask]), abs=1e-6), name


def test_top_k_accuracy_and_the_confusion_matrix_equal_scikit_learns():
    rng = np.random.default_rng(3)
    out = rng.normal(size=(300, 6)).astype(np.float32)
    y = rng.integers(0, 6, 300).astype(np.int32)
    for k in (1, 2, 3, 5):
        (name, fn), = resolve_metrics((f"top{k}_accuracy",), "softmax")  # fmt: skip
        assert float(jnp.mean(fn(jnp.asarray(out), jnp.asarray(y)))) == pytest.approx(
            skm.top_k_accuracy_score(y, out, k=k, labels=np.arange(6)), abs=1e-6)  # fmt: skip
    from jnn.losses import REGISTRY
    from jnn.metrics import confusion

    c = np.asarray(confusion(REGISTRY["softmax"], jnp.asarray(out), jnp.asarray(y)))
    np.testing.assert_array_equal(c, skm.confusion_matrix(y, out.argmax(1), labels=np.arange(6)))


def test_metrics_that_do_not_fit_the_loss_are_named():
    with pytest.raises(ValueError, match=r"metric 'roc_auc' needs a classification loss \['softmax', 'binary'\]"):
        resolve_metrics(("roc_auc",), "mse")
    with pytest.raises(ValueError, match="metric 'top3_accuracy' needs a loss with one output per class"):
        resolve_metrics(("top3_accuracy",), "binary")
    with pytest.raises(ValueError, match="metric 'f1' needs a classification loss"):
        jnn.MLP(loss="huber", metrics=("f1",))


def test_an_mlp_records_them_stops_early_on_one_and_evaluate_equals_scikit_learn():
    train, test = jnn.datasets.load("mnist1d")
    train, test = train.subset(np.arange(1500)), test.subset(np.arange(400))
    net = jnn.MLP(hidden=(32,), metrics=("accuracy", "f1_macro", "roc_auc", "top3_accuracy"))
    config = jnn.TrainConfig(max_epochs=40, early_stopping=jnn.EarlyStopping("val_f1_macro", patience=3))
    r = jnn.fit(train, config, task=net, callbacks=[jnn.Progress(bar=False, log_every=0)])
    keys = set(r.history.arrays())
    assert {"train_accuracy", "train_top3_accuracy", "val_f1_macro", "val_roc_auc"} <= keys
    assert "train_f1_macro" not in keys  # a set metric is scored on the validation set, not summed over steps
    f1 = r.history["val_f1_macro"]
    assert r.best_epoch == int(np.argmax(f1))  # early stopping ranked the epochs by it (max)
    scores = jnn.evaluate(r.params, test, net)
    p = r.predict_proba(test.x)
    assert scores["f1_macro"] == pytest.approx(skm.f1_score(test.y, p.argmax(1), average="macro"), abs=1e-6)
    assert scores["roc_auc"] == pytest.approx(skm.roc_auc_score(test.y, p, multi_class="ovr"), abs=1e-6)
    assert scores["top3_accuracy"] == pytest.approx(skm.top_k_accuracy_score(test.y, p, k=3), abs=1e-6)


def test_jnn_train_writes_the_confusion_matrix_with_the_class_names(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    names = np.array(["cat", "dog", "eel"])[np.argmax(x, axis=1)]
    lines = ["a,b,c,kind"] + [f"{u:.4f},{v:.4f},{w:.4f},{n}" for (u, v, w), n in zip(x, names)]
    (tmp_path / "train.csv").write_text("\n".join(lines[:161]) + "\n")
    (tmp_path / "test.csv").write_text("\n".join([lines[0], *lines[161:]]) + "\n")
    run = tmp_path / "run"
    argv = ["train", "--data", str(tmp_path / "train.csv"), "--test-data", str(tmp_path / "test.csv"), "--hidden",
            "16", "--max-epochs", "30", "--metrics", "accuracy,f1_macro,roc_auc", "--out", str(run)]  # fmt: skip
    assert cli.main(argv) == 0
    assert "f1_macro" in capsys.readouterr().out
    summary = json.loads((run / "summary.json").read_text())
    matrix = np.array(summary["confusion"]["matrix"])
    assert summary["confusion"]["classes"] == ["cat", "dog", "eel"] and matrix.sum() == 40
    assert np.trace(matrix) / 40 == pytest.approx(summary["test"]["accuracy"], abs=1e-6)
    csv = (run / "confusion.csv").read_text().splitlines()
    assert csv[0] == "true \\ predicted,cat,dog,eel" and [int(v) for v in csv[1].split(",")[1:]] == list(matrix[0])
