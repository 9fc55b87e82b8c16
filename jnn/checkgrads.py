"""``check_grads``: one call that verifies the derivatives of any JAX function, with a verdict and the
failing entries named.

The candidate is JAX's derivative of ``f`` (reverse mode, which runs the user's ``custom_vjp`` rules; and
forward mode when ``f`` supports it, which runs ``custom_jvp`` rules), or the user's own ``grad`` function.
The reference is a finite-difference derivative of ``f`` computed in float64 on a float64 copy of the
inputs, whatever their dtype and the global x64 flag (both sides run on that copy, so float32 code is
checked to float64 accuracy unless it casts to float32 itself; then the tolerance follows that dtype).

Each check is a directional derivative: along a coordinate axis (``mode="full"``: every coordinate, in
chunks of vmapped evaluations sized by a memory budget) or along random directions (``mode="fast"``: k
directions; when one fails, the error is localised by bisection over the leaves and then over halves of
the failing leaf's entries, down to single entries). Array outputs are reduced by a random cotangent u:
the check is on φ(x) = ⟨u, f(x)⟩, whose gradient is the VJP of u. ``order=2`` checks Hessian-vector
products: the same machinery on ψ(x) = ⟨∇φ(x), w⟩ for a random w, differentiated by JAX (so a
``stop_gradient`` inside a backward rule is caught).

The reference is Richardson's extrapolation of central differences at steps h and h/2 (error O(h⁴)); its
error bound is the measured difference of the two central differences (truncation) plus the rounding of
the four evaluations, eps·max|f|/h; an entry fails when |candidate − reference| exceeds
``atol + rtol·|reference| + 4·bound``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jnn import _validate as V

#: Coordinates up to which ``mode="auto"`` checks every coordinate.
AUTO_FULL_MAX = 5000
#: Bytes of perturbed copies of the inputs that one vmapped call may hold in ``mode="full"``.
MEMORY_BUDGET = 256 << 20
#: Random directions of ``mode="fast"``.
FAST_DIRECTIONS = 6
#: Relative step of the differences, by the precision f computes in.
STEP = {8: 2e-3, 4: 3e-2, 2: 1e-1}


@dataclass(frozen=True)
class LeafCheck:
    """One leaf of a :class:`CheckReport`.

    Attributes:
        path: the leaf's path, e.g. ``args[0]['w']`` (``args[i]`` is the i-th argument of ``f``).
        shape: its shape.
        checked: entries checked one by one (all of them in full mode; those reached by localisation in
            fast mode), or 0 when the leaf was only checked along random directions.
        failed: entries found wrong (in fast mode, those localised: a lower bound).
        max_abs_err, max_rel_err: the largest |candidate − reference| and that over max|reference|
            (over the entries checked, or over the leaf's directional checks).
        worst_index: the worst entry's index (None when no single entry was checked).
        reference, candidate: the values at ``worst_index`` (or of the worst directional check).
        passed: no failure in this leaf.
    """

    path: str
    shape: tuple
    checked: int
    failed: int
    max_abs_err: float
    max_rel_err: float
    worst_index: tuple | None
    reference: float
    candidate: float
    passed: bool


@dataclass(frozen=True)
class CheckReport:
    """What :func:`check_grads` returns; ``str(report)`` is a table and a verdict line.

    Attributes:
        leaves: one :class:`LeafCheck` per differentiated leaf.
        mode: ``"full"`` or ``"fast"``.
        order: 1 or 2.
        candidate: what was checked (``"jax.vjp"``, ``"jax.jvp"``, ``"grad="``, ``"hvp"`` ...).
        directions: directional checks run (fast mode) or coordinates checked (full mode).
        precision: the float type f computed in (``float64`` unless f casts its inputs).
        notes: remarks (e.g. forward mode not supported by a ``custom_vjp``).
        forward_ok: False when forward mode (``jax.jvp``, array outputs) disagreed with the reference.
    """

    leaves: list
    mode: str
    order: int
    candidate: str
    directions: int
    precision: str
    notes: tuple = ()
    forward_ok: bool = True

    @property
    def passed(self) -> bool:
        """True when no leaf failed (and forward mode, when checked, agreed)."""
        return self.forward_ok and all(l.passed for l in self.leaves)

    @property
    def failed_leaves(self) -> list:
        """The paths of the failing leaves."""
        return [l.path for l in self.leaves if not l.passed]

    def __str__(self) -> str:
        head = (f"check_grads: {self.candidate} vs float64 finite differences, order {self.order}, {self.mode} mode "
                f"({self.directions} {'coordinates' if self.mode == 'full' else 'directional checks'}), "
                f"f computes in {self.precision}")  # fmt: skip
        rows = [("leaf", "shape", "checked", "failed", "max |Δ|", "max rel", "worst at", "reference", "candidate",
                 "ok")]  # fmt: skip
        for l in self.leaves:
            where = "-" if l.worst_index is None else str(list(l.worst_index))
            rows.append((l.path, "x".join(map(str, l.shape)) or "()", str(l.checked), str(l.failed),
                         _num(l.max_abs_err), _num(l.max_rel_err), where, _num(l.reference), _num(l.candidate),
                         "yes" if l.passed else "NO"))  # fmt: skip
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [head] + ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
        lines += [f"note: {n}" for n in self.notes]
        ok = sum(l.passed for l in self.leaves)
        lines.append(f"{'PASSED' if self.passed else 'FAILED'}: {ok}/{len(self.leaves)} leaves right"
                     + ("" if self.passed else f"; wrong: {', '.join(self.failed_leaves)}"))  # fmt: skip
        return "\n".join(lines)


def _num(v: float) -> str:
    return "nan" if isinstance(v, float) and math.isnan(v) else f"{v:.3e}"


def check_grads(
    f,
    *args,
    argnums=0,
    grad=None,
    order: int = 1,
    mode: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    directions: int = FAST_DIRECTIONS,
    memory_budget: int = MEMORY_BUDGET,
) -> CheckReport:
    """Check the derivatives of ``f(*args)`` with respect to ``args[argnums]`` against float64 finite differences.

    Args:
        f: a JAX-traceable function of ``args``, returning a scalar or an array (deterministic: fix any key).
        *args: its arguments, any pytrees (float leaves of the differentiated ones are checked).
        argnums: the argument index (int) or indices (tuple) to differentiate.
        grad: optional ``grad(*args)`` returning the gradient of a scalar ``f`` w.r.t. ``argnums`` (the same
            structure as those arguments; a tuple for a tuple ``argnums``); default: JAX's derivative.
        order: 1 (gradients) or 2 (Hessian-vector products).
        mode: ``"full"`` (every coordinate), ``"fast"`` (random directions, then localisation) or
            ``"auto"`` (full up to :data:`AUTO_FULL_MAX` coordinates).
        rtol: relative tolerance on top of the finite-difference error bound (default 1e-6, 1e-3 when f
            computes in float32).
        atol: absolute tolerance on top of it (default 0).
        seed: seed of the random directions and cotangents.
        directions: random directions in fast mode (≥ 1).
        memory_budget: bytes of perturbed input copies per vmapped call in full mode.

    Returns:
        A :class:`CheckReport` (``.passed``, ``.leaves``, ``str(report)``).

    Raises:
        TypeError, ValueError: a non-callable ``f``, bad ``argnums``/``order``/``mode``/tolerances, no float
            leaves to differentiate, or ``grad`` returning another structure (naming the argument).
    """
    if not callable(f):
        raise TypeError(f"f must be a callable; got {type(f).__name__}")
    nums = _check_argnums(argnums, len(args))
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"order must be 1 or 2; got {order!r}")
    V.check_choice("mode", mode, ["auto", "full", "fast"])
    if grad is not None and not callable(grad):
        raise TypeError(f"grad must be a callable or None; got {type(grad).__name__}")
    V.check_int("seed", seed, low=0)
    V.check_int("directions", directions, low=1)
    V.check_int("memory_budget", memory_budget, low=1)
    # The float64 copy of the arguments meets the float32 arrays f closes over: standard promotion makes it float64.
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        return _check(f, args, nums, isinstance(argnums, tuple), grad, order, mode, rtol, atol, seed, directions,
                      memory_budget)  # fmt: skip


def _check_argnums(argnums, n: int) -> tuple:
    nums = argnums if isinstance(argnums, tuple) else (argnums,)
    if not nums or any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < n for a in nums):
        raise ValueError(f"argnums must be an int or a tuple of ints in [0, {n - 1}] (f gets {n} args); "
                         f"got {argnums!r}")  # fmt: skip
    if len(set(nums)) != len(nums):
        raise ValueError(f"argnums must not repeat an index; got {argnums!r}")
    return nums


def _to64(tree):
    return jax.tree.map(lambda l: jnp.asarray(np.asarray(l, np.float64)) if _is_float(l) else l, tree)


def _is_float(l) -> bool:
    return hasattr(l, "dtype") and jnp.issubdtype(l.dtype, jnp.floating) or isinstance(l, float)


def _check(f, args, nums, tuple_nums, grad, order, mode, rtol, atol, seed, n_dirs, budget):
    args64 = [_to64(a) for a in args]
    diff = tuple(args64[i] for i in nums)
    leaves = jax.tree.leaves(diff)
    if not leaves or not any(_is_float(l) for l in leaves):
        raise ValueError(f"args[{nums[0] if len(nums) == 1 else nums}] must hold float arrays to differentiate; "
                         f"got {jax.tree.structure(diff)}")  # fmt: skip
    theta, unravel = ravel_pytree(diff)
    if theta.size == 0:
        raise ValueError("the differentiated arguments are empty (no entries to check)")

    def call(t):
        d = unravel(t)
        full = list(args64)
        for i, v in zip(nums, d):
            full[i] = v
        return f(*full)

    try:
        out = jax.eval_shape(call, theta)
    except Exception as err:
        raise ValueError(f"f(*args) failed: {type(err).__name__}: {err}") from None
    if not hasattr(out, "dtype") or not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"f must return a float array or scalar; got {out}")
    key = jax.random.key(seed)
    k_u, k_w, k_dir = jax.random.split(key, 3)
    u = jax.random.normal(k_u, out.shape, jnp.float64)
    if out.shape:
        phi = lambda t: jnp.sum(u * call(t).astype(jnp.float64))  # noqa: E731 - φ(θ) = ⟨u, f(θ)⟩
    else:
        phi = lambda t: call(t).astype(jnp.float64)  # noqa: E731
    notes = []
    if grad is not None:
        if out.shape:
            raise ValueError(f"grad= is for scalar f; f returns shape {out.shape} (check its JAX derivative instead)")
        cand_fn = _user_grad(grad, args64, nums, tuple_nums, diff, unravel)
        name = "grad="
    else:
        cand_fn = jax.jit(jax.grad(phi))
        name = "jax.vjp" if out.shape else "jax.grad"
    if order == 2:
        w = jax.random.normal(k_w, theta.shape, jnp.float64)
        first = cand_fn
        phi = lambda t: jnp.vdot(first(t), w)  # noqa: E731 - ψ(θ) = ⟨∇φ(θ), w⟩
        cand_fn = jax.jit(jax.grad(phi))
        name = f"hvp of {name}"
    eps = float(jnp.finfo(out.dtype if out.dtype != jnp.float64 else jnp.float64).eps)
    precision = str(jnp.dtype(out.dtype))
    rtol = (1e-6 if eps < 1e-10 else 1e-3) if rtol is None else V.check_real("rtol", rtol, low=0.0)
    atol = 0.0 if atol is None else V.check_real("atol", atol, low=0.0)
    step = STEP.get(jnp.dtype(out.dtype).itemsize, 2e-3)
    scale = _leaf_scales(diff, theta)
    cand = np.asarray(cand_fn(theta), np.float64)
    ctx = _Ctx(jax.jit(jax.vmap(phi)), theta, scale * step, eps, rtol, atol, budget, phi)
    paths = _paths(diff, nums)
    sizes = [int(np.size(l)) for l in jax.tree.leaves(diff)]
    full = mode == "full" or (mode == "auto" and theta.size <= AUTO_FULL_MAX)
    if full:
        rows = _full(ctx, cand, paths, sizes, diff)
        count = int(theta.size)
    else:
        rows, count = _fast(ctx, cand, paths, sizes, diff, k_dir, n_dirs)
    forward_ok = True
    if grad is None and order == 1 and out.shape:
        forward_ok, note = _jvp_check(call, theta, u, ctx, k_dir)
        notes += [note] if note else []
    return CheckReport(rows, "full" if full else "fast", order, name, count, precision, tuple(notes), forward_ok)


def _user_grad(grad, args64, nums, tuple_nums, diff, unravel):
    def cand(t):
        d = unravel(t)
        full = list(args64)
        for i, v in zip(nums, d):
            full[i] = v
        g = grad(*full)
        g = tuple(g) if tuple_nums else (g,)
        if jax.tree.structure(g) != jax.tree.structure(diff):
            raise TypeError(f"grad must return the structure of args{list(nums) if tuple_nums else [nums[0]]}: "
                            f"{jax.tree.structure(diff)}; got {jax.tree.structure(g)}")  # fmt: skip
        return ravel_pytree(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), g))[0]

    return jax.jit(cand)


def _leaf_scales(diff, theta) -> jnp.ndarray:
    """Per-coordinate scale of the step: 1 + the RMS of the coordinate's leaf."""
    rms = lambda l: float(jnp.sqrt(jnp.mean(jnp.asarray(l, jnp.float64) ** 2))) if np.size(l) else 0.0
    parts = [jnp.full(np.size(l), 1.0 + rms(l)) for l in jax.tree.leaves(diff)]
    return jnp.concatenate(parts) if parts else jnp.ones_like(theta)


def _paths(diff, nums) -> list:
    out = []
    for i, a in zip(nums, diff):
        flat, _ = jax.tree_util.tree_flatten_with_path(a)
        out += [f"args[{i}]{jax.tree_util.keystr(p)}" for p, _ in flat]
    return out


@dataclass
class _Ctx:
    phis: object  # vmapped φ over a batch of θ
    theta: jnp.ndarray
    h: jnp.ndarray  # per-coordinate step
    eps: float
    rtol: float
    atol: float
    budget: int
    phi_raw: object = None  # φ itself (traced inside the full mode's batches)

    def directional(self, v) -> tuple[float, float]:
        """Reference derivative of φ along the step-scaled direction v (θ + s·h∘v) and its error bound."""
        hv = self.h * v
        pts = jnp.stack([self.theta + hv, self.theta - hv, self.theta + hv / 2, self.theta - hv / 2])
        fp, fm, gp, gm = (float(x) for x in np.asarray(self.phis(pts), np.float64))
        d1, d2 = (fp - fm) / 2.0, (gp - gm)  # central differences at steps 1 and 1/2, per unit s
        ref = (4.0 * d2 - d1) / 3.0
        bound = abs(d2 - d1) / 3.0 + 4.0 * self.eps * max(abs(fp), abs(fm), abs(gp), abs(gm), 1e-300)
        return ref, bound

    def failing(self, ref, cand, bound):
        return abs(cand - ref) > self.atol + self.rtol * abs(ref) + 4.0 * bound


def _full(ctx: _Ctx, cand, paths, sizes, diff):
    n = ctx.theta.size
    chunk = int(max(1, min(1024, ctx.budget // (4 * 8 * n))))
    ref = np.empty(n)
    bound = np.empty(n)
    idx_all = np.arange(n)

    def batch(ix):  # φ at θ ± h_i e_i and θ ± h_i e_i / 2 for the chunk's coordinates i, without one-hot rows
        steps = jnp.stack([ctx.h[ix], -ctx.h[ix], ctx.h[ix] / 2, -ctx.h[ix] / 2])
        one = lambda i, s: ctx.phi_raw(ctx.theta.at[i].add(s))
        return jax.vmap(jax.vmap(one), in_axes=(None, 0))(ix, steps)

    batch = jax.jit(batch)

    for start in range(0, n, chunk):
        ix = jnp.asarray(idx_all[start : start + chunk])
        fp, fm, gp, gm = np.asarray(batch(ix), np.float64)
        h = np.asarray(ctx.h[ix])
        d1, d2 = (fp - fm) / (2 * h), (gp - gm) / h
        ref[start : start + len(ix)] = (4 * d2 - d1) / 3
        bound[start : start + len(ix)] = np.abs(d2 - d1) / 3 + 4 * ctx.eps * np.max(
            np.abs(np.stack([fp, fm, gp, gm])), axis=0) / h  # fmt: skip
    err = np.abs(cand - ref)
    err = np.where(np.isnan(err), np.inf, err)
    fail = err > ctx.atol + ctx.rtol * np.abs(ref) + 4 * bound
    rows, off = [], 0
    for path, size, leaf in zip(paths, sizes, jax.tree.leaves(diff)):
        sl = slice(off, off + size)
        off += size
        rows.append(_row(path, np.shape(leaf), size, err[sl], fail[sl], ref[sl], cand[sl]))
    return rows


def _row(path, shape, checked, err, fail, ref, cand) -> LeafCheck:
    if err.size == 0:
        return LeafCheck(path, tuple(shape), 0, 0, 0.0, 0.0, None, 0.0, 0.0, True)
    excess = np.where(fail, err, -np.inf) if fail.any() else err
    k = int(np.argmax(excess))
    rmax = float(np.max(np.abs(ref)))
    emax = float(np.max(err))
    rel = emax / rmax if rmax > 0 else (0.0 if emax == 0 else math.inf)
    idx = tuple(int(i) for i in np.unravel_index(k, shape)) if len(shape) else ()
    return LeafCheck(path, tuple(shape), checked, int(fail.sum()), emax, rel, idx, float(ref[k]), float(cand[k]),
                     not bool(fail.any()))  # fmt: skip


def _fast(ctx: _Ctx, cand, paths, sizes, diff, key, n_dirs):
    n = ctx.theta.size
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    keys = jax.random.split(key, n_dirs + len(sizes))
    count, worst = 0, None  # worst: (excess, direction) of the worst failing global direction
    for j in range(n_dirs):  # global directions: the verdict
        v = np.asarray(jax.random.normal(keys[j], (n,), jnp.float64))
        ref, bound, c = _along(ctx, cand, v)
        count += 1
        if ctx.failing(ref, c, bound) and (worst is None or abs(c - ref) > worst[0]):
            worst = (abs(c - ref), v)
    rows = []
    for li, (path, size, leaf) in enumerate(zip(paths, sizes, jax.tree.leaves(diff))):
        lo, hi = int(offsets[li]), int(offsets[li + 1])
        shape = tuple(np.shape(leaf))
        if size == 0:
            rows.append(LeafCheck(path, shape, 0, 0, 0.0, 0.0, None, 0.0, 0.0, True))
            continue
        own = np.zeros(n)
        own[lo:hi] = np.asarray(jax.random.normal(keys[n_dirs + li], (size,), jnp.float64))
        tries = [own] + ([_restrict(worst[1], lo, hi)] if worst is not None else [])
        results = [(_along(ctx, cand, v), v) for v in tries]
        count += len(tries)
        bad = [(abs(c - ref), v) for (ref, bound, c), v in results if ctx.failing(ref, c, bound)]
        if not bad:
            (ref, _, c), _ = results[0]
            err = abs(c - ref)
            rows.append(LeafCheck(path, shape, 0, 0, err, err / abs(ref) if ref else 0.0, None, ref, c, True))
            continue
        entries, used = _localise(ctx, cand, max(bad, key=lambda t: t[0])[1], lo, hi)
        count += used
        rows.append(_localised_row(path, shape, lo, entries))
    if worst is not None and all(r.passed for r in rows):  # the error hides in a mix of leaves: name them all
        rows = [LeafCheck(r.path, r.shape, r.checked, r.failed, r.max_abs_err, r.max_rel_err, r.worst_index,
                          r.reference, r.candidate, False) for r in rows]  # fmt: skip
    return rows, count


def _along(ctx: _Ctx, cand, v) -> tuple[float, float, float]:
    """``(reference, bound, candidate)`` of the derivative along the step-scaled direction v (normalised to unit
    length, so that the perturbation stays small however many coordinates it spans)."""
    v = v / max(float(np.linalg.norm(v)), 1e-300)
    ref, bound = ctx.directional(jnp.asarray(v))
    return ref, bound, float(np.dot(cand, np.asarray(ctx.h) * v))


def _restrict(v, lo: int, hi: int):
    w = np.zeros_like(v)
    w[lo:hi] = v[lo:hi]
    return w


def _localised_row(path, shape, lo: int, entries) -> LeafCheck:
    """A failing leaf's row from the entries its bisection checked one by one."""
    idx = np.array([e[0] for e in entries], dtype=int) - lo
    refs, cands = np.array([e[1] for e in entries]), np.array([e[2] for e in entries])
    fails = np.array([e[3] for e in entries], dtype=bool)
    errs = np.abs(cands - refs)
    if not fails.any():  # the leaf fails as a whole, no single entry stands out
        return LeafCheck(path, shape, len(entries), 0, float(errs.max(initial=0.0)), math.nan, None, math.nan,
                         math.nan, False)  # fmt: skip
    k = int(np.argmax(np.where(fails, errs, -np.inf)))
    rmax = float(np.max(np.abs(refs)))
    emax = float(np.max(errs[fails]))
    windex = tuple(int(i) for i in np.unravel_index(int(idx[k]), shape)) if shape else ()
    return LeafCheck(path, shape, len(entries), int(fails.sum()), emax, emax / rmax if rmax else math.inf, windex,
                     float(refs[k]), float(cands[k]), False)  # fmt: skip


#: Blocks explored at once by the bisection, and the block size checked entry by entry.
_MAX_BRANCHES, _LEAF_BLOCK = 8, 8


def _localise(ctx: _Ctx, cand, v, lo: int, hi: int):
    """Bisect [lo, hi) along the random direction v restricted to halves; returns the entries checked one by
    one as ``(flat index, reference, candidate, failed)`` and the number of evaluations used."""
    blocks, used, out = [(lo, hi)], 0, []
    while blocks:
        nxt = []
        for a, b in blocks:
            if b - a <= _LEAF_BLOCK:
                for i in range(a, b):
                    e = np.zeros(ctx.theta.size)
                    e[i] = 1.0
                    ref, bound = ctx.directional(jnp.asarray(e))
                    c = float(cand[i] * ctx.h[i])
                    h = float(ctx.h[i])
                    out.append((i, ref / h, c / h, ctx.failing(ref, c, bound)))
                    used += 1
                continue
            mid = (a + b) // 2
            for s, t in ((a, mid), (mid, b)):
                ref, bound, c = _along(ctx, cand, _restrict(v, s, t))
                used += 1
                if ctx.failing(ref, c, bound):
                    nxt.append((abs(c - ref), s, t))
        blocks = [(s, t) for _, s, t in sorted(nxt, reverse=True)[:_MAX_BRANCHES]]
    return out, used


def _jvp_check(call, theta, u, ctx, key) -> tuple[bool, str]:
    """Forward mode along one random direction against the same reference (custom_jvp rules)."""
    v = jax.random.normal(jax.random.fold_in(key, 7), theta.shape, jnp.float64)
    v = v / jnp.linalg.norm(v)
    try:
        _, tangent = jax.jvp(call, (theta,), (ctx.h * v,))
    except Exception as err:  # e.g. a custom_vjp function has no forward mode
        return True, f"forward mode not checked ({type(err).__name__})"
    c = float(jnp.sum(u * tangent))
    ref, bound = ctx.directional(v)
    if ctx.failing(ref, c, bound):
        return False, f"forward mode WRONG: jax.jvp gives {c:.6e} along a random direction, differences {ref:.6e}"
    return True, ""


__all__ = ["AUTO_FULL_MAX", "CheckReport", "LeafCheck", "check_grads"]
