"""The lecture's backpropagation in vectorised (δ) form, written by hand.

Two stages, as in the lecture:

1. **Forward pass** (``jnn.model.forward_cache``): store every layer's pre-activation
   ``z⁽ᵏ⁾ = a⁽ᵏ⁻¹⁾W⁽ᵏ⁾ + b⁽ᵏ⁾``, its activation ``g(z⁽ᵏ⁾)`` and the dropout multiplier.
2. **Backward pass**, from the output to the input. Define

       δ⁽ᵏ⁾ = ∂l/∂z⁽ᵏ⁾   ([batch, d_k]; row n is the gradient for example n).

   At the output, equations (a) and (b) of the lecture give, with ŷ = σ(z) and the mean over the
   batch (weights m_n/Σm for the example mask),

       (a) ∂l/∂ŷ = −y/ŷ + (1−y)/(1−ŷ),   (b) ∂ŷ/∂z = g′(z) = ŷ(1−ŷ)   ⇒   δ⁽ᴸ⁾ = ŷ − y,

   and the same ``softmax(z) − onehot(y)`` for softmax cross-entropy. The product (a)·(b) is used in
   its simplified form ŷ − y, which is exact and stays finite when ŷ saturates to 0 or 1
   (``lecture_output_delta`` computes (a)·(b) literally, and the tests check they agree).
   Then, layer by layer in reverse (the chain rule, step (d)):

       δ⁽ᵏ⁾ = (δ⁽ᵏ⁺¹⁾ W⁽ᵏ⁺¹⁾ᵀ) ⊙ f⁽ᵏ⁾ ⊙ g′(z⁽ᵏ⁾)       (f⁽ᵏ⁾: dropout multiplier, 1 without dropout)
       ∂l/∂W⁽ᵏ⁾ = a⁽ᵏ⁻¹⁾ᵀ δ⁽ᵏ⁾ + 2λW⁽ᵏ⁾                 (steps (c), (e): ∂z/∂W = a)
       ∂l/∂b⁽ᵏ⁾ = Σ_n δ⁽ᵏ⁾_n  (+ 2λb⁽ᵏ⁾ when biases are penalised)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnn.activations import get_activation
from jnn.dropout import Dropout
from jnn.losses import DEFAULT_LOSS, check_objective_args, get_loss
from jnn.model import ForwardCache, forward_cache
from jnn.types import Params, PRNGKey


class BackpropCache(NamedTuple):
    """What the two stages computed: the forward cache and every δ.

    Attributes:
        forward: the ``jnn.model.ForwardCache`` (pre-activations, activations, dropout factors).
        deltas: ``deltas[k] = ∂l/∂z⁽ᵏ⁺¹⁾``, ``[batch, d_{k+1}]``, for every layer k = 0..L−1 (the last one
            is the output δ). The data-loss part only; L2 enters the weight gradients directly.
    """

    forward: ForwardCache
    deltas: list


def output_delta(loss: str, logits, y, mask=None):
    """δ at the logits, ∂l/∂z⁽ᴸ⁾, for the batch-mean loss: ``(ŷ − y) · m_n / Σm``.

    Args:
        loss: ``"softmax"`` or ``"binary"``.
        logits: ``[batch, d_out]`` (or ``[batch]`` for binary).
        y: labels as accepted by the losses.
        mask: optional ``[batch]`` example mask.

    Returns:
        Array with the shape of ``logits``.
    """
    batch = logits.shape[0]
    if get_loss(loss).output_activation == "softmax":
        p = jax.nn.softmax(logits, axis=-1)
        t = (
            jax.nn.one_hot(y, logits.shape[-1], dtype=p.dtype)
            if jnp.issubdtype(y.dtype, jnp.integer)
            else y.astype(p.dtype)
        )
        d = p - t
    else:
        p = jax.nn.sigmoid(logits)
        d = p - y.reshape(p.shape).astype(p.dtype)
    if mask is None:
        w = jnp.full((batch,), 1.0 / batch, logits.dtype)
    else:
        m = mask.astype(logits.dtype)
        w = m / jnp.maximum(jnp.sum(m), 1.0)
    return d * w.reshape((batch,) + (1,) * (d.ndim - 1))


def lecture_output_delta(logits, y):
    """Equations (a)·(b) of the lecture, literally, for one sigmoid output and BCE (per example).

    (a) ∂l/∂ŷ = −y/ŷ + (1−y)/(1−ŷ); (b) ∂ŷ/∂z = ŷ(1−ŷ); returns (a)·(b). Finite only while ŷ ∉ {0, 1};
    equal to ŷ − y there (which ``output_delta`` uses).
    """
    yhat = jax.nn.sigmoid(logits)
    y = y.reshape(yhat.shape).astype(yhat.dtype)
    dl_dyhat = -y / yhat + (1.0 - y) / (1.0 - yhat)  # (a)
    dyhat_dz = yhat * (1.0 - yhat)  # (b)
    return dl_dyhat * dyhat_dz


def backprop(params: Params, x, y, *, loss: str = DEFAULT_LOSS, activation: str = "relu", l2: float = 0.0,
             include_bias: bool = False, l2_mask=None, dropout: Dropout | None = None,
             key: PRNGKey | None = None, train: bool = False, mask=None, return_cache: bool = False):  # fmt: skip
    """Gradient of ``jnn.regularized_loss`` by the lecture's two-stage algorithm, by hand.

    Takes exactly the arguments of ``jnn.regularized_loss``, and given the same dropout key it uses
    the same masks (both go through ``jnn.model.forward_cache``).

    Args:
        params: list of ``{"w": [d_in, d_out], "b": [d_out]}``.
        x: inputs ``[batch, d_in]``.
        y: labels for ``loss``.
        loss, activation, l2, include_bias, l2_mask, dropout, key, train, mask: as in
            ``jnn.regularized_loss``.
        return_cache: also return the ``BackpropCache`` (every δ and activation).

    Returns:
        ``grads`` (same structure as ``jax.grad(regularized_loss)(params, ...)``), or
        ``(grads, cache)`` when ``return_cache``.
    """
    x, y, mask, lam, sel = check_objective_args(params, x, y, loss=loss, activation=activation, l2=l2,
                                                include_bias=include_bias, l2_mask=l2_mask, dropout=dropout,
                                                key=key, train=train, mask=mask)  # fmt: skip
    grads, cache = _backprop(params, x, y, loss, activation, lam, sel, dropout, key, train, mask)
    return (grads, cache) if return_cache else grads


def _backprop(params, x, y, loss, activation, lam, sel, dropout, key, train, mask):
    """Unvalidated core of ``backprop`` (jit-able)."""
    g_prime = get_activation(activation).deriv
    # Stage 1: forward pass, every node's value stored.
    fwd = forward_cache(params, x, activation=activation, dropout=dropout, key=key, train=train)
    # Stage 2: backward pass from the output.
    delta = output_delta(loss, fwd.zs[-1], y, mask)
    L = len(params)
    grads = [None] * L
    deltas = [None] * L
    for k in range(L - 1, -1, -1):
        deltas[k] = delta
        a_prev = fwd.activations[k]
        gw = a_prev.T @ delta
        gb = jnp.sum(delta, axis=0)
        if sel[k]["w"]:
            gw = gw + (2.0 * lam) * params[k]["w"]
        if sel[k]["b"]:
            gb = gb + (2.0 * lam) * params[k]["b"]
        grads[k] = {"w": gw, "b": gb}
        if k > 0:
            # δ⁽ᵏ⁾ = (δ⁽ᵏ⁺¹⁾ W⁽ᵏ⁺¹⁾ᵀ) ⊙ f ⊙ g′(z), g′ from the cached activation g(z).
            back = delta @ params[k]["w"].T
            f = fwd.factors[k - 1]
            if f is not None:
                back = back * f
            delta = back * g_prime(fwd.zs[k - 1], fwd.hs[k - 1])
    return grads, BackpropCache(fwd, deltas)
