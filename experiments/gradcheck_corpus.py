"""Planted gradient bugs in users' JAX code, each with its correct twin, checked by jnn.check_grads (fast and
full mode) and by jax.test_util.check_grads, in float64 and float32.

Usage:
    python experiments/gradcheck_corpus.py [--seeds 20] [--out runs/gradcheck_corpus]

The corpus is what ``tests/test_check_grads.py`` pins (every bug caught with its leaf named, every twin
passing). torch's gradcheck is not in the table: it checks torch functions, and these bugs live in JAX
``custom_vjp`` rules and hand-written JAX gradients. Writes results.json and table.md into --out.
"""

from __future__ import annotations

import argparse
import sys

import jax
import jax.numpy as jnp

import jnn


def _custom(fwd_fn, bwd_fn):
    """A custom_vjp function from its forward and (residuals, g) -> cotangents backward."""
    f = jax.custom_vjp(fwd_fn)
    f.defvjp(lambda *a: (fwd_fn(*a), a), bwd_fn)
    return f


def softplus_case(bug):
    sig = jax.nn.sigmoid
    act = _custom(jax.nn.softplus, lambda a, g: (g * (sig(-a[0]) if bug else sig(a[0])),))

    def f(p, x):
        return jnp.sum(act(x @ p["w"]) ** 2)

    return f, "args[0]['w']", {}


def l2_case(bug):
    def f(p):
        return sum(jnp.sum(w**2) for w in jax.tree.leaves(p))

    def grad(p):
        return jax.tree.map(lambda w: (1.0 if bug else 2.0) * w, p)

    return f, "args[0]['w']", {"grad": grad, "only_p": True}


def _layer_norm(eps=1e-2):
    def fwd(x):
        m = jnp.mean(x, -1, keepdims=True)
        v = jnp.mean((x - m) ** 2, -1, keepdims=True)
        return (x - m) / jnp.sqrt(v + eps)

    return fwd


def layer_norm_case(bug, missing="mean"):
    eps = 1e-2
    fwd = _layer_norm(eps)

    def bwd(a, g):
        x = a[0]
        m = jnp.mean(x, -1, keepdims=True)
        v = jnp.mean((x - m) ** 2, -1, keepdims=True)
        s = jnp.sqrt(v + (0.0 if bug and missing == "eps" else eps))
        xh = (x - m) / s
        gm = 0.0 if bug and missing == "mean" else jnp.mean(g, -1, keepdims=True)
        return ((g - gm - xh * jnp.mean(g * xh, -1, keepdims=True)) / s,)

    ln = _custom(fwd, bwd)

    def f(p, x):
        return jnp.sum(jnp.tanh(ln(x @ p["w"])) * p["v"][None, :])

    return f, "args[0]['w']", {}


def scatter_case(bug):
    idx = jnp.array([1, 3, 3, 0, 1, 3])

    def bwd(a, g):
        (table,) = a
        z = jnp.zeros_like(table)
        return ((z.at[idx].set(g) if bug else z.at[idx].add(g)),)

    lookup = _custom(lambda table: table[idx], bwd)

    def f(p, x):
        return jnp.sum(jnp.tanh(lookup(p["E"]) @ p["w"]) ** 2)

    return f, "args[0]['E']", {}


def leaky_case(bug):
    alpha = 0.1
    act = _custom(lambda z: jnp.where(z > 0, z, alpha * z),
                  lambda a, g: (g * jnp.where(a[0] > 0, 1.0, 0.0 if bug else alpha),))  # fmt: skip

    def f(p, x):
        return jnp.sum(act(x @ p["w"]) ** 2)

    return f, "args[0]['w']", {}


def cube_case(bug):
    sg = jax.lax.stop_gradient
    cube = _custom(lambda z: z**3, lambda a, g: (g * 3.0 * (sg(a[0]) if bug else a[0]) ** 2,))

    def f(p, x):
        return jnp.sum(cube(jnp.tanh(x @ p["w"])))

    return f, "args[0]['w']", {"order": 2}


def transpose_case(bug):
    def bwd(a, g):
        x, w = a
        return (g @ (w if bug else w.T), x.T @ g)

    linear = _custom(lambda x, w: x @ w, bwd)

    def f(p, x):
        return jnp.sum(jnp.tanh(linear(x, p["w"])) ** 2)

    return f, "args[1]", {"argnums": 1}


def vector_case(bug):
    fn = _custom(lambda z: jnp.sin(z) * z,
                 lambda a, g: (g * (jnp.cos(a[0]) if bug else jnp.cos(a[0]) * a[0] + jnp.sin(a[0])),))  # fmt: skip

    def f(p, x):
        return fn(x @ p["w"])  # a [batch, out] array: checked through random cotangents

    return f, "args[0]['w']", {}


CASES = {
    "custom_vjp softplus derivative": softplus_case,
    "L2 gradient missing its factor 2 (grad=)": l2_case,
    "layer norm backward missing -mean(g)": layer_norm_case,
    "layer norm backward missing eps": lambda bug: layer_norm_case(bug, "eps"),
    "scatter backward overwrites": scatter_case,
    "leaky ReLU backward loses alpha": leaky_case,
    "stop_gradient in a backward rule (2nd order)": cube_case,
    "input gradient missing a transpose": transpose_case,
    "vector output with a wrong VJP": vector_case,
}


def _inputs(seed, dtype):
    k = jax.random.split(jax.random.key(seed), 4)
    p = {"w": jax.random.normal(k[0], (6, 6), dtype) * 0.5, "v": jax.random.normal(k[1], (6,), dtype),
         "E": jax.random.normal(k[2], (5, 6), dtype)}  # fmt: skip
    x = jax.random.normal(k[3], (6, 6), dtype) - 0.3
    return p, x


def _run(name, bug, dtype, mode, seed=0, **kw):
    f, leaf, opts = CASES[name](bug)
    opts = {**opts, **kw}
    p, x = _inputs(seed, dtype)
    if opts.pop("only_p", False):
        return jnn.check_grads(f, {"w": p["w"]}, mode=mode, seed=seed, **opts), leaf
    return jnn.check_grads(f, p, x, mode=mode, seed=seed, **opts), leaf


def _jax_check(name, bug, dtype):
    """jax.test_util.check_grads on the same problem: True (passes), False (raises), None (cannot check)."""
    from jax.test_util import check_grads

    f, _, opts = CASES[name](bug)
    if "grad" in opts:
        return None  # it checks JAX's own derivative only, never a hand-written gradient function
    p, x = _inputs(0, dtype)
    args = (p, x) if opts.get("argnums") != 1 else (x,)
    fn = f if opts.get("argnums") != 1 else (lambda x_: f(p, x_))
    try:
        check_grads(fn, args, order=opts.get("order", 1), modes=["rev"])
        return True
    except AssertionError:
        return False


def main(argv=None) -> int:
    from _common import write_table

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=0,
                   help="also check every twin at seeds 0..N-1 (full mode float32, fast mode float64)")  # fmt: skip
    p.add_argument("--out", default="runs/gradcheck_corpus")
    a = p.parse_args(argv)
    if a.seeds < 0:
        print(f"gradcheck_corpus: error: --seeds must be an integer in [0, inf]; got {a.seeds}", file=sys.stderr)
        return 2
    rows = []
    for name in CASES:
        row = {"bug": name}
        if a.seeds:
            alarms = 0
            for seed in range(a.seeds):
                for mode, dtype in (("full", jnp.float32), ("fast", jnp.float64)):
                    with jax.enable_x64(dtype == jnp.float64):
                        alarms += not _run(name, False, dtype, mode, seed)[0].passed
            row[f"twin false alarms over {a.seeds} seeds × 2 modes"] = str(alarms)
        for dtype, tag in ((jnp.float64, "f64"), (jnp.float32, "f32")):
            with jax.enable_x64(dtype == jnp.float64):
                for mode in ("fast", "full"):
                    bad, leaf = _run(name, True, dtype, mode)
                    twin, _ = _run(name, False, dtype, mode)
                    caught = not bad.passed and bad.failed_leaves == [leaf]
                    row[f"jnn {mode} {tag}"] = ("caught" if caught else "MISSED") + (
                        "" if twin.passed else ", FALSE ALARM"
                    )
                jb, jt = _jax_check(name, True, dtype), _jax_check(name, False, dtype)
                row[f"jax.test_util {tag}"] = "n/a" if jb is None else (
                    ("caught" if jb is False else "MISSED") + ("" if jt else ", FALSE ALARM"))  # fmt: skip
        rows.append(row)
        print(row, flush=True)
    write_table(a.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
