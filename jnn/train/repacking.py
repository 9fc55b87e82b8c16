"""Sweeps in one vmapped batch (one worker) that stop paying for finished members: re-pack the running ones into a
smaller batch. (With threads each member runs its own program and a stopped one is simply not run:
``jnn.train.member_threads``.)

A vmapped sweep computes every member at every step, including members that have stopped (their state no
longer changes, but the arithmetic is done). At every ``REPACK_EVERY``-th epoch (the host loop ends a call
there), once the running members fit in half the current batch or less, ``PackedCaller`` gathers them
(padded with copies of a stopped member, which stay as they are) into a batch whose size is a power of two (at
least 2), so a sweep of M members compiles at most ⌈log2 M⌉ programs. The full state is kept up to date after
every call.

What re-packing changes: XLA may round a member's arithmetic differently in a batch of another size (measured on
a 2-core CPU: MNIST-1D 40-100-100-10, final params 3.6e-7 apart after 40 epochs with and without re-packing), so
a re-packed sweep equals the plain one only to rounding, as a member equals its fit. It is reproducible: the
batch a member runs in at each epoch depends only on the epochs at which members stopped (repacking happens at
fixed epochs, never where a timed call happened to end), so the same sweep gives the same bits run after run.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jnn.train.members import put, take
from jnn.train.state import Status

#: Re-packing happens only at multiples of this many epochs, so that where it happens never depends on timing.
REPACK_EVERY = 8


def pack_size(running: int) -> int:
    """The batch that holds ``running`` members: the next power of two, at least 2 (XLA compiles a batch of
    one member as an unbatched program, whose sums may round differently: tests/test_calls.py saw a training
    loss differ in its last bit)."""
    return max(2, 1 << max(0, int(running) - 1).bit_length())


class PackedCaller:
    """Wraps the ``jnn.train.multi_epoch.EpochCaller`` of a vmapped sweep of ``members`` (same interface).

    ``caller(state, data, n)`` takes and returns the full stacked state and data of all members, and
    summaries ``[members, rows, width]`` (NaN rows for members not run); inside, only the packed batch
    runs. ``sizes`` lists the batch sizes used, in order. ``next_boundary`` tells the host loop where calls must
    end (every ``REPACK_EVERY`` epochs while re-packing can still shrink the batch).

    Args:
        inner: the caller of the vmapped program (it compiles once per batch size).
        members: M.
        enabled: re-pack (False: always run all M, as a plain vmapped sweep).
    """

    def __init__(self, inner, members: int, *, enabled: bool = True):
        self.inner, self.members, self.enabled = inner, int(members), enabled
        self.idx = np.arange(self.members)
        self.sizes = [self.members]
        self._last = None  # the full state returned last, and the packed state and data behind it
        self._sub = self._data = None

    @property
    def replays(self) -> int:
        """Calls the inner caller replayed with the per-step check."""
        return self.inner.replays

    def next_n(self, seconds, epochs_run: int) -> int:
        """See ``jnn.train.multi_epoch.EpochCaller.next_n``."""
        return self.inner.next_n(seconds, epochs_run)

    def next_boundary(self, epoch: int) -> int | None:
        """The first epoch after ``epoch`` at which a call must end for a re-pack (None: no re-pack to come)."""
        if not self.enabled or len(self.idx) <= 2:
            return None
        return (epoch // REPACK_EVERY + 1) * REPACK_EVERY

    def __call__(self, state, data, n: int):
        if self._last is None or state is not self._last:  # a new run (or state from elsewhere): all members
            self.idx = np.arange(self.members)
            self._sub, self._data = state, data
        new_sub, sub_rows, sub_suspect = self.inner(self._sub, self._data, n)
        if len(self.idx) == self.members:  # never re-packed: the batch is all members, in order
            full, rows, suspect = new_sub, sub_rows, sub_suspect
        else:
            full = put(state, jnp.asarray(self.idx), new_sub)
            rows = np.full((self.members, *sub_rows.shape[1:]), np.nan, sub_rows.dtype)
            rows[self.idx] = sub_rows  # pads are stopped members: their rows are NaN as well
            suspect = np.zeros(self.members, bool)
            suspect[self.idx] = sub_suspect
        self._sub, self._last = new_sub, full
        if self.enabled:
            status, epochs = (np.asarray(a) for a in jax.device_get((full.status, full.epoch)))
            running = status == Status.RUNNING
            if running.any() and int(epochs[running].max()) % REPACK_EVERY == 0:
                self._repack(full, data, status)
        return full, rows, suspect

    def _repack(self, full, data, status) -> None:
        running = np.flatnonzero(status == Status.RUNNING)
        size = pack_size(len(running))
        if not len(running) or size > len(self.idx) // 2:  # a smaller batch compiles: only for half or less
            return
        stopped = np.flatnonzero(status != Status.RUNNING)
        self.idx = np.concatenate([running, np.full(size - len(running), stopped[0])])
        at = jnp.asarray(self.idx)
        self._sub, self._data = take(full, at), take(data, at)
        self.sizes.append(size)


__all__ = ["REPACK_EVERY", "PackedCaller", "pack_size"]
