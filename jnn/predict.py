"""Predictions from memory: a trained model's outputs in evaluation mode, and the class probabilities, labels or
values its loss's record (``jnn.losses.Loss``) makes of them.

One path serves ``jnn.FitResult.predict``, ``jnn.sweep.SweepResult.predict`` and
``jnn.app.trained.TrainedModel.predict`` (``jnn.load_run``, ``jnn predict``), which adds the run's stored
preprocessing (feature scaling, imputation, categories) before and the class names after::

    result = jnn.fit(train, config, task=jnn.MLP(keep_prob=0.8, dropout_mode="classic"))
    result.predict_proba(test.x)         # [n, classes]: the dropout rule applied (expected weights)
    result.predict(test.x)               # [n] class indices

Evaluation mode is the task's ``apply(..., train=False)``: for the built-in MLP, the whole network with dropout's
test-time rule (classic dropout scales each layer by p; inverted dropout needs nothing).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jnn.losses import loss_of

_APPLY: dict = {}


def outputs(task, params, x, hyper=None) -> np.ndarray:
    """The network's outputs (logits for classification) on ``x [n, d]`` in evaluation mode.

    Args:
        task: the ``jnn.Task`` that was trained.
        params: its params.
        x: inputs ``[n, d]`` (or ``[d]`` for one example), as the training data held them.
        hyper: the hyperparameters (default: the task's own defaults).

    Returns:
        ``[n, ...]`` outputs as a NumPy array.
    """
    dtype = jax.tree.leaves(params)[0].dtype
    x = jnp.asarray(x, dtype)
    x = x[None, :] if x.ndim == 1 else x
    h = {k: jnp.asarray(v) for k, v in {**(task.hyper or {}), **(hyper or {})}.items()}
    fn = _APPLY.get(id(task))
    if fn is None or fn[0] is not task:
        fn = (task, jax.jit(lambda p, xx, hh: task.apply(p, xx, key=None, train=False, hyper=hh)))
        _APPLY[id(task)] = fn
    return np.asarray(fn[1](params, x, h))


def proba_of(loss, out) -> np.ndarray:
    """Class probabilities from the outputs ``out`` of a model trained with ``loss``: ``[n, k]`` softmax rows;
    ``[n, 2]`` (P(class 0), P(class 1)) for one logit; each label's probability for a multi-label model.

    Raises:
        TypeError: a regression or custom loss (no probabilities).
    """
    record = loss_of(loss)
    if record is None or not record.classifies:
        shown = loss if isinstance(loss, str) else "custom"
        raise TypeError(f"predict_proba is for classification models; this run's loss is {shown!r}")
    return np.asarray(record.probabilities(jnp.asarray(out)))


def labels_of(loss, out) -> np.ndarray:
    """Predictions from the outputs ``out``: class indices ``[n]`` (int32), 0/1 columns ``[n, k]`` for a multi-label
    model, else the outputs (``[n]`` for one target)."""
    record = loss_of(loss)
    if record is not None and record.kind == "classes":
        return np.argmax(proba_of(loss, out), axis=1).astype(np.int32)
    if record is not None and record.classifies:  # multi-label
        return (proba_of(loss, out) > 0.5).astype(np.int32)
    out = np.asarray(out)
    return out[:, 0] if out.ndim == 2 and out.shape[1] == 1 else out


def predict_proba(task, params, x, hyper=None) -> np.ndarray:
    """``proba_of`` the ``outputs`` of ``task`` on ``x``."""
    return proba_of(task.loss, outputs(task, params, x, hyper))


def predict(task, params, x, hyper=None) -> np.ndarray:
    """``labels_of`` the ``outputs`` of ``task`` on ``x``."""
    return labels_of(task.loss, outputs(task, params, x, hyper))


__all__ = ["labels_of", "outputs", "predict", "predict_proba", "proba_of"]
