"""Per-example metrics ``(outputs, y) -> [batch]``; the engine averages them over the real examples.

A metric is the same kind of function as a per-example loss, so a user's metric is any pure function
``metric(outputs, y) -> [batch]``. The built-ins, by name:

==============  ====================================================================  ==================
name            per example                                                           made for loss
==============  ====================================================================  ==================
``accuracy``    1 if the prediction is right: argmax (softmax), logit > 0 (binary),   softmax, binary,
                fraction of labels right with logit > 0 (multilabel)                  multilabel
``mse``         mean over the targets of (f − y)²                                      mse
``mae``         mean over the targets of |f − y|                                       mse
``r2``          mean over the targets of 1 − (f − y)² / Var(y), Var over the whole     mse
                set being scored, so the mean over a set is sklearn's ``r2_score``
                (``multioutput="uniform_average"``)
==============  ====================================================================  ==================

``r2`` needs the variance of the targets of the whole set (the training set for ``train_r2``, the
validation set for ``val_r2``): the engine passes it as ``y_var``; a metric that needs it says so with
the attribute ``needs_target_variance = True``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import jax.numpy as jnp

from jnn.losses import as_column, residuals, squared_errors

#: The metrics recorded when a task names none: per built-in loss.
DEFAULT_METRICS = {
    "softmax": ("accuracy",),
    "binary": ("accuracy",),
    "multilabel": ("accuracy",),
    "mse": ("mse", "mae", "r2"),
}


def softmax_accuracy(logits, y):
    """``[batch]`` 1.0 where ``argmax(logits) == y`` (integer labels ``[batch]``), else 0.0."""
    pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return (pred == y.astype(jnp.int32)).astype(logits.dtype)


def binary_accuracy(logits, y):
    """``[batch]`` 1.0 where ``(logit > 0) == y`` for one logit per example (``[batch]`` or ``[batch, 1]``)."""
    pred = (as_column(logits) > 0).astype(jnp.int32)
    return (pred == y.reshape(pred.shape).astype(jnp.int32)).astype(logits.dtype)


def multilabel_accuracy(logits, y):
    """``[batch]`` fraction of an example's labels predicted right (``logit > 0`` vs ``y > 0.5``)."""
    z = logits.reshape(logits.shape[0], -1)
    right = (z > 0) == (y.reshape(z.shape).astype(z.dtype) > 0.5)
    return jnp.mean(right.astype(logits.dtype), axis=-1)


def mse(outputs, y):
    """``[batch]`` mean over the targets of the squared error."""
    return jnp.mean(squared_errors(outputs, y), axis=-1)


def mae(outputs, y):
    """``[batch]`` mean over the targets of the absolute error."""
    return jnp.mean(jnp.abs(residuals(outputs, y)), axis=-1)


def r2(outputs, y, *, y_var):
    """``[batch]`` terms whose mean over a set is the coefficient of determination R² of that set.

    Args:
        outputs: ``[batch]`` or ``[batch, k]`` predictions.
        y: targets of the same size.
        y_var: ``[k]`` variance of each target over the whole set (population variance).
    """
    se = squared_errors(outputs, y)
    var = y_var.reshape((1, se.shape[1])).astype(se.dtype)
    # A constant target has R² 1 when predicted exactly and 0 otherwise (sklearn's force_finite rule).
    safe = jnp.where(var > 0, var, jnp.ones_like(var))
    term = jnp.where(var > 0, 1.0 - se / safe, jnp.where(se == 0, 1.0, 0.0).astype(se.dtype))
    return jnp.mean(term, axis=-1)


r2.needs_target_variance = True


def target_variance(y, mask=None):
    """``[k]`` population variance of each target over the real rows (``mask`` 1), for :func:`r2`."""
    t = y.reshape(y.shape[0], -1)
    t = t.astype(jnp.result_type(t.dtype, jnp.float32)) if not jnp.issubdtype(t.dtype, jnp.floating) else t
    m = jnp.ones((t.shape[0], 1), t.dtype) if mask is None else mask.astype(t.dtype).reshape(-1, 1)
    n = jnp.maximum(jnp.sum(m), 1.0)
    mean = jnp.sum(t * m, axis=0) / n
    return jnp.sum(jnp.square(t - mean.reshape(1, -1)) * m, axis=0) / n


_ACCURACY = {"softmax": softmax_accuracy, "binary": binary_accuracy, "multilabel": multilabel_accuracy}
_REGRESSION = {"mse": mse, "mae": mae, "r2": r2}
#: Built-in metric names.
BUILTIN = ("accuracy", "mse", "mae", "r2")


def resolve_metrics(metrics, loss) -> tuple[tuple[str, Callable], ...]:
    """Turn a task's ``metrics`` into ``((name, fn), ...)``.

    Args:
        metrics: None (the defaults of a built-in loss, none for a custom loss), a sequence of built-in
            names, or a mapping ``{name: built-in name or callable}``.
        loss: the task's loss (a built-in name or a callable).

    Raises:
        ValueError: an unknown or unsuitable built-in name, a duplicate name, or a name that clashes
            with ``loss`` (the history already records ``train_loss`` and ``val_loss``).
        TypeError: a metric that is neither a name nor a callable.
    """
    if metrics is None:
        metrics = DEFAULT_METRICS.get(loss, ()) if isinstance(loss, str) else ()
    if isinstance(metrics, str) or not isinstance(metrics, (Mapping, Sequence)):
        raise TypeError(
            f"metrics must be a sequence of built-in names such as ('accuracy',) or a mapping "
            f"{{name: function(outputs, y) -> [batch]}}; got {metrics!r}"
        )
    items = list(metrics.items()) if isinstance(metrics, Mapping) else [(m, m) for m in metrics]
    out, seen = [], set()
    for name, fn in items:
        if not isinstance(name, str) or not name.isidentifier():
            raise ValueError(f"metric names must be identifiers such as 'accuracy'; got {name!r}")
        if name == "loss" or name in seen:
            what = "'loss' is recorded already as train_loss/val_loss" if name == "loss" else "given twice"
            raise ValueError(f"metric name {name!r} clashes: {what}; rename the metric")
        seen.add(name)
        out.append((name, _builtin(fn, loss) if isinstance(fn, str) else _callable(name, fn)))
    return tuple(out)


def _builtin(name: str, loss):
    if name == "accuracy":
        if loss not in _ACCURACY:
            raise ValueError(
                f"metric 'accuracy' needs a classification loss {list(_ACCURACY)}; the loss is "
                f"{loss!r}. Pass your own accuracy function in metrics={{'accuracy': fn}}"
            )
        return _ACCURACY[loss]
    if name in _REGRESSION:
        return _REGRESSION[name]
    raise ValueError(
        f"unknown built-in metric {name!r}; built-ins are {list(BUILTIN)}, or pass "
        f"{{name: function(outputs, y) -> [batch]}}"
    )


def _callable(name, fn):
    if not callable(fn):
        raise TypeError(
            f"metric {name!r} must be a built-in name or a function (outputs, y) -> [batch]; got {type(fn).__name__}"
        )
    return fn


__all__ = [
    "BUILTIN",
    "DEFAULT_METRICS",
    "softmax_accuracy",
    "binary_accuracy",
    "multilabel_accuracy",
    "mse",
    "mae",
    "r2",
    "target_variance",
    "resolve_metrics",
]
