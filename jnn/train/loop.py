"""``fit``: the lecture's training algorithm, compiled, for the built-in ``jnn.MLP`` or any ``jnn.Task``.

    Randomly initialise θ
    repeat until a stopping criterion is met:
        pick a random minibatch B, |B| = T < n
        compute ∇θ l at θ
        θ ← θ − η ∇θ l
    return θ

One epoch is one call of a jitted function (a ``lax.scan`` over its minibatches, followed by
validation, early stopping and the stopping rules, all on device); the host only reads a few scalars
per epoch for progress and the stop flag. The whole run compiles once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import jax

from jnn.types import ArrayLike, ClassWeight, PyTree

if TYPE_CHECKING:
    from jnn.train.callbacks import Callback

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np
import optax

from jnn.data import Dataset
from jnn.disk import RowSource
from jnn.display import html_view, last_metrics, params_line, view
from jnn.history import History
from jnn.mlp import MLP
from jnn.model import mark_classic
from jnn.pytree import leaf_names
from jnn.task import CheckedTask, Task
from jnn.train.averaging import averaged_params
from jnn.train.best_k import ranked
from jnn.train.callbacks import CallbackList, RunInfo, RunStore, SweepStore, at_most_one, check_callbacks
from jnn.train.config import TrainConfig
from jnn.train.host_loop import Interrupted, final_params, run_epochs
from jnn.train.keys import Keys
from jnn.train.optimizers import learning_rate_of
from jnn.train.program import compiled_caller, optimizer_key, program_spec
from jnn.train.progress import Progress
from jnn.train.run_setup import check_memory, check_model, checked_task, epoch_arrays, initial_state, prepare_data
from jnn.train.state import LOSS_ONLY, STATUS, TrainState
from jnn.train.streaming import StreamCaller


class BestEpoch(NamedTuple):
    """One of the best epochs a run kept (``FitResult.best_checkpoints``): its ``rank`` (1: the best), its
    ``epoch`` (counted from 1), the monitored ``value`` and the ``params`` at its end."""

    rank: int
    epoch: int
    value: float
    params: object


@dataclass(frozen=True, repr=False)
class FitResult:
    """What ``fit`` returns.

    Attributes:
        params: the final θ — the best epoch's params when early stopping restores them.
        state: the final ``TrainState`` (its ``params`` are the last epoch's).
        history: per-epoch metrics (``jnn.history.History``).
        stopped_by: the rule that ended the run: ``max_epochs``, ``max_steps``, ``loss_tol``,
            ``early_stopping``, ``non_finite``, ``diverged``, ``callback`` (a callback asked),
            ``paused`` (``stop_at_epoch`` reached; resumable) or
            ``interrupted`` (SIGINT/SIGTERM; carried by ``jnn.train.Interrupted``; resumable).
        best_epoch: 0-based epoch of the best monitored value (−1 without early stopping).
        message: a readable summary of why the run stopped.
        run_dir: the run folder, if any.
        epoch_seconds: host wall time of each epoch run by this call: its share of its compiled call's time
            (a call of k epochs counts its time / k for each; the first epoch, a call of its own, includes the
            compile).
        setup_seconds: wall time from the call to the first epoch (validation, init, data placement).
        task: the ``jnn.Task`` that was trained (an ``jnn.MLP``'s task for the data when one, or none,
            was given).
        averaged_params: with ``config.average``, the EMA/Polyak average of the params at the end (see
            ``jnn.train.averaging``); else None.
        config: the ``TrainConfig`` the run trained under.
    """

    params: object
    state: TrainState
    history: History
    stopped_by: str
    best_epoch: int
    message: str
    run_dir: Path | None = None
    epoch_seconds: tuple = ()
    setup_seconds: float = 0.0
    task: Task | None = None
    averaged_params: object = None
    config: TrainConfig | None = None

    def best_checkpoints(self) -> list[BestEpoch]:
        """The epochs kept by ``config.best_checkpoints`` (``jnn.BestCheckpoints``), best first.

        Returns:
            A list of ``BestEpoch`` ``(rank, epoch, value, params)``: epochs counted from 1, the monitored
            value, and the params at the end of that epoch (host NumPy arrays).

        Raises:
            ValueError: the run kept no best epochs (``best_checkpoints`` was None).
        """
        rule = None if self.config is None else self.config.best_checkpoints
        if rule is None or self.state.top_k is None:
            raise ValueError("this run kept no best epochs: train with TrainConfig(best_checkpoints="
                             "jnn.BestCheckpoints(k=...))")  # fmt: skip
        params = jax.device_get(self.state.top_k.params)
        order = ranked(self.state.top_k, rule.direction)
        return [BestEpoch(rank, epoch + 1, value, jax.tree.map(lambda a, s=slot: a[s], params))
                for rank, (slot, epoch, value) in enumerate(order, start=1)]  # fmt: skip

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Predictions for ``x [n, d]`` (inputs as the training data held them) in evaluation mode, with the
        run's dropout rule: class indices ``[n]``, 0/1 columns for a multi-label model, values for regression
        (see ``jnn.predict``; a run trained from a file by ``jnn train`` is loaded with ``jnn.load_run``,
        which also applies the stored preprocessing and class names).

        Raises:
            ValueError: the result holds no task (built by hand).
        """
        from jnn.predict import predict

        return predict(self._task(), self.params, x)

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """Class probabilities ``[n, k]`` for ``x [n, d]`` (``[n, 2]`` for a binary model), evaluation mode.

        Raises:
            TypeError: a regression or custom-loss model.
        """
        from jnn.predict import predict_proba

        return predict_proba(self._task(), self.params, x)

    def _task(self) -> Task:
        if self.task is None:
            raise ValueError("this FitResult holds no task (it was built by hand); use jnn.predict with the task")
        return self.task

    def _items(self) -> list[tuple[str, str]]:
        best = str(self.best_epoch + 1) if self.best_epoch >= 0 else "-"
        items = [("stopped_by", f"{self.stopped_by} after {len(self.history)} epochs (best epoch {best})"),
                 ("params", params_line(self.params)), ("last epoch", last_metrics(self.history)),
                 ("message", self.message.splitlines()[0] if self.message else "")]  # fmt: skip
        return items + ([("run_dir", str(self.run_dir))] if self.run_dir is not None else [])

    def __repr__(self) -> str:
        return view("FitResult", self._items())

    def _repr_html_(self) -> str:
        return html_view("FitResult", self._items())


def _check_args(train, config, optimizer, stop_at_epoch, val, mesh) -> TrainConfig:
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a jnn.TrainConfig; got {type(config).__name__}")
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation; got {type(optimizer).__name__}")
    if stop_at_epoch is not None and (
        isinstance(stop_at_epoch, bool) or not isinstance(stop_at_epoch, int) or stop_at_epoch < 1
    ):
        raise ValueError(f"stop_at_epoch must be a positive int or None; got {stop_at_epoch!r}")
    if not isinstance(train, Dataset):
        raise TypeError(f"train must be a jnn.data.Dataset(x, y); got {type(train).__name__}")
    if val is not None and not isinstance(val, Dataset):
        raise TypeError(f"val must be a jnn.data.Dataset or None; got {type(val).__name__}")
    if mesh is not None:
        from jnn.parallel import check_mesh

        check_mesh(mesh, config.batch_size)
        if isinstance(train.x, RowSource):
            raise ValueError(
                "mesh: a training set streamed from a row source (a DiskArray, np.memmap or your "
                "own) trains on one device; pass mesh=None or load x into memory"
            )
    return config


def _run_callbacks(callbacks) -> tuple:
    """``(store, progress, CallbackList)``: the run store (a ``jnn.RunFolder``) among ``callbacks`` (or None)
    first, the others in their order, and a default ``Progress`` last when none was given."""
    given = check_callbacks(callbacks)
    wrong = [i for i, cb in enumerate(given) if isinstance(cb, SweepStore)]
    if wrong:
        name = type(given[wrong[0]]).__name__
        raise TypeError(f"callbacks[{wrong[0]}] is a {name}, which keeps a sweep (jnn.sweep); a fit keeps its run in a "
                        "jnn.RunFolder")  # fmt: skip
    folder, progress = at_most_one(given, RunStore), at_most_one(given, Progress)
    rest = tuple(cb for cb in given if cb is not folder)
    if progress is None:
        progress = Progress()
        rest += (progress,)
    return folder, progress, CallbackList(((folder,) if folder is not None else ()) + rest)


def fit(
    train: Dataset,
    config: TrainConfig | None = None,
    *,
    task: Task | MLP | None = None,
    val: Dataset | None = None,
    init_params: PyTree | None = None,
    class_weight: ClassWeight | None = None,
    optimizer: optax.GradientTransformation | None = None,
    stop_at_epoch: int | None = None,
    mesh: jax.sharding.Mesh | None = None,
    callbacks: Sequence[Callback] | None = None,
) -> FitResult:
    """Train a model on ``train`` with minibatch gradient descent until a stopping rule fires.

    Args:
        train: the training data; ``config.val_fraction`` of it is held out for validation unless ``val``
            is given.
        config: the ``TrainConfig`` (defaults if None): how to train (optimiser, batch size, stopping
            rules, split, seed).
        task: what to train: a ``jnn.MLP`` (its widths from the data; default ``MLP()``) or any
            ``jnn.Task`` (its hyperparameters in ``task.hyper``).
        val: explicit validation data (then nothing is carved out of ``train``).
        init_params: warm start from these params (structure, shapes and dtypes of ``task.init``'s).
        class_weight: per-class loss weights for class labels: ``{class: w}`` or one weight per class;
            multiplied with ``train.sample_weight`` when both are given. Validation is not reweighted.
        optimizer: any ``optax.GradientTransformation``; default from ``config.optimizer``.
        stop_at_epoch: pause after this many epochs in total (the run can be resumed later); the result
            says ``stopped_by="paused"``.
        mesh: a ``jax.sharding.Mesh`` with a ``data`` axis (see ``jnn.parallel.data_mesh``): shard
            every minibatch over it (data parallelism; params and optimiser state replicated). The
            batch size must be divisible by the ``data`` axis size. With several processes
            (``jnn.parallel.initialize``), only process 0 writes the run folder.
        callbacks: a list of ``jnn.Callback`` objects: hooks at the start, after every epoch (its
            history row; a True return stops the run after exactly that epoch, ``stopped_by="callback"``),
            every ``cb.every`` epochs with the state, and at the end (see ``jnn.train.callbacks``).
            At most one ``jnn.RunFolder`` (the run folder: ``config.json``, ``history.csv`` and
            ``history.json`` every epoch, ``checkpoint.npz``, and at the end ``model.npz``, read by
            ``jnn.load_run``, ``summary.json`` and, with matplotlib, ``curves.png``; it runs first) and
            at most one ``jnn.Progress`` (default ``Progress()``: a bar when stderr is a terminal and
            ``CI`` is unset; ``Progress(bar=False)`` shows nothing, ``Progress(log_every=k)`` prints lines).
            Without a run folder everything stays in memory.

    Returns:
        A ``FitResult``.

    Raises:
        jnn.train.Interrupted: SIGINT (Ctrl-C) or SIGTERM arrived: the run stopped at the end of that epoch,
            the run folder was written, and ``err.result`` holds the ``FitResult``; a second signal
            raises ``KeyboardInterrupt`` at once.
        ValueError, TypeError: on a bad config, task, data, or a checkpoint from another run — all before
            training starts.
    """
    t_call = time.perf_counter()
    config = _check_args(train, config, optimizer, stop_at_epoch, val, mesh)
    model = check_model(task)
    folder, progress, cbs = _run_callbacks(callbacks)
    fit_ds, val_ds = prepare_data(train, config, val)
    ct = checked_task(model, config, fit_ds, val_ds, val, init_params=init_params)
    tx = (
        config.make_optimizer(config.steps_per_epoch(len(fit_ds)))
        if optimizer is None
        else config.with_average(optimizer)
    )
    check_memory(
        ct, tx, config=config
    )  # before the params are allocated: a model too large for memory is refused at once
    keys = Keys.from_seed(config.seed, config.prng_impl)
    params = ct.task.init(keys.init) if init_params is None else jax.tree.map(jnp.asarray, init_params)
    state = initial_state(ct, config, tx, params, keys)
    meta = _meta(config, ct, model, params, init_params is not None)
    meta["n_features"] = int(fit_ds.x.shape[1])
    hkeys = ct.history_keys(learning_rate_of(state.opt_state) is not None)
    tx_key = optimizer_key(config, config.steps_per_epoch(len(fit_ds)), optimizer)
    if folder is None:
        records = {k: [] for k in hkeys}
    else:  # takes the folder's lock: from here on, train_abort or train_end releases it
        state, records = folder.open(meta, state, config, optimizer is not None, hkeys, data=(train, val))
    try:
        result, halt = _fit_run(ct, config, tx, state, records, meta, folder, fit_ds, val_ds, class_weight, mesh,
                                stop_at_epoch, t_call, tx_key, cbs, progress)  # fmt: skip
    except BaseException as err:
        cbs.train_abort(err)
        raise
    if isinstance(model, MLP) and model.dropout_mode == "classic" and model.keep_prob < 1.0:
        mark_classic(result.params, model.keep_prob)  # jnn.forward without the rule then warns
    cbs.train_end(result)
    if halt not in (None, "paused"):
        raise Interrupted(result, halt)
    return result


def _fit_run(ct, config, tx, state, records, meta, folder, fit_ds, val_ds, class_weight, mesh, stop_at_epoch, t_call,
             tx_key, cbs, progress):  # fmt: skip
    """Compile and train: ``(result, halt)`` (the run folder, a callback in ``cbs``, writes itself)."""
    data = epoch_arrays(fit_ds, val_ds, class_weight)
    hkeys = tuple(records)
    if isinstance(fit_ds.x, RowSource):  # the inputs stay out of memory: minibatches are read and fed chunk by chunk
        spec = program_spec(ct, config, tx, tx_key, n_train=len(fit_ds), has_val=val_ds is not None, keys=hkeys,
                            check_finite=config.check_finite)  # fmt: skip
        epoch_fn, data = StreamCaller(spec, fixed=config.epochs_per_call), StreamCaller.prepare(data)
    else:
        epoch_fn, state, data = _compile(ct, config, tx, state, data, mesh, len(fit_ds), val_ds is not None, tx_key,
                                         keep_input=cbs.can_stop(), keys=hkeys)  # fmt: skip
    if cbs:
        cbs.train_begin(RunInfo(config, hkeys, 1, int(state.epoch), config.max_epochs,
                                run_params(meta), cbs.cuts()))  # fmt: skip
    t0 = time.perf_counter()
    state, epoch_seconds, halt = run_epochs(
        epoch_fn, state, data, keys=hkeys, max_epochs=config.max_epochs, records=[records],
        report=progress, stop_at_epoch=stop_at_epoch, callbacks=cbs,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    history = History.from_records(records)
    stopped_by = "paused" if halt == "paused" else "interrupted" if halt is not None else STATUS[int(state.status)]
    best_epoch = int(state.early.best_epoch) if config.early_stopping is not None else -1
    message = _message(state, stopped_by, best_epoch, config, elapsed)
    if stopped_by in ("non_finite", "diverged"):
        kept = folder.kept_epochs() if folder is not None and folder.writer else set()
        message += ". " + _rollback_hint(records.get("train_loss", []), config, kept)
    final = final_params(state, config.restores_best())
    result = FitResult(final, state, history, stopped_by, best_epoch, message, None if folder is None else folder.path,
                       epoch_seconds, t0 - t_call, ct.task, averaged_params(state.opt_state), config)  # fmt: skip
    return result, halt


def _compile(ct, config, tx, state, data, mesh, n_train: int, has_val: bool, tx_key, *, keep_input: bool = False,
             keys=None):  # fmt: skip
    """Place state and data (replicated over a mesh, or on the default device) and build the compiled calls
    of several epochs each: ``(caller, state, data)`` (see ``jnn.train.multi_epoch``); a run with an equal
    ``jnn.train.program.ProgramSpec`` earlier in this process compiled them already."""
    out_sharding, batch_sharding = None, None
    if mesh is not None:
        from jnn.parallel import replicate, shardings

        out_sharding, batch_sharding = shardings(mesh)
        state, data = replicate(state, out_sharding), replicate(data, out_sharding)
    else:
        data = jax.tree.map(jnp.asarray, data)
    caller = compiled_caller(ct, config, tx, tx_key, n_train=n_train, has_val=has_val, keys=keys,
                             batch_sharding=batch_sharding, out_sharding=out_sharding,
                             keep_input=keep_input)  # fmt: skip
    return caller, state, data


def _meta(config: TrainConfig, ct: CheckedTask, model, params, warm: bool) -> dict:
    """What a run records of itself: the config, and the model's own description (the MLP's fields and widths,
    or a task's loss, metrics, hyperparameters and parameter shapes)."""
    meta = {"config": config.to_dict(), "config_hash": config.hash(), **model.describe(ct, params)}
    if warm:
        meta["warm_start"] = True
    return meta


def run_params(meta: dict) -> dict:
    """The settings a tracker logs for a run: the config's fields (a rule's attributes as ``early_stopping.<name>``),
    and the task's hyperparameters (``hyper.<name>``) or the MLP's fields (by their names) and sizes."""
    out = {}
    for k, v in meta["config"].items():
        out.update({f"{k}.{a}": x for a, x in v.items()} if isinstance(v, dict) else {k: v})
    out.update(meta.get("mlp", {}))
    if "sizes" in meta:
        out["sizes"] = meta["sizes"]
    for k, v in meta.get("task", {}).get("hyper", {}).items():
        out[f"hyper.{k}"] = v
    return out


def _message(state: TrainState, stopped_by: str, best_epoch: int, config: TrainConfig, elapsed: float) -> str:
    epochs, steps = int(state.epoch), int(state.step)
    base = f"{epochs} epochs, {steps} steps in {elapsed:.1f} s"
    if stopped_by == "non_finite":
        leaf = int(state.bad_leaf)
        names = [p for p, _ in leaf_names(state.params)]
        where = "the loss" if leaf == LOSS_ONLY else f"the gradient of {names[leaf]}"
        kept = (
            "the last finite state is kept"
            if config.check_finite
            else "the state before that step is kept (gradients were not checked: check_finite=False)"
        )
        return (
            f"stopped: non-finite value in {where} at step {int(state.bad_step)} (epoch {epochs}); {kept}. "
            f"Lower the learning rate (now {config.learning_rate:g}). {base}"
        )
    if stopped_by == "diverged":
        return (
            f"stopped: the training loss diverged at epoch {epochs} (over divergence_factor "
            f"{config.divergence_factor:g} x the best so far and over the first epoch's, while still finite). "
            f"Lower the learning rate (now {config.learning_rate:g}). {base}"
        )
    if stopped_by == "early_stopping":
        return (
            f"stopped: early stopping on {config.early_stopping.monitor} after {config.early_stopping.patience} "
            "epochs without improvement; "
            f"best epoch {best_epoch + 1}. {base}"
        )
    if stopped_by == "paused":
        return f"paused after epoch {epochs} (resume with RunFolder(path, resume=True)). {base}"
    if stopped_by == "interrupted":
        return f"interrupted at epoch {epochs} (resume with RunFolder(path, resume=True)). {base}"
    if stopped_by == "callback":
        return f"stopped: a callback asked for a stop after epoch {epochs}. {base}"
    return f"stopped: {stopped_by}. {base}"


def last_sane_epoch(losses, factor: float | None) -> int | None:
    """The last epoch (counted from 1) before the training loss first became non-finite or exceeded ``factor``
    times the best loss so far and the first epoch's loss (10 when ``factor`` is None); None if none."""
    factor = 10.0 if factor is None else factor
    first, best, sane = None, math.inf, None
    for e, v in enumerate(losses, start=1):
        if not math.isfinite(v) or (first is not None and v > factor * best and v > first):
            break
        first = v if first is None else first
        best, sane = min(best, v), e
    return sane


def _rollback_hint(losses, config: TrainConfig, kept: set) -> str:
    """Where to restart a run that went non-finite or diverged (``kept``: the epochs whose checkpoints the run
    folder keeps)."""
    sane = last_sane_epoch(losses, config.divergence_factor)
    if sane is None:
        return "No epoch before it had a sane training loss: lower the learning rate and start again."
    line = f"The last sane epoch is {sane} (training loss {losses[sane - 1]:.4g})"
    if sane in kept:
        return (f"{line}; its checkpoint is kept: continue from it with a lower rate: "
                f"RunFolder(path, resume=True, from_epoch={sane}).")  # fmt: skip
    return (f"{line}, but no checkpoint of it is kept (kept: {sorted(kept) or 'none'}; save more often with "
            "checkpoint_every=1 and keep more with keep_checkpoints).")  # fmt: skip


__all__ = ["BestEpoch", "FitResult", "fit", "last_sane_epoch"]
