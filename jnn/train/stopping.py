"""Early stopping as a small pure state machine that runs inside compiled code.

The lecture: "Early stopping: stopping when performance on validation set stops improving."

Semantics (tested directly):
- an epoch *improves* when the monitored value beats the best so far by **more than** ``min_delta``
  (``value < best − min_delta`` for ``mode="min"``, ``value > best + min_delta`` for ``"max"``); a change
  of exactly ``min_delta`` does not count;
- an improvement resets the bad-epoch counter and records the epoch (and, in the loop, the params);
- a non-improving epoch adds one to the counter; with ``patience = k`` the run stops after exactly k
  consecutive bad epochs;
- epochs before ``start_epoch`` are ignored (neither best nor counter change);
- once stopped, the state no longer changes.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnn import _validate as V
from jnn.metrics import METRICS
from jnn.types import ArrayLike, DTypeLike

#: The largest patience: the counter is an int32 on device.
MAX_PATIENCE = 2**31 - 1

#: The built-in MLP's monitors and their directions; any recorded ``train_<metric>``/``val_<metric>`` of a
#: task can be monitored too (see ``infer_mode``).
MONITORS = {"val_loss": "min", "val_accuracy": "max", "train_loss": "min", "train_accuracy": "max"}
#: Directions inferred from a metric name's ending when ``mode`` is not given.
MODE_BY_SUFFIX = {"loss": "min", "error": "min", **{n: m.direction for n, m in METRICS.items()}}


def infer_mode(monitor: str) -> str | None:
    """``"min"``/``"max"`` for a monitor whose name ends in a known metric (see ``MODE_BY_SUFFIX``), else None."""
    for suffix, mode in MODE_BY_SUFFIX.items():
        if monitor.endswith(suffix):
            return mode
    return None


def check_monitor_name(monitor, mode, *, what: str = "monitor") -> str:
    """Check a rule's monitored metric and direction before anything is traced; return the direction.

    Args:
        monitor: ``train_<name>`` or ``val_<name>`` of a recorded metric.
        mode: ``"min"``, ``"max"`` or None (inferred from the name, see ``infer_mode``).
        what: the argument's name in messages.

    Returns:
        ``"min"`` or ``"max"``.

    Raises:
        TypeError: ``monitor`` is not a string.
        ValueError: a name that is no recorded metric, a wrong mode, or a name of unknown direction without mode.
    """
    if not isinstance(monitor, str):
        raise TypeError(f"{what} must be a string such as 'val_loss'; got {monitor!r}")
    if not (monitor.startswith("train_") or monitor.startswith("val_")) or not monitor.split("_", 1)[1].isidentifier():
        raise ValueError(
            f"{what} must name a recorded metric, train_<name> or val_<name> (e.g. one of {list(MONITORS)}); got "
            f"{monitor!r}"
        )
    if mode is not None:
        V.check_choice("mode", mode, ["min", "max"])
        return mode
    inferred = infer_mode(monitor)
    if inferred is None:
        prefix, name = monitor.split("_", 1)
        close = difflib.get_close_matches(name, list(METRICS), n=1, cutoff=0.5)
        hint = f"did you mean {prefix + '_' + close[0]!r}? " if close else ""
        raise ValueError(
            f"{what} {monitor!r} is not a metric jnn knows: {hint}the recorded metrics are train_loss, "
            f"val_loss and train_<name>/val_<name> of the task's metrics (built in: {list(METRICS)}); for a "
            f"metric of your own, mode must be 'min' or 'max' (its direction cannot be inferred from the name)"
        )
    return inferred


def improves(value, best, direction: str, min_delta) -> jax.Array:
    """Whether ``value`` beats ``best`` by more than ``min_delta`` in ``direction`` (``"min"``/``"max"``)."""
    return value < best - min_delta if direction == "min" else value > best + min_delta


@dataclass(frozen=True)
class EarlyStopping:
    """Early-stopping configuration (hashable; a static part of the compiled loop).

    Attributes:
        monitor: the recorded metric to watch: ``"val_loss"`` (default), ``"val_accuracy"``, or any
            ``train_<metric>`` / ``val_<metric>`` of the task (checked against the task when training starts).
        patience: k ≥ 0; the run stops after k consecutive epochs without improvement (0: at the first).
        mode: ``"min"`` or ``"max"``; None infers it from the monitor's name (``…loss``, ``…mse``, ``…mae``,
            ``…error``: min; ``…accuracy``, ``…r2``: max).
        min_delta: ≥ 0; an improvement must exceed it.
        start_epoch: epochs with index < start_epoch (0-based) are not monitored.
        restore_best: return the params of the best epoch (also when patience never ran out).
    """

    monitor: str = "val_loss"
    patience: int = 10
    min_delta: float = 0.0
    start_epoch: int = 0
    restore_best: bool = True
    mode: str | None = None

    def __post_init__(self):
        check_monitor_name(self.monitor, self.mode)
        V.check_int("patience", self.patience, low=0, high=MAX_PATIENCE)
        object.__setattr__(self, "min_delta", V.check_real("min_delta", self.min_delta, low=0.0))
        V.check_int("start_epoch", self.start_epoch, low=0)
        if not isinstance(self.restore_best, bool):
            raise TypeError(f"restore_best must be a bool; got {self.restore_best!r}")

    @property
    def direction(self) -> str:
        """``"min"`` or ``"max"``: ``mode``, or inferred from the monitor's name."""
        return self.mode or infer_mode(self.monitor)

    def init(self, dtype: DTypeLike = jnp.float32) -> EarlyStoppingState:
        """The state before the first epoch."""
        worst = jnp.inf if self.direction == "min" else -jnp.inf
        return EarlyStoppingState(
            best=jnp.asarray(worst, dtype),
            best_epoch=jnp.asarray(-1, jnp.int32),
            bad_epochs=jnp.asarray(0, jnp.int32),
            stop=jnp.asarray(False),
        )

    def update(
        self, state: EarlyStoppingState, value: ArrayLike, epoch: ArrayLike
    ) -> tuple[EarlyStoppingState, jax.Array]:
        """Advance the state by one epoch. Pure and jit-able.

        Args:
            state: the current state.
            value: the monitored metric of this epoch (scalar).
            epoch: this epoch's 0-based index (scalar int).

        Returns:
            ``(new_state, improved)`` where ``improved`` says whether this epoch became the best one.
        """
        value = jnp.asarray(value, state.best.dtype)
        better = improves(value, state.best, self.direction, self.min_delta)
        active = (jnp.asarray(epoch) >= self.start_epoch) & ~state.stop  # frozen once stopped
        improved = active & better
        bad = jnp.where(improved, 0, state.bad_epochs + active.astype(jnp.int32))
        new = EarlyStoppingState(
            best=jnp.where(improved, value, state.best),
            best_epoch=jnp.where(improved, jnp.asarray(epoch, jnp.int32), state.best_epoch),
            bad_epochs=bad.astype(jnp.int32),
            stop=state.stop | (active & ~improved & (bad >= self.patience)),
        )
        return new, improved


class EarlyStoppingState(NamedTuple):
    """The pytree that lives in the compiled loop.

    Attributes:
        best: best monitored value so far (±inf before the first monitored epoch).
        best_epoch: epoch index of ``best`` (−1 before any).
        bad_epochs: consecutive monitored epochs without improvement.
        stop: True once ``bad_epochs`` reached ``patience``.
    """

    best: jax.Array
    best_epoch: jax.Array
    bad_epochs: jax.Array
    stop: jax.Array
