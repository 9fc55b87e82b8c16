"""One compiled SGD step of any ``jnn.Task``: θ ← update(θ, ∇θ l) on one minibatch, guarded.

The step knows nothing about the model: it calls the task's ``apply``, ``loss`` and ``penalty``
through ``jnn.task.task_objective``, applies the example mask of padded batches and the sample
weights, and refuses a non-finite loss or gradient (the state is kept as it was and the step and the
leaf are recorded).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.custom_batching import sequential_vmap

from jnn.debug import note_trace
from jnn.task import CheckedTask, metric_values, task_objective
from jnn.train.state import LOSS_ONLY, Status, TrainState


class Batch(NamedTuple):
    """One minibatch: ``x [T, d_in]``, ``y [T, ...]``, ``mask [T]`` (False on padding), ``weight [T]`` or None."""

    x: jax.Array
    y: jax.Array
    mask: jax.Array
    weight: jax.Array | None = None


def make_train_step(
    ct: CheckedTask,
    tx: optax.GradientTransformation,
    *,
    check_finite: bool = True,
    max_steps: int | None = None,
    batch_sharding=None,
    full_batches: bool = False,
    members: bool = False,
):
    """Build ``train_step(state, batch, noise=None, y_var=None) -> (state, sums)`` for a checked task.

    Args:
        ct: the ``jnn.task.CheckedTask``.
        tx: the optax transformation.
        check_finite: check every gradient leaf for NaN/inf before the update (else only the loss).
        max_steps: optional step budget; the status becomes ``MAX_STEPS`` when it is reached.
        batch_sharding: optional ``jax.sharding.Sharding`` for the rows of each minibatch (data
            parallelism); params and optimiser state stay replicated.
        full_batches: every minibatch is all real rows (no padding: ``drop_last`` or T divides n). The
            loss is then the plain mean over the batch, so a step computes bit for bit what a
            hand-written step with ``jnp.mean`` computes (the mask is still used for the counts).

    Returns:
        ``train_step``: one update on a ``Batch``. The model's key is ``fold_in(dropout_key, step)``,
        or ``noise`` when given (``task.draw`` of that key, drawn beforehand). ``y_var`` is the training
        targets' variance for metrics that need it. A non-finite loss or gradient leaves the state as it
        was and records the step and the leaf; once ``status != 0`` the state no longer changes. ``sums``
        holds ``count`` (real examples updated on), ``loss_sum``/``loss_count`` and each metric's sum.
    """

    def loss(params, batch, key, hyper):
        mask = None if full_batches else batch.mask
        return task_objective(ct, params, batch.x, batch.y, mask, batch.weight, key=key, hyper=hyper)

    grad_fn = jax.value_and_grad(loss, has_aux=True)
    member_draw = members and ct.task.draw is not None

    def train_step(state: TrainState, batch: Batch, noise=None, y_var=None):
        note_trace("train_step")
        if batch_sharding is not None:
            batch = jax.tree.map(lambda a: jax.lax.with_sharding_constraint(a, batch_sharding), batch)
        key = jax.random.fold_in(state.dropout_key, state.step) if noise is None else noise
        if noise is None and member_draw:
            key = sequential_vmap(lambda k, h: ct.task.draw(k, h, batch.x.shape[0]))(key, state.hyper)
        (_, (data, outputs)), grads = grad_fn(state.params, batch, key, state.hyper)
        if check_finite:
            leaf_ok = jnp.stack([jnp.all(jnp.isfinite(g)) for g in jax.tree.leaves(grads)])
        else:  # the loss alone (see TrainConfig.check_finite)
            leaf_ok = jnp.ones((len(jax.tree.leaves(grads)),), bool)
        finite = jnp.isfinite(data) & jnp.all(leaf_ok)
        running = state.status == Status.RUNNING
        apply = running & finite
        # optax's own code (e.g. Adam's bias correction) is not written for strict dtype promotion; run it
        # under standard promotion so that a user's strict setting does not break any optimiser.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        pick = lambda new, old: jax.tree.map(lambda a, b: jnp.where(apply, a, b), new, old)
        step = state.step + apply.astype(jnp.int32)
        newly_bad = running & ~finite
        status = jnp.where(newly_bad, Status.NON_FINITE, state.status)
        if max_steps is not None:
            status = jnp.where((status == Status.RUNNING) & (step >= max_steps), Status.MAX_STEPS, status)
        first_bad = jnp.where(jnp.all(leaf_ok), LOSS_ONLY, jnp.argmin(leaf_ok)).astype(jnp.int32)
        new = state._replace(
            params=pick(params, state.params),
            opt_state=pick(opt_state, state.opt_state),
            step=step,
            status=status.astype(jnp.int32),
            bad_step=jnp.where(newly_bad, state.step, state.bad_step),
            bad_leaf=jnp.where(newly_bad, first_bad, state.bad_leaf),
        )
        w = batch.mask.astype(data.dtype) * apply.astype(data.dtype)
        sums = {"count": jnp.sum(w)}
        if batch.weight is None:
            sums["loss_sum"], sums["loss_count"] = data * sums["count"], sums["count"]
        else:
            wsum = jnp.sum(w * batch.weight.astype(data.dtype))
            sums["loss_sum"], sums["loss_count"] = data * wsum, wsum
        for name, values in metric_values(ct, outputs, batch.y, y_var).items():
            sums[name] = jnp.sum(values * w)
        return new, sums

    return train_step


__all__ = ["Batch", "make_train_step"]
