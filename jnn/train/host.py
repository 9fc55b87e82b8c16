"""The host side of a run, shared by ``fit`` and ``sweep``: run compiled epochs until every run stopped.

One epoch is one dispatch of a jitted function that returns the new state and a small summary array
(epoch, status and the epoch's metrics, per member); the host reads the summary back (which blocks,
so one dispatch is in flight at a time), updates the progress display and calls back for checkpoints.
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from jnn.train.state import Status


def progress_bar(enabled: bool | None, total: int):
    """A tqdm bar over epochs, or None (default: on when stderr is a terminal and ``CI`` is unset)."""
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("CI")
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", leave=True, dynamic_ncols=True)


def run_epochs(
    epoch_fn,
    state,
    data,
    *,
    keys,
    max_epochs: int,
    progress: bool | None = None,
    log_every: int = 0,
    stop_at_epoch: int | None = None,
    on_epoch=None,
):
    """Call ``epoch_fn(state, data) -> (state, summary)`` until every member has stopped (or a pause).

    Args:
        epoch_fn: the compiled epoch; ``summary`` is ``[2 + len(keys)]`` (one run) or ``[M, 2 + len(keys)]``
            (a sweep): epoch, status, then the epoch's value of each history key.
        state: the starting state (one run, or M stacked members).
        data: the epoch's arrays.
        keys: the history keys in the summary.
        max_epochs: the epoch budget (for the progress bar).
        progress: progress bar on/off (None: automatic).
        log_every: print a line every k epochs (0: never).
        stop_at_epoch: pause once a run has completed this many epochs in total.
        on_epoch: ``on_epoch(state, epoch)`` after each epoch (e.g. to save a checkpoint).

    Returns:
        ``(state, epoch_seconds, paused)``.
    """
    epochs, status = (np.atleast_1d(np.asarray(a)) for a in jax.device_get((state.epoch, state.status)))
    members = epochs.size
    bar = progress_bar(progress, max_epochs)
    if bar is not None:
        bar.update(int(epochs.max()))
    seconds, paused, done = [], False, 0
    while np.any(status == Status.RUNNING):
        if stop_at_epoch is not None and int(epochs.max()) >= stop_at_epoch:
            paused = True
            break
        t = time.perf_counter()
        state, summary = epoch_fn(state, data)
        summary = np.asarray(jax.device_get(summary)).reshape(members, 2 + len(keys))
        seconds.append(time.perf_counter() - t)
        done += 1
        epochs, status = summary[:, 0].astype(int), summary[:, 1].astype(int)
        running = int(np.sum(status == Status.RUNNING))
        last = dict(zip(keys, summary[0, 2:].tolist()))
        if bar is not None:
            shown = (
                {"running": running}
                if members > 1
                else {k: f"{float(v):.4f}" for k, v in last.items() if k != "learning_rate"}
            )
            bar.set_postfix(shown, refresh=False)
            bar.update(1)
        epoch = int(epochs.max())
        if log_every and (epoch % log_every == 0 or running == 0):
            if members > 1:
                line = f"epoch {done:4d}  members running {running}/{members}"
            else:
                line = f"epoch {epoch:4d}  " + "  ".join(
                    f"{k} {float(last[k]):.4f}" for k in keys if k != "learning_rate"
                )
            _say(bar, line)
        if on_epoch is not None:
            on_epoch(state, epoch)
    if bar is not None:
        bar.close()
    return state, tuple(seconds), paused


def _say(bar, line: str) -> None:
    """Print a log line; through the bar's writer when a bar is shown, so the two never overwrite each other."""
    if bar is None:
        print(line, flush=True)
    else:
        bar.write(line)


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


__all__ = ["progress_bar", "run_epochs", "final_params"]
