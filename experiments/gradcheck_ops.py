"""Naming the wrong operation: functions where one operation's derivative is wrong (a custom_vjp or custom_jvp
rule, a named block used in several layers, a hand-written backward pass), each with its correct twin.

Usage:
    python experiments/gradcheck_ops.py [--cases N] [--out runs/gradcheck_ops]

For each case jnn.check_grads must fail and name the planted operation in ``report.failed_operations``
(innermost first); the twin must pass, and with ``localize="always"`` report no wrong operation. What
``tests/test_gradcheck_ops.py`` pins. Writes results.json and table.md into --out.
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp

import jnn


def _vjp(fwd_fn, bwd_fn, name):
    """A custom_vjp function called ``name`` from its forward and ``(residuals, g) -> cotangents`` backward."""
    fwd_fn.__name__ = fwd_fn.__qualname__ = name
    f = jax.custom_vjp(fwd_fn)
    f.defvjp(lambda *a: (fwd_fn(*a), a), bwd_fn)
    return f


def _mlp(act, p, x, scope=None):
    h = x
    for i, w in enumerate(p["ws"]):
        h = h @ w
        if scope is None:
            h = act(h)
        else:
            with jax.named_scope(f"{scope}{i}"):
                h = act(h)
    return jnp.sum(h**2)


def softplus_every_layer(bug):
    """A custom_vjp softplus whose backward uses sigmoid(-x), in all three layers."""

    def my_softplus(x):
        return jax.nn.softplus(x)

    act = _vjp(my_softplus, lambda a, g: (g * jax.nn.sigmoid(-a[0] if bug else a[0]),), "my_softplus")
    return (lambda p, x: _mlp(act, p, x)), "my_softplus", 3


def swish_custom_jvp(bug):
    """A custom_jvp swish whose tangent drops the x·σ'(x) term."""

    @jax.custom_jvp
    def my_swish(x):
        return x * jax.nn.sigmoid(x)

    @my_swish.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        s = jax.nn.sigmoid(x)
        return my_swish(x), t * (s if bug else s + x * s * (1 - s))

    return (lambda p, x: _mlp(my_swish, p, x)), "my_swish", 3


def named_block_stop_gradient(bug):
    """A named block ``normalize`` (jax.named_scope) that divides by a stop_gradient norm, used in each layer."""

    def normalize(h):
        n = jnp.sqrt(jnp.sum(h**2, -1, keepdims=True) + 1.0)
        return h / (jax.lax.stop_gradient(n) if bug else n)

    def f(p, x):
        h = x
        for w in p["ws"]:
            h = jnp.tanh(h @ w)
            with jax.named_scope("normalize"):  # adjacent blocks of one name would read as one operation
                h = normalize(h)
        return jnp.sum(h * jnp.arange(h.shape[-1])[None, :])

    return f, "normalize", 3


def jit_block_custom_jvp(bug):
    """A custom_jvp cube inside a jax.jit function ``block``: the rule says 2x² for 3x²."""

    @jax.custom_jvp
    def cube(x):
        return x**3

    cube.defjvp(lambda p, t: (p[0] ** 3, (2.0 if bug else 3.0) * p[0] ** 2 * t[0]))

    @jax.jit
    def block(h, w):
        return cube(jnp.tanh(h @ w))

    def f(p, x):
        h = x
        for w in p["ws"]:
            h = block(h, w)
        return jnp.sum(h)

    return f, "cube", 3


def dense_backward(bug):
    """A hand-written backward of a whole dense layer (custom_vjp): the bias gradient uses mean for sum."""

    def dense(x, w, b):
        return x @ w + b[None, :]

    def bwd(res, g):
        x, w, _ = res
        return g @ w.T, x.T @ g, (jnp.mean(g, 0) if bug else jnp.sum(g, 0))

    layer = _vjp(dense, bwd, "dense")

    def f(p, x):
        h = jnp.tanh(layer(x, p["ws"][0], p["b"]))
        return jnp.sum(jnp.tanh(h @ p["ws"][1]) ** 2)

    return f, "dense", 1


def layer_norm_in_named_blocks(bug):
    """A custom_vjp layer norm missing −mean(g) in its backward, inside named blocks ``block0``, ``block1``."""
    eps = 1e-2

    def layer_norm(x):
        m = jnp.mean(x, -1, keepdims=True)
        return (x - m) / jnp.sqrt(jnp.mean((x - m) ** 2, -1, keepdims=True) + eps)

    def bwd(a, g):
        x = a[0]
        m = jnp.mean(x, -1, keepdims=True)
        s = jnp.sqrt(jnp.mean((x - m) ** 2, -1, keepdims=True) + eps)
        xh = (x - m) / s
        gm = 0.0 if bug else jnp.mean(g, -1, keepdims=True)
        return ((g - gm - xh * jnp.mean(g * xh, -1, keepdims=True)) / s,)

    ln = _vjp(layer_norm, bwd, "layer_norm")

    def f(p, x):
        h = x
        for i, w in enumerate(p["ws"][:2]):
            with jax.named_scope(f"block{i}"):
                h = jnp.tanh(ln(h @ w))
        return jnp.sum(h * jnp.arange(h.shape[-1])[None, :])

    return f, "layer_norm", 2


def forward_only_rule(bug):
    """A custom_jvp rule JAX cannot transpose (sign·abs of the tangent): reverse mode falls back to forward."""

    @jax.custom_jvp
    def wave(x):
        return jnp.sin(x)

    wave.defjvp(lambda p, t: (jnp.sin(p[0]), (2.0 if bug else 1.0) * jnp.cos(p[0]) * jnp.sign(t[0]) * jnp.abs(t[0])))
    return (lambda p, x: _mlp(wave, p, x)), "wave", 3


def softmax_backward(bug):
    """A custom_vjp softmax whose backward forgets the −⟨g, s⟩ term."""

    def softmax(z):
        return jax.nn.softmax(z, -1)

    def bwd(a, g):
        s = jax.nn.softmax(a[0], -1)
        return (s * (g - (0.0 if bug else jnp.sum(g * s, -1, keepdims=True))),)

    sm = _vjp(softmax, bwd, "softmax")

    def f(p, x):
        att = sm(x @ p["ws"][0] @ x.T)
        return jnp.sum(jnp.tanh(att @ x @ p["ws"][1]) ** 2)

    return f, "softmax", 1


def matmul_second_input(bug):
    """A custom_vjp matmul whose weight cotangent is right and input cotangent misses a transpose."""

    def matmul(x, w):
        return x @ w

    def bwd(a, g):
        x, w = a
        return g @ (w if bug else w.T), x.T @ g

    mm = _vjp(matmul, bwd, "matmul")

    def f(p, x):
        h = jnp.tanh(x @ p["ws"][0])
        return jnp.sum(jnp.tanh(mm(h, p["ws"][1])) ** 2)

    return f, "matmul", 1


CASES = {
    "custom_vjp softplus in every layer": softplus_every_layer,
    "custom_jvp swish drops a term": swish_custom_jvp,
    "named block with a stray stop_gradient": named_block_stop_gradient,
    "custom_jvp inside a jax.jit block": jit_block_custom_jvp,
    "hand-written dense backward (bias)": dense_backward,
    "custom_vjp layer norm in named blocks": layer_norm_in_named_blocks,
    "custom_jvp rule without reverse mode": forward_only_rule,
    "custom_vjp softmax backward": softmax_backward,
    "custom_vjp matmul, input cotangent": matmul_second_input,
}


def inputs(seed: int = 0, width: int = 6):
    """Parameters ``{"ws": [3 × [width, width]], "b": [width]}`` and x ``[width, width]`` in float64."""
    k = jax.random.split(jax.random.key(seed), 5)
    ws = [jax.random.normal(k[i], (width, width), jnp.float64) / jnp.sqrt(width) for i in range(3)]
    x = jax.random.normal(k[3], (width, width), jnp.float64)
    return {"ws": ws, "b": jax.random.normal(k[4], (width,), jnp.float64) * 0.1}, x


def run(name: str, bug: bool, seed: int = 0, **kw):
    """``(report, expected op name, expected call sites)`` of case ``name`` (needs x64 on)."""
    f, op, calls = CASES[name](bug)
    p, x = inputs(seed)
    return jnn.check_grads(f, p, x, seed=seed, **kw), op, calls


def main(argv=None) -> int:
    from _common import write_table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=len(CASES), help=f"the first N cases (default all {len(CASES)})")
    ap.add_argument("--out", default="runs/gradcheck_ops")
    a = ap.parse_args(argv)
    if not 1 <= a.cases <= len(CASES):
        print(f"gradcheck_ops: error: --cases must be an integer in [1, {len(CASES)}]; got {a.cases}", file=sys.stderr)
        return 2
    rows = []
    with jax.enable_x64(True):
        for name in list(CASES)[: a.cases]:
            t0 = time.perf_counter()
            bad, op, calls = run(name, True)
            secs = time.perf_counter() - t0
            twin, _, _ = run(name, False, localize="always")
            named = bad.failed_operations[0] if bad.failed_operations else None
            rows.append({"case": name, "planted": op, "verdict": bad.verdict,
                         "named first": named.name if named else "-", "call sites": named.calls if named else 0,
                         "ops checked": len(bad.operations), "seconds": round(secs, 2),
                         "twin": twin.verdict + ("" if not twin.failed_operations else ", WRONG OP")})  # fmt: skip
            print(rows[-1], flush=True)
    write_table(a.out, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
