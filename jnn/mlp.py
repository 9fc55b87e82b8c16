"""The built-in MLP as one instance of the :class:`jnn.Task` contract.

``mlp_task`` wraps the lecture's network (:func:`jnn.init_mlp`, :func:`jnn.model.forward_cache`), its
dropout in both conventions and the L2 penalty λΣw² as a Task whose hyperparameters are ``l2`` (λ) and
``keep_prob`` (p). ``jnn.fit(train, config)`` trains ``mlp_task_for(config, config.network_sizes(train))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp

from jnn.dropout import Dropout
from jnn.init import init_mlp
from jnn.losses import l2_selection, l2_term
from jnn.model import dropout_masks, forward_cache
from jnn.task import Task


def l2_penalty_fn(params_template, *, include_bias: bool = False):
    """The lecture's penalty as a task penalty: ``penalty(params, hyper) = hyper["l2"] · Σ w²``.

    Args:
        params_template: MLP params (a list of ``{"w", "b"}``) fixing the structure.
        include_bias: also penalise the biases.
    """
    l2_selection(params_template, include_bias)  # validates include_bias
    return L2Penalty(len(params_template), include_bias)


# The MLP's functions are frozen dataclasses rather than closures: two MLPs of the same description have
# equal (and equally hashing) functions, so ``jax.jit``'s own cache serves every run of one description.


@dataclass(frozen=True)
class L2Penalty:
    """``penalty(params, hyper) = hyper["l2"] · Σ w²`` over the ``layers`` weights (and biases)."""

    layers: int
    include_bias: bool = False

    def __call__(self, params, hyper):
        sel = l2_selection([None] * self.layers, self.include_bias)
        return l2_term(params, hyper["l2"], sel)


@dataclass(frozen=True)
class MLPInit:
    """``init(key) -> params`` of :func:`jnn.init_mlp` for layer widths ``sizes``."""

    sizes: tuple[int, ...]
    scheme: str
    dtype: Any

    def __call__(self, key):
        return init_mlp(key, self.sizes, scheme=self.scheme, dtype=self.dtype)


@dataclass(frozen=True)
class MLPApply:
    """``apply(params, x, *, key, train, hyper)``: the forward pass; ``key`` is a PRNG key or the masks of
    :class:`MLPDraw` (dropout with ``hyper["keep_prob"]`` when ``use_dropout``)."""

    activation: str
    dropout_mode: str
    use_dropout: bool

    def __call__(self, params, x, *, key, train, hyper):
        masks = key if isinstance(key, dict) else None
        dropout = Dropout(hyper["keep_prob"], self.dropout_mode) if self.use_dropout else None
        return forward_cache(
            params,
            x,
            activation=self.activation,
            dropout=dropout,
            key=None if masks is not None else key,
            train=train,
            masks=masks,
        ).zs[-1]


@dataclass(frozen=True)
class MLPDraw:
    """``draw(key, hyper, batch_size)``: one step's dropout masks for layer widths ``sizes``."""

    sizes: tuple[int, ...]
    dropout_mode: str

    def __call__(self, key, hyper, batch_size):
        return dropout_masks(Dropout(hyper["keep_prob"], self.dropout_mode), key, self.sizes, batch_size)


def mlp_task(
    sizes,
    *,
    activation: str = "relu",
    loss: str = "softmax",
    scheme: str = "lecun_normal",
    dtype="float32",
    l2: float = 0.0,
    include_bias: bool = False,
    keep_prob: float = 1.0,
    dropout_mode: str = "inverted",
    use_dropout: bool | None = None,
    metrics=None,
) -> Task:
    """The fully connected network of the lecture as a :class:`jnn.Task`.

    Two calls with the same arguments (other than the defaults ``l2`` and ``keep_prob``, which the engine
    passes as arrays) give tasks with equal functions, so training either compiles once.

    Args:
        sizes: layer widths ``(d_in, h_1, ..., d_out)``.
        activation: hidden activation name.
        loss: a built-in loss name (the network outputs logits / predictions ``[batch, d_out]``).
        scheme: initialisation scheme of :func:`jnn.init_mlp`.
        dtype: float dtype of the params.
        l2: default λ (``hyper["l2"]``) of λΣw².
        include_bias: also penalise the biases.
        keep_prob: default dropout keep probability p (``hyper["keep_prob"]``); 1 disables dropout.
        dropout_mode: ``"inverted"`` or ``"classic"`` (evaluation then scales by ``hyper["keep_prob"]``).
        use_dropout: compile the dropout path (default ``keep_prob < 1``; a sweep with some members below
            1 passes True).
        metrics: the task's metrics (default: the loss's, see :data:`jnn.metrics.DEFAULT_METRICS`).

    Returns:
        A Task with hyperparameters ``{"l2": l2, "keep_prob": keep_prob}``; its ``draw`` gives a step's
        dropout masks, so an epoch's masks can be drawn in one call.
    """
    sizes = tuple(int(s) for s in sizes)
    Dropout(keep_prob, dropout_mode)  # validates both
    use_dropout = bool(keep_prob < 1.0 if use_dropout is None else use_dropout)
    return Task(
        init=MLPInit(sizes, scheme, _dtype_name(dtype)),
        apply=MLPApply(activation, dropout_mode, use_dropout),
        loss=loss,
        penalty=L2Penalty(len(sizes) - 1, include_bias),
        metrics=metrics,
        hyper={"l2": float(l2), "keep_prob": float(keep_prob)},
        draw=MLPDraw(sizes, dropout_mode) if use_dropout else None,
    )


def _dtype_name(dtype):
    """``dtype``'s name (so that ``"float32"`` and ``jnp.float32`` describe one MLP); as given if not a dtype
    (:func:`jnn.init_mlp` then says what is wrong)."""
    try:
        return jnp.dtype(dtype).name
    except TypeError:
        return dtype


def mlp_task_for(config, sizes, dtype: str = "float32", *, use_dropout: bool | None = None) -> Task:
    """The MLP that a :class:`jnn.TrainConfig` describes, with layer widths ``sizes``.

    ``fit`` passes ``config.network_sizes(train)`` (input width from the data, output width from the
    loss); ``evaluate`` passes the widths of the trained params.
    """
    return mlp_task(sizes, activation=config.activation, loss=config.loss, scheme=config.scheme, dtype=dtype,
                    l2=config.l2, include_bias=config.include_bias, keep_prob=config.keep_prob,
                    dropout_mode=config.dropout_mode, use_dropout=use_dropout)  # fmt: skip


__all__ = ["mlp_task", "mlp_task_for", "l2_penalty_fn", "L2Penalty", "MLPInit", "MLPApply", "MLPDraw"]
