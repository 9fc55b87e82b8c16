"""Per-epoch metrics of a run, saved as JSON and CSV."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Per-epoch metrics kept in the history buffers of a TrainState.
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate")


@dataclass(frozen=True)
class History:
    """Per-epoch metrics: ``{metric: [value per completed epoch]}`` (NaN where a metric is absent).

    Metrics: ``train_loss``, ``train_accuracy`` (mean over the epoch's minibatches, with dropout as
    trained), ``val_loss``, ``val_accuracy`` (end of epoch, no dropout) and ``learning_rate``.
    """

    metrics: dict

    @classmethod
    def from_state(cls, state) -> History:
        """Read the completed epochs out of a :class:`jnn.train.TrainState`'s buffers."""
        n = int(state.epoch)
        return cls({k: [float(v) for v in np.asarray(state.history[k][:n])] for k in METRICS})

    def __len__(self) -> int:
        return len(self.metrics["train_loss"])

    def __getitem__(self, name: str) -> list[float]:
        return self.metrics[name]

    def rows(self) -> list[dict]:
        """One dict per epoch: ``{"epoch": 1, "train_loss": ..., ...}`` (epochs counted from 1)."""
        return [{"epoch": i + 1, **{k: self.metrics[k][i] for k in METRICS}} for i in range(len(self))]

    def save(self, folder) -> tuple[Path, Path]:
        """Write ``history.json`` and ``history.csv`` into ``folder``; NaN is written as null / empty."""
        folder = Path(folder)
        clean = {k: [None if math.isnan(v) else v for v in vals] for k, vals in self.metrics.items()}
        pj, pc = folder / "history.json", folder / "history.csv"
        pj.write_text(json.dumps({"epochs": len(self), **clean}, indent=2))
        with open(pc, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["epoch", *METRICS])
            w.writeheader()
            for row in self.rows():
                w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        return pj, pc

    @classmethod
    def load(cls, folder) -> History:
        """Read ``history.json`` from a run folder."""
        d = json.loads((Path(folder) / "history.json").read_text())
        return cls({k: [math.nan if v is None else float(v) for v in d[k]] for k in METRICS})
