"""``evaluate``: a model's loss and metrics on a data set, compiled once per model and shape."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jnn.types import PyTree

if TYPE_CHECKING:
    from jnn.mlp import MLP
    from jnn.task import Task

import jax
import jax.numpy as jnp

from jnn.data import Dataset
from jnn.mlp import MLP
from jnn.protocol import task_for_params
from jnn.task import Task, check_task
from jnn.train.epoch import make_eval
from jnn.train.program import Static, task_key


def _evaluate(task: Static, params, x, y, w, hyper):
    return make_eval(task.value)(params, x, y, w, hyper)


#: ``EVAL(Static(ct, task_key(ct)), params, x, y, w, hyper)``: compiled once per task and kind of data.
EVAL = jax.jit(_evaluate, static_argnums=0)


def evaluate(params: PyTree, ds: Dataset, model: Task | MLP | None, *, hyper: dict | None = None) -> dict:
    """Mean loss and metrics of ``params`` on ``ds``, with the model in evaluation mode (``train=False``).

    Args:
        params: the params (e.g. ``fit(...).params``).
        ds: the ``jnn.data.Dataset`` to score (its ``sample_weight``, if any, weights the loss).
        model: the ``jnn.Task``, or the ``jnn.MLP`` the params were trained as (its widths are read
            from the params).
        hyper: hyperparameters overriding the task's defaults (e.g. a sweep member's ``keep_prob``,
            which classic dropout uses at evaluation).

    Returns:
        ``{"loss": float, <metric>: float, ..., "n": int}``, e.g. ``{"loss", "accuracy", "n"}`` for the
        classification MLP or ``{"loss", "mse", "mae", "r2", "n"}`` for a regression one. The first call
        per model and kind of data compiles; later calls reuse the compiled function.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"ds must be a jnn.data.Dataset; got {type(ds).__name__}")
    if not isinstance(model, (Task, MLP)):
        raise TypeError(f"model must be a jnn.Task or a jnn.MLP; got {type(model).__name__}")
    model = task_for_params(model, params, ds)
    if jax.process_count() > 1:
        params = jax.device_get(params)  # global arrays -> host copies, evaluated on this process
    ct = check_task(model, ds, batch_size=min(len(ds), 8), check_key=False)
    w = None if ds.sample_weight is None else jnp.asarray(ds.sample_weight)
    out = EVAL(Static(ct, task_key(ct)), params, jnp.asarray(ds.x), jnp.asarray(ds.y), w, ct.hyper_arrays(hyper))
    return {**{k: float(v) for k, v in out.items()}, "n": len(ds)}


__all__ = ["evaluate", "EVAL"]
