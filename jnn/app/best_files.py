"""The best k epochs of a run as files: ``RUN/best/epoch-EEEEEE.npz`` and ``RUN/best/best.json``.

The slots live on device (``jnn.train.best_k``); ``sync_best`` runs at the call boundaries where the run
folder writes ``checkpoint.npz`` (every ``checkpoint_every`` epochs, and at the end), so that the files always
belong to the state the checkpoint holds (a run resumed after ``kill -9`` finds them in line with its state), and
brings the folder in line with the slots: the params of an epoch that entered the k best are
written (a ``model.npz``-like file: the run's metadata and the params, entries named by path), ``best.json`` is
replaced atomically, and only then are the files of epochs that left removed, so that ``best.json`` always names
files that exist. ``jnn.load_run(path, best=r)`` loads the r-th best (1: the best).

``best.json``::

    {"monitor": "val_accuracy", "mode": "max", "k": 3,
     "checkpoints": [{"rank": 1, "epoch": 12, "value": 0.93, "file": "best/epoch-000012.npz"}, ...]}

Epochs are counted from 1, like the kept checkpoints of ``RUN/checkpoints``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax

from jnn.app import atomic
from jnn.app import checkpoint as ckpt
from jnn.train.best_k import BestCheckpoints, ranked

#: The folder of the best epochs' params in a run folder.
BEST_DIR = "best"
#: The index of the folder: the monitor and the kept epochs, best first.
BEST_INDEX = "best.json"


def best_path(run_path, epoch: int) -> Path:
    """Where the params of ``epoch`` (counted from 1) live: ``run_path/best/epoch-EEEEEE.npz``."""
    return Path(run_path) / BEST_DIR / f"epoch-{epoch:06d}.npz"


def best_files(run_path) -> dict:
    """``{epoch: path}`` of the best-epoch files in a run folder (regular files only)."""
    return epoch_files(Path(run_path) / BEST_DIR)


def epoch_files(folder) -> dict:
    """``{epoch: path}`` of the ``epoch-EEEEEE.npz`` regular files in ``folder`` (none when it is not a folder or is
    a symbolic link): the kept checkpoints and the best-epoch files are named alike."""
    folder = Path(folder)
    out = {}
    if folder.is_dir() and not folder.is_symlink():
        for p in folder.glob("epoch-*.npz"):
            stem = p.name[len("epoch-") : -len(".npz")]
            if stem.isdigit() and p.is_file() and not p.is_symlink():
                out[int(stem)] = p
    return out


def sync_best(run_path, state, rule: BestCheckpoints, meta: dict) -> list[dict]:
    """Bring ``run_path/best`` in line with one run's on-device slots (see the module docstring).

    Args:
        run_path: the run folder.
        state: the run's ``jnn.TrainState`` (its ``top_k``).
        rule: the run's ``jnn.BestCheckpoints``.
        meta: the run's metadata, stored in each file's header.

    Returns:
        The ``checkpoints`` entries of ``best.json``, best first.
    """
    run_path = Path(run_path)
    folder = run_path / BEST_DIR
    folder.mkdir(exist_ok=True)
    on_disk = best_files(run_path)
    order = ranked(state.top_k, rule.direction)
    entries = []
    for rank, (slot, epoch0, value) in enumerate(order, start=1):
        epoch = epoch0 + 1
        path = best_path(run_path, epoch)
        if epoch not in on_disk:
            params = jax.device_get(jax.tree.map(lambda a, s=slot: a[s], state.top_k.params))
            ckpt.save(path, params, meta={**meta, "best": {"epoch": epoch, "monitor": rule.monitor, "value": value}})
        entries.append({"rank": rank, "epoch": epoch, "value": value, "file": f"{BEST_DIR}/{path.name}"})
    index = {"monitor": rule.monitor, "mode": rule.direction, "k": rule.k, "checkpoints": entries}
    atomic.write_text(folder / BEST_INDEX, json.dumps(index, indent=2))
    wanted = {e["epoch"] for e in entries}
    for epoch, path in on_disk.items():
        if epoch not in wanted:
            path.unlink(missing_ok=True)
    return entries


def read_best(run_path) -> dict:
    """The ``best.json`` of a run folder.

    Raises:
        ValueError: the run kept no best epochs (no ``best/best.json``), or the file is not jnn's.
    """
    path = Path(run_path) / BEST_DIR / BEST_INDEX
    if not path.is_file():
        raise ValueError(
            f"{str(Path(run_path))!r} keeps no best epochs (no {BEST_DIR}/{BEST_INDEX}); train with "
            "best_checkpoints=jnn.BestCheckpoints(k=...) (jnn train --best-k K)"
        )
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
        index["checkpoints"]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{str(path)!r} is not a best-epochs index written by jnn") from None
    return index


def best_file(run_path, rank: int) -> Path:
    """The params file of the ``rank``-th best epoch (1: the best).

    Raises:
        ValueError: no index, or ``rank`` outside 1 … the number of kept epochs (naming them).
    """
    entries = read_best(run_path)["checkpoints"]
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= len(entries):
        kept = [f"{e['rank']}: epoch {e['epoch']}" for e in entries]
        raise ValueError(f"best must be a rank in [1, {len(entries)}] of the kept epochs ({', '.join(kept) or 'none'});"
                         f" got {rank!r}")  # fmt: skip
    return Path(run_path) / entries[rank - 1]["file"]


__all__ = ["BEST_DIR", "BEST_INDEX", "best_file", "best_files", "best_path", "epoch_files", "read_best", "sync_best"]
