"""Example checks for ``jnn gradcheck examples/my_grads.py:NAME`` (see the README's "Checking your own gradients").

Each function takes no arguments and returns ``(f, args)`` or ``(f, args, options)`` for ``jnn.check_grads``.
"""

import jax
import jax.numpy as jnp


@jax.custom_vjp
def layer_norm(x):
    """Layer normalisation over the last axis, ε = 1e-2, with a hand-written backward rule."""
    m = jnp.mean(x, -1, keepdims=True)
    return (x - m) / jnp.sqrt(jnp.mean((x - m) ** 2, -1, keepdims=True) + 1e-2)


def _fwd(x):
    return layer_norm(x), x


def _bwd_right(x, g):
    m = jnp.mean(x, -1, keepdims=True)
    s = jnp.sqrt(jnp.mean((x - m) ** 2, -1, keepdims=True) + 1e-2)
    xh = (x - m) / s
    return ((g - jnp.mean(g, -1, keepdims=True) - xh * jnp.mean(g * xh, -1, keepdims=True)) / s,)


def _bwd_wrong(x, g):  # forgets the −mean(g) term
    m = jnp.mean(x, -1, keepdims=True)
    s = jnp.sqrt(jnp.mean((x - m) ** 2, -1, keepdims=True) + 1e-2)
    xh = (x - m) / s
    return ((g - xh * jnp.mean(g * xh, -1, keepdims=True)) / s,)


layer_norm.defvjp(_fwd, _bwd_right)
wrong_layer_norm = jax.custom_vjp(layer_norm.fun)
wrong_layer_norm.defvjp(lambda x: (wrong_layer_norm(x), x), _bwd_wrong)


def _problem(norm):
    k = jax.random.split(jax.random.key(0), 3)
    params = {"w": jax.random.normal(k[0], (8, 16)) * 0.5, "v": jax.random.normal(k[1], (16,))}
    x = jax.random.normal(k[2], (32, 8))

    def loss(p, x):
        return jnp.mean(jnp.tanh(norm(x @ p["w"])) @ p["v"])

    return loss, (params, x)


def right():
    """A correct custom_vjp: passes."""
    return _problem(layer_norm)


def wrong():
    """The same layer with the −mean(g) term missing from its backward rule: fails, naming args[0]['w']."""
    return _problem(wrong_layer_norm)


def in_bfloat16():
    """The right layer computed in bfloat16: nothing wrong found, but inconclusive (no power at bfloat16)."""
    loss, (params, x) = _problem(layer_norm)
    return (lambda p, x: loss(jax.tree.map(lambda a: a.astype(jnp.bfloat16), p), x.astype(jnp.bfloat16))), (params, x)


def at_a_kink():
    """A relu layer checked in x where row 0 of x is 0: every relu of that row sits on its kink, so the 6
    entries of x's row 0 meet a kink at the point; each is judged again beside it (moved off the kink along
    its axis, the gradient recomputed there) and is right there; the check passes."""
    k = jax.random.split(jax.random.key(1), 2)
    w = jax.random.normal(k[0], (6, 4))
    x = jax.random.normal(k[1], (5, 6)).at[0].set(0.0)  # row 0 of x @ w is exactly 0

    def loss(w, x):
        return jnp.sum(jax.nn.relu(x @ w) * jnp.arange(1.0, 5.0)[None, :])

    return loss, (w, x), {"argnums": 1}


def in_a_scan():
    """The wrong layer norm applied at every step of a ``lax.scan`` (an RNN cell in a named scope): the
    operation is named inside the scan, with the first failing step."""
    k = jax.random.split(jax.random.key(2), 2)
    params = {"w": jax.random.normal(k[0], (16, 16)) / 4}
    xs = jax.random.normal(k[1], (4, 2, 16))

    def loss(p, xs):
        def cell(h, x):
            with jax.named_scope("cell"):
                h = wrong_layer_norm(jnp.tanh(h @ p["w"] + x))
            return h, None

        h, _ = jax.lax.scan(cell, jnp.zeros((2, 16)), xs)
        return jnp.sum(h * jnp.arange(16.0)[None, :])

    return loss, (params, xs)


def straight_through():
    """A straight-through estimator (the forward pass rounds, the gradient passes straight through): f is
    locally constant along w, so finite differences see 0; the report names the ``stop_gradient`` and
    ``round`` on w's path. Rerun with ``surrogate=["args[0]"]`` to mark the mismatch as intended."""
    w = jnp.linspace(-1.1, 0.9, 6)

    def loss(w):
        q = w + jax.lax.stop_gradient(jnp.round(w * 4) / 4 - w)
        return jnp.sum(jnp.arange(1.0, 7.0) * q**2)

    return loss, (w,)
