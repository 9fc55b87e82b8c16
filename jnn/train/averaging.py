"""Weight averaging (EMA and Polyak) as an optax wrapper: the average of the iterates rides in the optimiser state.

For the iterates θ_0 (the initial params), θ_1, θ_2, ... of a run (θ_t after the t-th applied update):

- EMA with decay d ∈ [0, 1):  a_0 = θ_0,  a_t = d · a_{t−1} + (1 − d) · θ_t;
- Polyak (decay None):         a_0 = θ_0,  a_t = (θ_1 + ... + θ_t) / t  (= a_{t−1} + (θ_t − a_{t−1}) / t).

The wrapper returns the inner transformation's updates unchanged, so the trained params are bit for bit
those of the unwrapped optimiser; the average is extra state, saved in checkpoints and stacked over the
members of a sweep like any other. A step that ``fit`` refuses (non-finite) keeps the whole optimiser
state, so the average skips it too. ``TrainConfig(average="ema", average_decay=0.999)`` wraps a run's
optimiser; ``FitResult.averaged_params`` is the average at the end.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from jnn import _validate as V


class AveragedState(NamedTuple):
    """State of ``weight_average``: the inner state, the average ``a_t`` (params' structure) and ``t``."""

    inner: Any
    average: Any
    count: jax.Array


def weight_average(tx: optax.GradientTransformation, *, decay: float | None = None) -> optax.GradientTransformation:
    """Wrap ``tx`` so that its state also holds an average of the params it produces (see the module docstring).

    Args:
        tx: the optimiser.
        decay: EMA decay d in [0, 1); None for the Polyak (uniform) average.

    Returns:
        An ``optax.GradientTransformation`` with ``AveragedState`` state. Its ``update`` needs ``params``.
    """
    if not isinstance(tx, optax.GradientTransformation):
        raise TypeError(f"tx must be an optax.GradientTransformation; got {type(tx).__name__}")
    if decay is not None:
        decay = V.check_real("decay", decay, low=0.0, high=1.0, high_open=True, hint="the EMA decay d")

    def init(params):
        return AveragedState(tx.init(params), jax.tree.map(jnp.copy, params), jnp.zeros((), jnp.int32))

    def update(updates, state, params=None):
        if params is None:
            raise ValueError("weight_average needs params in update(updates, state, params)")
        updates, inner = tx.update(updates, state.inner, params)
        new = optax.apply_updates(params, updates)
        count = state.count + 1
        if decay is None:
            step = lambda a, p: a + (p - a) / count.astype(a.dtype)
        else:
            step = lambda a, p: (decay * a + (1.0 - decay) * p).astype(a.dtype)
        return updates, AveragedState(inner, jax.tree.map(step, state.average, new), count)

    return optax.GradientTransformation(init, update)


def averaged_params(opt_state):
    """The average held by a ``weight_average`` state (searched inside chains), or None."""
    if isinstance(opt_state, AveragedState):
        return opt_state.average
    if isinstance(opt_state, (tuple, list)):
        for child in opt_state:
            found = averaged_params(child)
            if found is not None:
                return found
    return None


__all__ = ["AveragedState", "averaged_params", "weight_average"]
