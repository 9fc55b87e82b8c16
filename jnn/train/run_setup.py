"""Preparing a run, shared by ``fit`` and ``sweep``: data, checked task, first state.

Everything here runs in plain Python before anything is traced, so bad input fails before training
starts: the validation split, the task (or the MLP's task for the data) checked against the data, the monitored
metric, class weights and the first ``TrainState``. The compiled program is ``jnn.train.program``.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from jnn import _validate as V
from jnn.data import Dataset, split
from jnn.mlp import MLP
from jnn.protocol import task_for
from jnn.task import CheckedTask, Task, check_task
from jnn.train.config import TrainConfig
from jnn.train.epoch import EpochData
from jnn.train.keys import Keys
from jnn.train.optimizers import learning_rate_is_scheduled, learning_rate_of
from jnn.train.state import init_state


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
        class_weight: None, ``{class: weight}`` (missing classes weigh 1), a sequence with one weight per
            class (weights finite and ≥ 0), or ``"balanced"``: ``n / (classes × count of the class)`` on ``ds``
            (scikit-learn's ``class_weight="balanced"``; a class without examples weighs 0).
    """
    if class_weight is None:
        return ds.sample_weight
    if ds.num_classes is None:
        raise ValueError(
            f"class_weight needs class labels; the data holds {ds.targets}. Use "
            "Dataset(..., sample_weight=...) to weight examples"
        )
    k = ds.num_classes
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be 'balanced', a dict or a sequence; got {class_weight!r}")
        counts = np.bincount(np.asarray(ds.y), minlength=k).astype(np.float64)
        class_weight = np.where(counts > 0, len(ds) / (k * np.maximum(counts, 1)), 0.0)
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


def check_model(task) -> Task | MLP:
    """``fit``'s and ``sweep``'s ``task`` argument: a ``jnn.Task`` or a ``jnn.MLP`` (None: ``MLP()``)."""
    if task is None:
        return MLP()
    if not isinstance(task, (Task, MLP)):
        raise TypeError(
            f"task must be a jnn.Task(init, apply, loss, ...), a jnn.MLP(hidden, ...) or None (the default MLP); got "
            f"{type(task).__name__}"
        )
    return task


def resolve_task(
    model: Task | MLP, config: TrainConfig, fit_ds: Dataset, val_ds: Dataset | None, *, init_params=None, hypers=None
) -> CheckedTask:
    """The checked task of a run: ``model.task_for(fit_ds)`` (a task itself; an ``jnn.MLP``'s task for the
    data). ``hypers``: the hyperparameters of the sweep members that share it."""
    task = task_for(model, fit_ds, hypers=hypers)
    return check_task(task, fit_ds, batch_size=config.batch_size, val=val_ds, init_params=init_params)


def checked_task(
    model,
    config: TrainConfig,
    fit_ds: Dataset,
    val_ds: Dataset | None,
    val: Dataset | None,
    *,
    init_params=None,
    hypers=None,
) -> CheckedTask:
    """Everything checked before a run (``fit`` and ``sweep``): the data against the batch size and each
    other, the task (or the MLP's) against the data, and the monitored metric."""
    check_fit_data(fit_ds, val, config)
    ct = resolve_task(model, config, fit_ds, val_ds, init_params=init_params, hypers=hypers)
    check_monitor(config, ct, val_ds is not None)
    return ct


#: Copies of the params a run holds at once besides the optimiser state: the params, the best epoch's params (early
#: stopping) and the gradients.
PARAM_COPIES = 3


def _bytes(tree) -> int:
    return sum(int(np.prod(l.shape, dtype=np.int64)) * np.dtype(l.dtype).itemsize for l in jax.tree.leaves(tree))


def memory_bound() -> tuple[int, str] | None:
    """``(bytes, where)``: the memory of the default device (an accelerator's ``bytes_limit``; on the CPU, the
    machine's physical memory), or None when it cannot be read."""
    device = jax.devices()[0]
    try:
        limit = (device.memory_stats() or {}).get("bytes_limit")
    except Exception:  # a backend without memory statistics
        limit = None
    if limit:
        return int(limit), f"{device.device_kind} memory"
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "the machine's memory"
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(ct: CheckedTask, tx, *, members: int = 1, bound: tuple[int, str] | None = None,
                 data_bytes: int = 0, config: TrainConfig | None = None) -> int:  # fmt: skip
    """Refuse a run whose params, optimiser state and data alone cannot fit in memory, before anything is allocated.

    The estimate is ``members × ((PARAM_COPIES + k) × params + optimiser state) + data_bytes`` bytes, k the best epochs
    ``config.best_checkpoints`` keeps (0 without), from abstract shapes (nothing is allocated); activations come on
    top, so a run below the bound may still not fit.

    Args:
        ct: the checked task.
        tx: the optax transformation.
        members: sweep members trained at once.
        bound: ``(bytes, where)`` to check against (default ``memory_bound``).
        data_bytes: the data the run holds in memory (a sweep: every member's training and validation split, which
            it holds stacked).
        config: the run's ``TrainConfig``, for the best-k copies of the params it keeps (None: none).

    Returns:
        The estimate in bytes.

    Raises:
        ValueError: the estimate exceeds the bound, naming the parameter count, the estimate and the memory.
    """
    params = jax.eval_shape(ct.task.init, jax.random.key(0))
    p_bytes = _bytes(params)
    copies = PARAM_COPIES + (config.best_checkpoints.k if config is not None and config.best_checkpoints else 0)
    need = members * (copies * p_bytes + _bytes(jax.eval_shape(tx.init, params))) + int(data_bytes)
    bound = memory_bound() if bound is None else bound
    if bound is not None and need > bound[0]:
        n = sum(int(np.prod(l.shape, dtype=np.int64)) for l in jax.tree.leaves(params))
        who = f"{members} members × " if members > 1 else ""
        raise ValueError(
            f"the model does not fit in memory: {n:,} parameters ({p_bytes / 1e9:.3g} GB) need about {need / 1e9:.3g} "
            f"GB ({who}params, best params, gradients and optimiser state"
            + (f", {copies - PARAM_COPIES} best epochs' params" if copies > PARAM_COPIES else "")
            + (f", and {data_bytes / 1e9:.3g} GB of data" if data_bytes else "")
            + f") but {bound[1]} is {bound[0] / 1e9:.3g} GB; use smaller widths (hidden) or fewer members"
        )
    return need


def check_monitor(config: TrainConfig, ct: CheckedTask, has_val: bool) -> None:
    """The monitored metric must be recorded, and ``val_*`` needs validation data."""
    keys = [k for k in ct.history_keys() if k != "learning_rate"]
    for name in ("early_stopping", "loss_tol", "reduce_lr", "best_checkpoints"):
        rule = getattr(config, name)
        if rule is None:
            continue
        if rule.monitor not in keys:
            raise ValueError(f"{name}.monitor must be one of the recorded metrics {keys}; got {rule.monitor!r}")
        if rule.monitor.startswith("val_") and not has_val:
            raise ValueError(
                f"{name} on {rule.monitor!r} needs a validation set: val_fraction must be in (0, 1) or "
                f"fit(..., val=...) given; got neither. Set {name}=None or monitor 'train_loss'"
            )


def initial_state(ct: CheckedTask, config: TrainConfig, tx, params, keys: Keys, hyper: dict | None = None):
    """The state before the first epoch of a run of ``ct`` (``hyper`` overrides the task's defaults)."""
    tol = config.loss_tol
    dummy = config.monitored().init()
    dtype = jax.tree.leaves(params)[0].dtype
    plateau = None if config.reduce_lr is None else config.reduce_lr.init(dtype)  # the metrics' dtype
    top_k = None if config.best_checkpoints is None else config.best_checkpoints.init(params, dtype)
    state = init_state(
        params,
        tx,
        data_key=keys.data,
        dropout_key=keys.dropout,
        early=dummy,
        loss_tol=dummy if tol is None else tol.init(),
        hyper=ct.hyper_arrays(hyper),
        plateau=plateau,
        top_k=top_k,
    )
    check_plateau_optimizer(config, state.opt_state)
    return state


def check_plateau_optimizer(config: TrainConfig, opt_state) -> None:
    """``reduce_lr`` sets the optimiser's own rate: it must be held as state (``optax.inject_hyperparams``; the
    built-in optimisers do) and not come from a schedule, which would overwrite it at the next step.

    Raises:
        ValueError: naming the optimiser's kind of rate and what to do.
    """
    if config.reduce_lr is None:
        return
    if learning_rate_of(opt_state) is None:
        raise ValueError(
            "reduce_lr needs an optimizer that holds its learning_rate as state (the built-in ones do; build yours "
            "with optax.inject_hyperparams(...)(learning_rate=...)); got one without. Set reduce_lr=None"
        )
    if learning_rate_is_scheduled(opt_state):
        raise ValueError(
            f"reduce_lr sets the learning rate, which a schedule overwrites at every step (lr_schedule="
            f"{config.lr_schedule!r} or a callable learning_rate); use a constant rate or set reduce_lr=None"
        )


def epoch_arrays(fit_ds: Dataset, val_ds: Dataset | None, class_weight=None) -> EpochData:
    """The NumPy arrays of an epoch (one-row dummies for a missing validation set)."""
    w = class_weights(fit_ds, class_weight)
    if val_ds is None:
        return EpochData(fit_ds.x, fit_ds.y, w, fit_ds.x[:1], fit_ds.y[:1], None if w is None else w[:1])
    return EpochData(fit_ds.x, fit_ds.y, w, val_ds.x, val_ds.y, val_ds.sample_weight)


__all__ = [
    "prepare_data",
    "check_fit_data",
    "class_weights",
    "check_model",
    "resolve_task",
    "checked_task",
    "check_monitor",
    "check_memory",
    "memory_bound",
    "initial_state",
    "check_plateau_optimizer",
    "epoch_arrays",
]
