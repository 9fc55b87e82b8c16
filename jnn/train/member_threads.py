"""Sweeps on every core: the members of a vmapped sweep cut into slices, each slice's call run in its own thread.

One vmapped call runs on one host thread; on a CPU the members' small matrix products leave the other cores
idle (XLA parallelises within an operation, and a sweep's operations are small). Independent calls made from
several Python threads do run side by side (jax releases the interpreter lock while a compiled call runs), so
:class:`ThreadedCaller` cuts the stacked members into ``workers`` slices of equal size and runs the same
compiled call on each slice at once.

Every slice holds at least two members: XLA compiles a vmapped batch of one member as an unbatched program. The
slices are padded to one size, so one program serves all of them; a pad is a copy of a member of its slice
marked as stopped, whose results are dropped. The slices depend only on the number of members and of workers,
so the same sweep with the same ``workers`` gives the same bits; with another number a member runs in a batch
of another size, which XLA may round differently in the last bits (measured: 1.2e-7 on MNIST-1D
40-100-100-10 between 1 and 2 workers), as a member differs from its fit.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np

from jnn.train.members import join, take
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


def slices(members: int, workers: int) -> list[np.ndarray]:
    """The member indices of each slice: ``min(workers, members // 2)`` slices (at least one), of sizes that differ
    by at most one, in order.

    Example:
        >>> [s.tolist() for s in slices(9, 2)]
        [[0, 1, 2, 3, 4], [5, 6, 7, 8]]
    """
    k = max(1, min(int(workers), int(members) // 2))
    return list(np.array_split(np.arange(int(members)), k))


class ThreadedCaller:
    """Wraps the :class:`jnn.train.multi_epoch.EpochCaller` of a vmapped sweep (same interface).

    ``caller(state, data, n)`` takes and returns the stacked state and data of M members (M may change from call
    to call, as :class:`jnn.train.repacking.PackedCaller` re-packs) and summaries ``[M, rows, width]``; inside,
    each slice of :func:`slices` runs in its own thread. With one slice the inner caller is called as it is.

    Args:
        inner: the caller of the vmapped program.
        workers: threads at most (see :func:`default_workers`).
    """

    def __init__(self, inner, *, workers: int):
        self.inner, self.max_workers = inner, max(1, int(workers))
        self._pool = ThreadPoolExecutor(self.max_workers) if self.max_workers > 1 else None
        self._data_in = self._data_parts = None
        self.parts, self.size = [], 0

    @property
    def replays(self) -> int:
        """Calls the inner caller replayed with the per-step check."""
        return self.inner.replays

    def next_n(self, seconds, epochs_run: int) -> int:
        """See :meth:`jnn.train.multi_epoch.EpochCaller.next_n`."""
        return self.inner.next_n(seconds, epochs_run)

    def close(self) -> None:
        """End the threads."""
        if self._pool is not None:
            self._pool.shutdown()

    def _padded(self, part: np.ndarray) -> np.ndarray:
        return np.concatenate([part, np.full(self.size - len(part), part[0])])

    def __call__(self, state, data, n: int):
        m = int(state.epoch.shape[0])
        if self._pool is None or m < 4:
            return self.inner(state, data, n)
        if self._data_in is not data or sum(len(p) for p in self.parts) != m:  # cut once per run and size
            self._data_in = data
            self.parts = slices(m, self.max_workers)
            self.size = max(len(p) for p in self.parts)
            self._data_parts = [take(data, jnp.asarray(self._padded(p))) for p in self.parts]
        inputs = []
        for p in self.parts:
            sub = take(state, jnp.asarray(self._padded(p)))
            if len(p) < self.size:  # the pads stop at once: their rows are NaN and they are never read back
                sub = sub._replace(status=sub.status.at[len(p) :].set(Status.MAX_EPOCHS))
            inputs.append(sub)
        futures = [self._pool.submit(self.inner, s, d, n) for s, d in zip(inputs, self._data_parts)]
        outs = [f.result() for f in futures]
        keep = [len(p) for p in self.parts]
        new = join([o[0] for o in outs], tuple(keep))
        rows = np.concatenate([o[1][:k] for o, k in zip(outs, keep)])
        suspect = np.concatenate([o[2][:k] for o, k in zip(outs, keep)])
        return new, rows, suspect


__all__ = ["ThreadedCaller", "default_workers", "slices"]
