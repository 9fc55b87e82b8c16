"""Sweeps that stop paying for finished members: re-pack the running ones into a smaller vmapped batch.

A vmapped sweep computes every member at every step, including members that have stopped (their state no
longer changes, but the arithmetic is done). At a call boundary, once the running members fit in half the
current batch or less, :class:`PackedCaller` gathers them (padded with copies of a stopped member, which
stay as they are) into a batch whose size is a power of two (at least 2), so a sweep of M members compiles
at most ⌈log2 M⌉ programs. The full state is kept up to date after every call, so the result is the same
stacked state and history, member for member, as without re-packing (tested bit for bit on CPU; XLA does
not promise that a member's arithmetic is the same in every batch size on every backend).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jnn.train.state import Status


def pack_size(running: int) -> int:
    """The batch that holds ``running`` members: the next power of two, at least 2 (XLA compiles a batch of
    one member as an unbatched program, whose sums may round differently: tests/test_calls.py saw a training
    loss differ in its last bit)."""
    return max(2, 1 << max(0, int(running) - 1).bit_length())


class PackedCaller:
    """Wraps the :class:`jnn.train.multi_epoch.EpochCaller` of a vmapped sweep of ``members`` (same interface).

    ``caller(state, data, n)`` takes and returns the full stacked state and data of all members, and
    summaries ``[members, rows, width]`` (NaN rows for members not run); inside, only the packed batch
    runs. ``sizes`` lists the batch sizes used, in order.

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
        """See :meth:`jnn.train.multi_epoch.EpochCaller.next_n`."""
        return self.inner.next_n(seconds, epochs_run)

    def __call__(self, state, data, n: int):
        if self._last is None or state is not self._last:  # a new run (or state from elsewhere): all members
            self.idx = np.arange(self.members)
            self._sub, self._data = state, data
        new_sub, sub_rows, sub_suspect = self.inner(self._sub, self._data, n)
        if len(self.idx) == self.members:  # never re-packed: the batch is all members, in order
            full, rows, suspect = new_sub, sub_rows, sub_suspect
        else:
            at = jnp.asarray(self.idx)
            full = jax.tree.map(lambda f, s: f.at[at].set(s), state, new_sub)
            rows = np.full((self.members, *sub_rows.shape[1:]), np.nan, sub_rows.dtype)
            rows[self.idx] = sub_rows  # pads are stopped members: their rows are NaN as well
            suspect = np.zeros(self.members, bool)
            suspect[self.idx] = sub_suspect
        self._sub, self._last = new_sub, full
        if self.enabled:
            self._repack(full, data, np.asarray(jax.device_get(full.status)))
        return full, rows, suspect

    def _repack(self, full, data, status) -> None:
        running = np.flatnonzero(status == Status.RUNNING)
        size = pack_size(len(running))
        if not len(running) or size >= len(self.idx):
            return
        stopped = np.flatnonzero(status != Status.RUNNING)
        self.idx = np.concatenate([running, np.full(size - len(running), stopped[0])])
        at = jnp.asarray(self.idx)
        self._sub = jax.tree.map(lambda a: a[at], full)
        self._data = jax.tree.map(lambda a: None if a is None else a[at], data)
        self.sizes.append(size)


__all__ = ["PackedCaller", "pack_size"]
