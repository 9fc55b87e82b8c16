"""Sweep throughput: M small models trained at once under jax.vmap vs the same M trained one after another.

Usage:
    python benchmarks/sweep.py [--members 32] [--epochs 10] [--out runs/bench_sweep]

Workload: MNIST-1D, 40-100-100-10 relu MLP, batch 100, dropout keep_prob 0.8, λ = 1e-4, SGD with
momentum, no early stopping (every member runs exactly --epochs epochs), members with distinct seeds
and learning rates. Two figures are printed:

- end to end: wall time of one ``jnn.sweep`` call vs M ``jnn.fit`` calls, each side from an empty compile cache
  (``jax.clear_caches()`` before it: on a CPU a sweep's members run the program a fit of their shape runs, so
  the side timed second would otherwise find it compiled);
- steady state: the per-epoch time after the first (compile) epoch, from the host wall times that
  ``SweepResult.epoch_seconds`` and ``FitResult.epoch_seconds`` record: one sweep epoch (all M members)
  vs the sum over the M sequential fits of their median epoch.

Then a "staggered stops" sweep: M members with learning rates spread over 0.001-0.3 (log scale) and early
stopping (patience 5, at most --stagger-epochs epochs), so that they stop at very different epochs. It is
timed as ``strategy="stacked"`` with re-packing (the running members gathered into a smaller batch; with
``"programs"``, the default on a CPU, a stopped member is never run) and without (a sweep folder keeps the batch
whole), both after a first run that compiled every program; the goal is a time within 1.3× of what the
needed member-epochs take: Σ epochs run by each member × (steady epoch of the full batch / M).

Last, the command line's default recipe (``jnn sweep`` on MNIST-1D: the default 40-256-256-10 MLP, at most 300
epochs with early stopping, patience 30) over --recipe-members members (seeds 0, 1, ... and keep_prob 0.7, 0.8,
0.9 in turn): one ``jnn.sweep`` call against the same members as ``jnn.fit`` calls one after another, end to end
(compiles, early stopping and all, each side from an empty compile cache), each member's stopping epoch printed
for both.

Writes a Markdown table and results.json into --out.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import jax
from _report import finish

import jnn
from jnn import Progress
from jnn.sweep import sweep, zipped

NET = jnn.MLP(hidden=(100, 100), keep_prob=0.8, l2=1e-4)
RECIPE = dict(batch_size=100, optimizer="momentum", early_stopping=None, val_fraction=0.1)


def staggered(train, m: int, max_epochs: int) -> dict:
    """The staggered-stops sweep, with and without re-packing (second runs: every batch size compiled)."""
    lrs = [float(0.001 * 300 ** (i / max(m - 1, 1))) for i in range(m)]
    cfg = jnn.TrainConfig(**{**RECIPE, "early_stopping": jnn.EarlyStopping(patience=5)}, max_epochs=max_epochs)
    axes = zipped(seed=list(range(m)), learning_rate=lrs)
    print(f"staggered stops: {m} members, learning rates {lrs[0]:g}-{lrs[-1]:g}, patience 5", flush=True)
    seconds, runs = {}, {}
    for label, repack in (("repack", True), ("plain", False)):
        with tempfile.TemporaryDirectory() as tmp:  # a sweep folder keeps the stacked batch whole
            folder = lambda n, r=repack, t=tmp: [] if r else [jnn.SweepFolder(Path(t) / n)]  # noqa: E731
            sweep(train, cfg, task=NET, strategy="stacked", callbacks=folder("a"), **axes)  # compiles every batch
            t0 = time.perf_counter()
            runs[label] = sweep(train, cfg, task=NET, strategy="stacked", callbacks=folder("b"), **axes)
            seconds[label] = time.perf_counter() - t0
        print(f"  {label}: {seconds[label]:.2f} s, members run {runs[label].pack_sizes}", flush=True)
    epochs = [r["epochs"] for r in runs["plain"].rows]
    assert epochs == [r["epochs"] for r in runs["repack"].rows]
    full_epoch = statistics.median(runs["plain"].epoch_seconds)  # every epoch computes all m members
    needed = sum(epochs) * full_epoch / m
    return {
        "members": m,
        "max_epochs": max_epochs,
        "stop_epochs": {"min": min(epochs), "max": max(epochs), "all": epochs},
        "member_epochs": sum(epochs),
        "full_batch_epoch_seconds": full_epoch,
        "needed_seconds": needed,
        "seconds": seconds,
        "over_needed": {k: v / needed for k, v in seconds.items()},
        "pack_sizes": list(runs["repack"].pack_sizes),
    }


def recipe(train, m: int) -> dict:
    """The default recipe's sweep of ``m`` members against their fits, end to end."""
    axes = zipped(seed=list(range(m)), keep_prob=[(0.7, 0.8, 0.9)[i % 3] for i in range(m)])
    cfg = jnn.TrainConfig()
    print(f"default recipe: {m} members over seed and keep_prob, max {cfg.max_epochs} epochs, patience 30", flush=True)
    jax.clear_caches()  # each side compiles its own program (see the module)
    t0 = time.perf_counter()
    swept = sweep(train, cfg, task=jnn.MLP(), callbacks=[Progress(bar=False)], **axes)
    sweep_s = time.perf_counter() - t0
    print(f"  sweep: {sweep_s:.2f} s, {swept.workers} threads", flush=True)
    jax.clear_caches()
    t0 = time.perf_counter()
    fits = [
        jnn.fit(train, jnn.TrainConfig(seed=s), task=jnn.MLP(keep_prob=kp), callbacks=[Progress(bar=False)])
        for s, kp in zip(axes["seed"], axes["keep_prob"])
    ]
    seq_s = time.perf_counter() - t0
    print(f"  sequential fits: {seq_s:.2f} s", flush=True)
    return {
        "members": m,
        "seconds": {"sweep": sweep_s, "sequential": seq_s},
        "speedup": seq_s / sweep_s,
        "threads": swept.workers,
        "stop_epochs": {"sweep": [r["epochs"] for r in swept.rows], "fits": [len(f.history) for f in fits]},
        "member_epochs": {"sweep": sum(r["epochs"] for r in swept.rows), "fits": sum(len(f.history) for f in fits)},
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--members", type=int, default=32)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--stagger-epochs", type=int, default=100)
    p.add_argument("--recipe-members", type=int, default=9, help="members of the default-recipe sweep (0: skip it)")
    p.add_argument("--out", default="runs/bench_sweep")
    a = p.parse_args(argv)
    if a.members < 1 or a.epochs < 1 or a.stagger_epochs < 1 or a.recipe_members < 0:
        print(
            "sweep.py: error: --members, --epochs and --stagger-epochs must be >= 1, --recipe-members >= 0",
            file=sys.stderr,
        )
        return 2
    train, _ = jnn.datasets.load("mnist1d")
    m, e = a.members, a.epochs
    axes = zipped(seed=list(range(m)), learning_rate=[0.01 + 0.01 * (i % 4) for i in range(m)])

    def run_sweep(epochs):
        return sweep(train, jnn.TrainConfig(**RECIPE, learning_rate=0.02, max_epochs=epochs), task=NET, **axes)

    print(
        f"sweep benchmark: {m} members, {e} epochs each, MNIST-1D 40-100-100-10, device {jax.devices()[0]}", flush=True
    )
    run_sweep(1)  # warm-up: imports, data cache
    jax.clear_caches()
    t0 = time.perf_counter()
    swept = run_sweep(e)
    sweep_e = time.perf_counter() - t0
    jax.clear_caches()
    t0 = time.perf_counter()
    fits = [
        jnn.fit(
            train,
            jnn.TrainConfig(**RECIPE, max_epochs=e, seed=axes["seed"][i], learning_rate=axes["learning_rate"][i]),
            task=NET,
            callbacks=[Progress(bar=False)],
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
            f"| {m} models × {e} epochs | sweep (1 compile) | sequential fits | speed-up |",
            "|---|---|---|---|",
            f"| end to end | {sweep_e:.2f} s | {seq_e:.2f} s | {seq_e / sweep_e:.2f}× |",
            f"| steady state, per epoch of all members | {sweep_epoch * 1e3:.1f} ms | {seq_epoch * 1e3:.1f} ms | "
            f"{seq_epoch / sweep_epoch:.2f}× |",
            f"| steady state, samples/s | {samples / sweep_epoch:,.0f} | {samples / seq_epoch:,.0f} | |",
        ]
    )
    res["staggered"] = staggered(train, m, a.stagger_epochs)
    st = res["staggered"]
    table += "\n\n" + "\n".join(
        [
            f"| staggered stops: {m} members, {st['member_epochs']} member-epochs (stops at epochs "
            f"{st['stop_epochs']['min']}-{st['stop_epochs']['max']}) | time | ÷ needed |",
            "|---|---|---|",
            f"| needed: member-epochs × full-batch epoch / {m} | {st['needed_seconds']:.2f} s | 1.00 |",
            f"| sweep, re-packing (members run {st['pack_sizes']}) | {st['seconds']['repack']:.2f} s | "
            f"{st['over_needed']['repack']:.2f} |",
            f"| sweep, all members to the end | {st['seconds']['plain']:.2f} s | {st['over_needed']['plain']:.2f} |",
        ]
    )
    if a.recipe_members:
        res["recipe"] = rc = recipe(train, a.recipe_members)
        table += "\n\n" + "\n".join(
            [
                f"| default recipe, {rc['members']} members (end to end) | time | member-epochs | speed-up |",
                "|---|---|---|---|",
                f"| sweep ({rc['threads']} threads) | {rc['seconds']['sweep']:.2f} s | {rc['member_epochs']['sweep']} "
                f"| {rc['speedup']:.2f}× |",
                f"| sequential fits | {rc['seconds']['sequential']:.2f} s | {rc['member_epochs']['fits']} | |",
            ]
        )
    return finish(a.out, res, table)


if __name__ == "__main__":
    sys.exit(main())
