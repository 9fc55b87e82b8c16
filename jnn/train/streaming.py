"""Training on data that stays out of memory: the epoch's minibatches read from a ``jnn.disk.RowSource``
(a ``jnn.disk.DiskArray`` of a ``.npy``, or your own source) and fed to the device chunk by chunk.

The in-memory epoch (``jnn.train.epoch.make_run_epoch``) gathers each minibatch on device from the whole
training set. Here the same keyed permutation (``epoch_batches(fold_in(data_key, epoch))``) is computed on
device and brought to the host, its rows are read from the file a chunk of steps at a time, and a compiled scan
runs the same train step over the chunk; the epoch ends with the same ``jnn.train.epoch.make_epoch_end``. So a
run from disk takes the same steps on the same rows as the run in memory, and where both fit they agree bit for
bit (tested). A sweep streams the same way: each member reads its own rows in its own order, all members' rows
of a chunk in one read, and the vmapped scan runs them together (threads and re-packing move the members' row
indices like any other array). Reading overlaps computing: a chunk's scan is dispatched asynchronously, and the
next chunk is read and put on the device while it runs.

Once a run stops in the middle of an epoch (``max_steps``, a non-finite step), the epoch's remaining chunks are
not read: their steps would update nothing, and their sums, exact zeros, are added as such.

The validation set is read into memory (keep it small, e.g. ``val_fraction=0.01`` of a large file, or pass
``val=``). Only the rows of one chunk or two are in memory at a time: peak memory is the model's state, the
validation set and about two chunks (``CHUNK_BYTES``), whatever the file's size.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jnn.data import epoch_batches
from jnn.disk import RowSource, RowView, in_memory
from jnn.task import set_variance
from jnn.train.epoch import EpochData, epoch_summary, make_epoch_end
from jnn.train.multi_epoch import MAX_EPOCHS_PER_CALL, EpochCaller, summary_dtype
from jnn.train.precision import compute_task
from jnn.train.state import Status
from jnn.train.step import Batch, make_train_step

#: Bytes of input rows per chunk of steps fed to the device at once.
CHUNK_BYTES = 1 << 25


def _members(spec, fn):
    """``fn`` of one run, or vmapped over the stacked members of a sweep's spec."""
    return jax.vmap(fn) if spec.members else fn


@partial(jax.jit, static_argnums=0)
def _batches(spec, data_key, epoch):
    one = lambda k, e: epoch_batches(jax.random.fold_in(k, e), spec.n_train, spec.batch_size, spec.drop_last)
    return _members(spec, one)(data_key, epoch)


@partial(jax.jit, static_argnums=0)
def _y_var(spec, y):
    return _members(spec, lambda yy: set_variance(spec.task.value, yy))(y)


@partial(jax.jit, static_argnums=0)
def _chunk(spec, state, x, y, mask, weight, y_var):
    """A scan of the train step over ``k`` minibatches: ``x [k, T, d]``, ``y [k, T, ...]``, ``mask``, ``weight``
    ``[k, T]`` (with a leading member axis in a sweep)."""
    step = make_train_step(compute_task(spec.task.value, spec.compute_dtype), spec.tx.value,
                           check_finite=spec.check_finite, max_steps=spec.max_steps,
                           full_batches=spec.full_batches, members=spec.members)  # fmt: skip

    def one(s, xx, yy, mm, ww, vv):
        def body(c, inp):
            xb, yb, mb, wb = inp
            return step(c, Batch(xb, yb, mb, wb), None, vv)

        return jax.lax.scan(body, s, (xx, yy, mm, ww))

    return _members(spec, one)(state, x, y, mask, weight, y_var)


@partial(jax.jit, static_argnums=0)
def _end(spec, state, data, sums, was_running):
    end = make_epoch_end(spec.task.value, max_epochs=spec.max_epochs, early=spec.early, loss_tol=spec.loss_tol,
                         divergence_factor=spec.divergence_factor, has_val=spec.has_val, reduce_lr=spec.reduce_lr,
                         keep_best=spec.keep_best)  # fmt: skip

    def one(s, d, su, w):
        s, metrics = end(s, d, su, w)
        return s, epoch_summary(s, metrics, spec.keys).astype(summary_dtype())

    return _members(spec, one)(state, data, sums, was_running)


class StreamCaller:
    """The ``jnn.train.multi_epoch.EpochCaller`` interface for a run, or a sweep's stacked members, whose
    training inputs are read from a ``jnn.disk.RowSource``.

    ``caller(state, data, n) -> (state, summaries, suspect)`` runs up to ``n`` epochs (fewer once every run has
    stopped): ``[n, width]`` and a bool for one run, ``[M, n, width]`` and ``[M]`` for M members (NaN rows for a
    member not running, as in memory). One run's ``data`` is ``prepare``'s; a sweep's is its stacked
    ``jnn.train.epoch.EpochData`` with, in place of ``x``, each member's rows of ``source`` (``[M, n]``), so
    that re-packing and threads move it like any other array. The step checks every gradient when
    ``spec.check_finite`` (no replay is needed: the state is never left non-finite).

    Args:
        spec: the ``jnn.train.program.ProgramSpec`` (``members`` for a sweep; ``check_finite`` as the config).
        fixed: ``config.epochs_per_call`` (None: about 0.3 s of epochs per call, as in memory).
        source: a sweep's row source (its members' rows index it).
    """

    replays = 0

    def __init__(self, spec, *, fixed: int | None = None, source: RowSource | None = None):
        self.spec, self.source = spec, source
        self._pace = EpochCaller(None, None, rows=MAX_EPOCHS_PER_CALL, fixed=fixed)
        self._key = None  # the source's (path, size, mtime) when the run first read it

    def _same_source(self, src: RowSource) -> None:
        """Refuse a source whose file changed since the run first read it (``RowSource.cache_key``: size and
        modification time), checked before and after every epoch: an epoch never mixes rows of two files."""
        base = src.base if isinstance(src, RowView) else src
        key = base.cache_key()
        if key is None:
            return
        if self._key is None:
            self._key = key
        elif key != self._key:
            raise ValueError(f"the training data {base!r} changed on disk during the run (size, modification time: "
                             f"{self._key[1:]} when the run started, {key[1:]} now); a run streams the rows it "
                             "started on: start it again (a resume checks the data's hash)")  # fmt: skip

    def next_n(self, seconds, epochs_run: int, **kwargs) -> int:
        """See ``jnn.train.multi_epoch.EpochCaller.next_n``."""
        return self._pace.next_n(seconds, epochs_run, **kwargs)

    @staticmethod
    def prepare(data: EpochData) -> tuple:
        """``(x on disk, y and weights on the host, the device's EpochData for the epoch's end)``: targets and
        weights of the training set (small) stay on the host; the validation set goes to the device."""
        x_val = in_memory(data.x_val)
        put = lambda a: None if a is None else jnp.asarray(a)
        device = EpochData(jnp.zeros((1, data.x.shape[1]), data.x.dtype), put(data.y), put(data.weight), put(x_val),
                           put(data.y_val), put(data.weight_val))  # fmt: skip
        return data.x, np.asarray(data.y), None if data.weight is None else np.asarray(data.weight), device

    def _steps_per_chunk(self, t: int, d: int, itemsize: int, members: int = 1) -> int:
        return max(1, CHUNK_BYTES // max(1, members * t * d * itemsize))

    def _chunks(self, x: RowSource, y, w, idx, mask):
        """One run's chunks ``(x, y, mask, weight)`` on the device, ``k`` steps each, read in order."""
        steps, t = idx.shape
        k = self._steps_per_chunk(t, x.shape[1], x.dtype.itemsize)
        for s in range(0, steps, k):
            rows = idx[s : s + k]
            xb = x.read(rows.ravel()).reshape(*rows.shape, x.shape[1])
            yield jax.device_put((xb, y[rows], mask[s : s + k], None if w is None else w[rows]))

    def _member_chunks(self, rows, y, w, idx, mask):
        """The members' chunks ``[M, k, T, ...]`` on the device: each member's minibatches of its own rows."""
        m, steps, t = idx.shape
        src = self.source
        k = self._steps_per_chunk(t, src.shape[1], np.dtype(src.dtype).itemsize, m)
        each = np.arange(m)[:, None]
        for s in range(0, steps, k):
            sel = idx[:, s : s + k]
            flat = sel.reshape(m, -1)
            xb = src.fetch(rows[each, flat].ravel()).reshape(*sel.shape, src.shape[1])
            yb = y[each, flat].reshape(*sel.shape, *y.shape[2:])
            wb = None if w is None else w[each, flat].reshape(sel.shape)
            yield jax.device_put((xb, yb, mask[:, s : s + k], wb))

    def __call__(self, state, data, n: int):
        members = self.spec.members
        if members:
            rows, y, w = (None if a is None else np.asarray(a) for a in jax.device_get((data.x, data.y, data.weight)))
            device, m = data, rows.shape[0]
            chunks = lambda idx, mask: self._member_chunks(rows, y, w, idx, mask)
        else:
            x, y, w, device = data
            m = 1
            chunks = lambda idx, mask: self._chunks(x, y, w, idx, mask)
        running = lambda s: np.atleast_1d(np.asarray(jax.device_get(s.status))) == Status.RUNNING
        y_var = _y_var(self.spec, device.y)
        out = np.full((m, int(n), 2 + len(self.spec.keys)), np.nan, summary_dtype())
        axis = 1 if members else 0
        src = self.source if members else x
        for i in range(int(n)):
            at_start = running(state)
            if not at_start.any():
                break
            self._same_source(src)
            idx, mask = (np.asarray(a) for a in jax.device_get(_batches(self.spec, state.data_key, state.epoch)))
            was_running = state.status == Status.RUNNING
            parts = []
            for xb, yb, mb, wb in chunks(idx, mask):  # the next read overlaps this chunk's scan
                if parts and not running(state).any():
                    break  # stopped mid-epoch (max_steps, a non-finite step): the rest would update nothing
                state, sums = _chunk(self.spec, state, xb, yb, mb, wb, y_var)
                parts.append(sums)
            sums = {k: jnp.concatenate([p[k] for p in parts], axis=axis) for k in parts[0]}
            short = idx.shape[axis] - sums["count"].shape[axis]
            if short:  # steps that update nothing add exact zeros to every sum, as they do in memory
                sums = {k: jnp.concatenate([v, jnp.zeros((*v.shape[:axis], short), v.dtype)], axis=axis)
                        for k, v in sums.items()}  # fmt: skip
            self._same_source(src)  # before the epoch counts
            state, row = _end(self.spec, state, device, sums, was_running)
            row = np.asarray(row).reshape(m, -1)
            out[at_start, i] = row[at_start]  # a member not running leaves NaN, as the vmapped loop does
        if members:
            return state, out, np.zeros(m, bool)
        return state, out[0], np.asarray(False)


__all__ = ["CHUNK_BYTES", "StreamCaller"]
