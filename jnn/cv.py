"""k-fold cross-validation: every fold a ``jnn.fit`` on the other folds, scored on its own, and the folds pooled.

scikit-learn's ``cross_validate`` for jnn's engine (``jnn cv`` on the command line)::

    cv = jnn.cv.cross_validate(train, jnn.TrainConfig(), task=jnn.MLP(), folds=5)
    print(cv)                   # one row per fold, then mean ± std and the 95 % interval of each metric
    cv.pooled["accuracy"]       # {"mean", "std", "ci_low", "ci_high", "n"}

The folds are a keyed permutation of the rows (``seed``), stratified by class for class labels (each class's rows
dealt round the folds), so every fold holds about ``n / folds`` rows and the classes' shares. Each fold's fit runs
under the same config (its own validation split, for early stopping, is carved from the fold's training rows) and
is scored by ``jnn.evaluate`` on the held-out fold: no row is ever scored by a model that trained on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jnn.mlp import MLP
    from jnn.task import Task
    from jnn.train.config import TrainConfig

from dataclasses import dataclass

import jax
import numpy as np

from jnn import _validate as V
from jnn.data import Dataset
from jnn.display import text_table, view
from jnn.results import mean_std_ci


def kfold(ds: Dataset, folds: int, *, seed: int = 0, stratify: bool = True) -> list[np.ndarray]:
    """The held-out row indices of each fold, sorted.

    Args:
        ds: the data.
        folds: k ≥ 2, at most the number of rows.
        seed: the permutation's seed.
        stratify: deal each class's rows round the folds (class labels only).

    Raises:
        ValueError: ``folds`` outside ``[2, n]``.
    """
    n = len(ds)
    V.check_int("folds", folds, low=2, high=max(2, n))
    if folds > n:
        raise ValueError(f"folds must be in [2, {n}] (the number of rows); got {folds}")
    perm = np.asarray(jax.random.permutation(jax.random.key(seed), n))
    if stratify and ds.num_classes:
        order = np.concatenate([perm[ds.y[perm] == c] for c in range(ds.num_classes)])
    else:
        order = perm
    return [np.sort(order[k::folds]) for k in range(folds)]


@dataclass(frozen=True)
class CVResult:
    """What ``cross_validate`` returns.

    Attributes:
        rows: one dict per fold: ``fold``, ``n_train``, ``n_test``, ``epochs``, ``stopped_by`` and the held-out
            fold's loss and metrics (``test_<metric>``).
        pooled: ``{metric: {"mean", "std", "ci_low", "ci_high", "n"}}`` over the folds (Student t interval).
        fits: each fold's ``jnn.FitResult``.
        folds: each fold's held-out row indices.
    """

    rows: list
    pooled: dict
    fits: list
    folds: list

    def __repr__(self) -> str:
        cols = ["fold", "n_train", "n_test", "epochs", *(f"test_{m}" for m in self.pooled)]
        table = "\n".join("  " + line for line in text_table(self.rows, cols))
        pooled = [(m, f"{p['mean']:.4f} ± {p['std']:.4f} [{p['ci_low']:.4f}, {p['ci_high']:.4f}]")
                  for m, p in self.pooled.items()]  # fmt: skip
        return view("CVResult", [("folds", str(len(self.rows))), *pooled])[:-1] + table + "\n)"


def cross_validate(
    train: Dataset,
    config: TrainConfig | None = None,
    *,
    task: Task | MLP | None = None,
    folds: int = 5,
    seed: int = 0,
    stratify: bool = True,
    confidence: float = 0.95,
    callbacks_for: Callable | None = None,
    **fit_kw,
) -> CVResult:
    """Train ``task`` on every k − 1 folds of ``train`` and score it on the held-out fold.

    Args:
        train: the data.
        config: the ``jnn.TrainConfig`` of every fold's fit (default ``TrainConfig()``).
        task: the model (``jnn.MLP`` or ``jnn.Task``; default ``MLP()``).
        folds: k.
        seed: the folds' permutation seed (the fits' own seed is ``config.seed``).
        stratify: stratified folds for class labels.
        confidence: the pooled interval's level.
        callbacks_for: ``fold -> list of callbacks`` for each fold's fit (e.g. a ``jnn.RunFolder`` per fold);
            default: no progress display.
        **fit_kw: passed on to ``jnn.fit`` (``class_weight``, ``optimizer``).

    Returns:
        The ``CVResult``.
    """
    from jnn.mlp import MLP
    from jnn.train import TrainConfig, evaluate, fit
    from jnn.train.progress import Progress

    config = TrainConfig() if config is None else config
    model = MLP() if task is None else task
    held = kfold(train, folds, seed=seed, stratify=stratify)
    rows, fits = [], []
    for k, test_idx in enumerate(held):
        train_idx = np.setdiff1d(np.arange(len(train)), test_idx)
        cbs = callbacks_for(k) if callbacks_for is not None else [Progress(bar=False, log_every=0)]
        r = fit(train.subset(train_idx), config, task=model, callbacks=cbs, **fit_kw)
        scores = {f"test_{m}": v for m, v in evaluate(r.params, train.subset(test_idx), model).items() if m != "n"}
        rows.append({"fold": k, "n_train": len(train_idx), "n_test": len(test_idx), "epochs": len(r.history),
                     "stopped_by": r.stopped_by, **scores})  # fmt: skip
        fits.append(r)
    metrics = [m for m in rows[0] if m.startswith("test_")]
    pooled = {m[5:]: mean_std_ci([row[m] for row in rows], confidence) for m in metrics}
    return CVResult(rows, pooled, fits, held)


__all__ = ["CVResult", "cross_validate", "kfold"]
