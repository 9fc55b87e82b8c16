"""The cost of ReduceLROnPlateau and the best k epochs, both on device, against a plain fit's epoch time.

Usage:
    python benchmarks/keras_rules.py [--epochs 150] [--repeats 5] [--out runs/bench_keras_rules] [--quick]

Workload: the default MNIST-1D run (``jnn.MLP()`` under ``jnn.TrainConfig()``, 4,000 training rows, 40 minibatches
per epoch) for exactly --epochs epochs (no early stopping). Each variant is timed --repeats times, the variants
interleaved, after one warm-up fit of each that compiled everything; the median wall time per epoch is reported,
and the median over repeats of each variant's time over the plain fit's of the same repeat (paired, which cancels
the machine's drift):

- plain: ``jnn.fit(train, config)``;
- plateau: ``reduce_lr=jnn.ReduceLROnPlateau(factor=0.5, patience=2)`` (it fires on this run);
- best-3: ``best_checkpoints=jnn.BestCheckpoints(k=3)``;
- both: the two rules together;
- plain and both with a ``jnn.RunFolder``, at the default ``checkpoint_every=0`` (checkpoint and best-k files
  written once, at the end) and at ``checkpoint_every=10`` (the best-k files are written with each checkpoint, at
  those call boundaries, each time the k best changed);
- host best-3: what a host callback needs for the same job, ``needs="params"`` at every epoch (one compiled call
  per epoch, the params read back each time), for comparison.

The goal (issue 41): plateau, best-3 and both ≤ 1.05× plain per epoch, in memory and with a default run folder
(the cost of the compiled rules; writing more files more often costs what the writes cost, reported beside it).
Writes a Markdown table and results.json into --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time

import jax
from _report import save_report

import jnn
from jnn import Progress, RunFolder


class HostBest3(jnn.Callback):
    """Keeps the params of the 3 best epochs by val_loss on the host: the params at every epoch."""

    needs = "params"
    every = 0

    def __init__(self):
        self.kept, self.last = [], None

    def on_epoch_end(self, epoch, logs):
        self.last = (logs["val_loss"], epoch)

    def on_state(self, epoch, state):
        self.kept = sorted([*self.kept, (*self.last, jax.device_get(state.params))], key=lambda t: t[:2])[:3]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=150)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="runs/bench_keras_rules")
    p.add_argument("--quick", action="store_true", help="6 epochs, 1 repeat (a smoke run)")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs, a.repeats = 6, 1
    if a.epochs < 2 or a.repeats < 1:
        print("keras_rules.py: error: --epochs must be >= 2 and --repeats >= 1", file=sys.stderr)
        return 2
    train, _ = jnn.datasets.load("mnist1d")
    base = dict(max_epochs=a.epochs, early_stopping=None)
    plateau = jnn.ReduceLROnPlateau(factor=0.5, patience=2)
    best = jnn.BestCheckpoints(k=3)
    configs = {
        "plain": jnn.TrainConfig(**base),
        "plateau": jnn.TrainConfig(**base, reduce_lr=plateau),
        "best-3": jnn.TrainConfig(**base, best_checkpoints=best),
        "both": jnn.TrainConfig(**base, reduce_lr=plateau, best_checkpoints=best),
    }
    tmp = tempfile.TemporaryDirectory()
    n = [0]

    def folder():
        n[0] += 1
        return [RunFolder(f"{tmp.name}/run{n[0]}")]

    variants = {name: (cfg, lambda: []) for name, cfg in configs.items()}
    every10 = {k: dataclasses.replace(configs[k], checkpoint_every=10) for k in ("plain", "both")}
    variants["plain, run folder"] = (configs["plain"], folder)
    variants["both, run folder"] = (configs["both"], folder)
    variants["plain, run folder, checkpoint every 10"] = (every10["plain"], folder)
    variants["both, run folder, checkpoint every 10"] = (every10["both"], folder)
    variants["host best-3 (needs params every epoch)"] = (configs["plain"], lambda: [HostBest3()])
    print(f"on-device plateau and best-k: MNIST-1D default MLP, {a.epochs} epochs, device {jax.devices()[0]}",
          flush=True)  # fmt: skip
    for cfg, make in variants.values():  # warm-up: compiles every program and call length used below
        jnn.fit(train, cfg, callbacks=[Progress(bar=False), *make()])
    seconds = {k: [] for k in variants}
    reductions = None
    for _ in range(a.repeats):
        for name, (cfg, make) in variants.items():
            t0 = time.perf_counter()
            r = jnn.fit(train, cfg, callbacks=[Progress(bar=False), *make()])
            seconds[name].append((time.perf_counter() - t0) / len(r.history))
            if name == "plateau":
                rates = r.history["learning_rate"]
                reductions = sum(y < x for x, y in zip(rates, rates[1:]))
    tmp.cleanup()
    med = {k: statistics.median(v) for k, v in seconds.items()}
    base_of = {k: k.replace("both", "plain") if "run folder" in k else "plain" for k in med}
    # paired: each repeat's variant over the same repeat's plain fit (run next to it), then the median
    ratio = {k: statistics.median(t / b for t, b in zip(seconds[k], seconds[base_of[k]])) for k in med}
    for k, v in med.items():
        print(f"  {k}: {1e3 * v:.2f} ms/epoch (median of {a.repeats}; {ratio[k]:.3f}x {base_of[k]})", flush=True)
    print(f"  (the plateau rule reduced the rate {reductions} times in {a.epochs} epochs)")
    res = {"epochs": a.epochs, "repeats": a.repeats, "device": str(jax.devices()[0]), "seconds_per_epoch": seconds,
           "median_seconds_per_epoch": med, "ratio_to_plain": ratio, "plateau_reductions": reductions}  # fmt: skip
    rows = [f"| {k} | {1e3 * v:.2f} ms | {ratio[k]:.3f}× |" for k, v in med.items()]
    head = f"| {a.epochs} epochs, MNIST-1D default MLP | time per epoch | vs plain (same folder use, paired) |"
    table = "\n".join([head, "|---|---|---|", *rows])
    out = save_report(a.out, res, table)
    print(table)
    print(f"wrote {out / 'results.json'} and {out / 'table.md'}")
    checked = ["plateau", "best-3", "both", "both, run folder"]
    ok = all(ratio[k] <= 1.05 for k in checked)
    print(f"plateau, best-3 and both <= 1.05x plain per epoch: {'yes' if ok else 'NO'}")
    return 0 if ok or a.quick else 1


if __name__ == "__main__":
    sys.exit(main())
