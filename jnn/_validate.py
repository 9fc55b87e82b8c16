"""Argument checks shared by the public API, run in plain Python before anything is traced.

Every check raises ``ValueError`` for a bad value and ``TypeError`` for a bad kind, and the message
names the argument, what is allowed and what was received (the README's conventions).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

#: Largest layer width (shapes are int32 in XLA).
MAX_WIDTH = 2**31 - 1


def short(value: Any, limit: int = 120) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 5 MB string from a TOML file is not echoed whole)."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}… ({len(text)} characters)"


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values that can be read on the host (not a tracer under jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Check that ``value`` is one of the strings in ``choices``; return it."""
    if not isinstance(value, str):
        raise TypeError(
            f"{name} must be a string, one of {list(choices)}; got {short(value)} of type {type(value).__name__}"
        )
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {short(value)}")
    return value


def check_real(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    hint: str = "",
) -> float:
    """Check that ``value`` is a finite real number in the given interval; return it as a float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if (
            isinstance(value, (np.ndarray, jax.Array))
            and np.ndim(value) == 0
            and is_concrete(value)
            and np.issubdtype(np.asarray(value).dtype, np.number)
        ):
            value = float(value)
        else:
            raise TypeError(f"{name} must be a real number; got {short(value)} of type {type(value).__name__}")
    value = float(value)
    lo = "(" if low_open else "["
    hi = ")" if high_open else "]"
    interval = f"{lo}{'-inf' if low is None else format(low, 'g')}, {'inf' if high is None else format(high, 'g')}{hi}"
    extra = f"; {hint}" if hint else ""
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite and in {interval}; got {value}{extra}")
    if low is not None and (value < low or (low_open and value == low)):
        raise ValueError(f"{name} must be in {interval}; got {short(value)}{extra}")
    if high is not None and (value > high or (high_open and value == high)):
        raise ValueError(f"{name} must be in {interval}; got {short(value)}{extra}")
    return value


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None) -> int:
    """Check that ``value`` is an integer (not a bool) in ``[low, high]``; return it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer; got {short(value)} of type {type(value).__name__}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        interval = f"[{'-inf' if low is None else low}, {'inf' if high is None else high}]"
        raise ValueError(f"{name} must be an integer in {interval}; got {value}")
    return value


def check_sizes(sizes: Any) -> tuple[int, ...]:
    """Check layer sizes: a sequence of at least two positive ints (input, ..., output)."""
    if isinstance(sizes, (str, bytes)) or not isinstance(sizes, Sequence):
        raise TypeError(f"sizes must be a sequence of positive ints such as (40, 32, 10); got {short(sizes)}")
    if len(sizes) < 2:
        raise ValueError(f"sizes must have at least two entries (input and output width); got {list(sizes)}")
    for i, s in enumerate(sizes):
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(
                f"sizes[{i}] must be a positive int; got {short(s)} of type {type(s).__name__} in sizes={list(sizes)}"
            )
        if not 1 <= s <= MAX_WIDTH:
            raise ValueError(f"sizes[{i}] must be an int in [1, {MAX_WIDTH}]; got {s} in sizes={list(sizes)}")
    return tuple(int(s) for s in sizes)


def as_array(name: str, x: Any) -> jax.Array | np.ndarray:
    """Return ``x`` as an array (numpy/jax arrays pass through; lists are converted)."""
    if isinstance(x, (jax.Array, np.ndarray)):
        return x
    if isinstance(x, (list, tuple, numbers.Number)):
        try:
            return np.asarray(x)
        except ValueError as err:
            raise ValueError(f"{name} must be a rectangular array; got a ragged {type(x).__name__}: {err}") from None
    raise TypeError(f"{name} must be an array (numpy or jax); got {type(x).__name__}")


def check_float_array(name: str, x: Any, *, min_ndim: int = 1) -> jax.Array | np.ndarray:
    """Check that ``x`` is a floating-point array with at least ``min_ndim`` dims; finite if concrete."""
    x = as_array(name, x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{name} must be a floating-point array (float32 or float64); got dtype {x.dtype}. "
            f"Convert it with {name}.astype('float32')"
        )
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s); got shape {tuple(x.shape)}")
    if is_concrete(x) and x.size and not bool(np.all(np.isfinite(np.asarray(x)))):
        bad = int(np.size(x) - np.count_nonzero(np.isfinite(np.asarray(x))))
        raise ValueError(f"{name} must be finite; got {bad} NaN/Inf value(s) in an array of shape {tuple(x.shape)}")
    return x


def check_key(name: str, key: Any) -> Any:
    """Check that ``key`` is a JAX PRNG key (typed ``jax.random.key`` or raw uint32[2])."""
    if isinstance(key, (jax.Array, np.ndarray)):
        if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.ndim == 0:
            return key
        if key.dtype == np.uint32 and key.shape == (2,):
            return key
    raise TypeError(
        f"{name} must be a PRNG key from jax.random.key(seed) (or jax.random.PRNGKey(seed)); "
        f"got {type(key).__name__}{getattr(key, 'shape', '')}"
    )


def check_params(params: Any, name: str = "params") -> None:
    """Check the parameter pytree: a non-empty list of ``{"w": [d_in, d_out], "b": [d_out]}`` that chain."""
    if not isinstance(params, (list, tuple)) or len(params) == 0:
        raise TypeError(
            f"{name} must be a non-empty list of {{'w', 'b'}} dicts as returned by init_mlp; "
            f"got {type(params).__name__}"
        )
    prev = None
    for i, layer in enumerate(params):
        if not isinstance(layer, dict) or set(layer) != {"w", "b"}:
            keys = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise TypeError(f"{name}[{i}] must be a dict with keys 'w' and 'b'; got {keys}")
        w, b = layer["w"], layer["b"]
        for leaf, arr in (("w", w), ("b", b)):
            if not hasattr(arr, "dtype") or not jnp.issubdtype(arr.dtype, jnp.floating):
                raise TypeError(
                    f"{name}[{i}]['{leaf}'] must be a floating-point array; "
                    f"got {getattr(arr, 'dtype', type(arr).__name__)}"
                )
        if w.ndim != 2 or b.ndim != 1 or b.shape[0] != w.shape[1]:
            raise ValueError(
                f"{name}[{i}] must have w of shape [d_in, d_out] and b of shape [d_out]; "
                f"got w {tuple(w.shape)} and b {tuple(b.shape)}"
            )
        if prev is not None and w.shape[0] != prev:
            raise ValueError(f"{name}[{i}]['w'] has {w.shape[0]} input rows but the previous layer has {prev} outputs")
        prev = w.shape[1]
