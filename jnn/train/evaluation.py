"""``evaluate``: a model's loss and metrics on a data set, compiled once per model and shape."""

from __future__ import annotations

import collections
import functools

import jax
import jax.numpy as jnp

from jnn.data import Dataset
from jnn.mlp import mlp_task_for
from jnn.task import CheckedTask, Task, check_task
from jnn.train.epoch import make_eval

#: Compiled evaluation functions by task (at most ``_CACHE_SIZE``, oldest dropped first).
_CACHE: collections.OrderedDict = collections.OrderedDict()
_CACHE_SIZE = 64


#: The built-in MLP of a config, by (config, sizes, dtype): one Task object, so one compile.
_mlp_of = functools.lru_cache(maxsize=64)(mlp_task_for)


def compiled_eval(task: Task, ds: Dataset) -> tuple[CheckedTask, callable]:
    """The checked task and its jitted ``eval_fn`` for data like ``ds`` (built once per task and kind of data)."""
    key = (id(task), ds.x.shape[1], ds.x.dtype.str, ds.y.shape[1:], ds.y.dtype.str, ds.num_classes)
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is task:
        _CACHE.move_to_end(key)
        return hit[1], hit[2]
    ct = check_task(task, ds, batch_size=min(len(ds), 8))
    fn = jax.jit(make_eval(ct))
    _CACHE[key] = (task, ct, fn)  # the task is kept, so its id is not reused while cached
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return ct, fn


def evaluate(params, ds: Dataset, model, *, hyper: dict | None = None) -> dict:
    """Mean loss and metrics of ``params`` on ``ds``, with the model in evaluation mode (``train=False``).

    Args:
        params: the params (e.g. ``fit(...).params``).
        ds: the :class:`jnn.data.Dataset` to score (its ``sample_weight``, if any, weights the loss).
        model: the :class:`jnn.Task`, or a :class:`jnn.TrainConfig` for the built-in MLP it describes.
        hyper: hyperparameters overriding the task's defaults (e.g. a sweep member's ``keep_prob``,
            which classic dropout uses at evaluation).

    Returns:
        ``{"loss": float, <metric>: float, ..., "n": int}``, e.g. ``{"loss", "accuracy", "n"}`` for the
        classification MLP or ``{"loss", "mse", "mae", "r2", "n"}`` for a regression one. The first call
        per model and kind of data compiles; later calls reuse the compiled function.
    """
    from jnn.train.config import TrainConfig

    if not isinstance(ds, Dataset):
        raise TypeError(f"ds must be a jnn.data.Dataset; got {type(ds).__name__}")
    if isinstance(model, TrainConfig):
        leaves = params if isinstance(params, (list, tuple)) else None
        if not leaves or not all(isinstance(l, dict) and "w" in l for l in leaves):
            raise TypeError(
                "with a TrainConfig, params must be the built-in MLP's list of {'w', 'b'} dicts; pass "
                "the jnn.Task to evaluate another model"
            )
        sizes = (int(leaves[0]["w"].shape[0]), *(int(l["w"].shape[1]) for l in leaves))
        if ds.x.shape[1] != sizes[0]:
            raise ValueError(f"ds has {ds.x.shape[1]} features but the params take {sizes[0]} (their first layer "
                             f"is {sizes[0]}x{sizes[1]})")  # fmt: skip
        model = _mlp_of(model, sizes, str(jnp.asarray(leaves[0]["w"]).dtype))
    elif not isinstance(model, Task):
        raise TypeError(f"model must be a jnn.Task or a jnn.TrainConfig; got {type(model).__name__}")
    if jax.process_count() > 1:
        params = jax.device_get(params)  # global arrays -> host copies, evaluated on this process
    ct, fn = compiled_eval(model, ds)
    w = None if ds.sample_weight is None else jnp.asarray(ds.sample_weight)
    out = fn(params, jnp.asarray(ds.x), jnp.asarray(ds.y), w, ct.hyper_arrays(hyper))
    return {**{k: float(v) for k, v in out.items()}, "n": len(ds)}


__all__ = ["evaluate", "compiled_eval"]
