"""Wide CSV files: reading, training and predicting must be linear in the number of columns.

Usage:
    python benchmarks/wide_csv.py [--columns 1000,10000,100000] [--rows 40] [--quick] [--out runs/bench_wide_csv]

For each width it writes a CSV of ``--rows`` rows × that many numeric feature columns plus a 0/1 target (random
normal features, a target from the sign of their sum), then, in this process:

- ``read``: ``jnn.app.tabular.read_table`` of the whole file (two streaming passes);
- ``train``: ``jnn train --data FILE --hidden 8 --max-epochs 2`` (CLI, in process), reading included;
- ``predict``: ``jnn predict RUN --data FILE`` (picks the model's columns by name: a dict lookup per column).

It prints seconds and microseconds per column for each step: linear scaling keeps µs/column flat as the width
grows 100× (the issue that asked for it: 100,000 columns took 153 s, quadratic in the columns). ``--quick``: 1,000
and 10,000 columns. Writes results.json and table.md into --out.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import finish


def write_csv(path: Path, columns: int, rows: int, seed: int = 0) -> None:
    """``rows`` × ``columns`` random normal features named f0…, and a 0/1 target ``y`` (sign of the row sum)."""
    x = np.random.default_rng(seed).normal(size=(rows, columns))
    y = (x.sum(axis=1) > 0).astype(int)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(",".join([f"f{j}" for j in range(columns)] + ["y"]) + "\n")
        for r, t in zip(x, y):
            fh.write(",".join(f"{v:.5f}" for v in r) + f",{t}\n")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cli(argv) -> None:
    from jnn.app.cli import main

    with contextlib.redirect_stdout(io.StringIO()):
        rc = main(argv)
    if rc != 0:
        raise SystemExit(f"jnn {' '.join(argv)} exited {rc}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--columns", default="1000,10000,100000", help="comma-separated widths")
    p.add_argument("--rows", type=int, default=40)
    p.add_argument("--quick", action="store_true", help="1,000 and 10,000 columns")
    p.add_argument("--out", default="runs/bench_wide_csv")
    a = p.parse_args(argv)
    widths = [1000, 10000] if a.quick else [int(c) for c in a.columns.split(",")]
    from jnn.app.tabular import read_table

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in widths:
            data, run = Path(tmp) / f"wide-{c}.csv", Path(tmp) / f"run-{c}"
            write_csv(data, c, a.rows)
            read = _timed(lambda: read_table(data, target="y"))  # noqa: B023
            train = _timed(lambda: _cli(["train", "--data", str(data), "--target", "y", "--hidden", "8",  # noqa: B023
                                         "--max-epochs", "2", "--batch-size", "16", "--out", str(run)]))  # fmt: skip  # noqa: B023
            predict = _timed(lambda: _cli(["predict", str(run), "--data", str(data), "--out",  # noqa: B023
                                           str(Path(tmp) / f"pred-{c}.csv")]))  # fmt: skip  # noqa: B023
            row = {"columns": c, "rows": a.rows, "read_s": read, "train_s": train, "predict_s": predict}
            rows.append(row)
            print(f"  {c:>7} columns: read {read:.2f} s, train {train:.2f} s, predict {predict:.2f} s "
                  f"({1e6 * train / c:.1f} µs/column to train)", flush=True)  # fmt: skip
    lines = ["| columns | rows | read (s) | µs/column | train incl. read (s) | µs/column | predict (s) | µs/column |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in rows:
        c = r["columns"]
        cells = [f"{c:,}", str(r["rows"])]
        for k in ("read_s", "train_s", "predict_s"):
            cells += [f"{r[k]:.2f}", f"{1e6 * r[k] / c:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return finish(a.out, {"rows": rows, "python": sys.version.split()[0]}, "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
