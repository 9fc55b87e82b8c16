"""Mixed precision: each step's forward and backward pass in a lower dtype, float32 master params.

With ``TrainConfig(compute_dtype="bfloat16")`` the train step calls the task through ``compute_task``: the
float params and the inputs are cast to bfloat16 on the way in, the outputs back to the
params' dtype on the way out, so the loss, its mean and the penalty are computed in float32. ``jax.grad``
differentiates through the casts, so the gradient of every param comes back in float32 (the transpose of a cast
is a cast), and the optimiser updates float32 master params with float32 state. bfloat16 has float32's exponent
range, so gradients do not underflow where float32's would not and no loss scaling is needed (float16 would).
Validation and ``jnn.evaluate`` run in the params' dtype.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jnn.task import CheckedTask


def _cast_floats(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(jnp.result_type(a), jnp.floating) else a, tree)


def compute_task(ct: CheckedTask, compute_dtype: str | None) -> CheckedTask:
    """``ct`` with its ``apply`` computing in ``compute_dtype`` (None, or the params' dtype: ``ct`` itself).

    The new ``apply(params, x, *, key, train, hyper)`` casts the float leaves of ``params`` and ``x`` to
    ``compute_dtype`` (a PRNG key or boolean dropout masks pass as they are) and its float outputs back to
    ``ct.dtype``. The hyperparameters keep the params' dtype: a keep probability of 0.8 stays 0.8 (bfloat16 would
    make it 0.80078); an ``apply`` that multiplies activations by one casts it (``h.astype(x.dtype)``), as the
    built-in dropout does.
    """
    if compute_dtype is None or jnp.dtype(compute_dtype) == jnp.dtype(ct.dtype):
        return ct
    low, high, apply = jnp.dtype(compute_dtype), jnp.dtype(ct.dtype), ct.task.apply

    def low_apply(params, x, *, key, train, hyper):
        out = apply(_cast_floats(params, low), x.astype(low), key=key, train=train, hyper=hyper)
        return _cast_floats(out, high)

    return ct._replace(task=ct.task._replace(apply=low_apply))


__all__ = ["compute_task"]
