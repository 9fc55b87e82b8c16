"""The best k epochs by a monitored metric, tracked on device inside the compiled call.

Restore-best (early stopping's ``restore_best``) keeps the params of the one best epoch in the state; this keeps
the k best, so that a run folder can hold them as files (Keras's ``ModelCheckpoint(save_best_only=True)`` for one,
Lightning's ``save_top_k`` for k) without a host round trip per epoch: the compiled call of many epochs updates
the k slots at each epoch's end, and the host writes the files that changed when the call returns.

Semantics (tested directly): after each epoch, when a slot is empty or the epoch's value beats the worst kept value
strictly (``<`` for ``mode="min"``, ``>`` for ``"max"``; a tie keeps the earlier epoch, NaN never enters), the
epoch's params, value and epoch take the first empty slot, else the worst one (among equal worst values, the latest
epoch's). The slots are unordered; ``ranked`` orders them best first
(ties: the earlier epoch first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnn import _validate as V
from jnn.train.stopping import check_monitor_name, improves, infer_mode
from jnn.types import ArrayLike, DTypeLike, PyTree

#: The most epochs a run keeps by their metric (each slot holds a copy of the params on device).
MAX_BEST_K = 1000


class TopKState(NamedTuple):
    """The pytree of ``BestCheckpoints`` in the compiled loop.

    Attributes:
        values: ``[k]`` the kept epochs' monitored values (the worst value, ±inf, in empty slots).
        epochs: ``[k]`` int32, the kept epochs (0-based; −1 in empty slots).
        params: the params pytree with a leading ``[k]`` axis on every leaf.
    """

    values: jax.Array
    epochs: jax.Array
    params: object


@dataclass(frozen=True)
class BestCheckpoints:
    """Keep the params of the k best epochs by a monitored metric (hashable; a static part of the compiled loop).

    Attributes:
        k: how many epochs to keep, 1 … ``MAX_BEST_K`` (default 3).
        monitor: the recorded metric that ranks epochs, ``train_<name>`` or ``val_<name>`` (default ``"val_loss"``).
        mode: ``"min"``, ``"max"`` or None (inferred from the monitor's name).

    Example:
        ``jnn.TrainConfig(best_checkpoints=jnn.BestCheckpoints(k=3, monitor="val_accuracy"))``; a run folder then
        holds ``best/epoch-000012.npz`` … and ``best/best.json``, read by ``jnn.load_run(path, best=1)``; on the
        command line ``jnn train --best-k 3 --best-monitor val_accuracy``.
    """

    k: int = 3
    monitor: str = "val_loss"
    mode: str | None = None

    def __post_init__(self):
        V.check_int("k", self.k, low=1, high=MAX_BEST_K)
        check_monitor_name(self.monitor, self.mode)

    @property
    def direction(self) -> str:
        """``"min"`` or ``"max"``: ``mode``, or inferred from the monitor's name."""
        return self.mode or infer_mode(self.monitor)  # checked when the rule was made

    def init(self, params: PyTree, dtype: DTypeLike = jnp.float32) -> TopKState:
        """The state before the first epoch: k empty slots shaped like ``params``."""
        worst = jnp.inf if self.direction == "min" else -jnp.inf
        return TopKState(
            values=jnp.full((self.k,), worst, dtype),
            epochs=jnp.full((self.k,), -1, jnp.int32),
            params=jax.tree.map(lambda p: jnp.zeros((self.k, *p.shape), p.dtype), params),
        )

    def update(
        self, state: TopKState, value: ArrayLike, epoch: ArrayLike, params: PyTree, live: ArrayLike = True
    ) -> TopKState:
        """Offer one epoch to the slots (the module docstring's rule). Pure and jit-able.

        Args:
            state: the current state.
            value: the epoch's monitored value (scalar).
            epoch: its 0-based index (scalar int).
            params: its params (the same structure as the slots' without the ``[k]`` axis).
            live: whether the epoch counts (False leaves the state as it is).
        """
        value = jnp.asarray(value, state.values.dtype)
        empty = state.epochs < 0
        sign = 1 if self.direction == "min" else -1
        worst_value = jnp.max(sign * state.values)
        tied = (sign * state.values == worst_value) & ~empty  # among equal worst values, the latest epoch leaves
        worst = jnp.where(jnp.any(empty), jnp.argmax(empty), jnp.argmax(jnp.where(tied, state.epochs, -2)))
        enter = jnp.asarray(live) & ~jnp.isnan(value) & (
            empty[worst] | improves(value, state.values[worst], self.direction, 0.0))  # fmt: skip

        def put(slots, new):
            return slots.at[worst].set(jnp.where(enter, new.astype(slots.dtype), slots[worst]))

        return TopKState(
            values=put(state.values, value),
            epochs=put(state.epochs, jnp.asarray(epoch, jnp.int32)),
            params=jax.tree.map(put, state.params, params),
        )


def ranked(state: TopKState, direction: str) -> list[tuple[int, int, float]]:
    """``[(slot, epoch, value), ...]`` of the filled slots of one run's (host-side) state, best first; among equal
    values the earlier epoch first."""
    values, epochs = (np.asarray(a) for a in jax.device_get((state.values, state.epochs)))
    filled = [(int(s), int(epochs[s]), float(values[s])) for s in range(epochs.size) if epochs[s] >= 0]
    sign = 1.0 if direction == "min" else -1.0
    return sorted(filled, key=lambda t: (sign * t[2], t[1]))


__all__ = ["MAX_BEST_K", "BestCheckpoints", "TopKState", "ranked"]
