"""The compiled program of a run, with ``jax.jit`` as its only cache.

Everything a run's compiled calls depend on beyond their arguments is one frozen, hashable
``ProgramSpec``: the checked task, the optimiser, the epoch's shape, the stopping rules and the
gradient check. It is the static argument of two module-level jitted functions (``RUN`` and
``RUN_DONATING``), so two runs with equal specs share one compile through ``jax.jit``'s own cache,
while everything that varies between runs (the seed, η, λ, keep_prob, a task's hyperparameters,
momentum) is an array in the ``jnn.train.state.TrainState`` argument.

Equality of the objects a spec closes over (the task's functions, the optimiser) is decided by a key
(``Static``): the built-in MLP's functions are frozen dataclasses equal by their description
(``jnn.mlp``), a user's task and optax transformation are compared by the functions they hold, and
the optimiser a ``jnn.TrainConfig`` names is keyed by the fields its update reads (see
``optimizer_key``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax

from jnn.task import CheckedTask
from jnn.train import epoch as epoch_module
from jnn.train.config import fields_where
from jnn.train.epoch import make_run_epoch, with_summary
from jnn.train.multi_epoch import MAX_EPOCHS_PER_CALL, EpochCaller, make_call
from jnn.train.precision import compute_task
from jnn.train.step import make_train_step


@dataclass(frozen=True)
class Static:
    """An object a compiled program closes over, compared and hashed by ``key`` alone.

    Attributes:
        value: the object (e.g. a ``jnn.task.CheckedTask`` or an optax transformation).
        key: a hashable description: two programs whose objects have equal keys compute the same thing.
    """

    value: Any = dataclasses.field(compare=False, hash=False)
    key: Any


def _hashable(obj):
    """``obj`` with mappings and sequences turned into tuples (their items' order kept)."""
    if isinstance(obj, Mapping):
        return tuple((k, _hashable(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return tuple(_hashable(v) for v in obj)
    return obj


def task_key(ct: CheckedTask) -> tuple:
    """What a program needs of a checked task: the functions it calls (by equality, i.e. identity for
    closures; ``init`` is not among them: the params come in the state), its loss and metrics as given, the
    names of its hyperparameters, the params' dtype and the noise size."""
    t = ct.task
    return (t.apply, _hashable(t.loss), t.penalty, _hashable(t.metrics), t.draw, tuple(ct.hyper), str(ct.dtype),
            ct.noise_size)  # fmt: skip


def optimizer_key(config, steps_per_epoch: int, optimizer=None, extra=()) -> tuple:
    """What the update of a run's optimiser depends on.

    Args:
        config: the ``jnn.TrainConfig``.
        steps_per_epoch: updates per epoch (a schedule is laid over ``max_epochs`` of them).
        optimizer: None (the optimiser ``config`` names: its numeric hyperparameters are injected state,
            so only a schedule's rate belongs to the key), an optax transformation (by its functions) or a
            function of member hyperparameters (by identity, with the names ``extra`` it is given).
        extra: see ``optimizer``.
    """
    average = (config.average, config.average_decay if config.average == "ema" else None)
    if optimizer is not None:
        return ("given", optimizer, tuple(extra), average)
    schedule = None
    if config.lr_schedule != "constant":
        schedule = (config.lr_schedule, config.learning_rate, config.warmup_epochs, config.max_epochs, steps_per_epoch)
    return ("config", config.optimizer, schedule, average)


@dataclass(frozen=True)
class ProgramSpec:
    """Everything the compiled calls of a run depend on beyond their arguments' shapes.

    The ``jnn.TrainConfig``'s part is derived from the fields' declared roles: every field declared
    ``program="static"`` is in ``config`` (so a new static field joins the compile key with no edit here);
    the run-derived parts below it are listed by hand.

    Attributes:
        task: the ``jnn.task.CheckedTask``, keyed by ``task_key``.
        tx: the optax transformation, keyed by ``optimizer_key``.
        config: ``((name, value), ...)`` of the config's static fields (``static_config``); read as attributes
            (``spec.batch_size``, ``spec.early`` for ``early_stopping``).
        keys: the history keys (the summary's columns).
        rows: the most epochs one call runs.
        n_train: training examples (the epoch's shape).
        has_val: the data holds a validation set.
        noise_up_front: see ``jnn.train.epoch.make_run_epoch``.
        check_finite: the per-step gradient check (the guarded program of ``jnn.train.multi_epoch``).
        full_batches: no minibatch holds padded rows.
        members: None for one run; True for a sweep vmapped over stacked members.
        batch_sharding: the sharding of each minibatch's rows (data parallelism), or None.
        out_sharding: the sharding of every output (replicated over a mesh), or None.
    """

    task: Static
    tx: Static
    config: tuple
    keys: tuple[str, ...]
    rows: int
    n_train: int
    has_val: bool
    noise_up_front: int
    check_finite: bool
    full_batches: bool
    members: bool = False
    batch_sharding: Any = None
    out_sharding: Any = None

    def _setting(self, name: str):
        return dict(self.config)[name]

    batch_size = property(lambda self: self._setting("batch_size"), doc="T, the minibatch size.")
    drop_last = property(lambda self: self._setting("drop_last"), doc="Drop the ragged last minibatch.")
    max_epochs = property(lambda self: self._setting("max_epochs"), doc="The epoch budget.")
    max_steps = property(lambda self: self._setting("max_steps"), doc="The step budget, or None.")
    early = property(lambda self: self._setting("early_stopping"), doc="Early stopping's rule, or None.")
    loss_tol = property(lambda self: self._setting("loss_tol"), doc="The training-loss tolerance rule, or None.")
    divergence_factor = property(lambda self: self._setting("divergence_factor"), doc="See jnn.TrainConfig.")
    compute_dtype = property(lambda self: self._setting("compute_dtype"), doc="The train step's dtype, or None.")
    reduce_lr = property(lambda self: self._setting("reduce_lr"), doc="The ReduceLROnPlateau rule, or None.")
    keep_best = property(lambda self: self._setting("best_checkpoints"), doc="The BestCheckpoints rule, or None.")

    def epoch_fn(self):
        """``fn(state, data) -> (state, summary)`` of one epoch (see ``jnn.train.epoch.with_summary``)."""
        ct = self.task.value
        step = make_train_step(compute_task(ct, self.compute_dtype), self.tx.value, check_finite=self.check_finite,
                               max_steps=self.max_steps, batch_sharding=self.batch_sharding,
                               full_batches=self.full_batches, members=self.members)  # fmt: skip
        run_epoch = make_run_epoch(ct, step, n_train=self.n_train, batch_size=self.batch_size,
                                   drop_last=self.drop_last, max_epochs=self.max_epochs, early=self.early,
                                   loss_tol=self.loss_tol, divergence_factor=self.divergence_factor,
                                   has_val=self.has_val, noise_up_front=self.noise_up_front,
                                   reduce_lr=self.reduce_lr, keep_best=self.keep_best)  # fmt: skip
        return with_summary(run_epoch, self.keys)


def _run(spec: ProgramSpec, state, data, n):
    """``(state, summaries, suspect)`` of up to ``n`` epochs of the program ``spec`` describes."""
    call = make_call(spec.epoch_fn(), 2 + len(spec.keys), spec.rows)
    if spec.members:
        call = jax.vmap(call, in_axes=(0, 0, None))
    out = call(state, data, n)
    if spec.out_sharding is not None:
        out = jax.lax.with_sharding_constraint(out, spec.out_sharding)
    return out


#: The compiled calls of every run: ``RUN(spec, state, data, n)``; ``jax.jit`` compiles once per distinct
#: spec and kind of arguments. ``RUN_DONATING`` donates the input state (a run that never replays a call).
RUN = jax.jit(_run, static_argnums=0)
RUN_DONATING = jax.jit(_run, static_argnums=0, donate_argnums=1)


def program_spec(ct: CheckedTask, config, tx, tx_key, *, n_train: int, has_val: bool, keys, members: bool = False,
                 batch_sharding=None, out_sharding=None, noise_budget: int | None = None,
                 check_finite: bool = False) -> ProgramSpec:  # fmt: skip
    """The ``ProgramSpec`` of a run of ``ct`` under the ``jnn.TrainConfig`` ``config``.

    Args:
        ct, tx: the checked task and the optax transformation; ``tx_key``: see ``optimizer_key``.
        n_train, has_val, keys, members, batch_sharding, out_sharding: see ``ProgramSpec``.
        noise_budget: caps the noise an epoch draws up front (default
            ``jnn.train.epoch.NOISE_UP_FRONT_MAX``; a sweep divides it among its members). Threefry bits
            are the same under ``vmap``; rbg bits are not, and sharded batches draw per device, so those
            draw step by step.
        check_finite: the per-step gradient check.
    """
    budget = epoch_module.NOISE_UP_FRONT_MAX if noise_budget is None else noise_budget
    up_front = budget if batch_sharding is None and config.prng_impl == "threefry2x32" else 0
    return ProgramSpec(
        task=Static(ct, task_key(ct)),
        tx=Static(tx, tx_key),
        config=static_config(config),
        keys=tuple(keys),
        rows=config.epochs_per_call or MAX_EPOCHS_PER_CALL,
        n_train=n_train,
        has_val=has_val,
        noise_up_front=up_front,
        check_finite=check_finite,
        full_batches=config.drop_last or n_train % config.batch_size == 0,
        members=members,
        batch_sharding=batch_sharding,
        out_sharding=out_sharding,
    )


def static_config(config) -> tuple:
    """``((name, value), ...)`` of the ``jnn.TrainConfig`` fields declared ``program="static"``: the config's
    part of the compile key."""
    return tuple((name, getattr(config, name)) for name in fields_where(program="static"))


def compiled_caller(ct: CheckedTask, config, tx, tx_key, *, n_train: int, has_val: bool, keys=None,
                    members: bool = False, batch_sharding=None, out_sharding=None, noise_budget: int | None = None,
                    keep_input: bool = False) -> EpochCaller:  # fmt: skip
    """The ``jnn.train.multi_epoch.EpochCaller`` of a run of ``ct`` under ``config`` (one run, or with
    ``members`` a vmapped sweep): the fast call and, with ``config.check_finite``, the guarded replay.

    Args:
        ct, config, tx, tx_key, n_train, has_val, members, batch_sharding, out_sharding, noise_budget: see
            ``program_spec``.
        keys: the history keys (default: the task's, with ``learning_rate``).
        keep_input: never donate the call's input state (a callback's stop request replays from it).
    """
    keys = ct.history_keys() if keys is None else tuple(keys)
    spec = program_spec(ct, config, tx, tx_key, n_train=n_train, has_val=has_val, keys=keys, members=members,
                        batch_sharding=batch_sharding, out_sharding=out_sharding,
                        noise_budget=noise_budget)  # fmt: skip
    # The fast call keeps its input alive for a replay; without the guard it may donate it.
    fast = partial(RUN if config.check_finite or keep_input else RUN_DONATING, spec)
    guarded = partial(RUN, dataclasses.replace(spec, check_finite=True)) if config.check_finite else None
    return EpochCaller(fast, guarded, rows=spec.rows, fixed=config.epochs_per_call)


__all__ = ["Static", "ProgramSpec", "RUN", "RUN_DONATING", "task_key", "optimizer_key", "program_spec",
           "compiled_caller"]  # fmt: skip
