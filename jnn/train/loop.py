"""``fit``: the lecture's training algorithm, compiled.

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

import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnn import checkpoint as ckpt
from jnn.data import Dataset, split
from jnn.history import METRICS, History
from jnn.init import init_mlp
from jnn.pytree import named_leaves
from jnn.train.config import OPTIMIZERS, TrainConfig
from jnn.train.state import STATUS, STATUS_CODE, TrainState, init_state
from jnn.train.step import make_steps

CHECKPOINT_NAME = "checkpoint.npz"
#: Config fields a resumed run may change: the learning rate lives in the optimiser state, so a run that
#: diverged can continue from its last finite checkpoint with a lower one.
RESUME_CHANGES = ("learning_rate",)


@dataclass(frozen=True)
class FitResult:
    """What :func:`fit` returns.

    Attributes:
        params: the final θ — the best epoch's params when early stopping restores them.
        state: the final :class:`TrainState` (its ``params`` are the last epoch's).
        history: per-epoch metrics (:class:`jnn.history.History`).
        stopped_by: the rule that ended the run: ``max_epochs``, ``max_steps``, ``loss_tol``,
            ``early_stopping``, ``non_finite``, or ``paused`` (``stop_at_epoch`` reached; resumable).
        best_epoch: 0-based epoch of the best monitored value (−1 without early stopping).
        message: a readable summary of why the run stopped.
        run_dir: the run folder, if any.
        epoch_seconds: host wall time of each epoch run by this call (the first includes the compile).
        setup_seconds: wall time from the call to the first epoch (validation, init, data placement).
    """

    params: list
    state: TrainState
    history: History
    stopped_by: str
    best_epoch: int
    message: str
    run_dir: Path | None = None
    epoch_seconds: tuple = ()
    setup_seconds: float = 0.0


def _keys(seed: int, prng_impl: str = "threefry2x32"):
    """The named streams of a run: ``init``, ``data``, ``dropout``, ``split`` (threefry, from the seed).

    With ``prng_impl="rbg"`` the data and dropout streams become RBG keys whose key data are drawn from the
    threefry streams, so init and split stay the same and only the per-step random bits change generator.
    """
    root = jax.random.key(seed)
    k_init, k_data, k_dropout, k_split = jax.random.split(root, 4)
    if prng_impl != "threefry2x32":
        shape = jax.random.key_data(jax.random.key(0, impl=prng_impl)).shape
        k_data, k_dropout = (jax.random.wrap_key_data(jax.random.bits(k, shape, jnp.uint32), impl=prng_impl)
                             for k in (k_data, k_dropout))
    return k_init, k_data, k_dropout, k_split


def prepare_data(train: Dataset, config: TrainConfig) -> tuple[Dataset, Dataset | None]:
    """Carve the validation set from ``train`` (keyed by the ``split`` stream of ``config.seed``)."""
    if config.val_fraction == 0.0:
        return train, None
    fit_part, val = split(train, (1.0 - config.val_fraction, config.val_fraction), key=_keys(config.seed)[3],
                          stratify=config.stratify)
    return fit_part, val


def _check_data(train: Dataset, config: TrainConfig):
    if not isinstance(train, Dataset):
        raise TypeError(f"train must be a jnn.data.Dataset(x, y); got {type(train).__name__}")
    if config.batch_size > len(train):
        raise ValueError(f"batch_size must be in [1, {len(train)}] (the number of training examples after the "
                         f"validation split); got {config.batch_size}")


def _progress(enabled: bool | None, total: int):
    if enabled is None:
        enabled = sys.stderr.isatty() and not os.environ.get("CI")
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", leave=True, dynamic_ncols=True)


def fit(train: Dataset, config: TrainConfig | None = None, *, optimizer: optax.GradientTransformation | None = None,
        run_dir: str | os.PathLike | None = None, resume: bool = False, overwrite: bool = False,
        stop_at_epoch: int | None = None,
        progress: bool | None = None, log_every: int = 0, mesh=None) -> FitResult:
    """Train a network on ``train`` with minibatch gradient descent until a stopping rule fires.

    Args:
        train: the training data; ``config.val_fraction`` of it is held out for validation.
        config: the :class:`TrainConfig` (defaults if None).
        optimizer: any ``optax.GradientTransformation``; default from ``config.optimizer``.
        run_dir: folder for ``config.json``, ``history.json``/``.csv`` and ``checkpoint.npz``; None keeps
            everything in memory.
        resume: continue from ``run_dir/checkpoint.npz`` (must be from the same config and data).
        overwrite: replace a run folder that already holds another run (otherwise that is an error).
        stop_at_epoch: pause after this many epochs in total (the run can be resumed later); the result
            says ``stopped_by="paused"``.
        progress: show a progress bar (default: when stderr is a terminal and ``CI`` is unset).
        log_every: also print a line every k epochs (0: never).
        mesh: a ``jax.sharding.Mesh`` with a ``data`` axis (see :func:`jnn.parallel.data_mesh`): shard
            every minibatch over it (data parallelism; params and optimiser state replicated). The
            batch size must be divisible by the ``data`` axis size. With several processes
            (:func:`jnn.parallel.initialize`), only process 0 writes the run folder.

    Returns:
        A :class:`FitResult`.

    Raises:
        ValueError, TypeError: on a bad config, bad data, or a checkpoint from another run.
    """
    t_call = time.perf_counter()
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a jnn.TrainConfig; got {type(config).__name__}")
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(f"optimizer must be an optax.GradientTransformation; got {type(optimizer).__name__}")
    if stop_at_epoch is not None and (isinstance(stop_at_epoch, bool) or not isinstance(stop_at_epoch, int)
                                      or stop_at_epoch < 1):
        raise ValueError(f"stop_at_epoch must be a positive int or None; got {stop_at_epoch!r}")
    if not isinstance(train, Dataset):
        raise TypeError(f"train must be a jnn.data.Dataset(x, y); got {type(train).__name__}")
    if mesh is not None:
        from jnn.parallel import check_mesh

        check_mesh(mesh, config.batch_size)
    fit_ds, val_ds = prepare_data(train, config)
    _check_data(fit_ds, config)
    sizes = config.network_sizes(fit_ds.x.shape[1], fit_ds.num_classes)
    tx = config.make_optimizer() if optimizer is None else optimizer

    k_init, k_data, k_dropout, _ = _keys(config.seed, config.prng_impl)
    params = init_mlp(k_init, sizes, scheme=config.scheme)
    stopper = config.stopper()
    state = init_state(params, tx, data_key=k_data, dropout_key=k_dropout, max_epochs=config.max_epochs,
                       early=stopper.init(), l2=config.l2, keep_prob=config.keep_prob)

    run_path = None if run_dir is None else Path(run_dir)
    meta = {"config": config.to_dict(), "config_hash": config.hash(), "sizes": list(sizes)}
    if run_dir is not None:  # hashing the data costs a pass over it; only a run folder needs it
        meta["data_hash"] = ckpt.data_hash(train)
    writer = jax.process_index() == 0  # with several processes, one writes the run folder
    if run_path is not None:
        if writer:
            prepare_run_dir(run_path, meta, resume=resume, overwrite=overwrite)
        if resume and (run_path / CHECKPOINT_NAME).exists():
            state = _resume(run_path / CHECKPOINT_NAME, state, meta, config, tx, optimizer)
    elif resume:
        raise ValueError("resume=True needs run_dir (the folder holding checkpoint.npz)")

    x, y = fit_ds.x, fit_ds.y
    if val_ds is not None:
        xv, yv = val_ds.x, val_ds.y
    else:
        xv, yv = np.zeros((1, x.shape[1]), x.dtype), np.zeros((1,), y.dtype)
    jit_kw, batch_sharding = {}, None
    if mesh is not None:
        from jnn.parallel import replicate, shardings

        rep, batch_sharding = shardings(mesh)
        state, (x, y, xv, yv) = replicate(state, rep), replicate((x, y, xv, yv), rep)
        jit_kw = {"out_shardings": rep}
    else:
        x, y, xv, yv = (jnp.asarray(a) for a in (x, y, xv, yv))
    steps = make_steps(config, tx, params, n_train=len(fit_ds), has_val=val_ds is not None,
                       batch_sharding=batch_sharding)

    def epoch_and_summary(state, *data):
        # One small array back to the host per epoch: epoch, status and the epoch's metrics.
        state = steps.run_epoch(state, *data)
        e = jnp.maximum(state.epoch - 1, 0)
        dtype = state.history[METRICS[0]].dtype
        summary = jnp.stack([state.epoch.astype(dtype), state.status.astype(dtype),
                             *(state.history[k][e] for k in METRICS)])
        return state, summary

    run_epoch = jax.jit(epoch_and_summary, donate_argnums=0,
                        **({"out_shardings": (jit_kw["out_shardings"],) * 2} if jit_kw else {}))

    bar = _progress(progress, config.max_epochs)
    epoch, status = int(state.epoch), int(state.status)
    if bar is not None:
        bar.update(epoch)
    t0 = time.perf_counter()
    setup_seconds = t0 - t_call
    epoch_seconds = []
    paused = False
    while status == 0:
        if stop_at_epoch is not None and epoch >= stop_at_epoch:
            paused = True
            break
        t_epoch = time.perf_counter()
        state, summary = run_epoch(state, x, y, xv, yv)
        summary = np.asarray(jax.device_get(summary))  # blocks: one dispatch in flight at a time
        epoch_seconds.append(time.perf_counter() - t_epoch)
        epoch, status = int(summary[0]), int(summary[1])
        last = dict(zip(METRICS, summary[2:].tolist()))
        if bar is not None:
            bar.set_postfix({k: f"{float(v):.4f}" for k, v in last.items() if k != "learning_rate"}, refresh=False)
            bar.update(1)
        if log_every and (epoch % log_every == 0 or status != 0):
            print(f"epoch {epoch:4d}  " + "  ".join(f"{k} {float(last[k]):.4f}" for k in METRICS[:4]), flush=True)
        if writer and run_path is not None and config.checkpoint_every and epoch % config.checkpoint_every == 0:
            ckpt.save(run_path / CHECKPOINT_NAME, state, meta=meta)
    if bar is not None:
        bar.close()
    elapsed = time.perf_counter() - t0

    history = History.from_state(state)
    stopped_by = "paused" if paused else STATUS[status]
    best_epoch = int(state.early.best_epoch) if config.early_stopping else -1
    restore = config.early_stopping and config.restore_best and best_epoch >= 0
    final = state.best_params if restore else state.params
    message = _message(state, stopped_by, best_epoch, config, elapsed)
    if writer and run_path is not None:
        ckpt.save(run_path / CHECKPOINT_NAME, state, meta=meta)
        history.save(run_path)
    return FitResult(final, state, history, stopped_by, best_epoch, message, run_path, tuple(epoch_seconds),
                     setup_seconds)


def _resume(path, template: TrainState, meta: dict, config: TrainConfig, tx, optimizer) -> TrainState:
    """Restore a checkpoint; apply a changed learning rate and let a run stopped by a non-finite value go on."""
    state = ckpt.restore(path, template, expect=meta, allow_changes=RESUME_CHANGES)
    stored = ckpt.read_header(path)["meta"].get("config", {})
    if stored.get("learning_rate") != config.learning_rate:
        hp = getattr(state.opt_state, "hyperparams", None)
        if optimizer is not None or not isinstance(hp, dict) or "learning_rate" not in hp:
            raise ValueError("learning_rate can only change on resume with the built-in optimizers "
                             f"{list(OPTIMIZERS)}; the stored run used {stored.get('learning_rate')}")
        hp["learning_rate"] = jnp.asarray(config.learning_rate, hp["learning_rate"].dtype)
        if int(state.status) == STATUS_CODE["non_finite"]:
            state = state._replace(status=jnp.asarray(0, jnp.int32), bad_step=jnp.asarray(-1, jnp.int32),
                                   bad_leaf=jnp.asarray(-1, jnp.int32))
    return state


def _message(state: TrainState, stopped_by: str, best_epoch: int, config: TrainConfig, elapsed: float) -> str:
    epochs, steps = int(state.epoch), int(state.step)
    base = f"{epochs} epochs, {steps} steps in {elapsed:.1f} s"
    if stopped_by == "non_finite":
        leaf = int(state.bad_leaf)
        names = [p for p, _ in named_leaves(state.params)]
        where = "the loss" if leaf == -2 else f"the gradient of {names[leaf]}"
        kept = ("the last finite state is kept" if config.check_finite else
                "the state before that step is kept (gradients were not checked: check_finite=False)")
        return (f"stopped: non-finite value in {where} at step {int(state.bad_step)} (epoch {epochs}); {kept}. "
                f"Lower the learning rate (now {config.learning_rate:g}). {base}")
    if stopped_by == "early_stopping":
        return (f"stopped: early stopping on {config.monitor} after {config.patience} epochs without improvement; "
                f"best epoch {best_epoch + 1}. {base}")
    if stopped_by == "paused":
        return f"paused after epoch {epochs} (resume with resume=True). {base}"
    return f"stopped: {stopped_by}. {base}"


def evaluate(params, ds: Dataset, config: TrainConfig) -> dict:
    """Mean loss and accuracy of ``params`` on ``ds`` without dropout (classic mode: expected weights).

    Returns:
        ``{"loss": float, "accuracy": float, "n": int}``.
    """
    if not isinstance(ds, Dataset):
        raise TypeError(f"ds must be a jnn.data.Dataset; got {type(ds).__name__}")
    if jax.process_count() > 1:
        params = jax.device_get(params)  # global arrays -> host copies, evaluated on this process
    steps = make_steps(config, optax.identity(), params, n_train=1, has_val=False)
    loss, acc = jax.jit(steps.eval_step)(params, jnp.asarray(ds.x), jnp.asarray(ds.y))
    return {"loss": float(loss), "accuracy": float(acc), "n": len(ds)}


def environment() -> dict:
    """Versions and device, recorded in a run's ``config.json``."""
    import jnn

    return {"jnn": jnn.__version__, "jax": jax.__version__, "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
            "optax": optax.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "device": str(jax.devices()[0]), "platform": jax.default_backend()}


def prepare_run_dir(run_path: Path, meta: dict, *, resume: bool, overwrite: bool) -> None:
    """Create or check a run folder, remove stale checkpoint temp files, write ``config.json``.

    Raises:
        ValueError: if the path is a file, or the folder holds another run and neither ``resume`` nor
            ``overwrite`` is set, or ``resume`` finds a run with another config or data.
    """
    if run_path.exists() and not run_path.is_dir():
        raise ValueError(f"run_dir must be a folder; {str(run_path)!r} is a file")
    run_path.mkdir(parents=True, exist_ok=True)
    ckpt.remove_stale_temp_files(run_path)
    cfg_file = run_path / "config.json"
    if cfg_file.exists() and not overwrite:
        try:
            old = json.loads(cfg_file.read_text())
        except (OSError, ValueError) as err:
            raise ValueError(f"{cfg_file} exists but cannot be read ({err}); pass overwrite=True to replace the run") from None
        if not resume:
            raise ValueError(f"run_dir {str(run_path)!r} already holds a run (config {old.get('config_hash')}); "
                             "pass resume=True (--resume) to continue it or overwrite=True (--overwrite) to replace it")
        ckpt.check_meta(old, meta, what=str(cfg_file), allow=RESUME_CHANGES)
        if old.get("config") != meta["config"]:  # a resume with a new learning rate: record it
            changes = {k: {"was": old["config"].get(k), "now": v} for k, v in meta["config"].items()
                       if old["config"].get(k) != v}
            cfg_file.write_text(json.dumps({**meta, "environment": environment(),
                                            "resumed_with_changes": [*old.get("resumed_with_changes", []), changes]},
                                           indent=2))
        return
    if overwrite:
        for name in (CHECKPOINT_NAME, "history.json", "history.csv"):
            (run_path / name).unlink(missing_ok=True)
    with open(cfg_file, "w") as fh:
        json.dump({**meta, "environment": environment()}, fh, indent=2)
