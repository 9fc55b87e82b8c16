"""A sweep's summary by setting as files: ``summary.csv``, ``summary.md`` and ``summary.png`` (``jnn summarize``)."""

from __future__ import annotations

import json
from pathlib import Path

from jnn.app import atomic
from jnn.results import Summary, summarize

#: The files :func:`save_summary` writes.
SUMMARY_FILES = ("summary.csv", "summary.md", "summary.png")


def sweep_rows(folder) -> tuple[list[dict], list[str]]:
    """The rows of the sweep saved in ``folder`` (its ``sweep.json``) and its hyperparameter names.

    Raises:
        ValueError: the folder holds no readable ``sweep.json`` with rows.
    """
    path = Path(folder) / "sweep.json"
    if not path.is_file():
        raise ValueError(f"SWEEP must be a sweep folder holding sweep.json; {str(folder)!r} has none")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        rows, hyper = record["rows"], list(record.get("hyper_names", []))
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{str(path)!r} is not a sweep record ({type(err).__name__}: {err})") from None
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{str(path)!r} holds no rows")
    return rows, hyper


def save_summary(summary: Summary, folder, *, metric: str | None = None) -> list[Path]:
    """Write ``summary.csv`` (full precision), ``summary.md`` (mean ± std [interval]) and, when matplotlib is
    installed, ``summary.png`` (``metric``, default the first) into ``folder``, each atomically.

    Returns:
        The paths written.
    """
    folder = Path(folder)
    written = [atomic.write_text(folder / "summary.csv", summary.to_csv()),
               atomic.write_text(folder / "summary.md", summary.to_markdown() + "\n")]  # fmt: skip
    try:
        fig = summary.plot(metric)
    except ImportError:
        return written
    with atomic.writing(folder / "summary.png") as fh:
        fig.savefig(fh, dpi=110, format="png")
    return [*written, folder / "summary.png"]


def summarize_folder(folder, by, *, metrics=None, confidence: float = 0.95, out=None) -> tuple[Summary, list[Path]]:
    """:func:`jnn.results.summarize` of the sweep in ``folder``, saved by :func:`save_summary` into ``out``
    (default the sweep folder). Returns the summary and the paths written."""
    rows, hyper = sweep_rows(folder)
    summary = summarize(rows, by, metrics=metrics, confidence=confidence, hyper_names=hyper)
    return summary, save_summary(summary, folder if out is None else out)


__all__ = ["SUMMARY_FILES", "save_summary", "summarize_folder", "sweep_rows"]
