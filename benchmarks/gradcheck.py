"""Gradient checking at scale: jnn.check_grads (fast and full mode) vs jax.test_util.check_grads and torch's
gradcheck (fast_mode), on tanh-MLP losses of about 1e3 to 1e6 parameters in float64.

Usage:
    python benchmarks/gradcheck.py [--quick] [--out runs/bench_gradcheck]

Each case runs in its own subprocess, so that its peak memory (``ru_maxrss``) is its own; the table gives
the wall time of the check (compiles included) and the peak resident memory over the memory after building
the params, the data and one forward pass ("extra", in multiples of the params' size; it includes the
memory XLA takes to compile). For jnn, "XLA buffers" is XLA's own count for the largest compiled call of
the check (``CheckReport.buffer_bytes``: arguments + outputs + temporaries) less the params and one compiled
forward pass (its temporaries and output), in multiples of the params' size: the memory the algorithm holds.
The "planted" rows plant one wrong gradient entry at 1e6 parameters (the leaf and index fast mode
names) and a wrong custom_vjp tanh (the operation named, and the seconds spent naming it, the
op-localisation cost, out of the check's total). ``--quick`` runs the two smallest sizes only;
``--full-max`` caps the sizes checked in full mode (1e5 takes about a minute here). The float32 rows (1e6
and 1e7 parameters, x64 off as users train; ``--no-large`` leaves them out) time a passing and a failing
(one planted entry) fast-mode check beside jax.test_util; "× params' float64 bytes" is the extra peak
resident memory over 8 bytes per parameter. Writes results.json and table.md into --out.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time

from _report import save_report

SIZES = {"1e3": (30, 30), "1e4": (100, 100), "1e5": (300, 330), "1e6": (1000, 1000)}
#: float32 params (x64 off, as users train): the sizes of issue 36's memory target (≤ 3× the float64 params).
SIZES32 = {"1e6f32": (1000, 1000), "1e7f32": (3162, 3162)}
BATCH = 16


def _case(size: str, tool: str) -> dict:
    """Run one check in this process; returns its measurements."""
    import resource

    import jax

    if size not in SIZES32:
        jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    d, h = {**SIZES, **SIZES32}[size]
    k = jax.random.split(jax.random.key(0), 4)
    params = {"w1": jax.random.normal(k[0], (d, h)) / d**0.5, "b1": jnp.zeros(h),
              "w2": jax.random.normal(k[1], (h, 1)) / h**0.5, "b2": jnp.zeros(1)}  # fmt: skip
    x = jax.random.normal(k[2], (BATCH, d))
    y = jax.random.normal(k[3], (BATCH, 1))

    def loss(p):
        z = jnp.tanh(x @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]
        return jnp.mean((z - y) ** 2)

    n = sum(int(v.size) for v in jax.tree.leaves(params))
    float(loss(params))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    verdict, extra, buffers = None, "", None
    t0 = time.perf_counter()
    if tool in ("jnn-fast", "jnn-full", "jnn-fast-planted"):
        import jnn

        grad = None
        if tool == "jnn-fast-planted":

            def grad(p):  # noqa: E306 - one wrong entry in w1
                g = jax.grad(loss)(p)
                return {**g, "w1": g["w1"].at[d // 3, h // 2].mul(1.5)}

        r = jnn.check_grads(loss, params, grad=grad, mode="full" if tool == "jnn-full" else "fast")
        verdict = r.passed
        if r.buffer_bytes is not None:  # XLA's own count: the largest compiled call, less the params it reads
            m = jax.jit(loss).lower(params).compile().memory_analysis()
            forward = m.temp_size_in_bytes + m.output_size_in_bytes
            buffers = {"extra_mb": (r.buffer_bytes - 8 * n) / 2**20, "forward_mb": forward / 2**20,
                       "over_forward_x_params": (r.buffer_bytes - 8 * n - forward) / (8 * n)}  # fmt: skip
        if tool == "jnn-fast-planted":
            bad = [row for row in r.leaves if not row.passed]
            extra = (
                ", ".join(f"{row.path}{list(row.worst_index or [])}" for row in bad)
                + f" (planted [{d // 3}, {h // 2}])"
            )
    elif tool == "jnn-op-planted":
        import jnn

        @jax.custom_vjp
        def my_tanh(z):
            return jnp.tanh(z)

        my_tanh.defvjp(lambda z: (jnp.tanh(z), jnp.tanh(z)), lambda t, g: (g * (1 - t**2) * 1.5,))  # wrong ×1.5

        def op_loss(p):
            z = my_tanh(x @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]
            return jnp.mean((z - y) ** 2)

        r = jnn.check_grads(op_loss, params, mode="fast")  # localize="on_failure", the default
        verdict = r.passed
        ops = r.failed_operations
        extra = (f"planted ×1.5 in a custom_vjp tanh: names `{ops[0].name}` ({ops[0].kind}, {ops[0].source}); "
                 f"localisation {r.extra['localize_seconds']:.2f} s of the total"
                 if ops else "no operation named")  # fmt: skip
    elif tool == "jax.test_util":
        from jax.test_util import check_grads

        try:
            check_grads(loss, (params,), order=1, modes=["rev"])
            verdict = True
        except AssertionError:
            verdict = False
    elif tool.startswith("torch"):
        import torch

        tp = {k_: torch.tensor(jax.device_get(v), dtype=torch.float64, requires_grad=True) for k_, v in params.items()}
        tx, ty = torch.tensor(jax.device_get(x)), torch.tensor(jax.device_get(y))

        def tloss(w1, b1, w2, b2):
            return torch.mean((torch.tanh(tx @ w1 + b1) @ w2 + b2 - ty) ** 2)

        verdict = bool(torch.autograd.gradcheck(tloss, tuple(tp.values()), fast_mode=tool == "torch-fast"))
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"size": size, "params": n, "tool": tool, "seconds": seconds, "passed": verdict, "note": extra,
            "extra_mb": (peak - base) / 2**20, "extra_x_params": (peak - base) / (8 * n),
            "buffers": buffers}  # fmt: skip


def _code_spans(note: str) -> str:
    """Entry names (``args[0]['w1'][3, 4]``, ``[3, 4]``) in code spans, for a Markdown table (Markdown would
    read ``args[0]['w1']`` as a link reference)."""
    if "`" in note:
        return note
    return re.sub(r"(args\[\d+\](?:\['[^']*'\])*(?:\[\d+(?:, \d+)*\])?|\[\d+(?:, \d+)*\])", r"`\1`", note)


def _buffers(row) -> str:
    b = row.get("buffers")
    return "-" if not b else f"{b['over_forward_x_params']:.2f}× params"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the two smallest sizes only")
    p.add_argument("--no-large", action="store_true", help="leave out the float32 rows at 1e6 and 1e7")
    p.add_argument("--full-max", default="1e5", choices=list(SIZES), help="largest size for full-mode checks")
    p.add_argument("--out", default="runs/bench_gradcheck")
    p.add_argument("--case", nargs=2, metavar=("SIZE", "TOOL"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.case:
        print(json.dumps(_case(*a.case)))
        return 0
    try:
        import torch

        has_torch = True
    except ImportError:
        has_torch = False
    sizes = ["1e3", "1e4"] if a.quick else list(SIZES)
    plan = []
    for s in sizes:
        plan += [(s, "jnn-fast"), (s, "jax.test_util")]
        if float(s) <= float(a.full_max):
            plan.append((s, "jnn-full"))
        if has_torch:
            plan.append((s, "torch-fast"))
            if s in ("1e3", "1e4"):
                plan.append((s, "torch-full"))
    plan += [(sizes[-1], "jnn-fast-planted"), (sizes[-1], "jnn-op-planted")]
    if not (a.quick or a.no_large):
        for s in SIZES32:
            plan += [(s, "jnn-fast"), (s, "jnn-fast-planted"), (s, "jax.test_util")]
    found = f"torch {torch.__version__}" if has_torch else "torch not installed"
    print(f"gradcheck benchmark: tanh MLP losses, float64 (f32 rows: float32 params), batch {BATCH}; {found}",
          flush=True)  # fmt: skip
    rows = []
    for size, tool in plan:
        out = subprocess.run([sys.executable, __file__, "--case", size, tool], capture_output=True, text=True,
                             timeout=1800)  # fmt: skip
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
            return 1
        row = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"  {size:>4} {tool:<17} {row['seconds']:8.2f} s  passed={row['passed']}  extra {row['extra_mb']:.0f} MB "
              f"({row['extra_x_params']:.1f}x params) buffers {_buffers(row)} {row['note']}", flush=True)  # fmt: skip
    lines = [
        "| params | tool | seconds | verdict | extra peak RSS | × params' float64 bytes "
        "| XLA buffers (beyond params + forward) | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        dt = " (float32)" if r["size"] in SIZES32 else ""
        verdict, note = "pass" if r["passed"] else "FAIL", _code_spans(r["note"])
        lines.append(f"| {r['params']:,}{dt} | {r['tool']} | {r['seconds']:.2f} | {verdict} | "
                     f"{r['extra_mb']:.0f} MB | {r['extra_x_params']:.1f} | {_buffers(r)} | {note} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    print(f"results in {save_report(a.out, {'rows': rows, 'torch': has_torch}, table)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
