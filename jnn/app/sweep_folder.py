"""A sweep's folder as a callback: the same lock and refusals as a run folder, per-group checkpoints, resume.

``jnn.sweep(train, config, ..., callbacks=[jnn.SweepFolder(PATH, resume=, overwrite=, data_info=)])`` keeps the
sweep in ``PATH`` (``jnn sweep --out PATH`` does this):

- ``sweep_run.json``: the sweep's config, axes and each member's model, the data hash and source, versions;
  written when the sweep starts (after the lock is taken), checked against a resumed sweep's;
- ``checkpoints/group-GGG.npz``: shape group GGG's stacked state (every member's params, optimiser and
  early-stopping state) with its members' histories, at every multiple of ``config.checkpoint_every`` epochs
  and when the group ends (it trained to the end, or a signal stopped it); its header holds the sweep's
  identity, config hash, group index, members and their axis values, and a resume refuses a group file whose
  header differs from ``sweep_run.json`` (one copied from another sweep or group), naming both files;
- at the end (also after SIGINT/SIGTERM): ``sweep.csv``, ``sweep.json``, ``params.npz`` and ``sweep.png``
  (``jnn.save_sweep``).

The folder's lock (``.jnn.lock``) is held for the whole sweep, as a run folder's is: a second sweep or run into it
is refused at once. A folder that holds another sweep is refused without ``resume`` (go on) or ``overwrite``
(start again: jnn then replaces only its own files); a folder that holds a ``jnn train`` run, or files jnn did not
write, is refused (``overwrite`` lets a sweep into a folder of foreign files, replacing only its own). With
``resume``, each group starts from its checkpoint: a sweep killed (even with SIGKILL) or interrupted and then
resumed ends bit for bit like an uninterrupted one (``scripts/crash_test.py --sweep``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jnn.types import PathLike, PyTree

if TYPE_CHECKING:
    from jnn.train.config import TrainConfig
    from jnn.train.state import TrainState

import hashlib
import json
import os
import shutil
from pathlib import Path

import jax
import numpy as np

from jnn.app import atomic, lock
from jnn.app import checkpoint as ckpt
from jnn.app.run_dir import KEPT_DIR, SWEEP_FILES, SWEEP_RUN, environment
from jnn.train.callbacks import SweepStore

#: What a resumed sweep must match of the stored record.
MATCHED = ("config", "axes", "members_model", "data_hash")
#: The extras key of a group checkpoint that holds its stateful callbacks' states (JSON bytes).
CALLBACK_STATES = "callbacks/states"


def group_path(folder: Path, group: int) -> Path:
    """The checkpoint of shape group ``group``."""
    return Path(folder) / KEPT_DIR / f"group-{group:03d}.npz"


class SweepFolder(SweepStore, lock.HoldsLock):
    """A sweep folder (see the module docstring), the built-in ``jnn.train.callbacks.SweepStore``.

    Args:
        path: the folder (created if missing).
        resume: go on with the sweep the folder holds (same config, axes, models and data); a folder that holds
            none yet (a sweep killed before it started) starts the sweep, as ``RunFolder(resume=True)`` does.
        overwrite: start again in a folder that holds another sweep (or foreign files); jnn removes only its
            own files there.
        data_info: JSON-ready facts about the data (its source and preprocessing), stored in ``sweep_run.json`` and
            ``sweep.json`` under ``data`` (read by ``jnn.load_run``).

    Raises:
        TypeError, ValueError: a path that is not a writable folder, flags that are not bools, or both set.
    """

    stops = False  # never asks for a stop

    def __init__(self, path: PathLike, *, resume: bool = False, overwrite: bool = False, data_info: dict | None = None):
        if not isinstance(path, (str, os.PathLike)) or str(path).strip() == "":
            raise TypeError(f"SweepFolder path must be a non-empty str or os.PathLike; got {path!r}")
        for name, value in (("resume", resume), ("overwrite", overwrite)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False; got {value!r}")
        if resume and overwrite:
            raise ValueError("give resume=True (go on) or overwrite=True (start again), not both")
        if data_info is not None and not isinstance(data_info, dict):
            raise TypeError(f"data_info must be a dict or None; got {type(data_info).__name__}")
        atomic.check_folder_writable(path, "SweepFolder path")
        self.path = Path(path)
        self.resume, self.overwrite, self.data_info = resume, overwrite, data_info
        self.every = 0
        self._held = self._meta = None
        self.stateful: tuple = ()  # callbacks whose state_dict() goes into each group checkpoint (set by sweep)
        self._group = self._records = None

    # ----------------------------------------------------------------------------------------------------

    def open(self, meta: dict, config: TrainConfig, *, data: Any) -> None:
        train, val = data
        meta = {**meta, "data_hash": ckpt.data_hash(train) + ("" if val is None else ckpt.data_hash(val))}
        if self.data_info:
            meta["data"] = self.data_info
        self._meta, self.every = meta, config.checkpoint_every
        if self.path.exists() and not self.path.is_dir():
            raise ValueError(f"the sweep folder must be a folder; {str(self.path)!r} is a file")
        self.path.mkdir(parents=True, exist_ok=True)
        self._held = lock.acquire(self.path)
        try:
            ckpt.remove_stale_temp_files(self.path)
            if (self.path / KEPT_DIR).is_dir() and not (self.path / KEPT_DIR).is_symlink():
                ckpt.remove_stale_temp_files(self.path / KEPT_DIR)
            self._prepare(meta)
        except BaseException:
            self._release()
            raise

    def _prepare(self, meta: dict) -> None:
        record = self.path / SWEEP_RUN
        if (self.path / "config.json").exists():
            raise ValueError(f"{str(self.path)!r} holds a jnn train run (config.json); a sweep needs its own folder")
        for name in (SWEEP_RUN, *SWEEP_FILES, KEPT_DIR):
            p = self.path / name
            if p.is_symlink() or (p.exists() and not (p.is_dir() if name == KEPT_DIR else p.is_file())):
                raise ValueError(f"{str(p)!r} is {'a symbolic link' if p.is_symlink() else 'not a regular file'}; "
                                 "jnn never writes through links or over other kinds of file: remove it")  # fmt: skip
        if record.exists() and not self.overwrite:
            try:
                old = json.loads(record.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise ValueError(f"{str(record)!r} cannot be read ({err}); pass overwrite=True (--overwrite) to "
                                 "start the sweep again") from None  # fmt: skip
            if not self.resume:
                raise ValueError(f"{str(self.path)!r} already holds a sweep; pass resume=True (--resume) to go on with "
                                 "it or overwrite=True (--overwrite) to start again")  # fmt: skip
            diffs = [f"{k}: stored {_short(old.get(k))}, now {_short(meta.get(k))}" for k in MATCHED
                     if old.get(k) != json.loads(json.dumps(meta.get(k)))]  # fmt: skip
            if diffs:
                raise ValueError(f"{str(record)!r} is from another sweep; differences: " + "; ".join(diffs))
            check_same_plan(record, old, meta)
            return
        if not record.exists() and not self.overwrite:
            foreign = sorted(p.name for p in self.path.iterdir() if p.name != lock.LOCK_NAME)
            if foreign:
                what = "the files of a sweep without its record" if (self.path / "sweep.json").is_file() else "files"
                raise ValueError(
                    f"{str(self.path)!r} is not empty but holds no sweep of jnn ({what}: {', '.join(foreign[:5])}); "
                    "pick an empty or new folder, or pass overwrite=True (--overwrite) to sweep into it (jnn then "
                    "replaces only its own files)"
                )
        for name in (SWEEP_RUN, *SWEEP_FILES):
            (self.path / name).unlink(missing_ok=True)
        if (self.path / KEPT_DIR).is_dir():
            shutil.rmtree(self.path / KEPT_DIR)
        atomic.write_text(record, json.dumps({**meta, "environment": environment()}, indent=2, default=str))

    # ----------------------------------------------------------------------------------------------------

    def restore(self, group: int, template: PyTree, keys: Sequence[str]) -> tuple | None:
        path = group_path(self.path, group)
        if not self.resume or not path.exists():
            return None
        self._check_group_file(path, group)
        state = ckpt.restore(path, template)
        extras = ckpt.read_extras(path)
        m = int(np.asarray(jax.device_get(template.epoch)).size)
        records = [{k: [float(v) for v in extras.get(f"history/{j}/{k}", ())] for k in keys} for j in range(m)]
        self._load_states(path, extras)
        epochs = np.atleast_1d(np.asarray(jax.device_get(state.epoch)))
        if any(len(r[k]) != int(e) for r, e in zip(records, epochs) for k in keys):
            raise ValueError(f"{str(path)!r} holds {epochs.tolist()} epochs but not their history; it cannot be "
                             "resumed: pass --overwrite to start again")  # fmt: skip
        return state, records

    def _load_states(self, path: Path, extras: dict) -> None:
        """Give the stateful callbacks (a scheduler) the states kept with a group checkpoint; refuse a checkpoint
        kept with other such callbacks (the resumed sweep would decide otherwise than the uninterrupted one)."""
        kept = json.loads(bytes(np.asarray(extras[CALLBACK_STATES], np.uint8)).decode()) \
            if CALLBACK_STATES in extras else []  # fmt: skip
        if len(kept) != len(self.stateful):
            names = [type(cb).__name__ for cb in self.stateful] or "none"
            was = "; ".join(str(k.get("scheduler", "?")) for k in kept) if kept else "none"
            raise ValueError(f"{str(path)!r} was kept with {len(kept)} scheduler state(s) ({was}), and this sweep's "
                             f"stateful callbacks are {names}: resume with the callbacks the sweep started with (a "
                             "scheduler's decisions decide which members go on)")  # fmt: skip
        for cb, state in zip(self.stateful, kept):
            cb.load_state_dict(state)

    def _group_meta(self, group: int) -> dict:
        """What decides group ``group``'s members, stored in its checkpoint's header: the sweep's identity (a hash
        of its config, axes, models and data), the config hash, the group index, its members and their values on
        every axis."""
        members = self._meta.get("groups", [[]])[group] if group < len(self._meta.get("groups", [])) else []
        axes = {k: [v[i] for i in members] for k, v in (self._meta.get("axes") or {}).items()}
        return {"group": group, "sweep_id": sweep_identity(self._meta), "config_hash": self._meta.get("config_hash"),
                "members": members, "axes": json.loads(json.dumps(axes, default=str))}  # fmt: skip

    def _check_group_file(self, path: Path, group: int) -> None:
        """Refuse a group checkpoint that another sweep (or another group of this one) wrote, naming both files."""
        try:
            stored = ckpt.read_header(path).get("meta", {})
        except ValueError as err:
            raise ValueError(f"{err}; pass --overwrite (overwrite=True) to start the sweep again") from None
        expected = self._group_meta(group)
        names = {"sweep_id": "sweep (a hash of the config, axes, models and data)", "group": "group index",
                 "config_hash": "config hash", "members": "members", "axes": "members' axis values"}  # fmt: skip
        diffs = [f"{names[k]}: {_short(stored.get(k))} there, {_short(expected[k])} in {SWEEP_RUN}"
                 for k in names if stored.get(k) != expected[k]]  # fmt: skip
        if diffs:
            raise ValueError(f"{str(path)!r} is not group {group} of the sweep that {str(self.path / SWEEP_RUN)!r} "
                             f"records: {'; '.join(diffs)}. Remove that file to train the group again, or pass "
                             "--overwrite (overwrite=True) to start the sweep again")  # fmt: skip

    def group_begin(self, group: int, records: list) -> None:
        self._group, self._records = group, records

    def on_call_end(self, epoch: int, state: TrainState) -> None:
        if self.every and epoch % self.every == 0 and self._group is not None:
            self._save(self._group, state, self._records)

    def save_group(self, group: int, state: TrainState, records: list) -> None:
        self._save(group, state, records)
        self._group = self._records = None

    def _save(self, group: int, state, records: list) -> None:
        extras = {f"history/{j}/{k}": np.asarray(v, np.float64) for j, r in enumerate(records) for k, v in r.items()}
        if self.stateful:  # the schedulers' decisions so far (see jnn.train.callbacks: state_dict)
            text = json.dumps([cb.state_dict() for cb in self.stateful])
            extras[CALLBACK_STATES] = np.frombuffer(text.encode(), np.uint8)
        path = group_path(self.path, group)
        path.parent.mkdir(exist_ok=True)
        ckpt.save(path, state, meta=self._group_meta(group), extras=extras)

    def on_train_end(self, result: Any) -> None:
        from jnn.app.sweep_files import save_sweep

        try:
            save_sweep(result, self.path, data_info=self.data_info)
        finally:
            self._release()

    def on_train_abort(self, error: BaseException) -> None:
        self._release()


def stored_strategy(meta: dict) -> str:
    """The strategy a sweep record names (records from before strategies: ``workers`` 1 ran one vmapped batch,
    ``"stacked"``; more ran each member's program, ``"programs"``)."""
    return meta.get("strategy") or ("stacked" if meta.get("workers", 1) == 1 else "programs")


def check_same_plan(record: Path, old: dict, meta: dict) -> None:
    """Refuse to resume the sweep recorded as ``old`` with another strategy, or ``"stacked"`` over another number
    of devices: either changes the arithmetic a member runs, so the resumed sweep would not be bit for bit the
    uninterrupted one. (``"programs"`` runs each member's own program: any threads, any device of the kind.)"""
    was, now = stored_strategy(old), meta.get("strategy")
    if was != now:
        raise ValueError(f"{str(record)!r} was swept with strategy={was!r}, now strategy={now!r}: the strategy sets "
                         "the program a member runs, so a resume goes on with the same (bit for bit); pass "
                         f"strategy={was!r} (--strategy {was})")  # fmt: skip
    before, after = len(old.get("devices") or [None]), len(meta.get("devices") or [None])
    if now == "stacked" and before != after:
        raise ValueError(f"{str(record)!r} was swept stacked over {before} devices, now {after}: sharding the members "
                         f"otherwise changes their arithmetic; pass devices={before}")  # fmt: skip


def sweep_identity(meta: dict) -> str:
    """A short hash of what makes a sweep itself (``MATCHED``: config, axes, members' models, data hash)."""
    text = json.dumps({k: meta.get(k) for k in MATCHED}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _short(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


__all__ = ["SweepFolder", "SWEEP_RUN", "group_path", "sweep_identity"]
