"""The model/task contract: *what* to train, as a small tuple of pure functions.

In the spirit of optax's ``GradientTransformation(init, update)``, a ``Task`` is everything the
engine (``jnn.fit``, ``jnn.sweep``, ``jnn.evaluate``) needs to know about a model::

    task = jnn.Task(
        init=lambda key: {"w": jax.random.normal(key, (d, 1)) * 0.1, "b": jnp.zeros(1)},
        apply=lambda params, x, *, key, train, hyper: x @ params["w"] + params["b"],
        loss="mse",                                   # or any (outputs, y) -> [batch]
        penalty=lambda params, hyper: hyper["l2"] * jnp.sum(params["w"] ** 2),
        metrics=("mae", "r2"),                        # or {"name": (outputs, y) -> [batch]}
        hyper={"l2": 1e-4},                           # read by apply/penalty; sweepable
    )

The engine owns the rest: minibatches drawn on device, the example mask of padded batches (a loss
never sees padding), sample weights, the optimiser, the non-finite guard, early stopping, history,
checkpoints, sweeps. ``jnn.fit(train, config)`` without a task trains the built-in MLP, which is one
instance of this contract (``jnn.mlp.mlp_task``).

Before anything is compiled, ``check_task`` traces every function once on abstract values
(``jax.eval_shape``: no FLOPs) and raises a ``ValueError``/``TypeError`` that names the piece and says
what was expected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jnn.types import DTypeLike, PyTree

if TYPE_CHECKING:
    from jnn.data import Dataset

import numbers
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jnn import _validate as V
from jnn.losses import DEFAULT_LOSS, LOSSES, REGISTRY, TARGETS, loss_function, loss_of, objective
from jnn.metrics import resolve_metrics, target_variance
from jnn.pytree import leaf_names


class Task(NamedTuple):
    """What to train: pure functions of explicit arguments (see the module docstring).

    Attributes:
        init: ``init(key) -> params``, any pytree of float arrays.
        apply: ``apply(params, x, *, key, train, hyper) -> outputs`` for ``x [batch, d_in]``; outputs are
            ``[batch, ...]`` floats (logits for the classification losses). ``key`` is the step's PRNG key
            while training (None at evaluation), ``train`` says which (dropout: random masks while
            training; the inference rule, e.g. classic dropout's expected weights, when False), and
            ``hyper`` is ``{name: scalar array}`` with the task's hyperparameters.
        loss: a built-in name (``jnn.losses.LOSSES``: ``"softmax"``, ``"binary"``, ``"mse"``,
            ``"multilabel"``, ``"huber"``; one ``jnn.losses.Loss`` record each) or a per-example function
            ``loss(outputs, y) -> [batch]``. The engine takes the mean over the real examples (weighted by
            sample/class weights when given).
        penalty: optional ``penalty(params, hyper) -> scalar`` added to the loss (the lecture's λΣw² is
            ``jnn.mlp.l2_penalty_fn``).
        metrics: None (the built-in loss's defaults, see ``jnn.metrics.DEFAULT_METRICS``), a sequence
            of built-in names, or ``{name: built-in name or function(outputs, y) -> [batch]}``. Each is
            recorded per epoch as ``train_<name>`` and ``val_<name>`` and can be monitored by early stopping.
        hyper: ``{name: float}`` default hyperparameters; the engine passes them as arrays, so one compile
            serves every value and ``jnn.sweep`` can sweep any of them.
        draw: optional speed-up for random tasks: ``draw(key, hyper, batch_size) -> noise`` (a pytree of
            arrays). The engine may then call ``apply(..., key=noise)`` with ``noise = draw(key, ...)``
            instead of ``apply(..., key=key)``, and draw the noise of a whole epoch in one vmapped call;
            both calls must give the same outputs. The built-in MLP uses it for its dropout masks.

    A Task is also a *model* in the sense of ``fit(..., task=...)``, ``jnn.sweep`` and ``jnn.evaluate``: it
    answers the same few questions as ``jnn.MLP`` (``task_for``, ``task_for_params``,
    ``sweep_axes``, ``member``, ``with_hyper``, ``shape_key``, ``shape_label``,
    ``describe``), so the engine has one path for both.
    """

    init: Callable
    apply: Callable
    loss: Any = DEFAULT_LOSS
    penalty: Callable | None = None
    metrics: Any = None
    hyper: Mapping[str, float] | None = None
    draw: Callable | None = None

    @staticmethod
    def from_equinox(model, *, loss: Any = DEFAULT_LOSS, penalty: Callable | None = None, metrics: Any = None,
                     hyper: Mapping[str, float] | None = None, set_hyper: Callable | None = None,
                     batched: bool = False) -> Task:  # fmt: skip
        """A task training an Equinox module (see ``jnn.adapters``).

        Args:
            model: an ``eqx.Module``, or ``make(key) -> eqx.Module`` (the params then come from the run's seed).
            loss: as in ``jnn.Task``.
            penalty: as in ``jnn.Task``; ``penalty(params, hyper)`` gets the module's float arrays, with
                None in place of the rest.
            metrics: as in ``jnn.Task``.
            hyper: ``{name: default}`` hyperparameters (sweepable).
            set_hyper: ``set_hyper(module, hyper) -> module`` puts the values (scalar arrays) into the module,
                e.g. ``lambda m, h: eqx.tree_at(lambda m: m.drop.p, m, h["p"])``.
            batched: the module takes the whole batch ``[batch, d_in]`` (and one key); default False: it takes
                one example and is vmapped.

        Returns:
            The task, a ``Task``.

        Raises:
            ImportError: Equinox is not installed.
            TypeError, ValueError: a bad argument (named).
        """
        from jnn.adapters import equinox_functions

        init, apply = equinox_functions(model, hyper=hyper, set_hyper=set_hyper, batched=batched)
        return Task(init=init, apply=apply, loss=loss, penalty=penalty, metrics=metrics, hyper=dict(hyper or {}))

    @staticmethod
    def from_nnx(module, *, loss: Any = DEFAULT_LOSS, penalty: Callable | None = None, metrics: Any = None,
                 hyper: Mapping[str, float] | None = None, set_hyper: Callable | None = None) -> Task:  # fmt: skip
        """A task training a Flax NNX module (see ``jnn.adapters``).

        Args:
            module: an ``nnx.Module`` taking the batch ``[batch, d_in]``, or ``make(key) -> nnx.Module`` (built
                with ``nnx.Rngs(key)``: the params then come from the run's seed).
            loss: as in ``jnn.Task``.
            penalty: as in ``jnn.Task``; ``penalty(params, hyper)`` gets the ``nnx.State`` of the module's
                ``nnx.Param`` variables.
            metrics: as in ``jnn.Task``.
            hyper: ``{name: default}`` hyperparameters (sweepable).
            set_hyper: ``set_hyper(module, hyper) -> module`` puts the values (scalar arrays) into the module,
                e.g. ``def f(m, h): m.drop.rate = h["rate"]; return m``.

        Returns:
            The task, a ``Task``.

        Raises:
            ImportError: Flax is not installed.
            TypeError, ValueError: a bad argument, or a module with batch statistics (named).
        """
        from jnn.adapters import nnx_functions

        init, apply = nnx_functions(module, hyper=hyper, set_hyper=set_hyper)
        return Task(init=init, apply=apply, loss=loss, penalty=penalty, metrics=metrics, hyper=dict(hyper or {}))

    # The model protocol (jnn.protocol.Model), shared with jnn.MLP: what fit, sweep and evaluate ask.

    def sweep_axes(self) -> tuple[str, ...]:
        """The names ``jnn.sweep`` may vary for this model besides the config's: the task's hyperparameters."""
        return tuple(self.hyper or {})

    def member(self, values: Mapping) -> tuple[Task, dict]:
        """One sweep member: ``(model, hyper)`` with ``values`` (``{hyperparameter: real}``) over the defaults.

        Raises:
            TypeError: a value that is not a finite real number (naming it).
        """
        return self, {**(self.hyper or {}), **{n: V.check_real(n, v) for n, v in values.items()}}

    def with_hyper(self, hyper: Mapping) -> Task:
        """This task with the defaults of its hyperparameters set from ``hyper`` (names it does not have are left
        out): a sweep member as a task of its own (``SweepResult.refit``)."""
        own = dict(self.hyper or {})
        return self._replace(hyper={**own, **{k: float(v) for k, v in hyper.items() if k in own}})

    def describe(self, ct: CheckedTask, params: PyTree) -> dict:
        """What a run records of this model (``config.json``): ``{"task": {loss, metrics, hyper, params}}``.

        Args:
            ct: the ``CheckedTask`` of this task.
            params: params of the task (arrays or ``jax.ShapeDtypeStruct``), for their names, shapes and dtypes.
        """
        loss = self.loss if isinstance(self.loss, str) else getattr(self.loss, "__qualname__", "custom")
        leaves = [[n, *_leaf_spec(l)] for n, l in leaf_names(params)]
        return {"task": {"loss": loss, "metrics": list(ct.metric_names), "hyper": ct.hyper, "params": leaves}}


def _leaf_spec(leaf) -> tuple[list[int], str]:
    """``(shape, dtype name)`` of an array, a ``jax.ShapeDtypeStruct`` or a Python number."""
    a = leaf if hasattr(leaf, "shape") and hasattr(leaf, "dtype") else np.asarray(leaf)
    return [int(d) for d in a.shape], str(a.dtype)


class CheckedTask(NamedTuple):
    """A task after ``check_task``: resolved functions and the shapes the engine needs.

    Attributes:
        task: the ``Task``.
        loss_fn: the per-example loss function.
        metrics: ``((name, fn), ...)``.
        hyper: ``{name: float}`` defaults.
        dtype: the float dtype of the params (hyperparameters and metrics use it).
        noise_size: elements of one ``draw`` output (0 without ``draw``).
    """

    task: Task
    loss_fn: Callable
    metrics: tuple
    hyper: dict
    dtype: Any
    noise_size: int

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The metric names, in order."""
        return tuple(name for name, _ in self.metrics)

    @property
    def example_metric_names(self) -> tuple[str, ...]:
        """The names of the per-example metrics (averaged over examples, recorded for training and validation);
        the others are set metrics (F1, ROC AUC: computed on a whole set, recorded for validation only)."""
        return tuple(name for name, fn in self.metrics if not is_set_metric(fn))

    def history_keys(self, learning_rate: bool = True) -> tuple[str, ...]:
        """Per-epoch history keys: ``train_loss``, ``train_<m>``..., ``val_loss``, ``val_<m>``..., and
        ``learning_rate`` when the optimiser holds one as state (``learning_rate=True``; see
        ``jnn.train.optimizers.learning_rate_of``)."""
        ms, per_example = self.metric_names, self.example_metric_names
        keys = ("train_loss", *(f"train_{m}" for m in per_example), "val_loss", *(f"val_{m}" for m in ms))
        return (*keys, "learning_rate") if learning_rate else keys

    def hyper_arrays(self, hyper: Mapping | None = None) -> dict:
        """``{name: scalar array}`` in the params' dtype (defaults overridden by ``hyper``)."""
        values = {**self.hyper, **(hyper or {})}
        return {k: jnp.asarray(v, self.dtype) for k, v in values.items()}


def task_objective(ct: CheckedTask, params, x, y, mask, weight, *, key, hyper):
    """The regularised training loss of a task on one minibatch (the function ``jax.grad`` differentiates).

    Returns:
        ``(total, (data, outputs))``: the loss with the penalty, the data term alone and the outputs.
    """
    t = ct.task
    outputs = t.apply(params, x, key=key, train=True, hyper=hyper)
    penalty = None if t.penalty is None else t.penalty(params, hyper)
    total, data = objective(ct.loss_fn(outputs, y), mask, weight, penalty)
    return total, (data, outputs)


def metric_values(ct: CheckedTask, outputs, y, y_var) -> dict:
    """``{name: [batch]}`` per-example metric values (``y_var`` for metrics that need the set's variance)."""
    return {name: call_metric(fn, outputs, y, y_var) for name, fn in ct.metrics if not is_set_metric(fn)}


def set_metric_values(ct: CheckedTask, outputs, y, mask) -> dict:
    """``{name: scalar}`` of the set metrics on a whole set (rows where ``mask`` is 0 left out)."""
    return {name: fn(outputs, y, mask) for name, fn in ct.metrics if is_set_metric(fn)}


def is_set_metric(fn) -> bool:
    """Whether a metric is computed on a whole set, ``fn(outputs, y, mask) -> scalar`` (attribute
    ``set_metric = True``), not per example."""
    return bool(getattr(fn, "set_metric", False))


def call_metric(fn, outputs, y, y_var):
    """``fn(outputs, y)``, with ``y_var=`` for a metric that needs the set's target variance."""
    return fn(outputs, y, y_var=y_var) if getattr(fn, "needs_target_variance", False) else fn(outputs, y)


def needs_target_variance(ct: CheckedTask) -> bool:
    """Whether any metric needs the variance of the targets of the set it scores."""
    return any(getattr(fn, "needs_target_variance", False) for _, fn in ct.metrics)


def set_variance(ct: CheckedTask, y, mask=None):
    """The targets' variance when a metric needs it, else None (nothing computed)."""
    return target_variance(y, mask) if needs_target_variance(ct) else None


# ----------------------------------------------------------------------------------------------------
# validation: every piece traced once on abstract values before anything is compiled


def _check_fields(task) -> dict:
    if not isinstance(task, Task):
        raise TypeError(f"task must be a jnn.Task(init, apply, loss, ...); got {type(task).__name__}")
    for name in ("init", "apply"):
        if not callable(getattr(task, name)):
            raise TypeError(f"task.{name} must be a function; got {type(getattr(task, name)).__name__}")
    for name in ("penalty", "draw"):
        if getattr(task, name) is not None and not callable(getattr(task, name)):
            raise TypeError(f"task.{name} must be a function or None; got {type(getattr(task, name)).__name__}")
    if isinstance(task.loss, str) and task.loss not in LOSSES:
        raise ValueError(
            f"task.loss must be one of {list(LOSSES)} or a function (outputs, y) -> [batch]; got {task.loss!r}"
        )
    if not isinstance(task.loss, str) and not callable(task.loss):
        raise TypeError(
            f"task.loss must be a built-in name {list(LOSSES)} or a function (outputs, y) -> [batch]; "
            f"got {type(task.loss).__name__}"
        )
    hyper = {} if task.hyper is None else task.hyper
    if not isinstance(hyper, Mapping):
        raise TypeError(f"task.hyper must be a dict {{name: float}}; got {type(hyper).__name__}")
    out = {}
    for k, v in hyper.items():
        if not isinstance(k, str):
            raise TypeError(f"task.hyper keys must be strings; got {k!r}")
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not np.isfinite(float(v)):
            raise TypeError(f"task.hyper[{k!r}] must be a finite real number; got {v!r}")
        out[k] = float(v)
    return out


def _trace(what: str, fn, *args, **kwargs):
    """``jax.eval_shape`` of a user function; its errors become a ValueError naming the piece (an error of the
    user's framework, e.g. Flax's ``TraceContextError``, too, with the original as its cause)."""
    try:
        return jax.eval_shape(lambda *a: fn(*a, **kwargs), *args)
    except (TypeError, ValueError, IndexError, KeyError, AttributeError) as err:
        raise ValueError(f"{what} failed when traced: {type(err).__name__}: {err}") from None
    except Exception as err:
        raise ValueError(f"{what} failed when traced: {type(err).__module__}.{type(err).__name__}: {err}") from err


class KeyIgnoredWarning(UserWarning):
    """A task's ``apply`` behaves differently while training but gives the same outputs for different keys."""


def check_key_used(task: Task, train: Dataset, hyper: Mapping[str, float], dtype: DTypeLike, *, rows: int = 4) -> bool:
    """Warn when ``apply`` trains with randomness that does not come from its ``key``; True when it does not.

    On the first ``rows`` training examples, with the params of ``init(key(0))``, ``apply(train=True)`` is run
    with two different keys and ``apply(train=False)`` once. Outputs that differ between training and evaluation
    but not between the keys mean the training-time randomness (dropout) ignores the engine's key: every step
    would draw the same masks (seen with a Flax NNX module whose ``Rngs`` stream was fixed when it was built).
    A deterministic task (both modes alike) passes. Costs one small compiled call per mode.

    Args:
        task: the ``Task`` (already checked on abstract values).
        train: the training ``jnn.data.Dataset``.
        hyper: the task's default hyperparameters.
        dtype: the params' float dtype.
        rows: examples to run on.
    """
    if getattr(task.apply, "uses_key", False):  # the built-in MLP draws from its key by construction
        return False
    x = jnp.asarray(train.x[: max(1, min(rows, len(train)))])
    params = jax.jit(task.init)(jax.random.key(0))
    h = {k: jnp.asarray(v, dtype) for k, v in hyper.items()}
    fit_mode = jax.jit(lambda p, xx, k, hh: task.apply(p, xx, key=k, train=True, hyper=hh))
    one, two = fit_mode(params, x, jax.random.key(1), h), fit_mode(params, x, jax.random.key(2), h)
    test_mode = jax.jit(lambda p, xx, hh: task.apply(p, xx, key=None, train=False, hyper=hh))(params, x, h)
    same = lambda a, b: all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    ignored = same(one, two) and not same(one, test_mode)
    if ignored:
        import warnings

        warnings.warn(
            "task.apply(train=True) gives the same outputs for two different keys, yet other outputs than "
            "train=False: its training-time randomness (dropout) does not come from `key`, so every step would use "
            "the same masks. Draw it from `key` (Flax NNX: reseed the module's Rngs streams with it, or use "
            "jnn.Task.from_nnx)",
            KeyIgnoredWarning,
            stacklevel=3,
        )
    return ignored


def check_targets(loss, ds, role: str) -> None:
    """A built-in loss against the kind of targets in ``ds``."""
    record = loss_of(loss)
    if record is None:
        return
    want, have = record.targets, ds.targets
    soft_multilabel = (
        record.kind == "multilabel"
        and have == TARGETS["values"]
        and ds.y.ndim == 2
        and float(ds.y.min()) >= 0.0
        and float(ds.y.max()) <= 1.0
    )
    if want == have or soft_multilabel:
        if record.outputs == "one" and ds.num_classes != 2:
            raise ValueError(f"loss={loss!r} needs {role} data with 2 classes; it has {ds.num_classes}")
        return
    desc = f"{ds.y.dtype} of shape {tuple(ds.y.shape)}"
    if record.kind == "classes":
        raise ValueError(
            f"loss={loss!r} needs integer class labels y [n] in the {role} data; y holds {have} "
            f"({desc}, {len(np.unique(ds.y))} distinct values). For real-valued targets use loss="
            f"{_names('values')}; class labels must be passed as integers"
        )
    if record.kind == "values":
        raise ValueError(
            f"loss={loss!r} needs float targets y [n] or [n, k] in the {role} data; y holds {have} ({desc}). "
            f"For class labels use loss={_names('classes')}; real-valued targets must be passed as a float array"
        )
    raise ValueError(f"loss={loss!r} needs 0/1 targets y [n, k] in the {role} data; y holds {have} ({desc})")


def _names(kind: str) -> str:
    """``'mse' or 'huber'``: the built-in losses of a kind, for messages."""
    return " or ".join(repr(n) for n, r in REGISTRY.items() if r.kind == kind)


def _check_outputs(loss, out, y_shape, batch: int) -> None:
    shape = tuple(out.shape)
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise TypeError(f"task.apply must return float outputs; got {out.dtype}")
    if len(shape) == 0 or shape[0] != batch:
        raise ValueError(f"task.apply must return outputs [batch, ...] with batch = {batch}; got shape {shape}")
    record = loss_of(loss)
    if record is None:
        return
    per = int(np.prod(shape[1:], dtype=np.int64))
    if record.outputs == "classes" and (len(shape) != 2 or shape[1] < 2):
        raise ValueError(
            f"loss={loss!r} needs task.apply to return logits [batch, classes] with classes >= 2; got shape {shape}"
        )
    if record.outputs == "one" and per != 1:
        raise ValueError(
            f"loss={loss!r} needs task.apply to return one logit per example, [batch] or [batch, 1]; got shape {shape}"
        )
    want = int(np.prod(y_shape[1:], dtype=np.int64))
    if record.outputs == "targets" and per != want:
        raise ValueError(
            f"loss={loss!r} needs task.apply to return {want} value(s) per example to match y of shape "
            f"[n{', ' + str(y_shape[1]) if len(y_shape) > 1 else ''}]; got outputs of shape {shape}"
        )


def _check_per_example(what: str, out, batch: int) -> None:
    if tuple(out.shape) != (batch,):
        hint = " (return the per-example values; the engine takes the masked mean)" if out.shape == () else ""
        raise ValueError(
            f"{what} must return one value per example, shape [batch] = ({batch},); got shape {tuple(out.shape)}{hint}"
        )


def check_task(
    task: Task, train, *, batch_size: int, val=None, init_params=None, check_key: bool = True
) -> CheckedTask:
    """Check every piece of a task against the data, on abstract values, before training starts.

    Args:
        task: the ``Task``.
        train: the training ``jnn.data.Dataset``.
        batch_size: the minibatch size T used for the trace.
        val: optional validation Dataset (its targets must suit the loss too).
        init_params: optional warm-start params; must have the structure, shapes and dtypes of ``init``'s.
        check_key: also run ``check_key_used`` (a few rows, concretely): warn when ``apply`` trains with
            randomness that ignores its key.

    Returns:
        A ``CheckedTask``.

    Raises:
        ValueError, TypeError: naming the piece (``task.apply``, ``task.loss``, a metric, ...) and what
        was expected.
    """
    hyper = _check_fields(task)
    for role, ds in (("training", train), ("validation", val)):
        if ds is not None:
            check_targets(task.loss, ds, role)
    metrics = resolve_metrics(task.metrics, task.loss)
    key = jax.random.key(0)
    params, dtype = _check_init(task, init_params, key)
    if train.x.dtype != dtype:
        raise TypeError(f"x must have the dtype of the params from task.init ({dtype}); got {train.x.dtype}")
    h = {k: jax.ShapeDtypeStruct((), dtype) for k in hyper}
    t = batch_size
    x = jax.ShapeDtypeStruct((t, train.x.shape[1]), train.x.dtype)
    y = jax.ShapeDtypeStruct((t, *train.y.shape[1:]), train.y.dtype)
    out = _check_apply(task, params, x, key, h, train)
    loss_fn = loss_function(task.loss)
    _check_per_example("task.loss(outputs, y)", _trace("task.loss(outputs, y)", loss_fn, out, y), t)
    y_var = jax.ShapeDtypeStruct((int(np.prod(y.shape[1:], dtype=np.int64)),), dtype)
    for name, fn in metrics:
        if is_set_metric(fn):
            res = _trace(f"metric {name!r}(outputs, y, mask)", lambda o, yy, f=fn: f(o, yy, None), out, y)
            if tuple(res.shape) != ():
                raise ValueError(f"set metric {name!r} must return a scalar; got shape {tuple(res.shape)}")
            continue
        res = _trace(f"metric {name!r}(outputs, y)", lambda o, yy, v, f=fn: call_metric(f, o, yy, v), out, y, y_var)
        _check_per_example(f"metric {name!r}", res, t)
    if task.penalty is not None:
        pen = _trace("task.penalty(params, hyper)", task.penalty, params, h)
        if tuple(pen.shape) != ():
            raise ValueError(f"task.penalty must return a scalar; got shape {tuple(pen.shape)}")
    noise_size = 0 if task.draw is None else _check_draw(task, params, x, key, h, out)
    if check_key:
        check_key_used(task, train, hyper, dtype)
    return CheckedTask(task, loss_fn, metrics, hyper, dtype, noise_size)


def _check_init(task: Task, init_params, key):
    """The abstract params of ``task.init`` and their float dtype (``init_params`` must match them)."""
    params = _trace("task.init(key)", task.init, key)
    leaves = jax.tree.leaves(params)
    floats = [l for l in leaves if jnp.issubdtype(l.dtype, jnp.floating)]
    if not leaves or len(floats) != len(leaves):
        raise TypeError(
            "task.init must return a pytree of float arrays (the params); got "
            f"{[str(l.dtype) for l in leaves] or 'no arrays'}"
        )
    if init_params is not None:
        _check_like("init_params", init_params, params)
    return params, floats[0].dtype


def _check_apply(task: Task, params, x, key, h, train):
    """Trace ``apply`` in both modes; the outputs must suit the loss and the data. Returns the outputs."""
    out = _trace(
        "task.apply(params, x, train=True)",
        lambda p, xx, k, hh: task.apply(p, xx, key=k, train=True, hyper=hh),
        params,
        x,
        key,
        h,
    )
    out_eval = _trace(
        "task.apply(params, x, train=False)",
        lambda p, xx, hh: task.apply(p, xx, key=None, train=False, hyper=hh),
        params,
        x,
        h,
    )
    _check_outputs(task.loss, out, train.y.shape, x.shape[0])
    if getattr(loss_of(task.loss), "outputs", None) == "classes" and out.shape[1] < train.num_classes:
        raise ValueError(
            f"task.apply returns {out.shape[1]} logits per example but the data has "
            f"{train.num_classes} classes; it needs at least {train.num_classes}"
        )
    if (out_eval.shape, out_eval.dtype) != (out.shape, out.dtype):
        raise ValueError(
            f"task.apply must return the same shape with train=True and train=False; got {out.shape} "
            f"and {out_eval.shape}"
        )
    return out


def _check_draw(task: Task, params, x, key, h, out) -> int:
    """Trace ``draw`` and ``apply(key=noise)``; returns the number of noise elements per step."""
    noise = _trace("task.draw(key, hyper, batch_size)", lambda k, hh: task.draw(k, hh, x.shape[0]), key, h)
    out_n = _trace(
        "task.apply(params, x, key=draw(...))",
        lambda p, xx, n, hh: task.apply(p, xx, key=n, train=True, hyper=hh),
        params,
        x,
        noise,
        h,
    )
    if (out_n.shape, out_n.dtype) != (out.shape, out.dtype):
        raise ValueError(
            "task.apply must return the same outputs with key=draw(key, ...) as with key=key; got "
            f"shape {out_n.shape} vs {out.shape}"
        )
    return sum(int(np.prod(l.shape, dtype=np.int64)) for l in jax.tree.leaves(noise))


def _check_like(name: str, tree, template) -> None:
    try:
        jax.tree_util.tree_structure(template).flatten_up_to(tree)
    except (ValueError, TypeError) as err:
        raise ValueError(f"{name} must have the structure of the params from task.init: {err}") from None
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(tree)[0], jax.tree.leaves(template)):
        if not hasattr(a, "shape") or (tuple(a.shape), np.dtype(a.dtype)) != (tuple(b.shape), np.dtype(b.dtype)):
            got = f"{getattr(a, 'dtype', type(a).__name__)}{list(getattr(a, 'shape', []))}"
            raise ValueError(
                f"{name}{jax.tree_util.keystr(path)} must be {np.dtype(b.dtype)}{list(b.shape)} like the "
                f"params from task.init; got {got}"
            )


__all__ = [
    "Task",
    "CheckedTask",
    "check_task",
    "task_objective",
    "metric_values",
    "set_metric_values",
    "is_set_metric",
    "set_variance",
]
