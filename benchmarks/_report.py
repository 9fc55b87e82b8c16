"""Results files of the benchmark scripts: ``results.json`` and a Markdown table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def save_report(out, results: dict, table: str) -> Path:
    """Write ``results.json`` and ``table.md`` (a benchmark's Markdown table) into ``out``; returns the folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=_plain))
    (out / "table.md").write_text(table + "\n")
    return out


def finish(out, results: dict, table: str) -> int:
    """Print a benchmark's table, write it with ``results.json`` into ``out`` (``save_report``), say where, and
    return the exit code 0."""
    print(table)
    folder = save_report(out, results, table)
    print(f"results in {folder}/results.json")
    return 0


def _plain(o):
    """NumPy scalars and arrays as plain JSON values."""
    if isinstance(o, (np.generic, np.ndarray)):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
