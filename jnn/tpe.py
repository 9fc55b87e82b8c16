"""Optuna's TPE as a sweep's sampler: members asked in rounds, each round trained as one sweep and its results told.

``sweep(train, config, samples=32, sampler="tpe", search_seed=0, learning_rate=loguniform(1e-3, 0.3), ...)``
(needs ``pip install 'jnn[optuna]'``) asks Optuna's ``TPESampler(seed=search_seed)`` for members through the
ask/tell interface: a first round of ``startup`` members (TPE's random start, default 10), then rounds of ``batch``
members (default 8; ``constant_liar`` keeps the members of one round apart), until ``samples`` members. Each round
is one ``jnn.sweep.sweep`` call (all of its members at once, the round's strategy and devices); each member's
value is its monitored metric at its best epoch (``SweepResult.best``'s rule), told to Optuna as the trial's value
(a member stopped by a scheduler is told as pruned). A list axis beside the distributions is a grid axis: every
asked point trains with each of its values, and the point's value is their mean (seeds averaged).

The result is one ``jnn.sweep.SweepResult`` of all rounds' members in the order asked (members of a round in
its grid order); ``search`` records the space, the sampler, its seed and the rounds' sizes. A sweep folder is not
taken (each round is a sweep of its own); the same seed asks the same members when the rounds' results are the
same (a CPU sweep's ``"programs"`` members are bit for bit their fits).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jnn import _validate as V
from jnn.axes import Joint, combine
from jnn.search import Choice, Distribution, LogUniform, RandInt, Uniform

#: Members in TPE's random first round, and in each later round (defaults).
STARTUP, BATCH = 10, 8


def _suggest(trial, name: str, dist: Distribution):
    """The trial's value of one axis (a choice is asked by index: Optuna's categories are plain scalars)."""
    if isinstance(dist, Uniform):
        return trial.suggest_float(name, dist.low, dist.high)
    if isinstance(dist, LogUniform):
        return trial.suggest_float(name, dist.low, dist.high, log=True)
    if isinstance(dist, RandInt):
        return trial.suggest_int(name, int(dist.low), int(dist.high) - 1)
    if isinstance(dist, Choice):
        return dist.values[trial.suggest_categorical(name, list(range(len(dist.values))))]
    raise TypeError(f"axis {name!r}: the TPE sampler takes uniform, loguniform, randint and choice; got {dist!r}")


def tpe_sweep(run_round: Callable, axes: dict, *, samples: int, search_seed: int, how: str, startup: int = STARTUP,
              batch: int = BATCH):  # fmt: skip
    """Ask, train and tell in rounds: ``(merged result, {"rounds": sizes, "told": each point's value})`` (the value
    told, or ``"pruned"`` / ``"failed"``).

    Args:
        run_round: ``run_round(member_axes) -> SweepResult``: one sweep of the given members (``combine="zip"``).
        axes: ``{axis: Distribution or list}`` (at least one distribution).
        samples: asked points in all.
        search_seed: the sampler's seed.
        how: ``"grid"`` or ``"zip"``, how list axes combine with the asked points.
        startup, batch: the rounds' sizes.
    """
    try:
        import optuna
    except ImportError as err:
        raise ImportError("sampler='tpe' uses Optuna: pip install 'jnn[optuna]'") from err
    drawn = [n for n, v in axes.items() if isinstance(v, Distribution)]
    if not drawn:
        raise ValueError("sampler='tpe' draws members from distributions (jnn.sweep.uniform, ...); no axis is one")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=search_seed, n_startup_trials=startup, constant_liar=True)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    results, sizes, told, asked = [], [], [], 0
    while asked < samples:
        k = min(startup if asked == 0 else batch, samples - asked)
        trials = [study.ask() for _ in range(k)]
        block = object()
        points = {n: Joint([_suggest(t, n, axes[n]) for t in trials], block) for n in drawn}
        lists = {n: v for n, v in axes.items() if n not in drawn}
        if how == "zip":
            lists = {n: v[asked : asked + k] for n, v in lists.items()}
        members = combine({n: points[n] if n in points else lists[n] for n in axes}, how)
        res = run_round(members)
        per_point = len(res.rows) // k
        values, _ = res._ranked_values()
        sign = 1.0 if res.direction == "min" else -1.0
        for j, t in enumerate(trials):
            mine = range(j * per_point, (j + 1) * per_point)
            if any(res.rows[i]["stopped_by"] == "scheduler" for i in mine):
                study.tell(t, state=optuna.trial.TrialState.PRUNED)
                told.append("pruned")
                continue
            vals = [values[i] for i in mine]
            ok = all(v is not None and np.isfinite(v) for v in vals)
            study.tell(t, sign * float(np.mean(vals)) if ok else None,
                       state=None if ok else optuna.trial.TrialState.FAIL)  # fmt: skip
            told.append(float(np.mean(vals)) if ok else "failed")
        results.append(res)
        sizes.append(k)
        asked += k
    return merge(results), {"rounds": sizes, "told": told}


def merge(results: list):
    """One ``jnn.sweep.SweepResult`` of several sweeps' members, in order (members renumbered; params stacked
    when every member has the same shapes, else a list; ``state`` a list of the sweeps' states)."""
    first, offsets, rows, total = results[0], [], [], 0
    for r in results:
        offsets.append(total)
        rows += [{**row, "member": row["member"] + total} for row in r.rows]
        total += len(r.rows)
    params = [r.member_params(i) for r in results for i in range(len(r.rows))]
    leaves = [jax.tree.leaves(p) for p in params]
    same = all(jax.tree.structure(p) == jax.tree.structure(params[0]) for p in params) and all(
        [(a.shape, a.dtype) for a in ls] == [(a.shape, a.dtype) for a in leaves[0]] for ls in leaves
    )
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params) if same else params
    cat = lambda name: tuple(x for r in results for x in getattr(r, name))  # noqa: E731
    sizes = [r.member_sizes for r in results]
    return dataclasses.replace(
        first, members=[c for r in results for c in r.members], rows=rows, params=stacked,
        state=[r.state for r in results], histories=[h for r in results for h in r.histories],
        seconds=sum(r.seconds for r in results), epoch_seconds=cat("epoch_seconds"), pack_sizes=cat("pack_sizes"),
        member_sizes=None if None in sizes else tuple(s for ms in sizes for s in ms), stacked=same,
        groups=tuple(tuple(i + o for i in g) for r, o in zip(results, offsets) for g in r.groups),
        models=cat("models"), descriptions=cat("descriptions"), devices=cat("devices"),
        sizes=first.sizes if all(r.sizes == first.sizes for r in results) else None,
    )  # fmt: skip


def check_sampler(sampler, samples) -> str:
    """The sampler's name, checked: ``"random"`` (default) or ``"tpe"`` (with ``samples``)."""
    if sampler not in ("random", "tpe"):
        raise ValueError(f"sampler must be 'random' or 'tpe'; got {sampler!r}")
    if sampler == "tpe":
        if samples is None:
            raise ValueError("sampler='tpe' asks samples=N members from distributions; give samples=N")
        V.check_int("samples", samples, low=1, high=100_000)
    return sampler


__all__ = ["BATCH", "STARTUP", "check_sampler", "merge", "tpe_sweep"]
