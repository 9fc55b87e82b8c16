"""Callback overhead: a fit with a hook every 2 epochs vs a plain fit of the same epochs.

Usage:
    python benchmarks/callbacks.py [--epochs 20] [--repeats 5] [--out runs/bench_callbacks] [--quick]

Workload: the default MNIST-1D run (``jnn.MLP()`` under ``jnn.TrainConfig()``) for exactly --epochs epochs (no early
stopping). Each variant is timed --repeats times after one warm-up fit that compiled everything; the median
wall time is reported:

- plain: ``jnn.fit(train, config)``;
- logs: a callback whose ``on_epoch_end`` reads every epoch's history row (no extra call boundary);
- every 2: a callback with ``needs = "params"`` and ``every = 2`` whose ``on_state`` reads the parameters'
  norm at every second epoch (calls end at each multiple of 2: 10 host round trips for 20 epochs);
- params every epoch: the same with ``needs = "params"`` alone (calls end at every epoch: 20 round trips);
- stop/resume: the route without callbacks, ``fit(stop_at_epoch=k)`` + ``fit(resume=True)`` every 2 epochs
  through a run folder (timed once).

The goal (issue 22): every 2 ≤ 1.1× plain. The same bits come out of every variant (checked). Writes a
Markdown table and results.json into --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from _report import save_report

import jnn
from jnn import Progress, RunFolder
from jnn.train import Interrupted


class Logs(jnn.Callback):
    """Reads every epoch's validation loss."""

    def __init__(self):
        self.seen = []

    def on_epoch_end(self, epoch, logs):
        self.seen.append(logs["val_loss"])


class Every2(jnn.Callback):
    """Reads the parameters' global norm at every second epoch."""

    needs = "params"
    every = 2

    def __init__(self):
        self.norms = []

    def on_state(self, epoch, state):
        self.norms.append(float(jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(state.params)))))


class EveryEpoch(Every2):
    """Reads the parameters' global norm at every epoch (``needs="params"`` alone: a keep-best-k on the host)."""

    every = 0


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def stop_resume(train, config, every: int):
    """The pre-callback route: stop_at_epoch + resume through a run folder every ``every`` epochs."""
    with tempfile.TemporaryDirectory() as d:
        for k in range(every, config.max_epochs + every, every):
            try:
                r = jnn.fit(
                    train,
                    config,
                    stop_at_epoch=min(k, config.max_epochs),
                    callbacks=[RunFolder(d, resume=k > every), Progress(bar=False)],
                )
            except Interrupted:
                continue
        return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", default="runs/bench_callbacks")
    p.add_argument("--quick", action="store_true", help="4 epochs, 2 repeats, no stop/resume (a smoke run)")
    a = p.parse_args(argv)
    if a.quick:
        a.epochs, a.repeats = 4, 2
    if a.epochs < 2 or a.repeats < 1:
        print("callbacks.py: error: --epochs must be >= 2 and --repeats >= 1", file=sys.stderr)
        return 2
    train, _ = jnn.datasets.load("mnist1d")
    config = jnn.TrainConfig(max_epochs=a.epochs, early_stopping=None)
    print(f"callback overhead: MNIST-1D default MLP, {a.epochs} epochs, device {jax.devices()[0]}", flush=True)
    ref = jnn.fit(train, config, callbacks=[Progress(bar=False)])  # warm-up: compiles every call length used below
    jnn.fit(train, config, callbacks=[Progress(bar=False), Every2()])
    jnn.fit(train, config, callbacks=[Progress(bar=False), EveryEpoch()])
    variants = {"plain": lambda: [], "logs": lambda: [Logs()], "every 2": lambda: [Every2()],
                "params every epoch": lambda: [EveryEpoch()]}  # fmt: skip
    seconds = {k: [] for k in variants}
    for _ in range(a.repeats):
        for name, make in variants.items():
            t, r = _timed(lambda make=make: jnn.fit(train, config, callbacks=[Progress(bar=False), *make()]))
            seconds[name].append(t)
            assert r.history["val_loss"] == ref.history["val_loss"], name
    med = {k: statistics.median(v) for k, v in seconds.items()}
    for k, v in med.items():
        print(f"  {k}: {v:.3f} s (median of {a.repeats}; {v / med['plain']:.3f}× plain)", flush=True)
    res = {
        "epochs": a.epochs,
        "repeats": a.repeats,
        "device": str(jax.devices()[0]),
        "seconds": seconds,
        "median_seconds": med,
        "ratio_to_plain": {k: v / med["plain"] for k, v in med.items()},
    }
    rows = [f"| {k} | {v:.3f} s | {v / med['plain']:.3f}× |" for k, v in med.items()]
    if not a.quick:
        t, r = _timed(lambda: stop_resume(train, config, 2))
        np.testing.assert_array_equal(r.history["val_loss"], ref.history["val_loss"])
        res["median_seconds"]["stop/resume"] = t
        res["ratio_to_plain"]["stop/resume"] = t / med["plain"]
        print(f"  stop/resume: {t:.3f} s ({t / med['plain']:.2f}× plain)", flush=True)
        rows.append(f"| stop/resume every 2 (no callbacks) | {t:.3f} s | {t / med['plain']:.2f}× |")
    table = "\n".join([f"| {a.epochs} epochs, MNIST-1D default MLP | wall time | vs plain |", "|---|---|---|", *rows])
    out = save_report(a.out, res, table)
    print(table)
    print(f"wrote {out / 'results.json'} and {out / 'table.md'}")
    ok = res["ratio_to_plain"]["every 2"] <= 1.1
    print(f"every-2 hook ≤ 1.1× plain: {'yes' if ok else 'NO'}")
    return 0 if ok or a.quick else 1


if __name__ == "__main__":
    sys.exit(main())
