"""Sweeps on every core: each member runs its own fit's program, the members' calls in threads.

One compiled call runs on one host thread, and on a CPU a small network's operations leave the other cores
idle. Independent calls made from several Python threads do run side by side (jax releases the interpreter lock
while a compiled call runs), so ``MemberThreads`` runs a sweep's members as ``workers`` threads that take
the members' calls as they come free.

Why one member per call and not a vmapped batch: measured on a 2-core CPU (MNIST-1D 40-256-256-10, dropout
masks from ``jnn.threefry``), a member's epoch costs 17.3 ms of thread time in its own unbatched program
(two of them in two threads at once) against 21 ms in a vmapped pair and more in larger batches; a member
alone keeps no second core busy, so threads lose nothing to the batch. And it changes nothing: each member runs
the program its own ``jnn.fit`` runs, from the same state on the same data, so it gets its fit's bits
(tests/test_member_threads.py checks it bit for bit against ``fit`` on several recipes), whatever the number of
workers or the other members. A stopped member is never called again. One program serves every member (one
compile per shape group, the same program a fit of that shape compiles).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from jnn.train.members import row, set_row, set_row_in_place
from jnn.train.multi_epoch import TARGET_CALL_SECONDS
from jnn.train.state import Status


def default_workers() -> int:
    """Threads a sweep uses by default: the cores this process may run on when jax runs on the CPU, else 1 (an
    accelerator runs one program at a time, and there a vmapped batch of all members fills it)."""
    if jax.default_backend() != "cpu":
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _row_data(data, i: int):
    return row(data, jnp.int32(i))


class _OnCall:
    """``datas[j]``: member ``j``'s data, made when a call asks for it (and dropped with the call)."""

    def __init__(self, make):
        self.make = make

    def __getitem__(self, j: int):
        return self.make(j)


class MemberThreads:
    """The caller of a sweep's ``members`` (the ``jnn.train.multi_epoch.EpochCaller`` interface) that runs
    each member through ``inner``, the caller of one member's own program, in ``workers`` threads.

    ``caller(state, data, n)`` takes and returns the stacked state and data of all members, and summaries
    ``[members, n, width]`` (NaN rows for members not run). Inside, each running member runs its ``n`` epochs in
    calls of a few epochs, and a thread that is free takes the next call of the member with the most epochs
    left (calls of one member in order, never two at once). The calls are as long as the balance allows: ``n``
    epochs at once when the members share out evenly over the threads, else cut so that they do (9 members on 2
    threads: each in 2 calls of ``n / 2`` epochs), so the threads stay busy to the end of the call. A member that
    has stopped is not called. ``next_n`` asks for calls of about twice the inner caller's target time.
    ``sizes`` lists the members run per epoch, at the start and after each change.

    Args:
        inner: the caller of one member's program (``inner(state, data, n)`` with one member's state and data).
        members: M.
        workers: threads, at least 1 (see ``default_workers``).
        member_data: ``member_data(data, i)``, member ``i``'s data for ``inner`` from the stacked ``data``
            (default: its row of every array).
        devices: the devices the members run on, member ``i`` on ``devices[i % len(devices)]`` (its state and data
            are moved there for its calls and its new state back to the stacked state's device); None: where the
            stacked state is.
    """

    def __init__(self, inner, members: int, *, workers: int, member_data=None, devices=None):
        self.inner, self.members, self.workers = inner, int(members), max(1, int(workers))
        self.devices = list(devices) if devices else []
        self.ran_on: dict[int, object] = {}  # member -> the device its last call ran on (read from its output)
        self.member_data = _row_data if member_data is None else member_data
        self._pool = ThreadPoolExecutor(self.workers)
        self.sizes: list[int] = []
        self._in = self._out = self._ids_in = None  # the state the last call took, the one it returned, its members
        self._data_key, self._data_rows = None, {}
        self._warming = []

    @property
    def replays(self) -> int:
        """Calls the inner caller replayed with the per-step check."""
        return self.inner.replays

    def next_n(self, seconds, epochs_run: int) -> int:
        """See ``jnn.train.multi_epoch.EpochCaller.next_n``: calls of twice its target time."""
        return self.inner.next_n(seconds, epochs_run, target=2 * TARGET_CALL_SECONDS)

    def close(self) -> None:
        """End the threads."""
        self._pool.shutdown()

    def warm(self, state, data) -> None:
        """Compile, in the background, what the first call will run, given one member's first ``state`` and epoch
        ``data`` (a sweep calls it as soon as its first member is built, and builds the others meanwhile): the
        member's program and the moves of a member's row. The first call waits for it; an error here is left for
        that call to raise."""
        try:
            stack = lambda t: jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * self.members), t)
            full_state, full_data = (jax.eval_shape(stack, t) for t in (state, data))
        except Exception:  # noqa: BLE001 - the real call raises it with its context
            return
        i = jax.ShapeDtypeStruct((), jnp.int32)
        one = jax.eval_shape(row, full_state, i)
        moves = [(row, (full_state, i)), (set_row, (full_state, i, one)), (set_row_in_place, (full_state, i, one))]
        if self.member_data is _row_data:  # a member's data is its row (a streamed member's is read from disk)
            moves.append((row, (full_data, i)))
            if hasattr(self.inner, "compile_for"):  # the long one, in its own thread
                self._warming.append(self._pool.submit(self.inner.compile_for, one, jax.eval_shape(row, full_data, i)))
        self._warming.append(self._pool.submit(lambda: [fn.lower(*args).compile() for fn, args in moves]))

    def device_of(self, i: int):
        """The device member ``i`` runs on (None: where the stacked state is)."""
        return self.devices[i % len(self.devices)] if self.devices else None

    def _put(self, tree, i: int):
        """``tree`` on member ``i``'s device (its arrays; anything else as it is)."""
        device = self.device_of(i)
        if device is None:
            return tree
        return jax.tree.map(lambda a: jax.device_put(a, device) if isinstance(a, jax.Array) else a, tree)

    def _data_for(self, data, i: int):
        """Member ``i``'s data for a call: its row of the stacked ``data``, taken for the call and dropped after it
        (the sweep holds its data once, stacked); a streamed member's (row indices and the source) kept."""
        if self.member_data is _row_data:
            return self._put(_row_data(data, i), i)
        if self._data_key is not data:
            self._data_key, self._data_rows = data, {}
        if i not in self._data_rows:
            self._data_rows[i] = self._put(self.member_data(data, i), i)
        return self._data_rows[i]

    def _call(self, member: int, state, data, n: int):
        """One call of ``n`` epochs of ``member`` from its ``state`` on its ``data`` (in a worker thread): the inner
        caller's ``(state, rows, suspect)``; records the device it ran on in ``ran_on``."""
        out = self.inner(state, data, n)
        self.ran_on[member] = next(iter(jax.tree.leaves(out[0])[0].devices()))
        return out

    def _run(self, states: list, datas: list, n: int, ids=None) -> list:
        """Run ``n`` epochs of every member given (the members ``ids``, default ``0, 1, ...``), in calls handed to the
        threads as they come free. Returns each member's ``(state, rows [n, width], suspect)``."""
        ids = list(range(len(states))) if ids is None else [int(i) for i in ids]
        k = len(states)
        threads = min(self.workers, k)
        chunk = -(-n // (threads // math.gcd(k, threads)))  # k * n / chunk calls in all: a multiple of the threads
        states, left, busy = list(states), [n] * k, [False] * k
        rows, suspect, errors = [[] for _ in range(k)], [False] * k, []
        cond = threading.Condition()

        def work():
            while True:
                with cond:
                    while True:
                        free = [i for i in range(k) if left[i] > 0 and not busy[i]]
                        if errors or (not free and not any(busy)):
                            return
                        if free:
                            i = max(free, key=lambda j: left[j])  # the member with most epochs left (first on ties)
                            busy[i] = True
                            break
                        cond.wait()
                c = min(chunk, left[i])
                try:
                    new, r, bad = self._call(ids[i], states[i], datas[i], c)
                except BaseException as err:  # noqa: BLE001 - raised in the calling thread below
                    with cond:
                        errors.append(err)
                        busy[i] = False
                        cond.notify_all()
                    return
                with cond:
                    states[i] = new
                    rows[i].append(np.asarray(r)[:c])
                    suspect[i] |= bool(bad)
                    last = rows[i][-1][c - 1]  # the summary row of the call's last epoch: epoch, status, ...
                    left[i] = 0 if np.isnan(last[0]) or last[1] != Status.RUNNING else left[i] - c  # stopped: done
                    busy[i] = False
                    cond.notify_all()

        for f in [self._pool.submit(work) for _ in range(threads)]:
            f.result()
        if errors:
            raise errors[0]
        out = []
        for i in range(k):
            r = np.concatenate(rows[i])
            if len(r) < n:  # stopped early: the epochs not run are NaN rows
                r = np.concatenate([r, np.full((n - len(r), r.shape[1]), np.nan, r.dtype)])
            out.append((states[i], r, suspect[i]))
        return out

    def __call__(self, state, data, n: int):
        while self._warming:
            self._warming.pop().exception()  # wait; a failure shows again in the call below
        if state is self._in and self._out is not None:  # the last call again (a replay up to a stop)
            ids = self._ids_in
        else:
            ids = np.flatnonzero(np.asarray(jax.device_get(state.status)) == Status.RUNNING)
            if not self.sizes or self.sizes[-1] != len(ids):
                self.sizes.append(len(ids))
        states = [self._put(row(state, jnp.int32(i)), int(i)) for i in ids]
        outs = self._run(states, _OnCall(lambda j: self._data_for(data, int(ids[j]))), n, ids)
        home = next(iter(jax.tree.leaves(state)[0].devices())) if self.devices else None
        full = state
        for j, (i, o) in enumerate(zip(ids, outs)):
            new = o[0] if home is None else jax.device_put(o[0], home)
            full = (set_row if j == 0 else set_row_in_place)(full, jnp.int32(i), new)  # in place after one copy
        width, dtype = (outs[0][1].shape[1], outs[0][1].dtype) if outs else (1, np.float64)
        rows = np.full((self.members, n, width), np.nan, dtype)
        suspect = np.zeros(self.members, bool)
        for i, o in zip(ids, outs):
            rows[i], suspect[i] = o[1], o[2]
        self._in, self._out, self._ids_in = state, full, ids
        return full, rows, suspect


__all__ = ["MemberThreads", "default_workers"]
