"""The small tools of gradient checking: ``compare_grads`` (two given gradients, leaf by leaf, into a
``CheckReport``), ``finite_difference_grad``, the Taylor-remainder test and ``float64_mode``.

Check gradients in float64 (``float64_mode``): float32 finite differences are too noisy to tell a
wrong gradient from rounding.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jnn import _validate as V
from jnn.gradcheck.report import NONFINITE, OK, WRONG, CheckReport, LeafCheck, rel_err
from jnn.pytree import named_leaves
from jnn.types import PyTree


@contextlib.contextmanager
def float64_mode():
    """Run the enclosed code with JAX's 64-bit mode on; the previous setting is restored on exit.

    Example:
        >>> with jnn.float64_mode():
        ...     params = jnn.init_mlp(jax.random.key(0), [4, 3, 2], dtype="float64")
    """
    with jax.enable_x64(True):
        yield


def compare_grads(
    reference: PyTree,
    candidate: PyTree,
    *,
    rtol: float = 1e-6,
    atol: float | None = None,
    reference_name: str = "reference",
    candidate_name: str = "candidate",
) -> CheckReport:
    """Compare two gradient pytrees leaf by leaf (in float64 on the host).

    Args:
        reference: the trusted gradients (e.g. ``jax.grad`` or finite differences).
        candidate: the gradients to check; same tree structure and shapes.
        rtol: relative tolerance ≥ 0 (default 1e-6: central differences in float64 agree to about 1e-8).
        atol: absolute tolerance ≥ 0, a floor for entries near zero (default: 1e-8 × the largest |reference|
            entry of the whole tree, so that entries that cancel to nearly 0 do not fail a correct gradient).
        reference_name, candidate_name: labels for the table.

    Returns:
        A ``CheckReport`` of mode ``"compare"``: a leaf passes when every entry satisfies
        ``|c − r| ≤ atol + rtol·|r|`` (``numpy.allclose``); a NaN or inf on either side fails (status
        ``"non-finite"``, with a problem naming the side). Its verdict is ``"passed"`` or ``"failed"``;
        ``max_abs_err`` is over the finite pairs, ``max_rel_err`` is ``jnn.gradcheck.report.REL_ERR``
        (robust to entries that cancel to nearly 0; 0 when both are all zero).

    Raises:
        ValueError: on mismatched structures or shapes, empty trees, or negative tolerances.
    """
    rtol = V.check_real("rtol", rtol, low=0.0)
    ref_leaves = named_leaves(reference)
    cand_leaves = named_leaves(candidate)
    if not ref_leaves:
        raise ValueError(f"reference must hold at least one array; got {reference!r:.60}")
    if jax.tree_util.tree_structure(reference) != jax.tree_util.tree_structure(candidate):
        raise ValueError(
            "reference and candidate must have the same tree structure; got "
            f"{[p for p, _ in ref_leaves]} vs {[p for p, _ in cand_leaves]}"
        )
    refs = [(p, np.asarray(l, np.float64)) for p, l in ref_leaves]
    if atol is None:
        atol = 1e-8 * max(float(np.nanmax(np.abs(r), initial=0.0)) for _, r in refs)
    atol = V.check_real("atol", atol, low=0.0)
    rows, problems = [], []
    for (path, r), (_, c) in zip(refs, cand_leaves):
        c = np.asarray(c, np.float64)
        if r.shape != c.shape:
            raise ValueError(f"leaf {path}: reference shape {r.shape} differs from candidate shape {c.shape}")
        rows.append(_compare_leaf(path, r, c, rtol, atol))
        problems += _nonfinite_sides(path, r, c, reference_name, candidate_name)
    return CheckReport(rows, mode="compare", order=1, candidate=candidate_name, directions=sum(r.checked for r in rows),
                       precision="float64", rtol=rtol, atol=atol, reference=reference_name,
                       problems=tuple(problems))  # fmt: skip


def _nonfinite_sides(path, r, c, reference_name, candidate_name) -> list:
    """A problem per side holding a NaN or inf in the leaf: its name, the first such entry and the count."""
    out = []
    for name, a in ((reference_name, r), (candidate_name, c)):
        bad = ~np.isfinite(a)
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            idx = [int(i) for i in np.unravel_index(k, a.shape)]
            out.append(f"the {name} side is {a.flat[k]} at {path}{idx} ({int(bad.sum())} of {a.size} entries "
                       "non-finite): a NaN or inf on either side fails")  # fmt: skip
    return out


def _compare_leaf(path, r, c, rtol, atol) -> LeafCheck:
    if r.size == 0:
        return LeafCheck(path, r.shape, 0, 0, 0.0, 0.0, (), 0.0, 0.0)
    with np.errstate(invalid="ignore"):
        err = np.abs(c - r)
    finite = np.isfinite(r) & np.isfinite(c)
    err = np.where(finite, err, np.inf)
    with np.errstate(invalid="ignore"):
        bad = ~finite | (err > atol + rtol * np.abs(r))  # a NaN on either side fails: NaN compares False
    emax = float(np.max(err[finite], initial=0.0)) if finite.any() else math.nan  # the real |Δ| of finite pairs
    rel = rel_err(emax, np.max(np.abs(r[finite]), initial=0.0), np.max(np.abs(c[finite]), initial=0.0))
    k = int(np.argmax(np.where(finite, err - rtol * np.abs(r), np.inf)))
    idx = tuple(int(i) for i in np.unravel_index(k, r.shape))
    status = OK if not bad.any() else NONFINITE if not finite.all() else WRONG
    return LeafCheck(path, r.shape, int(r.size), int(bad.sum()), emax, rel, idx, float(r.flat[k]), float(c.flat[k]),
                     status)  # fmt: skip


def finite_difference_grad(f: Callable, params, *, eps: float = 1e-6, chunk: int = 256):
    """Gradient of a scalar function by central differences, one coordinate at a time.

    ``∂f/∂θ_i ≈ (f(θ + ε e_i) − f(θ − ε e_i)) / 2ε``; error O(ε²) plus rounding O(u/ε). Use float64.

    Args:
        f: scalar function of ``params`` (deterministic: fix any dropout key inside it).
        params: the point θ, any pytree of float arrays.
        eps: the step ε > 0.
        chunk: coordinates evaluated per vmapped call.

    Returns:
        A pytree like ``params`` holding the estimated gradient.
    """
    eps = V.check_real("eps", eps, low=0.0, low_open=True)
    V.check_int("chunk", chunk, low=1)
    theta, unravel = ravel_pytree(params)
    n = theta.shape[0]
    f_flat = jax.jit(jax.vmap(lambda t: f(unravel(t))))
    out = np.empty(n, np.float64)
    eye = jnp.eye(min(chunk, n), n, dtype=theta.dtype)
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        basis = jnp.roll(eye, start, axis=1)[: stop - start]
        fp = np.asarray(f_flat(theta[None, :] + eps * basis), np.float64)
        fm = np.asarray(f_flat(theta[None, :] - eps * basis), np.float64)
        out[start:stop] = (fp - fm) / (2.0 * eps)
    return unravel(jnp.asarray(out, theta.dtype))


@dataclass(frozen=True)
class TaylorResult:
    """Outcome of ``taylor_test``.

    Attributes:
        hs: the step sizes h.
        remainders: |L(θ + h d) − L(θ) − h ⟨∇L, d⟩| for each h.
        order: least-squares slope of log remainder against log h over ``used`` (2 for a right gradient, 1
            for a wrong one; nan when no step rose above rounding noise, i.e. L is linear along d).
        used: ``(h_min, h_max)`` of the steps fitted: the smallest consecutive steps whose remainders are
            above the rounding noise (100 · eps · |L|), where the remainder is in its asymptotic regime.
        passed: the verdict, ``order ≥ 1.7`` (or no remainder above noise: right along d).
    """

    hs: np.ndarray
    remainders: np.ndarray
    order: float
    used: tuple = ()
    passed: bool = True


def taylor_test(
    f: Callable, params, grad, *, key, h0: float = 1e-1, num: int = 16, shrink: float = 0.5
) -> TaylorResult:
    """Estimate the order of the first-order Taylor remainder along a random direction.

    If ``grad`` is the gradient of ``f``, r(h) = |f(θ + h d) − f(θ) − h⟨grad, d⟩| = O(h²); if it is
    wrong by e with ⟨e, d⟩ ≠ 0, r(h) ≈ h|⟨e, d⟩| for small h, an order of 1. The order is fitted over the
    four smallest steps whose remainders stand above rounding noise (too small a step drowns r in rounding,
    too large a one leaves the asymptotic regime); ``passed`` is the verdict. The test runs in float64 on a
    float64 copy of ``params`` (the x64 flag is restored), so params created in float32 are checked right.

    Args:
        f: scalar function of ``params``.
        params: the point θ.
        grad: the gradient to test (same structure as ``params``).
        key: PRNG key for the direction d (unit norm, Gaussian).
        h0: the largest step.
        num: number of steps, h0·shrinkᵏ for k < num.
        shrink: ratio between consecutive steps, in (0, 1).

    Returns:
        A ``TaylorResult`` with the verdict ``passed``.
    """
    key = V.check_key("key", key)
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        return _taylor(f, params, grad, key, h0, num, shrink)


def _taylor(f, params, grad, key, h0, num, shrink) -> TaylorResult:
    h0 = V.check_real("h0", h0, low=0.0, low_open=True)
    num = V.check_int("num", num, low=2)
    shrink = V.check_real("shrink", shrink, low=0.0, high=1.0, low_open=True, high_open=True)
    to64 = lambda t: jax.tree.map(lambda l: jnp.asarray(np.asarray(l, np.float64)), t)
    theta, unravel = ravel_pytree(to64(params))
    g, _ = ravel_pytree(to64(grad))
    if g.shape != theta.shape:
        raise ValueError(
            f"grad must have the structure and sizes of params; got {g.shape[0]} entries, expected {theta.shape[0]}"
        )
    d = jax.random.normal(key, theta.shape, jnp.float64)
    d = d / jnp.linalg.norm(d)
    f_j = jax.jit(lambda t: jnp.asarray(f(unravel(t)), jnp.float64))
    f0 = float(f_j(theta))
    slope = float(jnp.vdot(g, d))
    hs = h0 * shrink ** np.arange(num)
    rem = np.array([abs(float(f_j(theta + h * d)) - f0 - h * slope) for h in hs])
    noise = 100.0 * float(jnp.finfo(jnp.float64).eps) * max(abs(f0), 1e-300)
    above = np.flatnonzero(rem > noise)
    if above.size < 2:
        return TaylorResult(hs, rem, math.nan, (), True)
    # the smallest steps above noise, consecutive from the largest such index downwards
    last = int(above[-1])
    run = [last]
    while len(run) < 4 and run[-1] - 1 >= 0 and rem[run[-1] - 1] > noise:
        run.append(run[-1] - 1)
    if len(run) < 2:
        return TaylorResult(hs, rem, math.nan, (), True)
    sel = np.array(sorted(run))
    order = float(np.polyfit(np.log(hs[sel]), np.log(rem[sel]), 1)[0])
    return TaylorResult(hs, rem, order, (float(hs[sel].min()), float(hs[sel].max())), order >= 1.7)


__all__ = ["TaylorResult", "compare_grads", "finite_difference_grad", "float64_mode", "taylor_test"]
