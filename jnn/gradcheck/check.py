"""``check_grads``: one call that verifies the derivatives of any JAX function, with a verdict you can trust
and the failing entries and operations named.

The candidate is JAX's derivative of ``f`` (reverse mode, which runs the user's ``custom_vjp`` rules, and
forward mode beside it, which runs ``custom_jvp`` rules), or the user's own ``grad`` function. The reference
is a finite-difference derivative computed in float64 on a float64 copy of the inputs, whatever their dtype
and the global x64 flag. When ``f`` computes in a lower precision itself (a cast to bfloat16 inside), the
reference differentiates its *float64 twin* (the same jaxpr with every float in float64) and the tolerances
follow the low precision; when they are too loose to see a ×1.05 error, the verdict is ``"inconclusive"``.

Array outputs are reduced by a random cotangent u: the check is on φ(x) = ⟨u, f(x)⟩, whose gradient is the
VJP of u. ``order=2`` checks Hessian-vector products: the same machinery on ψ(x) = ⟨∇φ(x), w⟩ for a
random w. How a probe is judged (Richardson's extrapolation, the error bound, kinks, retries) is in
``jnn.gradcheck.probes``; what the verdicts mean in ``jnn.gradcheck.report``.

Before any probe, ``f`` is evaluated twice at the point (and once more from a fresh trace): values that
differ mean ``f`` is not deterministic, and the check refuses to run (noise would inflate the error bound
and let a wrong gradient pass). A non-finite input is refused; a non-finite ``f`` at the point or a
non-finite candidate entry is a FAILED verdict saying where.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import jax
import jax.numpy as jnp
import numpy as np

from jnn import _validate as V
from jnn.gradcheck import jaxpr as J
from jnn.gradcheck import probes as P
from jnn.gradcheck.operations import OP_DIRECTIONS, localise
from jnn.gradcheck.report import NONFINITE, NONSMOOTH, OK, POWER, SURROGATE, WRONG, CheckReport, LeafCheck
from jnn.gradcheck.surrogates import surrogate_note

#: Coordinates up to which ``mode="auto"`` checks every coordinate.
AUTO_FULL_MAX = 5000
#: Random directions of ``mode="fast"``.
FAST_DIRECTIONS = 6
#: Entries of a leaf up to which fast mode checks it coordinate by coordinate when its directions were not
#: enough (kinks, or no power).
LEAF_FULL_MAX = AUTO_FULL_MAX
#: Coordinates from which the candidate's determinism is checked by fingerprints (two gradients are never
#: held at once) rather than by comparing two whole evaluations.
FINGERPRINT_FROM = 10**6
#: Default relative tolerance by the itemsize of the precision f computes in (narrower: 16 unit roundoffs).
RTOL = {8: 1e-6, 4: 1e-3}


def check_grads(
    f: Callable,
    *args,
    argnums: int | Sequence[int] = 0,
    grad: Callable | None = None,
    order: int = 1,
    mode: str = "auto",
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
    directions: int = FAST_DIRECTIONS,
    has_aux: bool = False,
    forward: bool = True,
    localize: str = "on_failure",
    surrogate: Callable | None = (),
) -> CheckReport:
    """Check the derivatives of ``f(*args)`` with respect to ``args[argnums]`` against float64 finite differences.

    Args:
        f: a JAX-traceable function of ``args``, returning a float scalar, an array or a pytree of arrays
            (a dict of heads, a tuple; non-float leaves are left out, with a note), or ``(out, aux)`` with
            ``has_aux=True``; deterministic: fix every PRNG key inside it. Array and pytree outputs are
            reduced by random cotangents (one per output leaf); when such a check fails, each output leaf is
            checked alone and named (``CheckReport.outputs``). When f does not run on a float64 copy of
            its arguments (a scan carry started from a float32 array it closes over), it is checked at its
            own dtypes against its float64 twin (the same operations, control flow included, in float64).
        *args: its arguments, any pytrees (float leaves of the differentiated ones are checked; complex
            leaves there are refused).
        argnums: the argument index (int) or indices (tuple) to differentiate.
        grad: optional ``grad(*args)`` returning the gradient of a scalar ``f`` w.r.t. ``argnums`` (the same
            structure and leaf shapes as those arguments; a tuple for a tuple ``argnums``); default: JAX's
            derivative.
        order: 1 (gradients) or 2 (Hessian-vector products).
        mode: ``"full"`` (every coordinate), ``"fast"`` (random directions, then localisation) or
            ``"auto"`` (full up to ``AUTO_FULL_MAX`` coordinates).
        rtol: relative tolerance on top of the finite-difference error bound (default 1e-6 when f computes
            in float64, 1e-3 in float32, 16 unit roundoffs in float16/bfloat16).
        atol: absolute tolerance per unit length of a probe (default 0).
        seed: seed of the random directions and cotangents.
        directions: random directions over all leaves in fast mode (≥ 1).
        has_aux: ``f`` returns ``(out, aux)``; aux is ignored.
        forward: also check forward mode (``jax.jvp``) beside reverse mode (default True; order 1, JAX's
            derivative only). When reverse mode is not implemented (a ``custom_jvp`` rule JAX cannot
            transpose), forward mode is checked instead, and the report says so.
        localize: ``"on_failure"`` (default), ``"always"`` or ``"never"``: check the derivative of each
            operation of ``f``'s jaxpr (custom_vjp/custom_jvp rules, ``jax.jit`` functions, ``jax.named_scope``
            blocks, also inside checkpoint/remat, scan, fori/while loops and cond) at the inputs it received,
            to name the wrong one (``CheckReport.operations``).
        surrogate: paths of leaves whose gradient is an intended surrogate (a straight-through estimator:
            f is locally constant there, its JAX derivative is not), e.g. ``["args[0]['w']"]``: they are
            reported with status ``"surrogate"`` and never judged. A failing leaf that looks like one gets a
            note naming the ``stop_gradient``/``round``/integer cast on its path.

    Returns:
        A ``CheckReport``: ``.verdict`` (``"passed"``, ``"failed"``, ``"inconclusive"``), ``.passed``,
        ``.leaves``, ``.operations``, ``str(report)``.

    Raises:
        TypeError, ValueError: a non-callable ``f``, bad ``argnums``/``order``/``mode``/tolerances, no float
            leaves to differentiate, a complex or non-finite differentiated leaf, ``grad`` returning another
            structure or shapes, or an ``f`` that is not deterministic (each naming the argument).
    """
    if not callable(f):
        raise TypeError(f"f must be a callable; got {type(f).__name__}")
    nums = _check_argnums(argnums, len(args))
    if order not in (1, 2) or isinstance(order, bool):
        raise ValueError(f"order must be 1 or 2; got {order!r}")
    V.check_choice("mode", mode, ["auto", "full", "fast"])
    V.check_choice("localize", localize, ["on_failure", "always", "never"])
    if grad is not None and not callable(grad):
        raise TypeError(f"grad must be a callable or None; got {type(grad).__name__}")
    for name, v in (("has_aux", has_aux), ("forward", forward)):
        if not isinstance(v, bool):
            raise TypeError(f"{name} must be True or False; got {v!r}")
    V.check_int("seed", seed, low=0)
    V.check_int("directions", directions, low=1)
    if rtol is not None:
        V.check_real("rtol", rtol, low=0.0)
    if atol is not None:
        V.check_real("atol", atol, low=0.0)
    if has_aux:
        f = _drop_aux(f)
    # The float64 copy of the arguments meets the float32 arrays f closes over: standard promotion makes it float64.
    with jax.enable_x64(True), jax.numpy_dtype_promotion("standard"):
        return check_point(f, args, nums, isinstance(argnums, tuple), grad=grad, order=order, mode=mode,
                           rtol=rtol, atol=atol, seed=seed, n_dirs=directions, forward=forward,
                           localize=localize, surrogate=_check_surrogate(surrogate))  # fmt: skip


def _drop_aux(f):
    def main(*a):
        out = f(*a)
        if not isinstance(out, (tuple, list)) or len(out) != 2:
            raise TypeError(f"has_aux=True needs f to return (out, aux); got {type(out).__name__}")
        return out[0]

    return main


def _check_argnums(argnums, n: int) -> tuple:
    nums = argnums if isinstance(argnums, tuple) else (argnums,)
    if not nums or any(isinstance(a, bool) or not isinstance(a, int) or not 0 <= a < n for a in nums):
        raise ValueError(f"argnums must be an int or a tuple of ints in [0, {n - 1}] (f gets {n} args); "
                         f"got {argnums!r}")  # fmt: skip
    if len(set(nums)) != len(nums):
        raise ValueError(f"argnums must not repeat an index; got {argnums!r}")
    return nums


def _is_float(l) -> bool:
    return hasattr(l, "dtype") and jnp.issubdtype(l.dtype, jnp.floating) or isinstance(l, float)


def _is_complex(l) -> bool:
    return hasattr(l, "dtype") and jnp.issubdtype(l.dtype, jnp.complexfloating) or isinstance(l, complex)


def _to64(tree):
    """A float64 copy of the float leaves (float64 arrays are taken as they are: nothing copies them)."""

    def cast(l):
        if isinstance(l, jax.Array) and l.dtype == jnp.float64:
            return l
        return jnp.asarray(np.asarray(l, np.float64)) if _is_float(l) else l

    return jax.tree.map(cast, tree)


def _stored(leaf):
    """A checked leaf as the check keeps it: the user's array itself (a device array of its own dtype)."""
    return leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf)


def _caller(f, base_args, nums, treedef, leaves, checked, dtypes=None):
    """``call(xs)``: f with the checked leaves ``xs`` put back into its arguments (cast to ``dtypes`` when
    given: f at its own precision)."""

    def call(xs):
        full_leaves = list(leaves)
        for j, (k, x) in enumerate(zip(checked, xs)):
            full_leaves[k] = x if dtypes is None else x.astype(dtypes[j])
        full = list(base_args)
        for i, v in zip(nums, jax.tree.unflatten(treedef, full_leaves)):
            full[i] = v
        return f(*full)

    return call


def _traced(f, args, args64, nums, treedef, leaves, own_leaves, checked, dtypes, theta, notes):
    """``(call, out shapes, own)``: f on the float64 copy of its arguments, or, when that copy breaks f's program
    (a scan carry started from a float32 array f closes over), f at its own dtypes (its float64 twin is then
    the reference)."""
    call = _caller(f, args64, nums, treedef, leaves, checked)
    try:
        return call, jax.eval_shape(call, theta), False
    except Exception as err:
        if isinstance(err, TypeError) and "has_aux" in str(err):
            raise
        first = err
    own = _caller(f, args, nums, treedef, own_leaves, checked, dtypes)
    try:
        out = jax.eval_shape(own, theta)
    except Exception:
        raise ValueError(f"f(*args) failed: {type(first).__name__}: {first}") from None
    why = f"{type(first).__name__}: {_first_line(first).rstrip(':')}"
    own_dtypes = ", ".join(sorted({str(d) for d in dtypes}))
    notes.append(f"f does not run on a float64 copy of its arguments ({why}): it is checked at its own dtypes "
                 f"({own_dtypes})")  # fmt: skip
    return own, out, True


def _reduced(call, out, key, *, tuple_out: bool, notes: list):
    """``(φ, output paths, float output indices)``: φ(θ) = Σ ⟨u_k, out_k⟩ over the float leaves of f's output
    (a scalar output is φ itself), with random normal cotangents u_k drawn from ``key``; the paths name the
    leaves (``out['box']``, ``out[0]``; ``out`` for a single array)."""
    flat = jax.tree_util.tree_flatten_with_path(out)[0]
    paths = ["out" + jax.tree_util.keystr(p) for p, _ in flat]
    floats = [k for k, (_, o) in enumerate(flat) if hasattr(o, "dtype") and jnp.issubdtype(o.dtype, jnp.floating)]
    if not floats:
        raise TypeError(f"f must return float arrays (a scalar, an array or a pytree of them); got {out}")
    skipped = [paths[k] for k in range(len(flat)) if k not in floats]
    if skipped:
        notes.append(f"outputs not differentiated (not float): {', '.join(skipped)}")
    if tuple_out and len(flat) == 2:
        notes.append("f returns a pair: both are checked as outputs; if the second is auxiliary data, pass "
                      "has_aux=True")  # fmt: skip
    us = {k: jax.random.normal(jax.random.fold_in(key, k), flat[k][1].shape, jnp.float64) for k in floats}
    if len(flat) == 1 and not flat[0][1].shape:
        return (lambda xs: call(xs).astype(jnp.float64)), paths, floats

    def phi(xs):
        got = jax.tree.leaves(call(xs))
        return sum(jnp.sum(us[k] * got[k].astype(jnp.float64)) for k in floats)

    return phi, paths, floats


def _first_bad(a) -> tuple:
    a = np.asarray(a)
    k = int(np.flatnonzero(~np.isfinite(a))[0])
    return tuple(int(i) for i in np.unravel_index(k, a.shape)) if a.ndim else ()


@dataclass
class _Run:
    """What the steps of one check share: the checked leaves, φ, the reference φ, the candidate, notes."""

    args: tuple
    nums: tuple
    tuple_nums: bool
    paths: list
    stored: list
    notes: list = field(default_factory=list)
    problems: list = field(default_factory=list)
    keys: tuple = ()
    call: object = None
    phi: object = None
    phi1: object = None
    fd_phi: object = None
    out_paths: list = field(default_factory=list)
    out_floats: list = field(default_factory=list)
    low: object = None
    eps_fd: float = 0.0
    step: float = 0.0
    name: str = ""
    cand_fn: object = None
    cand_lowered: object = None
    reverse: bool = True
    with_jvp: bool = False
    prob: object = None
    base: dict = field(default_factory=dict)
    user_tol: tuple = (None, None)
    phi0: float = 0.0

    @property
    def theta(self) -> list:
        """The point in float64: lifted from ``stored`` (the user's own arrays, at their dtypes) on each use,
        so that no float64 copy of a float32 model outlives the call that needs it (a no-op for float64)."""
        return P.lift(self.stored)

    @property
    def eps_c(self) -> float:
        """The unit roundoff of the precision the candidate is computed in."""
        return float(jnp.finfo(self.low).eps)


def check_point(f, args, nums, tuple_nums, *, grad, order, mode, rtol, atol, seed, n_dirs, forward, localize,
                surrogate=frozenset()):  # fmt: skip
    """``check_grads`` after validation, inside x64 mode (also used on single operations), in named steps:
    the inputs and φ (``_setup``), the reference (``_reference``), the candidate
    (``_candidate``), f at the point (``_at_point``), the probes (``_probes``), the judgement
    (``_judgement``) and the localisation of outputs and operations (``_localisation``)."""
    run = _setup(f, args, nums, tuple_nums, grad, seed)
    unknown = sorted(surrogate - set(run.paths))  # refused before any work
    if unknown:
        raise ValueError(f"surrogate names leaves f does not have: {unknown}; the checked leaves are {run.paths}")
    _reference(run, order)
    _candidate(run, grad, forward, order)
    early = _at_point(run, mode, order, rtol, atol)
    if early is not None:
        return early
    got, count, bad_rows = _probes(run, grad, mode == "full" or (mode == "auto" and run.prob.n <= AUTO_FULL_MAX),
                                   n_dirs)  # fmt: skip
    report = _judgement(run, got, count, bad_rows, surrogate)
    if report.wrong and len(run.out_floats) > 1:  # name the wrong outputs: each checked alone
        per = []
        for k in run.out_floats:
            alone = check_point(lambda *a, k=k: jax.tree.leaves(f(*a))[k], args, nums, tuple_nums, grad=None,
                                order=order, mode=mode, rtol=rtol, atol=atol, seed=seed, n_dirs=n_dirs,
                                forward=forward, localize="never")  # fmt: skip
            per.append((run.out_paths[k], alone.verdict))
        report = _with(report, outputs=tuple(per))
    if localize == "always" or (localize == "on_failure" and report.wrong):
        return _localisation(run, report, grad, order, seed)
    return report


def _setup(f, args, nums, tuple_nums, grad, seed) -> _Run:
    """The checked leaves (validated), f on them (``_traced``), φ (``_reduced``), the precision f
    computes in, and a user's ``grad`` (which may lower it)."""
    diff = tuple(args[i] for i in nums)
    flat, treedef = jax.tree_util.tree_flatten_with_path(diff)
    paths_all = [f"args[{nums[p[0].idx]}]{jax.tree_util.keystr(p[1:])}" for p, _ in flat]
    checked = _checked_leaves(flat, paths_all, nums)
    own_leaves = [l for _, l in flat]
    dtypes = [jnp.result_type(own_leaves[k]) for k in checked]
    run = _Run(args, nums, tuple_nums, [paths_all[k] for k in checked], [_stored(own_leaves[k]) for k in checked],
               keys=tuple(jax.random.split(jax.random.key(seed), 3)))  # fmt: skip
    # The float64 copies of f's other arguments; the checked leaves' places stay empty (the caller fills them), so
    # that no float64 copy of the point is kept by a closure.
    args64 = [None if i in nums else _to64(a) for i, a in enumerate(args)]
    leaves = [None if k in checked else _to64(l) for k, (_, l) in enumerate(flat)]
    run.call, out, own = _traced(f, args, args64, nums, treedef, leaves, own_leaves, checked, dtypes, run.theta,
                                 run.notes)  # fmt: skip
    tuple_out = isinstance(out, (tuple, list))
    run.phi, run.out_paths, run.out_floats = _reduced(run.call, out, run.keys[0], tuple_out=tuple_out, notes=run.notes)
    scalar = hasattr(out, "shape") and out.shape == ()
    run.name = "jax.grad" if scalar else "jax.vjp"
    cj = J.closed(run.phi, run.theta)
    run.low = J.lowest_float(cj.jaxpr, live=cj.jaxpr.invars) or jnp.dtype(jnp.float64)
    if grad is not None:
        if not scalar:
            raise ValueError(f"grad= is for scalar f; f returns {_shapes(out)} (check its JAX derivative instead)")
        run.cand_fn, cand_dtype = _user_grad(grad, args if own else args64, nums, tuple_nums, treedef,
                                             own_leaves if own else leaves, checked, P.specs(run.stored), run.paths,
                                             dtypes if own else None)  # fmt: skip
        run.name = "grad="
        if cand_dtype.itemsize < run.low.itemsize:
            run.low = cand_dtype
    return run


def _checked_leaves(flat, paths_all, nums) -> list:
    """Indices of the float leaves to check; complex, empty-of-floats and non-finite inputs refused by name."""
    for path, (_, l) in zip(paths_all, flat):
        if _is_complex(l):
            raise TypeError(f"{path} is {jnp.result_type(l)}: check_grads checks real leaves only; split it into "
                            "real and imaginary parts (jnp.real/jnp.imag) or leave it out of argnums")  # fmt: skip
    checked = [k for k, (_, l) in enumerate(flat) if _is_float(l) and np.size(l)]
    if not checked:
        kinds = sorted({str(np.asarray(l).dtype) if hasattr(l, "dtype") else type(l).__name__ for _, l in flat})
        raise ValueError(f"args[{nums[0] if len(nums) == 1 else nums}] must hold float arrays to differentiate; "
                         f"got {', '.join(kinds) or 'no arrays'}")  # fmt: skip
    for k in checked:
        a = np.asarray(flat[k][1])
        if not np.isfinite(a).all():
            raise ValueError(f"{paths_all[k]} holds a non-finite value ({a[_first_bad(a)]} at index "
                             f"{list(_first_bad(a))}): the check needs a finite point")  # fmt: skip
    return checked


def _reference(run: _Run, order: int) -> None:
    """The φ the finite differences evaluate: f itself, or its float64 twin when f computes in less."""
    precision = str(run.low)
    run.fd_phi, run.eps_fd, run.step = run.phi, float(jnp.finfo(jnp.float64).eps), P.STEP[8]
    if run.low.itemsize < 8 and order == 1:
        try:
            run.fd_phi = J.twin(run.phi, run.theta)
            run.notes.append(f"f computes in {precision}: the reference differentiates its float64 twin (the same "
                             f"operations in float64); tolerances follow {precision}")  # fmt: skip
        except Exception as err:  # an open sub-jaxpr the twin cannot promote
            run.fd_phi, run.eps_fd, run.step = run.phi, run.eps_c, P.STEP.get(run.low.itemsize, 2e-3)
            run.notes.append(f"f computes in {precision} and has no float64 twin ({type(err).__name__}): the "
                             f"reference differentiates f itself, with {precision} rounding in its error "
                             "bound")  # fmt: skip


def _candidate(run: _Run, grad, forward: bool, order: int) -> None:
    """The candidate: reverse mode, or forward mode where reverse mode is not implemented (and forward mode
    beside it); for ``order=2`` the Hessian-vector product ψ = ⟨∇φ, w⟩ takes φ's place."""
    if grad is None:
        run.cand_fn = jax.grad(run.phi)
        try:
            run.cand_lowered = jax.jit(run.cand_fn).lower(run.theta)  # compiled later: traced once
        except Exception as err:  # NotImplementedError (or JAX's AssertionError) of a rule it cannot transpose
            run.reverse, run.name = False, "jax.jvp"
            run.notes.append(f"reverse mode is not implemented for f ({type(err).__name__}: {_first_line(err)}): "
                             "checked forward mode (jax.jvp) instead")  # fmt: skip
    run.with_jvp = grad is None and (forward or not run.reverse)
    if run.with_jvp and not run.reverse:
        phi = run.phi
        try:
            jax.jit(lambda t: jax.jvp(phi, (t,), (t,))[1]).lower(run.theta)  # custom_vjp fails only when lowered
        except Exception as err:  # e.g. a custom_vjp function has no forward mode
            raise ValueError(f"f can be differentiated in neither reverse nor forward mode: {run.notes[-1]}; "
                             f"forward mode: {type(err).__name__}: {_first_line(err)}") from None  # fmt: skip
    run.phi1 = run.phi
    if order == 2:
        ws = [jax.random.normal(jax.random.fold_in(run.keys[1], j), x.shape, jnp.float64)
              for j, x in enumerate(run.theta)]  # fmt: skip
        if run.reverse:
            first = run.cand_fn
            run.phi = lambda xs: sum(jnp.vdot(g, w) for g, w in zip(first(xs), ws))  # ψ = ⟨∇φ, w⟩
            run.cand_fn, run.cand_lowered = jax.grad(run.phi), None
        else:
            first_phi = run.phi
            run.phi = lambda xs: jax.jvp(first_phi, (xs,), (ws,))[1]  # ψ = ∂φ/∂w
        run.fd_phi, run.name, run.with_jvp = run.phi, f"hvp of {run.name}", not run.reverse


def _at_point(run: _Run, mode: str, order: int, rtol, atol) -> CheckReport | None:
    """The probing problem, the tolerances, and f at the point: finite (else a FAILED report, returned) and
    deterministic (else ValueError), before any probe."""
    theta = run.theta
    sizes = [int(np.size(x)) for x in theta]
    rms = jax.jit(lambda x: jnp.sqrt(jnp.mean(jnp.asarray(x, jnp.float64) ** 2)))  # fused: no copy of a leaf
    run.prob = P.Problem(run.phi, run.fd_phi, run.stored, run.paths, [tuple(np.shape(x)) for x in theta], sizes,
                         [0, *np.cumsum(sizes).tolist()],
                         [run.step * (1.0 + float(rms(x))) for x in run.stored])  # fmt: skip
    phi_c = P.aot(run.phi, run.prob, theta)
    v1, v2 = float(phi_c(theta)), float(phi_c(theta))
    run.phi0 = v1
    full = mode == "full" or (mode == "auto" and run.prob.n <= AUTO_FULL_MAX)
    run.user_tol = (rtol, atol)
    rtol = RTOL.get(run.low.itemsize, 16 * run.eps_c) if rtol is None else float(rtol)
    run.base = dict(mode="full" if full else "fast", order=order, candidate=run.name, precision=str(run.low),
                    rtol=rtol, atol=0.0 if atol is None else float(atol))  # fmt: skip
    if not math.isfinite(v1):
        run.problems.append(_nonfinite_f(run.call, theta, v1))
        return CheckReport([], directions=0, notes=tuple(run.notes), problems=tuple(run.problems),
                           resolution=math.inf, buffer_bytes=run.prob.buffer_bytes, **run.base)  # fmt: skip
    phi = run.phi
    v3 = float(jax.jit(lambda xs: phi(xs))(theta))  # a fresh trace: catches randomness drawn while tracing
    if v1 != v2 or abs(v3 - v1) > 4 * run.eps_c * abs(v1):
        raise ValueError(f"f is not deterministic: evaluated at the same point it gave {v1!r}, {v2!r} and "
                         f"{v3!r}; fix every PRNG key inside f (pass a fixed jax.random.key) and avoid host "
                         "callbacks or NumPy random numbers drawn inside it")  # fmt: skip
    return None


def _candidate_values(run: _Run, grad, keep: bool) -> tuple[list | None, dict]:
    """The candidate at the point, checked for determinism and finiteness over every entry (fast mode too):
    ``(per-leaf arrays with non-finite entries zeroed, {leaf: non-finite row})``; the arrays are None when not
    ``keep`` (fast mode from ``jnn.gradcheck.probes.SPLIT_FROM`` coordinates, which recomputes the
    candidate where it needs it rather than hold it). From ``FINGERPRINT_FROM`` entries the two
    evaluations are compared by fingerprint, one after the other: never two gradients held."""
    prob, bad_rows = run.prob, {}
    if not run.reverse:  # forward mode only: no candidate gradient (zeros where held, for full mode's rows)
        return ([jnp.zeros(x.shape, jnp.float64) for x in prob.theta] if keep else None), bad_rows
    cand_c = P.aot(run.cand_fn, prob, P.specs(run.stored), lowered=run.cand_lowered)
    if prob.n >= FINGERPRINT_FROM:
        print_c = P.aot(lambda g: _fingerprint(prob, g), prob, P.specs(run.stored))
        P.trim()  # the compilers' heap, given back before the candidate is held
        first = np.asarray(print_c(cand_c(run.theta)))
        cand = cand_c(run.theta)
        same = np.array_equal(first, np.asarray(print_c(cand)))
    else:  # small: two whole evaluations (no fingerprint to compile)
        cand = cand_c(run.theta)
        same = all(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True) for a, b in zip(cand_c(run.theta),
                                                                                               cand))  # fmt: skip
    if not same:
        what = "grad" if grad is not None else "the derivative of f"
        raise ValueError(f"{what} is not deterministic: two evaluations at the same point differ; fix every "
                         "PRNG key inside it and avoid host callbacks")  # fmt: skip
    prob.cand = run.cand_fn
    cand = list(cand)
    for li, c in enumerate(cand):
        fin = np.isfinite(np.asarray(c))
        if not fin.all():
            idx = _first_bad(c)
            val = float(np.asarray(c)[idx])
            bad_rows[li] = LeafCheck(run.paths[li], prob.shapes[li], int(fin.size), int((~fin).sum()), math.nan,
                                     math.nan, idx, math.nan, val, NONFINITE)  # fmt: skip
            run.problems.append(f"the candidate ({run.name}) is {val} at {run.paths[li]}{list(idx)} "
                                f"({int((~fin).sum())} of {fin.size} entries non-finite)")  # fmt: skip
            cand[li] = jnp.where(jnp.isfinite(c), c, 0.0)
    return (cand if keep else None), bad_rows


def _fingerprint(prob, leaves):
    """``[weighted sum, count of non-finite entries]`` of a gradient: two evaluations that agree on it agree
    (the weights are ``jnn.gradcheck.probes.draw_at``'s draws, summed block by block: nothing of the
    gradient's size is made beside it)."""

    def parts(g, idx):
        g, w = jnp.asarray(g, jnp.float64), P.draw_at(jnp.uint32(12345), jnp.uint32(0), idx)
        return jnp.where(jnp.isfinite(g), g * w, 0.0), (~jnp.isfinite(g)).astype(jnp.float64)

    return jnp.stack(P.blockwise(leaves, prob.offsets, parts, 2))


def _probes(run: _Run, grad, full: bool, n_dirs: int):
    """The candidate's values, then the probes of full or fast mode (forward mode beside reverse mode dropped,
    with a note, when it does not compile): ``({oracle: rows}, probes run, {leaf: non-finite row})``."""
    cand, bad_rows = _candidate_values(run, grad, keep=full or run.prob.n < P.SPLIT_FROM)
    phi0 = run.phi0 if run.fd_phi is run.phi else float(P.aot(run.fd_phi, run.prob, run.theta)(run.theta))
    eps_c, b = run.eps_c, run.base
    crit = P.Criterion(run.eps_fd, eps_c, b["rtol"], b["atol"],
                       (1.0, 1 / 8, 1 / 64, 1 / 512) if run.eps_fd < 1e-10 else (1.0, 1 / 8))  # fmt: skip
    primary = "vjp" if run.reverse else "jvp"
    oracles = (primary,) + (("jvp",) if run.with_jvp and run.reverse else ())
    try:
        got, count, more = _probe(run.prob, crit, cand, oracles, full, run.reverse, run.keys[2], n_dirs, phi0)
    except Exception as err:  # forward mode beside reverse mode fails to compile (e.g. a custom_vjp inside f)
        if len(oracles) == 1:
            raise
        why = ("f uses a custom_vjp function, which has no forward mode" if "custom_vjp" in str(err)
               else f"{type(err).__name__}: {_first_line(err)}")  # fmt: skip
        run.notes.append(f"forward mode not checked: {why}")
        got, count, more = _probe(run.prob, crit, cand, oracles[:1], full, run.reverse, run.keys[2], n_dirs, phi0)
    run.problems += more
    return got, count, bad_rows


def _judgement(run: _Run, got: dict, count: int, bad_rows: dict, surrogate) -> CheckReport:
    """The report from the probes' rows: non-finite candidates and references, surrogates, the resolution
    (max over every judged leaf, non-smooth ones included: theirs is inf)."""
    primary = "vjp" if run.reverse else "jvp"
    rows = [bad_rows.get(li, r) for li, r in enumerate(got[primary])]
    fwd = tuple(got["jvp"]) if primary == "vjp" and "jvp" in got else None
    run.problems += _nonfinite_reference(rows)
    rows, fwd = _surrogates(rows, fwd, surrogate, run.phi1, run.theta, run.notes)
    res = [r.resolution for r in rows if r.status in (OK, NONSMOOTH)]
    return CheckReport(rows, directions=count, notes=tuple(run.notes), problems=tuple(run.problems), forward=fwd,
                       resolution=max(res) if res else math.inf, buffer_bytes=run.prob.buffer_bytes,
                       **run.base)  # fmt: skip


def _localisation(run: _Run, report: CheckReport, grad, order: int, seed: int) -> CheckReport:
    """The operations of f checked one by one at their inputs (``jnn.gradcheck.operations.localise``)."""
    if grad is not None:
        return _with(report, notes=(*report.notes, "operations are not localised for a grad= candidate (it is "
                                                   "not JAX's derivative of f)"))  # fmt: skip
    t0 = time.perf_counter()
    ops, more_notes = localise(run.phi1, run.theta, check=_check_op, order=order, seed=seed, rtol=run.user_tol[0],
                               atol=run.user_tol[1])  # fmt: skip
    return _with(report, operations=tuple(ops), notes=(*report.notes, *more_notes),
                 extra={"localize_seconds": time.perf_counter() - t0})  # fmt: skip


def _check_surrogate(surrogate) -> frozenset:
    if isinstance(surrogate, str) or not all(isinstance(p, str) for p in surrogate):
        raise TypeError(f"surrogate must be a list of leaf paths (str), e.g. [\"args[0]['w']\"]; got {surrogate!r}")
    return frozenset(surrogate)


def _surrogates(rows, fwd, surrogate, phi, theta, notes):
    """Mark the user's surrogate leaves (never judged) and note the failing leaves that look like one."""
    mark = lambda r: replace(r, status=SURROGATE) if r.path in surrogate else r  # noqa: E731
    rows = [mark(r) for r in rows]
    fwd = None if fwd is None else tuple(mark(r) for r in fwd)
    for li, r in enumerate(rows):
        if r.status == WRONG and abs(r.reference) <= 1e-9 * abs(r.candidate):
            note = surrogate_note(phi, theta, li, r.path)
            if note:
                notes.append(note)
    return rows, fwd


def _check_op(fn, xs, *, order, seed, rtol, atol) -> CheckReport:
    """One operation of f checked at its inputs ``xs`` (``fn`` of their list): the same check as f's."""
    return check_point(fn, (xs,), (0,), False, grad=None, order=order, mode="auto", rtol=rtol, atol=atol, seed=seed,
                       n_dirs=OP_DIRECTIONS, forward=True, localize="never")  # fmt: skip


def _probe(prob, crit, cand, oracles, full, reverse, key, n_dirs, phi0):
    """Full or fast mode: ``({oracle: rows}, probes run, problems)``. In fast mode a leaf whose random
    directions met kinks they could not be judged beside, or lack the power to see a ×1.05 error (low
    precision, an unlucky direction), is checked coordinate by coordinate when small enough
    (``LEAF_FULL_MAX`` entries, ``jnn.gradcheck.probes.SPLIT_FROM`` in all): as full mode would."""
    if full:
        cands = {"vjp": [np.asarray(c, np.float64).ravel() for c in cand]} if reverse else {}
        return P.full(prob, crit, cands, "jvp" in oracles, phi0), prob.n, []
    got, count, problems = P.fast(prob, crit, cand, oracles, key, n_dirs, phi0)
    for li in range(len(prob.sizes)):
        rows = [got[o][li] for o in oracles]
        weak = any(r.status == NONSMOOTH or (r.status == OK and not r.resolution < POWER) for r in rows)
        if weak and all(r.passed for r in rows) and prob.sizes[li] <= LEAF_FULL_MAX and prob.n < P.SPLIT_FROM:
            sub = P.full(_leaf_problem(prob, li), crit, {"vjp": [np.asarray(cand[li], np.float64).ravel()]}
                         if reverse else {}, "jvp" in oracles, phi0)  # fmt: skip
            for o in oracles:
                got[o][li] = sub[o][0]
            count += prob.sizes[li]
    return got, count, problems


def _leaf_problem(prob, li: int):
    """The problem restricted to leaf ``li`` (the other leaves fixed at the point), for a full-mode check of
    that leaf alone."""
    point = P.lift(prob.theta)

    def on(fn, pick=False):
        def g(xs):
            full = list(point)
            full[li] = xs[0]
            out = fn(full)
            return [out[li]] if pick else out

        return g

    return P.Problem(on(prob.phi), on(prob.fd_phi), [point[li]], [prob.paths[li]], [prob.shapes[li]],
                     [prob.sizes[li]], [0, prob.sizes[li]], [prob.h[li]],
                     cand=None if prob.cand is None else on(prob.cand, pick=True))  # fmt: skip


def _with(report: CheckReport, **changes) -> CheckReport:
    return replace(report, **changes)


def _first_line(err) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _shapes(out) -> str:
    """``shape (3,)`` for an array output, ``{'box': (4,), 'cls': ()}``-like text for a pytree."""
    if hasattr(out, "shape"):
        return f"shape {tuple(out.shape)}"
    return str(jax.tree.map(lambda o: tuple(getattr(o, "shape", ())), out))


def _nonfinite_f(call, theta, value) -> str:
    """Where f is not finite at the point: the output leaf and entry, and the first equation producing it."""
    got = jax.jit(call)(theta)
    where = ""
    for path, o in jax.tree_util.tree_flatten_with_path(got)[0]:
        o = np.asarray(o)
        if o.dtype.kind == "f" and not np.isfinite(o).all():
            name = "output" if not path else f"out{jax.tree_util.keystr(path)}"
            where = f" ({name} entry {list(_first_bad(o))})" if o.ndim or path else ""
            break
    text = f"f is {value} at the point{where}: no derivative to check there"
    try:
        first = J.first_nonfinite(call, theta)
    except Exception:  # the interpreter could not replay f: say what is known
        first = None
    if first is not None:
        text += (f"; the first non-finite value comes from `{first.primitive}` (jaxpr eqn {first.eqn}"
                 + (f", called from {first.source})" if first.source else ")"))  # fmt: skip
    return text


def _nonfinite_reference(rows) -> list:
    return [f"f is not finite next to the point along {r.path} at every step tried: the finite-difference reference "
            "is undefined there" for r in rows if r.status == NONFINITE and math.isnan(r.reference)
            and not math.isinf(r.max_abs_err)]  # fmt: skip


def _user_grad(grad, args64, nums, tuple_nums, structure, ins0, checked, specs, paths, dtypes=None):
    """The user's ``grad`` over the checked leaves (float64; cast to ``dtypes`` first when given: f checked
    at its own dtypes), validated for structure and shapes. ``structure`` and ``ins0``: the differentiated
    arguments' treedef and leaves (the checked ones filled in from the point); ``specs``: the point's shapes."""

    def cand(xs):
        full = list(args64)
        ins = list(ins0)
        for j, (k, x) in enumerate(zip(checked, xs)):
            ins[k] = x if dtypes is None else x.astype(dtypes[j])
        for i, v in zip(nums, jax.tree.unflatten(structure, ins)):
            full[i] = v
        g = grad(*full)
        g = tuple(g) if tuple_nums and isinstance(g, (tuple, list)) else (g,)
        if jax.tree.structure(g) != structure:
            raise TypeError(f"grad must return the structure of args{list(nums) if tuple_nums else [nums[0]]}: "
                            f"{structure}; got {jax.tree.structure(g)}")  # fmt: skip
        gl = jax.tree.leaves(g)
        for j, k in enumerate(checked):
            if tuple(np.shape(gl[k])) != tuple(xs[j].shape):
                raise ValueError(f"grad must return arrays of the arguments' shapes: {paths[j]} has shape "
                                 f"{tuple(xs[j].shape)}, grad returned {tuple(np.shape(gl[k]))}")  # fmt: skip
        return [gl[k] for k in checked]

    shapes = jax.eval_shape(cand, specs)
    dts = [jnp.dtype(s.dtype) for s in shapes if jnp.issubdtype(s.dtype, jnp.floating)]
    low = min(dts, key=lambda d: d.itemsize) if dts else jnp.dtype(jnp.float64)
    return (lambda xs: [jnp.asarray(c, jnp.float64) for c in cand(xs)]), low


__all__ = ["AUTO_FULL_MAX", "FAST_DIRECTIONS", "check_grads"]
