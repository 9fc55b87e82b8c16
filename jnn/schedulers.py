"""Schedulers that stop a sweep's weak members early: successive halving with ASHA's asynchronous rule.

``jnn.sweep.sweep(train, config, callbacks=[jnn.sweep.SuccessiveHalving("val_loss", "min", min_epochs=2,
reduction_factor=3)], ...)`` checks every member at the rungs ``min_epochs · η^k`` (below ``max_epochs``). A
member reaching a rung goes on only if its value is at least as good as the ``1/η`` quantile of the values the
members before it recorded at that rung (ASHA's rule, as Ray Tune's asynchronous HyperBand applies it: the first
member at a rung always goes on, the cutoff is ``np.nanpercentile`` of the earlier values at ``(1 − 1/η)`` for
``"max"``, ``1/η`` for ``"min"``). Members reach a rung in member order (the host loop delivers each epoch's
rows member by member), so a sweep's decisions are the same run after run. A stopped member is recorded with
``stopped_by="scheduler"`` (never as early stopping) and its state is its state at the rung; ``decisions`` lists
every rung decision (member, epoch, value, cutoff, stopped).

The scheduler is a ``jnn.Callback`` built on the per-member stop that callbacks have (``on_epoch_end``
returning True); it keeps its rungs in memory, so a resumed sweep starts its rungs afresh.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from jnn.train.callbacks import Callback, RunInfo
from jnn.train.state import Status


class SuccessiveHalving(Callback):
    """Asynchronous successive halving (ASHA) over a sweep's members (see the module docstring).

    Args:
        metric: the history key ranked at the rungs (e.g. ``"val_loss"``, ``"val_accuracy"``).
        mode: ``"min"`` (lower is better) or ``"max"``.
        min_epochs: the first rung (epochs, ≥ 1).
        reduction_factor: η ≥ 2 (an integer): rungs at ``min_epochs · η^k``; about one member in η goes on at each.

    Attributes:
        rungs: the rung epochs (set when training begins, from ``max_epochs``).
        decisions: one dict per member and rung reached: ``member``, ``epoch``, ``value``, ``cutoff`` (None for
            the first member at a rung), ``stopped``.

    Raises:
        ValueError, TypeError: bad arguments, or (when training begins) a metric the run does not record.
    """

    stop_status = Status.SCHEDULER

    def __init__(self, metric: str = "val_loss", mode: str = "min", *, min_epochs: int = 1, reduction_factor: int = 3):
        if not isinstance(metric, str) or not metric:
            raise TypeError(f"metric must be a history key such as 'val_loss'; got {metric!r}")
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max'; got {mode!r}")
        for name, v, low in (("min_epochs", min_epochs, 1), ("reduction_factor", reduction_factor, 2)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"{name} must be an integer; got {v!r}")
            if not low <= v <= 2**31 - 1:
                raise ValueError(f"{name} must be an integer in [{low}, 2147483647]; got {v}")
        self.metric, self.mode = metric, mode
        self.min_epochs, self.reduction_factor = int(min_epochs), int(reduction_factor)
        self.rungs: tuple = ()
        self.decisions: list = []
        self._recorded: dict = {}

    def on_train_begin(self, run: RunInfo) -> None:
        if self.metric not in run.keys:
            raise ValueError(f"SuccessiveHalving's metric {self.metric!r} is not recorded by this run; its history "
                             f"keys are {list(run.keys)}")  # fmt: skip
        rungs, r = [], self.min_epochs
        while r < run.max_epochs:
            rungs.append(r)
            r *= self.reduction_factor
        self.rungs, self.decisions, self._recorded = tuple(rungs), [], {}

    def cutoff(self, recorded: list) -> float | None:
        """The value a member must match at a rung, from the values ``recorded`` there before it (None: none)."""
        values = [v for v in recorded if not math.isnan(v)]
        if not values:
            return None
        q = 100.0 * (1.0 - 1.0 / self.reduction_factor) if self.mode == "max" else 100.0 / self.reduction_factor
        return float(np.percentile(values, q))

    def on_epoch_end(self, epoch: int, logs: dict) -> bool:
        if epoch not in self.rungs:
            return False
        value = float(logs[self.metric])
        recorded = self._recorded.setdefault(epoch, [])
        cut = self.cutoff(recorded)
        worse = math.isnan(value) or (cut is not None and (value > cut if self.mode == "min" else value < cut))
        recorded.append(value)
        self.decisions.append({"member": int(logs.get("member", 0)), "epoch": int(epoch), "value": value,
                               "cutoff": cut, "stopped": bool(worse)})  # fmt: skip
        return bool(worse)

    def settings(self) -> dict:
        """The scheduler's settings, JSON-ready (a sweep folder records them; ``SuccessiveHalving(**settings)`` makes
        it again, as ``jnn sweep --resume`` does)."""
        return {"metric": self.metric, "mode": self.mode, "min_epochs": self.min_epochs,
                "reduction_factor": self.reduction_factor}  # fmt: skip

    def state_dict(self) -> dict:
        """What a sweep folder keeps of the scheduler at each checkpoint (its decisions, in order), so that a resumed
        sweep decides as the uninterrupted one: ``{"scheduler": its settings, "decisions": [...]}``."""
        settings = f"SuccessiveHalving({self.metric!r}, {self.mode!r}, min_epochs={self.min_epochs}, " \
                   f"reduction_factor={self.reduction_factor}) (jnn sweep --scheduler asha --rung-epochs " \
                   f"{self.min_epochs} --reduction-factor {self.reduction_factor})"  # fmt: skip
        return {"scheduler": settings, "decisions": [dict(d) for d in self.decisions]}

    def load_state_dict(self, state: dict) -> None:
        """Go on from a kept ``state_dict``: the decisions and, from them, the values recorded at each rung."""
        self.decisions = [dict(d) for d in state["decisions"]]
        self._recorded = {}
        for d in self.decisions:
            self._recorded.setdefault(int(d["epoch"]), []).append(float(d["value"]))


__all__ = ["SuccessiveHalving"]
