"""The run folder: ``config.json`` with versions and hashes, checkpoints, resume."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jnn import checkpoint as ckpt
from jnn.train.config import OPTIMIZERS, TrainConfig
from jnn.train.state import NO_LEAF, Status, TrainState

CHECKPOINT_NAME = "checkpoint.npz"
#: Config fields a resumed run may change: the learning rate lives in the optimiser state, so a run that
#: diverged can continue from its last finite checkpoint with a lower one.
RESUME_CHANGES = ("learning_rate",)


def environment() -> dict:
    """Versions and device, recorded in a run's ``config.json``."""
    import jnn

    return {
        "jnn": jnn.__version__,
        "jax": jax.__version__,
        "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
        "optax": optax.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(jax.devices()[0]),
        "platform": jax.default_backend(),
    }


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
            raise ValueError(
                f"{cfg_file} exists but cannot be read ({err}); pass overwrite=True to replace the run"
            ) from None
        if not resume:
            raise ValueError(
                f"run_dir {str(run_path)!r} already holds a run (config {old.get('config_hash')}); "
                "pass resume=True (--resume) to continue it or overwrite=True (--overwrite) to replace it"
            )
        ckpt.check_meta(old, meta, what=str(cfg_file), allow=RESUME_CHANGES)
        if old.get("config") != meta["config"]:  # a resume with a new learning rate: record it
            changes = {
                k: {"was": old["config"].get(k), "now": v}
                for k, v in meta["config"].items()
                if old["config"].get(k) != v
            }
            cfg_file.write_text(
                json.dumps(
                    {
                        **meta,
                        "environment": environment(),
                        "resumed_with_changes": [*old.get("resumed_with_changes", []), changes],
                    },
                    indent=2,
                )
            )
        return
    if overwrite:
        for name in (CHECKPOINT_NAME, "history.json", "history.csv"):
            (run_path / name).unlink(missing_ok=True)
    with open(cfg_file, "w") as fh:
        json.dump({**meta, "environment": environment()}, fh, indent=2)


def resume_state(path, template: TrainState, meta: dict, config: TrainConfig, custom_optimizer: bool) -> TrainState:
    """Restore a checkpoint; apply a changed learning rate and let a run stopped by a non-finite value go on."""
    state = ckpt.restore(path, template, expect=meta, allow_changes=RESUME_CHANGES)
    stored = ckpt.read_header(path)["meta"].get("config", {})
    if stored.get("learning_rate") != config.learning_rate:
        hp = getattr(state.opt_state, "hyperparams", None)
        if custom_optimizer or not isinstance(hp, dict) or "learning_rate" not in hp:
            raise ValueError(
                "learning_rate can only change on resume with the built-in optimizers "
                f"{list(OPTIMIZERS)}; the stored run used {stored.get('learning_rate')}"
            )
        hp["learning_rate"] = jnp.asarray(config.learning_rate, hp["learning_rate"].dtype)
        if int(state.status) == Status.NON_FINITE:
            state = state._replace(
                status=jnp.asarray(Status.RUNNING, jnp.int32),
                bad_step=jnp.asarray(-1, jnp.int32),
                bad_leaf=jnp.asarray(NO_LEAF, jnp.int32),
            )
    return state


__all__ = ["CHECKPOINT_NAME", "RESUME_CHANGES", "environment", "prepare_run_dir", "resume_state"]
