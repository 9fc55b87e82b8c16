"""jnn runs as Ray Tune trials: Tune's schedulers (ASHA, Hyperband, PBT), search algorithms and fault tolerance drive
``jnn.fit`` runs (``jnn.tune.trainable``; needs ``pip install 'jnn[ray]'``).

::

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    fn = jnn.tune.trainable(train, jnn.TrainConfig(max_epochs=100), task=jnn.MLP(hidden=(64,)))
    tuner = tune.Tuner(fn, param_space={"learning_rate": tune.loguniform(1e-3, 0.3), "seed": tune.randint(0, 99)},
                       tune_config=tune.TuneConfig(metric="val_loss", mode="min", num_samples=16,
                                                   scheduler=ASHAScheduler(grace_period=2)))
    results = tuner.fit()

Each trial is one ``jnn.fit`` of the trial's ``config`` (the names a sweep takes as axes: ``seed``,
``learning_rate``, the task's hyperparameters, an MLP's ``hidden``/``l2``/``keep_prob``, ``batch_size``; checked as
a sweep checks them). After every epoch the trial reports that epoch's history row (``train_loss``, ``val_loss``,
the metrics, ``epoch``) to Tune with a checkpoint of the run's full state and history (``state.npz``, the format
of a run folder's ``checkpoint.npz``). A trial restored from a Tune checkpoint (a failed trial retried, a paused
one resumed, PBT's exploit) goes on from that state, so a trial that was interrupted ends bit for bit as one that
was not. The data go into Ray's object store once (``tune.with_parameters``), not with every trial.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import optax

from jnn.types import ClassWeight

if TYPE_CHECKING:
    from jnn.mlp import MLP
    from jnn.task import Task
    from jnn.train.callbacks import Callback

import tempfile
from pathlib import Path

import numpy as np

from jnn.app import checkpoint as ckpt
from jnn.app.run_dir import HISTORY_PREFIX, resume_state
from jnn.data import Dataset
from jnn.sweep import members_of
from jnn.train.callbacks import RunStore, check_callbacks
from jnn.train.config import TrainConfig
from jnn.train.run_setup import check_model

#: The file a trial's Tune checkpoint holds.
STATE_FILE = "state.npz"


def trainable(
    train: Dataset,
    config: TrainConfig | None = None,
    *,
    task: Task | MLP | None = None,
    val: Dataset | None = None,
    class_weight: ClassWeight | None = None,
    optimizer: optax.GradientTransformation | Callable | None = None,
    callbacks: Sequence[Callback] | None = None,
):
    """A Ray Tune function trainable whose trials are ``jnn.fit`` runs.

    Args:
        train: the training data (each trial holds out its validation split as ``fit`` does, unless ``val``).
        config: the shared ``jnn.TrainConfig``; a trial's ``config`` overrides its sweepable fields.
        task: a ``jnn.MLP`` (default ``MLP()``) or a ``jnn.Task``.
        val: explicit validation data.
        class_weight: per-class loss weights, as in ``jnn.fit``.
        optimizer: an ``optax.GradientTransformation`` for every trial (None: the config's).
        callbacks: more ``jnn.Callback`` objects for every trial's fit (loggers, ...; not a run store: the
            trial's is Tune's checkpoint).

    Returns:
        The trainable for ``ray.tune.Tuner`` (a function of the trial's config, with the data bound through
        ``tune.with_parameters``).

    Raises:
        ImportError: Ray Tune is not installed.
        TypeError: bad data, config or task.
    """
    try:
        from ray import tune
    except ImportError as err:
        raise ImportError("jnn.tune needs Ray Tune: pip install 'jnn[ray]'") from err
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a jnn.TrainConfig; got {type(config).__name__}")
    for name, ds in (("train", train), ("val", val)):
        if not isinstance(ds, Dataset) and (name == "train" or ds is not None):
            raise TypeError(f"{name} must be a jnn.data.Dataset; got {type(ds).__name__}")
    model = check_model(task)
    extra = check_callbacks(callbacks)
    if any(isinstance(cb, RunStore) for cb in extra):
        raise TypeError("a Tune trial keeps its run in Tune's checkpoints; leave jnn.RunFolder out of callbacks")
    setup = {"config": config, "task": model, "class_weight": class_weight, "optimizer": optimizer,
             "callbacks": extra}  # fmt: skip
    return tune.with_parameters(_trial, data={"train": train, "val": val}, setup=setup)


def _trial(trial_config: dict, data: dict, setup: dict) -> None:
    """One trial: the fit of ``trial_config``'s member, reporting to Tune after every epoch."""
    from jnn.train.loop import fit

    axes = {k: [tuple(v) if isinstance(v, list) else v] for k, v in trial_config.items()}  # one member
    [(c, hyper, model)] = members_of(setup["config"], axes, setup["task"], optimizer_axes=False)
    fit(data["train"], c, task=model.with_hyper(hyper), val=data["val"], class_weight=setup["class_weight"],
        optimizer=setup["optimizer"], callbacks=[TuneReport(), *setup["callbacks"]])  # fmt: skip


class TuneReport(RunStore):
    """The run store of a Tune trial: opens from Tune's checkpoint (if any) and, after every epoch, reports the
    epoch's history row to Tune with a checkpoint of the state and history (calls of one epoch each)."""

    every = 1

    def open(self, meta: dict, state, config, custom_optimizer: bool, keys, *, data) -> tuple:
        from ray import tune

        train, val = data
        self._meta = {**meta, "data_hash": ckpt.data_hash(train) + ("" if val is None else ckpt.data_hash(val))}
        self._records, self._logs = {k: [] for k in keys}, {}
        kept = tune.get_checkpoint()
        if kept is not None:
            with kept.as_directory() as folder:
                state, self._records = resume_state(Path(folder) / STATE_FILE, state, self._meta, config,
                                                    custom_optimizer, keys)  # fmt: skip
        return state, self._records

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        self._logs = {k: float(v) for k, v in logs.items()}

    def on_call_end(self, epoch: int, state) -> None:
        from ray import tune

        extras = {HISTORY_PREFIX + k: np.asarray(v, np.float64) for k, v in self._records.items()}
        with tempfile.TemporaryDirectory() as folder:
            ckpt.save(Path(folder) / STATE_FILE, state, meta=self._meta, extras=extras)
            tune.report({**self._logs, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(folder))


__all__ = ["STATE_FILE", "TuneReport", "trainable"]
