"""Several epochs per compiled call, and a non-finite guard that costs nothing while the values stay finite.

One call of the program built here runs up to ``n`` epochs (``n`` is an argument, so changing it compiles
nothing) in a ``lax.while_loop`` that also ends as soon as the run stops (early stopping, budgets,
divergence), so a run that stops mid-call stops exactly where one epoch per call would have, bit for bit.
Each epoch writes its summary row (epoch, status, metrics) into a ``[rows, width]`` buffer that the host
reads back once per call.

The guard: the program that runs by default checks only the loss at each step (one scalar) and, at the end
of the call, whether every leaf of the params and optimiser state is still finite (one pass per call, not
one per step). Only when that fails does the host replay the call from its start with the per-step
gradient check on (``jnn.train.step.make_train_step`` with ``check_finite=True``), which finds the step
and the leaf and keeps the last finite state: the same messages and the same saved state as checking every
step, at the cost of checking every step only in a call that went non-finite.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from jnn.train.state import Status, TrainState

#: The most epochs one call runs when the number is chosen automatically (the summary buffer's rows).
MAX_EPOCHS_PER_CALL = 256
#: The wall time one call aims at when the number of epochs per call is automatic: long enough that the
#: host round trip per call is a small share, short enough for live progress, checkpoints and Ctrl-C.
TARGET_CALL_SECONDS = 0.3


def summary_dtype():
    """The dtype of the summary buffer: float64 when x64 is on, else float32 (every metric dtype jnn
    produces converts to it exactly, so the history holds the same numbers as one epoch per call)."""
    return jnp.float64 if jax.config.jax_enable_x64 else jnp.float32


def all_finite(tree) -> jax.Array:
    """Scalar bool: every inexact leaf of ``tree`` is free of NaN and inf."""
    leaves = [jnp.all(jnp.isfinite(a)) for a in jax.tree.leaves(tree) if jnp.issubdtype(a.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def make_call(epoch_fn, width: int, rows: int):
    """Build ``call(state, data, n) -> (state, summaries, suspect)`` from one epoch.

    Args:
        epoch_fn: ``epoch_fn(state, data) -> (state, summary [width])`` (see
            ``jnn.train.epoch.with_summary``).
        width: the summary's length (2 + the number of history keys).
        rows: the most epochs one call can run (static: the buffer's rows).

    Returns:
        ``call``: runs epochs while ``i < n`` and the state's status is running. ``summaries`` is
        ``[rows, width]`` in ``summary_dtype``, row ``i`` the summary of the call's ``i``-th epoch and
        NaN past the last epoch run. ``suspect`` is True when a run that was running at the start stopped on
        a non-finite value or holds a leaf of params or optimiser state that is not finite (the host then
        replays the call guarded).
    """

    def call(state: TrainState, data, n):
        dtype = summary_dtype()
        buf = jnp.full((rows, width), jnp.nan, dtype)

        def cond(carry):
            i, s, _ = carry
            return (i < n) & (s.status == Status.RUNNING)

        def body(carry):
            i, s, b = carry
            s, row = epoch_fn(s, data)
            return i + 1, s, jax.lax.dynamic_update_slice(b, row.astype(dtype)[None], (i, jnp.zeros_like(i)))

        was_running = state.status == Status.RUNNING
        _, state, buf = jax.lax.while_loop(cond, body, (jnp.int32(0), state, buf))
        bad = (state.status == Status.NON_FINITE) | ~all_finite((state.params, state.opt_state))
        suspect = was_running & bad  # a member stopped by an earlier call is not looked at again
        return state, buf, suspect

    return call


class EpochCaller:
    """The host's handle on the compiled calls of a run (one run or a vmapped sweep).

    ``caller(state, data, n) -> (state, summaries, suspect)`` with NumPy ``summaries`` and ``suspect``
    (``[rows, width]`` and a bool for one run; ``[M, rows, width]`` and ``[M]`` for M members). When the
    fast call comes back suspect and a ``guarded`` call is given, the call is replayed from ``state`` with it
    and its result is returned instead (``replays`` counts them).

    Args:
        fast: the jitted call run by default.
        guarded: the jitted call with the per-step gradient check, or None (``check_finite=False``: the fast
            call's result stands).
        rows: the most epochs one call runs.
        fixed: run exactly this many epochs per call (None: choose them from the measured time per epoch, so
            that one call takes about ``TARGET_CALL_SECONDS``; the first call runs one epoch).
    """

    def __init__(self, fast, guarded, *, rows: int, fixed: int | None = None):
        self.fast, self.guarded, self.rows, self.fixed = fast, guarded, rows, fixed
        self.replays = 0
        self._calls = 0
        self._per_epoch = None

    def compile_for(self, state, data) -> None:
        """Compile the fast call for arguments shaped like ``state`` and ``data`` (``jax.ShapeDtypeStruct``
        trees) ahead of time: the call with such arguments then finds its program in ``jax.jit``'s cache. A
        sweep does it in a background thread while it builds its members."""
        fn = self.fast.func if isinstance(self.fast, partial) else self.fast
        args = self.fast.args if isinstance(self.fast, partial) else ()
        fn.lower(*args, state, data, jax.ShapeDtypeStruct((), jnp.int32)).compile()

    def __call__(self, state, data, n: int):
        new, rows, suspect = self.fast(state, data, jnp.int32(n))
        rows, suspect = jax.device_get((rows, suspect))
        if self.guarded is not None and np.any(suspect):
            self.replays += 1
            new, rows, suspect = self.guarded(state, data, jnp.int32(n))
            rows, suspect = jax.device_get((rows, suspect))
        return new, np.asarray(rows), np.asarray(suspect)

    def next_n(self, seconds: float | None, epochs_run: int, *, target: float = TARGET_CALL_SECONDS) -> int:
        """How many epochs to ask of the next call, given the last call's wall time and epochs (None: first), so
        that a call takes about ``target`` seconds."""
        if self.fixed is not None:
            return self.fixed
        self._calls += 1
        if seconds is None or epochs_run <= 0 or self._calls <= 2:
            return 1  # the first call includes the compile: time the second one (one epoch) before growing
        per_epoch = seconds / epochs_run
        self._per_epoch = per_epoch if self._per_epoch is None else 0.5 * (self._per_epoch + per_epoch)
        return int(max(1, min(self.rows, round(target / max(self._per_epoch, 1e-9)))))


__all__ = ["MAX_EPOCHS_PER_CALL", "TARGET_CALL_SECONDS", "EpochCaller", "all_finite", "make_call", "summary_dtype"]
