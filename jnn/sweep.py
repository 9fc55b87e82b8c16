"""Sweeps: train M members (seeds and hyperparameters) at once, in one compile per shape.

Every member is the run ``fit`` would do with its own seed, learning rate, λ and keep_prob: the
hyperparameters are arrays in the state (λ and keep_prob in ``TrainState.hyper``, the learning rate in
the optimiser state through ``optax.inject_hyperparams``), so the compiled epoch is the same whatever
the values. The axes make members as a grid unless the call pairs them (``jnn.axes``), or by a random
search (``jnn.search``). Two strategies run them (``jnn.train.strategy``): ``"programs"`` (the default on a
CPU) runs each member through its fit's own program, in threads and over the devices
(``jnn.train.member_threads``), each member bit for bit its fit; ``"stacked"`` (the default on an accelerator)
runs the members in ``jax.vmap``-ed batches, the member axis sharded over the devices, each member equal to its fit
to rounding. Each member has its own early-stopping state; a member that has stopped is frozen (its params, history
and counters no longer change) while the others go on, and the sweep ends when every member has stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import jax
import optax

from jnn.types import ArrayLike, ClassWeight

if TYPE_CHECKING:
    from jnn.train.callbacks import Callback

import dataclasses
import math
import time
from dataclasses import dataclass, field

import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jnn import _validate as V
from jnn.axes import combine as combine_axes
from jnn.axes import grid, zipped
from jnn.cluster import RayMembers, connect
from jnn.data import Dataset
from jnn.disk import RowSource, RowView, in_memory
from jnn.display import fmt, html_view, params_line, text_table, view
from jnn.history import History
from jnn.mlp import MLP, MLP_SWEEP_FIELDS
from jnn.protocol import shape_key, shape_label
from jnn.schedulers import SuccessiveHalving
from jnn.search import choice, draw, loguniform, randint, space_record, uniform
from jnn.task import Task
from jnn.tpe import check_sampler, tpe_sweep
from jnn.train import epoch as epoch_module
from jnn.train.callbacks import CallbackList, RunInfo, RunStore, SweepStore, at_most_one, check_callbacks
from jnn.train.config import SWEEP_FIELDS, TrainConfig
from jnn.train.epoch import make_eval
from jnn.train.host_loop import Interrupted, final_params, run_epochs
from jnn.train.keys import Keys
from jnn.train.member_threads import MemberThreads, default_workers
from jnn.train.members import stack as stack_members
from jnn.train.optimizers import from_hyperparams, has_learning_rate, learning_rate_of, set_learning_rate
from jnn.train.program import compiled_caller, optimizer_key, program_spec
from jnn.train.progress import Progress
from jnn.train.repacking import PackedCaller
from jnn.train.run_setup import check_memory, check_model, checked_task, epoch_arrays, initial_state, prepare_data
from jnn.train.state import STATUS
from jnn.train.strategy import Plan, check_strategy, label, local_devices, stacked_devices
from jnn.train.streaming import StreamCaller

#: Axes that set a ``TrainConfig`` field (its fields declared ``sweep=True``), for any model.
CONFIG_AXES = SWEEP_FIELDS
#: Sweep axes of the built-in MLP: ``CONFIG_AXES`` and the ``jnn.MLP`` fields declared ``sweep=True``;
#: with a task, ``CONFIG_AXES`` and any name in ``task.hyper``. ``hidden`` and ``batch_size`` change shapes:
#: members are trained in groups of one shape.
AXES = CONFIG_AXES + MLP_SWEEP_FIELDS


def _check_axes(axes: dict, allowed, *, any_name: bool = False) -> tuple[dict, int]:
    if not axes:
        raise ValueError(f"a sweep needs at least one axis among {list(allowed)}")
    out = {}
    for n, vals in axes.items():
        if n not in allowed and not any_name:
            raise ValueError(
                f"sweep axis must be one of {list(allowed)}, or a hyperparameter of an optimizer given as a "
                f"function (sweep(..., optimizer=lambda h: ...)); got {n!r}"
            )
        if not isinstance(vals, (list, tuple, np.ndarray)) or len(vals) == 0:
            raise ValueError(f"sweep axis {n!r} must be a non-empty list of values; got {vals!r}")
        out[n] = [v.item() if isinstance(v, np.generic) else v for v in vals]
    lengths = {n: len(v) for n, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(
            f"sweep axes must have the same length (one value per member); got lengths {lengths}. "
            "Use jnn.sweep.grid(...) for a Cartesian product"
        )
    return out, next(iter(lengths.values()))


def _known_axes(model: Task | MLP) -> tuple[str, ...]:
    """The axes that set a config field or one of the model's (an MLP field, a task hyperparameter; the others
    are an optimizer function's)."""
    return CONFIG_AXES + tuple(h for h in model.sweep_axes() if h not in CONFIG_AXES)


def members_of(config: TrainConfig, axes: dict, task: Task | MLP | None = None, *,
               optimizer_axes: bool = False) -> list[tuple[TrainConfig, dict, Task | MLP]]:  # fmt: skip
    """One validated ``(TrainConfig, hyper, model)`` per member; axes zip (all must have the same length).

    Args:
        config: the shared config.
        axes: ``{axis: [value per member]}``.
        task: the model: a ``jnn.MLP`` (default ``MLP()``; axes ``AXES``, each member gets its own
            MLP) or a task whose ``hyper`` names are sweepable (every member trains that task).
        optimizer_axes: other names are allowed too: hyperparameters of an optimizer given as a function
            (real numbers, in ``hyper``).

    Raises:
        ValueError: unknown axis, unequal lengths, or a value out of range (naming the member).
    """
    model = check_model(task)
    allowed = _known_axes(model)
    axes, m = _check_axes(dict(axes), allowed, any_name=optimizer_axes)
    extra = [n for n in axes if n not in allowed]
    base = config.to_dict()
    out = []
    for i in range(m):
        label = ", ".join(f"{n}={axes[n][i]!r}" for n in axes)
        try:
            c = TrainConfig.from_dict({**base, **{n: v[i] for n, v in axes.items() if n in CONFIG_AXES}})
            own = {n: v[i] for n, v in axes.items() if n not in CONFIG_AXES and n not in extra}
            member_model, hyper = model.member(own)  # validated as the model's (an MLP's ranges)
            hyper.update({n: V.check_real(n, axes[n][i]) for n in extra})
        except (ValueError, TypeError) as err:
            raise type(err)(f"sweep member {i} ({label}): {err}") from None
        out.append((c, hyper, member_model))
    return out


@dataclass(frozen=True, repr=False)
class SweepResult:
    """What ``sweep`` returns.

    Attributes:
        members: the members' configs.
        rows: one dict per member: member, seed, learning_rate, the task's hyperparameters (the MLP: l2,
            keep_prob), stopped_by, epochs, best_epoch (1-based), best_val (the monitored metric at the best
            epoch), test_loss and test_<metric> (None without a test set).
        params: the members' final params (best epoch when restored), stacked on a leading axis [M, ...].
        state: the stacked final TrainState.
        histories: one ``jnn.history.History`` per member.
        monitor: the monitored metric (e.g. ``val_loss``).
        seconds: wall time of the training loop.
        epoch_seconds: host wall time of each sweep epoch (all members; each epoch's share of its call's time;
            the first includes the compile).
        direction: ``"min"`` or ``"max"``, how ``best()`` ranks the monitored metric.
        sizes: the built-in MLP's layer widths (None for a custom task or members of several widths), stored for
            ``jnn.load_run``.
        hyper_names: the task's hyperparameter names (columns of ``rows``).
        n_features: the input width d.
        pack_sizes: the members computed per epoch, in order, over its shape groups in turn: ``"programs"``, the
            members running at the start and after each change; ``"stacked"``, the vmapped batch sizes (re-packed:
            the running members, rounded up to a power of two).
        member_sizes: each member's layer widths (the built-in MLP; None for a custom task).
        groups: the member indices of each shape group (one group unless ``hidden`` or ``batch_size`` vary).
        stacked: whether ``params`` is stacked over the members (False: a list with each member's params).
        models: each member's model (its ``jnn.MLP``, or the task; see ``refit``).
        descriptions: what a run folder would record of each member's model (``Task.describe`` /
            ``MLP.describe``: the MLP's fields and widths, or a task's loss, metrics, hyper and parameter shapes).
        workers: the threads the members ran in, side by side (1 for ``"stacked"``; see ``sweep(workers=)``).
        strategy: ``"programs"`` or ``"stacked"`` (see ``jnn.train.strategy``).
        devices: each member's device (``"cpu:3"``).

    With members of different shapes (a ``hidden`` axis), ``params`` is a list with each member's params
    and ``state`` a list with each group's stacked state; otherwise both are stacked over all M members.
    """

    members: list
    rows: list
    params: list
    state: object
    histories: list
    monitor: str
    seconds: float
    epoch_seconds: tuple = ()
    direction: str = "min"
    sizes: tuple | None = None
    hyper_names: tuple = ()
    n_features: int | None = None
    pack_sizes: tuple = ()
    member_sizes: tuple | None = None
    groups: tuple = ()
    stacked: bool = True
    models: tuple = ()
    descriptions: tuple = ()
    workers: int = 1
    strategy: str = "programs"
    devices: tuple = ()
    inputs: dict = field(default_factory=dict, repr=False, compare=False)
    search: dict | None = None

    def refit(self, k: int, **fit_kw):
        """Train member ``k`` again as a ``jnn.fit`` of its own config, model and optimizer on the sweep's data.

        A vmapped member equals its fit only to rounding (batched matrix products may round differently in the
        last bits), and over many epochs the two can stop at different epochs; the refit is the
        member as a single run, bit for bit what ``fit`` gives (``sweep(..., strategy="programs")`` trains every
        member so).

        Args:
            k: the member.
            **fit_kw: passed on to ``jnn.fit`` (``callbacks=[jnn.RunFolder(path)]``, ...).

        Returns:
            The ``jnn.FitResult``.
        """
        from jnn.train.loop import fit

        m = len(self.rows)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < m:
            raise ValueError(f"k must be a member in [0, {m - 1}]; got {k!r}")
        if not self.inputs:
            raise ValueError("this SweepResult does not hold the sweep's data (it was built by hand); call jnn.fit")
        a = self.inputs
        row = self.rows[k]
        model = self.models[k].with_hyper({n: row[n] for n in self.hyper_names})
        tx = _fit_optimizer(a["optimizer"], self.members[k], row, a["extra"], a["lr_axis"])
        return fit(a["train"], self.members[k], task=model, val=a["val"], class_weight=a["class_weight"],
                   optimizer=tx, **fit_kw)  # fmt: skip

    def predict(self, x: ArrayLike, member: int) -> np.ndarray:
        """Member ``member``'s predictions for ``x [n, d]``, as ``jnn.FitResult.predict`` gives a fit's (its own
        hyperparameters and dropout rule, evaluation mode)."""
        from jnn.predict import predict

        return predict(*self._member_task(member), x)

    def predict_proba(self, x: ArrayLike, member: int) -> np.ndarray:
        """Member ``member``'s class probabilities for ``x [n, d]`` (see ``jnn.FitResult.predict_proba``)."""
        from jnn.predict import predict_proba

        return predict_proba(*self._member_task(member), x)

    def _member_task(self, k: int) -> tuple:
        """``(task, params)`` of member ``k``: its model with its own hyperparameters, built for its params."""
        m = len(self.rows)
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < m:
            raise ValueError(f"member must be in [0, {m - 1}]; got {k!r}")
        if not self.models:
            raise ValueError("this SweepResult holds no models (it was built by hand)")
        row, params = self.rows[k], self.member_params(k)
        model = self.models[k].with_hyper({n: row[n] for n in self.hyper_names})
        if isinstance(model, MLP):
            sizes = (int(params[0]["w"].shape[0]), *(int(layer["w"].shape[1]) for layer in params))
            return model.build(sizes, str(params[0]["w"].dtype)), params
        return model, params

    def member_params(self, i: int):
        """Params of member ``i`` (unstacked)."""
        if not self.stacked:
            return self.params[i]
        return jax.tree.map(lambda a: a[i], self.params)

    def _items(self) -> list[tuple[str, str]]:
        b = self.best()
        groups = f", {len(self.groups)} shape groups" if len(self.groups) > 1 else ""
        best = f"member {b['member']} by {self.best_rule()}: {fmt(self.best_value())}"
        where = f"{self.strategy}, workers={self.workers}" if self.strategy == "programs" else self.strategy
        spread = len(set(self.devices))
        where += f", {spread} devices" if spread > 1 else ""
        return [("members", f"{len(self.rows)}{groups}, {where}, {self.seconds:.1f} s"),
                ("params (all members)", params_line(self.params)), ("best", best)]  # fmt: skip

    def _columns(self) -> list[str]:
        return [k for k in self.rows[0] if k != "test_loss"] if self.rows else []

    def __repr__(self) -> str:
        table = "\n".join("  " + line for line in text_table(self.rows, self._columns()))
        return view("SweepResult", self._items())[:-1] + table + "\n)"

    def _repr_html_(self) -> str:
        return html_view("SweepResult", self._items(), self.rows, self._columns())

    def best(self) -> dict:
        """The row of the best member by the monitored metric (min loss / max accuracy): its value at each
        member's best epoch (``best_val``) where early stopping kept one, else its last value (every epoch ran:
        no best epoch exists); ``best_rule`` says which. A member without a value ranks last."""
        vals, _ = self._ranked_values()
        sign = 1.0 if self.direction == "min" else -1.0
        keyed = [(sign * v if v is not None and not math.isnan(v) else math.inf, i) for i, v in enumerate(vals)]
        return self.rows[min(keyed)[1]]

    def best_rule(self) -> str:
        """How ``best`` ranks the members, in words (printed beside the best member)."""
        return self._ranked_values()[1]

    def best_value(self) -> float | None:
        """The best member's value of the metric ``best`` ranks by."""
        vals, _ = self._ranked_values()
        return vals[self.best()["member"]] if self.rows else None

    def _ranked_values(self) -> tuple[list, str]:
        """``(value per member, rule)``: the ``best_val`` column where any member has one, else the monitored
        metric's last value from the histories."""
        best = [r.get("best_val") for r in self.rows]
        way = "lowest" if self.direction == "min" else "highest"
        if any(v is not None for v in best):
            return best, f"{way} {self.monitor} at each member's best epoch"
        last = [h[self.monitor][-1] if self.monitor in h.metrics and len(h[self.monitor]) else None
                for h in self.histories]  # fmt: skip
        return last, f"{way} last {self.monitor} (no best epoch: early stopping was off)"


def sweep(
    train: Dataset,
    config: TrainConfig | None = None,
    *,
    task: Task | MLP | None = None,
    val: Dataset | None = None,
    test: Dataset | None = None,
    class_weight: ClassWeight | None = None,
    optimizer: optax.GradientTransformation | Callable | None = None,
    callbacks: Sequence[Callback] | None = None,
    combine: str = "grid",
    strategy: str | None = None,
    workers: int | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    cluster: str | None = None,
    samples: int | None = None,
    search_seed: int = 0,
    sampler: str = "random",
    **axes,
) -> SweepResult:
    """Train one member per combination of the axes' values, all at once, in one compile per shape.

    Args:
        train: training data (each member holds out its validation split as ``fit`` would, unless ``val``
            is given).
        config: the shared ``TrainConfig``; the axes override its fields per member.
        task: what to train: a ``jnn.MLP`` (default ``MLP()``; the axes ``hidden``, ``l2`` and ``keep_prob``
            override its fields per member) or a ``jnn.Task`` (axes named in ``task.hyper``).
        val: explicit validation data shared by every member.
        test: optional test set; each member's test loss and metrics go in the table.
        class_weight: per-class loss weights, as in ``jnn.fit``.
        optimizer: None (``config.optimizer``), one ``optax.GradientTransformation`` for every member (a
            ``learning_rate`` axis needs its rate injected as state: ``optax.inject_hyperparams``), or a
            function ``optimizer(h) -> GradientTransformation`` of the member's hyperparameters ``h`` =
            ``{"learning_rate": ..., <other axes>: ...}`` as scalar arrays (axes that are neither config fields
            nor task hyperparameters are passed to it; see ``jnn.train.optimizers.from_hyperparams``).
        callbacks: ``jnn.Callback`` objects (see ``jnn.train.callbacks``): ``on_epoch_end`` runs per
            member and epoch with ``logs["member"]``; a True return stops that member after that epoch. At
            most one ``jnn.Progress`` (default ``Progress()``), shown per shape group: its bar counts
            the members still running, its lines (``log_every=k``) too; at most one ``jnn.SweepFolder``
            (the sweep's folder: lock, checkpoints, resume).
        combine: how the list axes make members (``jnn.axes``): ``"grid"`` (default), every combination of
            their values (``keep_prob=[0.7, 0.9], seed=[0, 1, 2]``: 6 members); ``"zip"``, the lists paired one to
            one (all the same length: 3 members for ``keep_prob=[0.5, 0.7, 0.9], seed=[0, 1, 2]``). Axes from
            ``grid`` or ``zipped`` move together under either rule.
        strategy: how the members run (``jnn.train.strategy``): ``"programs"``, each member its own fit's
            program, the members side by side in ``workers`` threads and on ``devices``: each member bit for bit
            its own fit; ``"stacked"``, the members in ``jax.vmap``-ed batches (a stopped member leaves the batch,
            ``jnn.train.repacking``, except with a ``jnn.SweepFolder``), the member axis sharded over
            ``devices``: each equal to its fit to rounding (``SweepResult.refit`` gives its fit's bits).
            None: ``"programs"`` when jax runs on the CPU, else ``"stacked"``. A sweep folder records it and a
            resume must use the same.
        workers: ``"programs"``'s threads (None: the cores this process may use on a CPU, else the number of
            devices); any number gives the same bits.
        devices: the devices the members spread over: None (every local device of the default backend), a count
            (the first ``n``) or a list of ``jax.Device``; member ``i`` of ``"programs"`` runs on
            ``devices[i % n]``. Each member's device is recorded (``SweepResult.devices``, ``sweep.json``).
        cluster: run the members' calls on a Ray cluster (``jnn.cluster``, ``strategy="programs"``): ``"ray"``
            (the Ray this process is connected to) or its address; the sweep's folder, callbacks and scheduler stay
            in this process, and ``workers`` (default: the cluster's CPUs) calls run at once.
        samples: a random search of N members: every axis given as a distribution (``uniform``,
            ``loguniform``, ``choice``, ``randint``) is drawn N times, a list axis holds N values;
            the space is recorded in ``SweepResult.search`` and the sweep folder (see ``jnn.search``).
        search_seed: the random search's seed (the same seed draws the same members).
        sampler: ``"random"`` (default: every member drawn at once) or ``"tpe"``: Optuna's TPE asks the members in
            rounds, each round a sweep whose results it is told (``jnn.tpe``; ``pip install 'jnn[optuna]'``;
            no sweep folder).
        **axes: ``seed``, ``learning_rate`` and the task's hyperparameters (the MLP: ``hidden``, ``l2``,
            ``keep_prob``, ``batch_size``), each a list of values (combined by ``combine``), or with ``samples`` a
            distribution.

    Returns:
        A ``SweepResult``; ``result.best()`` picks the member by its monitored validation metric.

    Raises:
        ValueError, TypeError: bad axes or values (naming the member), or a bad config, task or data.
    """
    config = _check_args(config, train, val, test)
    replaced = [n for n in ("repack", "exact") if n in axes]
    if replaced:
        raise TypeError(f"sweep({replaced[0]}=...) is replaced by strategy=: 'programs' (each member its own fit's "
                        "program, bit for bit its fit; was exact=True or workers >= 2) or 'stacked' (vmapped "
                        "batches, re-packed as members stop; was workers=1)")  # fmt: skip
    if check_sampler(sampler, samples) == "tpe":
        return _tpe(train, config, axes, samples, search_seed, combine, callbacks,
                    dict(task=task, val=val, test=test, class_weight=class_weight, optimizer=optimizer,
                         strategy=strategy, workers=workers, devices=devices, cluster=cluster))  # fmt: skip
    axes, search = draw(axes, samples, search_seed)
    axes = combine_axes(axes, combine)
    if search is not None:
        search = {**search, "combine": combine}
    strategy = check_strategy(strategy)
    devices = local_devices(devices)
    if cluster is not None and strategy != "programs":
        raise ValueError(f"cluster= runs each member's own program on the cluster's nodes: strategy='programs'; got "
                         f"strategy={strategy!r}")  # fmt: skip
    if cluster is not None and isinstance(train.x, RowSource):
        raise ValueError("cluster= ships the members' epoch arrays to the cluster; data streamed from disk "
                         "(a RowSource) cannot go: load it into memory")  # fmt: skip
    on_cluster = None if cluster is None else connect(cluster)
    if workers is not None:
        V.check_int("workers", workers, low=1, high=1024)
        if strategy != "programs" and workers != 1:
            raise ValueError(f"workers is the threads of strategy='programs'; strategy={strategy!r} runs one batched "
                             f"program at a time: leave workers out (got workers={workers!r})")  # fmt: skip
    if workers is None:
        workers = on_cluster or (default_workers() if jax.default_backend() == "cpu" else len(devices))
    workers = workers if strategy == "programs" else 1
    given = check_callbacks(callbacks)
    wrong = [i for i, cb in enumerate(given) if isinstance(cb, RunStore)]
    if wrong:
        raise TypeError(f"callbacks[{wrong[0]}] is a {type(given[wrong[0]]).__name__}, which keeps one run (jnn.fit); "
                        "a sweep keeps its members in a jnn.SweepFolder")  # fmt: skip
    report = at_most_one(given, Progress)
    report = Progress() if report is None else report
    store = at_most_one(given, SweepStore)
    others = tuple(cb for cb in given if cb is not report and cb is not store)
    cbs = CallbackList(((store,) if store is not None else ()) + others)  # the report is started per shape group
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation) and not callable(optimizer):
        raise TypeError(
            "optimizer must be None, an optax.GradientTransformation or a function of the member's "
            f"hyperparameters returning one; got {type(optimizer).__name__}"
        )
    builder = optimizer if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation) else None
    model = check_model(task)
    members = members_of(config, axes, model, optimizer_axes=builder is not None)
    extra = tuple(n for n in axes if n not in _known_axes(model))
    if optimizer is None and config.lr_schedule != "constant" and "learning_rate" in axes:
        raise ValueError(
            f"a learning_rate axis needs lr_schedule='constant' (each member's schedule would be compiled "
            f"separately); got lr_schedule={config.lr_schedule!r}"
        )
    # Members grouped by shape (hidden widths, batch size): one vmapped program per group, all checked first.
    groups = [_Group(g, members, config, train, val, optimizer, extra, "learning_rate" in axes)
              for g in _shape_groups(members)]  # fmt: skip
    inputs = {"train": train, "val": val, "class_weight": class_weight, "optimizer": optimizer, "extra": extra,
              "lr_axis": "learning_rate" in axes}  # fmt: skip
    t0 = time.perf_counter()
    records = [{k: [] for k in groups[0].keys} for _ in members]
    plan = Plan(strategy, workers, tuple(devices), repack=store is None, cluster=cluster)
    if store is not None:  # takes the folder (its lock): from here on, train_abort or train_end releases it
        store.stateful = tuple(cb for cb in others if callable(getattr(cb, "state_dict", None)))
        kept = [cb.settings() for cb in store.stateful if isinstance(cb, SuccessiveHalving)]
        store.open(_sweep_meta(config, axes, groups, len(members), plan, search, kept), config, data=(train, val))
    if cbs:
        cbs.train_begin(RunInfo(config, groups[0].keys, len(members), 0, config.max_epochs,
                                {**config.to_dict(), **{f"axis.{k}": list(v) for k, v in axes.items()}},
                                cbs.cuts()))  # fmt: skip
    try:
        result, halt = _sweep_groups(groups, members, records, config, model, axes, train, test, class_weight, plan,
                                     report, cbs, t0, store)  # fmt: skip
    except BaseException as err:
        cbs.train_abort(err)
        raise
    result = dataclasses.replace(result, inputs=inputs, search=search)
    cbs.train_end(result)
    if halt is not None:
        raise Interrupted(result, halt)
    return result


def _tpe(train, config, axes, samples, search_seed, combine, callbacks, kw) -> SweepResult:
    """``sweep(..., sampler="tpe")``: rounds of members asked of Optuna's TPE, each round a sweep (see
    ``jnn.tpe``)."""
    if any(isinstance(cb, SweepStore) for cb in check_callbacks(callbacks)):
        raise ValueError("sampler='tpe' trains its rounds as sweeps of their own and keeps no sweep folder; leave "
                         "jnn.SweepFolder out (or use the random sampler)")  # fmt: skip
    seed = V.check_int("search_seed", search_seed, low=0, high=2**32 - 1)
    run = lambda members: sweep(train, config, callbacks=callbacks, combine="zip", **kw, **members)  # noqa: E731
    res, asked = tpe_sweep(run, axes, samples=samples, search_seed=seed, how=combine)
    record = {"space": space_record(axes), "samples": samples, "search_seed": seed, "combine": combine,
              "sampler": "tpe", **asked}  # fmt: skip
    return dataclasses.replace(res, search=record)


def _member_descriptions(groups, m: int) -> list[dict]:
    """Each member's model description (``describe``), in member order, from the shape groups."""
    described = [None] * m
    for g in groups:
        for i, d in zip(g.index, g.descriptions):
            described[i] = d
    return described


def _sweep_meta(config: TrainConfig, axes: dict, groups, m: int, plan: Plan, search: dict | None = None,
                schedulers=()) -> dict:  # fmt: skip
    """What a sweep records of itself (a resumed sweep must match it): the config, the axes, each member's model,
    the strategy, threads and devices, the members of each shape group, and its schedulers' settings."""
    plain = {k: [list(v) if isinstance(v, tuple) else v for v in vals] for k, vals in axes.items()}
    return {"config": config.to_dict(), "config_hash": config.hash(), "axes": plain,
            "members_model": _member_descriptions(groups, m), "strategy": plan.strategy, "workers": plan.workers,
            "devices": [label(d) for d in plan.devices],
            "groups": [[int(i) for i in g.index] for g in groups],
            **({"search": search} if search else {}),
            **({"schedulers": list(schedulers)} if schedulers else {})}  # fmt: skip


def _sweep_groups(groups, members, records, config, model, axes, train, test, class_weight, plan: Plan, report, cbs,
                  t0, store=None):  # fmt: skip
    """Train the shape groups in turn as ``plan`` says (a group kept by ``store`` goes on from there) and gather
    the result: ``(SweepResult, halt)``."""
    halt, epoch_seconds, pack_sizes = None, [], []
    for n, g in enumerate(groups):
        if report.log_every and len(groups) > 1:
            report.say(f"shape group {n + 1}/{len(groups)}: {g.label} ({len(g.index)} members)")
        if halt is None:
            mine = [records[i] for i in g.index]
            caller = g.caller(plan, cbs)
            try:
                state, data = g.initial(class_weight, warm=getattr(caller, "warm", None))
                kept = None if store is None else store.restore(n, state, g.keys)
                if kept is not None:  # a resumed sweep: the group goes on from its checkpoint
                    state, histories = kept
                    for rec, old in zip(mine, histories):
                        rec.update({k: list(v) for k, v in old.items()})
                state, data = g.shard(plan, state), g.shard(plan, data)
                if store is not None:
                    store.group_begin(n, mine)
                halt = g.run(records, state, data, caller, report, cbs)
            finally:
                if hasattr(caller, "close"):
                    caller.close()
            if store is not None:
                store.save_group(n, g.state, mine)
            epoch_seconds += g.epoch_seconds
            pack_sizes += g.pack_sizes
        else:  # interrupted before this group started: its members stay at their first state
            g.state = g.initial(class_weight)[0]
    seconds = time.perf_counter() - t0
    rows = [None] * len(members)
    for g in groups:
        final = final_params(g.state, config.restores_best())
        tests = _test_metrics(g.ct, final, g.state.hyper, test)
        for row in _rows(g.members, g.state, config, tests, g.ct.metric_names, halt, index=g.index,
                         custom_optimizer=g.optimizer is not None):  # fmt: skip
            rows[row["member"]] = {**row, **_shape_columns(g.config, g.model, axes)}
        g.final = final
    params, state, stacked = _merged(groups, len(members))
    ct = groups[0].ct
    described = _member_descriptions(groups, len(members))
    sizes = [d.get("sizes") for d in described]
    widths = None if None in sizes else tuple(tuple(s) for s in sizes)  # the MLP's layer widths
    one = len(groups) == 1
    result = SweepResult([c for c, _, _ in members], rows, params, state, [History.from_records(r) for r in records],
                         config.monitored().monitor, seconds, tuple(epoch_seconds), config.monitored().direction,
                         widths[0] if one and widths else None, tuple(ct.hyper), int(train.x.shape[1]),
                         tuple(pack_sizes), widths, tuple(tuple(g.index) for g in groups), stacked,
                         tuple(m for _, _, m in members), tuple(described), plan.workers, strategy=plan.strategy,
                         devices=tuple(_member_devices(groups, plan, len(members))))  # fmt: skip
    return result, halt


def _member_devices(groups, plan: Plan, m: int) -> list[str]:
    """Each member's device (``"cpu:3"``), in member order: where its last call ran (read from the arrays it
    returned), or where the plan puts it for a member that ran no call in this process (a resumed, finished one)."""
    out = [None] * m
    for g in groups:
        for i, planned, seen in zip(g.index, g.devices(plan), g.ran_on):
            out[i] = seen if isinstance(seen, str) else label(planned if seen is None else seen)
    return out


def _shape_groups(members) -> list[list[int]]:
    """Member indices grouped by the fields that change the program's shapes (the MLP's widths, the batch size), in
    order of appearance."""
    groups: dict = {}
    for i, (c, _, m) in enumerate(members):
        groups.setdefault((shape_key(m), c.batch_size), []).append(i)
    return list(groups.values())


def _shape_columns(config: TrainConfig, model, axes: dict) -> dict:
    """The table columns of the shape axes that vary in this sweep (``hidden``: an MLP's, ``"64,64"``)."""
    out = {}
    if "hidden" in axes:
        out["hidden"] = ",".join(str(h) for h in model.hidden) or "none"
    if "batch_size" in axes:
        out["batch_size"] = config.batch_size
    return out


class _Group:
    """The members of a sweep that share their shapes: checked on creation, trained by ``run``.

    ``optimizer``: None (the config's), one transformation, or a function of hyperparameters (``extra``: the
    axes passed to it besides ``learning_rate``); ``lr_axis``: the members' learning rates differ.
    """

    def __init__(self, index, members, config, train, val, optimizer, extra, lr_axis):
        self.index = index
        self.members = [members[i] for i in index]
        first, _, self.model = self.members[0]
        self.config = TrainConfig.from_dict({**config.to_dict(), "batch_size": first.batch_size})
        self.label = f"{shape_label(self.model)}batch {first.batch_size}"
        self.splits = [prepare_data(train, c, val) for c, _, _ in self.members]
        self.optimizer, self.extra, self.lr_axis = optimizer, tuple(extra), lr_axis
        self.tx = None
        hypers = [h for _, h, _ in self.members]
        self.ct = checked_task(self.model, self.config, *self.splits[0], val, hypers=hypers)
        self.tx = self.member_tx(*self.members[0][:2])  # its update serves every member (one compile)
        held = sum(_nbytes(ds) for split in self.splits for ds in split)  # the members' splits, held stacked
        check_memory(
            self.ct, self.tx, members=len(self.members), data_bytes=held, config=self.config
        )  # before anything is allocated
        abstract = jax.eval_shape(self.ct.task.init, jax.random.key(0))
        has_lr = has_learning_rate(self.tx, abstract)
        if isinstance(optimizer, optax.GradientTransformation) and lr_axis and not has_lr:
            raise ValueError(
                "a learning_rate axis needs the optimizer's learning rate as state: build it with "
                "optax.inject_hyperparams, e.g. optax.chain(optax.clip_by_global_norm(1.0), "
                "optax.inject_hyperparams(optax.sgd)(learning_rate=0.1)), or pass a function of the "
                "hyperparameters (optimizer=lambda h: ...)"
            )
        self.keys = self.ct.history_keys(has_lr)
        self.descriptions = [m.describe(self.ct, abstract) for _, _, m in self.members]
        self.state, self.epoch_seconds, self.pack_sizes, self.final = None, [], [], None
        self.ran_on = [None] * len(self.members)  # the device each member's last call ran on (see run)

    def member_tx(self, c: TrainConfig, hyper: dict):
        """The optimiser of one member (built from its hyperparameters for a function; else the group's)."""
        if getattr(self, "tx", None) is not None and not callable(self.optimizer):
            return self.tx
        if self.optimizer is None:
            return self.config.make_optimizer(self.config.steps_per_epoch(len(self.splits[0][0])))
        if isinstance(self.optimizer, optax.GradientTransformation):
            return self.config.with_average(self.optimizer)
        values = {"learning_rate": c.learning_rate, **{n: hyper[n] for n in self.extra}}
        tx = from_hyperparams(self.optimizer, values)
        try:
            jax.eval_shape(tx.init, jax.eval_shape(self.ct.task.init, jax.random.key(0)))
        except Exception as err:
            raise TypeError(
                f"optimizer({{{', '.join(values)}}}) must return an optax.GradientTransformation "
                f"whose init takes the params; it failed with {type(err).__name__}: {err}"
            ) from None
        return self.config.with_average(tx)

    def initial(self, class_weight, warm=None):
        """The group's first states and epoch arrays, stacked (see ``_stacked``; ``warm``)."""
        return _stacked(self, class_weight, warm)

    def devices(self, plan: Plan) -> list:
        """The device each of the group's members runs on: ``"programs"`` member ``j`` on ``devices[j % n]``;
        ``"stacked"`` the members sharded in equal blocks over ``jnn.train.strategy.stacked_devices``."""
        k = len(self.members)
        if plan.strategy == "programs":
            return [plan.devices[j % len(plan.devices)] for j in range(k)]
        used = stacked_devices(list(plan.devices), k)
        return [used[j // (k // len(used))] for j in range(k)]

    def shard(self, plan: Plan, tree):
        """``"stacked"`` over several devices: ``tree`` (stacked state or epoch arrays) with its member axis
        sharded over them; else ``tree`` as it is."""
        used = stacked_devices(list(plan.devices), len(self.members))
        if plan.strategy != "stacked" or len(used) == 1:
            return tree
        sharding = NamedSharding(Mesh(np.array(used), ("members",)), PartitionSpec("members"))
        return jax.tree.map(lambda a: jax.device_put(a, sharding) if getattr(a, "ndim", 0) else a, tree)

    def caller(self, plan: Plan, cbs=None):
        """The caller that trains the group's members (see ``run``): ``"programs"``, a
        ``jnn.train.member_threads.MemberThreads`` running each member's own program in threads on its
        device; ``"stacked"``, a ``jnn.train.repacking.PackedCaller`` of one vmapped batch (re-packed as
        members stop when ``plan.repack`` and the batch is on one device)."""
        workers = plan.workers
        ct, config = self.ct, self.config
        n_train = len(self.splits[0][0])
        tx_key = optimizer_key(config, config.steps_per_epoch(n_train), self.optimizer, self.extra)
        has_val = self.splits[0][1] is not None
        threads = plan.strategy == "programs"
        streamed = isinstance(self.splits[0][0].x, RowSource)
        if streamed:  # the members' minibatches are read from the source
            spec = program_spec(ct, config, self.tx, tx_key, n_train=n_train, has_val=has_val, keys=self.keys,
                                members=not threads, check_finite=config.check_finite)  # fmt: skip
            source = _source_rows(self.splits[0][0].x)[0]
            inner = StreamCaller(spec, fixed=config.epochs_per_call, source=None if threads else source)
        else:
            budget = epoch_module.NOISE_UP_FRONT_MAX // (1 if threads else len(self.members))
            spec = dict(ct=ct, config=config, tx=self.tx, tx_key=tx_key, n_train=n_train, has_val=has_val,
                        keys=self.keys, members=not threads, keep_input=bool(cbs) and cbs.can_stop(),
                        noise_budget=budget)  # fmt: skip
            inner = compiled_caller(**spec)
        if threads and plan.cluster is not None:  # the same program, built on the cluster's nodes from its spec
            return RayMembers(inner, spec, len(self.members), workers=workers)
        if threads:
            member_data = (lambda data, i: _streamed_member(source, data, i)) if streamed else None
            devices = self.devices(plan) if len(plan.devices) > 1 else None
            return MemberThreads(inner, len(self.members), workers=workers, member_data=member_data, devices=devices)
        one = len(stacked_devices(list(plan.devices), len(self.members))) == 1
        return PackedCaller(inner, len(self.members), enabled=plan.repack and one)

    def run(self, records: list, state, data, caller, report, cbs=None):
        """Train the group's members from the stacked ``state`` (their first state, or a resumed sweep's) on the
        stacked epoch arrays ``data`` (see ``initial``) through ``caller`` (see ``caller``; closed here);
        their records are filled in place. Returns the halt (None: all stopped)."""
        mine = [records[i] for i in self.index]
        report.start(self.config.max_epochs, 0, len(self.members), self.keys, None)
        try:
            self.state, seconds, halt = run_epochs(caller, state, data, keys=self.keys,
                                                   max_epochs=self.config.max_epochs, records=mine, report=report,
                                                   callbacks=cbs, labels=self.index)  # fmt: skip
        finally:
            report.close()
        self.epoch_seconds, self.pack_sizes = list(seconds), list(caller.sizes)
        self.ran_on = _ran_on(caller, self.state, len(self.members))
        return halt


def _nbytes(ds) -> int:
    """The bytes a dataset's arrays hold in memory (0 for None; a streamed input counts its row indices)."""
    if ds is None:
        return 0
    x = ds.x
    held = len(x) * 4 if isinstance(x, RowSource) else getattr(x, "nbytes", 0)
    return int(held) + int(getattr(ds.y, "nbytes", 0))


def _ran_on(caller, state, k: int) -> list:
    """The device each of ``k`` members ran on: a ``MemberThreads``'s record of its calls, or the devices that
    hold each member's row of the stacked ``state`` (None where unknown)."""
    if isinstance(caller, MemberThreads):
        return [caller.ran_on.get(j) for j in range(k)]
    leaf = jax.tree.leaves(state)[0]
    out = [None] * k
    for device, index in leaf.sharding.devices_indices_map(leaf.shape).items():
        for j in range(k)[index[0]]:
            out[j] = device if out[j] is None else out[j]
    return out


def _fit_optimizer(optimizer, c: TrainConfig, hyper: dict, extra, lr_axis: bool):
    """What ``fit`` takes as the optimizer of a sweep member: None (the config's), the one transformation, or the
    function's transformation for the member's hyperparameters."""
    if optimizer is None or isinstance(optimizer, optax.GradientTransformation):
        if optimizer is not None and lr_axis:
            raise ValueError("a sweep over learning_rate with one optax object cannot train a member through fit "
                             "(refit): its rate is set in the vmapped state; give a function of the "
                             "hyperparameters instead (optimizer=lambda h: ...)")  # fmt: skip
        return optimizer
    return from_hyperparams(optimizer, {"learning_rate": c.learning_rate, **{n: hyper[n] for n in extra}})


def _merged(groups, m: int):
    """``(params, state, stacked)`` of all members: stacked on a leading member axis when every member has the same
    shapes (one group, or groups that differ only in batch size), else a list of per-member params and a
    list of per-group stacked states."""
    if len(groups) == 1:
        return groups[0].final, groups[0].state, True
    per_member = [None] * m
    for g in groups:
        for j, i in enumerate(g.index):
            per_member[i] = jax.tree.map(lambda a, j=j: a[j], g.final)
    same = all(
        jax.tree.structure(p) == jax.tree.structure(per_member[0])
        and all(
            a.shape == b.shape and a.dtype == b.dtype
            for a, b in zip(jax.tree.leaves(p), jax.tree.leaves(per_member[0]))
        )
        for p in per_member
    )
    if not same:
        return per_member, [g.state for g in groups], False
    order = [i for g in groups for i in g.index]
    inverse = jnp.asarray(np.argsort(order))
    cat = lambda *a: jnp.concatenate(a)[inverse]
    return jax.tree.map(lambda *a: jnp.stack(a), *per_member), jax.tree.map(cat, *[g.state for g in groups]), True


def _check_args(config, train, val, test) -> TrainConfig:
    config = TrainConfig() if config is None else config
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a jnn.TrainConfig; got {type(config).__name__}")
    for name, ds in (("train", train), ("val", val), ("test", test)):
        if not isinstance(ds, Dataset) and (name == "train" or ds is not None):
            raise TypeError(
                f"{name} must be a jnn.data.Dataset{'' if name == 'train' else ' or None'}; got {type(ds).__name__}"
            )
    for name, ds in (("val", val), ("test", test)):
        if ds is not None and (ds.x.shape[1], ds.y.shape[1:], ds.y.dtype.kind) != (
            train.x.shape[1], train.y.shape[1:], train.y.dtype.kind):  # fmt: skip
            raise ValueError(f"{name} must be data like train: {train.x.shape[1]} features and targets "
                             f"{train.y.dtype} {train.y.shape[1:]}; got {ds.x.shape[1]} features and targets "
                             f"{ds.y.dtype} {ds.y.shape[1:]}")  # fmt: skip
    return config


def _stacked(group: _Group, class_weight, warm=None):
    """A group's first states and epoch arrays, stacked on a leading member axis. ``warm(state, data)``, if given,
    is called with the first member's state and epoch arrays as soon as they are built (the caller compiles its
    programs in the background meanwhile; see ``jnn.train.member_threads.MemberThreads.warm``)."""
    ct, states = group.ct, []
    data = [_in_memory(epoch_arrays(f, v, class_weight)) for f, v in group.splits]
    for i, (c, hyper, _) in enumerate(group.members):
        keys = Keys.from_seed(c.seed, c.prng_impl)
        task_hyper = {k: v for k, v in hyper.items() if k not in group.extra}
        s = initial_state(ct, c, group.member_tx(c, hyper), ct.task.init(keys.init), keys, task_hyper)
        if group.optimizer is None or (group.lr_axis and isinstance(group.optimizer, optax.GradientTransformation)):
            set_learning_rate(s.opt_state, c.learning_rate)
        states.append(s)
        if i == 0 and warm is not None:
            warm(s, data[0])
    first = jax.tree.structure(states[0])
    for i, s in enumerate(states):
        if jax.tree.structure(s) != first:
            raise ValueError(
                f"sweep member {group.index[i]}: its optimizer state has another structure than member "
                f"{group.index[0]}'s; optimizer(h) must build the same chain for every member"
            )
    return stack_members(states), stack_members(data)


def _streamed_member(source: RowSource, data: epoch_module.EpochData, i: int):
    """Member ``i``'s data for its own streamed program (``jnn.train.streaming.StreamCaller.prepare``) from a
    sweep's stacked epoch arrays, whose ``x`` holds each member's rows of ``source``."""
    one = jax.tree.map(lambda a: np.asarray(a[i]), jax.device_get(data))
    return StreamCaller.prepare(one._replace(x=RowView(source, one.x)))


def _source_rows(x: RowSource) -> tuple[RowSource, np.ndarray]:
    """``(source, rows)``: the row source a member's training inputs come from and its rows of it."""
    if isinstance(x, RowView):
        return x.base, x.rows
    return x, np.arange(len(x))


def _in_memory(data):
    """A member's epoch arrays as arrays: training inputs from a row source become its row indices (the minibatches
    are read when trained, ``jnn.train.streaming``), and validation inputs from one are read."""
    if not isinstance(data.x, RowSource):
        return data
    return data._replace(x=_source_rows(data.x)[1].astype(np.int32), x_val=in_memory(data.x_val))


def _test_metrics(ct, final, hyper, test) -> dict:
    """``{key: [M]}`` test loss and metrics of every member (empty without a test set)."""
    if test is None:
        return {}
    ev = jax.jit(jax.vmap(make_eval(ct), in_axes=(0, None, None, None, 0)))
    w = None if test.sample_weight is None else jnp.asarray(test.sample_weight)
    return {k: np.asarray(v) for k, v in ev(final, jnp.asarray(test.x), jnp.asarray(test.y), w, hyper).items()}


def _rows(members, state, config: TrainConfig, tests: dict, metric_names, halt=None, index=None,
          custom_optimizer: bool = False) -> list[dict]:  # fmt: skip
    status, epochs, best_epoch, best_val = (
        np.asarray(a) for a in jax.device_get((state.status, state.epoch, state.early.best_epoch, state.early.best))
    )
    lr = learning_rate_of(state.opt_state) if custom_optimizer else None
    lr = None if lr is None else np.asarray(jax.device_get(lr))
    rows = []
    for i, (c, hyper, _) in enumerate(members):
        be = int(best_epoch[i])
        row = {
            "member": i if index is None else index[i],
            "seed": c.seed,
            "learning_rate": (None if lr is None else float(lr[i])) if custom_optimizer else c.learning_rate,
            **hyper,
            "stopped_by": "interrupted" if halt is not None and status[i] == 0 else STATUS[int(status[i])],
            "epochs": int(epochs[i]),
            "best_epoch": be + 1 if be >= 0 else None,
            "best_val": float(best_val[i]) if config.early_stopping is not None and be >= 0 else None,
        }
        for k in ("loss", *metric_names):
            row[f"test_{k}"] = float(tests[k][i]) if tests else None
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """The sweep table as aligned text."""
    cols = [k for k in rows[0] if k != "test_loss"]
    fmt = lambda v: "-" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    table = [cols] + [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(cols))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in table)


__all__ = ["AXES", "CONFIG_AXES", "SuccessiveHalving", "SweepResult", "choice", "format_table", "grid", "loguniform",
           "members_of", "randint", "sweep", "uniform", "zipped"]  # fmt: skip
