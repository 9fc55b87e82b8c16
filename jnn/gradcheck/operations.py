"""Naming the wrong operation: the derivative of each operation of ``f``'s jaxpr, checked at the inputs it
received.

The operations are the places where a derivative can be written by hand or grouped by the user:
``custom_vjp``/``custom_jvp`` rules (``custom_vjp_call``/``custom_jvp_call`` equations), ``jax.jit``
functions and ``jax.checkpoint``/remat blocks (entered to find operations inside), and blocks named with
``jax.named_scope`` or ``jax.named_call`` (contiguous equations sharing a name-stack entry, entered for
nested names; the markers JAX adds for its own transformations, ``vmap()`` and the like, are not names).
Control flow is entered too: the body of ``lax.scan`` and of ``fori_loop``/``while_loop`` (an operation
there is checked at the inputs of each step, up to ``MAX_STEPS`` of them, and the first failing step is
named), and the branch of ``lax.cond``/``switch`` taken at the point. Built-in primitives are JAX's and are
not re-checked one by one.

``f`` is replayed equation by equation at the point (``jnn.gradcheck.jaxpr.run``), which captures each
operation's inputs; each operation is then a function of its float inputs, reduced to a scalar by random
cotangents, and checked by the same machinery as ``f`` itself (full mode when small, fast mode otherwise;
forward mode beside reverse mode), through the ``check`` function the caller passes in (one recursion path:
this module imports no checker). An operation is reported wrong when its own check fails; the innermost
wrong ones (those with no wrong operation inside) come first, merged over call sites.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from types import SimpleNamespace

import jax
import jax.numpy as jnp
from jax.extend.core import Literal

from jnn.gradcheck import jaxpr as J
from jnn.gradcheck.report import OpCheck

#: Operations checked at most (the first ones in evaluation order).
MAX_OPS = 48
#: Random directions of an operation's fast-mode check.
OP_DIRECTIONS = 4
#: Steps of a loop at which an operation inside it is checked at most (evenly spaced, first and last included).
MAX_STEPS = 8


@dataclass
class _Op:
    name: str
    kind: str
    label: str
    source: str
    eqns: list
    invars: list
    outvars: list
    parent: int | None
    depth: int
    within: str = ""
    values: dict = field(default_factory=dict)  # steps of the enclosing loops -> {var: value}


def _scope(eqn, depth: int) -> str:
    """The user's name-stack entry at ``depth`` (JAX's own markers such as ``vmap()`` or ``jvp()`` skipped)."""
    parts = [p for p in str(eqn.source_info.name_stack).split("/") if p and not p.endswith(")")]
    return parts[depth] if len(parts) > depth else ""


def _io(eqns, later_eqns, level_outvars):
    """Free input vars of ``eqns`` and the vars they define that are used after them."""
    defined, ins = set(), []
    for e in eqns:
        for v in e.invars:
            if not isinstance(v, Literal) and v not in defined and v not in ins:
                ins.append(v)
        defined.update(e.outvars)
    used = {v for e in later_eqns for v in e.invars if not isinstance(v, Literal)} | {
        v for v in level_outvars if not isinstance(v, Literal)}  # fmt: skip
    outs = [v for e in eqns for v in e.outvars if v in used]
    return ins, outs


def _bodies(eqn):
    """``(label, what, jaxpr)`` of the control flow the localisation enters: scan and while bodies, every
    branch of a cond (only the branch taken at the point gets values)."""
    p, name = eqn.params, eqn.primitive.name
    if name == "scan":
        return [("", "scan", p["jaxpr"].jaxpr)]
    if name == "while":
        return [("", "while loop", p["body_jaxpr"].jaxpr)]
    return [(f"branch{k}", f"cond branch {k}", b.jaxpr) for k, b in enumerate(p["branches"])]


def _collect(eqns, offsets, level_outvars, path, depth, parent, ops, prefix="", within=""):
    """Append the operations among ``eqns`` (with their indices ``offsets`` in the jaxpr at ``path``)."""
    i = 0
    while i < len(eqns):
        eqn = eqns[i]
        scope = _scope(eqn, depth)
        if scope:
            j = i
            while j < len(eqns) and _scope(eqns[j], depth) == scope:
                j += 1
            group = eqns[i:j]
            ins, outs = _io(group, eqns[j:], level_outvars)
            lo, hi = offsets[i], offsets[j - 1]
            label = "/".join(map(str, (*path, lo))) + (f"-{hi}" if hi != lo else "")
            name = f"{prefix}{scope}"
            ops.append(_Op(name, "named", label, J.source(eqn), group, ins, outs, parent, depth, within))
            me = len(ops) - 1
            _collect(group, offsets[i:j], list(outs), path, depth + 1, me, ops, prefix=f"{name}/", within=within)
            i = j
            continue
        pname = eqn.primitive.name
        label = "/".join(map(str, (*path, offsets[i])))
        if pname in J.CUSTOM:
            kind = "custom_vjp" if "vjp" in pname else "custom_jvp"
            ins, outs = _io([eqn], [], eqn.outvars)
            src = J.source(eqn) or (f"defined at {J.defined_at(eqn)}" if J.defined_at(eqn) else "")
            ops.append(_Op(J.custom_name(eqn), kind, label, src, [eqn], ins, outs, parent, depth, within))
        elif pname in J.CALLS and J._sub(eqn) is not None:
            ins, outs = _io([eqn], [], eqn.outvars)
            kind = "checkpoint" if pname in ("remat", "remat2", "checkpoint") else "jit"
            name = "checkpoint" if kind == "checkpoint" else str(eqn.params.get("name", pname))
            ops.append(_Op(name, kind, label, J.source(eqn), [eqn], ins, outs, parent, depth, within))
            sub = J._sub(eqn)[0]
            _collect(sub.eqns, list(range(len(sub.eqns))), list(sub.outvars), (*path, offsets[i]), 0, len(ops) - 1,
                     ops, within=within)  # fmt: skip
        elif pname in J.CONTROL:
            for tag, what, body in _bodies(eqn):
                at = (*path, offsets[i], tag) if tag else (*path, offsets[i])
                _collect(body.eqns, list(range(len(body.eqns))), list(body.outvars), at, 0, parent, ops,
                         prefix=prefix, within=f"{within} > {what}" if within else what)  # fmt: skip
        i += 1


def _capture(cj, theta, ops):
    """Replay the jaxpr at θ (loops step by step, the branch taken) and store every operation's input
    values, per iteration of the loops around it."""
    values = {}
    for v, x in zip(cj.jaxpr.constvars, cj.consts):
        values[(v, ())] = x
    for v, x in zip(cj.jaxpr.invars, theta):
        values[(v, ())] = x

    def visit(path, eqn, invals, outvals, steps):
        for v, x in zip(eqn.outvars, outvals):
            values[(v, steps)] = x
        sub = J._sub(eqn)
        if sub is not None and eqn.primitive.name in J.CALLS:
            for v, x in zip(sub[0].constvars, sub[1]):
                values[(v, steps)] = x
            for v, x in zip(sub[0].invars, invals):
                values[(v, steps)] = x
        for v, x in zip(eqn.invars, invals):
            if not isinstance(v, Literal):
                values.setdefault((v, steps), x)

    J.run(cj.jaxpr, cj.consts, theta, visit=visit, enter_control=True)
    seen = {}
    for v, steps in values:
        seen.setdefault(steps, set()).add(v)
    for op in ops:
        op.values = {st: {v: values[(v, st)] for v in op.invars} for st, have in seen.items()
                     if op.invars and all(v in have for v in op.invars)}  # fmt: skip


def _op_function(op: _Op, values: dict, key):
    """``(fn, xs)``: the operation as a scalar function of its float inputs (random cotangents), and them."""
    floats = [v for v in op.invars if J.is_float(v) and v in values]
    fixed = {v: values[v] for v in op.invars if v not in floats}
    outs = [v for v in op.outvars if J.is_float(v)]
    us = [jax.random.normal(jax.random.fold_in(key, k), v.aval.shape, jnp.float64) for k, v in enumerate(outs)]
    dtypes = [v.aval.dtype for v in floats]
    jaxpr = SimpleNamespace(constvars=[], invars=op.invars, eqns=op.eqns, outvars=outs)

    def fn(xs):
        given = dict(fixed)
        for v, x, dt in zip(floats, xs, dtypes):
            given[v] = x.astype(dt)
        res = J.run(jaxpr, [], [given[v] for v in op.invars])
        return sum(jnp.sum(u * r.astype(jnp.float64)) for u, r in zip(us, res))

    return fn, [jnp.asarray(values[v], jnp.float64) for v in floats]


def _spread(steps: list) -> list:
    """At most ``MAX_STEPS`` of the iterations ``steps``, evenly spaced, the first and the last included."""
    if len(steps) <= MAX_STEPS:
        return steps
    picks = sorted({round(k * (len(steps) - 1) / (MAX_STEPS - 1)) for k in range(MAX_STEPS)})
    return [steps[k] for k in picks]


def localise(phi, theta, *, check, order: int, seed: int, rtol, atol) -> tuple[list, list]:
    """Check the derivative of every operation of φ's jaxpr at the inputs it receives at θ.

    Args:
        phi: the scalar function of the list of checked leaves.
        theta: the point (list of float64 arrays).
        check: ``check(fn, xs, order=, seed=, rtol=, atol=) -> CheckReport``: the checker of one operation
            (the caller's own, so that operations are judged as f is).
        order: 1 or 2, as the main check.
        seed: seed of the cotangents and directions.
        rtol, atol: the user's tolerances (None: each operation's defaults).

    Returns:
        ``(operations, notes)``: ``OpCheck`` per operation, innermost wrong first, then the other wrong
        ones, then the right ones; notes on what could not be checked.
    """
    cj = J.closed(phi, theta)
    ops, notes = [], []
    _collect(cj.jaxpr.eqns, list(range(len(cj.jaxpr.eqns))), list(cj.jaxpr.outvars), (), 0, None, ops)
    if not ops:
        return [], ["no operation to localise: f has no custom_vjp/custom_jvp rule, jax.jit or jax.checkpoint "
                    "function or jax.named_scope block, at the top or inside scan/while/cond (name blocks with "
                    "jax.named_scope to localise within f)"]  # fmt: skip
    if len(ops) > MAX_OPS:
        notes.append(f"{len(ops) - MAX_OPS} of {len(ops)} operations not checked (the first {MAX_OPS} were)")
        ops = ops[:MAX_OPS]
    _capture(cj, theta, ops)
    key = jax.random.key(seed + 1)
    verdicts = []
    for k, op in enumerate(ops):
        verdicts.append(_check_op(op, jax.random.fold_in(key, k), check, notes, order=order, seed=seed, rtol=rtol,
                                  atol=atol))  # fmt: skip
    return _ordered(ops, verdicts), notes


def _check_op(op: _Op, key, check, notes, **kw):
    """``(passed, max rel err, input shapes, failing steps)`` of one operation (checked at each of its loop
    steps until one fails), or None when it has no float input or no values (a branch not taken)."""
    result = None
    for steps in _spread(sorted(op.values)):
        fn, xs = _op_function(op, op.values[steps], key)
        if not xs:
            return None
        try:
            rep = check(fn, xs, **kw)
        except Exception as err:  # an operation that cannot be differentiated alone
            notes.append(f"operation `{op.name}` (jaxpr eqn {op.label}) not checked: {type(err).__name__}: "
                         f"{str(err).splitlines()[0][:120] if str(err) else ''}")  # fmt: skip
            return None
        errs = [r.max_rel_err for r in (*rep.leaves, *(rep.forward or ())) if not math.isnan(r.max_rel_err)]
        result = (rep.verdict != "failed", max(errs, default=math.nan), [tuple(x.shape) for x in xs], steps)
        if not result[0]:
            break
    return result


def _ordered(ops, verdicts) -> list:
    wrong = {k for k, v in enumerate(verdicts) if v is not None and not v[0]}
    has_wrong_inside = {ops[k].parent for k in wrong if ops[k].parent is not None}
    # a wrong op's ancestors all have a wrong op inside
    for k in list(wrong):
        p = ops[k].parent
        while p is not None:
            has_wrong_inside.add(p)
            p = ops[p].parent
    merged, seen = [], {}
    for group in ("inner", "outer", "right"):
        for k, v in enumerate(verdicts):
            if v is None:
                continue
            inner = k in wrong and k not in has_wrong_inside
            if (group == "inner") != inner or (group == "outer") != (k in wrong and not inner):
                continue
            op = ops[k]
            parent = ops[op.parent].name if op.parent is not None else ""
            within = op.within
            if within and v[3] and not v[0]:
                within += f" (step {', '.join(map(str, v[3]))})"
            check = OpCheck(op.name, op.kind, op.label, op.source, tuple(v[2]), v[0], v[1], 1, parent, within)
            at = (op.name, op.kind, v[0])
            if not v[0] and at in seen:
                i = seen[at]
                prev = merged[i]
                merged[i] = OpCheck(prev.name, prev.kind, prev.eqn, prev.source, prev.shapes, False,
                                    max(prev.max_rel_err, v[1]), prev.calls + 1, prev.inside, prev.within)  # fmt: skip
                continue
            seen[at] = len(merged)
            merged.append(check)
    return merged


__all__ = ["MAX_OPS", "localise"]
