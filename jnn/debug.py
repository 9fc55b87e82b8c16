"""Debugging aids: how many times jnn's compiled functions were traced (= compiled anew).

A trace is what ``jax.jit`` does the first time it meets a new static configuration or new shapes; a
second ``fit`` of the same shapes should trace nothing. The training step (``"train_step"``), the
multi-epoch call (``"run_epoch"``) and the evaluation (``"eval_step"``) note each of their traces here::

    with jnn.debug.count_traces() as traces:
        jnn.fit(train, config)
    traces["run_epoch"]        # 0 when an earlier fit of the same shapes compiled it

JAX's own view of the same events: ``jax.config.update("jax_log_compiles", True)``.
"""

from __future__ import annotations

import collections
import contextlib

_TRACES: collections.Counter = collections.Counter()


def note_trace(name: str) -> None:
    """Count one trace of the compiled function ``name`` (called at trace time, inside the traced body)."""
    _TRACES[name] += 1


def trace_counts() -> collections.Counter:
    """A snapshot of the traces so far in this process, ``{name: count}`` (0 for a name never traced)."""
    return collections.Counter(_TRACES)


@contextlib.contextmanager
def count_traces():
    """Count the traces made inside a ``with`` block.

    Yields:
        A ``collections.Counter`` ``{name: traces inside the block}``, filled when the block ends (0 for a
        name not traced).
    """
    start, counts = collections.Counter(_TRACES), collections.Counter()
    try:
        yield counts
    finally:
        counts.update({k: v - start[k] for k, v in _TRACES.items() if v > start[k]})


__all__ = ["count_traces", "note_trace", "trace_counts"]
