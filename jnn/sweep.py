"""Sweeps: train M members (seeds and hyperparameters) at once under ``jax.vmap``, in one compile.

Every member is the run ``fit`` would do with its own seed, learning rate, λ and keep_prob: the
hyperparameters are arrays in the state (λ and keep_prob in ``TrainState.hyper``, the learning rate in
the optimiser state through ``optax.inject_hyperparams``), so the compiled epoch is the same whatever
the values, and ``jax.vmap`` runs all members in one dispatch per epoch. Each member has its own
early-stopping state; a member that has stopped is frozen (its params, history and counters no longer
change) while the others go on, and the sweep ends when every member has stopped.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jnn import _validate as V
from jnn.data import Dataset
from jnn.history import History
from jnn.init import init_mlp
from jnn.train.config import TrainConfig
from jnn.train.loop import _keys, prepare_data
from jnn.train.state import STATUS, init_state
from jnn.train.step import make_steps

#: Sweep axes and the TrainConfig field each one sets.
AXES = ("seed", "learning_rate", "l2", "keep_prob")


def grid(**axes) -> dict[str, list]:
    """The Cartesian product of axes, as equal-length member lists.

    Example:
        >>> grid(seed=[0, 1], l2=[0.0, 1e-4])
        {'seed': [0, 0, 1, 1], 'l2': [0.0, 0.0001, 0.0, 0.0001]}
    """
    names = list(axes)
    for n in names:
        if n not in AXES:
            raise ValueError(f"sweep axis must be one of {list(AXES)}; got {n!r}")
    combos = list(itertools.product(*(list(axes[n]) for n in names)))
    return {n: [c[i] for c in combos] for i, n in enumerate(names)}


def members_of(config: TrainConfig, axes: dict) -> list[TrainConfig]:
    """One validated :class:`TrainConfig` per member; axes zip (all must have the same length).

    Raises:
        ValueError: unknown axis, unequal lengths, or a value out of range (naming the member).
    """
    if not axes:
        raise ValueError(f"a sweep needs at least one axis among {list(AXES)}")
    axes = dict(axes)
    for n, vals in axes.items():
        if n not in AXES:
            raise ValueError(f"sweep axis must be one of {list(AXES)}; got {n!r}")
        if not isinstance(vals, (list, tuple, np.ndarray)) or len(vals) == 0:
            raise ValueError(f"sweep axis {n!r} must be a non-empty list of values; got {vals!r}")
        axes[n] = [v.item() if isinstance(v, np.generic) else v for v in vals]
    lengths = {n: len(v) for n, v in axes.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"sweep axes must have the same length (one value per member); got lengths {lengths}. "
                         "Use jnn.sweep.grid(...) for a Cartesian product")
    m = next(iter(lengths.values()))
    out = []
    base = config.to_dict()
    for i in range(m):
        fields = {**base, **{n: v[i] for n, v in axes.items()}}
        try:
            out.append(TrainConfig.from_dict(fields))
        except (ValueError, TypeError) as err:
            raise type(err)(f"sweep member {i} ({', '.join(f'{n}={axes[n][i]!r}' for n in axes)}): {err}") from None
    return out


@dataclass(frozen=True)
class SweepResult:
    """What :func:`sweep` returns.

    Attributes:
        members: the members' configs.
        rows: one dict per member: member, seed, learning_rate, l2, keep_prob, stopped_by, epochs,
            best_epoch (1-based), best_val (the monitored metric at the best epoch), test_loss and
            test_accuracy (when a test set was given).
        params: the members' final params (best epoch when restored), stacked on a leading axis [M, ...].
        state: the stacked final TrainState.
        histories: one :class:`jnn.history.History` per member.
        monitor: the monitored metric (``val_loss`` or ``val_accuracy``).
        seconds: wall time of the training loop.
        epoch_seconds: host wall time of each sweep epoch (all members; the first includes the compile).
    """

    members: list
    rows: list
    params: list
    state: object
    histories: list
    monitor: str
    seconds: float
    epoch_seconds: tuple = ()

    def member_params(self, i: int):
        """Params of member ``i`` (unstacked)."""
        return jax.tree.map(lambda a: a[i], self.params)

    def best(self) -> dict:
        """The row of the member with the best validation metric (min loss / max accuracy)."""
        vals = [r["best_val"] for r in self.rows]
        sign = 1.0 if self.monitor.endswith("loss") else -1.0
        keyed = [(sign * v if v is not None and not math.isnan(v) else math.inf, i) for i, v in enumerate(vals)]
        return self.rows[min(keyed)[1]]

    def save(self, folder) -> list[Path]:
        """Write ``sweep.csv``, ``sweep.json`` and (with matplotlib) ``sweep.png`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / "sweep.csv", folder / "sweep.json"]
        with open(paths[0], "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(self.rows[0]))
            w.writeheader()
            w.writerows(self.rows)
        paths[1].write_text(json.dumps({"monitor": self.monitor, "best": self.best(), "rows": self.rows,
                                        "seconds": self.seconds,
                                        "histories": [h.metrics for h in self.histories]}, indent=2,
                                       default=lambda o: None))
        try:
            paths.append(_plot(folder / "sweep.png", self))
        except ImportError:
            pass
        return paths


def _plot(path, res: SweepResult) -> Path:
    from jnn.plots import _pyplot

    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, h in enumerate(res.histories):
        axes[0].plot(range(1, len(h) + 1), h[res.monitor], linewidth=1, label=f"member {i}")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel(res.monitor)
    axes[0].set_title("validation curves (a stopped member's curve ends)")
    if len(res.histories) <= 10:
        axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    key = "test_accuracy" if res.rows[0].get("test_accuracy") is not None else "best_val"
    labels = [f"{r['member']}" for r in res.rows]
    best = res.best()["member"]
    axes[1].bar(range(len(res.rows)), [r[key] for r in res.rows],
                color=["tab:green" if r["member"] == best else "tab:blue" for r in res.rows])
    axes[1].set_xticks(range(len(res.rows)), labels, fontsize=7)
    axes[1].set_xlabel("member (green: best by validation)")
    axes[1].set_ylabel(key)
    axes[1].set_title(f"{key} per member")
    lo = min(r[key] for r in res.rows)
    hi = max(r[key] for r in res.rows)
    axes[1].set_ylim(max(0.0, lo - 0.1 * (hi - lo + 1e-9) - 0.02), hi + 0.1 * (hi - lo + 1e-9) + 0.01)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def sweep(train: Dataset, config: TrainConfig | None = None, *, test: Dataset | None = None,
          progress: bool | None = None, log_every: int = 0, **axes) -> SweepResult:
    """Train one member per value along the given axes, all at once under ``jax.vmap``.

    Args:
        train: training data (each member holds out its validation split as ``fit`` would).
        config: the shared :class:`TrainConfig`; the axes override its fields per member.
        test: optional test set; each member's test loss and accuracy go in the table.
        progress: progress bar (default: when stderr is a terminal and ``CI`` is unset).
        log_every: print a line every k epochs (0: never).
        **axes: any of ``seed``, ``learning_rate``, ``l2``, ``keep_prob``, each a list with one value per
            member (all the same length; see :func:`grid`).

    Returns:
        A :class:`SweepResult`; ``result.best()`` picks the member by validation metric.

    Raises:
        ValueError, TypeError: bad axes or values (naming the member), or a bad config or data.
    """
    from jnn.train.loop import _check_data, _progress

    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a jnn.TrainConfig; got {type(config).__name__}")
    if not isinstance(train, Dataset):
        raise TypeError(f"train must be a jnn.data.Dataset(x, y); got {type(train).__name__}")
    if test is not None and not isinstance(test, Dataset):
        raise TypeError(f"test must be a jnn.data.Dataset or None; got {type(test).__name__}")
    V.check_int("log_every", log_every, low=0)
    members = members_of(config, axes)
    m = len(members)

    # Per-member data (the validation split is keyed by the member's seed, as in fit).
    splits = [prepare_data(train, c) for c in members]
    _check_data(splits[0][0], config)
    sizes = config.network_sizes(train.x.shape[1], train.num_classes)
    has_val = splits[0][1] is not None
    x = jnp.stack([jnp.asarray(s[0].x) for s in splits])
    y = jnp.stack([jnp.asarray(s[0].y) for s in splits])
    if has_val:
        xv = jnp.stack([jnp.asarray(s[1].x) for s in splits])
        yv = jnp.stack([jnp.asarray(s[1].y) for s in splits])
    else:
        xv, yv = jnp.zeros((m, 1, x.shape[-1]), x.dtype), jnp.zeros((m, 1), y.dtype)

    tx = config.make_optimizer()
    states = []
    for c in members:
        k_init, k_data, k_dropout, _ = _keys(c.seed, c.prng_impl)
        params = init_mlp(k_init, sizes, scheme=c.scheme)
        s = init_state(params, tx, data_key=k_data, dropout_key=k_dropout, max_epochs=c.max_epochs,
                       early=c.stopper().init(), l2=c.l2, keep_prob=c.keep_prob)
        s.opt_state.hyperparams["learning_rate"] = jnp.asarray(c.learning_rate, s.opt_state.hyperparams[
            "learning_rate"].dtype)
        states.append(s)
    state = jax.tree.map(lambda *a: jnp.stack(a), *states)
    del states

    use_dropout = any(c.keep_prob < 1.0 for c in members)
    steps = make_steps(config, tx, jax.tree.map(lambda a: a[0], state.params), n_train=len(splits[0][0]),
                       has_val=has_val, use_dropout=use_dropout, members=len(members))
    run_epoch = jax.jit(jax.vmap(steps.run_epoch), donate_argnums=0)

    bar = _progress(progress, config.max_epochs)
    t0 = time.perf_counter()
    done_epochs = 0
    epoch_seconds = []
    while True:
        t_epoch = time.perf_counter()
        state = run_epoch(state, x, y, xv, yv)
        status, epochs = jax.device_get((state.status, state.epoch))
        epoch_seconds.append(time.perf_counter() - t_epoch)
        done_epochs += 1
        if bar is not None:
            bar.set_postfix({"running": int((status == 0).sum())}, refresh=False)
            bar.update(1)
        if log_every and done_epochs % log_every == 0:
            print(f"epoch {done_epochs:4d}  members running {int((status == 0).sum())}/{m}", flush=True)
        if np.all(status != 0):
            break
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0

    restore = config.early_stopping and config.restore_best
    best_epoch = np.asarray(state.early.best_epoch)
    if restore:
        pick = jnp.asarray(best_epoch >= 0)
        final = jax.tree.map(lambda b, p: jnp.where(pick.reshape((m,) + (1,) * (p.ndim - 1)), b, p),
                             state.best_params, state.params)
    else:
        final = state.params
    test_metrics = None
    if test is not None:
        ev = jax.jit(jax.vmap(steps.eval_step, in_axes=(0, None, None, None, 0)))
        tl, ta = ev(final, jnp.asarray(test.x), jnp.asarray(test.y), None, state.hyper["keep_prob"])
        test_metrics = (np.asarray(tl), np.asarray(ta))
    histories = [History.from_state(jax.tree.map(lambda a: a[i], state)) for i in range(m)]
    best_val = np.asarray(state.early.best)
    rows = []
    for i, c in enumerate(members):
        be = int(best_epoch[i])
        bv = float(best_val[i]) if config.early_stopping and be >= 0 else None
        rows.append({"member": i, "seed": c.seed, "learning_rate": c.learning_rate, "l2": c.l2,
                     "keep_prob": c.keep_prob, "stopped_by": STATUS[int(status[i])], "epochs": int(epochs[i]),
                     "best_epoch": be + 1 if be >= 0 else None, "best_val": bv,
                     "test_loss": None if test_metrics is None else float(test_metrics[0][i]),
                     "test_accuracy": None if test_metrics is None else float(test_metrics[1][i])})
    return SweepResult(members, rows, final, state, histories, config.monitor, seconds, tuple(epoch_seconds))


def format_table(rows: list[dict]) -> str:
    """The sweep table as aligned text."""
    cols = ["member", "seed", "learning_rate", "l2", "keep_prob", "stopped_by", "epochs", "best_epoch", "best_val",
            "test_accuracy"]
    fmt = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    table = [cols] + [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table)


__all__ = ["AXES", "SweepResult", "grid", "members_of", "sweep", "format_table"]
