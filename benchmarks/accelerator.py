"""Accelerator benchmark: jnn.fit vs hand-written raw JAX on whatever device JAX finds, in one command.

Usage:
    python benchmarks/accelerator.py [--quick] [--rounds 3] [--out runs/bench_accelerator]
    bash benchmarks/accelerator.sh [--quick]          # the same under an 8-minute deadline

Installs nothing: it runs on the jax/jaxlib already there and names the device it finds (``device_kind``).
Workloads (SGD, dropout keep 0.8, λ = 1e-4, relu, softmax cross-entropy, no validation, full batches only):

- ``large b256``: 784-1024-1024-10 on a synthetic teacher task, batch 256;
- ``large b4096``: the same net and data, batch 4096;
- ``small b100``: MNIST-1D 40-100-100-10, batch 100.

Stacks: ``jnn.fit`` (median steady epoch of a fresh fit, the compile epoch left out), ``raw JAX A`` (a jitted
step called per minibatch from Python) and ``raw JAX B`` (one jitted ``lax.scan`` per epoch), interleaved
over ``--rounds`` rounds; the ratio column is jnn.fit's speed over raw JAX B in the same round (median).
Peak memory per stack is measured in a fresh process (device ``peak_bytes_in_use`` on a GPU/TPU, resident
memory growth on CPU). Then the 32-member sweep vs 32 sequential fits and the staggered-stops sweep with and
without re-packing (``benchmarks/sweep.py``; at most 100 epochs, 10 with ``--quick``), and a random search of 16
MNIST-1D members trained to the end and with successive halving, its members spread over every device
(``benchmarks/search.py``; 4 members with ``--quick``). Writes
``results.json`` and ``table.md`` (naming the card) into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
from _report import save_report
from throughput import matmul_peak, peak_memory, raw_stacks, reset_peak_memory, run_fit

import jnn

STACKS = ("jnn.fit", "raw JAX A (jit per step)", "raw JAX B (scan epoch)")


def workloads(quick: bool, accelerator: bool) -> dict:
    """The three workloads; the large data set grows on an accelerator so that an epoch is measurable."""
    rng = np.random.default_rng(0)
    n = 4096 if quick else (131072 if accelerator else 16384)
    d, c = 784, 10
    x = rng.standard_normal((n, d), dtype=np.float32)
    teacher = rng.standard_normal((d, c), dtype=np.float32) / np.sqrt(d)
    y = np.argmax(x @ teacher + 0.5 * rng.standard_normal((n, c), dtype=np.float32), axis=1).astype(np.int32)
    train, _ = jnn.datasets.load("mnist1d")
    e = 2 if quick else 5
    large = dict(sizes=(784, 1024, 1024, 10), lr=0.05, x=x, y=y, epochs=e)
    return {
        "large b256": {**large, "batch": 256},
        "large b4096": {**large, "batch": 4096 if not quick else 1024, "lr": 0.2},
        "small b100": dict(sizes=(40, 100, 100, 10), batch=100, lr=0.1, x=train.x, y=train.y, epochs=3 * e),
    }


def _device() -> dict:
    dev = jax.devices()[0]
    return {"platform": dev.platform, "kind": getattr(dev, "device_kind", str(dev)), "count": jax.device_count(),
            "jax": jax.__version__}  # fmt: skip


def _peak_memory_case(name: str, stack: str, quick: bool) -> dict:
    """Peak memory of two epochs of one stack, in this (fresh) process."""
    dev = jax.devices()[0]
    wl = workloads(quick, dev.platform != "cpu")[name]
    jax.numpy.zeros(1).block_until_ready()
    base = reset_peak_memory()  # data generation does not count
    if stack == "jnn.fit":
        run_fit(jnn.Dataset(wl["x"], wl["y"], 10), wl, 2)
    else:
        fn = raw_stacks(wl)[stack]
        fn()
        fn()
    return peak_memory(base)


def _time_workload(name: str, wl: dict, rounds: int) -> dict:
    ds = jnn.Dataset(wl["x"], wl["y"], 10)
    e = wl["epochs"]
    samples = (wl["x"].shape[0] // wl["batch"]) * wl["batch"]
    raw = raw_stacks(wl)
    for fn in raw.values():
        fn()  # compile, untimed
    per_epoch = {k: [] for k in STACKS}
    for r in range(rounds):
        order = list(STACKS)
        random.Random(r).shuffle(order)
        for label in order:
            if label == "jnn.fit":
                fitted = run_fit(ds, wl, e + 1)
                per_epoch[label].append(statistics.median(fitted.epoch_seconds[1:]))
            else:
                raw[label]()
                t0 = time.perf_counter()
                for _ in range(e):
                    raw[label]()
                per_epoch[label].append((time.perf_counter() - t0) / e)
        print(f"  {name} round {r + 1}/{rounds}: "
              + ", ".join(f"{k} {samples / v[-1]:,.0f}/s" for k, v in per_epoch.items()), flush=True)  # fmt: skip
    ratio = statistics.median(a / b for a, b in zip(per_epoch["raw JAX B (scan epoch)"], per_epoch["jnn.fit"]))
    return {"samples_per_epoch": samples, "batch": wl["batch"],
            "samples_per_s": {k: samples / statistics.median(v) for k, v in per_epoch.items()},
            "jnn_vs_raw_scan": ratio}  # fmt: skip


def _table(res: dict) -> str:
    dev = res["device"]
    lines = [f"Device: {dev['kind']} ({dev['platform']}, {dev['count']} device(s)), jax {dev['jax']}; float32 "
             f"matmul peak {res['matmul_gflops']:.1f} GFLOP/s.", "",
             "| workload | jnn.fit samples/s | raw JAX A (per step) | raw JAX B (scan epoch) | jnn.fit / raw B | "
             "peak memory jnn.fit / raw B |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, w in res["workloads"].items():
        s = w["samples_per_s"]
        mem = w.get("peak_memory", {})
        raw_b = mem.get("raw JAX B (scan epoch)")
        ratio_mem = f"{mem['jnn.fit'] / 2**20:.0f} / {raw_b / 2**20:.0f} MB" if raw_b is not None else "-"
        lines.append(f"| {name} | {s['jnn.fit']:,.0f} | {s['raw JAX A (jit per step)']:,.0f} | "
                     f"{s['raw JAX B (scan epoch)']:,.0f} | {w['jnn_vs_raw_scan']:.2f}× | {ratio_mem} |")  # fmt: skip
    sw = res.get("sweep")
    if sw:
        lines += ["", f"| sweep of {sw['members']} small models × {sw['epochs']} epochs | sweep | sequential | "
                      "speed-up |", "|---|---|---|---|",
                  f"| end to end | {sw['end_to_end_seconds']['sweep']:.2f} s | "
                  f"{sw['end_to_end_seconds']['sequential']:.2f} s | {sw['end_to_end_speedup']:.2f}× |",
                  f"| steady epoch | {sw['steady_epoch_seconds']['sweep'] * 1e3:.1f} ms | "
                  f"{sw['steady_epoch_seconds']['sequential'] * 1e3:.1f} ms | "
                  f"{sw['steady_speedup']:.2f}× |"]  # fmt: skip
        st = sw.get("staggered")
        if st:
            lines += ["", f"| staggered stops: {st['members']} members, stops at epochs {st['stop_epochs']['min']}-"
                          f"{st['stop_epochs']['max']} | time | ÷ needed |", "|---|---|---|",
                      f"| needed (member-epochs at the full batch's rate) | {st['needed_seconds']:.2f} s | 1.00 |",
                      f"| re-packing (batch sizes {st['pack_sizes']}) | {st['seconds']['repack']:.2f} s | "
                      f"{st['over_needed']['repack']:.2f} |",
                      f"| all members to the end | {st['seconds']['plain']:.2f} s | "
                      f"{st['over_needed']['plain']:.2f} |"]  # fmt: skip
    se = res.get("search")
    if se:
        lines += ["", f"| random search, {se['samples']} MNIST-1D members (benchmarks/search.py) | member-epochs | "
                      "wall time | strategy | devices used |", "|---|---|---|---|---|"]  # fmt: skip
        lines += [f"| {k} | {r['member_epochs']} | {r['seconds']:.1f} s | {r['strategy']} | {r['devices_used']} |"
                  for k, r in se["runs"].items()]  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small data and budgets (a smoke test on CPU)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--members", type=int, default=32, help="members of the sweep comparison")
    p.add_argument("--out", default="runs/bench_accelerator")
    p.add_argument("--mem", nargs=2, metavar=("WORKLOAD", "STACK"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.mem:
        print(json.dumps(_peak_memory_case(*a.mem, a.quick)))
        return 0
    if a.rounds < 1 or a.members < 1:
        print("accelerator.py: error: --rounds and --members must be >= 1", file=sys.stderr)
        return 2
    t_start = time.perf_counter()
    dev = _device()
    print(f"accelerator benchmark on {dev['kind']} ({dev['platform']}), jax {dev['jax']}", flush=True)
    res = {"device": dev, "quick": a.quick, "matmul_gflops": matmul_peak(), "workloads": {}}
    for name, wl in workloads(a.quick, dev["platform"] != "cpu").items():
        res["workloads"][name] = w = _time_workload(name, wl, a.rounds)
        w["peak_memory"] = {}
        for stack in (STACKS[0], STACKS[2]):
            out = subprocess.run([sys.executable, __file__, "--mem", name, stack, *(["--quick"] if a.quick else [])],
                                 capture_output=True, text=True, timeout=600)  # fmt: skip
            if out.returncode != 0:
                print(out.stderr[-2000:], file=sys.stderr)
                return 1
            w["peak_memory"][stack] = json.loads(out.stdout.strip().splitlines()[-1])["peak_bytes"]
    import sweep as sweep_bench  # benchmarks/sweep.py

    sweep_out = Path(a.out) / "sweep"
    epochs = 2 if a.quick else 10
    stagger = 10 if a.quick else 100
    if sweep_bench.main(["--members", str(a.members), "--epochs", str(epochs), "--stagger-epochs", str(stagger),
                         "--out", str(sweep_out)]) != 0:  # fmt: skip
        return 1
    res["sweep"] = json.loads((sweep_out / "results.json").read_text())
    import search as search_bench  # benchmarks/search.py: the members spread over every device

    search_out = Path(a.out) / "search"
    budget = ["--quick"] if a.quick else ["--samples", "16", "--max-epochs", "40", "--patience", "5",
                                          "--rung-epochs", "3"]  # fmt: skip
    if search_bench.main([*budget, "--no-fresh", "--out", str(search_out)]) != 0:
        return 1
    res["search"] = json.loads((search_out / "results.json").read_text())
    res["seconds"] = time.perf_counter() - t_start
    table = _table(res)
    print(table)
    print(f"results in {save_report(a.out, res, table)} ({res['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
