"""One compiled epoch of any task: a ``lax.scan`` of train steps, then validation and stopping.

The lecture's loop "pick a random minibatch B, compute ∇θ l, update θ" is run for one epoch on device:
the permutation is drawn from ``fold_in(data_key, epoch)`` and cut into minibatches (the ragged last one
padded and masked), the steps are scanned, and then the validation metrics, early stopping (restore-best
included) and the stopping rules are updated, all inside the same compiled call. The epoch's metrics come
back in a small summary array; the host appends them to the history (no buffer sized by ``max_epochs``,
so a finished run can be continued with a larger budget).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jnn.data import epoch_batches
from jnn.debug import note_trace
from jnn.losses import masked_mean
from jnn.task import CheckedTask, metric_values, set_metric_values, set_variance
from jnn.train.best_k import BestCheckpoints
from jnn.train.optimizers import learning_rate_of, set_learning_rate
from jnn.train.plateau import ReduceLROnPlateau
from jnn.train.state import Status, TrainState
from jnn.train.step import Batch
from jnn.train.stopping import EarlyStopping

#: Most elements of random noise (steps × ``task.draw`` size) that an epoch draws up front, in one
#: vmapped call, instead of one draw per step (benchmarks/throughput.py measured both; the noise is bit
#: for bit the same either way). A sweep divides it among its members.
NOISE_UP_FRONT_MAX = 1 << 22


class EpochData(NamedTuple):
    """The arrays an epoch reads: training ``x [n, d]``, ``y [n, ...]``, ``weight [n]`` or None, and the
    same for validation (dummies of one row when there is no validation set)."""

    x: jax.Array
    y: jax.Array
    weight: jax.Array | None
    x_val: jax.Array
    y_val: jax.Array
    weight_val: jax.Array | None


def _learning_rate(opt_state, dtype):
    lr = learning_rate_of(opt_state)
    return jnp.asarray(jnp.nan if lr is None else lr, dtype)  # NaN is never recorded: the key is left out


def make_eval(ct: CheckedTask):
    """Build ``eval_fn(params, x, y, weight, hyper, mask=None) -> {"loss": scalar, metric: scalar, ...}``.

    The model runs with ``train=False`` (the task's inference rule: classic dropout scales by keep_prob);
    the loss is the data term (no penalty), weighted by ``weight`` when given; metrics are plain means.
    """

    def eval_fn(params, x, y, weight, hyper, mask=None):
        note_trace("eval_step")
        out = ct.task.apply(params, x, key=None, train=False, hyper=hyper)
        values = metric_values(ct, out, y, set_variance(ct, y, mask))
        whole = set_metric_values(ct, out, y, mask)
        means = {k: masked_mean(v, mask) for k, v in values.items()}
        return {
            "loss": masked_mean(ct.loss_fn(out, y), mask, weight),
            **{k: (means | whole)[k] for k in ct.metric_names},
        }

    return eval_fn


def make_run_epoch(
    ct: CheckedTask,
    train_step,
    *,
    n_train: int,
    batch_size: int,
    drop_last: bool,
    max_epochs: int,
    early: EarlyStopping | None = None,
    loss_tol: EarlyStopping | None = None,
    divergence_factor: float | None = None,
    has_val: bool = True,
    noise_up_front: int = 0,
    val_fn=None,
    reduce_lr: ReduceLROnPlateau | None = None,
    keep_best: BestCheckpoints | None = None,
):
    """Build ``run_epoch(state, data: EpochData) -> (state, metrics)``.

    Args:
        ct: the checked task.
        train_step: from ``jnn.train.step.make_train_step``.
        n_train: training examples (static: fixes the epoch's shape).
        batch_size: T.
        drop_last: drop the ragged last minibatch instead of padding and masking it.
        max_epochs: the epoch budget.
        early: the early-stopping rule (None: off).
        loss_tol: the training-loss tolerance rule (None: off).
        divergence_factor: stop (``Status.DIVERGED``) when the epoch's training loss exceeds this factor times
            the best one so far and also the first epoch's (None: off).
        has_val: whether ``data`` holds a validation set.
        noise_up_front: draw an epoch's ``task.draw`` noise in one call when it has at most this many
            elements (0: draw per step; the caller decides, e.g. never for rbg keys or sharded batches).
        val_fn: optional ``val_fn(params, x_val, y_val, epoch) -> {"loss": ..., metric: ...}`` replacing
            the validation metrics (e.g. a scripted curve in tests).
        reduce_lr: the ``jnn.ReduceLROnPlateau`` rule (None: off).
        keep_best: the ``jnn.BestCheckpoints`` rule (None: off).

    Returns:
        The pure epoch function; ``metrics`` maps each history key to the epoch's scalar. An epoch counts
        (``state.epoch`` grows by one) when it started while running and applied an update.
    """
    steps = (n_train // batch_size) if drop_last else -(-n_train // batch_size)
    up_front = ct.task.draw is not None and 0 < steps * ct.noise_size <= noise_up_front
    epoch_end = make_epoch_end(ct, max_epochs=max_epochs, early=early, loss_tol=loss_tol,
                               divergence_factor=divergence_factor, has_val=has_val, val_fn=val_fn,
                               reduce_lr=reduce_lr, keep_best=keep_best)  # fmt: skip

    def run_epoch(state: TrainState, data: EpochData) -> tuple[TrainState, dict]:
        note_trace("run_epoch")
        idx, mask = epoch_batches(jax.random.fold_in(state.data_key, state.epoch), n_train, batch_size, drop_last)
        y_var = set_variance(ct, data.y)
        noise = None
        if up_front:
            # Step s draws from fold_in(dropout_key, s); every step of the epoch that applies an update
            # has s = state.step + i, so the epoch's noise can be drawn in one call.
            noise = jax.vmap(lambda s: ct.task.draw(jax.random.fold_in(state.dropout_key, s), state.hyper, batch_size))(
                state.step + jnp.arange(idx.shape[0])
            )

        def body(s, inp):
            i, m, n = inp
            w = None if data.weight is None else data.weight[i]
            return train_step(s, Batch(data.x[i], data.y[i], m, w), n, y_var)

        was_running = state.status == Status.RUNNING
        state, sums = jax.lax.scan(body, state, (idx, mask, noise))
        return epoch_end(state, data, sums, was_running)

    return run_epoch


def make_epoch_end(ct: CheckedTask, *, max_epochs: int, early: EarlyStopping | None = None,
                   loss_tol: EarlyStopping | None = None, divergence_factor: float | None = None, has_val: bool = True,
                   val_fn=None, reduce_lr: ReduceLROnPlateau | None = None,
                   keep_best: BestCheckpoints | None = None):  # fmt: skip
    """Build ``epoch_end(state, data, sums, was_running) -> (state, metrics)``: what follows an epoch's steps.

    ``sums`` holds each step's sums stacked (``[steps]`` per key, as a scan of
    ``jnn.train.step.make_train_step`` returns them); the training metrics are their totals, then come the
    validation metrics, the learning rate and ``advance``. The in-memory epoch (``make_run_epoch``) and
    the streamed one (``jnn.train.streaming``) end alike, so both give the same metrics bit for bit. Arguments
    as in ``make_run_epoch``; ``data`` is the ``EpochData`` (its validation arrays; whether it has
    weights).
    """
    eval_fn = make_eval(ct)
    names = ct.metric_names

    def epoch_end(state, data, sums, was_running):
        dtype = sums["loss_sum"].dtype
        count = jnp.maximum(jnp.sum(sums["count"]), 1.0)
        if data.weight is None:
            metrics = {"train_loss": jnp.sum(sums["loss_sum"]) / count}
        else:  # the weighted mean over the epoch
            wsum = jnp.sum(sums["loss_count"])
            metrics = {"train_loss": jnp.sum(sums["loss_sum"]) / jnp.where(wsum > 0, wsum, 1.0)}
        metrics.update({f"train_{k}": jnp.sum(sums[k]) / count for k in ct.example_metric_names})
        metrics.update(validation(state, data, dtype))
        metrics["learning_rate"] = _learning_rate(state.opt_state, dtype)
        counted = was_running & (jnp.sum(sums["count"]) > 0)
        state = advance(state, metrics, counted, early=early, loss_tol=loss_tol, max_epochs=max_epochs,
                        divergence_factor=divergence_factor, reduce_lr=reduce_lr, keep_best=keep_best)  # fmt: skip
        return state, metrics

    def validation(state, data, dtype):
        nan = jnp.asarray(jnp.nan, dtype)
        if not has_val:
            vals = {"loss": nan, **{k: nan for k in names}}
        elif val_fn is not None:
            vals = val_fn(state.params, data.x_val, data.y_val, state.epoch)
        else:
            vals = eval_fn(state.params, data.x_val, data.y_val, data.weight_val, state.hyper)
        return {f"val_{k}": jnp.asarray(v, dtype) for k, v in vals.items()}

    return epoch_end


def advance(
    state: TrainState,
    metrics: dict,
    counted,
    *,
    early: EarlyStopping | None,
    loss_tol: EarlyStopping | None,
    max_epochs: int,
    divergence_factor: float | None = None,
    reduce_lr: ReduceLROnPlateau | None = None,
    keep_best: BestCheckpoints | None = None,
) -> TrainState:
    """End an epoch on device: step the rules on ``metrics`` (divergence, early stopping with restore-best, the
    training-loss tolerance, ReduceLROnPlateau, the best-k slots, the epoch budget) and count the epoch if
    ``counted``. ReduceLROnPlateau and the best-k slots see the epochs that early stopping sees (counted, while
    running)."""
    e = state.epoch
    status = state.status
    loss = metrics["train_loss"].astype(state.loss_ref.dtype)
    first, best = state.loss_ref[0], state.loss_ref[1]
    first = jnp.where(counted & jnp.isnan(first), loss, first)
    if divergence_factor is not None:
        exploded = counted & (loss > divergence_factor * best) & (loss > first)
        status = jnp.where((status == Status.RUNNING) & exploded, Status.DIVERGED, status)
    best = jnp.where(counted & (loss < best), loss, best)
    loss_ref = jnp.stack([first, best])
    early_state, best_params = state.early, state.best_params
    live = counted & (status == Status.RUNNING)  # a diverged epoch is not offered to the rules below
    if early is not None:
        upd, improved = early.update(state.early, metrics[early.monitor], e)
        early_state = jax.tree.map(lambda a, b: jnp.where(live, a, b), upd, state.early)
        best_params = jax.tree.map(lambda a, b: jnp.where(improved & live, a, b), state.params, best_params)
        status = jnp.where((status == Status.RUNNING) & early_state.stop, Status.EARLY_STOPPING, status)
    plateau, top_k, opt_state = state.plateau, state.top_k, state.opt_state
    if reduce_lr is not None:
        lr = learning_rate_of(opt_state)
        upd, new_lr = reduce_lr.update(state.plateau, metrics[reduce_lr.monitor], lr)
        plateau = jax.tree.map(lambda a, b: jnp.where(live, a, b), upd, state.plateau)
        opt_state = jax.tree.map(lambda a: a, opt_state)  # new containers: the rate is set in this copy only
        set_learning_rate(opt_state, jnp.where(live, new_lr, lr))
    if keep_best is not None:
        top_k = keep_best.update(state.top_k, metrics[keep_best.monitor], e, state.params, live)
    tol_state = state.loss_tol
    if loss_tol is not None:
        upd, _ = loss_tol.update(state.loss_tol, metrics[loss_tol.monitor], e)
        tol_state = jax.tree.map(lambda a, b: jnp.where(counted, a, b), upd, state.loss_tol)
        status = jnp.where((status == Status.RUNNING) & tol_state.stop, Status.LOSS_TOL, status)
    epoch = e + counted.astype(jnp.int32)
    status = jnp.where((status == Status.RUNNING) & (epoch >= max_epochs), Status.MAX_EPOCHS, status)
    return state._replace(epoch=epoch, early=early_state, best_params=best_params, loss_tol=tol_state,
                          loss_ref=loss_ref, status=status.astype(jnp.int32), plateau=plateau, top_k=top_k,
                          opt_state=opt_state)  # fmt: skip


def with_summary(run_epoch, keys):
    """``fn(state, data) -> (state, summary)``: ``run_epoch`` with its metrics packed by ``epoch_summary``
    (what the host loop jits; ``jax.vmap`` of it serves a sweep)."""

    def fn(state, data):
        state, metrics = run_epoch(state, data)
        return state, epoch_summary(state, metrics, keys)

    return fn


def epoch_summary(state: TrainState, metrics: dict, keys) -> jax.Array:
    """``[2 + len(keys)]``: epoch, status and the epoch's value of each history key (one small array read
    back per epoch; the host appends the values when the epoch counted)."""
    dtype = metrics[keys[0]].dtype
    return jnp.stack([state.epoch.astype(dtype), state.status.astype(dtype), *(metrics[k] for k in keys)])


__all__ = [
    "NOISE_UP_FRONT_MAX",
    "EpochData",
    "make_eval",
    "make_run_epoch",
    "make_epoch_end",
    "advance",
    "epoch_summary",
    "with_summary",
]
