"""Reading ``f``'s jaxpr: the lowest precision it computes in, its float64 twin, the first equation that
produces a non-finite value, and the operations (custom rules, ``jax.jit`` functions, named scopes) whose
derivatives ``jnn.gradcheck.operations`` checks one by one.

All of it is one small interpreter, ``run``, that evaluates a jaxpr equation by equation the way
``jax.core.eval_jaxpr`` does (``primitive.bind`` with the equation's parameters), so what it evaluates is
differentiable by JAX and runs the user's custom rules.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import source_info_util
from jax.extend.core import ClosedJaxpr, Jaxpr, Literal

#: Primitives that call a sub-jaxpr with the caller's values (evaluated inline by the interpreter).
CALLS = ("jit", "pjit", "closed_call", "core_call", "remat", "remat2", "checkpoint")
#: Control flow the interpreter enters with ``enter_control`` (scan and while step by step, cond's branch taken).
CONTROL = ("scan", "while", "cond")
#: Primitives of custom differentiation rules (checked as one operation).
CUSTOM = ("custom_vjp_call", "custom_jvp_call", "custom_vjp_call_jaxpr")


def _sub(eqn):
    """The sub-jaxpr of a call or custom-rule equation as ``(jaxpr, consts)``, or None."""
    for key in ("jaxpr", "call_jaxpr", "fun_jaxpr"):
        j = eqn.params.get(key)
        if isinstance(j, ClosedJaxpr):
            return j.jaxpr, j.consts
        if isinstance(j, Jaxpr):
            return j, ()
    return None


def _subjaxprs(params):
    for v in params.values():
        for j in v if isinstance(v, (tuple, list)) else (v,):
            if isinstance(j, ClosedJaxpr):
                yield j.jaxpr
            elif isinstance(j, Jaxpr):
                yield j


def lowest_float(jaxpr, live=None) -> np.dtype | None:
    """The narrowest float dtype among the values the jaxpr's equations compute (sub-jaxprs included).

    Args:
        jaxpr: a ``Jaxpr``.
        live: the invars the values must depend on to count (default: every equation counts).
    """
    low = None
    live = None if live is None else set(live)
    for eqn in jaxpr.eqns:
        if live is not None:
            if not any(not isinstance(v, Literal) and v in live for v in eqn.invars):
                continue
            live.update(eqn.outvars)
        for v in eqn.outvars:
            dt = getattr(getattr(v, "aval", None), "dtype", None)
            if dt is not None and jnp.issubdtype(dt, jnp.floating):
                if low is None or jnp.dtype(dt).itemsize < low.itemsize:
                    low = jnp.dtype(dt)
        for sub in _subjaxprs(eqn.params):
            d = lowest_float(sub)
            if d is not None and (low is None or d.itemsize < low.itemsize):
                low = d
    return low


#: jnn's own package folder: its frames are never the user's call site.
_JNN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def source(eqn) -> str:
    """``file.py:line`` of the user's call that made ``eqn``: the innermost frame outside JAX and outside jnn
    ("" when JAX recorded none)."""
    try:
        frames = list(source_info_util.user_frames(eqn.source_info.traceback))
    except Exception:  # an equation without a traceback
        return ""
    for fr in frames:
        if fr is not None and not os.path.abspath(fr.file_name).startswith(_JNN_DIR):
            return f"{os.path.basename(fr.file_name)}:{fr.start_line}"
    return ""


def _func_src(eqn) -> str:
    sub = eqn.params.get("call_jaxpr") or eqn.params.get("fun_jaxpr")
    info = getattr(getattr(sub, "jaxpr", sub), "debug_info", None)
    return getattr(info, "func_src_info", None) or ""


def custom_name(eqn) -> str:
    """The user function behind a custom_vjp/custom_jvp equation (``my_softplus``)."""
    src = _func_src(eqn)
    return src.split(" at ")[0] if src else eqn.primitive.name


def defined_at(eqn) -> str:
    """``file.py:line`` where the function of a custom_vjp/custom_jvp equation is defined ("" if unknown)."""
    where = _func_src(eqn).partition(" at ")[2]
    parts = where.rsplit(":", 1)
    return f"{os.path.basename(parts[0])}:{parts[1]}" if len(parts) == 2 and parts[1].isdigit() else ""


def is_float(v) -> bool:
    """True for a float value or variable."""
    dt = getattr(getattr(v, "aval", v), "dtype", None)
    return dt is not None and jnp.issubdtype(dt, jnp.floating)


def _promote_params(eqn):
    params = dict(eqn.params)
    for key in ("new_dtype", "dtype", "preferred_element_type"):
        dt = params.get(key)
        if dt is not None and jnp.issubdtype(dt, jnp.floating) and jnp.dtype(dt) != jnp.float64:
            params[key] = jnp.dtype(jnp.float64)
    return params


def run(
    jaxpr,
    consts,
    args,
    *,
    promote: bool = False,
    visit=None,
    path: tuple = (),
    enter_custom: bool = False,
    enter_control: bool = False,
    steps: tuple = (),
):
    """Evaluate ``jaxpr`` on ``args`` equation by equation.

    Args:
        jaxpr: a ``Jaxpr``.
        consts, args: values of its constvars and invars.
        promote: evaluate in float64 (every float input, literal and dtype parameter becomes float64; calls
            and custom rules are evaluated inline; the bodies of scan, while and cond are promoted the same
            way): the float64 twin of a low-precision function.
        visit: ``visit(path, eqn, invals, outvals, steps)`` called after each equation (``path``: the
            equation's index path, e.g. ``(4, 2)`` for equation 2 inside equation 4; ``steps``: the iteration
            of each enclosing scan/while entered, outermost first); its return value is ignored.
        path: the index path of this jaxpr's equations.
        enter_custom: also evaluate custom rules inline (their primal functions), not only under promote.
        enter_control: evaluate scan and while loops step by step and cond's branch taken inline, so that
            ``visit`` sees the equations inside them (for reading values, not for differentiating).
        steps: the iterations of the enclosing loops (see ``visit``).

    Returns:
        The list of output values.

    Raises:
        NotImplementedError: under ``promote``, an equation with an open sub-jaxpr it cannot promote.
    """
    env = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    for v, x in zip(jaxpr.constvars, consts):
        env[v] = x
    for v, x in zip(jaxpr.invars, args):
        env[v] = x
    inner = dict(promote=promote, visit=visit, enter_custom=enter_custom, enter_control=enter_control)
    for i, eqn in enumerate(jaxpr.eqns):
        invals = [read(v) for v in eqn.invars]
        name = eqn.primitive.name
        sub = _sub(eqn)
        if promote:
            invals = [jnp.asarray(x, jnp.float64) if is_float(x) and jnp.result_type(x) != jnp.float64 else x
                      for x in invals]  # fmt: skip
        if sub is not None and (name in CALLS or ((promote or enter_custom) and name in CUSTOM)):
            outvals = run(sub[0], sub[1], invals, path=(*path, i), steps=steps, **inner)
        elif enter_control and name in CONTROL:
            outvals = _control(eqn, invals, (*path, i), steps, inner)
        elif promote and name == "reduce_precision":
            outvals = invals
        elif promote and any(True for _ in _subjaxprs(eqn.params)):
            params = _promote_params(eqn)
            for key, val in eqn.params.items():  # scan, while, cond: their bodies in float64 too
                if isinstance(val, ClosedJaxpr):
                    params[key] = _promoted(val)
                elif isinstance(val, (tuple, list)) and val and all(isinstance(b, ClosedJaxpr) for b in val):
                    params[key] = type(val)(_promoted(b) for b in val)
                elif isinstance(val, Jaxpr):
                    raise NotImplementedError(f"the float64 twin cannot enter `{name}`")
            ans = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(params))
            outvals = list(ans) if eqn.primitive.multiple_results else [ans]
        else:
            params = _promote_params(eqn) if promote else eqn.params
            ans = eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(params))
            outvals = list(ans) if eqn.primitive.multiple_results else [ans]
        if visit is not None:
            visit((*path, i), eqn, invals, outvals, steps)
        for v, x in zip(eqn.outvars, outvals):
            env[v] = x
    return [read(v) for v in jaxpr.outvars]


def _control(eqn, invals, path, steps, inner) -> list:
    """A scan, while or cond equation evaluated by the interpreter: loops step by step (each step's
    equations visited with its iteration), cond's branch taken inline."""
    p = eqn.params
    if eqn.primitive.name == "cond":
        k = int(np.clip(int(invals[0]), 0, len(p["branches"]) - 1))
        b = p["branches"][k]
        return run(b.jaxpr, b.consts, invals[1:], path=(*path, f"branch{k}"), steps=steps, **inner)
    if eqn.primitive.name == "while":
        cj, bj = p["cond_jaxpr"], p["body_jaxpr"]
        cn, bn = p["cond_nconsts"], p["body_nconsts"]
        cconsts, bconsts, carry = invals[:cn], invals[cn : cn + bn], invals[cn + bn :]
        t = 0
        while bool(run(cj.jaxpr, cj.consts, [*cconsts, *carry])[0]):
            carry = run(bj.jaxpr, bj.consts, [*bconsts, *carry], path=path, steps=(*steps, t), **inner)
            t += 1
        return carry
    body, nc, ncar, length = p["jaxpr"], p["num_consts"], p["num_carry"], p["length"]
    consts, carry, xs = invals[:nc], invals[nc : nc + ncar], invals[nc + ncar :]
    order = range(length - 1, -1, -1) if p["reverse"] else range(length)
    ys = {}
    for t in order:
        out = run(body.jaxpr, body.consts, [*consts, *carry, *(x[t] for x in xs)], path=path, steps=(*steps, t),
                  **inner)  # fmt: skip
        carry, ys[t] = out[:ncar], out[ncar:]
    avals = [v.aval for v in body.jaxpr.outvars[ncar:]]
    stacked = [jnp.stack([ys[t][j] for t in range(length)]) if length else jnp.zeros((0, *a.shape), a.dtype)
               for j, a in enumerate(avals)]  # fmt: skip
    return [*carry, *stacked]


def _promoted(cj: ClosedJaxpr) -> ClosedJaxpr:
    """``cj`` with every float input and computation in float64 (a body of scan, while or cond)."""
    avals = [jax.ShapeDtypeStruct(v.aval.shape, jnp.float64 if is_float(v) else v.aval.dtype) for v in cj.jaxpr.invars]
    return jax.make_jaxpr(lambda *a: run(cj.jaxpr, cj.consts, a, promote=True))(*avals)


def closed(fn, *args) -> ClosedJaxpr:
    """``jax.make_jaxpr(fn)(*args)``."""
    return jax.make_jaxpr(fn)(*args)


def twin(fn, example):
    """The float64 twin of ``fn`` (a function of one pytree): the same computation with every float in
    float64, control flow included. Raises NotImplementedError when an equation holds an open sub-jaxpr it
    cannot promote."""
    cj = closed(fn, example)

    def twin_fn(x):
        (out,) = run(cj.jaxpr, cj.consts, jax.tree.leaves(x), promote=True)
        return out

    jax.eval_shape(twin_fn, example)  # fails now, not inside a compiled probe
    return twin_fn


@dataclass(frozen=True)
class NonFinite:
    """The first equation of ``f`` whose output is not finite."""

    eqn: str
    primitive: str
    source: str


def first_nonfinite(fn, x) -> NonFinite | None:
    """Evaluate ``fn(x)`` equation by equation (outside jit) and return the first equation producing a NaN or
    inf from finite inputs, or None."""
    cj = closed(fn, x)
    found = []

    def visit(path, eqn, invals, outvals, steps):
        if found:
            return
        fin_in = all(bool(jnp.all(jnp.isfinite(v))) for v in invals if is_float(v))
        bad_out = any(not bool(jnp.all(jnp.isfinite(v))) for v in outvals if is_float(v))
        if fin_in and bad_out:
            name = custom_name(eqn) if eqn.primitive.name in CUSTOM else eqn.primitive.name
            found.append(NonFinite("/".join(map(str, path)), name, source(eqn)))

    run(cj.jaxpr, cj.consts, jax.tree.leaves(x), visit=visit)
    return found[0] if found else None


__all__ = ["CALLS", "CONTROL", "CUSTOM", "NonFinite", "closed", "custom_name", "defined_at", "first_nonfinite",
           "is_float", "lowest_float", "run", "source", "twin"]  # fmt: skip
