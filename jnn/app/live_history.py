"""Live records of a run folder: ``history.csv`` appended and flushed every epoch, ``history.json``
rewritten (atomically, at most once a second and at the end), and optional TensorBoard event files.

``tail -f RUN/history.csv`` follows a running job; ``tensorboard --logdir RUN/tensorboard`` plots it.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

from jnn.app import atomic, history_files
from jnn.history import History, ordered

#: Seconds between two rewrites of ``history.json`` during a run (the CSV gets every epoch at once).
JSON_EVERY_S = 1.0


def _cell(v: float):
    return "" if math.isnan(v) else v


class LiveRecords:
    """Writes a run's history as it grows.

    Args:
        folder: the run folder.
        records: the host loop's ``{key: [values]}`` (read, never changed); rows already in it (a resumed
            run) are written at once.
        tensorboard: also write TensorBoard events to ``folder/tensorboard`` (needs ``tensorboardX``:
            ``pip install 'jnn[tensorboard]'``).

    Raises:
        ImportError: ``tensorboard=True`` without tensorboardX (before anything is written).
    """

    def __init__(self, folder, records: dict, *, tensorboard: bool = False):
        self.folder = Path(folder)
        self.records = records
        self.keys = ordered(records)
        self._tb = None
        fresh_tb = not (self.folder / "tensorboard").exists()
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter
            except ImportError:
                raise ImportError(
                    "tensorboard=True (--tensorboard) needs tensorboardX: pip install 'jnn[tensorboard]'"
                ) from None
            self._tb = SummaryWriter(str(self.folder / "tensorboard"), flush_secs=5)
        self._written = self._rewrite_csv()
        self._json_at = -math.inf
        if self._tb is not None and fresh_tb:  # a resumed run's earlier events are on disk already
            for e in range(self._written):
                self._event(e)
        self.write_json()

    def _rewrite_csv(self) -> int:
        history = History.from_records(self.records)
        history_files.save_csv(history, self.folder)
        return len(history)

    def _event(self, e: int) -> None:
        for k in self.keys:
            v = self.records[k][e]
            if not math.isnan(v):
                self._tb.add_scalar(k, v, e + 1)

    def update(self) -> None:
        """Append the epochs recorded since the last call (CSV row, flushed; TensorBoard scalars) and rewrite
        ``history.json`` if a second has passed."""
        n = len(self.records[self.keys[0]])
        if n > self._written:
            rows = io.StringIO()
            w = csv.writer(rows)
            for e in range(self._written, n):
                w.writerow([e + 1, *(_cell(float(self.records[k][e])) for k in self.keys)])
            if not atomic.append_text(self.folder / "history.csv", rows.getvalue()):
                self._rewrite_csv()  # something else than our file sits there: replace it, never write through it
            if self._tb is not None:
                for e in range(self._written, n):
                    self._event(e)
            self._written = n
        if time.monotonic() - self._json_at >= JSON_EVERY_S:
            self.write_json()

    def write_json(self) -> None:
        """Rewrite ``history.json`` atomically (a reader sees the old file or the new one)."""
        history_files.save_json(History.from_records(self.records), self.folder)
        self._json_at = time.monotonic()

    def close(self) -> None:
        """Write everything still pending and close the TensorBoard writer."""
        self.update()
        self.write_json()
        if self._tb is not None:
            self._tb.close()
            self._tb = None


__all__ = ["JSON_EVERY_S", "LiveRecords"]
