"""The probes of ``jnn.check_grads``: directional derivatives of φ against float64 finite differences,
every coordinate (full mode) or random directions with localisation by bisection (fast mode).

A probe along a step-scaled direction v evaluates φ at θ ± σv and θ ± σv/2 (σ = 1 first). Per unit of v:

- the reference is Richardson's extrapolation of the two central differences d₁ (step σ) and d₂ (step σ/2),
  ``ref = (4d₂ − d₁)/3`` (error O(σ⁴));
- its error bound is ``|d₂ − d₁|/3`` (truncation) plus the rounding of the evaluations,
  ``4·eps·max|φ|/σ``;
- the candidate c (``⟨∇φ, v⟩`` from the candidate gradient, or ``jax.jvp`` along v) is right when
  ``|c − ref| ≤ atol·‖v‖ + rtol·|ref| + 4·bound + 8·eps_c·(‖c‖‖v‖ + |ref|)`` (eps_c: the unit roundoff of
  the precision the candidate was computed in).

A probe that fails is tested for smoothness: for a smooth φ the second differences satisfy
``S₁ = 4·S₂`` up to O(σ⁴) (S₁ = φ(θ+σv) − 2φ(θ) + φ(θ−σv), S₂ the same at σ/2); a kink of φ between
θ − σv and θ + σv (a relu at 0, ``abs``, a tie of ``max``) breaks that relation by about the size of the
error it causes. Every failing probe is retried with a smaller step (σ = 1/8, 1/64, 1/512 in float64),
which moves a kink out of the stencil unless it sits at θ itself. At θ a probe that fails at two
consecutive steps with φ smooth there looks wrong, and one whose residual ``|S₁ − 4S₂|/σ`` explains its
error (≥ a quarter of it, and above rounding) looks non-smooth; neither is decided there, since kinks whose
slope jumps cancel look smooth along one direction: both are judged again at θ ± v/8, moved off the kink
along the probe, with the candidate recomputed there (``MOVE``). Wrong there: *wrong*; right there:
right (*beside* a kink); else *non-smooth here*, never counted as wrong. A pass at θ that a kink in the
stencil made loose is retried at the smaller steps. A probe whose φ values are not finite at every step is
*non-finite* (wrong). See ``judge``.

Fast mode's directions are drawn inside its compiled probes from a counter hash of (seed, direction,
coordinate) and never stored (``draw_at``); the candidate's dot products with them are reductions taken
block by block (``blockwise``). From ``SPLIT_FROM`` coordinates the probes are separate programs over
the stored θ (the user's own arrays: the float64 point is lifted inside each call, fused with the
perturbation) and the candidate is recomputed for each direction and block rather than held, so a check at
10⁷ parameters holds no array of θ's size between calls, and at most two float64 copies within one (a JVP's
point and tangent; a gradient's point and value).
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from jnn.gradcheck.report import NONFINITE, NONSMOOTH, OK, POWER, WRONG, LeafCheck, rel_err

#: Relative step of the differences, by the itemsize of the precision the reference computes in.
STEP = {8: 2e-3, 4: 3e-2, 2: 1e-1}
#: Coordinates perturbed per compiled call of full mode.
FULL_CHUNK = 4096
#: Coordinates from which fast mode's probe runs as separate programs, one after the other, and recomputes the
#: candidate for each direction rather than hold it (less memory: at most two float64 copies of θ in one call,
#: none between calls), rather than as one program (one compile).
SPLIT_FROM = 10**6
#: Blocks explored at once by the bisection, and the block size checked entry by entry.
MAX_BRANCHES, LEAF_BLOCK = 8, 8
#: Entries per block of ``blockwise``'s reductions.
BLOCK = 2**16


@dataclass
class Problem:
    """The checked leaves of ``f``'s differentiated arguments, and φ over them.

    Attributes:
        phi: φ(xs), the scalar whose derivative the candidate is (a function of the list of checked leaves).
        fd_phi: the φ the finite differences evaluate (``phi`` itself, or its float64 twin when f computes
            in a lower precision).
        theta: the checked leaves as stored: the user's arrays at their own dtypes (``lift`` gives the
            float64 point; every compiled function lifts them itself, so a float32 model's float64 copy lives
            only inside the call that perturbs it).
        paths, shapes, sizes: per leaf.
        offsets: offset of each leaf in the concatenation of the checked leaves (length leaves + 1).
        h: the step per leaf: STEP · (1 + the leaf's RMS).
        buffer_bytes: the largest buffer footprint of a compiled call so far (None where XLA does not say).
        cand: the candidate gradient as a function of the checked leaves (list of float64 leaves); None when
            only forward mode is checked. Probes that meet a kink at the point recompute it at points moved
            off the kink.
    """

    phi: object
    fd_phi: object
    theta: list
    paths: list
    shapes: list
    sizes: list
    offsets: list
    h: list
    buffer_bytes: int | None = 0
    cand: object = None

    @property
    def n(self) -> int:
        """The number of checked coordinates."""
        return self.offsets[-1]


def lift(xs) -> list:
    """The float64 point from the stored leaves ``xs`` (exact: every float widens to float64 exactly; no copy
    of a float64 leaf). Traced or eager."""
    return [jnp.asarray(x, jnp.float64) for x in xs]


def specs(xs) -> list:
    """Float64 shape-and-dtype stand-ins for the leaves ``xs``: to lower a function of the point without a copy."""
    return [jax.ShapeDtypeStruct(np.shape(x), jnp.float64) for x in xs]


def aot(fn, prob: Problem, *args, lowered=None):
    """``fn`` compiled ahead of time for ``args`` (or ``lowered``, its ``jax.jit(fn).lower(*args)`` when at
    hand); records its buffer footprint in ``prob.buffer_bytes``."""
    compiled = (lowered if lowered is not None else jax.jit(fn).lower(*args)).compile()
    try:
        m = compiled.memory_analysis()
        used = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes - m.alias_size_in_bytes
    except Exception:  # a backend without memory analysis
        used = None
    prob.buffer_bytes = None if used is None or prob.buffer_bytes is None else max(prob.buffer_bytes, int(used))
    return compiled


@dataclass(frozen=True)
class Criterion:
    """Tolerances and the steps of the retries.

    Attributes:
        eps: unit roundoff of the values the finite differences see.
        eps_c: unit roundoff of the candidate's precision.
        rtol, atol: the tolerances on top of the error bound.
        scales: the steps σ tried, largest first.
    """

    eps: float
    eps_c: float
    rtol: float
    atol: float
    scales: tuple = (1.0, 1 / 8, 1 / 64, 1 / 512)

    def assess(self, vals, phi0, sigma, c, cv, vnorm):
        """One step of probes, vectorised over the last axis.

        Args:
            vals: ``[4, m]`` φ at θ + σv·(1, −1, ½, −½).
            phi0: φ(θ).
            sigma: the step σ (scalar or ``[m]``).
            c: ``[m]`` the candidate per unit of v.
            cv: ``[m]`` ‖c‖·‖v‖ over the probed block (scale of the candidate's rounding).
            vnorm: ``[m]`` ‖v‖.

        Returns:
            ``(ref, err, tol, ok, nonsmooth, finite, loosened)``, each ``[m]`` (``loosened``: φ is not smooth
            here or the truncation estimate makes most of the tolerance).
        """
        vals = np.asarray(vals, np.float64)
        with np.errstate(invalid="ignore", over="ignore"):
            fp, fm, gp, gm = vals
            d1, d2 = (fp - fm) / (2.0 * sigma), (gp - gm) / sigma
            ref = (4.0 * d2 - d1) / 3.0
            big = np.maximum(np.max(np.abs(vals), axis=0), abs(phi0))
            rounding = 4.0 * self.eps * big / sigma
            bound = np.abs(d2 - d1) / 3.0 + rounding
            tol = self.atol * vnorm + self.rtol * np.abs(ref) + 4.0 * bound + 8.0 * self.eps_c * (cv + np.abs(ref))
            err = np.abs(c - ref)
            resid = np.abs((fp - 2 * phi0 + fm) - 4.0 * (gp - 2 * phi0 + gm)) / sigma
            finite = np.all(np.isfinite(vals), axis=0) & np.isfinite(phi0)
            ok = finite & (err <= tol)
            nonsmooth = (resid > 10.0 * rounding) & (resid >= 0.25 * err)
            # the truncation estimate makes most of the tolerance: a kink in the stencil (or several, whose
            # second differences cancel) rather than φ's curvature
            loosened = nonsmooth | (4.0 * np.abs(d2 - d1) / 3.0 >= 0.5 * tol)
        return ref, err, tol, ok, nonsmooth, finite, loosened


@dataclass
class Judged:
    """Probes judged over the retries: per probe its status and the values of the step that decided it.

    ``beside`` marks the probes that met a kink at the point and were decided at points moved off it along
    the probe (their values are those of the moved probe that decided them)."""

    status: np.ndarray
    ref: np.ndarray
    err: np.ndarray
    tol: np.ndarray
    c: np.ndarray = field(default=None)
    beside: np.ndarray = field(default=None)


#: A passing probe of fast mode is retried at a smaller step while its resolution (tolerance over |reference|)
#: is above this (kinks crossed by the stencil loosen the error bound; a smaller step crosses fewer).
SHARP = 0.01
#: How far a probe that meets a kink at the point is moved off it along its direction (in units of the first
#: step), and the steps of the moved probe relative to the first step (their reach stays short of the point).
MOVE, MOVED_SCALE = 1 / 8, 1 / 16


def judge(measure, c, cv, vnorm, phi0, crit: Criterion, sharpen: bool = False, beside=None) -> Judged:
    """Judge ``m`` probes over the steps of ``crit.scales``, then the failing ones beside the point.

    At the point a probe is right at the first step where it passes (with ``sharpen``, the step with the best
    resolution among those tried until one is sharper than ``SHARP``). A probe that never passes there
    either met a kink at the point or is wrong; no test on φ along one direction tells them apart (kinks whose
    slope jumps cancel look smooth), so with ``beside`` the probe is judged again at the points θ ± τv moved
    off the point along its direction (τ = ``MOVE``; the candidate recomputed there; steps short of the
    point): *wrong* when a moved probe fails with φ smooth at two consecutive steps, *right beside a kink*
    when a moved probe passes and none is wrong, else *non-smooth here* (never wrong). Without ``beside``, a
    probe that fails with φ smooth at two consecutive steps (or at the last step tried) is wrong.

    Args:
        measure: ``measure(ix, sigma) -> [4, len(ix)]`` φ values of probes ``ix`` at step σ.
        c, cv, vnorm: ``[m]`` per probe (see ``Criterion.assess``).
        phi0: φ(θ) (a scalar, or ``[m]``).
        crit: the criterion.
        sharpen: retry passing probes whose resolution is above ``SHARP``.
        beside: ``beside(ix, t) -> (measure, c, cv, phi0)`` for the probes ``ix`` moved by ``t`` (signed, in
            units of their direction), or None.
    """
    j = _judge_at(measure, c, cv, vnorm, phi0, crit, sharpen)
    j.beside = np.zeros(len(c), bool)
    failing = np.flatnonzero((j.status == WRONG) | (j.status == NONSMOOTH))
    if beside is None or not failing.size:
        return j
    moved = replace(crit, scales=tuple(s * MOVED_SCALE for s in crit.scales[: max(1, len(crit.scales) - 1)]))
    undecided, passed = failing, np.zeros(len(c), bool)
    j.status[failing] = NONSMOOTH
    for side in (1.0, -1.0):
        if not undecided.size:
            break
        m2, c2, cv2, p2 = beside(undecided, side * MOVE * crit.scales[0])
        k = _judge_at(m2, c2, cv2, vnorm[undecided], p2, moved, sharpen)
        wrong, ok = k.status == WRONG, k.status == OK
        take = wrong | (ok & ~passed[undecided])
        ix = undecided[take]
        j.ref[ix], j.err[ix], j.tol[ix], j.c[ix] = k.ref[take], k.err[take], k.tol[take], k.c[take]
        j.status[undecided[wrong]] = WRONG
        j.status[undecided[ok]] = OK
        j.beside[undecided] = True
        passed[undecided[ok]] = True
        undecided = undecided[~wrong]  # a probe right on one side is still checked on the other
    return j


def _judge_at(measure, c, cv, vnorm, phi0, crit: Criterion, sharpen: bool) -> Judged:
    """``judge`` at one point, without moving. Per probe: *ok* at the first step where it passes, unless
    φ is not smooth there and the pass is loose (resolution ``POWER / 4`` or more: the kink's own error made
    room for it): such a pass is retried at the smaller steps and stands only if nothing fails there, and
    at the last step it is *non-smooth*; *wrong* when it fails with φ smooth at two consecutive steps (or at
    the last step tried) without an ok step before; else *non-smooth* or *non-finite* as at its last step."""
    m = len(c)
    phi0 = np.broadcast_to(np.asarray(phi0, np.float64), (m,))
    status = np.full(m, NONFINITE, dtype=object)
    ref, err, tol = np.full(m, np.nan), np.full(m, np.inf), np.zeros(m)
    passed, prev_fail, best = np.zeros(m, bool), np.zeros(m, bool), np.full(m, np.inf)
    loose_seen = np.zeros(m, bool)
    pending = np.arange(m)
    for k, sigma in enumerate(crit.scales):
        last = k == len(crit.scales) - 1
        r, e, t, ok, ns, fin, lsd = crit.assess(measure(pending, sigma), phi0[pending], sigma, c[pending],
                                                cv[pending], vnorm[pending])  # fmt: skip
        e = np.where(np.isnan(e), np.inf, e)
        with np.errstate(divide="ignore", invalid="ignore"):
            res = np.where(np.abs(r) > 0, t / np.abs(r), np.inf)
        was = passed[pending]
        loose = ok & ~was & lsd & (res >= POWER / 4) & (e > 0)  # a pass the kink's own error made possible
        sure = ok & ~loose
        smooth_fail = ~ok & fin & ~ns
        wrong = smooth_fail & ~was & (prev_fail[pending] | last)
        first_loose = loose & ~loose_seen[pending]
        keep = (sure & (~was | (res < best[pending]))) | (~was & ~ok) | wrong | first_loose
        idx = pending[keep]
        ref[idx], err[idx], tol[idx] = r[keep], e[keep], t[keep]
        best[pending[sure]] = np.minimum(best[pending[sure]], res[sure])
        status[pending] = np.where(sure | was | (loose & (not last)), OK,
                                   np.where(smooth_fail, WRONG, np.where(ns, NONSMOOTH, NONFINITE)))  # fmt: skip
        passed[pending] |= sure
        loose_seen[pending] |= loose
        prev_fail[pending] = smooth_fail
        more = np.where(sure | was, sharpen & (best[pending] > SHARP), ~wrong)
        pending = pending[more]
        if not pending.size:
            break
    return Judged(status, ref, err, tol, np.array(c, np.float64))


def full(prob: Problem, crit: Criterion, cands: dict, with_jvp: bool, phi0: float) -> dict:
    """Every coordinate: φ at θ ± h e_i and θ ± h e_i / 2, one coordinate after the other inside a compiled
    loop that sets and restores the entry in place (no copy of θ per coordinate). An entry that fails at the
    point is judged again beside it, at θ ± τh e_i (``judge``).

    Args:
        prob, crit: the problem and criterion.
        cands: ``{"vjp": [flat candidate gradient per leaf]}`` (empty when reverse mode is not checked).
        with_jvp: also check ``jax.jvp`` per coordinate (the ``"jvp"`` rows).
        phi0: φ(θ).

    Returns:
        ``{oracle: [LeafCheck, ...]}`` for ``"vjp"`` and/or ``"jvp"``.
    """
    flat, unravel = ravel_pytree(lift(prob.theta))
    n = prob.n
    hs = np.concatenate([np.full(s, h) for s, h in zip(prob.sizes, prob.h)])
    m = min(n, FULL_CHUNK)

    def chunk(t, ix, steps, centers):
        def body(j, carry):
            t, out, tangents = carry
            i, s, c0 = ix[j], steps[j], centers[j]
            t0 = t[i]
            vals = []
            for q in (s, -s, s / 2, -s / 2):
                t = t.at[i].set(t0 + c0 + q)
                vals.append(prob.fd_phi(unravel(t)))
            t = t.at[i].set(t0 + c0)
            if with_jvp:
                e = jnp.zeros_like(t).at[i].set(s)
                tangents = tangents.at[j].set(jax.jvp(lambda z: prob.phi(unravel(z)), (t,), (e,))[1])
            t = t.at[i].set(t0)
            return t, out.at[:, j].set(jnp.stack(vals)), tangents

        init = (t, jnp.zeros((4, m), jnp.float64), jnp.zeros(m, jnp.float64))
        return jax.lax.fori_loop(0, m, body, init)[1:]

    chunk = aot(chunk, prob, flat, jnp.zeros(m, jnp.int64), jnp.zeros(m, jnp.float64), jnp.zeros(m, jnp.float64))

    def run(ix, steps, centers=None):
        centers = np.zeros(len(steps)) if centers is None else centers
        vals, tang = np.empty((4, len(ix))), np.empty(len(ix))
        for start in range(0, len(ix), m):
            part = ix[start : start + m]
            k = len(part)
            pad = np.resize(part, m)  # the last chunk repeats entries: one compiled shape
            got, tg = chunk(flat, jnp.asarray(pad), jnp.asarray(steps[pad]), jnp.asarray(centers[pad]))
            vals[:, start : start + k] = np.asarray(got, np.float64)[:, :k]
            tang[start : start + k] = np.asarray(tg, np.float64)[:k]
        return vals, tang

    all_ix = np.arange(n)
    first, tangents = run(all_ix, hs)

    def measure(ix, sigma):
        return first[:, ix] if sigma == 1.0 else run(ix, hs * sigma)[0]

    oracles = {k: np.concatenate(v) * hs for k, v in cands.items()}  # per unit of v = h e_i
    if with_jvp:
        oracles["jvp"] = tangents
    out = {}
    for name, c in oracles.items():
        scale = np.concatenate([np.full(s, np.max(np.abs(c[lo:hi]) / hs[lo:hi], initial=0.0))
                                for s, lo, hi in zip(prob.sizes, prob.offsets, prob.offsets[1:])])  # fmt: skip
        j = judge(measure, c, scale * hs, hs, phi0, crit, beside=_full_beside(prob, name, run, flat, unravel, hs,
                                                                             scale))  # fmt: skip
        out[name] = [_full_row(prob, li, j, hs) for li in range(len(prob.sizes))]
    return out


def _full_beside(prob: Problem, oracle: str, run, flat, unravel, hs, scale):
    """``judge``'s ``beside`` for full mode: coordinate probes moved by ``t`` steps along their axis."""
    entry = None
    if oracle == "vjp" and prob.cand is not None:
        entry = jax.jit(lambda t, i, s: ravel_pytree(prob.cand(unravel(t.at[i].add(s))))[0][i])

    def beside(ix, t):
        centers = np.zeros(len(hs))
        centers[ix] = t * hs[ix]
        p0 = run(ix, hs * abs(t))[0][0 if t > 0 else 1]
        if oracle == "jvp":
            c = run(ix, hs, centers)[1]  # the tangent along h e_i at the moved point
        else:
            c = np.array([float(entry(flat, jnp.int64(i), jnp.float64(t * hs[i]))) for i in ix]) * hs[ix]
        return (lambda sub, sigma: run(ix[sub], hs * sigma, centers)[0]), c, scale[ix] * hs[ix], p0

    return beside


def _full_row(prob: Problem, li: int, j: Judged, hs) -> LeafCheck:
    lo, hi = prob.offsets[li], prob.offsets[li + 1]
    path, shape = prob.paths[li], prob.shapes[li]
    st, h = j.status[lo:hi], hs[lo:hi]
    ref, c, err, tol = j.ref[lo:hi] / h, j.c[lo:hi] / h, j.err[lo:hi] / h, j.tol[lo:hi] / h
    bad = (st == WRONG) | (st == NONFINITE)
    smooth = (st == OK) | (st == WRONG)
    status = WRONG if (st == WRONG).any() else NONFINITE if (st == NONFINITE).any() else \
        NONSMOOTH if (st == NONSMOOTH).all() else OK  # fmt: skip
    if bad.any():
        excess = np.where(bad, np.where(np.isfinite(err - tol), err - tol, np.inf), -np.inf)
    else:
        excess = np.where(smooth, err, -np.inf)
    k = int(np.argmax(excess))
    emax = float(np.max(err[smooth], initial=0.0))
    rel = rel_err(emax, np.max(np.abs(ref[smooth]), initial=0.0), np.max(np.abs(c[smooth]), initial=0.0))
    idx = tuple(int(i) for i in np.unravel_index(k, shape)) if len(shape) else ()
    return LeafCheck(path, tuple(shape), hi - lo, int(bad.sum()), emax, rel, idx, float(ref[k]), float(c[k]),
                     status, int((st == NONSMOOTH).sum()), _resolution(ref, tol, st == OK),
                     int((j.beside[lo:hi] & (st == OK)).sum()))  # fmt: skip


def _resolution(ref, tol, ok) -> float:
    """The smallest relative error the probes ``ok`` would flag (0 for an all-zero gradient)."""
    ref, tol = np.abs(np.asarray(ref)[ok]), np.asarray(tol)[ok]
    if not ref.size:
        return math.inf
    if not (ref > 0).any():
        return 0.0
    return float(np.min(tol[ref > 0] / ref[ref > 0]))


def _mix(x):
    """murmur3's 32-bit finaliser: a bijective hash of uint32 values."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def draw_at(seed, kid, idx):
    """Random draws of zero mean and unit variance (uniform on [−√3, √3]) for the global coordinates ``idx``
    (uint32) of direction ``kid``: a counter-based hash, elementwise and cheap, so that XLA fuses it into
    whatever uses it (a direction is never stored: at 10⁷ parameters a stored one would cost as much as the
    parameters in float64, and a Gaussian's log and cos would cost more than f)."""
    x = _mix(idx * jnp.uint32(0x9E3779B9) + _mix(seed ^ (kid * jnp.uint32(0x27D4EB2F))))
    return ((x >> 8).astype(jnp.float64) + 0.5) * (2.0 * 3.0**0.5 / 2.0**24) - 3.0**0.5


def direction(prob: Problem, seed, kid, lo, hi) -> list:
    """The step-scaled direction ``kid`` over the global coordinates [lo, hi): a random vector
    (``draw_at``: the same for a whole bisection, so halves of a block are restrictions of it)
    restricted to the block and scaled to expected length 1 per unit step, or the coordinate axis when the
    block holds one entry. Traced (seed, kid, lo, hi may be traced scalars); elementwise, to be fused."""
    out = []
    for shape, off, h in zip(prob.shapes, prob.offsets, prob.h):
        idx = jnp.uint32(off) + jnp.arange(int(np.prod(shape)), dtype=jnp.uint32).reshape(shape)
        out.append(_direction_at(idx, seed, kid, lo, hi, h))
    return out


def _direction_at(idx, seed, kid, lo, hi, h):
    """``direction``'s entries at the global coordinates ``idx`` (uint32) of a leaf of step ``h``."""
    m = hi - lo
    inside = (idx >= lo.astype(jnp.uint32)) & (idx < hi.astype(jnp.uint32))
    z = draw_at(seed, kid, idx)
    return jnp.where(inside, jnp.where(m == 1, 1.0, z / jnp.sqrt(m.astype(jnp.float64))), 0.0) * h


def blockwise(leaves, offsets, fn, n_out: int):
    """``Σ fn(values, idx)`` over every entry of ``leaves`` (arrays of any shape, leaf j's entries at global
    coordinates ``offsets[j] + k``): ``fn`` maps a 1-d block of values and its uint32 coordinates to
    ``n_out`` arrays, each summed. Taken in blocks of ``BLOCK`` entries inside a loop, so that nothing
    of a leaf's size is made beside it (XLA on CPU does not fuse several reductions of one elementwise
    product: at 10⁷ parameters one program would hold two float64 arrays of θ's size). Traced; returns a
    tuple of ``n_out`` float64 scalars."""
    acc = tuple(jnp.float64(0.0) for _ in range(n_out))

    def add(acc, vals, start, size, off):
        idx = jnp.uint32(off) + start + jnp.arange(size, dtype=jnp.uint32)
        return tuple(a + jnp.sum(p) for a, p in zip(acc, fn(vals, idx)))

    for x, off in zip(leaves, offsets):
        flat = jnp.reshape(x, (-1,))
        k, rest = divmod(int(flat.shape[0]), BLOCK)
        if rest:
            acc = add(acc, flat[k * BLOCK :], jnp.uint32(k * BLOCK), rest, off)
        if k:

            def body(i, acc, flat=flat, off=off):
                start = (i * BLOCK).astype(jnp.uint32)
                return add(acc, jax.lax.dynamic_slice(flat, (i * BLOCK,), (BLOCK,)), start, BLOCK, off)

            acc = jax.lax.fori_loop(0, k, body, acc)
    return acc


def _probe_parts(prob: Problem):
    """The three parts of a fast-mode probe along the ``direction`` ``kid`` over [lo, hi), each a
    function to trace (the direction recomputed where it is used, fused into the perturbation or the
    reduction, never stored):

    - ``at(theta, seed, kid, lo, hi, s)``: φ at θ + s·v (the stored θ lifted to float64 inside the sum);
    - ``tangent(theta, seed, kid, lo, hi, t)``: forward mode's jvp(φ)(θ + tv; v);
    - ``dot(cand, seed, kid, lo, hi)``: ⟨cand, v⟩, ‖cand over the block‖·‖v‖ and ‖v‖.

    A probe evaluates ``at`` at s = t + σ·(1, −1, ½, −½) (t ≠ 0: a probe moved off a kink at the point).
    """

    def at(theta, seed, kid, lo, hi, s):
        return prob.fd_phi([x + s * d for x, d in zip(lift(theta), direction(prob, seed, kid, lo, hi))])

    def tangent(theta, seed, kid, lo, hi, t):
        v = direction(prob, seed, kid, lo, hi)
        return jax.jvp(prob.phi, ([x + t * d for x, d in zip(lift(theta), v)],), (v,))[1]

    def dot(cand, seed, kid, lo, hi):
        c, gg, vv = jnp.float64(0.0), jnp.float64(0.0), jnp.float64(0.0)
        for g, off, h in zip(cand, prob.offsets, prob.h):

            def parts(x, idx, h=h):  # a non-finite candidate entry (reported apart) counts as zero
                x, d = jnp.asarray(x, jnp.float64), _direction_at(idx, seed, kid, lo, hi, h)
                x = jnp.where(jnp.isfinite(x), x, 0.0)
                return x * d, jnp.where(d != 0, x * x, 0.0), d * d

            one = blockwise([g], [off], parts, 3)
            c, gg, vv = c + one[0], gg + one[1], vv + one[2]
        return c, jnp.sqrt(gg) * jnp.sqrt(vv), jnp.sqrt(vv)

    return at, tangent, dot


def _compiled_probe(prob: Problem, with_jvp: bool, example_cand, seed):
    """``probe(theta, cand, seed, kid, lo, hi, sigma, t) -> (vals, tangent, c, cv, vn)`` from the parts of
    ``_probe_parts``, compiled: as one program (one compile; its four evaluations one after the other in
    a ``lax.map``), or from ``SPLIT_FROM`` coordinates as separate programs called one after the other:
    each holds one perturbed float64 copy of θ beside the stored θ and the candidate, where one program keeps
    more (a loop's carried copy of θ)."""
    at, tangent, dot = _probe_parts(prob)
    offsets = jnp.array([1.0, -1.0, 0.5, -0.5])

    def whole(theta, cand, seed, kid, lo, hi, sigma, t):
        tg = tangent(theta, seed, kid, lo, hi, t) if with_jvp else 0.0
        vals = jax.lax.map(lambda s: at(theta, seed, kid, lo, hi, s), t + sigma * offsets)
        return (vals, tg, *dot(cand, seed, kid, lo, hi))

    i64, f64, u32 = jnp.int64, jnp.float64, jnp.uint32
    ix = (seed, u32(0), i64(0), i64(prob.n))
    if prob.n < SPLIT_FROM:
        return aot(whole, prob, prob.theta, example_cand, *ix, f64(1.0), f64(0.0))
    at = aot(at, prob, prob.theta, *ix, f64(1.0))
    tangent = aot(tangent, prob, prob.theta, *ix, f64(0.0)) if with_jvp else None
    if example_cand is not None:
        dot_c = aot(dot, prob, example_cand, *ix)
        dot_of = lambda theta, cand, *at_: dot_c(cand, *at_)  # noqa: E731
    elif prob.cand is not None:  # the candidate is recomputed for each direction: none is held between calls
        cand_at = aot(lambda theta: prob.cand(lift(theta)), prob, prob.theta)
        dot_c = aot(dot, prob, jax.eval_shape(lambda theta: prob.cand(lift(theta)), prob.theta), *ix)
        dot_of = lambda theta, cand, *at_: dot_c(cand_at(theta), *at_)  # noqa: E731
    else:  # forward mode only: no candidate gradient; the dots of zeros (for ‖v‖) are fused, nothing stored
        zeros = aot(lambda *at_: dot([jnp.zeros(s, jnp.float64) for s in prob.shapes], *at_), prob, *ix)
        dot_of = lambda theta, cand, *at_: zeros(*at_)  # noqa: E731
    trim()
    dots = {}

    def probe(theta, cand, seed, kid, lo, hi, sigma, t):
        tg = tangent(theta, seed, kid, lo, hi, t) if with_jvp else 0.0
        vals = jnp.stack([at(theta, seed, kid, lo, hi, t + sigma * o) for o in (1.0, -1.0, 0.5, -0.5)])
        at_ = (int(kid), int(lo), int(hi))
        if at_ not in dots:  # ⟨cand, v⟩ does not depend on the step: one per direction and block
            dots[at_] = dot_of(theta, cand, seed, kid, lo, hi)
        return (vals, tg, *dots[at_])

    return probe


def trim() -> None:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim``) after compiling, so that
    the compiler's transient memory does not stay resident beside the large arrays of a large check; a
    no-op elsewhere."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def _make_shift(prob: Problem):
    """``shift(theta, seed, kid, lo, hi, t) -> θ + t·v`` (the point of a moved probe), to compile."""

    def shift(theta, seed, kid, lo, hi, t):
        return [x + t * d for x, d in zip(lift(theta), direction(prob, seed, kid, lo, hi))]

    return shift


def fast(prob: Problem, crit: Criterion, cand, oracles: tuple, key, n_dirs: int, phi0: float):
    """Random directions: ``n_dirs`` over all coordinates, one per leaf (and the worst failing global one
    restricted to each leaf); a failing leaf is localised by bisection down to single entries.

    Args:
        prob, crit: the problem and criterion.
        cand: the candidate gradient (list of leaves; zeros when only forward mode is checked), or None from
            ``SPLIT_FROM`` coordinates: then ``prob.cand`` is evaluated again for each direction and block
            probed (or, in forward mode only, nothing is), and no gradient is held between calls (a probe holds
            at most two arrays of θ's size in float64).
        oracles: ``("vjp",)``, ``("jvp",)`` or both: which candidates to judge.
        key: PRNG key of the directions.
        n_dirs: global directions.
        phi0: φ(θ).

    Returns:
        ``({oracle: [LeafCheck, ...]}, probes run, problems)``.
    """
    seed = jnp.uint32(int(jax.random.randint(key, (), 0, 2**31 - 1)))
    i64, f64, u32 = jnp.int64, jnp.float64, jnp.uint32
    ops = {"probe": _compiled_probe(prob, "jvp" in oracles, cand, seed)}
    cache, moved = {}, {}

    def moved_dots(kid, lo, hi, t):
        """The candidate's dot products with the direction, the candidate recomputed at θ + tv (reverse mode only;
        compiled on first use: only probes that meet a kink at the point move). Two programs: one that fuses a
        user's gradient with the reduction copies what the gradient updates in place."""
        if "moved" not in ops:
            shift = _make_shift(prob)

            def moved(theta, seed, kid, lo, hi, t):
                return prob.cand(shift(theta, seed, kid, lo, hi, t))

            ops["moved"] = aot(moved, prob, prob.theta, seed, u32(0), i64(0), i64(1), f64(0.0))
            ops["dot"] = aot(_probe_parts(prob)[2], prob, specs(prob.theta), seed, u32(0), i64(0), i64(1))
        there = ops["moved"](prob.theta, seed, u32(kid), i64(lo), i64(hi), f64(t))
        return [float(x) for x in ops["dot"](there, seed, u32(kid), i64(lo), i64(hi))]

    def probe(kid, lo, hi, sigma, t=0.0):
        at = (kid, lo, hi, sigma, t)
        if at not in cache:
            vals, tg, c, cv, vn = ops["probe"](prob.theta, cand, seed, u32(kid), i64(lo), i64(hi), f64(sigma),
                                               f64(t))  # fmt: skip
            tg, c, cv, vn = float(tg), float(c), float(cv), float(vn)
            if t != 0.0 and prob.cand is not None:  # the candidate at the moved point (a probe's steps share it)
                if (kid, lo, hi, t) not in moved:
                    moved[(kid, lo, hi, t)] = moved_dots(kid, lo, hi, t)
                c, cv, vn = moved[(kid, lo, hi, t)]
            elif t != 0.0:
                cv = abs(tg)
            cache[at] = (np.asarray(vals, np.float64), {"vjp": c, "jvp": tg}, cv, vn)
        return cache[at]

    def beside_of(oracle, kid, lo, hi):
        def beside(ix, t):
            _, cs, cv, vn = probe(kid, lo, hi, crit.scales[0] * MOVED_SCALE, t)
            p0 = probe(kid, lo, hi, abs(t))[0][0 if t > 0 else 1]
            return (lambda ix, s: probe(kid, lo, hi, s, t)[0][:, None]), np.array([cs[oracle]]), np.array([cv]), p0

        return beside

    one_step = replace(crit, scales=crit.scales[:1])

    def check(oracle, kid, lo, hi, quick=False):
        """One probe judged over the retries; ``quick``: at the first step only (the blocks of a bisection,
        which only steer it: every entry it reaches is judged in full)."""
        _, cs, cv, vn = probe(kid, lo, hi, 1.0)
        j = judge(lambda ix, s: probe(kid, lo, hi, s)[0][:, None], np.array([cs[oracle]]), np.array([cv]),
                  np.array([vn]), phi0, one_step if quick else crit, sharpen=not quick,
                  beside=None if quick else beside_of(oracle, kid, lo, hi))  # fmt: skip
        return j.status[0], float(j.ref[0]), float(j.c[0]), float(j.err[0]), float(j.tol[0]), bool(j.beside[0])

    out, problems = {}, []
    for oracle in oracles:
        glob = [check(oracle, j, 0, prob.n) for j in range(n_dirs)]
        bad_global = [(g[3] - g[4], j) for j, g in enumerate(glob) if g[0] in (WRONG, NONFINITE)]
        worst = max(bad_global)[1] if bad_global else None
        rows, ratios = [], []
        for li, (path, shape, lo, hi) in enumerate(zip(prob.paths, prob.shapes, prob.offsets, prob.offsets[1:])):
            tries = [n_dirs + li] + ([worst] if worst is not None else [])
            res = [(check(oracle, kid, lo, hi), kid) for kid in tries]
            if worst is not None:
                r = res[-1][0]
                ratios.append(r[3] / r[4] if r[4] > 0 else math.inf)
            if all(r[0] == NONSMOOTH for r, _ in res):  # every probe met a kink it could not be judged beside
                kid = n_dirs + len(prob.sizes) + li
                res.append((check(oracle, kid, lo, hi), kid))
            bad = [(r[3] - r[4], kid, r[0]) for r, kid in res if r[0] in (WRONG, NONFINITE)]
            if bad:
                _, kid, st = max(bad, key=lambda t: t[0])
                first = next(r for r, k in res if k == kid)
                factor = _factor(first, check(oracle, n_dirs + 2 * len(prob.sizes) + li, lo, hi)) if st == WRONG \
                    and hi - lo > LEAF_BLOCK else None  # fmt: skip
                if factor is not None:  # the whole leaf is off by one factor: no entry to look for
                    rows.append(LeafCheck(path, shape, 0, 0, first[3], rel_err(first[3], first[1], first[2]), None,
                                          first[1], first[2], WRONG))  # fmt: skip
                    problems.append(f"{path} is ×{factor:.4g} the reference as a whole (two random directions "
                                    "over the leaf agree on the ratio): a factor, not a few wrong entries")  # fmt: skip
                    continue
                entries = _localise(lambda a, b, q, kid=kid, o=oracle: check(o, kid, a, b, q), lo, hi, prob.h[li])
                rows.append(_localised_row(path, shape, lo, entries, st))
                continue
            smooth = [r for r, _ in res if r[0] == OK]
            nonsmooth = sum(r[0] == NONSMOOTH for r, _ in res)
            beside = sum(r[0] == OK and r[5] for r, _ in res)
            if not smooth:
                r = res[0][0]
                rows.append(LeafCheck(path, shape, 0, 0, math.nan, math.nan, None, r[1], r[2], NONSMOOTH, nonsmooth,
                                      math.inf))  # fmt: skip
                continue
            r = smooth[0]
            rows.append(LeafCheck(path, shape, 0, 0, r[3], rel_err(r[3], r[1], r[2]), None, r[1], r[2], OK,
                                  nonsmooth, _resolution([s[1] for s in smooth], [s[4] for s in smooth],
                                                         np.ones(len(smooth), bool)), beside))  # fmt: skip
        if worst is not None and all(r.passed for r in rows):
            # The error of a random direction over all leaves adds up from leaves each within tolerance.
            top = max(ratios)
            names = [r.path for r, q in zip(rows, ratios) if q >= 0.5 * top]
            rows = [LeafCheck(r.path, r.shape, r.checked, r.failed, r.max_abs_err, r.max_rel_err, r.worst_index,
                              r.reference, r.candidate, WRONG if r.path in names else r.status, r.nonsmooth,
                              r.resolution, r.beside) for r in rows]  # fmt: skip
            g = glob[worst]
            problems.append(f"{'jax.jvp' if oracle == 'jvp' else 'the candidate'} fails along a random direction "
                            f"over all leaves (|Δ| {g[3]:.3e} > tolerance {g[4]:.3e}) while no leaf fails alone: "
                            f"the errors of {', '.join(names)} add up")  # fmt: skip
        out[oracle] = rows
    return out, len(cache), problems


def _factor(one, two) -> float | None:
    """The common ratio candidate/reference of two wrong probes of a leaf along independent random directions
    when they agree within both tolerances (a leaf scaled as a whole), else None."""
    (st1, r1, c1, _, t1, _), (st2, r2, c2, _, t2, _) = one, two
    if st1 != WRONG or st2 != WRONG or r1 == 0 or r2 == 0:
        return None
    q1, q2 = c1 / r1, c2 / r2
    return q1 if abs(q1 - q2) <= t1 / abs(r1) + t2 / abs(r2) else None


def _localise(check, lo: int, hi: int, h: float):
    """Bisect [lo, hi) along the random direction of ``check(a, b, quick)`` restricted to halves, following
    the ``MAX_BRANCHES`` worst failing blocks; returns the entries checked one by one as
    ``(flat index, reference, candidate, status)`` (derivative units)."""
    blocks, out = [(lo, hi)], []
    while blocks:
        nxt = []
        for a, b in blocks:
            if b - a <= LEAF_BLOCK:
                for i in range(a, b):
                    st, ref, c = check(i, i + 1, False)[:3]
                    out.append((i, ref / h, c / h, st))
                continue
            mid = (a + b) // 2
            for s, t in ((a, mid), (mid, b)):
                st, _, _, err, tol = check(s, t, True)[:5]
                if st != OK:  # wrong, non-finite, or a kink that may hide a wrong entry
                    nxt.append((err - tol if np.isfinite(err - tol) else np.inf, s, t))
        blocks = [(s, t) for _, s, t in sorted(nxt, reverse=True)[:MAX_BRANCHES]]
    return out


def _localised_row(path, shape, lo: int, entries, leaf_status) -> LeafCheck:
    """A failing leaf's row from the entries its bisection checked one by one."""
    idx = np.array([e[0] for e in entries], dtype=int) - lo
    refs, cands = np.array([e[1] for e in entries], float), np.array([e[2] for e in entries], float)
    st = np.array([e[3] for e in entries], dtype=object)
    fails = (st == WRONG) | (st == NONFINITE)
    with np.errstate(invalid="ignore"):
        errs = np.abs(cands - refs)
    status = WRONG if leaf_status == WRONG else NONFINITE
    if not fails.any():  # the leaf fails as a whole, no single entry stands out
        return LeafCheck(path, shape, len(entries), 0, float(np.nanmax(errs, initial=0.0)), math.nan, None, math.nan,
                         math.nan, status, int((st == NONSMOOTH).sum()))  # fmt: skip
    k = int(np.argmax(np.where(fails, np.where(np.isnan(errs), np.inf, errs), -np.inf)))
    judged = (st == OK) | (st == WRONG)  # the real |Δ| of the entries judged (not a kink's, not a NaN's)
    emax = float(np.nanmax(np.where(judged, errs, np.nan), initial=0.0)) if judged.any() else math.nan
    rel = rel_err(emax, np.nanmax(np.abs(refs[judged]), initial=0.0), np.nanmax(np.abs(cands[judged]), initial=0.0))
    windex = tuple(int(i) for i in np.unravel_index(int(idx[k]), shape)) if shape else ()
    return LeafCheck(path, shape, len(entries), int(fails.sum()), emax, rel, windex, float(refs[k]), float(cands[k]),
                     status, int((st == NONSMOOTH).sum()))  # fmt: skip


__all__ = ["Criterion", "FULL_CHUNK", "Problem", "STEP", "aot", "direction", "fast", "full", "draw_at", "judge", "trim"]
