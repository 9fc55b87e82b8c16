"""Mixed precision: float32 against TrainConfig(compute_dtype="bfloat16"), speed and accuracy, on this device.

Usage:
    python benchmarks/precision.py [--quick] [--out runs/bench_precision]

Workloads: MNIST-1D with the command line's default MLP (40-256-256-10, relu, keep_prob 0.9, SGD with momentum,
batch 100, a fixed budget of epochs, no early stopping), and a large synthetic teacher task (784-1024-1024-10,
batch 256) for speed. For each workload and dtype: the median steady epoch (the compile epoch left out) and, on
MNIST-1D, the test accuracy at the end of the budget. bfloat16 keeps float32 master params and optimiser state
(see jnn.train.precision). On a CPU without native bfloat16 arithmetic the low precision is emulated and may be
slower; on an accelerator with bfloat16 units it is the point. Writes results.json and table.md into --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import jax
import numpy as np
from _report import finish

import jnn
from jnn.data import Dataset


def teacher_data(n: int):
    """A 784-feature, 10-class synthetic task labelled by a random linear teacher plus noise."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 784), dtype=np.float32)
    w = rng.standard_normal((784, 10), dtype=np.float32) / np.sqrt(784)
    y = np.argmax(x @ w + 0.5 * rng.standard_normal((n, 10), dtype=np.float32), axis=1).astype(np.int32)
    return Dataset(x, y, num_classes=10)


def run(train, test, net, epochs: int, batch: int, dtype) -> dict:
    cfg = jnn.TrainConfig(max_epochs=epochs, early_stopping=None, batch_size=batch, compute_dtype=dtype)
    r = jnn.fit(train, cfg, task=net, callbacks=[jnn.Progress(bar=False)])
    out = {"epoch_ms": 1e3 * statistics.median(r.epoch_seconds[1:]), "epochs": len(r.history)}
    if test is not None:
        out["test_accuracy"] = float(jnn.evaluate(r.params, test, net)["accuracy"])
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="a smoke run: few epochs, small data")
    p.add_argument("--out", default="runs/bench_precision")
    a = p.parse_args(argv)
    device = jax.devices()[0]
    kind = getattr(device, "device_kind", str(device))
    print(f"precision benchmark on {kind}", flush=True)
    train, test = jnn.datasets.load("mnist1d")
    big = teacher_data(2048 if a.quick else 16384)
    loads = {
        "MNIST-1D 40-256-256-10 b100": (train, test, jnn.MLP(keep_prob=0.9), 3 if a.quick else 60, 100),
        "teacher 784-1024-1024-10 b256": (big, None, jnn.MLP(hidden=(1024, 1024), keep_prob=0.8), 3, 256),
    }
    res = {"device": kind, "workloads": {}}
    rows = ["| workload | float32 epoch | bfloat16 epoch | speed-up | float32 test acc | bfloat16 test acc |",
            "|---|---|---|---|---|---|"]  # fmt: skip
    for name, (tr, te, net, epochs, batch) in loads.items():
        got = {str(d): run(tr, te, net, epochs, batch, d) for d in (None, "bfloat16")}
        res["workloads"][name] = got
        f32, b16 = got["None"], got["bfloat16"]
        acc = lambda r: f"{r['test_accuracy']:.4f}" if "test_accuracy" in r else "-"
        rows.append(f"| {name} ({epochs} epochs) | {f32['epoch_ms']:.1f} ms | {b16['epoch_ms']:.1f} ms | "
                    f"{f32['epoch_ms'] / b16['epoch_ms']:.2f}× | {acc(f32)} | {acc(b16)} |")  # fmt: skip
        print(rows[-1], flush=True)
    table = f"device: {kind}\n\n" + "\n".join(rows)
    return finish(a.out, res, table)


if __name__ == "__main__":
    sys.exit(main())
