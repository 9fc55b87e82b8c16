"""``check_grads``: one call that verifies the derivatives of any JAX function, with a verdict and the
failing entries named.

The candidate is JAX's derivative of ``f`` (reverse mode, which runs the user's ``custom_vjp`` rules; and
forward mode when ``f`` supports it, which runs ``custom_jvp`` rules), or the user's own ``grad`` function.
The reference is a finite-difference derivative of ``f`` computed in float64 on a float64 copy of the
inputs, whatever their dtype and the global x64 flag (both sides run on that copy, so float32 code is
checked to float64 accuracy unless it casts to float32 itself; then the tolerance follows that dtype).

Each check is a directional derivative: along a coordinate axis (``mode="full"``: every coordinate, one
after the other in a compiled loop that sets and restores the entry in place) or along random directions
(``mode="fast"``: k directions; when one fails, the error is localised by bisection over the leaves and then
over halves of the failing leaf's entries, down to single entries). Array outputs are reduced by a random cotangent u:
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
        buffer_bytes: the largest XLA buffer footprint of one compiled call the check made (arguments, which
            include the inputs, + outputs + temporaries, by XLA's memory analysis; compilation itself and
            the inputs' float64 copy when they are not float64 are not counted); None where XLA does not say.
    """

    leaves: list
    mode: str
    order: int
    candidate: str
    directions: int
    precision: str
    notes: tuple = ()
    forward_ok: bool = True
    buffer_bytes: int | None = None

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
    # The float64 copy of the arguments meets the float32 arrays f closes over: standard promotion makes it float64.
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        return _check(f, args, nums, isinstance(argnums, tuple), grad, order, mode, rtol, atol, seed, directions)


def _check_argnums(argnums, n: int) -> tuple:
    nums = argnums if isinstance(argnums, tuple) else (argnums,)
    if not nums or any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < n for a in nums):
        raise ValueError(f"argnums must be an int or a tuple of ints in [0, {n - 1}] (f gets {n} args); "
                         f"got {argnums!r}")  # fmt: skip
    if len(set(nums)) != len(nums):
        raise ValueError(f"argnums must not repeat an index; got {argnums!r}")
    return nums


def _to64(tree):
    """A float64 copy of the float leaves (float64 arrays are taken as they are: nothing copies them)."""

    def cast(l):
        if isinstance(l, jax.Array) and l.dtype == jnp.float64:
            return l
        return jnp.asarray(np.asarray(l, np.float64)) if _is_float(l) else l

    return jax.tree.map(cast, tree)


def _is_float(l) -> bool:
    return hasattr(l, "dtype") and jnp.issubdtype(l.dtype, jnp.floating) or isinstance(l, float)


@dataclass
class _Problem:
    """The checked leaves of ``f``'s differentiated arguments, and φ over them."""

    phi: object  # φ(xs): a float64 scalar of the list of checked leaves
    theta: list  # the checked leaves (float64)
    paths: list
    shapes: list
    sizes: list
    offsets: list  # offset of each leaf in the concatenation of the checked leaves
    h: list  # step per leaf: STEP · (1 + the leaf's RMS)
    buffer_bytes: int | None = 0  # the largest buffer footprint of a compiled call so far

    @property
    def n(self) -> int:
        return self.offsets[-1]


def _aot(fn, prob: _Problem, *args):
    """``fn`` compiled ahead of time for ``args``; records its buffer footprint in ``prob.buffer_bytes``."""
    compiled = jax.jit(fn).lower(*args).compile()
    try:
        m = compiled.memory_analysis()
        used = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    except Exception:  # a backend without memory analysis
        used = None
    prob.buffer_bytes = None if used is None or prob.buffer_bytes is None else max(prob.buffer_bytes, int(used))
    return compiled

    @property
    def n(self) -> int:
        return self.offsets[-1]


def _check(f, args, nums, tuple_nums, grad, order, mode, rtol, atol, seed, n_dirs):
    args64 = [_to64(a) for a in args]
    diff = tuple(args64[i] for i in nums)
    flat, treedef = jax.tree_util.tree_flatten_with_path(diff)
    checked = [k for k, (_, l) in enumerate(flat) if _is_float(l) and np.size(l)]
    if not checked:
        raise ValueError(f"args[{nums[0] if len(nums) == 1 else nums}] must hold float arrays to differentiate; "
                         f"got {jax.tree.structure(diff)}")  # fmt: skip
    leaves = [l for _, l in flat]
    paths = [f"args[{nums[flat[k][0][0].idx]}]{jax.tree_util.keystr(flat[k][0][1:])}" for k in checked]
    del flat

    def call(xs):
        full_leaves = list(leaves)
        for k, x in zip(checked, xs):
            full_leaves[k] = x
        full = list(args64)
        for i, v in zip(nums, jax.tree.unflatten(treedef, full_leaves)):
            full[i] = v
        return f(*full)

    theta = [jnp.asarray(leaves[k]) for k in checked]
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
        phi = lambda xs: jnp.sum(u * call(xs).astype(jnp.float64))  # noqa: E731 - φ(θ) = ⟨u, f(θ)⟩
    else:
        phi = lambda xs: call(xs).astype(jnp.float64)  # noqa: E731
    notes = []
    if grad is not None:
        if out.shape:
            raise ValueError(f"grad= is for scalar f; f returns shape {out.shape} (check its JAX derivative instead)")
        cand_fn = _user_grad(grad, args64, nums, tuple_nums, diff, call, checked)
        name = "grad="
    else:
        cand_fn = jax.jit(jax.grad(phi))
        name = "jax.vjp" if out.shape else "jax.grad"
    if order == 2:
        ws = [jax.random.normal(jax.random.fold_in(k_w, j), x.shape, jnp.float64) for j, x in enumerate(theta)]
        first = cand_fn
        phi = lambda xs: sum(jnp.vdot(g, w) for g, w in zip(first(xs), ws))  # noqa: E731 - ψ(θ) = ⟨∇φ(θ), w⟩
        cand_fn = jax.jit(jax.grad(phi))
        name = f"hvp of {name}"
    eps = float(jnp.finfo(out.dtype).eps)
    precision = str(jnp.dtype(out.dtype))
    rtol = (1e-6 if eps < 1e-10 else 1e-3) if rtol is None else V.check_real("rtol", rtol, low=0.0)
    atol = 0.0 if atol is None else V.check_real("atol", atol, low=0.0)
    step = STEP.get(jnp.dtype(out.dtype).itemsize, 2e-3)
    sizes = [int(np.size(x)) for x in theta]
    prob = _Problem(phi, theta, paths, [tuple(np.shape(x)) for x in theta], sizes, [0, *np.cumsum(sizes).tolist()],
                    [step * (1.0 + float(jnp.sqrt(jnp.mean(x**2)))) for x in theta])  # fmt: skip
    cand = _aot(cand_fn, prob, theta)(theta)
    crit = _Criterion(eps, rtol, atol)
    full = mode == "full" or (mode == "auto" and prob.n <= AUTO_FULL_MAX)
    if full:
        rows = _full(prob, [np.asarray(c, np.float64).ravel() for c in cand], crit)
        count = prob.n
    else:
        rows, count = _fast(prob, cand, crit, k_dir, n_dirs)
    forward_ok = True
    if grad is None and order == 1 and out.shape:
        forward_ok, note = _jvp_check(call, prob, u, crit, k_dir)
        notes += [note] if note else []
    return CheckReport(rows, "full" if full else "fast", order, name, count, precision, tuple(notes), forward_ok,
                       prob.buffer_bytes)  # fmt: skip


def _user_grad(grad, args64, nums, tuple_nums, diff, call, checked):
    structure = jax.tree.structure(diff)

    def cand(xs):
        full = list(args64)
        ins = jax.tree.leaves(diff)
        for k, x in zip(checked, xs):
            ins[k] = x
        for i, v in zip(nums, jax.tree.unflatten(structure, ins)):
            full[i] = v
        g = grad(*full)
        g = tuple(g) if tuple_nums else (g,)
        if jax.tree.structure(g) != structure:
            raise TypeError(f"grad must return the structure of args{list(nums) if tuple_nums else [nums[0]]}: "
                            f"{structure}; got {jax.tree.structure(g)}")  # fmt: skip
        gl = jax.tree.leaves(g)
        return [jnp.asarray(gl[k], jnp.float64).reshape(xs[j].shape) for j, k in enumerate(checked)]

    return jax.jit(cand)


@dataclass(frozen=True)
class _Criterion:
    eps: float
    rtol: float
    atol: float

    def reference(self, vals) -> tuple[float, float]:
        """Richardson's derivative per unit step from φ at θ ± v, θ ± v/2, and its error bound."""
        fp, fm, gp, gm = (float(x) for x in vals)
        d1, d2 = (fp - fm) / 2.0, (gp - gm)  # central differences at steps 1 and 1/2, per unit s
        ref = (4.0 * d2 - d1) / 3.0
        bound = abs(d2 - d1) / 3.0 + 4.0 * self.eps * max(abs(fp), abs(fm), abs(gp), abs(gm), 1e-300)
        return ref, bound

    def failing(self, ref, cand, bound):
        return abs(cand - ref) > self.atol + self.rtol * abs(ref) + 4.0 * bound


#: Coordinates perturbed per compiled call of full mode.
_FULL_CHUNK = 4096


def _full(prob: _Problem, cand: list, crit: _Criterion) -> list:
    """Every coordinate: φ at θ ± h e_i and θ ± h e_i / 2, one coordinate after the other inside a compiled
    loop that sets and restores the entry in place (no copy of θ per coordinate)."""
    flat, unravel = ravel_pytree(prob.theta)
    n = prob.n
    hs = np.concatenate([np.full(s, h) for s, h in zip(prob.sizes, prob.h)])
    m = min(n, _FULL_CHUNK)

    def chunk(t, ix, steps):
        def body(j, carry):
            t, out = carry
            i, s = ix[j], steps[j]
            t0 = t[i]
            vals = []
            for q in (s, -s, s / 2, -s / 2):
                t = t.at[i].set(t0 + q)
                vals.append(prob.phi(unravel(t)))
            return t.at[i].set(t0), out.at[:, j].set(jnp.stack(vals))

        return jax.lax.fori_loop(0, m, body, (t, jnp.zeros((4, m), jnp.float64)))[1]

    chunk = _aot(chunk, prob, flat, jnp.zeros(m, jnp.int64), jnp.zeros(m, jnp.float64))
    vals = np.empty((4, n))
    for start in range(0, n, m):
        ix = np.arange(start, start + m) % n  # the last chunk wraps around: one compiled shape
        got = np.asarray(chunk(flat, jnp.asarray(ix), jnp.asarray(hs[ix])), np.float64)
        k = min(m, n - start)
        vals[:, start : start + k] = got[:, :k]
    fp, fm, gp, gm = vals
    d1, d2 = (fp - fm) / (2 * hs), (gp - gm) / hs
    ref = (4 * d2 - d1) / 3
    bound = np.abs(d2 - d1) / 3 + 4 * crit.eps * np.max(np.abs(vals), axis=0) / hs
    cand = np.concatenate(cand)
    err = np.abs(cand - ref)
    err = np.where(np.isnan(err), np.inf, err)
    fail = err > crit.atol + crit.rtol * np.abs(ref) + 4 * bound
    rows = []
    for path, shape, lo, hi in zip(prob.paths, prob.shapes, prob.offsets, prob.offsets[1:]):
        sl = slice(lo, hi)
        rows.append(_row(path, shape, hi - lo, err[sl], fail[sl], ref[sl], cand[sl]))
    return rows


def _row(path, shape, checked, err, fail, ref, cand) -> LeafCheck:
    excess = np.where(fail, err, -np.inf) if fail.any() else err
    k = int(np.argmax(excess))
    rmax = float(np.max(np.abs(ref)))
    emax = float(np.max(err))
    rel = emax / rmax if rmax > 0 else (0.0 if emax == 0 else math.inf)
    idx = tuple(int(i) for i in np.unravel_index(k, shape)) if len(shape) else ()
    return LeafCheck(path, tuple(shape), checked, int(fail.sum()), emax, rel, idx, float(ref[k]), float(cand[k]),
                     not bool(fail.any()))  # fmt: skip


def _direction(prob: _Problem, key, lo, hi) -> list:
    """The step-scaled direction over the global coordinates [lo, hi): a random normal vector of expected
    length 1 (the same entries for the same key, so halves of a block are restrictions of it), or the
    coordinate axis when the block holds one entry. Traced: lo and hi may be traced scalars."""
    m = hi - lo
    out = []
    for j, (shape, off, h) in enumerate(zip(prob.shapes, prob.offsets, prob.h)):
        idx = off + jnp.arange(int(np.prod(shape)), dtype=jnp.int64).reshape(shape)
        inside = (idx >= lo) & (idx < hi)
        z = jax.random.normal(jax.random.fold_in(key, j), shape, jnp.float64)
        out.append(jnp.where(inside, jnp.where(m == 1, 1.0, z / jnp.sqrt(m.astype(jnp.float64))), 0.0) * h)
    return out


def _make_along(prob: _Problem):
    """``along(theta, cand, key, lo, hi) -> (φ at θ ± v, θ ± v/2, ⟨cand, v⟩)``, to compile; memory: the
    direction and one perturbed copy of θ at a time (the four evaluations run in a loop)."""

    def along(theta, cand, key, lo, hi):
        v = _direction(prob, key, lo, hi)
        c = sum(jnp.vdot(a, b) for a, b in zip(cand, v))
        vals = jax.lax.map(lambda s: prob.phi([x + s * d for x, d in zip(theta, v)]),
                           jnp.array([1.0, -1.0, 0.5, -0.5]))  # fmt: skip
        return vals, c

    return along


def _fast(prob: _Problem, cand: list, crit: _Criterion, key, n_dirs: int):
    along = _aot(_make_along(prob), prob, prob.theta, cand, key, jnp.int64(0), jnp.int64(prob.n))

    def check(k, lo, hi):
        vals, c = along(prob.theta, cand, k, jnp.int64(lo), jnp.int64(hi))
        ref, bound = crit.reference(np.asarray(vals))
        return ref, bound, float(c)

    keys = jax.random.split(key, n_dirs + len(prob.sizes))
    count, worst = 0, None  # worst: (excess, key) of the worst failing global direction
    for j in range(n_dirs):  # global directions: the verdict
        ref, bound, c = check(keys[j], 0, prob.n)
        count += 1
        if crit.failing(ref, c, bound) and (worst is None or abs(c - ref) > worst[0]):
            worst = (abs(c - ref), keys[j])
    rows = []
    for li, (path, shape, lo, hi) in enumerate(zip(prob.paths, prob.shapes, prob.offsets, prob.offsets[1:])):
        tries = [keys[n_dirs + li]] + ([worst[1]] if worst is not None else [])
        results = [(check(k, lo, hi), k) for k in tries]
        count += len(tries)
        bad = [(abs(c - ref), k) for (ref, bound, c), k in results if crit.failing(ref, c, bound)]
        if not bad:
            (ref, _, c), _ = results[0]
            err = abs(c - ref)
            rows.append(LeafCheck(path, shape, 0, 0, err, err / abs(ref) if ref else 0.0, None, ref, c, True))
            continue
        entries, used = _localise(check, crit, max(bad, key=lambda t: t[0])[1], lo, hi, prob.h[li])
        count += used
        rows.append(_localised_row(path, shape, lo, entries))
    if worst is not None and all(r.passed for r in rows):  # the error hides in a mix of leaves: name them all
        rows = [LeafCheck(r.path, r.shape, r.checked, r.failed, r.max_abs_err, r.max_rel_err, r.worst_index,
                          r.reference, r.candidate, False) for r in rows]  # fmt: skip
    return rows, count


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


def _localise(check, crit: _Criterion, key, lo: int, hi: int, h: float):
    """Bisect [lo, hi) along the random direction of ``key`` restricted to halves; returns the entries checked
    one by one as ``(flat index, reference, candidate, failed)`` and the number of evaluations used."""
    blocks, used, out = [(lo, hi)], 0, []
    while blocks:
        nxt = []
        for a, b in blocks:
            if b - a <= _LEAF_BLOCK:
                for i in range(a, b):
                    ref, bound, c = check(key, i, i + 1)
                    out.append((i, ref / h, c / h, crit.failing(ref, c, bound)))
                    used += 1
                continue
            mid = (a + b) // 2
            for s, t in ((a, mid), (mid, b)):
                ref, bound, c = check(key, s, t)
                used += 1
                if crit.failing(ref, c, bound):
                    nxt.append((abs(c - ref), s, t))
        blocks = [(s, t) for _, s, t in sorted(nxt, reverse=True)[:_MAX_BRANCHES]]
    return out, used


def _jvp_check(call, prob: _Problem, u, crit: _Criterion, key) -> tuple[bool, str]:
    """Forward mode along one random direction against the same reference (custom_jvp rules)."""
    k = jax.random.fold_in(key, 7)
    v = jax.jit(lambda k: _direction(prob, k, jnp.int64(0), jnp.int64(prob.n)))(k)
    try:
        _, tangent = jax.jvp(call, (prob.theta,), (v,))
    except Exception as err:  # e.g. a custom_vjp function has no forward mode
        return True, f"forward mode not checked ({type(err).__name__})"
    c = float(jnp.sum(u * tangent))
    vals = jnp.stack([prob.phi([x + s * d for x, d in zip(prob.theta, v)]) for s in (1.0, -1.0, 0.5, -0.5)])
    ref, bound = crit.reference(np.asarray(vals))
    if crit.failing(ref, c, bound):
        return False, f"forward mode WRONG: jax.jvp gives {c:.6e} along a random direction, differences {ref:.6e}"
    return True, ""


__all__ = ["AUTO_FULL_MAX", "CheckReport", "LeafCheck", "check_grads"]
