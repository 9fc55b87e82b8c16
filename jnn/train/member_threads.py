"""Sweeps on every core: the members of a vmapped sweep run in pairs, the pairs in threads.

One vmapped call runs on one host thread; on a CPU the members' small matrix products leave the other cores
idle (XLA parallelises within an operation, and a sweep's operations are small). Independent calls made from
several Python threads do run side by side (jax releases the interpreter lock while a compiled call runs), so
:class:`SlicedCaller` cuts the members into slices of two and hands them to ``workers`` threads.

Why pairs: measured on a 2-core CPU (MNIST-1D 40-256-256-10), a member costs the same thread time in a vmapped
batch of 2, 3, 4 or 5 members (27-29 ms per epoch), so small slices lose nothing; one size means one program to
compile; and small slices follow the members that are still running: when members stop, the running ones are
paired afresh, so stopped members cost nothing. A batch of one member is never run (XLA compiles it as an
unbatched program).

What the pairing changes: nothing, bit for bit. A member's arithmetic in the program of a pair does not depend on
its partner, on its place in the pair or on a pad (tests/test_member_threads.py checks it on MLPs with relu and
tanh, SGD, momentum and Adam, dropout and L2), so a threaded sweep gives the same bits with any number of workers
of two or more, however its members were paired, re-paired after a stop or resumed. A batch of another size (one
thread: all M members in one batch) may round a member differently in the last bits, as a member may differ from
its fit (measured: up to 1.8e-7 after 8 epochs of MNIST-1D).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from jnn.train.members import take
from jnn.train.multi_epoch import TARGET_CALL_SECONDS
from jnn.train.state import Status


def default_workers() -> int:
    """Threads a sweep uses by default: the cores this process may run on when jax runs on the CPU, else 1 (an
    accelerator runs one program at a time)."""
    if jax.default_backend() != "cpu":
        return 1
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def plan(members) -> list[np.ndarray]:
    """Cut ``members`` (ids, at least one) into slices of two, in order; an odd one out is paired with a pad, a
    copy of itself marked ``-1 - id`` (computed, its results dropped).

    Example:
        >>> [s.tolist() for s in plan(range(5))]
        [[0, 1], [2, 3], [4, -5]]
    """
    ids = [int(i) for i in members]
    if not ids:
        raise ValueError("plan needs at least one member")
    if len(ids) % 2:
        ids.append(-1 - ids[-1])
    return [np.asarray(ids[i : i + 2]) for i in range(0, len(ids), 2)]


def _rows(part: np.ndarray) -> np.ndarray:
    """The member rows a slice reads: its members, and for a pad (``-1 - id``) the member it copies."""
    return np.where(part < 0, -1 - part, part)


@jax.jit
def _take_slice(tree, at, pad):
    """Rows ``at`` of every leaf (``[k]``); rows where ``pad`` (bool ``[k]``) are pads, marked stopped (their
    results are dropped). Compiles once per slice size."""
    sub = take(tree, at)
    return sub._replace(status=jnp.where(pad, jnp.asarray(Status.MAX_EPOCHS, sub.status.dtype), sub.status))


@jax.jit
def _put_slice(full, at, sub):
    """``full`` with rows ``at`` set from ``sub``'s rows; an index past the end (a pad's) is dropped. Compiles once
    per slice size."""
    return jax.tree.map(lambda f, s: f.at[at].set(s, mode="drop"), full, sub)


class SlicedCaller:
    """Wraps the :class:`jnn.train.multi_epoch.EpochCaller` of a vmapped sweep of ``members`` (same interface),
    running it on slices of two members (:func:`plan`) in ``workers`` threads.

    ``caller(state, data, n)`` takes and returns the full stacked state and data of all members, and summaries
    ``[members, n, width]`` (NaN rows for members not run). Inside, each slice runs its ``n`` epochs in calls of
    a few epochs, and a thread that is free takes the next call of the slice with the most epochs left (calls of
    one slice in order, never two at once). The calls are as long as the balance allows: ``n`` epochs at once
    when the slices share out evenly over the threads, else cut so that they do (5 slices on 2 threads: each
    slice in 2 calls of ``n / 2`` epochs), so the threads stay busy until the last epoch whatever the number of
    slices. :meth:`next_n` asks for calls of about twice the inner caller's target time, since every call of a
    slice costs a few milliseconds more than an epoch inside it. With ``repack``, after every call the members
    still running are paired afresh when that takes fewer pairs, so stopped members cost nothing from then on
    (a new run, or a resumed one, starts with its running members). ``sizes`` lists the members computed per
    epoch (pads included) after each cut, in order.

    Args:
        inner: the caller of the vmapped program (one program: every slice has two members).
        members: M, at least 2.
        workers: threads, at least 2 (see :func:`default_workers`).
        repack: pair the running members afresh as they stop (False: all M members to the end).
    """

    def __init__(self, inner, members: int, *, workers: int, repack: bool = True):
        self.inner, self.members, self.workers, self.enabled = inner, int(members), max(2, int(workers)), repack
        self._pool = ThreadPoolExecutor(self.workers)
        self.parts = plan(range(self.members))
        self.sizes = []
        self._in = self._out = None  # the state the last call took and the one it returned
        self._parts_in = self.parts
        self._data_key, self._data_parts = None, None  # (parts, data) the data slices were cut for
        self._warming = []

    @property
    def replays(self) -> int:
        """Calls the inner caller replayed with the per-step check."""
        return self.inner.replays

    def next_n(self, seconds, epochs_run: int) -> int:
        """See :meth:`jnn.train.multi_epoch.EpochCaller.next_n`: calls of twice its target time."""
        return self.inner.next_n(seconds, epochs_run, target=2 * TARGET_CALL_SECONDS)

    def close(self) -> None:
        """End the threads."""
        self._pool.shutdown()

    def warm(self, state, data) -> None:
        """Compile, in the background, what the first call will run: given one member's first ``state`` and epoch
        ``data`` (a sweep calls it as soon as its first member is built, and builds the others meanwhile), the
        vmapped program of a slice and the moves of rows between the full batch and the slices. The first call
        waits for them; an error here is left for that call to raise."""
        try:
            stack = lambda k: lambda t: jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * k), t)
            full_state, full_data = (jax.eval_shape(stack(self.members), t) for t in (state, data))
        except Exception:  # noqa: BLE001 - the real call raises it with its context
            return
        self._warming.append(self._pool.submit(self._compile, full_state, full_data))

    def _compile(self, full_state, full_data) -> None:
        at = jax.ShapeDtypeStruct((2,), jnp.int32)
        pad = jax.ShapeDtypeStruct((2,), jnp.bool_)
        sub = jax.eval_shape(_take_slice, full_state, at, pad)
        sub_data = jax.eval_shape(take, full_data, at)
        if hasattr(self.inner, "compile_for"):  # the long one first
            self.inner.compile_for(sub, sub_data)
        for fn, args in ((_take_slice, (full_state, at, pad)), (take, (full_data, at)),
                         (_put_slice, (full_state, at, sub))):  # fmt: skip
            fn.lower(*args).compile()

    @staticmethod
    def _computed(parts) -> int:
        return sum(len(p) for p in parts)

    def _data_slices(self, parts, data) -> list:
        if self._data_key is None or self._data_key[0] is not parts or self._data_key[1] is not data:
            self._data_key = (parts, data)
            self._data_parts = [take(data, jnp.asarray(_rows(p), jnp.int32)) for p in parts]
        return self._data_parts

    def _run_slices(self, states: list, datas: list, n: int) -> list:
        """Run ``n`` epochs of every slice, in calls handed to the threads as they come free. Returns each slice's
        ``(state, rows [2, n, width], suspect [2])``."""
        k = len(states)
        threads = min(self.workers, k)
        chunk = -(-n // (threads // math.gcd(k, threads)))  # k * n / chunk calls in all: a multiple of the threads
        states, left, busy = list(states), [n] * k, [False] * k
        rows, suspect, errors = [[] for _ in range(k)], [np.zeros(2, bool) for _ in range(k)], []
        cond = threading.Condition()

        def work():
            while True:
                with cond:
                    while True:
                        free = [i for i in range(k) if left[i] > 0 and not busy[i]]
                        if errors or (not free and not any(busy)):
                            return
                        if free:
                            i = max(free, key=lambda j: left[j])  # the slice with most epochs left (first on ties)
                            busy[i] = True
                            break
                        cond.wait()
                c = min(chunk, left[i])
                try:
                    new, r, bad = self.inner(states[i], datas[i], c)
                except BaseException as err:  # noqa: BLE001 - raised in the calling thread below
                    with cond:
                        errors.append(err)
                        busy[i] = False
                        cond.notify_all()
                    return
                with cond:
                    states[i] = new
                    rows[i].append(r[:, :c])
                    suspect[i] |= bad
                    # every member of the slice has stopped: the slice's later calls would run nothing
                    left[i] = 0 if np.all(np.isnan(r[:, c - 1, 0])) else left[i] - c
                    busy[i] = False
                    cond.notify_all()

        for f in [self._pool.submit(work) for _ in range(threads)]:
            f.result()
        if errors:
            raise errors[0]
        out = []
        for i in range(k):
            r = np.concatenate(rows[i], axis=1)
            if r.shape[1] < n:  # stopped early: the epochs not run are NaN rows
                r = np.concatenate([r, np.full((r.shape[0], n - r.shape[1], r.shape[2]), np.nan, r.dtype)], axis=1)
            out.append((states[i], r, suspect[i]))
        return out

    def __call__(self, state, data, n: int):
        while self._warming:
            self._warming.pop().exception()  # wait; a failure shows again in the call below
        if state is self._in and self._out is not None:  # the last call again (a replay up to a stop)
            parts = self._parts_in
        elif state is self._out and self._out is not None:
            parts = self.parts
        else:  # a new run, or a state from elsewhere (a resumed sweep): its running members, or all
            running = np.flatnonzero(np.asarray(jax.device_get(state.status)) == Status.RUNNING)
            parts = plan(running if self.enabled and len(running) else range(self.members))
            self.sizes.append(self._computed(parts))
        self.parts = parts
        rows_at = [p[p >= 0] for p in parts]
        subs = [_take_slice(state, jnp.asarray(_rows(p), jnp.int32), jnp.asarray(p < 0)) for p in parts]
        outs = self._run_slices(subs, self._data_slices(parts, data), n)
        full = state
        for p, o in zip(parts, outs):
            full = _put_slice(full, jnp.asarray(np.where(p < 0, self.members, p), jnp.int32), o[0])
        real = np.concatenate(rows_at)
        sub_rows = np.concatenate([o[1][: len(r)] for o, r in zip(outs, rows_at)])
        rows = np.full((self.members, *sub_rows.shape[1:]), np.nan, sub_rows.dtype)
        rows[real] = sub_rows
        suspect = np.zeros(self.members, bool)
        suspect[real] = np.concatenate([o[2][: len(r)] for o, r in zip(outs, rows_at)])
        self._in, self._out, self._parts_in = state, full, parts
        if self.enabled:
            running = np.flatnonzero(np.asarray(jax.device_get(full.status)) == Status.RUNNING)
            if len(running) and -(-len(running) // 2) < len(parts):
                self.parts = plan(running)
                self.sizes.append(self._computed(self.parts))
        return full, rows, suspect


__all__ = ["SlicedCaller", "default_workers", "plan"]
