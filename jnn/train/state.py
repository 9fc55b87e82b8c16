"""TrainState: everything that changes during training, in one pytree."""

from __future__ import annotations

import enum
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jnn.train.best_k import TopKState
from jnn.train.plateau import PlateauState
from jnn.train.stopping import EarlyStoppingState


class Status(enum.IntEnum):
    """Why a run ended; ``TrainState.status`` holds the value (0 while running)."""

    RUNNING = 0
    MAX_EPOCHS = 1
    MAX_STEPS = 2
    LOSS_TOL = 3
    EARLY_STOPPING = 4
    NON_FINITE = 5
    DIVERGED = 6
    CALLBACK = 7
    SCHEDULER = 8

    @property
    def label(self) -> str:
        """The lower-case name used in results and messages, e.g. ``"early_stopping"``."""
        return self.name.lower()


#: A status value's label, e.g. ``STATUS[4] == "early_stopping"``.
STATUS = {s.value: s.label for s in Status}

#: ``TrainState.bad_leaf`` when only the loss (no gradient leaf) was non-finite, and when nothing was.
LOSS_ONLY, NO_LEAF = -2, -1


class TrainState(NamedTuple):
    """The whole state of a run. Nothing outside it changes during training.

    Attributes:
        params: θ, any pytree of float arrays (the built-in MLP: a list of ``{"w", "b"}``).
        opt_state: the optax state.
        data_key: stream for the per-epoch permutations (epoch e uses ``fold_in(data_key, e)``).
        dropout_key: stream for the model's randomness (step s uses ``fold_in(dropout_key, s)``).
        step: updates applied so far (int32).
        epoch: epochs completed (int32).
        early: the early-stopping ``EarlyStoppingState``.
        best_params: params of the best epoch so far (for ``restore_best``).
        loss_tol: the state of the ``loss_tol`` rule, a second early stopping on the training loss.
        loss_ref: ``[first epoch's training loss, best training loss so far]`` (NaN and inf before the first
            epoch), read by the ``divergence_factor`` rule.
        status: a ``Status`` value.
        bad_step: step at which a non-finite loss/gradient appeared (−1 if none).
        bad_leaf: index (in ``jax.tree.leaves(params)`` order) of the first non-finite gradient leaf;
            ``NO_LEAF`` (−1) if none, ``LOSS_ONLY`` (−2) if only the loss was non-finite.
        hyper: the task's hyperparameters ``{name: scalar array}`` (the MLP: ``l2`` and ``keep_prob``),
            read by the compiled step, so that a sweep can give every member its own values under one
            compile (the learning rate lives in ``opt_state.hyperparams`` for the built-in optimisers).
        plateau: the ``jnn.train.plateau.PlateauState`` of ``TrainConfig.reduce_lr`` (None when off: no
            leaves, so states and checkpoints of runs without it are unchanged).
        top_k: the ``jnn.train.best_k.TopKState`` of ``TrainConfig.best_checkpoints`` (None when off).
    """

    params: object
    opt_state: optax.OptState
    data_key: jax.Array
    dropout_key: jax.Array
    step: jax.Array
    epoch: jax.Array
    early: EarlyStoppingState
    best_params: object
    loss_tol: EarlyStoppingState
    loss_ref: jax.Array
    status: jax.Array
    bad_step: jax.Array
    bad_leaf: jax.Array
    hyper: dict
    plateau: PlateauState | None = None
    top_k: TopKState | None = None


def init_state(
    params,
    tx: optax.GradientTransformation,
    *,
    data_key,
    dropout_key,
    early: EarlyStoppingState,
    loss_tol: EarlyStoppingState,
    hyper: dict,
    plateau: PlateauState | None = None,
    top_k: TopKState | None = None,
) -> TrainState:
    """The state before the first epoch.

    Args:
        params: initial θ.
        tx: the optax transformation.
        data_key: data stream key.
        dropout_key: dropout stream key.
        early: initial early-stopping state.
        loss_tol: initial state of the ``loss_tol`` rule.
        hyper: ``{name: scalar array}`` hyperparameters of this run.
        plateau: initial state of ``reduce_lr`` (None: off).
        top_k: initial state of ``best_checkpoints`` (None: off).
    """
    return _init_state(params, tx, data_key, dropout_key, early, loss_tol, hyper, plateau, top_k)


@functools.partial(jax.jit, static_argnums=(1,))
def _init_state(params, tx, data_key, dropout_key, early, loss_tol, hyper, plateau, top_k):
    # Compiled once: built eagerly, each small op would compile separately on first use.
    i32 = lambda v: jnp.asarray(v, jnp.int32)
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        data_key=data_key,
        dropout_key=dropout_key,
        step=i32(0),
        epoch=i32(0),
        early=early,
        best_params=jax.tree.map(jnp.copy, params),
        loss_tol=loss_tol,
        loss_ref=jnp.asarray([jnp.nan, jnp.inf], jax.tree.leaves(params)[0].dtype),
        status=i32(Status.RUNNING),
        bad_step=i32(-1),
        bad_leaf=i32(NO_LEAF),
        hyper=hyper,
        plateau=plateau,
        top_k=top_k,
    )
