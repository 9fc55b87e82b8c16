"""The run folder of a ``fit`` as a callback: config, live history, checkpoints, the model and the summary.

``fit(train, config, callbacks=[jnn.RunFolder(PATH, resume=, overwrite=, from_epoch=, tensorboard=,
data_info=)])`` writes the run to ``PATH`` (at most one run folder per fit; ``fit`` runs it before the other
callbacks); everything the folder holds is written through the hooks of ``jnn.train.callbacks``, plus
``RunFolder.open``, which ``fit`` calls before compiling (it takes the folder's lock, checks or writes
``config.json`` and, to resume, restores the state and history).

- ``on_train_begin``: the live history files (``history.csv`` every epoch, ``history.json``, TensorBoard);
- ``on_call_end``: after every compiled call, the live files, and at every multiple of ``config.checkpoint_every``
  (calls end there: ``every``) ``checkpoint.npz`` and, with ``config.best_checkpoints``, the files of the k best
  epochs in ``best/`` (tracked on device, see ``jnn.app.best_files``; written with each checkpoint, so that
  they always belong to the state ``checkpoint.npz`` holds);
- ``on_train_end``: ``checkpoint.npz``, ``model.npz`` and ``summary.json`` (also for a run that a signal
  or ``stop_at_epoch`` ended), then the lock is released; ``on_train_abort`` releases it.

With several processes (``jnn launch``) every process reads the checkpoint it resumes from, and only
process 0 writes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jnn.types import PathLike

if TYPE_CHECKING:
    from jnn.train.config import TrainConfig
    from jnn.train.state import TrainState

import os
from pathlib import Path

import jax

from jnn import _validate as V
from jnn.app import atomic
from jnn.app.best_files import sync_best
from jnn.app.checkpoint import data_hash
from jnn.app.live_history import LiveRecords
from jnn.app.lock import HoldsLock
from jnn.app.run_dir import (
    CHECKPOINT_NAME,
    kept_checkpoints,
    kept_path,
    prepare_run_dir,
    resume_state,
    rewind_to_epoch,
    save_checkpoint,
    save_model,
    write_summary,
)
from jnn.train.callbacks import RunInfo, RunStore


def check_from_epoch(from_epoch: int | None, resume: bool) -> None:
    """``from_epoch`` is None, or an epoch ≥ 0 with ``resume``."""
    if from_epoch is not None:
        V.check_int("from_epoch", from_epoch, low=0)
        if not resume:
            raise ValueError(f"from_epoch={from_epoch} needs resume=True")


class RunFolder(RunStore, HoldsLock):
    """A run folder (see the module docstring), the built-in ``jnn.train.callbacks.RunStore``.

    Args:
        path: the folder (created if missing).
        resume: continue from ``checkpoint.npz`` (same config and data, except the fields of
            ``jnn.train.config.RESUME_CHANGES``).
        overwrite: replace a folder that holds another run.
        from_epoch: with ``resume``, restart from the kept checkpoint of this epoch (later ones are removed).
        tensorboard: also write TensorBoard events to ``path/tensorboard`` (needs tensorboardX).
        data_info: JSON-ready facts about the data, stored in ``config.json`` under ``data``: its source and
            ``{"preprocessing": Preprocessing.to_dict()}`` (see ``jnn.app.tabular``), which
            ``jnn.load_run`` applies to new inputs.

    Raises:
        TypeError, ValueError: a path that is not a writable folder, flags that are not bools, or a
            ``from_epoch`` without ``resume``.
    """

    stops = False  # never asks for a stop: the compiled calls may donate their input

    def __init__(self, path: PathLike, *, resume: bool = False, overwrite: bool = False, from_epoch: int | None = None,
                 tensorboard: bool = False, data_info: dict | None = None):  # fmt: skip
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"RunFolder path must be a str or os.PathLike; got {type(path).__name__}")
        if str(path).strip() == "":
            raise ValueError(
                "RunFolder path must name a folder; got an empty path (without a RunFolder, fit keeps everything in "
                "memory)"
            )
        for name, value in (("resume", resume), ("overwrite", overwrite), ("tensorboard", tensorboard)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False; got {value!r}")
        check_from_epoch(from_epoch, resume)
        if data_info is not None and not isinstance(data_info, dict):
            raise TypeError(f"data_info must be a dict or None; got {type(data_info).__name__}")
        atomic.check_folder_writable(path, "RunFolder path")
        self.path = Path(path)
        self.resume, self.overwrite, self.from_epoch, self.tensorboard = resume, overwrite, from_epoch, tensorboard
        self.data_info = data_info
        self.writer = jax.process_index() == 0  # with several processes, one writes the folder
        self.every = 0
        self._held = self._live = None
        self._meta = self._config = self._records = None

    def open(
        self,
        meta: dict,
        state: TrainState,
        config: TrainConfig,
        custom_optimizer: bool,
        keys: Sequence[str],
        *,
        data: tuple,
    ) -> tuple:
        """Take the folder (lock, ``config.json``) and give the state and history the run starts from:
        ``(state, records)``, restored from a checkpoint when resuming, else ``state`` and empty records.

        Args:
            meta: the run's description (``config.json``; checked against a resumed run's).
            state: the fresh first state (the template a checkpoint is restored into).
            config: the ``jnn.TrainConfig``.
            custom_optimizer: the optimiser was given (its learning rate cannot change on resume).
            keys: the history keys.
            data: ``(train, val)`` as given to ``fit``: their hash (``data_hash``) is stored and checked on resume.
        """
        train, val = data
        hashed = data_hash(train) + ("" if val is None else data_hash(val))
        meta = {"config": meta["config"], "config_hash": meta["config_hash"], "data_hash": hashed, **meta}
        if self.data_info:
            meta = {**meta, "data": self.data_info}
        self._meta, self._config = meta, config
        self.every = config.checkpoint_every
        records = {k: [] for k in keys}
        self._held = prepare_run_dir(self.path, meta, resume=self.resume, overwrite=self.overwrite) if self.writer \
            else None  # fmt: skip
        try:
            if self.from_epoch is not None:  # every process reads the kept file; the writer also drops later ones
                rewind = rewind_to_epoch if self.writer else kept_path
                src = rewind(self.path, self.from_epoch)
                state, records = resume_state(src, state, meta, config, custom_optimizer, keys)
            elif self.resume and (self.path / CHECKPOINT_NAME).exists():
                state, records = resume_state(self.path / CHECKPOINT_NAME, state, meta, config, custom_optimizer, keys)
        except BaseException:
            self._release()
            raise
        self._records = records
        return state, records

    def kept_epochs(self) -> set:
        """The epochs whose checkpoints the folder keeps (see ``TrainConfig.keep_checkpoints``)."""
        return set(kept_checkpoints(self.path))

    def on_train_begin(self, run: RunInfo) -> None:
        if self.writer:
            self._live = LiveRecords(self.path, self._records, tensorboard=self.tensorboard)

    def on_call_end(self, epoch: int, state: TrainState) -> None:
        if self._live is None:
            return
        self._live.update()
        if self.every and epoch % self.every == 0:
            save_checkpoint(self.path, state, self._records, self._meta, self._config.keep_checkpoints)
            self._sync_best(state)  # best/ moves with checkpoint.npz: a resumed run finds the files of its state

    def _sync_best(self, state) -> None:
        """``best/``: the params of the k best epochs tracked on device (see ``jnn.app.best_files``)."""
        if self._config.best_checkpoints is not None and state.top_k is not None:
            sync_best(self.path, state, self._config.best_checkpoints, self._meta)

    def on_train_end(self, result: Any) -> None:
        try:
            self._close_live()
            if self.writer:
                save_checkpoint(self.path, result.state, self._records, self._meta, self._config.keep_checkpoints)
                self._sync_best(result.state)
                save_model(self.path, result.params, self._meta)  # the returned params: best epoch's when restored
                write_summary(self.path, result, self._config)
        finally:
            self._release()

    def on_train_abort(self, error: BaseException) -> None:
        try:
            self._close_live()
        finally:
            self._release()

    def _close_live(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.close()


__all__ = ["RunFolder", "check_from_epoch"]
