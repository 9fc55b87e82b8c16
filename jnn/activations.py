"""Activations g and their derivatives g′, side by side in one table.

Each derivative takes the pre-activation ``z`` and the cached activation ``a = g(z)`` of the forward
pass, and uses ``a`` where the derivative can be written in it (sigmoid: a(1−a); tanh: 1−a²), so the
backward pass reuses what the forward pass stored, as the lecture's two-stage algorithm does.

The functions accept jax arrays (used by ``jnn.model`` and ``jnn.backprop.vectorized``) and
NumPy float64 arrays or scalars (used by the node-level reference ``jnn.backprop.nodes``, which
must stay in float64 whatever JAX's x64 flag says).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

LEAKY_SLOPE = 0.01


def _np(z) -> bool:
    return isinstance(z, (np.ndarray, np.generic, float, int))


class Activation(NamedTuple):
    """One row of the table: ``fn(z) = a`` and ``deriv(z, a) = g′(z)``."""

    name: str
    fn: Callable
    deriv: Callable
    formula: str


def _relu(z):
    return np.maximum(z, 0.0) if _np(z) else jax.nn.relu(z)


def _relu_d(z, a):
    # g'(0) = 0, the same subgradient jax.nn.relu's custom JVP uses.
    return (np.asarray(z) > 0).astype(np.float64) if _np(z) else (z > 0).astype(z.dtype)


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(z, np.float64))) if _np(z) else jax.nn.sigmoid(z)


def _sigmoid_d(z, a):
    return a * (1.0 - a)


def _tanh(z):
    return np.tanh(z) if _np(z) else jnp.tanh(z)


def _tanh_d(z, a):
    return 1.0 - a * a


def _identity(z):
    return z


def _identity_d(z, a):
    return np.ones_like(np.asarray(z, np.float64)) if _np(z) else jnp.ones_like(z)


def _softplus(z):
    return np.logaddexp(0.0, z) if _np(z) else jax.nn.softplus(z)


def _softplus_d(z, a):
    return _sigmoid(z)  # not expressible through a = log(1+e^z) without an exp; sigmoid(z) is exact


def _leaky_relu(z):
    return (
        np.where(np.asarray(z) > 0, z, LEAKY_SLOPE * np.asarray(z)) if _np(z) else jnp.where(z > 0, z, LEAKY_SLOPE * z)
    )


def _leaky_relu_d(z, a):
    return (
        np.where(np.asarray(z) > 0, 1.0, LEAKY_SLOPE)
        if _np(z)
        else jnp.where(z > 0, jnp.ones_like(z), jnp.full_like(z, LEAKY_SLOPE))
    )


#: name -> Activation(fn, deriv, formula). g′ sits beside g.
ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", _relu, _relu_d, "g = max(z, 0);            g' = 1[z > 0]"),
        Activation("sigmoid", _sigmoid, _sigmoid_d, "g = 1/(1+e^-z);            g' = a(1 - a)"),
        Activation("tanh", _tanh, _tanh_d, "g = tanh z;                g' = 1 - a^2"),
        Activation("identity", _identity, _identity_d, "g = z;                     g' = 1"),
        Activation("softplus", _softplus, _softplus_d, "g = log(1+e^z);            g' = sigmoid(z)"),
        Activation(
            "leaky_relu", _leaky_relu, _leaky_relu_d, f"g = z if z>0 else {LEAKY_SLOPE}z;  g' = 1 or {LEAKY_SLOPE}"
        ),
    )
}


def get_activation(name: str) -> Activation:
    """Look up an activation by name.

    Args:
        name: one of ``relu``, ``sigmoid``, ``tanh``, ``identity``, ``softplus``, ``leaky_relu``.

    Returns:
        The ``Activation`` row with ``fn`` and ``deriv``.

    Raises:
        TypeError: if ``name`` is not a string.
        ValueError: if ``name`` is unknown; the message lists the known names.
    """
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string, one of {list(ACTIVATIONS)}; got {name!r}")
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {list(ACTIVATIONS)}; got {name!r}")
    return ACTIVATIONS[name]
