"""Callbacks: host-side hooks of ``fit`` and ``sweep`` at the boundaries of the compiled calls.

A run is a series of compiled calls of several epochs each (see ``jnn.train.multi_epoch``); the host reads
each call's summary rows back and hands every epoch's values to the callbacks, in order, so a callback
that only reads the logs costs no extra call boundary and changes nothing in the compiled program::

    class PrintEvery(jnn.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch % 10 == 0:
                print(epoch, logs["val_loss"])
            return logs["val_accuracy"] > 0.99        # True asks for a stop after this epoch

    jnn.fit(train, config, callbacks=[PrintEvery()])

The hooks, in the order they run, and what each costs:

=====================  ========================================================  ===================================
hook                   when it runs                                              cost
=====================  ========================================================  ===================================
``on_train_begin``     once, before the first compiled call, with a              none
                       ``RunInfo`` (config, history keys, members, first
                       epoch)
``on_epoch_end``       once per epoch completed by a member, after the call      none: the rows come back with each
                       that ran it; ``epoch`` counted from 1 (the history's      call; a stop request replays the
                       row number), ``logs`` the history row ``{key: float}``    call's epochs up to that epoch
                       (``"member": i`` added in a sweep); True asks for a
                       stop after that epoch
``on_state``           with ``needs = "params"`` (or ``every = k > 0``): at      one call boundary per k epochs (a
                       every k-th epoch (k = ``every``, 1 by default), with the  host round trip; the benchmark
                       ``jnn.TrainState`` there (stacked over a sweep's     ``benchmarks/callbacks.py``
                       members); True asks for a stop there                      measures it)
``on_call_end``        after every compiled call, with the latest epoch and the  none (calls end anyway)
                       state (the run folder writes its live files here)
``on_train_end``       once, with the ``FitResult``/``SweepResult`` (also when   none
                       a signal or ``stop_at_epoch`` ended the run, before
                       ``jnn.train.Interrupted`` is raised)
``on_train_abort``     instead of ``on_train_end`` when an exception left the    none
                       run
=====================  ========================================================  ===================================

A callback says what it reads with ``needs``: ``"logs"`` (the default: history rows only, which come back with
every compiled call, so the engine keeps its long calls) or ``"params"`` (the parameters every ``every`` epochs,
default every epoch: only then are calls cut at those epochs). The run's progress display names the callbacks that
cut calls and how often. Hooks run between compiled calls; one that raises aborts the run (after
``on_train_abort`` of all). A stop request (True) leaves the run bit for bit the state of a run given that many
epochs: when the compiled call had already run further, the host replays it from its start for exactly the epochs
needed (calls give the same bits whatever their length).

A callback whose decisions depend on what it saw before (a scheduler: ``jnn.sweep.SuccessiveHalving``)
defines ``state_dict() -> dict`` (JSON-ready) and ``load_state_dict(state)``: a ``jnn.SweepFolder`` keeps its
state with every group checkpoint and gives it back on resume, so the resumed sweep decides as the uninterrupted
one (and refuses a resume without it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jnn.train.state import TrainState

import math
from dataclasses import dataclass

from jnn import _validate as V
from jnn.train.state import Status


@dataclass(frozen=True)
class RunInfo:
    """What ``on_train_begin`` is told about the run.

    Attributes:
        config: the run's ``jnn.TrainConfig`` (a sweep: the shared one).
        keys: the history keys, in order (the keys of every ``logs``).
        members: 1 for ``fit``; M for a sweep.
        initial_epoch: epochs already completed (a resumed run: the checkpoint's).
        max_epochs: the epoch budget.
        params: ``{name: value}`` of the run's settings, JSON-ready (what a tracker logs as parameters).
        cuts: the callbacks that end compiled calls to read the params (``CallbackList.cuts``; "" when none
            does): the progress display shows it, as the cost of those callbacks.
    """

    config: object
    keys: tuple
    members: int
    initial_epoch: int
    max_epochs: int
    params: dict
    cuts: str = ""


class Callback:
    """Base class of callbacks: override the hooks you need (each does nothing by default).

    Attributes:
        needs: ``"logs"`` (default: ``on_epoch_end``'s history rows; costs nothing) or ``"params"``
            (``on_state`` gets the state every ``every`` epochs, every epoch when ``every`` is 0: the compiled
            calls end there, one host round trip each).
        every: ``on_state`` period in epochs (0: never called, unless ``needs == "params"``). A positive value
            ends the compiled calls at its multiples (a few more host round trips; no other change to the run).
        stops: the callback may ask for a stop (the default). A run whose callbacks never do lets its
            compiled calls donate their input state (a stop request replays a call from its input).
    """

    needs: str = "logs"
    every: int = 0
    stops: bool = True

    def on_train_begin(self, run: RunInfo) -> None:
        """Called once before the first compiled call."""

    def on_epoch_end(self, epoch: int, logs: dict) -> bool | None:
        """Called per completed epoch with its history row; return True to stop after this epoch."""

    def on_state(self, epoch: int, state: TrainState) -> bool | None:
        """Called at each multiple of ``every`` epochs with the state there; return True to stop there."""

    def on_call_end(self, epoch: int, state: TrainState) -> None:
        """Called after every compiled call with the latest epoch and the state."""

    def on_train_end(self, result: Any) -> None:
        """Called once with the result."""

    def on_train_abort(self, error: BaseException) -> None:
        """Called once, instead of ``on_train_end``, when an exception ends the run."""


class RunStore(Callback):
    """A callback that keeps the run somewhere: ``jnn.RunFolder`` (a folder of files) is the built-in one.

    ``fit`` allows at most one, runs it before the other callbacks, and before compiling calls ``open``,
    which may restore the state and history of an earlier run (resume). Its other hooks write what it keeps.

    Attributes:
        path: where the run is kept (``FitResult.run_dir``).
        writer: whether this process writes (with several processes, only process 0 does).
    """

    path = None
    writer = True

    def open(self, meta: dict, state, config, custom_optimizer: bool, keys, *, data) -> tuple:
        """Take the store for this run and give the state and history it starts from: ``(state, records)``.

        Args:
            meta: the run's description (``{"config", "config_hash", "sizes" or "task", ...}``, JSON-ready).
            state: the fresh first ``jnn.TrainState``.
            config: the ``jnn.TrainConfig``.
            custom_optimizer: whether the optimiser was given to ``fit``.
            keys: the history keys.
            data: ``(train, val)``, the ``jnn.Dataset`` objects given to ``fit`` (``val`` may be None).
        """
        raise NotImplementedError(f"{type(self).__name__}.open is not implemented (a jnn.RunStore must open runs)")

    def kept_epochs(self) -> set:
        """The epochs (counted from 1) whose checkpoints the store keeps (a diverged run's restart points)."""
        return set()


class SweepStore(Callback):
    """A callback that keeps a sweep somewhere: ``jnn.SweepFolder`` (a folder of files) is the built-in one.

    ``jnn.sweep`` allows at most one and runs it before the other callbacks. Once every shape group is checked it
    calls ``open``; before each group trains, ``restore`` (a resumed sweep's state and histories of
    that group, or None) and ``group_begin``; after it, ``save_group``. ``on_call_end`` sees the
    running group's stacked state (for checkpoints every ``every`` epochs) and ``on_train_end`` the result.

    Attributes:
        path: where the sweep is kept.
    """

    path = None
    stops = False

    def open(self, meta: dict, config, *, data) -> None:
        """Take the store for this sweep (``meta``: its JSON-ready description; ``data``: ``(train, val)``)."""
        raise NotImplementedError(f"{type(self).__name__}.open is not implemented (a jnn.SweepStore opens sweeps)")

    def restore(self, group: int, template, keys) -> tuple | None:
        """``(stacked state, [records per member])`` of shape group ``group`` kept by an earlier, interrupted run
        of this sweep (``template``: the group's fresh stacked state), or None to start the group afresh."""
        return None

    def group_begin(self, group: int, records: list) -> None:
        """Group ``group`` starts; ``records`` are its members' history dicts, filled in place as it trains."""

    def save_group(self, group: int, state, records: list) -> None:
        """Group ``group`` has trained (or was interrupted): keep its stacked state and its members' records."""


def check_callbacks(callbacks) -> tuple:
    """``callbacks`` as a tuple, each checked (a list/tuple of objects with the hooks; ``every`` ≥ 0)."""
    if callbacks is None:
        return ()
    if isinstance(callbacks, Callback) or not isinstance(callbacks, (list, tuple)):
        raise TypeError(f"callbacks must be a list of jnn.Callback objects; got {type(callbacks).__name__}")
    hooks = ("on_train_begin", "on_epoch_end", "on_state", "on_call_end", "on_train_end", "on_train_abort")
    for i, cb in enumerate(callbacks):
        missing = [h for h in hooks if not callable(getattr(cb, h, None))]
        if missing:
            raise TypeError(
                f"callbacks[{i}] must be a jnn.Callback (subclass it and override the hooks you need); "
                f"{type(cb).__name__} lacks {missing}"
            )
        V.check_int(f"callbacks[{i}].every", getattr(cb, "every", 0), low=0)
        V.check_choice(f"callbacks[{i}].needs", getattr(cb, "needs", "logs"), list(NEEDS))
    return tuple(callbacks)


#: What a callback may read (``Callback.needs``).
NEEDS = ("logs", "params")


def period(cb) -> int:
    """Epochs between a callback's ``on_state`` calls: its ``every``, or 1 for ``needs="params"`` without one;
    0: never."""
    every = getattr(cb, "every", 0)
    return every if every else (1 if getattr(cb, "needs", "logs") == "params" else 0)


def at_most_one(callbacks: tuple, cls):
    """The instance of ``cls`` among ``callbacks``, or None; ValueError naming the positions of several."""
    many = [i for i, cb in enumerate(callbacks) if isinstance(cb, cls)]
    if len(many) > 1:
        what = "run folder (jnn.RunFolder or another jnn.RunStore)" if cls is RunStore else f"jnn.{cls.__name__}"
        raise ValueError(f"callbacks may hold at most one {what}; got one at each of {many}")
    return callbacks[many[0]] if many else None


class CallbackList:
    """The callbacks of one run, dispatched in order (the host loop's single handle on them)."""

    def __init__(self, callbacks=()):
        self.callbacks = tuple(callbacks)

    def __bool__(self) -> bool:
        return bool(self.callbacks)

    def periods(self) -> tuple[int, ...]:
        """The positive ``period`` values."""
        return tuple(period(cb) for cb in self.callbacks if period(cb))

    def cuts(self) -> str:
        """``"KeepBest needs params every epoch"``: the callbacks that end compiled calls, for the progress
        display ("" when none does). The run folder's own checkpoint period is not named."""
        stores = (RunStore, SweepStore)
        named = [(type(cb).__name__, period(cb)) for cb in self.callbacks if period(cb) and not isinstance(cb, stores)]
        return "; ".join(f"{n} needs params every {'epoch' if k == 1 else f'{k} epochs'}" for n, k in named)

    def next_boundary(self, epoch: int) -> int | None:
        """The first epoch after ``epoch`` at which a callback wants the state (None: none does)."""
        ends = [(epoch // k + 1) * k for k in self.periods()]
        return min(ends) if ends else None

    def train_begin(self, run: RunInfo) -> None:
        for cb in self.callbacks:
            cb.on_train_begin(run)

    def epoch_end(self, epoch: int, logs: dict) -> int:
        """Every callback sees the epoch (all of them, even after one asked for a stop). Returns 0, or the status
        a stop is recorded with when one asked: a callback's ``stop_status`` (a scheduler's
        ``Status.SCHEDULER``), else ``Status.CALLBACK`` (the first that asked decides)."""
        stop = 0
        for cb in self.callbacks:
            if cb.on_epoch_end(epoch, dict(logs)) and not stop:
                stop = int(getattr(cb, "stop_status", Status.CALLBACK))
        return stop

    def state(self, epoch: int, state) -> bool:
        """``on_state`` of the callbacks whose period divides ``epoch``; True if any asked for a stop."""
        stop = False
        for cb in self.callbacks:
            k = period(cb)
            if k and epoch % k == 0:
                stop = bool(cb.on_state(epoch, state)) or stop
        return stop

    def can_stop(self) -> bool:
        """Whether any callback may ask for a stop (its ``stops`` attribute, True unless set otherwise)."""
        return any(getattr(cb, "stops", True) for cb in self.callbacks)

    def call_end(self, epoch: int, state) -> None:
        for cb in self.callbacks:
            cb.on_call_end(epoch, state)

    def train_end(self, result) -> None:
        for cb in self.callbacks:
            cb.on_train_end(result)

    def train_abort(self, error: BaseException) -> None:
        """``on_train_abort`` of every callback; an error raised by one does not keep the others from running."""
        for cb in self.callbacks:
            try:
                cb.on_train_abort(error)
            except Exception:  # the original error is the one to report
                pass


def finite_logs(logs: dict) -> dict:
    """The entries of ``logs`` that are finite numbers (trackers refuse NaN: e.g. no validation set)."""
    return {k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and math.isfinite(v)}


__all__ = [
    "NEEDS",
    "Callback",
    "CallbackList",
    "RunInfo",
    "RunStore",
    "SweepStore",
    "check_callbacks",
    "finite_logs",
    "period",
]
