"""Sweep throughput: M small models trained at once under jax.vmap vs the same M trained one after another.

Usage:
    python benchmarks/sweep.py [--members 32] [--epochs 10] [--out runs/bench_sweep]

Workload: MNIST-1D, 40-100-100-10 relu MLP, batch 100, dropout keep_prob 0.8, λ = 1e-4, SGD with
momentum, no early stopping (every member runs exactly --epochs epochs), members with distinct seeds
and learning rates. Two figures are printed:

- end to end: wall time of one ``jnn.sweep`` call vs M ``jnn.fit`` calls (each fit compiles its epoch
  once, so this includes M compiles against 1);
- steady state: the per-epoch time after the first (compile) epoch, from the host wall times that
  ``SweepResult.epoch_seconds`` and ``FitResult.epoch_seconds`` record: one sweep epoch (all M members)
  vs the sum over the M sequential fits of their median epoch.

Writes a Markdown table and results.json into --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import jax
from _report import save_report

import jnn
from jnn.sweep import sweep

RECIPE = dict(
    hidden=(100, 100),
    batch_size=100,
    keep_prob=0.8,
    l2=1e-4,
    optimizer="momentum",
    early_stopping=False,
    val_fraction=0.1,
)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--out", default="runs/bench_sweep")
    a = p.parse_args(argv)
    if a.members < 1 or a.epochs < 1:
        print("sweep.py: error: --members and --epochs must be >= 1", file=sys.stderr)
        return 2
    train, _ = jnn.datasets.load("mnist1d")
    m, e = a.members, a.epochs
    axes = dict(seed=list(range(m)), learning_rate=[0.01 + 0.01 * (i % 4) for i in range(m)])

    def run_sweep(epochs):
        return sweep(train, jnn.TrainConfig(**RECIPE, learning_rate=0.02, max_epochs=epochs), **axes)

    print(
        f"sweep benchmark: {m} members, {e} epochs each, MNIST-1D 40-100-100-10, device {jax.devices()[0]}", flush=True
    )
    run_sweep(1)  # warm-up: imports, data cache
    t0 = time.perf_counter()
    swept = run_sweep(e)
    sweep_e = time.perf_counter() - t0
    t0 = time.perf_counter()
    fits = [
        jnn.fit(
            train,
            jnn.TrainConfig(**RECIPE, max_epochs=e, seed=axes["seed"][i], learning_rate=axes["learning_rate"][i]),
            progress=False,
        )
        for i in range(m)
    ]
    seq_e = time.perf_counter() - t0
    sweep_epoch = statistics.median(swept.epoch_seconds[1:]) if e > 1 else swept.epoch_seconds[0]
    seq_epoch = sum(statistics.median(f.epoch_seconds[1:]) if e > 1 else f.epoch_seconds[0] for f in fits)
    samples = 3600 * m
    res = {
        "members": m,
        "epochs": e,
        "device": str(jax.devices()[0]),
        "end_to_end_seconds": {"sweep": sweep_e, "sequential": seq_e},
        "end_to_end_speedup": seq_e / sweep_e,
        "steady_epoch_seconds": {"sweep": sweep_epoch, "sequential": seq_epoch},
        "steady_speedup": seq_epoch / sweep_epoch,
        "steady_samples_per_second": {"sweep": samples / sweep_epoch, "sequential": samples / seq_epoch},
    }
    table = "\n".join(
        [
            f"| {m} models × {e} epochs | sweep (vmap, 1 compile) | sequential fits | speed-up |",
            "|---|---|---|---|",
            f"| end to end | {sweep_e:.2f} s | {seq_e:.2f} s | {seq_e / sweep_e:.2f}× |",
            f"| steady state, per epoch of all members | {sweep_epoch * 1e3:.1f} ms | {seq_epoch * 1e3:.1f} ms | "
            f"{seq_epoch / sweep_epoch:.2f}× |",
            f"| steady state, samples/s | {samples / sweep_epoch:,.0f} | {samples / seq_epoch:,.0f} | |",
        ]
    )
    print(table)
    out = save_report(a.out, res, table)
    print(f"results in {out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
