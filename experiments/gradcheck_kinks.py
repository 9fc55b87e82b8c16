"""Kinks are not bugs: correct relu MLPs checked at random points (no false alarm), and the same models with a
gradient ×1.05 (caught), in full and fast mode, at batch 64 and 256.

Usage:
    python experiments/gradcheck_kinks.py [--seeds 20] [--quick] [--out runs/gradcheck_kinks]

Full mode on a 10-32-32-3 MLP (1,507 parameters, every coordinate), fast mode on 10-32-32-3 and on a
40-256-256-10 MLP (78,666 parameters). A relu net has about 1e4–1e5 kinks near any point; the finite
differences cross some of them, and ``jnn.check_grads`` must tell those from a wrong gradient. Writes
results.json and table.md into --out.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

import jnn


def relu_mlp(sizes, batch: int, seed: int):
    """``(loss, params, x, y)``: a relu MLP's softmax cross-entropy, params as ``[(w, b), ...]``, float32."""
    k = jax.random.split(jax.random.key(seed), len(sizes) + 2)
    params = [(jax.random.normal(k[i], (a, b)) * jnp.sqrt(2.0 / a), jax.random.normal(k[i], (b,)) * 0.1)
              for i, (a, b) in enumerate(zip(sizes, sizes[1:]))]  # fmt: skip
    x = jax.random.normal(k[-2], (batch, sizes[0]))
    y = jax.random.randint(k[-1], (batch,), 0, sizes[-1])

    def loss(params, x, y):
        h = x
        for i, (w, b) in enumerate(params):
            h = h @ w + b[None, :]
            h = jax.nn.relu(h) if i < len(params) - 1 else h
        return jnp.mean(jax.nn.logsumexp(h, -1) - jnp.take_along_axis(h, y[:, None], 1)[:, 0])

    return loss, params, x, y


def check(sizes, batch: int, mode: str, seed: int, factor: float = 1.0):
    """The report of one relu MLP at one random point (``factor``: the candidate is jax.grad × factor)."""
    loss, params, x, y = relu_mlp(sizes, batch, seed)
    grad = None if factor == 1.0 else (lambda p, x, y: jax.tree.map(lambda g: g * factor, jax.grad(loss)(p, x, y)))
    return jnn.check_grads(loss, params, x, y, mode=mode, seed=seed, grad=grad)


SETTINGS = [((10, 32, 32, 3), "full"), ((10, 32, 32, 3), "fast"), ((40, 256, 256, 10), "fast")]


def main(argv=None) -> int:
    from _common import write_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--quick", action="store_true", help="the 10-32-32-3 model at batch 64 only")
    ap.add_argument("--out", default="runs/gradcheck_kinks")
    a = ap.parse_args(argv)
    if a.seeds < 1:
        print(f"gradcheck_kinks: error: --seeds must be an integer in [1, inf]; got {a.seeds}", file=sys.stderr)
        return 2
    rows = []
    for sizes, mode in SETTINGS[:2] if a.quick else SETTINGS:
        for batch in (64,) if a.quick else (64, 256):
            t0 = time.perf_counter()
            right = [check(sizes, batch, mode, s) for s in range(a.seeds)]
            wrong = [check(sizes, batch, mode, s, 1.05) for s in range(a.seeds)]
            rows.append({"model": "-".join(map(str, sizes)), "mode": mode, "batch": batch,
                         "correct passed": f"{sum(r.passed for r in right)}/{a.seeds}",
                         "non-smooth probes": sum(l.nonsmooth for r in right for l in r.leaves),
                         "worst resolution": f"{max(r.resolution for r in right):.2e}",
                         "×1.05 caught": f"{sum(r.verdict == 'failed' for r in wrong)}/{a.seeds}",
                         "seconds": round(time.perf_counter() - t0, 1)})  # fmt: skip
            print(rows[-1], flush=True)
    write_table(a.out, rows, {"seeds": a.seeds})
    return 0


if __name__ == "__main__":
    sys.exit(main())
