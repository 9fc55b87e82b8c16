"""The host side of a run, shared by ``fit`` and ``sweep``: run compiled calls until every run stopped.

One call is one dispatch of a jitted function that runs several epochs (see ``jnn.train.multi_epoch``) and
returns the new state and a small summary array (epoch, status and the metrics of each epoch, per
member); the host reads the summaries back (which blocks, so one dispatch is in flight at a time),
updates the history and the progress display, and calls back for checkpoints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnn.train.state import Status


class Interrupted(KeyboardInterrupt):
    """Raised by ``jnn.fit`` and ``jnn.sweep.sweep`` after SIGINT (Ctrl-C) or SIGTERM stopped a run
    at the end of an epoch and everything was written (checkpoint, history, summary).

    Attributes:
        result: what the call would have returned (a ``FitResult`` or ``SweepResult``) at the stop.
        signum: the signal, ``signal.SIGINT`` or ``signal.SIGTERM``.
        exit_code: the shell's code for that signal, ``128 + signum`` (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, result, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name} at epoch {_epochs_of(result)}")
        self.result = result
        self.signum = int(signum)
        self.exit_code = 128 + int(signum)


def _epochs_of(result) -> int:
    """The most epochs any member has run (a sweep of several shape groups holds a list of group states)."""
    states = result.state if isinstance(result.state, list) else [result.state]
    return max(int(np.max(np.asarray(jax.device_get(s.epoch)))) for s in states)


#: What a second SIGINT/SIGTERM during a run does: ``"raise"`` (``KeyboardInterrupt``, for Python sessions)
#: or ``"exit"`` (the ``jnn`` command: exit at once with 128 + signum; an exception raised from a signal
#: handler can land in a garbage-collector callback, where Python ignores it).
SECOND_SIGNAL = "raise"


class _StopRequest:
    """The SIGINT/SIGTERM handler of a run: the first signal asks for a stop at the end of the call, a
    second one stops at once (see ``SECOND_SIGNAL``; checkpoints are written atomically, so the last
    one stays valid)."""

    def __init__(self, say):
        self.signum = None
        self._say = say

    def __call__(self, signum, frame):
        if self.signum is not None:
            if SECOND_SIGNAL == "exit":
                sys.stdout.flush()
                print("jnn: stopped at once; the last checkpoint stays valid", file=sys.stderr, flush=True)
                os._exit(128 + signum)
            raise KeyboardInterrupt
        self.signum = signum
        name = signal.Signals(signum).name
        self._say(f"{name}: stopping when the running call of epochs ends (press Ctrl-C again to stop at once)")


@contextlib.contextmanager
def stop_on_signals(say=None):
    """Within the block, SIGINT and SIGTERM set ``.signum`` of the yielded request instead of killing the
    process (main thread only; elsewhere the signals keep their handlers and ``.signum`` stays None)."""
    req = _StopRequest(say or (lambda line: print(line, file=sys.stderr, flush=True)))
    if threading.current_thread() is not threading.main_thread():
        yield req
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    for s in old:
        signal.signal(s, req)
    try:
        yield req
    finally:
        stopping = req.signum is not None and SECOND_SIGNAL == "exit"
        for s, h in old.items():  # while the stopped run is written, a second signal still stops at once
            signal.signal(s, req if stopping else h)


class HostRun(NamedTuple):
    """What ``run_epochs`` returns: the final ``state``, each epoch's host wall time (the first includes
    the compile), and ``halt``: None (every run stopped by its rules), ``"paused"`` (``stop_at_epoch``) or
    the signal number that asked for a stop."""

    state: object
    epoch_seconds: tuple
    halt: object


def run_epochs(
    caller,
    state,
    data,
    *,
    keys,
    max_epochs: int,
    records: list | None = None,
    report=None,
    stop_at_epoch: int | None = None,
    callbacks=None,
    labels=None,
) -> HostRun:
    """Run compiled calls of several epochs each until every member has stopped, a pause, or a signal.

    Args:
        caller: a ``jnn.train.multi_epoch.EpochCaller``: ``caller(state, data, n) -> (state, summaries,
            suspect)`` runs up to ``n`` epochs; a summary row is epoch, status, then the epoch's value of
            each history key (NaN rows: epochs not run); ``caller.next_n`` picks ``n``; a caller with a
            ``next_boundary(epoch)`` method (re-packing) also ends calls where it says.
        state: the starting state (one run, or M stacked members).
        data: the epoch's arrays.
        keys: the history keys in the summary.
        max_epochs: the epoch budget (calls are cut at it).
        records: one ``{key: [values]}`` per member; a member's values are appended when its epoch counted
            (the history lives here, on the host). Default: fresh empty records.
        report: a ``jnn.train.progress.Progress`` already started (its ``row`` after every epoch row;
            signal messages go through its ``say``), or None (nothing shown).
        stop_at_epoch: pause once a run has completed this many epochs in total.
        callbacks: a ``jnn.train.callbacks.CallbackList`` (see there for the hooks run here:
            ``on_epoch_end`` per member and epoch, ``on_state`` at its period (calls end at its multiples),
            ``on_call_end`` after every call, and stop requests, which stop a member after exactly that
            epoch; the caller must keep its input alive for the replay when one may ask).
        labels: the member numbers the callbacks' logs carry (a sweep's shape group; default ``0..M-1``;
            one run's logs carry none).

    Returns:
        A ``HostRun``. SIGINT and SIGTERM stop the loop at the end of the running call (``halt`` is the
        signal); a second one raises ``KeyboardInterrupt``.
    """
    epochs, status = (np.atleast_1d(np.asarray(a)) for a in jax.device_get((state.epoch, state.status)))
    members = epochs.size
    if records is None:
        records = [{k: [] for k in keys} for _ in range(members)]
    seconds, halt, done = [], None, 0
    last_seconds, last_run = None, 0
    with stop_on_signals(None if report is None else report.say) as stop:
        while np.any(status == Status.RUNNING):
            epoch = int(epochs.max())
            if stop_at_epoch is not None and epoch >= stop_at_epoch:
                halt = "paused"
                break
            n = caller.next_n(last_seconds, last_run)
            n = _cut(n, epoch, max_epochs, stop_at_epoch)
            ends = (callbacks.next_boundary(epoch) if callbacks else None,
                    caller.next_boundary(epoch) if hasattr(caller, "next_boundary") else None)  # fmt: skip
            boundary = min((e for e in ends if e is not None), default=None)
            n = _agreed_n(n if boundary is None else max(1, min(n, boundary - epoch)))
            t = time.perf_counter()
            before_call = state
            state, summaries, _ = caller(state, data, n)
            summaries = summaries.reshape(members, -1, 2 + len(keys))
            last_seconds = time.perf_counter() - t
            rows_run = int(np.sum(np.any(~np.isnan(summaries[:, :, 0]), axis=0)))
            epochs, status, asked, last_run = _deliver(summaries[:, :rows_run], epochs, status, records, keys,
                                                       callbacks, labels, report, done)  # fmt: skip
            done += last_run
            if np.any(asked):
                if last_run < rows_run:  # the call ran past the stop: run exactly up to it instead
                    state = caller(before_call, data, last_run)[0]
                state, status = _stop_where(state, np.where(status == Status.RUNNING, asked, 0))
            seconds.extend([last_seconds / max(last_run, 1)] * last_run)
            if callbacks and callbacks.periods():
                wants = callbacks.state(int(epochs.max()), state)
                if wants:
                    state, status = _stop_where(state, np.where(status == Status.RUNNING, Status.CALLBACK, 0))
            if callbacks:
                callbacks.call_end(int(epochs.max()), state)
            signum = _agreed(stop.signum)
            if signum is not None and np.any(status == Status.RUNNING):
                halt = signum
                break
    return HostRun(state, tuple(seconds), halt)


def _deliver(summaries, epochs, status, records, keys, callbacks, labels, report, done: int):
    """Hand a call's summary rows ``[M, rows, width]`` to the records, the callbacks and the report, row by
    row, up to the first row after which a callback asked for a stop.

    Returns:
        ``(epochs, status, asked, rows)``: each member's epoch count and status after the rows delivered,
        the status each member's callbacks asked to stop it with (int ``[M]``, 0: none), and the number of rows
        delivered.
    """
    members = epochs.size
    asked = np.zeros(members, int)
    delivered = 0
    for r in range(summaries.shape[1]):
        rows = summaries[:, r]
        ran = ~np.isnan(rows[:, 0])
        delivered += 1
        before, was = epochs, status
        epochs = np.where(ran, rows[:, 0], before).astype(int)
        status = np.where(ran, rows[:, 1], status).astype(int)
        for i in np.flatnonzero(epochs > before):
            values = rows[i, 2:].tolist()
            for k, v in zip(keys, values):
                records[i][k].append(v)
            if callbacks:
                logs = dict(zip(keys, values))
                if members > 1 or labels is not None:
                    logs["member"] = int(i if labels is None else labels[i])
                code = callbacks.epoch_end(int(epochs[i]), logs)  # every callback sees every epoch
                asked[i] = asked[i] or code
        running = int(np.sum(status == Status.RUNNING))
        if report is not None and members > 1:
            for i in np.flatnonzero((was == Status.RUNNING) & (status != Status.RUNNING)):
                report.member_done(int(i if labels is None else labels[i]), int(epochs[i]), int(status[i]))
        if report is not None:
            report.row(done + delivered, int(epochs.max()), running, dict(zip(keys, rows[0, 2:].tolist())))
        if np.any(asked):
            break
    return epochs, status, asked, delivered


def _stop_where(state, codes):
    """``(state, status)`` with each running member whose ``codes`` entry is non-zero stopped with that status (a
    callback's ``Status.CALLBACK``, a scheduler's ``Status.SCHEDULER``)."""
    status = state.status
    codes = jnp.asarray(np.asarray(codes).reshape(np.shape(status)), jnp.int32)
    new = jnp.where((codes > 0) & (status == Status.RUNNING), codes, status).astype(jnp.int32)
    return state._replace(status=new), np.atleast_1d(np.asarray(jax.device_get(new))).astype(int)


def _cut(n: int, epoch: int, max_epochs: int, stop_at_epoch: int | None) -> int:
    """``n`` epochs from ``epoch``, cut at the budget and at the pause."""
    limit = max_epochs - epoch
    if stop_at_epoch is not None:
        limit = min(limit, stop_at_epoch - epoch)
    return max(1, min(n, limit))


def _agreed_n(n: int) -> int:
    """The epochs per call all processes run (``jnn launch``): the smallest any of them asked for."""
    if jax.process_count() == 1:
        return n
    from jax.experimental import multihost_utils

    return int(np.asarray(multihost_utils.process_allgather(np.int32(n))).min())


def _agreed(signum):
    """The stop request all processes act on: with several (``jnn launch``), a signal seen by any of them,
    exchanged every epoch so that all stop after the same epoch (a collective left alone would hang)."""
    if jax.process_count() == 1:
        return signum
    from jax.experimental import multihost_utils

    seen = np.asarray(multihost_utils.process_allgather(np.int32(signum or 0)))
    return int(seen.max()) or None


def final_params(state, restore: bool):
    """The params a run returns: the best epoch's when ``restore`` and an epoch improved, else the last.

    Works for one run and for stacked sweep members (each member picks its own).
    """
    if not restore:
        return state.params
    pick = state.early.best_epoch >= 0
    return jax.tree.map(
        lambda b, p: jnp.where(pick.reshape(pick.shape + (1,) * (p.ndim - pick.ndim)), b, p),
        state.best_params,
        state.params,
    )


__all__ = ["HostRun", "Interrupted", "run_epochs", "final_params", "stop_on_signals"]
