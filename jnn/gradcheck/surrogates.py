"""Intentional surrogate gradients: where ``f`` is locally constant along a leaf (a straight-through
estimator, ``round``, an integer cast) its finite differences are 0 while its JAX derivative, by design, is
not. Such a mismatch is not a bug finite differences can judge: ``surrogate_note`` names the equations
on the leaf's path that make ``f`` constant (``stop_gradient``, ``round``, ``floor``, ``ceil``, ``sign``, a
cast to an integer type), so that the report says so, and ``check_grads(..., surrogate=[...])`` marks the
leaves whose mismatch is intended (status ``"surrogate"``: reported, never judged).
"""

from __future__ import annotations

import jax.numpy as jnp
from jax.extend.core import Literal

from jnn.gradcheck import jaxpr as J

#: Primitives whose output is locally constant in their input (or whose derivative is cut on purpose).
CONSTANT = ("stop_gradient", "round", "floor", "ceil", "sign", "argmax", "argmin")


def _flat(eqn) -> bool:
    if eqn.primitive.name in CONSTANT:
        return True
    if eqn.primitive.name == "convert_element_type":
        new = eqn.params.get("new_dtype")
        return new is not None and not jnp.issubdtype(new, jnp.inexact)
    return False


def on_path(jaxpr, live: set, found: list) -> None:
    """Append to ``found`` ``(primitive, source)`` of each locally-constant equation that reads a value
    depending on ``live`` (a set of vars of ``jaxpr``), entering calls, custom rules and control flow (a
    body reads the values its equation reads: an over-approximation that keeps every true one)."""
    for eqn in jaxpr.eqns:
        if not any(not isinstance(v, Literal) and v in live for v in eqn.invars):
            continue
        if _flat(eqn):
            found.append((eqn.primitive.name, J.source(eqn)))
        for sub in J._subjaxprs(eqn.params):
            on_path(sub, set(sub.invars), found)
        live.update(eqn.outvars)


def surrogate_note(phi, theta, leaf: int, path: str) -> str | None:
    """The note for a failing leaf whose reference is locally zero, naming the equations on its path that
    make f constant; None when there is none (then the failure is a real one)."""
    cj = J.closed(phi, theta)
    found: list = []
    on_path(cj.jaxpr, {cj.jaxpr.invars[leaf]}, found)
    if not found:
        return None
    seen = list(dict.fromkeys(f"`{p}`" + (f" (called from {s})" if s else "") for p, s in found))
    return (f"f is locally constant along {path} (its finite differences are 0) and its path goes through "
            f"{', '.join(seen[:4])}: a surrogate gradient cannot be checked against finite differences; pass "
            f"surrogate=[{path!r}] if this one is intended")  # fmt: skip


__all__ = ["CONSTANT", "on_path", "surrogate_note"]
