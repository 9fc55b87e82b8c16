"""k-fold cross-validation: the folds partition the rows (stratified), each fold is the fit and evaluation it
claims, and jnn cv writes a run folder per fold and the pooled scores."""

import json

import numpy as np
import pytest

import jnn
from jnn.app import cli
from jnn.cv import cross_validate, kfold
from jnn.results import mean_std_ci


@pytest.fixture(scope="module")
def data():
    train, _ = jnn.datasets.load("mnist1d")
    return train.subset(np.arange(600))


def test_the_folds_partition_the_rows_and_keep_the_class_shares(data):
    folds = kfold(data, 5, seed=3)
    together = np.concatenate(folds)
    assert sorted(together.tolist()) == list(range(len(data)))  # disjoint and complete
    assert {len(f) for f in folds} == {120}
    share = np.bincount(data.y, minlength=10) / len(data)
    for f in folds:
        assert np.abs(np.bincount(data.y[f], minlength=10) / len(f) - share).max() <= 0.02
    assert [f.tolist() for f in kfold(data, 5, seed=3)] == [f.tolist() for f in folds]  # keyed
    with pytest.raises(ValueError, match=r"folds must be an integer in \[2, 600\]; got 1"):
        kfold(data, 1)


def test_each_fold_is_the_fit_on_the_other_folds_scored_on_its_own(data):
    config = jnn.TrainConfig(max_epochs=3, early_stopping=None)
    net = jnn.MLP(hidden=(16,))
    cv = cross_validate(data, config, task=net, folds=3, seed=1)
    for k, held in enumerate(cv.folds):
        rest = np.setdiff1d(np.arange(len(data)), held)
        r = jnn.fit(data.subset(rest), config, task=net, callbacks=[jnn.Progress(bar=False)])
        scores = jnn.evaluate(r.params, data.subset(held), net)
        assert cv.rows[k]["test_accuracy"] == scores["accuracy"] and cv.rows[k]["n_train"] == len(rest)
    assert cv.pooled["accuracy"] == mean_std_ci([row["test_accuracy"] for row in cv.rows])
    assert "accuracy: " in repr(cv) and "fold" in repr(cv)


def test_jnn_cv_writes_a_run_folder_per_fold_and_the_pooled_scores(tmp_path, capsys):
    out = tmp_path / "cv"
    argv = ["cv", "--dataset", "xor", "--hidden", "8", "--max-epochs", "5", "--folds", "3", "--out", str(out)]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert text.count("held-out rows") == 3 and "accuracy: " in text
    record = json.loads((out / "cv.json").read_text())
    assert len(record["folds"]) == 3 and set(record["pooled"]) >= {"loss", "accuracy"}
    for k in range(3):
        assert (out / f"fold-{k}" / "model.npz").is_file()
    model = jnn.load_run(out / "fold-0")
    assert model.params[0]["w"].shape == (2, 8)
