"""TrainState: everything that changes during training, in one pytree."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jnn.history import METRICS
from jnn.train.stopping import EarlyStoppingState

#: Why a run ended; ``TrainState.status`` holds the code.
STATUS = {0: "running", 1: "max_epochs", 2: "max_steps", 3: "loss_tol", 4: "early_stopping", 5: "non_finite"}
STATUS_CODE = {v: k for k, v in STATUS.items()}


class TolState(NamedTuple):
    """Training-loss tolerance: best training loss and epochs without an improvement > tol."""

    best: jax.Array
    bad_epochs: jax.Array


class TrainState(NamedTuple):
    """The whole state of a run. Nothing outside it changes during training.

    Attributes:
        params: θ, a list of ``{"w", "b"}``.
        opt_state: the optax state.
        data_key: stream for the per-epoch permutations (epoch e uses ``fold_in(data_key, e)``).
        dropout_key: stream for dropout masks (step s uses ``fold_in(dropout_key, s)``).
        step: updates applied so far (int32).
        epoch: epochs completed (int32).
        early: the :class:`EarlyStoppingState`.
        best_params: params of the best epoch so far (for ``restore_best``).
        tol: the :class:`TolState`.
        history: ``{metric: [max_epochs]}`` buffers (NaN where not yet run); see :data:`METRICS`.
        status: 0 while running, else the code of the stopping rule that fired (:data:`STATUS`).
        bad_step: step at which a non-finite loss/gradient appeared (−1 if none).
        bad_leaf: index (in ``jax.tree.leaves(params)`` order) of the first non-finite gradient leaf;
            −1 if none, −2 if only the loss was non-finite.
        hyper: ``{"l2": λ, "keep_prob": p}`` as arrays, read by the compiled step, so that a sweep can
            give every member its own values under one compile (the learning rate lives in
            ``opt_state.hyperparams`` for the built-in optimisers).
    """

    params: list
    opt_state: optax.OptState
    data_key: jax.Array
    dropout_key: jax.Array
    step: jax.Array
    epoch: jax.Array
    early: EarlyStoppingState
    best_params: list
    tol: TolState
    history: dict
    status: jax.Array
    bad_step: jax.Array
    bad_leaf: jax.Array
    hyper: dict


def init_state(params, tx: optax.GradientTransformation, *, data_key, dropout_key, max_epochs: int,
               early: EarlyStoppingState, l2: float = 0.0, keep_prob: float = 1.0) -> TrainState:
    """The state before the first epoch.

    Args:
        params: initial θ.
        tx: the optax transformation.
        data_key: data stream key.
        dropout_key: dropout stream key.
        max_epochs: length of the history buffers.
        early: initial early-stopping state.
        l2: λ of this run.
        keep_prob: dropout keep probability of this run.
    """
    return _init_state(params, tx, data_key, dropout_key, max_epochs, early, l2, keep_prob)


@functools.partial(jax.jit, static_argnums=(1, 4))
def _init_state(params, tx, data_key, dropout_key, max_epochs, early, l2, keep_prob):
    # Compiled once: built eagerly, each small op would compile separately on first use.
    dtype = params[0]["w"].dtype
    i32 = lambda v: jnp.asarray(v, jnp.int32)
    return TrainState(
        params=params, opt_state=tx.init(params), data_key=data_key, dropout_key=dropout_key,
        step=i32(0), epoch=i32(0), early=early, best_params=jax.tree.map(jnp.copy, params),
        tol=TolState(jnp.asarray(jnp.inf, dtype), i32(0)),
        history={m: jnp.full((max_epochs,), jnp.nan, dtype) for m in METRICS},
        status=i32(0), bad_step=i32(-1), bad_leaf=i32(-1),
        hyper={"l2": jnp.asarray(l2, dtype), "keep_prob": jnp.asarray(keep_prob, dtype)},
    )
