"""Per-example metrics ``(outputs, y) -> [batch]``; the engine averages them over the real examples.

A metric is the same kind of function as a per-example loss, so a user's metric is any pure function
``metric(outputs, y) -> [batch]``. The built-ins, by name:

==============  ====================================================================  ==================
name            per example                                                           applies to losses
==============  ====================================================================  ==================
``accuracy``    1 if the prediction is right: argmax (softmax), logit > 0 (binary),   of kind classes
                fraction of labels right with logit > 0 (multilabel): the loss's      or multilabel
                own ``jnn.losses.Loss.accuracy``
``mse``         mean over the targets of (f − y)²                                      of kind values
``mae``         mean over the targets of |f − y|                                       of kind values
``r2``          mean over the targets of 1 − (f − y)² / Var(y), Var over the whole     of kind values
                set being scored, so the mean over a set is sklearn's ``r2_score``
                (``multioutput="uniform_average"``)
==============  ====================================================================  ==================

Each is one ``Metric`` record in ``METRICS`` (name, function, direction, the kinds of loss it
applies to); early stopping's ``mode`` and the schedulers' read the direction from there.

``r2`` needs the variance of the targets of the whole set (the training set for ``train_r2``, the
validation set for ``val_r2``): the engine passes it as ``y_var``; a metric that needs it says so with
the attribute ``needs_target_variance = True``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jnn.types import ArrayLike

if TYPE_CHECKING:
    from jnn.losses import Loss

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jnn.losses import (
    REGISTRY,
    Loss,
    binary_accuracy,
    loss_of,
    multilabel_accuracy,
    residuals,
    softmax_accuracy,
    squared_errors,
)


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
    """``[k]`` population variance of each target over the real rows (``mask`` 1), for ``r2``."""
    t = y.reshape(y.shape[0], -1)
    t = t.astype(jnp.result_type(t.dtype, jnp.float32)) if not jnp.issubdtype(t.dtype, jnp.floating) else t
    m = jnp.ones((t.shape[0], 1), t.dtype) if mask is None else mask.astype(t.dtype).reshape(-1, 1)
    n = jnp.maximum(jnp.sum(m), 1.0)
    mean = jnp.sum(t * m, axis=0) / n
    return jnp.sum(jnp.square(t - mean.reshape(1, -1)) * m, axis=0) / n


# ----------------------------------------------------------------------------------------------------
# metrics of a whole set (the classification metrics papers report): fn(loss, outputs, y, mask) -> scalar


def class_probabilities(loss: Loss, outputs):
    """``[n, k]`` class probabilities from a classification loss's outputs (``[n, 2]`` for one logit): the
    record's own ``jnn.losses.Loss.probabilities``."""
    return loss.probabilities(outputs)


def confusion(loss: Loss, outputs: ArrayLike, y: ArrayLike, mask: ArrayLike | None = None):
    """``[k, k]`` confusion counts (rows: true class, columns: predicted class) over the rows where ``mask`` is 1,
    as scikit-learn's ``confusion_matrix``."""
    p = class_probabilities(loss, outputs)
    k = p.shape[1]
    truth = jax.nn.one_hot(y.reshape(-1).astype(jnp.int32), k, dtype=p.dtype)
    pred = jax.nn.one_hot(jnp.argmax(p, axis=1), k, dtype=p.dtype)
    if mask is not None:
        truth = truth * mask.astype(p.dtype).reshape(-1, 1)
    return truth.T @ pred


def _per_class(loss: Loss, outputs, y, mask):
    """Per-class precision, recall and F1 (0 where undefined, scikit-learn's ``zero_division=0``) and which classes
    occur in the truth or the predictions (scikit-learn averages over those)."""
    c = confusion(loss, outputs, y, mask)
    tp, pred, true = jnp.diag(c), jnp.sum(c, axis=0), jnp.sum(c, axis=1)
    safe = lambda a, b: jnp.where(b > 0, a / jnp.where(b > 0, b, jnp.ones_like(b)), jnp.zeros_like(a))
    precision, recall = safe(tp, pred), safe(tp, true)
    f1 = safe(2.0 * tp, pred + true)
    return precision, recall, f1, (pred + true) > 0


def _macro(values, present):
    count = jnp.sum(present.astype(values.dtype))
    return jnp.sum(jnp.where(present, values, jnp.zeros_like(values))) / jnp.maximum(count, jnp.ones_like(count))


def _averaged(index: int):
    """Binary: the positive class's value (scikit-learn's ``average="binary"``); more classes: the macro mean."""

    def fn(loss, outputs, y, mask):
        per = _per_class(loss, outputs, y, mask)
        return per[index][1] if per[0].shape[0] == 2 else _macro(per[index], per[3])

    return fn


def _macro_of(index: int):
    def fn(loss, outputs, y, mask):
        per = _per_class(loss, outputs, y, mask)
        return _macro(per[index], per[3])

    return fn


def f1_micro(loss, outputs, y, mask):
    """Micro-averaged F1: for single-label classes, the share of rows predicted right."""
    c = confusion(loss, outputs, y, mask)
    total = jnp.sum(c)
    return jnp.trace(c) / jnp.maximum(total, jnp.ones_like(total))


def _binary_auc(score, positive, valid):
    """ROC AUC of ``score`` for the rows where ``valid``: the Mann-Whitney statistic with tied scores given their
    average rank (scikit-learn's ``roc_auc_score``); NaN without both classes."""
    dt = score.dtype
    s = jnp.where(valid, score, jnp.asarray(jnp.inf, dt))  # left-out rows sort last and never rank a valid one
    srt = jnp.sort(s)
    left, right = (jnp.searchsorted(srt, s, side=side).astype(dt) for side in ("left", "right"))
    rank = (left + right + jnp.asarray(1.0, dt)) / jnp.asarray(2.0, dt)
    pos = positive & valid
    n_pos, n_neg = jnp.sum(pos.astype(dt)), jnp.sum((~positive & valid).astype(dt))
    u = jnp.sum(jnp.where(pos, rank, jnp.zeros_like(rank))) - n_pos * (n_pos + 1) / 2
    pairs = n_pos * n_neg
    return jnp.where(pairs > 0, u / jnp.maximum(pairs, jnp.ones_like(pairs)), jnp.asarray(jnp.nan, dt))


def roc_auc(loss: Loss, outputs: ArrayLike, y: ArrayLike, mask: ArrayLike | None):
    """ROC AUC: binary on P(class 1); with more classes one-vs-rest on each class's probability, the macro mean over
    the classes present (scikit-learn's ``multi_class="ovr"``)."""
    p = class_probabilities(loss, outputs)
    y = y.reshape(-1).astype(jnp.int32)
    valid = jnp.ones(y.shape, bool) if mask is None else mask.reshape(-1).astype(bool)
    if p.shape[1] == 2:
        return _binary_auc(p[:, 1], y == 1, valid)
    aucs = jnp.stack([_binary_auc(p[:, c], y == c, valid) for c in range(p.shape[1])])
    return _macro(jnp.where(jnp.isnan(aucs), jnp.zeros_like(aucs), aucs), ~jnp.isnan(aucs))


def top_k_accuracy(k: int) -> Callable:
    """Per example: 1 when the true class is among the ``k`` highest scores (scikit-learn's
    ``top_k_accuracy_score``)."""

    def fn(logits, y):
        true = jnp.take_along_axis(logits, y.reshape(-1, 1).astype(jnp.int32), axis=1)
        return (jnp.sum(logits > true, axis=1) < k).astype(logits.dtype)

    fn.__name__ = f"top{k}_accuracy"
    return fn


_F1, _PRECISION, _RECALL = 2, 0, 1


@dataclass(frozen=True)
class Metric:
    """One built-in metric.

    Attributes:
        name: the name a task lists (``metrics=("accuracy",)``); recorded as ``train_<name>``/``val_<name>``.
        fn: per-example ``(outputs, y) -> [batch]``; None for ``accuracy``, which is the loss's own
            (``jnn.losses.Loss.accuracy``).
        direction: ``"max"`` (higher is better) or ``"min"``: early stopping's and the schedulers' mode.
        kinds: the kinds of loss it applies to (``jnn.losses.Loss.kind``).
        summary: one line for the docs.
    """

    name: str
    fn: Callable | None
    direction: str
    kinds: tuple[str, ...]
    summary: str = ""
    set_level: bool = False

    def applies_to(self, loss: Loss) -> bool:
        """Whether the metric can score a model trained with ``loss``."""
        return loss.kind in self.kinds and (self.fn is not None or loss.accuracy is not None)

    def for_loss(self, loss: Loss | str) -> Callable:
        """The per-example function for a task whose loss is ``loss`` (a name or a function).

        Raises:
            ValueError: the metric does not apply to that loss.
        """
        record = loss_of(loss)
        if record is None or not self.applies_to(record):
            fits = [n for n, r in REGISTRY.items() if self.applies_to(r)]
            what = "a classification" if "classes" in self.kinds else "a regression"
            raise ValueError(
                f"metric {self.name!r} needs {what} loss {fits}; the loss is {loss!r}. Pass your own function "
                f"in metrics={{{self.name!r}: fn}}"
            )
        if self.set_level:
            fn = functools.partial(self.fn, record)
            fn.set_metric = True  # fn(outputs, y, mask) -> scalar, on a whole set
            return fn
        return self.fn if self.fn is not None else record.accuracy


#: The built-in metrics by name.
METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("accuracy", None, "max", ("classes", "multilabel"),
               "1 if the prediction is right (argmax, logit > 0, or the fraction of labels right)"),
        Metric("mse", mse, "min", ("values",), "mean over the targets of (f − y)²"),
        Metric("mae", mae, "min", ("values",), "mean over the targets of |f − y|"),
        Metric("r2", r2, "max", ("values",), "coefficient of determination R² (sklearn's r2_score)"),
        Metric("f1", _averaged(_F1), "max", ("classes",), "F1: binary, the positive class's; else the macro mean",
               set_level=True),
        Metric("precision", _averaged(_PRECISION), "max", ("classes",), "precision, binary or macro as f1",
               set_level=True),
        Metric("recall", _averaged(_RECALL), "max", ("classes",), "recall, binary or macro as f1", set_level=True),
        Metric("f1_macro", _macro_of(_F1), "max", ("classes",), "F1 per class, mean over the classes present",
               set_level=True),
        Metric("f1_micro", f1_micro, "max", ("classes",), "micro F1 (single-label: accuracy)", set_level=True),
        Metric("precision_macro", _macro_of(_PRECISION), "max", ("classes",), "precision, macro mean",
               set_level=True),
        Metric("recall_macro", _macro_of(_RECALL), "max", ("classes",), "recall, macro mean", set_level=True),
        Metric("roc_auc", roc_auc, "max", ("classes",), "ROC AUC, binary or one-vs-rest macro", set_level=True),
    )
}  # fmt: skip
#: Built-in metric names.
BUILTIN = tuple(METRICS)
#: The metrics recorded when a task names none: per built-in loss (each ``jnn.losses.Loss``'s own).
DEFAULT_METRICS = {n: loss.default_metrics for n, loss in REGISTRY.items()}


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
    if name in METRICS:
        return METRICS[name].for_loss(loss)
    top = re.fullmatch(r"top([1-9][0-9]*)_accuracy", name)
    if top:
        record = loss_of(loss)
        if record is None or record.outputs != "classes":
            raise ValueError(f"metric {name!r} needs a loss with one output per class (softmax); the loss is {loss!r}")
        return top_k_accuracy(int(top.group(1)))
    raise ValueError(
        f"unknown built-in metric {name!r}; built-ins are {list(BUILTIN)} and top<k>_accuracy, or pass "
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
    "METRICS",
    "Metric",
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
