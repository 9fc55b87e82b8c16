"""Preparing a run, shared by ``fit`` and ``sweep``: data, checked task, first state, compiled epoch.

Everything here runs in plain Python before anything is traced, so bad input fails before training
starts: the validation split, the task (or the config's MLP) checked against the data, the monitored
metric, class weights, the first :class:`TrainState`, and the epoch function built from the step.
"""

from __future__ import annotations

import collections

import jax
import numpy as np

from jnn import _validate as V
from jnn.data import Dataset, split
from jnn.mlp import mlp_task_for
from jnn.task import CheckedTask, Task, check_targets, check_task
from jnn.train import epoch as epoch_module
from jnn.train.calls import MAX_EPOCHS_PER_CALL, EpochCaller, make_call
from jnn.train.config import TrainConfig, check_model_fields_unset
from jnn.train.epoch import EpochData, make_run_epoch, with_summary
from jnn.train.keys import Keys
from jnn.train.state import init_state
from jnn.train.step import make_train_step


def prepare_data(train: Dataset, config: TrainConfig, val: Dataset | None = None) -> tuple[Dataset, Dataset | None]:
    """The training and validation sets of a run: ``val`` when given, else ``config.val_fraction`` of
    ``train`` carved out (keyed by the ``split`` stream of ``config.seed``; stratified for class labels)."""
    if val is not None or config.val_fraction == 0.0:
        return train, val
    return split(
        train,
        (1.0 - config.val_fraction, config.val_fraction),
        key=Keys.from_seed(config.seed).split,
        stratify=config.stratify,
    )


def check_fit_data(fit_ds: Dataset, val: Dataset | None, config: TrainConfig) -> None:
    """The training set against the batch size, and the validation set against the training set."""
    if config.batch_size > len(fit_ds):
        raise ValueError(
            f"batch_size must be in [1, {len(fit_ds)}] (the number of training examples after the "
            f"validation split); got {config.batch_size}"
        )
    if val is not None:  # its type is checked by fit and sweep
        if (
            val.x.shape[1:] != fit_ds.x.shape[1:]
            or val.y.shape[1:] != fit_ds.y.shape[1:]
            or val.x.dtype != fit_ds.x.dtype
            or val.targets != fit_ds.targets
        ):
            raise ValueError(
                f"val must hold data like train: x {fit_ds.x.dtype}[n, {fit_ds.x.shape[1]}] and "
                f"{fit_ds.targets} y [n{', ' + str(fit_ds.y.shape[1]) if fit_ds.y.ndim > 1 else ''}]; got "
                f"x {val.x.dtype}{list(val.x.shape)} and {val.targets} y {list(val.y.shape)}"
            )
        if (val.sample_weight is None) != (fit_ds.sample_weight is None):
            raise ValueError("val must have sample_weight exactly when train has (both weighted or neither)")


def class_weights(ds: Dataset, class_weight) -> np.ndarray | None:
    """Per-example weights ``[n]``: ``sample_weight × class_weight[y]`` (None when neither is given).

    Args:
        ds: the data (class labels when ``class_weight`` is given).
        class_weight: None, ``{class: weight}`` (missing classes weigh 1) or a sequence with one weight per
            class; weights are finite and ≥ 0.
    """
    if class_weight is None:
        return ds.sample_weight
    if ds.num_classes is None:
        raise ValueError(
            f"class_weight needs class labels; the data holds {ds.targets}. Use "
            "Dataset(..., sample_weight=...) to weight examples"
        )
    k = ds.num_classes
    if isinstance(class_weight, dict):
        bad = [c for c in class_weight if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or not 0 <= c < k]
        if bad:
            raise ValueError(f"class_weight keys must be class labels in [0, {k - 1}]; got {bad}")
        table = np.ones(k)
        for c, w in class_weight.items():
            table[int(c)] = V.check_real(f"class_weight[{c}]", w, low=0.0)
    else:
        table = np.asarray(V.check_float_array("class_weight", np.asarray(class_weight, dtype=float)))
        if table.shape != (k,) or np.any(table < 0):
            raise ValueError(
                f"class_weight must be a dict or hold {k} non-negative weights, one per class; got shape {table.shape}"
            )
    w = table[ds.y].astype(ds.x.dtype)
    return w if ds.sample_weight is None else (w * ds.sample_weight).astype(ds.x.dtype)


def resolve_task(
    task: Task | None,
    config: TrainConfig,
    fit_ds: Dataset,
    val_ds: Dataset | None,
    *,
    init_params=None,
    use_dropout: bool | None = None,
) -> CheckedTask:
    """The checked task of a run: ``task``, or the built-in MLP that ``config`` describes."""
    if task is None:
        check_targets(config.loss, fit_ds, "training")
        task = mlp_task_for(config, config.network_sizes(fit_ds), str(fit_ds.x.dtype), use_dropout=use_dropout)
    else:
        check_model_fields_unset(config)
    return check_task(task, fit_ds, batch_size=config.batch_size, val=val_ds, init_params=init_params)


def checked_task(
    task,
    config: TrainConfig,
    fit_ds: Dataset,
    val_ds: Dataset | None,
    val: Dataset | None,
    *,
    init_params=None,
    use_dropout: bool | None = None,
) -> CheckedTask:
    """Everything checked before a run (``fit`` and ``sweep``): the data against the batch size and each
    other, the task (or the config's MLP) against the data, and the monitored metric."""
    check_fit_data(fit_ds, val, config)
    ct = resolve_task(task, config, fit_ds, val_ds, init_params=init_params, use_dropout=use_dropout)
    check_monitor(config, ct, val_ds is not None)
    return ct


def check_monitor(config: TrainConfig, ct: CheckedTask, has_val: bool) -> None:
    """The monitored metric must be recorded, and ``val_*`` needs validation data."""
    if not config.early_stopping:
        return
    keys = [k for k in ct.history_keys() if k != "learning_rate"]
    if config.monitor not in keys:
        raise ValueError(f"monitor must be one of the recorded metrics {keys}; got {config.monitor!r}")
    if config.monitor.startswith("val_") and not has_val:
        raise ValueError(
            f"early stopping on {config.monitor!r} needs a validation set: val_fraction must be in "
            "(0, 1) or fit(..., val=...) given; got neither. Set early_stopping=False or monitor="
            "'train_loss'"
        )


def initial_state(ct: CheckedTask, config: TrainConfig, tx, params, keys: Keys, hyper: dict | None = None):
    """The state before the first epoch of a run of ``ct`` (``hyper`` overrides the task's defaults)."""
    tol = config.loss_tol_stopper()
    dummy = config.stopper().init()
    return init_state(
        params,
        tx,
        data_key=keys.data,
        dropout_key=keys.dropout,
        early=dummy,
        loss_tol=dummy if tol is None else tol.init(),
        hyper=ct.hyper_arrays(hyper),
    )


def epoch_arrays(fit_ds: Dataset, val_ds: Dataset | None, class_weight=None) -> EpochData:
    """The NumPy arrays of an epoch (one-row dummies for a missing validation set)."""
    w = class_weights(fit_ds, class_weight)
    if val_ds is None:
        return EpochData(fit_ds.x, fit_ds.y, w, fit_ds.x[:1], fit_ds.y[:1], None if w is None else w[:1])
    return EpochData(fit_ds.x, fit_ds.y, w, val_ds.x, val_ds.y, val_ds.sample_weight)


def build_epoch(
    ct: CheckedTask,
    config: TrainConfig,
    tx,
    *,
    n_train: int,
    has_val: bool,
    batch_sharding=None,
    noise_budget: int | None = None,
    val_fn=None,
    check_finite: bool | None = None,
):
    """``run_epoch(state, data) -> (state, metrics)`` of a run of ``ct`` under ``config``.

    ``noise_budget`` caps the noise an epoch draws up front (default
    :data:`jnn.train.epoch.NOISE_UP_FRONT_MAX`; a sweep divides it among its members). ``check_finite``
    overrides ``config.check_finite`` (the per-step gradient check; see :mod:`jnn.train.calls`).
    """
    full = config.drop_last or n_train % config.batch_size == 0  # no padded rows in any minibatch
    check = config.check_finite if check_finite is None else check_finite
    step = make_train_step(ct, tx, check_finite=check, max_steps=config.max_steps,
                           batch_sharding=batch_sharding, full_batches=full)  # fmt: skip
    # Threefry bits are the same under vmap; rbg bits are not, and sharded batches draw per device.
    budget = epoch_module.NOISE_UP_FRONT_MAX if noise_budget is None else noise_budget
    up_front = budget if batch_sharding is None and config.prng_impl == "threefry2x32" else 0
    return make_run_epoch(
        ct,
        step,
        n_train=n_train,
        batch_size=config.batch_size,
        drop_last=config.drop_last,
        max_epochs=config.max_epochs,
        early=config.stopper() if config.early_stopping else None,
        loss_tol=config.loss_tol_stopper(),
        divergence_factor=config.divergence_factor,
        has_val=has_val,
        noise_up_front=up_front,
        val_fn=val_fn,
    )


#: The compiled calls of recent runs, by :func:`program_key` (most recent last); a later run with the same key
#: reuses them (another seed, learning rate, λ or keep_prob compiles nothing). ``PROGRAM_CACHE_SIZE`` entries.
_PROGRAMS: collections.OrderedDict = collections.OrderedDict()
PROGRAM_CACHE_SIZE = 8


def program_key(ct: CheckedTask, config: TrainConfig, *, builtin: bool, params, data: EpochData, extra=(),
                dropout: bool | None = None) -> tuple:  # fmt: skip
    """What a run's compiled calls depend on beyond their arguments' values: two runs with the same key can
    share them. The config's traced fields (seed, a constant learning rate, λ, keep_prob as long as dropout
    stays on, momentum, weight decay) and the fields that act outside the program are left out; a user's
    task is identified by the object itself (``extra`` holds other objects the program closes over, e.g. a
    custom optimizer or a mesh, also by identity). ``dropout``: whether the built-in MLP draws dropout masks
    (default: ``config.keep_prob < 1``; a sweep decides over all its members)."""
    outside = {"seed", "l2", "keep_prob", "momentum", "weight_decay", "scheme", "val_fraction", "stratify",
               "checkpoint_every", "keep_checkpoints"}  # fmt: skip
    if config.lr_schedule == "constant":  # a schedule closes over the rate; a constant rate is optimiser state
        outside.add("learning_rate")
    fields = tuple((k, repr(v)) for k, v in sorted(config.to_dict().items()) if k not in outside)
    model = ("mlp", config.keep_prob < 1.0 if dropout is None else dropout) if builtin else ("task", id(ct.task))
    shapes = tuple((tuple(np.shape(a)), str(a.dtype)) for a in jax.tree.leaves(params))
    arrays = tuple(None if a is None else (tuple(np.shape(a)), str(a.dtype)) for a in data)
    return (model, fields, shapes, arrays, str(ct.dtype), ct.noise_size, ct.metric_names,
            tuple(id(o) for o in extra))  # fmt: skip


def build_caller(build, keys, config: TrainConfig, *, data_axes=None, jit_kw: dict | None = None, cache_key=None,
                 holds=(), keep_input: bool = False):  # fmt: skip
    """The :class:`jnn.train.calls.EpochCaller` of a run (or, with ``data_axes``, of a vmapped sweep).

    Args:
        build: ``build(check_finite) -> run_epoch`` (e.g. :func:`build_epoch` with its arguments bound).
        keys: the history keys.
        config: the run's config (``check_finite``, ``epochs_per_call``).
        data_axes: None for one run; the ``in_axes`` of the data for M stacked members (``jax.vmap``).
        jit_kw: extra ``jax.jit`` arguments (e.g. ``out_shardings`` for a mesh).
        cache_key: reuse the compiled calls of an earlier run with this key (see :func:`program_key`), or
            keep these for later ones (None: neither).
        holds: objects the key names by identity, kept alive with the cached calls (so no other object can
            take their identity while the entry lives).
        keep_input: never donate the call's input state (a callback's stop request replays from it).
    """
    if cache_key is not None:
        cache_key = (*cache_key, keep_input)
    if cache_key is not None and cache_key in _PROGRAMS:
        _PROGRAMS.move_to_end(cache_key)
        fast, guarded, rows, _ = _PROGRAMS[cache_key]
        return EpochCaller(fast, guarded, rows=rows, fixed=config.epochs_per_call)
    rows = config.epochs_per_call or MAX_EPOCHS_PER_CALL

    def jitted(check: bool):
        fn = make_call(with_summary(build(check), keys), 2 + len(keys), rows)
        if data_axes is not None:
            fn = jax.vmap(fn, in_axes=(0, data_axes, None))
        # The fast call keeps its input alive for a replay; without the guard it can donate it.
        donate = () if config.check_finite or keep_input else (0,)
        return jax.jit(fn, donate_argnums=donate, **(jit_kw or {}))

    fast = jitted(False)
    guarded = jitted(True) if config.check_finite else None  # traced and compiled only if ever called
    if cache_key is not None:
        _PROGRAMS[cache_key] = (fast, guarded, rows, tuple(holds))
        while len(_PROGRAMS) > PROGRAM_CACHE_SIZE:
            _PROGRAMS.popitem(last=False)
    return EpochCaller(fast, guarded, rows=rows, fixed=config.epochs_per_call)


def compiled_caller(ct: CheckedTask, config: TrainConfig, tx, *, n_train: int, has_val: bool, builtin: bool, params,
                    data: EpochData, holds=(), dropout: bool | None = None, data_axes=None, jit_kw: dict | None = None,
                    batch_sharding=None, noise_budget: int | None = None, keep_input: bool = False,
                    keys=None) -> EpochCaller:  # fmt: skip
    """The compiled calls of a run of ``ct`` under ``config`` (one run, or with ``data_axes`` a vmapped sweep),
    lent by an earlier run of this process with the same :func:`program_key` when there is one.

    Args:
        ct, config, tx: the checked task, the config and the optax transformation.
        n_train, has_val, batch_sharding, noise_budget: see :func:`build_epoch`.
        builtin, params, data, holds, dropout: see :func:`program_key` (``holds``: its ``extra``).
        data_axes, jit_kw, keep_input: see :func:`build_caller`.
        keys: the history keys (default: the task's, with ``learning_rate``).
    """
    keys = ct.history_keys() if keys is None else tuple(keys)
    key = (program_key(ct, config, builtin=builtin, params=params, data=data, extra=holds, dropout=dropout), keys)

    def build(check_finite):
        return build_epoch(ct, config, tx, n_train=n_train, has_val=has_val, batch_sharding=batch_sharding,
                           noise_budget=noise_budget, check_finite=check_finite)  # fmt: skip

    return build_caller(build, keys, config, data_axes=data_axes, jit_kw=jit_kw,
                        cache_key=(data_axes is not None, key), holds=holds, keep_input=keep_input)  # fmt: skip


__all__ = [
    "prepare_data",
    "compiled_caller",
    "build_caller",
    "program_key",
    "PROGRAM_CACHE_SIZE",
    "check_fit_data",
    "class_weights",
    "resolve_task",
    "checked_task",
    "check_monitor",
    "initial_state",
    "epoch_arrays",
    "build_epoch",
]
