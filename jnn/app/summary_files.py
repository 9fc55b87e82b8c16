"""A sweep's summary by setting as files: ``summary.csv``, ``summary.md`` and ``summary.png`` (``jnn summarize``)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from jnn.app import atomic
from jnn.app.plots import PNG_METADATA
from jnn.results import Summary, summarize

#: The files ``save_summary`` writes.
SUMMARY_FILES = ("summary.csv", "summary.md", "summary.png")
#: The record of what ``save_summary`` wrote (each file's SHA-256): what makes a summary file jnn's own.
SUMMARY_RECORD = ".jnn-summary.json"


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


def save_summary(summary: Summary, folder, *, metric: str | None = None, overwrite: bool = False) -> list[Path]:
    """Write ``summary.csv`` (full precision), ``summary.md`` (mean ± std [interval]) and, when matplotlib is
    installed, ``summary.png`` (``metric``, default the first) into ``folder``, each atomically, and record
    what was written in ``.jnn-summary.json`` (each file's SHA-256).

    The folder is checked first (``check_summary_folder``): a ``jnn train`` run's folder is refused, a
    summary jnn wrote there before is replaced only with ``overwrite=True``, and a file of those names that jnn
    did not write (or that changed since) is never replaced.

    Returns:
        The paths written.

    Raises:
        ValueError: the folder is refused (nothing written).
    """
    folder = Path(folder)
    check_summary_folder(folder, overwrite=overwrite)
    folder.mkdir(parents=True, exist_ok=True)
    texts = {"summary.csv": summary.to_csv(), "summary.md": summary.to_markdown() + "\n"}
    written = [atomic.write_text(folder / name, text) for name, text in texts.items()]
    try:
        fig = summary.plot(metric)
    except ImportError:
        fig = None
    if fig is not None:
        with atomic.writing(folder / "summary.png") as fh:
            fig.savefig(fh, dpi=110, format="png", metadata=PNG_METADATA)
        written.append(folder / "summary.png")
    record = {p.name: _sha256(p) for p in written}
    atomic.write_text(folder / SUMMARY_RECORD, json.dumps(record, indent=2))
    return written


def check_summary_folder(folder, *, overwrite: bool = False, name: str = "--out") -> None:
    """Refuse a summary destination before any work, changing nothing.

    Refused: a folder that holds a ``jnn train`` run (``config.json``); a summary file (``summary.csv``,
    ``.md``, ``.png``) that jnn did not write, or that changed since it did (its SHA-256 differs from
    ``.jnn-summary.json``): never replaced; a summary jnn wrote, without ``overwrite``; a destination that
    is a link, a FIFO, a device or a folder.

    Raises:
        ValueError: naming ``name``, the file and what to do.
    """
    folder = Path(folder)
    atomic.check_folder_writable(folder, name)
    if not folder.is_dir():
        return
    if (folder / "config.json").is_file():
        raise ValueError(f"{name} {str(folder)!r} holds a jnn train run (config.json); a summary is not one of its "
                         "files: give another folder")  # fmt: skip
    try:
        record = json.loads((folder / SUMMARY_RECORD).read_text(encoding="utf-8"))
        record = record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        record = {}
    ours = []
    for fname in (*SUMMARY_FILES, SUMMARY_RECORD):
        path = folder / fname
        if not os.path.lexists(path):
            continue
        atomic.check_destination(path, name, links=False)
        if fname == SUMMARY_RECORD:
            continue
        if record.get(fname) != _sha256(path):
            raise ValueError(f"{name}: {str(path)!r} is not a file jnn wrote (or it changed since): jnn never "
                             "replaces it, even with --overwrite; move it or give another folder")  # fmt: skip
        ours.append(fname)
    if ours and not overwrite:
        raise ValueError(f"{name} {str(folder)!r} already holds a summary jnn wrote ({', '.join(ours)}); pass "
                         "--overwrite (overwrite=True) to replace it")  # fmt: skip


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def summarize_folder(folder, by, *, metrics=None, confidence: float = 0.95, out=None,
                     overwrite: bool = False) -> tuple[Summary, list[Path]]:  # fmt: skip
    """``jnn.results.summarize`` of the sweep in ``folder``, saved by ``save_summary`` into ``out``
    (default the sweep folder; ``overwrite``: replace a summary jnn wrote there). Returns the summary and the
    paths written."""
    dest = Path(folder if out is None else out)
    check_summary_folder(dest, overwrite=overwrite)  # before reading: a refused destination costs nothing
    rows, hyper = sweep_rows(folder)
    summary = summarize(rows, by, metrics=metrics, confidence=confidence, hyper_names=hyper)
    return summary, save_summary(summary, dest, overwrite=overwrite)


__all__ = ["SUMMARY_FILES", "SUMMARY_RECORD", "check_summary_folder", "save_summary", "summarize_folder",
           "sweep_rows"]  # fmt: skip
