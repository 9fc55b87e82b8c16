"""Keras's ``ReduceLROnPlateau`` as a small pure state machine that runs inside the compiled call.

When a monitored metric has not improved for ``patience`` epochs, the learning rate is multiplied by ``factor``
(never below ``min_lr``); ``cooldown`` epochs then pass before the counting starts again. The rule steps at the end
of every epoch on device, like ``jnn.EarlyStopping``, so a run with it keeps its compiled calls of many epochs.
Its counters live in the ``jnn.train.state.TrainState`` and the rate is the optimiser's own injected
``learning_rate`` (what Keras sets too), so a checkpoint holds both: a resumed run goes on bit for bit, the
history's ``learning_rate`` column shows every reduction, and a run whose rule never fires computes exactly the
bits of the same run without it. The rate must be held as state and not scheduled (a schedule would overwrite it
at the next step; Keras refuses that combination too): the built-in optimisers with ``lr_schedule="constant"``,
or an optax transformation built with ``optax.inject_hyperparams`` and a constant rate.

Semantics, epoch by epoch, Keras's ``on_epoch_end`` (tested against a line-by-line copy of it in plain Python):

1. in cooldown (c > 0): c ← c − 1 and the bad-epoch counter w ← 0;
2. an epoch *improves* when the value beats the best by more than ``min_delta`` (as in early stopping): best ←
   value, w ← 0;
3. otherwise, when not in cooldown (after step 1): w ← w + 1, and when w ≥ ``patience`` and η > ``min_lr``:
   η ← max(η·factor, min_lr), c ← ``cooldown``, w ← 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnn import _validate as V
from jnn.train.stopping import MAX_PATIENCE, check_monitor_name, improves, infer_mode
from jnn.types import ArrayLike, DTypeLike


class PlateauState(NamedTuple):
    """The pytree of ``ReduceLROnPlateau`` in the compiled loop.

    Attributes:
        best: the best monitored value so far (±inf before the first epoch).
        wait: epochs without improvement since the last improvement or reduction (int32).
        cooldown: epochs of cooldown left (int32).
    """

    best: jax.Array
    wait: jax.Array
    cooldown: jax.Array


@dataclass(frozen=True)
class ReduceLROnPlateau:
    """Reduce the learning rate when a metric stops improving (Keras's callback, on device; hashable).

    Attributes:
        monitor: the recorded metric to watch, ``train_<name>`` or ``val_<name>`` (default ``"val_loss"``).
        factor: the rate is multiplied by it at each reduction, in (0, 1) (default 0.1, Keras's).
        patience: epochs without improvement before a reduction, ≥ 0 (default 10).
        mode: ``"min"``, ``"max"`` or None (inferred from the monitor's name).
        min_delta: ≥ 0; an improvement must exceed it (default 1e-4, Keras's).
        cooldown: epochs after a reduction before epochs count as bad again, ≥ 0 (default 0).
        min_lr: the rate is never reduced below it, ≥ 0 (default 0).

    Example:
        ``jnn.TrainConfig(reduce_lr=jnn.ReduceLROnPlateau(factor=0.5, patience=5, min_lr=1e-4))``; on the command
        line ``jnn train --plateau-factor 0.5 --plateau-patience 5 --plateau-min-lr 1e-4``.
    """

    monitor: str = "val_loss"
    factor: float = 0.1
    patience: int = 10
    mode: str | None = None
    min_delta: float = 1e-4
    cooldown: int = 0
    min_lr: float = 0.0

    def __post_init__(self):
        check_monitor_name(self.monitor, self.mode)
        object.__setattr__(
            self, "factor", V.check_real("factor", self.factor, low=0.0, high=1.0, low_open=True, high_open=True)
        )
        V.check_int("patience", self.patience, low=0, high=MAX_PATIENCE)
        object.__setattr__(self, "min_delta", V.check_real("min_delta", self.min_delta, low=0.0))
        V.check_int("cooldown", self.cooldown, low=0, high=MAX_PATIENCE)
        object.__setattr__(self, "min_lr", V.check_real("min_lr", self.min_lr, low=0.0))

    @property
    def direction(self) -> str:
        """``"min"`` or ``"max"``: ``mode``, or inferred from the monitor's name."""
        return self.mode or infer_mode(self.monitor)  # checked when the rule was made

    def init(self, dtype: DTypeLike = jnp.float32) -> PlateauState:
        """The state before the first epoch (``dtype``: the monitored metric's)."""
        worst = jnp.inf if self.direction == "min" else -jnp.inf
        i32 = lambda v: jnp.asarray(v, jnp.int32)
        return PlateauState(best=jnp.asarray(worst, dtype), wait=i32(0), cooldown=i32(0))

    def update(self, state: PlateauState, value: ArrayLike, learning_rate: ArrayLike) -> tuple[PlateauState, jax.Array]:
        """Advance the state by one epoch (the module docstring's steps). Pure and jit-able.

        Args:
            state: the current state.
            value: the monitored metric of this epoch (scalar).
            learning_rate: η, the optimiser's rate this epoch (scalar array).

        Returns:
            ``(new_state, new_learning_rate)``, the rate in η's dtype.
        """
        lr = jnp.asarray(learning_rate)
        value = jnp.asarray(value, state.best.dtype)
        in_cooldown = state.cooldown > 0
        cooldown = jnp.where(in_cooldown, state.cooldown - 1, state.cooldown)
        wait = jnp.where(in_cooldown, 0, state.wait)
        better = improves(value, state.best, self.direction, self.min_delta)
        counting = ~better & (cooldown <= 0)
        wait = jnp.where(better, 0, wait + counting.astype(jnp.int32))
        min_lr = jnp.asarray(self.min_lr, lr.dtype)
        reduce = counting & (wait >= self.patience) & (lr > min_lr)
        new_lr = jnp.where(reduce, jnp.maximum(lr * jnp.asarray(self.factor, lr.dtype), min_lr), lr)
        new = PlateauState(
            best=jnp.where(better, value, state.best),
            wait=jnp.where(reduce, 0, wait).astype(jnp.int32),
            cooldown=jnp.where(reduce, self.cooldown, cooldown).astype(jnp.int32),
        )
        return new, new_lr


__all__ = ["PlateauState", "ReduceLROnPlateau"]
