"""Random initialisation of θ, the first line of the lecture's algorithm ("Randomly initialize θ")."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jnn import _validate as V
from jnn.types import DTypeLike, Params, PRNGKey

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
        raise ValueError(
            "dtype float64 needs 64-bit mode; wrap the call in `with jnn.float64_mode():` "
            "(or set jax_enable_x64); got dtype=float64 with x64 disabled"
        )
    return dt


def init_mlp(
    key: PRNGKey, sizes: Sequence[int], *, scheme: str = "lecun_normal", dtype: DTypeLike = "float32"
) -> Params:
    """Draw the parameters of a fully connected network.

    Args:
        key: PRNG key (``jax.random.key(seed)``); split once per layer, never reused.
        sizes: layer widths ``(d_in, h_1, ..., d_out)``, at least two positive ints.
        scheme: one of ``SCHEMES`` (``lecun_normal``, ``glorot_uniform``, ``he_normal``, ``uniform``).
        dtype: floating dtype of every leaf; ``float64`` needs ``jnn.float64_mode``.

    Returns:
        A list with one ``{"w": [d_in, d_out], "b": [d_out]}`` dict per layer.

    Raises:
        ValueError, TypeError: on bad sizes, an unknown scheme, a non-float dtype or a bad key.
    """
    key = V.check_key("key", key)
    sizes = V.check_sizes(sizes)
    V.check_choice("scheme", scheme, list(SCHEMES))
    dt = _check_dtype(dtype)
    impl = (
        str(jax.random.key_impl(key))
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
        else jax.config.jax_default_prng_impl
    )
    shapes = list(zip(sizes[:-1], sizes[1:]))
    padded = len(shapes) * max(a * b for a, b in shapes)
    # A draw of n numbers from a threefry key is the first n of any longer draw from it (with
    # jax_threefry_partitionable, the default), so every layer's weights can come from one vmapped draw
    # of the widest layer's length, sliced: one sampler to compile instead of one per layer (a cold
    # 40-256-256-10 init compiled in 0.35 s instead of 0.8-1.1 s). Bit for bit the per-layer draws;
    # kept to nets where the padding at most doubles the numbers drawn.
    vectorised = (
        impl == "threefry2x32"
        and jax.config.jax_threefry_partitionable
        and padded <= max(2 * sum(a * b for a, b in shapes), 1 << 20)
    )
    return (_init_vectorised if vectorised else _init_per_layer)(key, sizes, scheme, dt)


def _bounds(scheme, fan_in, fan_out):
    """Scale of a normal scheme, or the bound ``lim`` of a uniform one."""
    return {
        "lecun_normal": math.sqrt(1.0 / fan_in),
        "he_normal": math.sqrt(2.0 / fan_in),
        "glorot_uniform": math.sqrt(6.0 / (fan_in + fan_out)),
        "uniform": 1.0 / math.sqrt(fan_in),
    }[scheme]


# In both versions, optimisation barriers keep XLA from folding a scale (or bounds) into the sampler's
# own arithmetic, which would change the last bit of some draws; tests/test_init.py checks both against
# eager per-layer calls of jax.random.normal / uniform.


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init_vectorised(key, sizes, scheme, dt):
    shapes = list(zip(sizes[:-1], sizes[1:]))
    barrier = jax.lax.optimization_barrier
    kwb = jax.vmap(jax.random.split)(jax.random.split(key, len(shapes)))  # [L, 2]: (kw, kb) per layer
    n = max(a * b for a, b in shapes)
    c = barrier(jnp.asarray([_bounds(scheme, a, b) for a, b in shapes], dt))
    if scheme in ("lecun_normal", "he_normal"):
        flat = barrier(jax.vmap(lambda k: jax.random.normal(k, (n,), dt))(kwb[:, 0])) * c[:, None]
    else:
        flat = jax.vmap(lambda k, lim: jax.random.uniform(k, (n,), dt, -lim, lim))(kwb[:, 0], c)
    if scheme == "uniform":
        nb = max(b for _, b in shapes)
        flat_b = jax.vmap(lambda k, lim: jax.random.uniform(k, (nb,), dt, -lim, lim))(kwb[:, 1], c)
    params = []
    for i, (a, b) in enumerate(shapes):
        bias = flat_b[i, :b] if scheme == "uniform" else jnp.zeros((b,), dt)
        params.append({"w": flat[i, : a * b].reshape(a, b), "b": bias})
    return params


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _init_per_layer(key, sizes, scheme, dt):
    barrier = jax.lax.optimization_barrier
    params = []
    for k, (fan_in, fan_out) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        kw, kb = jax.random.split(k)
        shape = (fan_in, fan_out)
        c = _bounds(scheme, fan_in, fan_out)
        b = jnp.zeros((fan_out,), dt)
        if scheme in ("lecun_normal", "he_normal"):
            w = barrier(jax.random.normal(kw, shape, dt)) * c
        else:
            lim = barrier(jnp.asarray(c, dt))
            w = jax.random.uniform(kw, shape, dt, -lim, lim)
            if scheme == "uniform":
                b = jax.random.uniform(kb, (fan_out,), dt, -lim, lim)
        params.append({"w": w, "b": b})
    return params
