"""Optimiser hyperparameters held as state: where a run's learning rate lives, and optimisers built from them.

optax's ``inject_hyperparams`` keeps a transformation's hyperparameters as arrays in its state
(``state.hyperparams``), which is what lets one compiled step serve every learning rate of a sweep, a
resume change the rate, and the history record the rate in use. A custom optimiser may hold that state
anywhere inside a chain (or not at all): ``find_hyperparams`` finds it, and the history's
``learning_rate`` column exists exactly when it holds a ``learning_rate``.

``from_hyperparams`` turns a function of hyperparameters into such a transformation, so that a sweep
can give each member its own optimiser settings (e.g. the clipping norm of an optax chain) under one
compile: the values travel as arrays in the state, and the function is called again inside the step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


def find_hyperparams(opt_state, name: str | None = None) -> dict | None:
    """The first ``hyperparams`` dict inside an optimiser state (depth first: optax's ``inject_hyperparams``
    state, on its own or inside a chain, a ``MultiSteps``, a ``jnn.train.averaging.weight_average``
    wrapper, a ``from_hyperparams`` state), holding ``name`` when given; None when there is none. The
    dict is the state's own: assigning to it changes the state."""
    hp = getattr(opt_state, "hyperparams", None)
    if isinstance(hp, dict) and (name is None or name in hp):
        return hp
    if isinstance(opt_state, (tuple, list)):
        children = opt_state
    elif isinstance(opt_state, Mapping):
        children = opt_state.values()
    else:
        return None
    for child in children:
        found = find_hyperparams(child, name)
        if found is not None:
            return found
    return None


def learning_rate_of(opt_state):
    """The injected ``learning_rate`` of an optimiser state (an array), or None when it holds none."""
    hp = find_hyperparams(opt_state, "learning_rate")
    return None if hp is None else hp["learning_rate"]


def learning_rate_is_scheduled(opt_state) -> bool:
    """Whether the injected ``learning_rate`` of an optimiser state comes from a schedule (optax's
    ``inject_hyperparams`` with a callable rate recomputes it at every update, so setting it has no lasting
    effect)."""
    hp = find_hyperparams(opt_state, "learning_rate")
    if hp is None:
        return False
    found = []

    def visit(node):
        if getattr(node, "hyperparams", None) is hp:
            found.append("learning_rate" in (getattr(node, "hyperparams_states", None) or {}))
            return
        children = node if isinstance(node, (tuple, list)) else node.values() if isinstance(node, Mapping) else ()
        for child in children:
            visit(child)

    visit(opt_state)
    return bool(found and found[0])


def has_learning_rate(tx: optax.GradientTransformation, params) -> bool:
    """Whether ``tx``'s state holds an injected ``learning_rate`` (found on abstract values: nothing is computed)."""
    return learning_rate_of(jax.eval_shape(tx.init, params)) is not None


def set_learning_rate(opt_state, value) -> None:
    """Set the injected ``learning_rate`` in place (keeping its dtype).

    Raises:
        ValueError: the state holds no injected learning rate.
    """
    hp = find_hyperparams(opt_state, "learning_rate")
    if hp is None:
        raise ValueError(
            "the optimizer holds no learning_rate as state: build it with "
            "optax.inject_hyperparams(optax.sgd)(learning_rate=...) to set or sweep its learning rate"
        )
    hp["learning_rate"] = jnp.asarray(value, jnp.asarray(hp["learning_rate"]).dtype)


class HyperparamsState(NamedTuple):
    """State of ``from_hyperparams``: the values (``{name: scalar array}``) and the built optimiser's state."""

    hyperparams: dict
    inner: Any


def from_hyperparams(
    build: Callable[[dict], optax.GradientTransformation], hyperparams: Mapping
) -> optax.GradientTransformation:
    """A transformation whose hyperparameters are state: ``build(hyperparams)`` rebuilt inside every update.

    Args:
        build: ``build({name: scalar array}) -> optax.GradientTransformation``; it must only compute with the
            values (it is called with traced arrays inside the compiled step), e.g. ``lambda h:
            optax.chain(optax.clip_by_global_norm(h["clip"]), optax.sgd(h["learning_rate"]))``.
        hyperparams: ``{name: float}``, the values of this transformation's state.

    Returns:
        An ``optax.GradientTransformation`` whose state is a ``HyperparamsState``. Its update reads the
        values from the state only, so the update of one member serves every member of a vmapped sweep.
    """
    values = {k: jnp.asarray(v, jnp.float32) for k, v in hyperparams.items()}

    def init(params):
        dtype = jax.tree.leaves(params)[0].dtype if jax.tree.leaves(params) else jnp.float32
        hp = {k: v.astype(dtype) for k, v in values.items()}
        return HyperparamsState(hp, build(hp).init(params))

    def update(updates, state, params=None):
        updates, inner = build(state.hyperparams).update(updates, state.inner, params)
        return updates, HyperparamsState(state.hyperparams, inner)

    return optax.GradientTransformation(init, update)


__all__ = [
    "HyperparamsState",
    "find_hyperparams",
    "from_hyperparams",
    "has_learning_rate",
    "learning_rate_of",
    "learning_rate_is_scheduled",
    "set_learning_rate",
]
