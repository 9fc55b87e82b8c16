"""scikit-learn estimators running jnn's compiled engine: ``MLPClassifier`` and ``MLPRegressor``.

They follow scikit-learn's estimator contract (``fit``/``predict``/``predict_proba``/``score``, ``get_params``/
``set_params``, ``random_state``, fitted attributes ending in ``_``), so they work in a ``Pipeline``,
``GridSearchCV`` and ``cross_val_score``, and pass scikit-learn's own ``check_estimator`` (``tests/test_sklearn.py``;
the checks they do not pass are listed in ``EXPECTED_FAILED_CHECKS`` with the reason)::

    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from jnn.sklearn import MLPClassifier

    search = GridSearchCV(make_pipeline(StandardScaler(), MLPClassifier(random_state=0)),
                          {"mlpclassifier__hidden": [(32,), (64, 64)], "mlpclassifier__l2": [1e-4, 1e-2]}, cv=3)

Each ``fit`` is a ``jnn.fit`` of a ``jnn.MLP`` (softmax for the classifier, mean squared error for the
regressor) under a ``jnn.TrainConfig`` made from the estimator's parameters; the defaults follow
scikit-learn's ``MLPClassifier`` (100 hidden units, Adam at 1e-3, minibatches of ``min(200, n)``, 200 epochs, no
early stopping, no dropout). The fitted params are NumPy arrays and the model a plain ``jnn.MLP``, so a fitted
estimator pickles. Needs scikit-learn (``pip install 'jnn[sklearn]'``).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from jnn.types import ArrayLike

#: Checks of scikit-learn's ``check_estimator`` the estimators are expected to fail, with the reason (passed as
#: ``expected_failed_checks``; empty when every check passes).
EXPECTED_FAILED_CHECKS: dict[str, str] = {}


def _first_loss(**fields) -> str:
    """The first registered loss whose record has ``fields`` (the registry alone names losses)."""
    from jnn.losses import REGISTRY

    return next(n for n, r in REGISTRY.items() if all(getattr(r, k) == v for k, v in fields.items()))


class _JnnMLP(BaseEstimator):
    """The parameters and the fit shared by ``MLPClassifier`` and ``MLPRegressor``."""

    _loss = _first_loss(kind="classes", outputs="classes")  # softmax cross-entropy

    def __init__(self, hidden=(100,), activation="relu", l2=1e-4, keep_prob=1.0, dropout_mode="inverted",
                 optimizer="adam", learning_rate=1e-3, momentum=0.9, batch_size=200, max_epochs=200,
                 early_stopping=False, patience=10, val_fraction=0.1, random_state=None, verbose=False):  # fmt: skip
        self.hidden = hidden
        self.activation = activation
        self.l2 = l2
        self.keep_prob = keep_prob
        self.dropout_mode = dropout_mode
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.early_stopping = early_stopping
        self.patience = patience
        self.val_fraction = val_fraction
        self.random_state = random_state
        self.verbose = verbose

    def _fit(self, x: np.ndarray, y: np.ndarray):
        import jnn

        model = jnn.MLP(hidden=tuple(self.hidden), activation=self.activation, loss=self._loss, l2=self.l2,
                        keep_prob=self.keep_prob, dropout_mode=self.dropout_mode)  # fmt: skip
        n = x.shape[0]
        stop = bool(self.early_stopping) and n >= 10
        seed = int(check_random_state(self.random_state).randint(0, 2**31 - 1))
        config = jnn.TrainConfig(
            optimizer=self.optimizer, learning_rate=self.learning_rate, momentum=self.momentum,
            batch_size=max(1, min(int(self.batch_size), n if not stop else n - max(1, round(n * self.val_fraction)))),
            max_epochs=self.max_epochs, val_fraction=self.val_fraction if stop else 0.0, seed=seed,
            early_stopping=jnn.EarlyStopping(patience=self.patience) if stop else None, stratify=False,
        )  # fmt: skip
        ds = jnn.Dataset(x, y, num_classes=len(self.classes_) if hasattr(self, "classes_") else None)
        progress = jnn.Progress(bar=None if self.verbose else False, log_every=10 if self.verbose else 0)
        result = jnn.fit(ds, config, task=model, callbacks=[progress])
        self.model_ = model
        self.params_ = [{k: np.asarray(v) for k, v in layer.items()} for layer in result.params]
        self.n_epochs_ = len(result.history)
        self.stopped_by_ = result.stopped_by
        self.history_ = {k: list(v) for k, v in result.history.arrays().items()}
        return self

    def _outputs(self, x) -> np.ndarray:
        from jnn.predict import outputs

        check_is_fitted(self, "params_")
        x = validate_data(self, x, reset=False, dtype=np.float32)
        sizes = (self.params_[0]["w"].shape[0], *(layer["w"].shape[1] for layer in self.params_))
        return outputs(self.model_.build(sizes), self.params_, x)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


class MLPClassifier(ClassifierMixin, _JnnMLP):
    """A feed-forward classifier (softmax cross-entropy) trained by ``jnn.fit``.

    Args:
        hidden: hidden-layer widths.
        activation: hidden activation (``jnn.activations.ACTIVATIONS``).
        l2: λ of the L2 penalty λΣw² (not divided by n; scikit-learn's ``alpha`` is 2nλ).
        keep_prob: dropout's p (1: no dropout).
        dropout_mode: ``"inverted"`` or ``"classic"``.
        optimizer: ``"sgd"``, ``"momentum"``, ``"adam"`` or ``"adamw"``.
        learning_rate: η.
        momentum: for ``"momentum"``.
        batch_size: T, at most the number of training rows.
        max_epochs: the epoch budget.
        early_stopping: hold out ``val_fraction`` of the rows and stop after ``patience`` epochs without a better
            validation loss (the best epoch's params kept).
        patience: see ``early_stopping``.
        val_fraction: see ``early_stopping``.
        random_state: None, an int or a ``RandomState``: the run's seed (initialisation, order, dropout).
        verbose: show jnn's progress (a line every 10 epochs).

    Attributes:
        classes_: the class labels ``[k]``, sorted.
        n_features_in_: the input width.
        model_: the ``jnn.MLP`` that was trained.
        params_: the trained params (NumPy arrays).
        n_epochs_, stopped_by_, history_: how the fit ran.
    """

    def fit(self, X: ArrayLike, y: ArrayLike):
        """Train on ``X [n, d]`` and labels ``y [n]`` (any values: the sorted distinct labels are the classes).

        Raises:
            ValueError: NaN/inf or empty input, continuous targets, or a single class.
        """
        x, y = validate_data(self, X, y, dtype=np.float32)
        check_classification_targets(y)
        self.classes_, index = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(f"MLPClassifier needs at least 2 classes in y; got 1 class ({self.classes_[0]!r})")
        return self._fit(x, index.astype(np.int32))

    def predict_proba(self, X: ArrayLike) -> np.ndarray:
        """Class probabilities ``[n, k]`` (columns in the order of ``classes_``)."""
        from jnn.predict import proba_of

        check_is_fitted(self, "params_")
        return proba_of(self.model_.loss, self._outputs(X)).astype(np.float64)

    def predict(self, X: ArrayLike) -> np.ndarray:
        """The most probable class of each row ``[n]``, as one of ``classes_``."""
        proba = self.predict_proba(X)  # checks that the estimator is fitted
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _JnnMLP):
    """A feed-forward regressor (mean squared error) trained by ``jnn.fit``; the arguments and attributes are
    ``MLPClassifier``'s (no ``classes_``). ``y`` may be ``[n]`` or ``[n, k]``."""

    _loss = _first_loss(kind="values")  # mean squared error

    def fit(self, X: ArrayLike, y: ArrayLike):
        """Train on ``X [n, d]`` and real targets ``y [n]`` or ``[n, k]``.

        Raises:
            ValueError: NaN/inf or empty input or targets.
        """
        x, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True, multi_output=True)
        self.n_outputs_ = 1 if y.ndim == 1 else y.shape[1]
        return self._fit(x, np.asarray(y, np.float32))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True  # y [n, k]: one output per target
        return tags

    def predict(self, X: ArrayLike) -> np.ndarray:
        """Predictions ``[n]`` (or ``[n, k]`` for several targets)."""
        out = self._outputs(X).astype(np.float64)
        return out[:, 0] if self.n_outputs_ == 1 else out


__all__ = ["EXPECTED_FAILED_CHECKS", "MLPClassifier", "MLPRegressor"]
