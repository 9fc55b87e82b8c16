"""Per-epoch metrics of a run, saved as JSON and CSV."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jnn import atomic


def ordered(keys) -> list[str]:
    """History keys in display order: ``train_loss``, ``train_*``, ``val_loss``, ``val_*``, the rest."""

    def rank(k: str):
        group = {"train_loss": 0, "val_loss": 2}.get(
            k, 1 if k.startswith("train_") else 3 if k.startswith("val_") else 4
        )
        return group, k

    return sorted(keys, key=rank)


@dataclass(frozen=True)
class History:
    """Per-epoch metrics: ``{key: [value per completed epoch]}`` (NaN where a metric is absent).

    Keys: ``train_loss`` and ``train_<metric>`` (mean over the epoch's minibatches, with dropout as
    trained), ``val_loss`` and ``val_<metric>`` (end of epoch, evaluation mode) and ``learning_rate``.
    """

    metrics: dict

    @classmethod
    def from_records(cls, records: dict) -> History:
        """A history of ``{key: [value per epoch]}`` as the host loop appends them (copied, keys ordered)."""
        return cls({k: [float(v) for v in records[k]] for k in ordered(records)})

    def arrays(self) -> dict:
        """``{key: float64 array}``, e.g. to store in a checkpoint (float32 values convert exactly)."""
        return {k: np.asarray(v, np.float64) for k, v in self.metrics.items()}

    def __len__(self) -> int:
        return len(self.metrics["train_loss"])

    def __getitem__(self, name: str) -> list[float]:
        return self.metrics[name]

    def __contains__(self, name: str) -> bool:
        return name in self.metrics

    @property
    def keys(self) -> list[str]:
        """The recorded keys, in display order."""
        return list(self.metrics)

    def rows(self) -> list[dict]:
        """One dict per epoch: ``{"epoch": 1, "train_loss": ..., ...}`` (epochs counted from 1)."""
        return [{"epoch": i + 1, **{k: v[i] for k, v in self.metrics.items()}} for i in range(len(self))]

    def save_json(self, folder) -> Path:
        """Write ``history.json`` into ``folder`` atomically (temp file, then rename); NaN is written as null."""
        folder = Path(folder)
        clean = {k: [None if math.isnan(v) else v for v in vals] for k, vals in self.metrics.items()}
        return atomic.write_text(folder / "history.json", json.dumps({"epochs": len(self), **clean}, indent=2))

    def save_csv(self, folder) -> Path:
        """Write ``history.csv`` into ``folder`` atomically; NaN is written as an empty cell."""
        pc = Path(folder) / "history.csv"
        with atomic.writing(pc, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=["epoch", *self.metrics])
            w.writeheader()
            for row in self.rows():
                w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
        return pc

    def save(self, folder) -> tuple[Path, Path]:
        """Write ``history.json`` and ``history.csv`` into ``folder``; NaN is written as null / empty."""
        return self.save_json(folder), self.save_csv(folder)

    @classmethod
    def load(cls, folder) -> History:
        """Read ``history.json`` from a run folder.

        Raises:
            ValueError: the file is not JSON or not a history (an object of equally long lists of numbers or
                nulls, with ``train_loss``), naming the file.
        """
        path = Path(folder) / "history.json"
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"{str(path)!r} cannot be read: {err}") from None
        lists = {k: v for k, v in d.items() if k != "epochs"} if isinstance(d, dict) else None
        ok = (
            lists is not None
            and isinstance(lists.get("train_loss"), list)
            and all(isinstance(v, list) and len(v) == len(lists["train_loss"]) for v in lists.values())
            and all(
                x is None or (isinstance(x, (int, float)) and not isinstance(x, bool))
                for v in lists.values()
                for x in v
            )  # fmt: skip
        )
        if not ok:
            raise ValueError(f"{str(path)!r} is not a jnn history (an object of equally long lists of numbers, "
                             "with train_loss)")  # fmt: skip
        return cls({k: [math.nan if v is None else float(v) for v in lists[k]] for k in ordered(lists)})
