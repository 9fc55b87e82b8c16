"""Losses from logits, the L2 penalty, and the regularised loss that ``jax.grad`` differentiates.

Conventions (README, "Conventions"): a loss is the mean over the (unmasked) examples of a batch; losses take
logits and use ``log_sigmoid``/``log_softmax``, so they stay finite and exact for |logit| up to 1e4
and beyond; ``l2_penalty = λ Σ w²`` (not divided by n), biases excluded unless asked for.

L2 mappings to other libraries (gradient of λΣw² is 2λw):
``torch.optim.SGD(weight_decay=2λ)`` = ``optax.add_decayed_weights(2λ)``; sklearn ``alpha = 2nλ``
(sklearn divides by n); Keras ``regularizers.L2(λ)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jnn import _validate as V
from jnn.dropout import Dropout
from jnn.model import check_forward_args, forward_cache
from jnn.types import ArrayLike, Labels, Logits, Params, PRNGKey, PyTree

# ----------------------------------------------------------------------------------------------------
# validation


def check_mask(mask, batch: int):
    """Validate an example mask: ``[batch]`` of bools or 0/1 floats; ``None`` means all rows count."""
    if mask is None:
        return None
    mask = V.as_array("mask", mask)
    if mask.shape != (batch,):
        raise ValueError(f"mask must have shape [batch] = ({batch},); got {tuple(mask.shape)}")
    if not (mask.dtype == jnp.bool_ or jnp.issubdtype(mask.dtype, jnp.floating)):
        raise TypeError(f"mask must be bool or float (1 = real example, 0 = padding); got dtype {mask.dtype}")
    if V.is_concrete(mask) and mask.dtype != jnp.bool_ and not np.all(np.isin(np.asarray(mask), (0.0, 1.0))):
        raise ValueError("mask must contain only 0 and 1 (1 = real example, 0 = padding)")
    return mask


def check_labels(loss: str, logits_shape: tuple[int, ...], y):
    """Validate labels against the loss and the logits' shape; return them as an array.

    ``softmax``: integer class indices ``[batch]`` in ``[0, classes)``, or float one-hot/probability rows
    ``[batch, classes]``. ``binary``: ``[batch]`` (or ``[batch, 1]``) of 0/1 (ints, bools, or floats in
    [0, 1]) with a single logit per example.
    """
    V.check_choice("loss", loss, CLASSIFICATION_LOSSES)
    y = V.as_array("y", y)
    if loss == "softmax":
        classes = logits_shape[-1]
        if classes < 2:
            raise ValueError(
                f"loss='softmax' needs at least 2 output units; the network has {classes}. "
                "Use loss='binary' for a single logit"
            )
        if jnp.issubdtype(y.dtype, jnp.integer):
            if y.shape != logits_shape[:-1]:
                raise ValueError(f"y (integer class labels) must have shape {logits_shape[:-1]}; got {tuple(y.shape)}")
            if V.is_concrete(y) and y.size:
                yn = np.asarray(y)
                lo, hi = int(yn.min()), int(yn.max())
                if lo < 0 or hi >= classes:
                    raise ValueError(
                        f"y must hold class indices in [0, {classes - 1}] for {classes} output units; "
                        f"got values in [{lo}, {hi}]"
                    )
        elif jnp.issubdtype(y.dtype, jnp.floating):
            if y.shape != logits_shape:
                raise TypeError(
                    f"y must be integer class indices of shape {logits_shape[:-1]} or float one-hot "
                    f"rows of shape {logits_shape}; got {y.dtype} of shape {tuple(y.shape)}"
                )
            if V.is_concrete(y) and y.size:
                yn = np.asarray(y)
                if np.any(yn < 0) or not np.allclose(yn.sum(-1), 1.0, atol=1e-5):
                    raise ValueError("y (one-hot/probability rows) must be non-negative and sum to 1 in every row")
        else:
            raise TypeError(f"y must be integer class indices or float one-hot rows; got dtype {y.dtype}")
        return y
    # binary
    if logits_shape[-1:] != (1,) and len(logits_shape) != 1:
        raise ValueError(
            f"loss='binary' needs one logit per example (output width 1); got logits of shape {logits_shape}"
        )
    want = logits_shape[:1] if len(logits_shape) == 2 else logits_shape
    if y.shape not in (want, logits_shape):
        raise ValueError(f"y must have shape {want} for loss='binary'; got {tuple(y.shape)}")
    if not (y.dtype == jnp.bool_ or jnp.issubdtype(y.dtype, jnp.integer) or jnp.issubdtype(y.dtype, jnp.floating)):
        raise TypeError(f"y must be 0/1 labels (bool, int or float); got dtype {y.dtype}")
    if V.is_concrete(y) and y.size:
        yn = np.asarray(y, np.float64)
        if (
            np.any(yn < 0)
            or np.any(yn > 1)
            or (not jnp.issubdtype(y.dtype, jnp.floating) and np.any((yn != 0) & (yn != 1)))
        ):
            raise ValueError(f"y must be in {{0, 1}} for loss='binary'; got values in [{yn.min():g}, {yn.max():g}]")
    return y


# ----------------------------------------------------------------------------------------------------
# per-example terms (no validation; used inside compiled code)


def masked_mean(values, mask, weight=None):
    """Mean of ``values [batch]`` over the rows where ``mask`` is 1 (all rows when ``mask`` is None).

    With ``weight [batch]`` it is the weighted mean ``Σ w·v / Σ w`` over the unmasked rows (the convention
    of ``numpy.average`` and of torch's class-weighted cross-entropy).
    """
    if weight is not None:
        w = weight.astype(values.dtype)
        if mask is not None:
            w = jnp.where(mask.astype(values.dtype) > 0, w, jnp.zeros_like(w))
        total = jnp.sum(jnp.where(w > 0, values * w, jnp.zeros_like(values)))
        return total / jnp.maximum(jnp.sum(w), jnp.finfo(values.dtype).tiny)
    if mask is None:
        return jnp.mean(values)
    m = mask.astype(values.dtype)
    return jnp.sum(jnp.where(m > 0, values, jnp.zeros_like(values))) / jnp.maximum(jnp.sum(m), 1.0)


def as_column(outputs):
    """``[batch]`` view of outputs that are ``[batch]`` or ``[batch, 1]``."""
    return outputs.reshape(outputs.shape[:1]) if outputs.ndim == 2 else outputs


def _binary_terms(logits, y):
    z = as_column(logits)
    y = y.reshape(z.shape).astype(z.dtype)
    # −(y log σ(z) + (1−y) log(1−σ(z))), with log(1−σ(z)) = log σ(−z): stable for any |z|.
    return -(y * jax.nn.log_sigmoid(z) + (1.0 - y) * jax.nn.log_sigmoid(-z))


def _softmax_terms(logits, y):
    logp = jax.nn.log_softmax(logits, axis=-1)
    if jnp.issubdtype(y.dtype, jnp.integer):
        return -jnp.take_along_axis(logp, y[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return -jnp.sum(y.astype(logp.dtype) * logp, axis=-1)


def residuals(outputs, y):
    """``[batch, k]`` errors f − y (``[batch, 1]`` for a single target)."""
    f = outputs.reshape(outputs.shape[0], -1)
    return f - y.reshape(f.shape).astype(f.dtype)


def squared_errors(outputs, y):
    """``[batch, k]`` squared errors."""
    return jnp.square(residuals(outputs, y))


def _mse_terms(outputs, y):
    # Per example, the mean over the k targets of (f − y)²: the batch mean is then sklearn's
    # mean_squared_error with multioutput="uniform_average".
    return jnp.mean(squared_errors(outputs, y), axis=-1)


def _multilabel_terms(logits, y):
    # Independent binary cross-entropies, one per label, averaged over the k labels of an example.
    z = logits.reshape(logits.shape[0], -1)
    t = y.reshape(z.shape).astype(z.dtype)
    return jnp.mean(-(t * jax.nn.log_sigmoid(z) + (1.0 - t) * jax.nn.log_sigmoid(-z)), axis=-1)


#: Huber's δ: errors up to δ are squared, larger ones grow linearly (Keras' and optax's default).
HUBER_DELTA = 1.0


def _huber_terms(outputs, y):
    # Per example, the mean over the k targets of ½r² (|r| ≤ δ) or δ(|r| − ½δ): optax.huber_loss, Keras' Huber.
    r = jnp.abs(residuals(outputs, y))
    d = jnp.asarray(HUBER_DELTA, r.dtype)
    return jnp.mean(jnp.where(r <= d, 0.5 * r * r, d * (r - 0.5 * d)), axis=-1)


# ----------------------------------------------------------------------------------------------------
# the registry: one record per loss, from which everything else is derived

#: What a loss reads as targets (``Loss.kind``) and how ``jnn.Dataset`` names them.
TARGETS = {"classes": "class labels", "values": "real targets", "multilabel": "multi-label targets"}
#: How many outputs per example a loss needs (``Loss.outputs``).
OUTPUTS = ("classes", "one", "targets")
#: What turns a loss's outputs into probabilities (``Loss.output_activation``).
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "identity")


@dataclass(frozen=True)
class Loss:
    """One built-in loss: the per-example function and everything jnn derives from it.

    The CLI's ``--loss`` choices, ``jnn.MLP``'s output width and target checks, the default metrics,
    ``jnn predict`` (probabilities, labels, or values mapped back to the targets' units), evaluation and
    ``jnn gradcheck``'s choices all read these records; no other module spells a loss's name.

    Attributes:
        name: the name users pass (``loss="huber"``, ``--loss huber``).
        fn: per-example loss ``(outputs [batch, ...], y) -> [batch]``, unvalidated and jit-able.
        kind: the targets it reads: ``"classes"`` (integer labels), ``"values"`` (real numbers) or
            ``"multilabel"`` (0/1 columns); see ``TARGETS``.
        outputs: outputs per example: ``"classes"`` (one logit per class, at least 2), ``"one"`` (a single
            logit for two classes) or ``"targets"`` (one per target column).
        output_activation: ``"softmax"``, ``"sigmoid"`` or ``"identity"``: what maps the outputs to class
            probabilities (``predict_proba``) or to predictions.
        default_metrics: the metric names recorded when a task names none (see ``jnn.metrics.METRICS``).
        accuracy: per-example accuracy ``(outputs, y) -> [batch]`` for a classification loss, else None.
        target_scaling: ``jnn train --standardize`` standardises the targets too (a regression loss), and
            predictions are mapped back to the targets' own units.
        backprop: the hand-written backprop modules (``jnn.backprop``) differentiate it (the lecture's
            two losses).
        summary: one line for the docs and the CLI's help.
    """

    name: str
    fn: Callable
    kind: str
    outputs: str
    output_activation: str
    default_metrics: tuple[str, ...]
    accuracy: Callable | None = None
    target_scaling: bool = False
    backprop: bool = False
    summary: str = ""

    def __post_init__(self):
        V.check_choice("kind", self.kind, list(TARGETS))
        V.check_choice("outputs", self.outputs, list(OUTPUTS))
        V.check_choice("output_activation", self.output_activation, list(OUTPUT_ACTIVATIONS))

    @property
    def targets(self) -> str:
        """How ``jnn.Dataset`` describes the targets this loss reads (``"class labels"``, ...)."""
        return TARGETS[self.kind]

    @property
    def classifies(self) -> bool:
        """Whether the outputs are class (or label) scores, with probabilities (``predict_proba``)."""
        return self.kind != "values"

    def probabilities(self, outputs: ArrayLike):
        """Class probabilities from this loss's outputs (jit-able): softmax rows ``[n, k]``; ``[n, 2]``
        (P(class 0), P(class 1)) for one logit; each label's sigmoid ``[n, k]`` for a multi-label loss. The one
        map that ``predict_proba``, the set metrics and ``jnn export`` share (a regression loss has none)."""
        if self.output_activation == "softmax":
            return jax.nn.softmax(outputs, axis=-1)
        p = jax.nn.sigmoid(outputs)
        if self.outputs == "one":
            p = as_column(p)
            return jnp.stack([jnp.ones_like(p) - p, p], axis=1)
        return p


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


_REGRESSION_METRICS = ("mse", "mae", "r2")
#: The built-in losses by name, in the order the CLI lists them.
REGISTRY: dict[str, Loss] = {
    loss.name: loss
    for loss in (
        Loss("softmax", _softmax_terms, "classes", "classes", "softmax", ("accuracy",), softmax_accuracy,
             backprop=True, summary="softmax cross-entropy −log softmax(z)_y (the lecture's)"),
        Loss("binary", _binary_terms, "classes", "one", "sigmoid", ("accuracy",), binary_accuracy, backprop=True,
             summary="binary cross-entropy −(y log σ(z) + (1−y) log(1−σ(z))) (the lecture's)"),
        Loss("mse", _mse_terms, "values", "targets", "identity", _REGRESSION_METRICS, target_scaling=True,
             summary="mean squared error, mean over the targets of (f − y)²"),
        Loss("multilabel", _multilabel_terms, "multilabel", "targets", "sigmoid", ("accuracy",),
             multilabel_accuracy, summary="a binary cross-entropy per label, averaged over the labels"),
        Loss("huber", _huber_terms, "values", "targets", "identity", _REGRESSION_METRICS, target_scaling=True,
             summary=f"Huber loss with δ = {HUBER_DELTA:g}: ½r² for |r| ≤ δ, else δ(|r| − ½δ), mean over targets"),
    )
}  # fmt: skip
#: Built-in loss names.
LOSSES = tuple(REGISTRY)
#: The lecture's losses, which the hand-written backprop modules differentiate.
CLASSIFICATION_LOSSES = tuple(n for n, loss in REGISTRY.items() if loss.backprop)
#: What each built-in loss needs as targets (checked by ``jnn.task.check_task`` before training).
LOSS_TARGETS = {n: loss.targets for n, loss in REGISTRY.items()}
#: The default loss of ``jnn.MLP``, the CLI and the adapters.
DEFAULT_LOSS = LOSSES[0]
#: The loss whose per-example function the lecture's node-level backprop writes through one sigmoid output.
BINARY = REGISTRY["binary"]
#: The lecture's softmax cross-entropy.
SOFTMAX = REGISTRY["softmax"]


def get_loss(name: str) -> Loss:
    """The ``Loss`` record of a built-in name.

    Raises:
        ValueError: an unknown name (the message lists ``LOSSES``).
    """
    if isinstance(name, Loss):
        return name
    V.check_choice("loss", name, LOSSES)
    return REGISTRY[name]


def loss_of(loss) -> Loss | None:
    """The record of a task's ``loss``: a built-in name's ``Loss``, None for a loss function."""
    return REGISTRY.get(loss) if isinstance(loss, str) else None


def per_example_loss(loss: str, outputs, y):
    """Per-example loss ``[batch]`` for a built-in ``loss`` in ``LOSSES`` (no validation); each record's
    ``summary`` says what it computes."""
    return REGISTRY[loss].fn(outputs, y)


def loss_function(loss):
    """The per-example function ``(outputs, y) -> [batch]`` of a built-in name, or ``loss`` if callable.

    Raises:
        ValueError: an unknown name (the message lists ``LOSSES``).
        TypeError: neither a string nor a callable.
    """
    if callable(loss):
        return loss
    return get_loss(loss).fn


# ----------------------------------------------------------------------------------------------------
# public losses


def binary_cross_entropy(logits: Logits, y: Labels, *, mask=None) -> jax.Array:
    """Binary cross-entropy −(y log f + (1−y) log(1−f)) with f = σ(logit), averaged over the batch.

    Args:
        logits: ``[batch]`` or ``[batch, 1]`` raw scores (not probabilities).
        y: ``[batch]`` labels in {0, 1} (bool, int or float; floats in [0, 1] act as soft labels).
        mask: optional ``[batch]`` 0/1 mask; rows with 0 (padding) are excluded exactly.

    Returns:
        Scalar mean loss over the unmasked rows.
    """
    logits = V.check_float_array("logits", logits)
    y = check_labels("binary", tuple(logits.shape), y)
    mask = check_mask(mask, logits.shape[0])
    return masked_mean(_binary_terms(logits, y), mask)


def softmax_cross_entropy(logits: Logits, y: Labels, *, mask=None) -> jax.Array:
    """Softmax cross-entropy −Σ_k y_k log softmax(z)_k, averaged over the batch.

    Args:
        logits: ``[batch, classes]`` raw scores.
        y: integer labels ``[batch]`` in ``[0, classes)``, or float one-hot rows ``[batch, classes]``.
        mask: optional ``[batch]`` 0/1 mask; rows with 0 (padding) are excluded exactly.

    Returns:
        Scalar mean loss over the unmasked rows.
    """
    logits = V.check_float_array("logits", logits, min_ndim=2)
    y = check_labels("softmax", tuple(logits.shape), y)
    mask = check_mask(mask, logits.shape[0])
    return masked_mean(_softmax_terms(logits, y), mask)


def mean_squared_error(outputs, y, *, mask=None) -> jax.Array:
    """Mean squared error, the mean over examples and targets of (f − y)².

    Args:
        outputs: ``[batch]``, ``[batch, 1]`` or ``[batch, k]`` predictions.
        y: float targets of the same number of entries per example (``[batch]`` or ``[batch, k]``).
        mask: optional ``[batch]`` 0/1 mask; rows with 0 (padding) are excluded exactly.

    Returns:
        Scalar mean loss over the unmasked rows.
    """
    outputs = V.check_float_array("outputs", outputs)
    y = V.check_float_array("y", y)
    if y.shape[0] != outputs.shape[0] or np.size(y) != np.size(outputs):
        raise ValueError(f"y must hold one target per output: outputs {tuple(outputs.shape)}; got y {tuple(y.shape)}")
    return masked_mean(_mse_terms(outputs, y), check_mask(mask, outputs.shape[0]))


def multilabel_cross_entropy(logits, y, *, mask=None) -> jax.Array:
    """Multi-label sigmoid cross-entropy: a binary cross-entropy per label, averaged over labels and examples.

    Args:
        logits: ``[batch, k]`` raw scores, one per label.
        y: ``[batch, k]`` targets in {0, 1} (bool, int, or floats in [0, 1] as soft labels).
        mask: optional ``[batch]`` 0/1 mask; rows with 0 (padding) are excluded exactly.

    Returns:
        Scalar mean loss over the unmasked rows.
    """
    logits = V.check_float_array("logits", logits, min_ndim=2)
    y = V.as_array("y", y)
    if tuple(y.shape) != tuple(logits.shape):
        raise ValueError(f"y must have the shape of the logits {tuple(logits.shape)}; got {tuple(y.shape)}")
    if V.is_concrete(y) and y.size:
        yn = np.asarray(y, np.float64)
        if np.any(yn < 0) or np.any(yn > 1):
            raise ValueError(f"y must be in [0, 1] for a multi-label loss; got values in [{yn.min():g}, {yn.max():g}]")
    return masked_mean(_multilabel_terms(logits, y), check_mask(mask, logits.shape[0]))


def l2_selection(params: Params, include_bias: bool = False, mask=None) -> list[dict[str, bool]]:
    """Which leaves the L2 penalty covers: the weights, plus biases if ``include_bias``.

    Args:
        params: the parameter list.
        include_bias: also penalise the biases.
        mask: optional pytree of Python bools with the structure of ``params``; when given it decides
            alone (``include_bias`` must then be False).

    Returns:
        A pytree of bools with the structure of ``params``.
    """
    if not isinstance(include_bias, bool):
        raise TypeError(f"include_bias must be a bool; got {include_bias!r}")
    if mask is None:
        return [{"w": True, "b": include_bias} for _ in params]
    if include_bias:
        raise ValueError("pass either mask or include_bias=True to l2_penalty, not both; mask decides alone")
    try:
        flat = jax.tree_util.tree_structure(params).flatten_up_to(mask)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"mask must have the structure of params (a list of {{'w', 'b'}} dicts of bools): {err}"
        ) from None
    if not all(isinstance(m, bool) for m in flat):
        raise TypeError("mask must hold Python bools (True = penalise this leaf)")
    return mask


def l2_penalty(params: Params, lam: float, *, include_bias: bool = False, mask=None) -> jax.Array:
    """The lecture's L2 term λ‖W‖² = λ Σ_k Σ_ij (W_ij⁽ᵏ⁾)².

    Its gradient is 2λW. Not divided by the number of examples.

    Args:
        params: the parameter list.
        lam: λ ≥ 0.
        include_bias: also penalise the biases (default False).
        mask: optional pytree of bools picking the penalised leaves (see ``l2_selection``).

    Returns:
        Scalar penalty in the params' dtype.
    """
    V.check_params(params)
    lam = V.check_real("lam", lam, low=0.0, hint="lam is the L2 strength λ in λΣw²")
    sel = l2_selection(params, include_bias, mask)
    return l2_term(params, lam, sel)


def l2_term(params, lam, sel):
    """λ Σ w² over the leaves that ``sel`` (from ``l2_selection``) marks; unvalidated, jit-able."""
    dtype = params[0]["w"].dtype
    total = jnp.zeros((), dtype)
    for layer, s in zip(params, sel):
        for name in ("w", "b"):
            if s[name]:
                total = total + jnp.sum(layer[name] * layer[name])
    return lam * total


def regularized_loss(
    params: Params,
    x: ArrayLike,
    y: ArrayLike,
    *,
    loss: str = "softmax",
    activation: str = "relu",
    l2: float = 0.0,
    include_bias: bool = False,
    l2_mask: PyTree | None = None,
    dropout: Dropout | None = None,
    key: PRNGKey | None = None,
    train: bool = False,
    mask: ArrayLike | None = None,
) -> jax.Array:
    """The training objective l_Reg = l_CE + λ‖W‖², the function ``jax.grad`` differentiates.

    Args:
        params: the parameter list.
        x: inputs ``[batch, d_in]``.
        y: labels (see ``softmax_cross_entropy`` / ``binary_cross_entropy``).
        loss: ``"softmax"`` or ``"binary"``.
        activation: hidden activation name.
        l2: λ ≥ 0.
        include_bias: also penalise biases.
        l2_mask: optional pytree of bools picking penalised leaves.
        dropout: optional ``jnn.Dropout``.
        key: dropout key (required when training with dropout).
        train: training mode for dropout.
        mask: optional ``[batch]`` example mask (padding rows = 0).

    Returns:
        The scalar mean cross-entropy over unmasked rows plus the L2 penalty.
    """
    x, y, mask, lam, sel = check_objective_args(params, x, y, loss=loss, activation=activation, l2=l2,
                                                include_bias=include_bias, l2_mask=l2_mask, dropout=dropout,
                                                key=key, train=train, mask=mask)  # fmt: skip
    return _regularized_loss(params, x, y, loss, activation, lam, sel, dropout, key, train, mask)


def check_objective_args(params, x, y, *, loss, activation, l2, include_bias, l2_mask, dropout, key, train, mask):
    """Validate the arguments of the regularised objective (shared by ``regularized_loss`` and both
    hand-written backprop modules).

    Returns:
        ``(x, y, mask, lam, sel)``: the arrays, λ as a float and the L2 selection pytree.
    """
    x = check_forward_args(params, x, activation, dropout, key, train)
    if x.ndim != 2:
        raise ValueError(f"x must be [batch, d_in]; got shape {tuple(x.shape)}")
    V.check_choice("loss", loss, CLASSIFICATION_LOSSES)
    y = check_labels(loss, (x.shape[0], params[-1]["w"].shape[1]), y)
    mask = check_mask(mask, x.shape[0])
    lam = V.check_real("l2", l2, low=0.0, hint="l2 is λ in λΣw²")
    return x, y, mask, lam, l2_selection(params, include_bias, l2_mask)


def _regularized_loss(params, x, y, loss, activation, lam, sel, dropout, key, train, mask):
    """Unvalidated core of ``regularized_loss``: the objective that training differentiates, for the MLP."""
    logits = forward_cache(params, x, activation=activation, dropout=dropout, key=key, train=train).zs[-1]
    return objective(per_example_loss(loss, logits, y), mask, None, l2_term(params, lam, sel))[0]


def objective(per_example, mask, weight, penalty):
    """The training objective, written once: (weighted) masked mean of the per-example loss + penalty.

    Args:
        per_example: ``[batch]`` loss values.
        mask: ``[batch]`` 0/1 example mask (padding = 0) or None.
        weight: ``[batch]`` example weights or None (see ``masked_mean``).
        penalty: scalar penalty on the params (e.g. λΣw²), or None.

    Returns:
        ``(total, data)``: the objective and its data term (the recorded training loss).
    """
    data = masked_mean(per_example, mask, weight)
    return (data if penalty is None else data + penalty), data
