"""A run's history on disk: ``history.json`` and ``history.csv``, written atomically, and read back."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from jnn.app import atomic
from jnn.history import History, ordered


def save_json(history: History, folder) -> Path:
    """Write ``history.json`` into ``folder`` atomically (temp file, then rename); NaN is written as null.

    Args:
        history: the ``jnn.History``.
        folder: an existing folder.

    Returns:
        The file's path.
    """
    clean = {k: [None if math.isnan(v) else v for v in vals] for k, vals in history.metrics.items()}
    return atomic.write_text(Path(folder) / "history.json", json.dumps({"epochs": len(history), **clean}, indent=2))


def save_csv(history: History, folder) -> Path:
    """Write ``history.csv`` (a header ``epoch,<keys>``, one row per epoch) into ``folder`` atomically; NaN is
    written as an empty cell.

    Returns:
        The file's path.
    """
    pc = Path(folder) / "history.csv"
    with atomic.writing(pc, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["epoch", *history.metrics])
        w.writeheader()
        for row in history.rows():
            w.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()})
    return pc


def load(folder) -> History:
    """Read ``history.json`` from a run folder (null read as NaN).

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
            x is None or (isinstance(x, (int, float)) and not isinstance(x, bool)) for v in lists.values() for x in v
        )
    )
    if not ok:
        raise ValueError(f"{str(path)!r} is not a jnn history (an object of equally long lists of numbers, "
                         "with train_loss)")  # fmt: skip
    return History({k: [math.nan if v is None else float(v) for v in lists[k]] for k in ordered(lists)})


__all__ = ["save_json", "save_csv", "load"]
