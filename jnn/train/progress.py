"""The progress display of a run as a callback: a tqdm bar over epochs and log lines every k epochs.

``fit`` shows ``Progress()`` unless its ``callbacks`` hold one: a bar when stderr is a terminal or in a Jupyter
notebook (a widget with ``ipywidgets``), and ``CI`` is unset, no log lines.
``callbacks=[jnn.Progress(bar=False)]`` silences it; ``jnn.Progress(log_every=10)`` prints a line every 10
epochs::

    epoch   10  train_loss 0.9110  val_loss 0.9564  val_accuracy 0.6500  ...

A sweep builds one per shape group from its ``progress``/``log_every`` arguments (its lines count the members
still running). Lines go through the bar's writer when a bar is shown, so the two never overwrite each other;
the host loop's signal messages go through ``Progress.say`` for the same reason.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Sequence
from typing import Any

from jnn import _validate as V
from jnn.train.callbacks import Callback, RunInfo


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (IPython imported, with a kernel)."""
    ipython = sys.modules.get("IPython")
    try:
        shell = None if ipython is None else ipython.get_ipython()
    except Exception:  # an IPython too old or half imported: not a notebook we can draw in
        return False
    return getattr(shell, "kernel", None) is not None


def progress_bar(enabled: bool | None, total: int):
    """A tqdm bar over epochs, or None (default: on when stderr is a terminal or this is a Jupyter kernel, and
    ``CI`` is unset).

    In a notebook with ``ipywidgets`` installed (``pip install 'jnn[notebook]'``) the bar is a widget; without it,
    a text bar (never tqdm's "IProgress not found" warning). The bar's rate is the plain average since its last
    reset; ``Progress`` resets it after the first epoch, so the ETA leaves the compile out.
    """
    notebook = in_notebook()
    if enabled is None:
        enabled = (sys.stderr.isatty() or notebook) and not os.environ.get("CI")
    if not enabled:
        return None
    if notebook and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(total=total, unit="epoch", leave=True, dynamic_ncols=True, smoothing=0)


class Progress(Callback):
    """The progress bar and log lines of a run (see the module docstring).

    Args:
        bar: show a tqdm bar over epochs (None: when stderr is a terminal and ``CI`` is unset).
        log_every: print a line of the epoch's history row every k epochs, and after the last (0: never).

    Raises:
        TypeError, ValueError: ``bar`` not True/False/None, ``log_every`` not an int ≥ 0.
    """

    stops = False  # never asks for a stop

    def __init__(self, bar: bool | None = None, log_every: int = 0):
        if bar is not None and not isinstance(bar, bool):
            raise TypeError(f"bar must be True, False or None (automatic); got {bar!r}")
        V.check_int("log_every", log_every, low=0)
        self.bar, self.log_every = bar, log_every
        self._bar, self.members, self.keys, self.monitor = None, 1, (), None

    def on_train_begin(self, run: RunInfo) -> None:
        early = getattr(run.config, "early_stopping", None)
        self.start(run.max_epochs, run.initial_epoch, run.members, run.keys, None if early is None else early.monitor)
        if getattr(run, "cuts", "") and (self._bar is not None or self.log_every):
            self.say(f"compiled calls end where callbacks read the params: {run.cuts} (one host round trip each)")

    def start(
        self, max_epochs: int, initial_epoch: int, members: int, keys: Sequence[str], monitor: str | None
    ) -> None:
        """Open the display of a run of ``members`` runs (the bar shows ``monitor`` first)."""
        self.close()
        self.members, self.keys, self.monitor, self._finished = members, tuple(keys), monitor, 0
        self._bar = progress_bar(self.bar, max_epochs)
        if self._bar is not None:
            self._bar.update(int(initial_epoch))

    def row(self, done: int, epoch: int, running: int, last: dict) -> None:
        """After the ``done``-th epoch row of this display (the latest epoch ``epoch``; ``running`` members
        still running; ``last``: member 0's values). Called by the host loop."""
        if self._bar is not None:
            _show(self._bar, done, self.members, running, last, self.monitor)
        if self.log_every and (epoch % self.log_every == 0 or running == 0):
            if self.members > 1:
                line = f"epoch {done:4d}  members running {running}/{self.members}"
            else:
                line = f"epoch {epoch:4d}  " + "  ".join(
                    f"{k} {float(last[k]):.4f}" for k in self.keys if k != "learning_rate"
                )
            self.say(line)

    def member_done(self, member: int, epochs: int, status: int) -> None:
        """A sweep member stopped. Without a bar chosen automatically (stderr not a terminal: ``nohup``, SLURM
        logs) it gets one line, so a long sweep's log shows its progress; an explicit ``bar=False`` stays quiet."""
        self._finished = getattr(self, "_finished", 0) + 1
        if self._bar is None and self.bar is None:
            from jnn.train.state import STATUS

            self.say(f"member {member} finished after {epochs} epochs ({STATUS.get(status, status)}); "
                     f"{self._finished} of {self.members} finished")  # fmt: skip

    def say(self, line: str) -> None:
        """Print a line; through the bar's writer when a bar is shown."""
        if self._bar is None:
            print(line, flush=True)
        else:
            self._bar.write(line)

    def close(self) -> None:
        """Close the bar (a later ``start`` opens a new one). In a notebook the widget's final state is also
        printed as a line of text, which a saved notebook keeps (a widget's state is often not saved with it)."""
        if self._bar is not None:
            final = str(self._bar) if in_notebook() else None
            self._bar.close()
            self._bar = None
            if final:
                print(final, flush=True)

    def on_train_end(self, result: Any) -> None:
        self.close()

    def on_train_abort(self, error: BaseException) -> None:
        self.close()


def _show(bar, done: int, members: int, running: int, last: dict, monitor: str | None) -> None:
    """Update the bar: the monitored metric first (one run) or the members still running (a sweep)."""
    if members > 1:
        shown = {"running": running}
    else:
        order = ([monitor] if monitor in last else []) + [k for k in last if k not in (monitor, "learning_rate")]
        shown = {k: f"{float(last[k]):.4f}" for k in order[:3]}
    bar.set_postfix(shown, refresh=False)
    bar.update(1)
    if done == 1:  # the first epoch compiled: measure the rate (and the ETA) from here on
        bar.initial, bar.start_t = bar.n, bar._time()


__all__ = ["Progress", "in_notebook", "progress_bar"]
