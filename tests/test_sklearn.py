"""jnn.sklearn's estimators: scikit-learn's own check_estimator, Pipelines, GridSearchCV, cross_val_score, pickling,
and each fit bit for bit the jnn.fit it runs."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.estimator_checks import check_estimator

import jnn
from jnn.sklearn import EXPECTED_FAILED_CHECKS, MLPClassifier, MLPRegressor


@pytest.mark.slow
@pytest.mark.parametrize("make", [MLPClassifier, MLPRegressor])
def test_scikit_learns_check_estimator_passes(make):
    results = check_estimator(make(), expected_failed_checks=EXPECTED_FAILED_CHECKS, on_fail=None, on_skip=None)
    failed = [(r["check_name"], str(r["exception"])[:200]) for r in results if r["status"] == "failed"]
    assert len(results) >= 50 and not failed, failed


def _cancer():
    x, y = load_breast_cancer(return_X_y=True)
    names = np.array(["benign", "malignant"])[1 - y]
    return train_test_split(x, names, test_size=0.25, stratify=y, random_state=0)


def test_a_pipeline_learns_string_labels_and_pickles():
    x_tr, x_te, y_tr, y_te = _cancer()
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden=(32,), random_state=0)).fit(x_tr, y_tr)
    assert list(pipe.classes_) == ["benign", "malignant"] and pipe.score(x_te, y_te) >= 0.95
    again = pickle.loads(pickle.dumps(pipe))
    np.testing.assert_array_equal(again.predict_proba(x_te), pipe.predict_proba(x_te))
    assert set(again.predict(x_te)) <= {"benign", "malignant"}


def test_grid_search_and_cross_val_score_run_the_engine():
    x_tr, _, y_tr, _ = _cancer()
    grid = {"mlpclassifier__hidden": [(16,), (32, 32)], "mlpclassifier__l2": [1e-4, 1e-1]}
    search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(max_epochs=30, random_state=0)), grid, cv=3)
    search.fit(x_tr, y_tr)
    assert len(search.cv_results_["params"]) == 4 and search.best_score_ >= 0.93
    x, y = load_diabetes(return_X_y=True)
    scores = cross_val_score(make_pipeline(StandardScaler(), MLPRegressor(hidden=(32,), max_epochs=100,
                                                                          learning_rate=1e-2, random_state=0)),
                             x, (y - y.mean()) / y.std(), cv=3)  # fmt: skip
    assert scores.shape == (3,) and scores.mean() >= 0.3, scores


def test_a_fit_is_bit_for_bit_the_jnn_fit_it_runs():
    x_tr, _, y_tr, _ = _cancer()
    x = StandardScaler().fit_transform(x_tr).astype(np.float32)
    est = MLPClassifier(hidden=(16,), max_epochs=5, keep_prob=0.8, random_state=7).fit(x, y_tr)
    seed = int(check_random_state(7).randint(0, 2**31 - 1))
    config = jnn.TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=200, max_epochs=5, val_fraction=0.0,
                             early_stopping=None, seed=seed, stratify=False)  # fmt: skip
    idx = np.searchsorted(est.classes_, y_tr).astype(np.int32)
    r = jnn.fit(jnn.Dataset(x, idx, num_classes=2), config, task=jnn.MLP(hidden=(16,), keep_prob=0.8),
                callbacks=[jnn.Progress(bar=False)])  # fmt: skip
    for a, b in zip(est.params_, r.params):
        np.testing.assert_array_equal(a["w"], np.asarray(b["w"]))
    np.testing.assert_array_equal(est.predict_proba(x), r.predict_proba(x).astype(np.float64))
