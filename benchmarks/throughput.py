"""Training throughput of ``jnn.fit`` against hand-written raw JAX, interleaved, on two workloads.

Usage:
    python benchmarks/throughput.py [--out runs/bench_throughput] [--rounds 3] [--cold-reps 2] [--quick]

Workloads (the method of ``shared/bench/peers.py``, mirrored here so the project stands alone):

- small: 40-100-100-10 on MNIST-1D (4000 examples), batch 100, 40 steps per epoch, SGD lr 0.1;
- large: 784-1024-1024-10 on 16384 synthetic examples (N(0, 1) inputs, labels from a random linear
  teacher), batch 256, 64 steps per epoch, SGD lr 0.05.

Both: relu, inverted dropout keep 0.8 after each hidden layer, mean softmax cross-entropy + 1e-4 Σ W²
(biases excluded), plain SGD. Stacks:

- ``jnn.fit``: the public path (``TrainConfig(..., early_stopping=None, val_fraction=0)``), one call
  of E + 1 epochs per round; its per-epoch time is the median of ``FitResult.epoch_seconds[1:]`` (host
  wall time per epoch, including the per-epoch read-back of the metrics);
- ``jnn.fit (rbg)``: the same with ``prng_impl="rbg"`` (another generator for permutations and masks);
- ``jnn.fit (check_finite=False)``: the same without the per-step NaN/inf check of every gradient leaf;
- ``jnn.fit (custom-model MLP)``: the same MLP written from scratch as a user's ``jnn.Task`` (params a
  list of ``(w, b)`` tuples, its own dropout, penalty and a ``draw`` giving a step's masks), through the
  same ``jnn.fit``; ``(custom-model MLP, no draw)`` is that task without ``draw`` (masks drawn inside
  ``apply`` at every step);
- raw JAX A: ``jax.jit`` of one SGD step (params and optimiser state donated), one call per minibatch
  from host NumPy batches;
- raw JAX B: one jitted epoch, ``lax.scan`` over minibatches gathered on device from a permutation drawn
  inside, one dispatch per epoch.

First epoch, three ways: ``cold``: each stack runs one epoch in a fresh Python process, ``--cold-reps``
times, timed from nothing built (the inputs already host arrays, the backend started) to the end of the
first epoch: parameter init, data placement, tracing, compiling and running it, for jnn.fit and raw JAX
alike; ``warm``: then, in the same process, a second run with another seed (jnn.fit: a new ``fit`` call;
raw JAX: new params through the same jitted functions); ``disk``: a fresh process whose programs come
from JAX's on-disk compilation cache (the command line's, ``jnn.app.cli.compile_cache_dir``) filled by an
earlier process. Compile overhead = cold first epoch − steady epoch. Peak memory of that process: the
device's ``peak_bytes_in_use`` on a GPU/TPU, the growth of peak resident memory on CPU.

Every round runs the stacks in a shuffled order after a short pause; figures are medians over rounds
and ratios are medians of same-round ratios. GFLOP/s counts 6 FLOPs per weight per sample; the peak is
the median float32 GFLOP/s of a jitted 2048³ ``jnp.dot``. Also measured: the hand-written vectorised
backprop under ``jit`` vs ``jax.grad`` (same network, batch, dropout), and evaluation throughput.

Writes ``results.json`` and ``table.md`` into --out and prints the table.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _report import save_report

import jnn
from jnn import Progress

PAUSE = 0.3


# ------------------------------------------------------------------------------------------------
# workloads


def workloads(quick: bool) -> dict:
    train, _ = jnn.datasets.load("mnist1d")
    rng = np.random.default_rng(0)
    n, d, c = (4096 if quick else 16384), 784, 10
    x = rng.standard_normal((n, d), dtype=np.float32)
    teacher = rng.standard_normal((d, c), dtype=np.float32) / np.sqrt(d)
    y = np.argmax(x @ teacher + 0.5 * rng.standard_normal((n, c), dtype=np.float32), axis=1).astype(np.int32)
    return {
        "small": dict(sizes=(40, 100, 100, 10), batch=100, lr=0.1, x=train.x, y=train.y, epochs=10 if quick else 20),
        "large": dict(sizes=(784, 1024, 1024, 10), batch=256, lr=0.05, x=x, y=y, epochs=2 if quick else 3),
    }


def n_weights(sizes) -> int:
    return sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


# ------------------------------------------------------------------------------------------------
# raw JAX references, written as a researcher would


def _raw_loss(params, x, y, key, keep=0.8, lam=1e-4):
    keys = jax.random.split(key, len(params) - 1)
    h = x
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = jax.nn.relu(h)
            h = jnp.where(jax.random.bernoulli(keys[i], keep, h.shape), h / keep, 0.0)
    ce = optax.softmax_cross_entropy_with_integer_labels(h, y).mean()
    return ce + lam * sum(jnp.sum(w * w) for w, _ in params)


def raw_stacks(wl: dict, seed: int = 0) -> dict:
    """The two raw JAX stacks as epoch functions; each draws its parameters on its first call (and again when
    called with ``fresh=True``: a second run in the same process, reusing the compiled functions)."""
    opt = optax.sgd(wl["lr"])
    init = jax.nn.initializers.lecun_normal()
    steps, batch = wl["x"].shape[0] // wl["batch"], wl["batch"]

    def fresh_state():
        keys = jax.random.split(jax.random.key(seed), len(wl["sizes"]))
        params = [
            (init(k, (a, b), jnp.float32), jnp.zeros((b,), jnp.float32))
            for k, a, b in zip(keys[1:], wl["sizes"][:-1], wl["sizes"][1:])
        ]
        return [params, opt.init(params), keys[0]]

    def train_step(params, opt_state, key, x, y):
        key, sub = jax.random.split(key)
        grads = jax.grad(_raw_loss)(params, x, y, sub)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, key

    def train_epoch(params, opt_state, key, x, y):
        key, k_perm, k_steps = jax.random.split(key, 3)
        idx = jax.random.permutation(k_perm, x.shape[0])[: steps * batch].reshape(steps, batch)

        def body(carry, ib):
            return train_step(*carry, x[ib], y[ib]), None

        (params, opt_state, _), _ = jax.lax.scan(body, (params, opt_state, k_steps), idx)
        return params, opt_state, key

    step = jax.jit(train_step, donate_argnums=(0, 1))
    epoch_fn = jax.jit(train_epoch, donate_argnums=(0, 1))
    rng = np.random.default_rng(seed)
    state_a, state_b, data_b = [], [], []

    def epoch_a(fresh: bool = False):
        if fresh or not state_a:
            state_a[:] = fresh_state()
        p, s, k = state_a
        perm = rng.permutation(wl["x"].shape[0])
        for i in range(steps):
            ib = perm[i * batch : (i + 1) * batch]
            p, s, k = step(p, s, k, wl["x"][ib], wl["y"][ib])
        jax.block_until_ready(p)
        state_a[:] = [p, s, k]

    def epoch_b(fresh: bool = False):
        if fresh or not state_b:
            state_b[:] = fresh_state()
            data_b[:] = [jnp.asarray(wl["x"]), jnp.asarray(wl["y"])]
        state_b[:] = list(epoch_fn(*state_b, *data_b))
        jax.block_until_ready(state_b[0])

    return {"raw JAX A (jit per step)": epoch_a, "raw JAX B (scan epoch)": epoch_b}


def custom_mlp(sizes, *, keep: float = 0.8, lam: float = 1e-4, with_draw: bool = True) -> jnn.Task:
    """The benchmark's MLP written from scratch as a user's Task (not jnn's MLP code)."""
    init_w = jax.nn.initializers.lecun_normal()
    widths = sizes[1:-1]

    def init(key):
        keys = jax.random.split(key, len(sizes) - 1)
        return [
            (init_w(k, (a, b), jnp.float32), jnp.zeros((b,), jnp.float32))
            for k, a, b in zip(keys, sizes[:-1], sizes[1:])
        ]

    def draw(key, hyper, batch):
        return [
            jax.random.bernoulli(jax.random.fold_in(key, i), hyper["keep_prob"], (batch, w))
            for i, w in enumerate(widths)
        ]

    def apply(params, x, *, key, train, hyper):
        masks = key if isinstance(key, list) else (draw(key, hyper, x.shape[0]) if train else None)
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b
            if i < len(params) - 1:
                h = jax.nn.relu(h)
                if train:
                    h = jnp.where(masks[i], h / hyper["keep_prob"], 0.0)
        return h

    def penalty(params, hyper):
        return hyper["l2"] * sum(jnp.sum(w * w) for w, _ in params)

    return jnn.Task(
        init,
        apply,
        loss="softmax",
        penalty=penalty,
        hyper={"l2": lam, "keep_prob": keep},
        draw=draw if with_draw else None,
    )


#: jnn.fit stacks: label -> TrainConfig options on top of the workload's (``task``: a custom-model Task).
FITS = {
    "jnn.fit": {},
    "jnn.fit (rbg)": {"prng_impl": "rbg"},
    "jnn.fit (check_finite=False)": {"check_finite": False},
    "jnn.fit (custom-model MLP)": {"task": "draw"},
    "jnn.fit (custom-model MLP, no draw)": {"task": "no draw"},
}
STACKS = (*FITS, "raw JAX A (jit per step)", "raw JAX B (scan epoch)")
#: Stacks whose first epoch is also timed from a filled on-disk compilation cache.
DISK_STACKS = ("jnn.fit", "raw JAX A (jit per step)", "raw JAX B (scan epoch)")


def reset_peak_memory() -> int:
    """Start measuring peak memory here: reset Linux's resident peak (VmHWM) to the current size and return
    the current resident size in bytes."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
    return rss("VmRSS")


def rss(field: str) -> int:
    """``VmRSS``/``VmHWM`` of this process in bytes (Linux), or the peak from getrusage elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory(base: int) -> dict:
    """The peak memory since ``reset_peak_memory`` returned ``base``: the device's ``peak_bytes_in_use`` on
    a GPU/TPU, else the growth of the resident peak over ``base``."""
    dev = jax.devices()[0]
    stats = dev.memory_stats() if dev.platform != "cpu" else None
    if stats and "peak_bytes_in_use" in stats:
        return {"peak_bytes": int(stats["peak_bytes_in_use"]), "what": "device peak_bytes_in_use"}
    return {"peak_bytes": rss("VmHWM") - base, "what": "peak RSS growth"}


def first_epochs(workload: str, stack: str, quick: bool) -> dict:
    """Run in a fresh process: seconds from nothing built to the end of the first epoch (parameter init, data
    placement, compile or load from the on-disk cache when ``JNN_CACHE_DIR`` is set, one epoch; the inputs
    are already host arrays), then the same for a second run with another seed in this process (``warm``:
    compiled programs reused), and the peak memory of both."""
    if os.environ.get("JNN_CACHE_DIR"):
        from jnn.app.cli import compile_cache_dir

        compile_cache_dir()  # the command line's persistent cache, for every stack alike
    wl = workloads(quick)[workload]
    ds = jnn.Dataset(wl["x"], wl["y"], 10)
    jnp.zeros(1).block_until_ready()  # start the backend outside the timing
    base = reset_peak_memory()
    t0 = time.perf_counter()
    if stack in FITS:
        run_fit(ds, wl, 1, FITS[stack])
        t1 = time.perf_counter()
        run_fit(ds, wl, 1, {**FITS[stack], "seed": 1})
    else:
        fn = raw_stacks(wl)[stack]
        fn()
        t1 = time.perf_counter()
        fn(fresh=True)
    t2 = time.perf_counter()
    return {"cold": t1 - t0, "warm": t2 - t1, **peak_memory(base)}


def cold_starts(workload: str, quick: bool, reps: int) -> dict:
    """``first_epochs`` of every stack, each in ``reps`` fresh processes (stacks interleaved), plus, for
    jnn.fit and the raw stacks, a fresh process that loads the programs from an on-disk cache filled by
    another one (``disk``). Medians: ``{stack: {"cold", "warm", "disk", "peak_bytes"}}``."""
    runs = {k: [] for k in STACKS}
    disk = {k: [] for k in DISK_STACKS}
    for r in range(reps):
        order = list(STACKS)
        random.Random(100 + r).shuffle(order)
        for stack in order:
            runs[stack].append(_child(workload, stack, quick))
            if stack in DISK_STACKS:
                with tempfile.TemporaryDirectory() as cache:
                    _child(workload, stack, quick, cache)  # fills the cache
                    disk[stack].append(_child(workload, stack, quick, cache)["cold"])
    out = {}
    for k, v in runs.items():
        out[k] = {m: statistics.median(x[m] for x in v) for m in ("cold", "warm", "peak_bytes")}
        out[k]["disk"] = statistics.median(disk[k]) if k in disk else None
        out[k]["memory_what"] = v[0]["what"]
    return out


def _child(workload: str, stack: str, quick: bool, cache: str | None = None) -> dict:
    cmd = [sys.executable, __file__, "--cold", workload, stack] + (["--quick"] if quick else [])
    env = {**os.environ, "JNN_COMPILE_CACHE": "1" if cache else "0", "JNN_CACHE_DIR": cache or ""}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def jnn_mlp(wl: dict) -> jnn.MLP:
    """The workload's network: relu, λ = 1e-4, inverted dropout with keep_prob 0.8."""
    return jnn.MLP(sizes=wl["sizes"], activation="relu", l2=1e-4, keep_prob=0.8)


def jnn_config(wl: dict, epochs: int, **options) -> jnn.TrainConfig:
    return jnn.TrainConfig(
        optimizer="sgd",
        learning_rate=wl["lr"],
        batch_size=wl["batch"],
        early_stopping=None,
        val_fraction=0.0,
        drop_last=True,
        max_epochs=epochs,
        **options,
    )


def run_fit(ds, wl, epochs, options: dict | None = None) -> jnn.FitResult:
    options = dict(options or {})
    custom = options.pop("task", None)
    if custom is None:
        r = jnn.fit(ds, jnn_config(wl, epochs, **options), task=jnn_mlp(wl), callbacks=[Progress(bar=False)])
    else:
        cfg = jnn.TrainConfig(
            optimizer="sgd",
            learning_rate=wl["lr"],
            batch_size=wl["batch"],
            early_stopping=None,
            val_fraction=0.0,
            drop_last=True,
            max_epochs=epochs,
            **options,
        )
        r = jnn.fit(ds, cfg, task=_custom_task(tuple(wl["sizes"]), custom == "draw"), callbacks=[Progress(bar=False)])
    jax.block_until_ready(r.params)
    return r


@functools.cache
def _custom_task(sizes: tuple, with_draw: bool) -> jnn.Task:
    """One task object per network, as a user's script holds one (fit reuses its compiled calls)."""
    return custom_mlp(sizes, with_draw=with_draw)


def matmul_peak(n: int = 2048, reps: int = 5) -> float:
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    dot = jax.jit(jnp.dot)
    dot(a, b).block_until_ready()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        dot(a, b).block_until_ready()
        ts.append(time.perf_counter() - t0)
    return 2.0 * n**3 / statistics.median(ts) / 1e9


# ------------------------------------------------------------------------------------------------


def bench_workload(name: str, wl: dict, rounds: int, peak: float, cold: dict) -> dict:
    ds = jnn.Dataset(wl["x"], wl["y"], 10)
    e = wl["epochs"]
    samples = (wl["x"].shape[0] // wl["batch"]) * wl["batch"]
    raw = {k: fn for k, fn in raw_stacks(wl).items() if k in STACKS}
    for fn in raw.values():
        fn()  # init and compile, untimed here (cold starts are timed in fresh processes)
    fits = FITS
    per_epoch = {k: [] for k in [*fits, *raw]}
    for r in range(rounds):
        order = [*fits, *raw]
        random.Random(r).shuffle(order)
        for label in order:
            time.sleep(PAUSE)
            if label in fits:
                fitted = run_fit(ds, wl, e + 1, fits[label])
                per_epoch[label].append(statistics.median(fitted.epoch_seconds[1:]))
            else:
                raw[label]()  # untimed: wake the thread pool
                t0 = time.perf_counter()
                for _ in range(e):
                    raw[label]()
                per_epoch[label].append((time.perf_counter() - t0) / e)
        print(
            f"  {name} round {r + 1}/{rounds}: "
            + ", ".join(f"{k} {samples / v[-1]:,.0f}/s" for k, v in per_epoch.items()),
            flush=True,
        )
    steady = {k: statistics.median(v) for k, v in per_epoch.items()}
    flops = 6 * n_weights(wl["sizes"])
    out = {"samples_per_epoch": samples, "epochs_per_timing": e, "rounds": rounds, "stacks": {}}
    for k, t in steady.items():
        sps = samples / t
        out["stacks"][k] = {
            "samples_per_s": sps,
            "gflops": sps * flops / 1e9,
            "fraction_of_peak": sps * flops / 1e9 / peak,
            "first_epoch_s": cold[k]["cold"],
            "first_epoch_overhead_s": cold[k]["cold"] - t,
            "first_epoch_warm_s": cold[k]["warm"],
            "first_epoch_disk_s": cold[k]["disk"],
            "peak_bytes": cold[k]["peak_bytes"],
            "memory_what": cold[k]["memory_what"],
        }
    raw_b = out["stacks"]["raw JAX B (scan epoch)"]
    for s in out["stacks"].values():
        s["overhead_vs_raw_scan"] = s["first_epoch_overhead_s"] / raw_b["first_epoch_overhead_s"]
        s["memory_vs_raw_scan"] = s["peak_bytes"] / raw_b["peak_bytes"]
    for label in fits:
        if label != "jnn.fit":  # same-round ratio to the built-in MLP: > 1 is faster
            ratios = [a / b for a, b in zip(per_epoch["jnn.fit"], per_epoch[label])]
            out["stacks"][label]["speed_vs_builtin"] = statistics.median(ratios)
        for ref in raw:
            ratios = [a / b for a, b in zip(per_epoch[ref], per_epoch[label])]
            out["stacks"][label][f"speedup_vs_{ref}"] = statistics.median(ratios)
    return out


def bench_backprop(peak: float) -> dict:
    """Hand-written vectorised backprop under jit vs jax.grad of the same loss (large net, batch 256)."""
    params = jnn.init_mlp(jax.random.key(0), [784, 1024, 1024, 10])
    x = jax.random.normal(jax.random.key(1), (256, 784))
    y = jax.random.randint(jax.random.key(2), (256,), 0, 10)
    kw = dict(loss="softmax", activation="relu", l2=1e-4, dropout=jnn.Dropout(0.8), train=True)
    hand = jax.jit(lambda p, k: jnn.backprop(p, x, y, key=k, **kw))
    auto = jax.jit(lambda p, k: jax.grad(jnn.regularized_loss)(p, x, y, key=k, **kw))
    key = jax.random.key(3)
    times = {"hand backprop (jit)": [], "jax.grad (jit)": []}
    fns = {"hand backprop (jit)": hand, "jax.grad (jit)": auto}
    for f in fns.values():
        jax.block_until_ready(f(params, key))
    for _ in range(5):
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(10):
                jax.block_until_ready(f(params, key))
            times[k].append((time.perf_counter() - t0) / 10)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "ms_per_call": {k: v * 1e3 for k, v in med.items()},
        "hand_over_grad_time": med["hand backprop (jit)"] / med["jax.grad (jit)"],
    }


def bench_eval(peak: float) -> dict:
    """Evaluation (forward, no dropout) throughput of the large net on 16384 examples via jnn.evaluate's step."""
    params = jnn.init_mlp(jax.random.key(0), [784, 1024, 1024, 10])
    x = jax.random.normal(jax.random.key(1), (16384, 784))
    f = jax.jit(lambda p, x: jnn.forward(p, x, activation="relu", dropout=jnn.Dropout(0.8), train=False))
    jax.block_until_ready(f(params, x))
    ts = []
    for _ in range(5):
        t0 = time.perf_counter()
        jax.block_until_ready(f(params, x))
        ts.append(time.perf_counter() - t0)
    sps = 16384 / statistics.median(ts)
    gflops = sps * 2 * n_weights([784, 1024, 1024, 10]) / 1e9
    return {"samples_per_s": sps, "gflops": gflops, "fraction_of_peak": gflops / peak}


def table(res: dict) -> str:
    lines = [
        f"Date {res['date']}, {res['machine']}, jax {res['jax']}, float32 matmul peak "
        f"{res['peak_gflops']:.1f} GFLOP/s (2048³ jnp.dot).",
        "",
        "| workload | stack | samples/s | GFLOP/s | of peak | first epoch cold / warm / disk (s) | compile overhead "
        "÷ raw B | peak memory (MB) ÷ raw B | jnn.fit speed-up |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, w in res["workloads"].items():
        for k, s in w["stacks"].items():
            sp = ", ".join(
                f"{v:.2f}× vs {kk[len('speedup_vs_raw JAX ') :].split(' (')[0]}"
                for kk, v in s.items()
                if kk.startswith("speedup_vs_")
            )
            disk = "–" if s["first_epoch_disk_s"] is None else f"{s['first_epoch_disk_s']:.2f}"
            lines.append(
                f"| {name} | {k} | {s['samples_per_s']:,.0f} | {s['gflops']:.1f} | {s['fraction_of_peak']:.2f} | "
                f"{s['first_epoch_s']:.2f} / {s['first_epoch_warm_s']:.2f} / {disk} | "
                f"{s['first_epoch_overhead_s']:.2f} s ÷ {s['overhead_vs_raw_scan']:.2f} | "
                f"{s['peak_bytes'] / 2**20:.0f} ÷ {s['memory_vs_raw_scan']:.2f} | {sp} |"
            )
    for name, w in res["workloads"].items():
        lines.append("")
        lines.append(
            f"{name}: speed relative to jnn.fit with the built-in MLP (same round): "
            + ", ".join(f"{k} {s['speed_vs_builtin']:.3f}" for k, s in w["stacks"].items() if "speed_vs_builtin" in s)
        )
    b = res["backprop"]
    lines += [
        "",
        f"Hand-written vectorised backprop under jit: {b['ms_per_call']['hand backprop (jit)']:.2f} ms per "
        f"call vs jax.grad {b['ms_per_call']['jax.grad (jit)']:.2f} ms (ratio {b['hand_over_grad_time']:.2f}; "
        "784-1024-1024-10, batch 256, dropout, L2).",
        f"Evaluation (forward, no dropout, 784-1024-1024-10): {res['eval']['samples_per_s']:,.0f} samples/s, "
        f"{res['eval']['gflops']:.1f} GFLOP/s ({res['eval']['fraction_of_peak']:.2f} of peak).",
    ]
    return "\n".join(lines)


def _select_stacks(chosen: set) -> None:
    """Keep only the ``chosen`` stacks (in their usual order) for this run."""
    global FITS, STACKS, DISK_STACKS
    FITS = {k: v for k, v in FITS.items() if k in chosen}
    STACKS = tuple(k for k in STACKS if k in chosen)
    DISK_STACKS = tuple(k for k in DISK_STACKS if k in chosen)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/bench_throughput")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="smaller large workload and budgets (smoke test)")
    p.add_argument("--workloads", default="small,large")
    p.add_argument("--cold-reps", type=int, default=2, help="fresh processes per stack for the first-epoch time")
    p.add_argument(
        "--stacks",
        default=None,
        help="comma-separated subset of the stacks (jnn.fit and raw JAX B always run); default: all",
    )
    p.add_argument("--cold", nargs=2, metavar=("WORKLOAD", "STACK"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.cold:  # child process of cold_starts
        print(json.dumps(first_epochs(*a.cold, a.quick)))
        return 0
    if a.stacks is not None:
        chosen = {s.strip() for s in a.stacks.split(",") if s.strip()} | {"jnn.fit", "raw JAX B (scan epoch)"}
        unknown = sorted(chosen - set(STACKS))
        if unknown:
            print(f"throughput.py: error: unknown stacks {unknown}; known: {list(STACKS)}", file=sys.stderr)
            return 2
        _select_stacks(chosen)
    names = [w for w in a.workloads.split(",") if w]
    if a.rounds < 1 or a.cold_reps < 1 or not names or any(n not in ("small", "large") for n in names):
        print(
            "throughput.py: error: --rounds and --cold-reps must be >= 1 and --workloads a subset of small,large",
            file=sys.stderr,
        )
        return 2
    t0 = time.perf_counter()
    peak = matmul_peak(1024 if a.quick else 2048, 3 if a.quick else 7)
    print(f"float32 matmul peak: {peak:.1f} GFLOP/s", flush=True)
    wls = workloads(a.quick)
    res = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.processor() or platform.machine()}, "
        f"{jax.device_count()} {jax.devices()[0].platform} device(s)",
        "jax": jax.__version__,
        "peak_gflops": peak,
        "quick": a.quick,
        "workloads": {},
    }
    for n in names:
        print(f"workload {n}: cold starts in fresh processes ...", flush=True)
        cold = cold_starts(n, a.quick, a.cold_reps)
        print("  first epoch cold/warm/disk (s): " + ", ".join(
            f"{k} {v['cold']:.2f}/{v['warm']:.2f}/{'-' if v['disk'] is None else format(v['disk'], '.2f')}"
            for k, v in cold.items()), flush=True)  # fmt: skip
        res["workloads"][n] = bench_workload(n, wls[n], a.rounds, peak, cold)
    res["backprop"] = bench_backprop(peak)
    res["eval"] = bench_eval(peak)
    res["seconds"] = time.perf_counter() - t0
    text = table(res)
    print(text)
    out = save_report(a.out, res, text)
    print(f"{res['seconds']:.0f} s; results in {out}/results.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
