"""Dropout masks drawn fast and bit for bit as ``jax.random.bernoulli`` draws them.

On the CPU, jax lowers the Threefry-2x32 hash behind ``jax.random`` as a loop of five iterations of four
rounds (to keep its programs small), which XLA runs as a loop over memory: for a dropout mask of 100 x 256
units drawn at every step that is most of the mask's cost. ``bernoulli`` computes the same hash with the
twenty rounds written out, which XLA fuses into one pass over registers: the same bits (the hash is the same
arithmetic on the same counters), 4 to 15 times faster on a 2-core CPU (``benchmarks/throughput.py`` measures
training with it). ``tests/test_threefry.py`` holds it to ``jax.random.bernoulli`` bit for bit over keys,
shapes, probabilities, float64 and under ``vmap``.

It covers what jnn draws masks with: typed Threefry keys (``jax.random.key``), ``jax_threefry_partitionable``
on (jax's default), float32 or float64 probabilities and fewer than 2**32 units. Anything else (an RBG key,
the legacy non-partitionable bits, another dtype) goes to ``jax.random.bernoulli`` itself.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from jnn.types import ArrayLike, PRNGKey

_U32 = jnp.uint32
_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
#: The key word added to each half after each group of four rounds, and the round counter, as jax applies them.
_SCHEDULE = ((0, 1, 2, 1), (1, 2, 0, 2), (0, 0, 1, 3), (1, 1, 2, 4), (0, 2, 0, 5))


def _rotl(x, d: int):
    return (x << _U32(d)) | (x >> _U32(32 - d))


def threefry2x32(k1, k2, x1, x2):
    """The Threefry-2x32 hash (20 rounds) of the counter pairs ``(x1, x2)`` under the key ``(k1, k2)``: all uint32,
    broadcast together. Returns the two hashed halves (``jax.random``'s ``threefry2x32_p``, unrolled)."""
    ks = (k1, k2, k1 ^ k2 ^ _U32(0x1BD11BDA))
    a, b = x1 + ks[0], x2 + ks[1]
    for which, i, j, count in _SCHEDULE:
        for r in _ROTATIONS[which]:
            a = a + b
            b = a ^ _rotl(b, r)
        a, b = a + ks[i], b + ks[j] + _U32(count)
    return a, b


def _supported(key, p, shape) -> bool:
    if not jax.config.jax_threefry_partitionable or not jnp.issubdtype(jnp.result_type(key), jax.dtypes.prng_key):
        return False
    if str(jax.random.key_impl(key)) != "threefry2x32" or jnp.ndim(key) != 0:
        return False
    return jnp.result_type(p) in (jnp.float32, jnp.float64) and math.prod(shape) < 2**32


def bernoulli(key: PRNGKey, p: ArrayLike, shape: tuple[int, ...]) -> jax.Array:
    """``jax.random.bernoulli(key, p, shape)``, bit for bit, with the hash unrolled (see the module).

    Args:
        key: a typed PRNG key (scalar). Threefry keys take the fast path; others go to ``jax.random.bernoulli``.
        p: the probability of True, a float32 or float64 scalar (as ``jax.random.bernoulli``, its dtype sets the
            draw: 32 random bits per unit for float32, 64 for float64).
        shape: the result's shape.

    Returns:
        bool ``shape``: True with probability ``p``, each unit independent.
    """
    shape = tuple(int(d) for d in shape)
    if not _supported(key, p, shape):
        return jax.random.bernoulli(key, p, shape)
    p = jnp.asarray(p)
    k = jax.random.key_data(key)
    n = math.prod(shape)
    hi, lo = threefry2x32(k[0], k[1], jnp.zeros(n, _U32), jnp.arange(n, dtype=_U32))
    if p.dtype == jnp.float32:  # jax.random.uniform: 23 mantissa bits of bits1 ^ bits2, as a float in [1, 2), minus 1
        one = np.array(1.0, np.float32).view(np.uint32)
        u = jax.lax.bitcast_convert_type(((hi ^ lo) >> _U32(9)) | one, jnp.float32) - jnp.float32(1.0)
    else:  # float64: 52 mantissa bits of (bits1 << 32) | bits2
        u64 = jnp.uint64
        bits = (hi.astype(u64) << u64(32)) | lo.astype(u64)
        one = np.array(1.0, np.float64).view(np.uint64)
        u = jax.lax.bitcast_convert_type((bits >> u64(12)) | one, jnp.float64) - jnp.float64(1.0)
    return (u < p).reshape(shape)


__all__ = ["bernoulli", "threefry2x32"]
