"""The feed-forward network NN(x; θ) as a pure function of the parameters."""

from __future__ import annotations

import warnings
import weakref
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnn import _validate as V
from jnn import threefry
from jnn.activations import get_activation
from jnn.dropout import Dropout, check_dropout
from jnn.types import Inputs, Logits, Params, PRNGKey


class ForwardCache(NamedTuple):
    """Every node value of one forward pass (stage one of the lecture's backpropagation).

    For layers k = 1..L (L = ``len(params)``), lists are indexed from 0:

    Attributes:
        inputs: ``a⁽⁰⁾``, the inputs after input dropout, ``[batch, d_0]``.
        zs: pre-activations ``z⁽ᵏ⁾ = a⁽ᵏ⁻¹⁾ W⁽ᵏ⁾ + b⁽ᵏ⁾``, ``[batch, d_k]``; ``zs[-1]`` are the logits.
        hs: hidden activations ``g(z⁽ᵏ⁾)`` before dropout, k = 1..L−1.
        factors: dropout multipliers of the hidden layers (``None`` without dropout), k = 1..L−1.
        activations: ``a⁽ᵏ⁾ = g(z⁽ᵏ⁾) ⊙ factor⁽ᵏ⁾``, k = 0..L−1 (index 0 is ``inputs``).
    """

    inputs: jax.Array
    zs: list
    hs: list
    factors: list
    activations: list


def _add_bias(xw, b):
    # Explicit broadcast keeps the code valid under jax_numpy_rank_promotion="raise".
    return xw + b.reshape((1,) * (xw.ndim - 1) + b.shape)


def forward_cache(params: Params, x: Inputs, *, activation: str = "relu", dropout: Dropout | None = None,
                  key: PRNGKey | None = None, train: bool = False,
                  masks: dict | None = None) -> ForwardCache:  # fmt: skip
    """Forward pass that stores the value of every layer: ``u = g(w z + b)`` for every unit.

    Arguments are those of ``forward``, plus ``masks``: optional ``{layer: bool [batch, width]}``
    training masks drawn beforehand (e.g. for a whole epoch at once, see ``dropout_masks``), used
    instead of drawing them from ``key``. Validation is left to the public callers.
    """
    g = get_activation(activation).fn

    def factor(layer, shape, dtype):
        if masks is not None and train:
            return dropout.factor_from_mask(masks[layer], dtype)
        return dropout.factor(key, layer, shape, dtype, train=train)

    a = x
    if dropout is not None and dropout.applies_to(0):
        a = a * factor(0, a.shape, a.dtype)
    inputs = a
    zs, hs, factors, acts = [], [], [], [a]
    for k, layer in enumerate(params):
        z = _add_bias(a @ layer["w"], layer["b"])
        zs.append(z)
        if k == len(params) - 1:
            break  # the output layer has no activation: losses take logits
        h = g(z)
        f = None if dropout is None else factor(k + 1, h.shape, h.dtype)
        a = h if f is None else h * f
        hs.append(h)
        factors.append(f)
        acts.append(a)
    return ForwardCache(inputs, zs, hs, factors, acts)


def dropout_masks(dropout: Dropout, key: PRNGKey, sizes, batch: int) -> dict:
    """The training masks that ``forward_cache`` draws from ``key`` for a network of ``sizes``.

    Args:
        dropout: the ``Dropout``.
        key: the dropout key of one forward pass.
        sizes: layer widths ``(d_in, h_1, ..., d_out)``.
        batch: rows of the minibatch.

    Returns:
        ``{layer: bool [batch, width]}`` for every layer dropout applies to (0 = inputs with
        ``on_inputs``, k = k-th hidden layer); passing it as ``forward_cache(..., masks=...)`` gives bit
        for bit the pass that ``key`` gives.
    """
    layers = list(range(0 if dropout.applies_to(0) else 1, len(sizes) - 1))
    if not jax.config.jax_threefry_partitionable or len(layers) < 2:
        return {k: dropout.keep_mask(key, k, (batch, sizes[k])) for k in layers}
    # With partitionable threefry (the default) a flat draw of n bits is the prefix of any longer draw
    # from the same key, and the [batch, width] mask is the flat draw reshaped, so one vmapped draw of the
    # widest layer's length serves every layer: fewer samplers to compile (as in jnn.init).
    n = max(batch * sizes[k] for k in layers)
    keys = jax.vmap(lambda k: jax.random.fold_in(key, k))(jnp.asarray(layers, jnp.uint32))
    flat = jax.vmap(lambda k: threefry.bernoulli(k, dropout.keep_prob, (n,)))(keys)
    return {k: flat[i, : batch * sizes[k]].reshape(batch, sizes[k]) for i, k in enumerate(layers)}


def check_forward_args(params, x, activation, dropout, key, train):
    """Validate the arguments of ``forward`` (shared by losses and backprop). Returns ``x`` as an array."""
    V.check_params(params)
    x = V.check_float_array("x", x)
    d_in = params[0]["w"].shape[0]
    if x.shape[-1] != d_in:
        raise ValueError(
            f"x must have last dimension {d_in} (params[0]['w'] is {tuple(params[0]['w'].shape)}); "
            f"got x of shape {tuple(x.shape)}"
        )
    if x.dtype != params[0]["w"].dtype:
        raise TypeError(
            f"x must have the dtype of the params ({params[0]['w'].dtype}); got {x.dtype}. "
            f"Convert with x.astype(params[0]['w'].dtype)"
        )
    get_activation(activation)
    check_dropout(dropout, key, train)
    return x


def forward(params: Params, x: Inputs, *, activation: str = "relu", dropout: Dropout | None = None,
            key: PRNGKey | None = None, train: bool = False) -> Logits:  # fmt: skip
    """Compute the logits NN(x; θ). Pure, jit-able and vmap-able.

    Hidden layers compute ``a⁽ᵏ⁾ = g(a⁽ᵏ⁻¹⁾ W⁽ᵏ⁾ + b⁽ᵏ⁾)`` (then dropout); the output layer is affine
    (no activation), since the losses take logits.

    Args:
        params: list of ``{"w": [d_in, d_out], "b": [d_out]}`` (see ``jnn.init_mlp``).
        x: inputs ``[batch, d_in]`` (or ``[d_in]`` for one example), with the params' float dtype.
        activation: hidden activation name (see ``jnn.activations.ACTIVATIONS``).
        dropout: a ``jnn.Dropout``, or ``None``.
        key: dropout key; required when ``train=True`` and ``dropout.keep_prob < 1``.
        train: training mode (random masks) or test mode (``classic`` scales by ``keep_prob``).

    Returns:
        Logits ``[batch, d_out]``.
    """
    x = check_forward_args(params, x, activation, dropout, key, train)
    p = classic_keep_prob(params) if dropout is None else None
    if p is not None:
        warnings.warn(
            f"these params were trained with classic dropout (keep_prob {p:g}): at test time the lecture's rule "
            f"uses the whole network with expected weights, p x W. Pass dropout=jnn.Dropout({p:g}, 'classic') "
            "(train=False), or use FitResult.predict / predict_proba",
            ClassicDropoutWarning,
            stacklevel=2,
        )
    return forward_cache(params, x, activation=activation, dropout=dropout, key=key, train=train).zs[-1]


class ClassicDropoutWarning(UserWarning):
    """``forward`` was given the params of a classic-dropout fit without the dropout rule."""


#: Params that came out of a classic-dropout fit: ids of their weight arrays -> (weak references to them, p).
_CLASSIC: dict = {}


def _weights(params) -> list | None:
    """The weight arrays of the built-in MLP's params, or None for another pytree."""
    ok = isinstance(params, (list, tuple)) and params and all(isinstance(l, dict) and "w" in l for l in params)
    return [layer["w"] for layer in params] if ok else None


def mark_classic(params, keep_prob: float) -> None:
    """Remember that ``params`` (a fit's result) were trained with classic dropout of ``keep_prob``, so that
    ``forward`` without the rule warns. Held by weak references to every weight array: params with any layer
    replaced (scaled by p, say) or copied are not marked."""
    ws = _weights(params)
    if ws is None:
        return
    for k in [k for k, (refs, _) in _CLASSIC.items() if any(r() is None for r in refs)]:  # forget collected params
        del _CLASSIC[k]
    _CLASSIC[tuple(map(id, ws))] = (tuple(weakref.ref(w) for w in ws), float(keep_prob))


def classic_keep_prob(params) -> float | None:
    """The keep_prob of the classic-dropout fit that returned ``params``, or None."""
    ws = _weights(params)
    entry = None if ws is None else _CLASSIC.get(tuple(map(id, ws)))
    return entry[1] if entry is not None and all(r() is w for r, w in zip(entry[0], ws)) else None
