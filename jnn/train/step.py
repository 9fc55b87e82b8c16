"""The compiled pieces of training: one SGD step, one evaluation, one epoch.

``make_steps`` closes over the static parts of a run (network shape, loss, regularisers, optimiser,
stopping rules) and returns pure functions of the :class:`TrainState` and arrays, which ``fit`` jits
once per run.
"""

from __future__ import annotations

import collections
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from jnn.data import epoch_batches
from jnn.dropout import Dropout
from jnn.losses import _l2, l2_selection, masked_mean, per_example_loss
from jnn.model import dropout_masks, forward_cache
from jnn.train.config import TrainConfig
from jnn.train.state import STATUS_CODE, TolState, TrainState

#: Most dropout-mask elements (steps × batch × masked widths) that an epoch draws up front, in one
#: vmapped call, instead of one draw per step: on a 2-core CPU this made the 40-100-100-10 benchmark
#: epoch 1.4× faster, while drawing a 784-1024-1024-10 epoch (33M elements) up front was 20% slower.
#: The masks are bit for bit the same either way (threefry keys only; data-parallel runs draw per step).
#: A sweep counts the masks of all its members: 32 vmapped members drawing up front (25M elements) ran
#: an epoch in 530 ms against 346 ms with per-step draws.
MASKS_UP_FRONT_MAX = 1 << 22

#: How many times each compiled function was traced (incremented at trace time only). Tests use it to
#: assert that a whole run compiles once.
TRACE_COUNTS: collections.Counter = collections.Counter()


class Batch(NamedTuple):
    """One minibatch: ``x [T, d_in]``, ``y [T]``, ``mask [T]`` (False on padding)."""

    x: jax.Array
    y: jax.Array
    mask: jax.Array


class Steps(NamedTuple):
    """The pure functions of one run (see :func:`make_steps`)."""

    train_step: callable
    eval_step: callable
    run_epoch: callable


def correct(loss: str, logits, y):
    """Per-example 0/1 correctness ``[batch]``: argmax for softmax, logit > 0 for binary."""
    if loss == "binary":
        pred = (logits.reshape(logits.shape[0]) > 0).astype(jnp.int32)
    else:
        pred = jnp.argmax(logits, axis=-1).astype(jnp.int32)
    return (pred == y.astype(jnp.int32)).astype(logits.dtype)


def _learning_rate(opt_state, dtype):
    hp = getattr(opt_state, "hyperparams", None)
    if isinstance(hp, dict) and "learning_rate" in hp:
        return jnp.asarray(hp["learning_rate"], dtype)
    return jnp.asarray(jnp.nan, dtype)


def make_steps(config: TrainConfig, tx: optax.GradientTransformation, params_template, *, n_train: int,
               has_val: bool, val_fn=None, use_dropout: bool | None = None, batch_sharding=None,
               members: int = 1) -> Steps:
    """Build ``train_step``, ``eval_step`` and ``run_epoch`` for one run.

    Args:
        config: the validated :class:`TrainConfig`.
        tx: the optax transformation.
        params_template: params with the run's structure (for the L2 selection).
        n_train: number of training examples (static: fixes the epoch's shape).
        has_val: whether a validation set is passed to ``run_epoch``.
        val_fn: optional ``val_fn(params, x_val, y_val, epoch) -> (val_loss, val_accuracy)`` replacing the
            default validation (``eval_step``), e.g. for a custom metric or a scripted curve in tests.
        use_dropout: compile the dropout path (default: ``config.keep_prob < 1``). λ and keep_prob are
            read from ``state.hyper`` at run time, so one compiled step serves every value.
        batch_sharding: optional ``jax.sharding.Sharding`` for the rows of each minibatch (data
            parallelism); params and optimiser state stay replicated.
        members: how many runs the caller vmaps ``run_epoch`` over (a sweep); the up-front dropout masks
            of all of them count against :data:`MASKS_UP_FRONT_MAX`.

    Returns:
        :class:`Steps` with

        - ``train_step(state, batch) -> (state, metrics)``: one update θ ← update(θ, ∇θ l) on a
          :class:`Batch`, dropout key ``fold_in(dropout_key, step)``. A non-finite loss or gradient
          leaves the state as it was and records the step and the leaf; once ``status != 0`` (or
          ``max_steps`` is reached) the state no longer changes.
        - ``eval_step(params, x, y, mask=None, keep_prob=None) -> (mean loss, accuracy)`` without dropout
          (classic dropout uses the expected weights, scaled by ``keep_prob``, default the config's);
          the loss is the data term (no L2).
        - ``run_epoch(state, x, y, x_val, y_val) -> state``: one epoch as a ``lax.scan`` over
          minibatches drawn on device, then validation, early stopping, history and the stopping rules.
    """
    loss_name, act = config.loss, config.activation
    use_dropout = config.keep_prob < 1.0 if use_dropout is None else use_dropout
    sel = l2_selection(params_template, config.include_bias)
    stopper = config.stopper() if config.early_stopping else None
    steps_cap = config.max_steps

    def dropout_of(keep_prob):
        return Dropout(keep_prob, config.dropout_mode) if use_dropout else None

    sizes = [params_template[0]["w"].shape[0], *(layer["w"].shape[1] for layer in params_template)]
    # Threefry bits are the same under vmap; rbg bits are not, so rbg keeps one draw per step.
    up_front = use_dropout and batch_sharding is None and config.prng_impl == "threefry2x32"
    masked_width = sum(sizes[k] for k in range(len(sizes) - 1) if up_front and dropout_of(1.0).applies_to(k))

    def objective(params, batch, key, hyper, masks):
        fwd = forward_cache(params, batch.x, activation=act, dropout=dropout_of(hyper["keep_prob"]), key=key,
                            train=True, masks=masks)
        logits = fwd.zs[-1]
        data = masked_mean(per_example_loss(loss_name, logits, batch.y), batch.mask)
        return data + _l2(params, hyper["l2"], sel), (data, logits)

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def train_step(state: TrainState, batch: Batch, masks: dict | None = None):
        TRACE_COUNTS["train_step"] += 1
        if batch_sharding is not None:
            batch = Batch(*(jax.lax.with_sharding_constraint(a, batch_sharding) for a in batch))
        key = jax.random.fold_in(state.dropout_key, state.step)
        (_, (data, logits)), grads = grad_fn(state.params, batch, key, state.hyper, masks)
        if config.check_finite:
            leaf_ok = jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
        else:  # the loss alone (see TrainConfig.check_finite)
            leaf_ok = jnp.ones((len(jax.tree.leaves(grads)),), bool)
        finite = jnp.isfinite(data) & jnp.all(leaf_ok)
        running = state.status == 0
        apply = running & finite
        # optax's own code (e.g. Adam's bias correction) is not written for strict dtype promotion; run it
        # under standard promotion so that a user's strict setting does not break any optimiser.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)
        step = state.step + apply.astype(jnp.int32)
        newly_bad = running & ~finite
        status = jnp.where(newly_bad, STATUS_CODE["non_finite"], state.status)
        if steps_cap is not None:
            status = jnp.where((status == 0) & (step >= steps_cap), STATUS_CODE["max_steps"], status)
        first_bad = jnp.where(jnp.all(leaf_ok), -2, jnp.argmin(leaf_ok)).astype(jnp.int32)
        new = state._replace(
            params=pick(params, state.params), opt_state=pick(opt_state, state.opt_state), step=step,
            status=status.astype(jnp.int32),
            bad_step=jnp.where(newly_bad, state.step, state.bad_step),
            bad_leaf=jnp.where(newly_bad, first_bad, state.bad_leaf),
        )
        w = batch.mask.astype(data.dtype) * apply.astype(data.dtype)
        metrics = {"loss_sum": data * jnp.sum(w), "correct": jnp.sum(correct(loss_name, logits, batch.y) * w),
                   "count": jnp.sum(w)}
        return new, metrics

    def eval_step(params, x, y, mask=None, keep_prob=None):
        TRACE_COUNTS["eval_step"] += 1
        p = config.keep_prob if keep_prob is None else keep_prob
        logits = forward_cache(params, x, activation=act, dropout=dropout_of(p), train=False).zs[-1]
        loss = masked_mean(per_example_loss(loss_name, logits, y), mask)
        acc = masked_mean(correct(loss_name, logits, y), mask)
        return loss, acc

    def run_epoch(state: TrainState, x, y, x_val, y_val) -> TrainState:
        TRACE_COUNTS["run_epoch"] += 1
        idx, mask = epoch_batches(jax.random.fold_in(state.data_key, state.epoch), n_train, config.batch_size,
                                  config.drop_last)

        def body(s, im):
            i, m, masks = im
            return train_step(s, Batch(x[i], y[i], m), masks)

        was_running = state.status == 0
        masks = None
        if up_front and members * idx.size * masked_width <= MASKS_UP_FRONT_MAX:
            # Step s draws its masks from fold_in(dropout_key, s); every step of the epoch that applies
            # an update has s = state.step + i, so the epoch's masks can be drawn in one call.
            d = dropout_of(state.hyper["keep_prob"])
            masks = jax.vmap(lambda s: dropout_masks(d, jax.random.fold_in(state.dropout_key, s), sizes,
                                                     config.batch_size))(state.step + jnp.arange(idx.shape[0]))
        state, m = jax.lax.scan(body, state, (idx, mask, masks))
        dtype = m["loss_sum"].dtype
        count = jnp.maximum(jnp.sum(m["count"]), 1.0)
        train_loss = jnp.sum(m["loss_sum"]) / count
        train_acc = jnp.sum(m["correct"]) / count
        nan = jnp.asarray(jnp.nan, dtype)
        if not has_val:
            val_loss, val_acc = nan, nan
        elif val_fn is not None:
            val_loss, val_acc = (jnp.asarray(v, dtype) for v in val_fn(state.params, x_val, y_val, state.epoch))
        else:
            val_loss, val_acc = eval_step(state.params, x_val, y_val, keep_prob=state.hyper["keep_prob"])
        metrics = {"train_loss": train_loss, "train_accuracy": train_acc, "val_loss": val_loss,
                   "val_accuracy": val_acc, "learning_rate": _learning_rate(state.opt_state, dtype)}
        # An epoch counts when it started while running and applied at least one update.
        counted = was_running & (jnp.sum(m["count"]) > 0)
        e = state.epoch
        history = {k: v.at[e].set(jnp.where(counted, metrics[k], v[e])) for k, v in state.history.items()}
        status = state.status
        early, best_params = state.early, state.best_params
        if stopper is not None:
            upd, improved = stopper.update(state.early, metrics[stopper.monitor], e)
            improved = improved & counted & (status == 0)
            early = jax.tree.map(lambda a, b: jnp.where(counted & (status == 0), a, b), upd, state.early)
            best_params = jax.tree.map(lambda a, b: jnp.where(improved, a, b), state.params, state.best_params)
            status = jnp.where((status == 0) & early.stop, STATUS_CODE["early_stopping"], status)
        tol = state.tol
        if config.loss_tol is not None:
            better = train_loss < tol.best - config.loss_tol
            tol = TolState(jnp.where(counted & better, train_loss, tol.best),
                           jnp.where(better, 0, tol.bad_epochs + counted.astype(jnp.int32)).astype(jnp.int32))
            status = jnp.where((status == 0) & (tol.bad_epochs >= config.tol_patience), STATUS_CODE["loss_tol"],
                               status)
        epoch = e + counted.astype(jnp.int32)
        status = jnp.where((status == 0) & (epoch >= config.max_epochs), STATUS_CODE["max_epochs"], status)
        return state._replace(epoch=epoch, early=early, best_params=best_params, tol=tol, history=history,
                              status=status.astype(jnp.int32))

    return Steps(train_step, eval_step, run_epoch)
