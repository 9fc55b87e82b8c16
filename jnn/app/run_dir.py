"""The run folder: ``config.json`` with versions and hashes, checkpoints (with the history), resume, and
what a finished run leaves: ``model.npz`` (the params ``jnn.load_run`` reads), ``summary.json`` and
``curves.png``."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnn._version import __version__
from jnn.app import atomic, lock
from jnn.app import checkpoint as ckpt
from jnn.app.best_files import BEST_DIR, epoch_files, read_best
from jnn.app.lock import FolderLock
from jnn.mlp import split_mlp_keys
from jnn.train.config import OPTIMIZERS, RESUME_CHANGES, TrainConfig, upgrade_dict
from jnn.train.loop import last_sane_epoch
from jnn.train.optimizers import find_hyperparams
from jnn.train.state import NO_LEAF, Status, TrainState

CHECKPOINT_NAME = "checkpoint.npz"
MODEL_NAME = "model.npz"
#: The default config's fields: a run folder written before a field existed resumes with its default.
_DEFAULTS = TrainConfig().to_dict()

#: Files a run writes (removed by ``overwrite``).
RUN_FILES = (CHECKPOINT_NAME, MODEL_NAME, "history.json", "history.csv", "summary.json", "curves.png")
#: Files a sweep folder holds (see ``jnn.save_sweep``).
SWEEP_FILES = ("sweep.csv", "sweep.json", "params.npz", "sweep.png")
#: The record a sweep folder keeps of its sweep (see ``jnn.SweepFolder``).
SWEEP_RUN = "sweep_run.json"
#: Every name jnn writes at the top of a run or sweep folder.
JNN_FILES = (*RUN_FILES, "config.json", *SWEEP_FILES, SWEEP_RUN, lock.LOCK_NAME)
HISTORY_PREFIX = "history/"
#: The folder of the kept epoch checkpoints (``epoch-000012.npz``), see ``TrainConfig.keep_checkpoints``.
KEPT_DIR = "checkpoints"


def environment() -> dict:
    """Versions and device, recorded in a run's ``config.json``."""
    return {
        "jnn": __version__,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(jax.devices()[0]),
        "platform": jax.default_backend(),
    }


def prepare_run_dir(run_path: Path, meta: dict, *, resume: bool, overwrite: bool) -> FolderLock:
    """Create or check a run folder and take its lock, remove stale temp files, write ``config.json``.

    Returns:
        The folder's ``jnn.app.lock.FolderLock``, held until the caller releases it (at the end of the run).

    Raises:
        jnn.app.lock.FolderInUse: another process is running in the folder (nothing was touched).
        ValueError: if the path is a file; a file jnn writes is a symbolic link or not a regular file; the
            folder holds another run, or anything else without a ``config.json``, and neither ``resume``
            (for a run) nor ``overwrite`` is set; or ``resume`` finds a run with another config or data.
    """
    if run_path.exists() and not run_path.is_dir():
        raise ValueError(f"run_dir must be a folder; {str(run_path)!r} is a file")
    run_path.mkdir(parents=True, exist_ok=True)
    held = lock.acquire(run_path)
    try:
        ckpt.remove_stale_temp_files(run_path)
        for sub in (KEPT_DIR, BEST_DIR):
            if (run_path / sub).is_dir() and not (run_path / sub).is_symlink():
                ckpt.remove_stale_temp_files(run_path / sub)
        _check_own_files(run_path, overwrite)
        _write_config(run_path, meta, resume, overwrite)
    except BaseException:
        held.release()
        raise
    return held


def _check_own_files(run_path: Path, overwrite: bool) -> None:
    """Refuse symbolic links and non-regular files where jnn writes (``overwrite`` removes links)."""
    inside = []
    for sub in (KEPT_DIR, BEST_DIR):
        d = run_path / sub
        inside += [f"{sub}/{p.name}" for p in d.iterdir()] if d.is_dir() and not d.is_symlink() else []
    for name in (*RUN_FILES, "config.json", "tensorboard", KEPT_DIR, BEST_DIR, *inside):
        p = run_path / name
        folder = name in ("tensorboard", KEPT_DIR, BEST_DIR)
        if p.is_symlink() and overwrite:
            p.unlink()
        elif p.is_symlink() or (p.exists() and not (p.is_dir() if folder else p.is_file())):
            what = "a symbolic link" if p.is_symlink() else "not a regular file"
            raise ValueError(f"{str(p)!r} is {what}; jnn never writes through links or over other kinds of file "
                             "in a run folder: remove it" + (" (or pass overwrite=True / --overwrite to replace "
                             "the link)" if p.is_symlink() else ""))  # fmt: skip


def _write_config(run_path: Path, meta: dict, resume: bool, overwrite: bool) -> None:
    cfg_file = run_path / "config.json"
    if cfg_file.exists() and not overwrite:
        old = read_config(cfg_file)
        if not resume:
            raise ValueError(
                f"run_dir {str(run_path)!r} already holds a run (config {old.get('config_hash')}); "
                "pass resume=True (--resume) to continue it or overwrite=True (--overwrite) to replace it"
            )
        ckpt.check_meta(old, meta, what=str(cfg_file), allow=RESUME_CHANGES, defaults=_DEFAULTS, upgrade=upgrade_meta)
        was = {**_DEFAULTS, **upgrade_meta(old)["config"]}  # fields added since the run began: their defaults
        changes = {k: {"was": was.get(k), "now": v} for k, v in meta["config"].items() if was.get(k) != v}
        if changes or old.get("config_hash") != meta["config_hash"]:  # a new rate, or a config.json of an older
            # layout: written again in today's form, so that it agrees with the model.npz this run will write
            done = [*old.get("resumed_with_changes", []), *([changes] if changes else [])]
            kept = {"data": old["data"]} if "data" in old and "data" not in meta else {}  # the CLI's data source
            record = {**kept, **meta, "environment": environment(), **({"resumed_with_changes": done} if done else {})}
            atomic.write_text(cfg_file, json.dumps(record, indent=2))
        return
    if not cfg_file.exists() and not overwrite:
        foreign = sorted(p.name for p in run_path.iterdir() if p.name != lock.LOCK_NAME)
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            raise ValueError(f"run_dir {str(run_path)!r} is not empty but holds no jnn run (no config.json; found "
                             f"{shown}); pick an empty or new folder, or pass overwrite=True (--overwrite) to train "
                             "into it (jnn then replaces only its own files)")  # fmt: skip
    if overwrite:
        for name in RUN_FILES:
            (run_path / name).unlink(missing_ok=True)
        for sub in ("tensorboard", BEST_DIR):
            if (run_path / sub).is_dir():
                shutil.rmtree(run_path / sub)
        for p in kept_checkpoints(run_path).values():
            p.unlink()
    atomic.write_text(cfg_file, json.dumps({**meta, "environment": environment()}, indent=2))


def is_jnn_folder(folder) -> bool:
    """Whether ``folder`` holds a jnn run or sweep (its ``config.json``, ``sweep.json`` or lock file)."""
    return any((Path(folder) / n).is_file() for n in ("config.json", "sweep.json", SWEEP_RUN, lock.LOCK_NAME))


def check_not_run_file(path, name: str, *, allow: tuple = ()) -> None:
    """Refuse an output path that is one of jnn's own files in a run or sweep folder: ``RUN/model.npz``,
    ``RUN/config.json``, ``SWEEP/params.npz``, anything in ``RUN/checkpoints`` or ``RUN/tensorboard``.

    Args:
        path: the output file (``--out``).
        name: how messages call it.
        allow: names that may be written there all the same (``jnn plot RUN --out RUN/curves.png``).

    Raises:
        ValueError: naming the path, the folder and the flag.
    """
    path = Path(path)
    parent = Path(os.path.realpath(path.parent))
    inside = parent.name in (KEPT_DIR, BEST_DIR, "tensorboard") and is_jnn_folder(parent.parent)
    if inside or (is_jnn_folder(parent) and path.name in JNN_FILES and path.name not in allow):
        folder = parent.parent if inside else parent
        raise ValueError(
            f"{name} {str(path)!r} is one of the files of the jnn run or sweep in {str(folder)!r}; writing there "
            f"would replace the run's own file: give {name} a path outside jnn's files"
        )


def upgrade_meta(meta: dict) -> dict:
    """A run's metadata (``config.json``, a checkpoint's header) in today's form; ``meta`` is not changed.

    The config is brought up to date by ``jnn.train.config.upgrade_dict`` (the flat early-stopping keys), and
    the built-in MLP's fields, which older runs recorded in ``config`` beside the training's, move to ``mlp``
    (a run of the MLP records its ``sizes``; a task's run never trained them and drops them).
    """
    meta = dict(meta)
    config, mlp = split_mlp_keys(upgrade_dict(meta.get("config", {})))
    meta["config"] = config
    if mlp and "mlp" not in meta and "sizes" in meta and "task" not in meta:
        meta["mlp"] = mlp
    return meta


def read_config(path: Path) -> dict:
    """Read a run's ``config.json``: a JSON object whose ``config`` is an object.

    Raises:
        ValueError: the file cannot be read, is not JSON, or has another shape (naming the file).
    """
    if not path.is_file():
        raise ValueError(f"{str(path)!r} is not a regular file")
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{str(path)!r} cannot be read ({err}); pass overwrite=True (--overwrite) to replace the "
                         "run") from None  # fmt: skip
    if not isinstance(old, dict) or not isinstance(old.get("config"), dict):
        raise ValueError(f"{str(path)!r} is not a jnn run's config (a JSON object with a 'config' object); pass "
                         "overwrite=True (--overwrite) to replace the run")  # fmt: skip
    return old


def resume_state(path, template: TrainState, meta: dict, config: TrainConfig, custom_optimizer: bool, keys):
    """Restore a checkpoint and its history: ``(state, records)``. A changed learning rate is applied (and a
    run stopped by a non-finite value may go on); a larger epoch or step budget lets a finished run go on."""
    state = ckpt.restore(path, template, expect=meta, allow_changes=RESUME_CHANGES, config_defaults=_DEFAULTS,
                         config_upgrade=upgrade_meta)  # fmt: skip
    extras = ckpt.read_extras(path)
    records = {k: [float(v) for v in extras.get(HISTORY_PREFIX + k, ())] for k in keys}
    epochs = int(state.epoch)
    if any(len(v) != epochs for v in records.values()):
        raise ValueError(f"checkpoint {str(path)!r} holds {epochs} epochs but not their history; it cannot be resumed")
    stored = ckpt.read_header(path)["meta"].get("config", {})
    scheduled = config.lr_schedule != "constant"
    if scheduled and any(stored.get(k) != getattr(config, k) for k in ("learning_rate", "max_epochs")):
        raise ValueError(
            f"lr_schedule={config.lr_schedule!r} spans the run's max_epochs at its learning_rate; they cannot "
            f"change on resume (stored max_epochs {stored.get('max_epochs')}, learning_rate "
            f"{stored.get('learning_rate')})"
        )
    if stored.get("learning_rate") != config.learning_rate:
        hp = find_hyperparams(state.opt_state, "learning_rate")
        if custom_optimizer or hp is None:
            raise ValueError(
                "learning_rate can only change on resume with the built-in optimizers "
                f"{list(OPTIMIZERS)}; the stored run used {stored.get('learning_rate')}"
            )
        hp["learning_rate"] = jnp.asarray(config.learning_rate, hp["learning_rate"].dtype)
        if int(state.status) in (Status.NON_FINITE, Status.DIVERGED):
            state = _set_status(state, Status.RUNNING)
    status = int(state.status)
    steps_left = config.max_steps is None or int(state.step) < config.max_steps
    if status in (Status.MAX_EPOCHS, Status.MAX_STEPS) and epochs < config.max_epochs and steps_left:
        state = _set_status(state, Status.RUNNING)  # a larger budget: the run goes on
    elif status == Status.RUNNING and epochs >= config.max_epochs:
        state = _set_status(state, Status.MAX_EPOCHS)
    return state, records


def _set_status(state: TrainState, status: Status) -> TrainState:
    return state._replace(
        status=jnp.asarray(status, jnp.int32),
        bad_step=jnp.asarray(-1, jnp.int32),
        bad_leaf=jnp.asarray(NO_LEAF, jnp.int32),
    )


def save_checkpoint(run_path: Path, state: TrainState, records: dict, meta: dict, keep: int = 1) -> Path:
    """Save the state and the history so far as ``run_path/checkpoints/epoch-EEEEEE.npz`` (atomically, then
    verified) and make ``run_path/checkpoint.npz`` that file (a hard link, or a second save where the file
    system has none); then drop kept checkpoints beyond the ``keep`` latest, except the one of the epoch with
    the best training loss.

    Returns:
        The path of ``checkpoint.npz``.
    """
    extras = {HISTORY_PREFIX + k: np.asarray(v, np.float64) for k, v in records.items()}
    epoch = int(jax.device_get(state.epoch))
    (run_path / KEPT_DIR).mkdir(exist_ok=True)
    kept = ckpt.save(kept_path(run_path, epoch), state, meta=meta, extras=extras)
    ckpt.verify(kept)
    if not atomic.link_over(kept, run_path / CHECKPOINT_NAME):  # no hard links here: a second copy
        ckpt.save(run_path / CHECKPOINT_NAME, state, meta=meta, extras=extras)
    losses = [v if math.isfinite(v) else math.inf for v in records.get("train_loss", [])]
    best = 1 + min(range(len(losses)), key=losses.__getitem__) if losses else None
    for e, p in sorted(kept_checkpoints(run_path).items())[:-keep]:
        if e not in (best, epoch):
            p.unlink(missing_ok=True)
    return run_path / CHECKPOINT_NAME


def kept_path(run_path: Path, epoch: int) -> Path:
    """Where the kept checkpoint of ``epoch`` lives: ``run_path/checkpoints/epoch-EEEEEE.npz``."""
    return Path(run_path) / KEPT_DIR / f"epoch-{epoch:06d}.npz"


def kept_checkpoints(run_path: Path) -> dict:
    """``{epoch: path}`` of the kept epoch checkpoints of a run folder (regular files only)."""
    return epoch_files(Path(run_path) / KEPT_DIR)


def rollback_epoch(result, config: TrainConfig) -> int | None:
    """The epoch a run that went non-finite or diverged can restart from (``RunFolder(path, resume=True,
    from_epoch=E)``): its last sane epoch (``jnn.train.loop.last_sane_epoch``) when the run folder keeps
    its checkpoint; else None.

    Args:
        result: the run's ``jnn.FitResult``.
        config: its ``jnn.TrainConfig``.
    """
    if result.stopped_by not in ("non_finite", "diverged") or result.run_dir is None:
        return None
    sane = last_sane_epoch(result.history["train_loss"], config.divergence_factor)
    return sane if sane in kept_checkpoints(result.run_dir) else None


def rewind_to_epoch(run_path: Path, epoch: int) -> Path:
    """Take up the kept checkpoint of ``epoch``: checkpoints of later epochs (the abandoned branch) are
    removed and ``checkpoint.npz`` becomes that one. Returns its path.

    Raises:
        ValueError: no kept checkpoint of that epoch (the message lists the kept ones).
    """
    kept = kept_checkpoints(run_path)
    if epoch not in kept:
        raise ValueError(f"from_epoch={epoch}: {str(run_path)!r} keeps checkpoints of epochs "
                         f"{sorted(kept) or 'none'}")  # fmt: skip
    ckpt.verify(kept[epoch])
    for e, p in kept.items():
        if e > epoch:
            p.unlink()
    if not atomic.link_over(kept[epoch], run_path / CHECKPOINT_NAME):
        atomic.write_bytes(run_path / CHECKPOINT_NAME, kept[epoch].read_bytes())
    return kept[epoch]


def save_model(run_path: Path, params, meta: dict) -> Path:
    """Save the params a run returns to ``run_path/model.npz`` (what ``jnn.load_run`` reads)."""
    return ckpt.save(run_path / MODEL_NAME, params, meta=meta)


def write_confusion(run_path: Path, result, ds, data_info: dict | None = None) -> dict:
    """Write ``confusion.csv`` (rows: the true class, columns: the predicted class, labelled with the run's class
    names) of a classification run's params on ``ds`` (the test set) and return ``{"confusion": {"classes",
    "matrix"}}`` for ``summary.json``; ``{}`` (nothing written) for another loss.
    """

    from jnn.losses import loss_of
    from jnn.metrics import confusion
    from jnn.predict import outputs

    record = loss_of(result.task.loss)
    if record is None or record.kind != "classes":
        return {}
    out = outputs(result.task, result.params, ds.x)
    matrix = np.asarray(confusion(record, jnp.asarray(out), jnp.asarray(ds.y)), dtype=np.int64)
    classes = ((data_info or {}).get("preprocessing") or {}).get("classes") or list(range(matrix.shape[0]))
    lines = ["true \\ predicted," + ",".join(str(c) for c in classes)]
    lines += [f"{c}," + ",".join(str(int(v)) for v in row) for c, row in zip(classes, matrix)]
    atomic.write_text(run_path / "confusion.csv", "\n".join(lines) + "\n")
    return {"confusion": {"classes": classes, "matrix": matrix.tolist()}}


def write_summary(run_path: Path, result, config: TrainConfig, extra: dict | None = None) -> Path:
    """Write ``summary.json`` (how the run stopped, best epoch, the last epoch's metrics, ``extra``) and,
    when matplotlib is installed, ``curves.png``; an existing summary's other entries are kept."""
    path = run_path / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, ValueError):
        summary = {}
    summary = summary if isinstance(summary, dict) else {}  # what is not ours is replaced, never merged
    h = result.history
    summary.update({
        "stopped_by": result.stopped_by,
        "best_epoch": result.best_epoch + 1,
        "epochs": int(result.state.epoch),
        "steps": int(result.state.step),
        "monitor": None if config.early_stopping is None else config.early_stopping.monitor,
        "last": {k: None if math.isnan(h[k][-1]) else h[k][-1] for k in h.keys} if len(h) else {},
        "message": result.message,
        **({"best_checkpoints": read_best(run_path)["checkpoints"]} if config.best_checkpoints is not None else {}),
        **(extra or {}),
    })  # fmt: skip
    atomic.write_text(path, json.dumps(summary, indent=2, default=_json_default))
    try:
        from jnn.app.plots import plot_run

        plot_run(run_path)
    except ImportError:
        pass
    return path


def _json_default(o):
    return o.item() if hasattr(o, "item") else str(o)


__all__ = ["CHECKPOINT_NAME", "KEPT_DIR", "MODEL_NAME", "RESUME_CHANGES", "RUN_FILES", "environment",
           "kept_checkpoints", "kept_path", "prepare_run_dir", "read_config", "resume_state", "rewind_to_epoch",
           "rollback_epoch", "save_checkpoint", "save_model", "upgrade_meta", "write_summary", "SWEEP_FILES",
           "SWEEP_RUN", "JNN_FILES", "is_jnn_folder", "check_not_run_file"]  # fmt: skip
