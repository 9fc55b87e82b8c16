"""Training from a .npy file larger than memory should allow: peak memory and throughput against the run in memory.

Usage:
    python benchmarks/streaming.py [--rows 1400000] [--steps 300] [--quick] [--out runs/bench_streaming]

Writes a ``.npy`` of ``--rows`` × 784 float32 inputs (1.4M rows: 4.39 GB) chunk by chunk (never whole in memory)
with labels from a random linear teacher, then, each in a fresh process so that its peak resident memory is its
own:

- ``disk``: ``jnn.fit`` on ``Dataset(DiskArray(path), y)``: the 784-1024-1024-10 MLP (keep_prob 0.8), batch 256,
  ``max_steps=--steps`` (rounded up to whole chunks of steps), 0.2 % of the rows held out for validation; the
  minibatches are read from the file and streamed (``jnn.train.streaming``);
- ``memory``: the same model on the first 65,536 rows loaded into memory, two whole epochs (508 steps; with
  ``--quick``, 8,192 rows).

Each reports samples per second over the training loop (after a first short fit that compiles) and its peak
resident memory (``ru_maxrss``). The goals: the disk run's peak at most 1 GB plus the model's state, its
throughput at least 0.8x the run in memory. The file is deleted at the end unless ``--keep``. Writes
results.json and table.md into --out.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import finish

D, C, BATCH = 784, 10, 256


def write_npy(path: Path, rows: int, chunk: int = 65536) -> np.ndarray:
    """Write ``rows`` × 784 float32 teacher inputs to ``path`` in chunks; returns the int32 labels."""
    rng = np.random.default_rng(0)
    teacher = rng.standard_normal((D, C), dtype=np.float32) / np.sqrt(D)
    y = np.empty(rows, np.int32)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, {"descr": "<f4", "fortran_order": False, "shape": (rows, D)})
        for start in range(0, rows, chunk):
            n = min(chunk, rows - start)
            x = rng.standard_normal((n, D), dtype=np.float32)
            y[start : start + n] = np.argmax(x @ teacher + 0.5 * rng.standard_normal((n, C), dtype=np.float32), 1)
            fh.write(x.tobytes())
    return y


def child(mode: str, path: str, labels: str, steps: int, mem_rows: int) -> dict:
    """One measured run (in its own process): ``disk`` or ``memory``."""
    import jax

    import jnn
    from jnn.data import Dataset
    from jnn.disk import DiskArray

    y = np.load(labels)
    if mode == "disk":
        train = Dataset(DiskArray(path), y)
    else:
        train = Dataset(DiskArray(path).read(np.arange(mem_rows)), y[:mem_rows])
    net = jnn.MLP(hidden=(1024, 1024), keep_prob=0.8)
    base = dict(batch_size=BATCH, early_stopping=None, val_fraction=0.002 if mode == "disk" else 0.01)
    # Every step computed is counted: the disk run stops after whole chunks of steps (max_steps a multiple of the
    # chunk), the run in memory after whole epochs (an epoch in memory computes all its steps).
    budget = dict(max_epochs=1, max_steps=steps) if mode == "disk" else dict(max_epochs=2)
    first = dict(max_epochs=1, max_steps=steps) if mode == "disk" else dict(max_epochs=1)
    jnn.fit(train, jnn.TrainConfig(**base, **first), task=net, callbacks=[jnn.Progress(bar=False)])  # compiles
    t0 = time.perf_counter()
    r = jnn.fit(train, jnn.TrainConfig(**base, **budget), task=net, callbacks=[jnn.Progress(bar=False)])
    wall = time.perf_counter() - t0
    loop = sum(r.epoch_seconds)
    state_bytes = sum(a.nbytes for a in jax.tree.leaves((r.state.params, r.state.best_params, r.state.opt_state)))
    return {
        "mode": mode,
        "rows": len(train),
        "steps": int(r.state.step),
        "loop_seconds": loop,
        "wall_seconds": wall,
        "samples_per_s": int(r.state.step) * BATCH / loop,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "state_bytes": state_bytes,
        "train_loss": r.history["train_loss"][-1],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_400_000)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--quick", action="store_true", help="a smoke run: 12,000 rows, one chunk of steps, 8,192 in memory")
    p.add_argument("--keep", action="store_true", help="keep the .npy file")
    p.add_argument("--dir", default=None, help="where to write the file (default: a temporary folder)")
    p.add_argument("--out", default="runs/bench_streaming")
    p.add_argument("--child", nargs=5, metavar=("MODE", "PATH", "LABELS", "STEPS", "MEM_ROWS"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.child[2], int(a.child[3]), int(a.child[4]))))
        return 0
    rows, steps, mem_rows = (12_000, 20, 8192) if a.quick else (a.rows, a.steps, 65536)
    if rows < mem_rows + 1000 or steps < 1:
        print(f"streaming.py: error: --rows must be >= {mem_rows + 1000} and --steps >= 1", file=sys.stderr)
        return 2
    from jnn.train.streaming import CHUNK_BYTES

    k = max(1, CHUNK_BYTES // (BATCH * D * 4))  # steps per chunk read from disk
    steps = -(-steps // k) * k
    if steps * BATCH > rows * 0.99:
        print(f"streaming.py: error: {steps} steps of {BATCH} need more than {rows} rows", file=sys.stderr)
        return 2
    folder = Path(a.dir or tempfile.mkdtemp(prefix="jnn-stream-"))
    folder.mkdir(parents=True, exist_ok=True)
    path, labels = folder / "x.npy", folder / "y.npy"
    t0 = time.perf_counter()
    np.save(labels, write_npy(path, rows))
    size = path.stat().st_size
    print(f"wrote {path} ({size / 1e9:.2f} GB, {rows} x {D} float32) in {time.perf_counter() - t0:.1f} s", flush=True)
    res = {"rows": rows, "file_bytes": size, "steps": steps, "batch": BATCH, "runs": {}}
    try:
        for mode in ("disk", "memory"):
            cmd = [sys.executable, __file__, "--child", mode, str(path), str(labels), str(steps), str(mem_rows)]
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3000)
            if proc.returncode != 0:
                print(proc.stderr[-3000:], file=sys.stderr)
                return 1
            res["runs"][mode] = r = json.loads(proc.stdout.strip().splitlines()[-1])
            print(
                f"  {mode}: {r['samples_per_s']:,.0f} samples/s, peak RSS {r['peak_rss_bytes'] / 1e9:.2f} GB",
                flush=True,
            )
    finally:
        if not a.keep:
            path.unlink(missing_ok=True)
            labels.unlink(missing_ok=True)
    disk, mem = res["runs"]["disk"], res["runs"]["memory"]
    res["throughput_ratio"] = disk["samples_per_s"] / mem["samples_per_s"]
    res["disk_peak_over_state"] = disk["peak_rss_bytes"] - disk["state_bytes"]
    gb = lambda b: f"{b / 1e9:.2f} GB"
    table = "\n".join(
        [
            f"| 784-1024-1024-10, batch {BATCH}, {steps} steps | rows | samples/s | peak RSS | model state |",
            "|---|---|---|---|---|",
            f"| from disk ({gb(size)} .npy, streamed) | {disk['rows']:,} | {disk['samples_per_s']:,.0f} | "
            f"{gb(disk['peak_rss_bytes'])} | {disk['state_bytes'] / 1e6:.1f} MB |",
            f"| in memory | {mem['rows']:,} | {mem['samples_per_s']:,.0f} | {gb(mem['peak_rss_bytes'])} | "
            f"{mem['state_bytes'] / 1e6:.1f} MB |",
            f"| disk / memory | | {res['throughput_ratio']:.2f}x | | |",
        ]
    )
    return finish(a.out, res, table)


if __name__ == "__main__":
    sys.exit(main())
