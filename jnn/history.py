"""Per-epoch metrics of a run (its files, ``history.json`` and ``history.csv``: ``jnn.app.history_files``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jnn.display import html_view, last_metrics, view


def ordered(keys) -> list[str]:
    """History keys in display order: ``train_loss``, ``train_*``, ``val_loss``, ``val_*``, the rest."""

    def rank(k: str):
        group = {"train_loss": 0, "val_loss": 2}.get(
            k, 1 if k.startswith("train_") else 3 if k.startswith("val_") else 4
        )
        return group, k

    return sorted(keys, key=rank)


@dataclass(frozen=True, repr=False)
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

    def __repr__(self) -> str:
        return view("History", self._items())

    def _repr_html_(self) -> str:
        return html_view("History", self._items())

    def _items(self) -> list[tuple[str, str]]:
        return [("epochs", str(len(self))), ("keys", ", ".join(self.metrics)), ("last epoch", last_metrics(self))]

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


__all__ = ["History", "ordered"]
