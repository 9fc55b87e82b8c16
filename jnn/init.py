"""Random initialisation of θ, the first line of the lecture's algorithm ("Randomly initialize θ")."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from jnn import _validate as V
from jnn.types import Params, PRNGKey

#: Initialisation schemes: name -> (how w is drawn, how b is drawn). fan_in = d_in, fan_out = d_out.
SCHEMES = {
    "lecun_normal": "w ~ N(0, 1/fan_in), b = 0  (Flax's default)",
    "glorot_uniform": "w ~ U(±sqrt(6/(fan_in+fan_out))), b = 0  (Keras's default)",
    "he_normal": "w ~ N(0, 2/fan_in), b = 0  (for relu)",
    "uniform": "w, b ~ U(±1/sqrt(fan_in))  (PyTorch's nn.Linear default)",
}


def _check_dtype(dtype) -> jnp.dtype:
    try:
        dt = jnp.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be a floating dtype such as 'float32' or 'float64'; got {dtype!r}") from None
    if not jnp.issubdtype(dt, jnp.floating):
        raise TypeError(f"dtype must be a floating dtype such as 'float32' or 'float64'; got {dt}")
    if dt == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype float64 needs 64-bit mode; wrap the call in `with jnn.float64_mode():` "
                         "(or set jax_enable_x64); got dtype=float64 with x64 disabled")
    return dt


def init_mlp(key: PRNGKey, sizes, *, scheme: str = "lecun_normal", dtype="float32") -> Params:
    """Draw the parameters of a fully connected network.

    Args:
        key: PRNG key (``jax.random.key(seed)``); split once per layer, never reused.
        sizes: layer widths ``(d_in, h_1, ..., d_out)``, at least two positive ints.
        scheme: one of :data:`SCHEMES` (``lecun_normal``, ``glorot_uniform``, ``he_normal``, ``uniform``).
        dtype: floating dtype of every leaf; ``float64`` needs :func:`jnn.float64_mode`.

    Returns:
        A list with one ``{"w": [d_in, d_out], "b": [d_out]}`` dict per layer.

    Raises:
        ValueError, TypeError: on bad sizes, an unknown scheme, a non-float dtype or a bad key.
    """
    key = V.check_key("key", key)
    sizes = V.check_sizes(sizes)
    V.check_choice("scheme", scheme, list(SCHEMES))
    dt = _check_dtype(dtype)
    params = []
    for k, (fan_in, fan_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        kw, kb = jax.random.split(k)
        shape = (fan_in, fan_out)
        b = jnp.zeros((fan_out,), dt)
        if scheme == "lecun_normal":
            w = jax.random.normal(kw, shape, dt) * math.sqrt(1.0 / fan_in)
        elif scheme == "he_normal":
            w = jax.random.normal(kw, shape, dt) * math.sqrt(2.0 / fan_in)
        elif scheme == "glorot_uniform":
            lim = math.sqrt(6.0 / (fan_in + fan_out))
            w = jax.random.uniform(kw, shape, dt, -lim, lim)
        else:  # uniform
            lim = 1.0 / math.sqrt(fan_in)
            w = jax.random.uniform(kw, shape, dt, -lim, lim)
            b = jax.random.uniform(kb, (fan_out,), dt, -lim, lim)
        params.append({"w": w, "b": b})
    return params
