"""Random search on MNIST-1D: every member trained to its own stopping rule vs successive halving (ASHA's rule).

Usage:
    python benchmarks/search.py [--samples 64] [--rung-epochs 10] [--reduction-factor 3] [--out runs/bench_search]
    python benchmarks/search.py --quick    # a few members and epochs: checks the script, not the figures
    python benchmarks/search.py --ray-nodes 3 [--only-halving]   # also the halving search on a local Ray cluster

The space is ``experiments/mnist1d_search.py``'s: hidden widths one of 256,256 / 512,512 / 256,256,256 / 1024,
batch size 64 or 100, keep_prob uniform on [0.5, 0.9], λ and η log-uniform on [1e-5, 1e-3] and [0.005, 0.05], a
random seed; momentum SGD, inverted dropout, early stopping on the validation loss (10 % of the training data,
patience 30, at most 300 epochs). ``--samples`` members are drawn once (``search_seed`` 0) and trained twice by
``jnn.sweep.sweep``: to the end, and with ``jnn.sweep.SuccessiveHalving`` on the validation loss (first rung
``--rung-epochs``, η = ``--reduction-factor``). Each drawn recipe trains with ``--seeds-per-draw`` seeds (default
2: 32 recipes × 2 seeds = 64 members; 1: the seed drawn too); each search picks the recipe with the highest mean
validation accuracy at its members' kept epochs (never the test set); the picked recipe is trained again from
scratch with 3 seeds the search never used and scored on the test set, twice: as searched (early stopping on the
10 % validation split) and refit on all training rows, without a validation split, for as many updates as the
picked draw's members made to their kept epochs (scikit-learn's ``refit``; Goodfellow et al., *Deep Learning*,
algorithm 7.2).

Printed and written (results.json, table.md in --out): member-epochs, wall time and the picks' test accuracy
(mean over the fresh seeds) of both searches, as searched and refit, and the share of the full search's
member-epochs that halving used. Target: halving's refit pick ≥ 0.75 test accuracy with ≤ 40 % of the full
search's member-epochs.

With ``--ray-nodes N`` the halving search runs once more on a local Ray cluster of N nodes of one CPU each
(``ray.cluster_utils.Cluster``, 127.0.0.1 only; ``sweep(..., cluster="ray")``): its wall time against the local
search's (the overhead of shipping each call's state; on this machine the nodes share its cores) and whether its
rows and params are bit for bit the local search's.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time

import jax
import numpy as np
from _report import finish

import jnn
from jnn.sweep import SuccessiveHalving, choice, loguniform, randint, sweep, uniform

SPACE = dict(
    hidden=choice([(256, 256), (512, 512), (256, 256, 256), (1024,)]),
    batch_size=choice([64, 100]),
    keep_prob=uniform(0.5, 0.9),
    l2=loguniform(1e-5, 1e-3),
    learning_rate=loguniform(0.005, 0.05),
    seed=randint(1000, 10**6),  # the fresh seeds below are never drawn
)
RECIPE = dict(optimizer="momentum", momentum=0.9, val_fraction=0.1)
FRESH_SEEDS = (100, 101, 102)


def _val_accuracy(res, i: int) -> float:
    """Member ``i``'s validation accuracy at the epoch whose params it kept."""
    row, h = res.rows[i], res.histories[i]
    return float(h["val_accuracy"][(row["best_epoch"] or len(h)) - 1])


def _space(samples: int, seeds: int) -> tuple[dict, int]:
    """``(axes, draws)``: with ``seeds`` > 1, ``samples / seeds`` draws each trained with seeds 0, 1, ... (a grid
    axis beside the draws), else ``samples`` draws of everything, the seed included."""
    if seeds == 1:
        return SPACE, samples
    return {**{k: v for k, v in SPACE.items() if k != "seed"}, "seed": list(range(seeds))}, samples // seeds


def _search(train, config, samples: int, seeds: int, callbacks, **kw) -> dict:
    axes, draws = _space(samples, seeds)
    t0 = time.perf_counter()
    res = sweep(train, config, task=jnn.MLP(dropout_mode="inverted"), samples=draws, search_seed=0,
                callbacks=[*callbacks, jnn.Progress(bar=False, log_every=0)], **kw, **axes)  # fmt: skip
    seconds = time.perf_counter() - t0
    val = [_val_accuracy(res, i) for i in range(len(res.rows))]
    per_draw = [float(np.mean(val[j * seeds : (j + 1) * seeds])) for j in range(draws)]  # members: draw-major
    best = int(np.argmax(per_draw)) * seeds  # the picked draw's first member (its recipe)
    stopped = sum(r["stopped_by"] == "scheduler" for r in res.rows)
    return {"result": res, "seconds": seconds, "member_epochs": sum(r["epochs"] for r in res.rows),
            "stopped_by_scheduler": stopped, "picked": best,
            "picked_val_accuracy": per_draw[best // seeds]}  # fmt: skip


def _refit_epochs(res, k: int, seeds: int) -> int:
    """Epochs for the refit on all training rows: the same number of updates as the picked draw's members made to
    their kept epochs (Goodfellow et al., *Deep Learning*, algorithm 7.2), averaged over the members that ran to
    their own stopping rule (one stopped by the scheduler kept an epoch the rung chose, not the recipe)."""
    rows = res.rows[k : k + seeds]
    kept = [r["best_epoch"] or r["epochs"] for r in rows if r["stopped_by"] != "scheduler"] or [
        r["best_epoch"] or r["epochs"] for r in rows]  # fmt: skip
    val_fraction = res.members[k].val_fraction
    return max(1, round(statistics.mean(kept) * (1 - val_fraction)))


def _fresh_seeds(train, test, res, k: int, seeds: int) -> dict:
    """Member ``k``'s recipe trained again with each fresh seed and scored on the test set, twice: as searched
    (early stopping on the validation split) and refit on every training row for ``_refit_epochs`` epochs."""
    quiet = [jnn.Progress(bar=False, log_every=0)]
    epochs = _refit_epochs(res, k, seeds)
    accs, refit = [], []
    for seed in FRESH_SEEDS:
        c = jnn.TrainConfig.from_dict({**res.members[k].to_dict(), "seed": seed})
        r = jnn.fit(train, c, task=res.models[k], callbacks=quiet)
        accs.append(float(jnn.evaluate(r.params, test, res.models[k])["accuracy"]))
        c = dataclasses.replace(c, val_fraction=0.0, early_stopping=None, max_epochs=epochs)
        r = jnn.fit(train, c, task=res.models[k], callbacks=quiet)
        refit.append(float(jnn.evaluate(r.params, test, res.models[k])["accuracy"]))
    return {"seeds": list(FRESH_SEEDS), "test_accuracy": accs, "mean": statistics.mean(accs),
            "refit_epochs": epochs, "refit_test_accuracy": refit, "refit_mean": statistics.mean(refit)}  # fmt: skip


def _on_ray(a, train, config, local: dict) -> dict:
    """The halving search again on a local Ray cluster of ``a.ray_nodes`` one-CPU nodes (127.0.0.1 only)."""
    import os

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep 127.0.0.1 (see tests/test_cluster.py)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import ray
    from ray.cluster_utils import Cluster

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"node_ip_address": "127.0.0.1", "num_cpus": 1,
                                                            "include_dashboard": False})  # fmt: skip
    for _ in range(a.ray_nodes - 1):
        cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    start = time.perf_counter() - t0
    try:
        asha = SuccessiveHalving("val_loss", "min", min_epochs=a.rung_epochs, reduction_factor=a.reduction_factor)
        run = _search(train, config, a.samples, a.seeds_per_draw, [asha], cluster="ray")
        res, seconds = run["result"], run["seconds"]
    finally:
        ray.shutdown()
        cluster.shutdown()
    mine, theirs = (jax.tree.leaves(r.params if r.stacked else list(r.params)) for r in (res, local["result"]))
    same = res.rows == local["result"].rows and all(np.array_equal(x, y) for x, y in zip(mine, theirs))
    print(
        f"  halving on a {a.ray_nodes}-node Ray cluster: {seconds:.1f} s (cluster start {start:.1f} s), "
        f"{seconds / local['seconds']:.2f}x the local search; bit for bit the local search: {same}",
        flush=True,
    )
    return {"seconds": seconds, "cluster_start_seconds": start, "nodes": a.ray_nodes, "bitwise_local": same,
            "over_local": seconds / local["seconds"], "member_epochs": sum(r["epochs"] for r in res.rows),
            "nodes_used": sorted(set(res.devices))}  # fmt: skip


def _ray_table(runs: dict) -> str:
    r, local = runs["halving on Ray"], runs["halving"]
    return "\n".join([
        "| halving search | nodes | wall time (s) | vs local | member-epochs | bit for bit the local search |",
        "|---|---|---|---|---|---|",
        f"| local | 1 process | {local['seconds']:.1f} | 1.00x | {local['member_epochs']} | - |",
        f"| Ray cluster (127.0.0.1) | {r['nodes']} | {r['seconds']:.1f} | {r['over_local']:.2f}x | "
        f"{r['member_epochs']} | {r['bitwise_local']} |",
    ])  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=64)
    p.add_argument("--rung-epochs", type=int, default=10)
    p.add_argument("--reduction-factor", type=int, default=3)
    p.add_argument("--max-epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="4 members, 6 epochs, 1-epoch rungs: a smoke run")
    p.add_argument("--ray-nodes", type=int, default=0, help="also run the halving search on a local Ray cluster")
    p.add_argument("--only-halving", action="store_true", help="skip the full search (with --ray-nodes)")
    p.add_argument("--no-fresh", action="store_true", help="skip training the picks on fresh seeds")
    p.add_argument("--seeds-per-draw", type=int, default=2,
                   help="each drawn recipe trained with this many seeds (a grid axis); the pick is the recipe with "
                        "the best mean validation accuracy (default 2: 32 recipes x 2 seeds = 64 members)")  # fmt: skip
    p.add_argument("--out", default="runs/bench_search")
    a = p.parse_args(argv)
    if a.quick:
        a.samples, a.max_epochs, a.patience, a.rung_epochs = 4, 6, 2, 1
    bad = a.seeds_per_draw < 1 or a.samples % a.seeds_per_draw or a.samples // a.seeds_per_draw < 2
    if bad or a.rung_epochs < 1 or a.reduction_factor < 2 or a.max_epochs <= a.rung_epochs:
        print("search.py: error: --samples a multiple of --seeds-per-draw, with >= 2 draws; --rung-epochs >= 1, "
              "--reduction-factor >= 2 and --max-epochs above --rung-epochs", file=sys.stderr)  # fmt: skip
        return 2
    train, test = jnn.datasets.load("mnist1d")
    if a.quick:
        train, test = train.subset(np.arange(2000)), test.subset(np.arange(500))
    config = jnn.TrainConfig(**RECIPE, max_epochs=a.max_epochs, early_stopping=jnn.EarlyStopping(patience=a.patience))
    print(f"search benchmark: {a.samples} random members, MNIST-1D, max {a.max_epochs} epochs, device "
          f"{jax.devices()[0]}", flush=True)  # fmt: skip
    runs = {}
    for name in ("halving",) if a.only_halving else ("full", "halving"):
        asha = [SuccessiveHalving("val_loss", "min", min_epochs=a.rung_epochs, reduction_factor=a.reduction_factor)]
        runs[name] = _search(train, config, a.samples, a.seeds_per_draw, asha if name == "halving" else [])
        r = runs[name]
        print(f"  {name}: {r['member_epochs']} member-epochs, {r['seconds']:.1f} s, {r['stopped_by_scheduler']} "
              f"stopped by the scheduler; picked member {r['picked']} (val accuracy "
              f"{r['picked_val_accuracy']:.4f})", flush=True)  # fmt: skip
        r["devices_used"] = len(set(r["result"].devices))
        r["strategy"] = r["result"].strategy
        if a.no_fresh:
            r["fresh"] = {"seeds": [], "test_accuracy": [], "mean": float("nan")}
            continue
        r["fresh"] = _fresh_seeds(train, test, r["result"], r["picked"], a.seeds_per_draw)
        print(f"  {name}'s pick on fresh seeds {list(FRESH_SEEDS)}: test accuracy "
              + ", ".join(f"{v:.4f}" for v in r["fresh"]["test_accuracy"])
              + f" (mean {r['fresh']['mean']:.4f}); refit on all training rows for "
              + f"{r['fresh']['refit_epochs']} epochs: "
              + ", ".join(f"{v:.4f}" for v in r["fresh"]["refit_test_accuracy"])
              + f" (mean {r['fresh']['refit_mean']:.4f})", flush=True)  # fmt: skip
    if a.ray_nodes:
        runs["halving on Ray"] = _on_ray(a, train, config, runs["halving"])
    if a.only_halving:
        return finish(a.out, {"runs": {k: {n: v for n, v in r.items() if n != "result"} for k, r in runs.items()}},
                      _ray_table(runs))  # fmt: skip
    share = runs["halving"]["member_epochs"] / runs["full"]["member_epochs"]
    results = {
        "samples": a.samples, "max_epochs": a.max_epochs, "patience": a.patience, "rung_epochs": a.rung_epochs,
        "reduction_factor": a.reduction_factor, "device": str(jax.devices()[0]), "quick": a.quick,
        "seeds_per_draw": a.seeds_per_draw,
        "space": {k: v.to_dict() for k, v in SPACE.items()},
        "runs": {k: {**{n: v for n, v in r.items() if n != "result"}, "rows": r["result"].rows,
                     "picked_recipe": {**r["result"].members[r["picked"]].to_dict(),
                                       **r["result"].models[r["picked"]].to_dict()}}
                 for k, r in runs.items() if "result" in r},
        "ray": runs.get("halving on Ray"),
        "member_epoch_share": share,
        "met_target": runs["halving"]["fresh"].get("refit_mean", float("nan")) >= 0.75 and share <= 0.40,
    }  # fmt: skip
    table = "\n".join([
        "| search | member-epochs | wall time (s) | stopped at rungs | pick's test accuracy, as searched "
        "(3 fresh seeds) | pick refit on all training rows (3 fresh seeds) |",
        "|---|---|---|---|---|---|",
        *(f"| {k} | {r['member_epochs']} | {r['seconds']:.1f} | {r['stopped_by_scheduler']} | "
          + (f"{r['fresh']['mean']:.4f} ({', '.join(f'{v:.4f}' for v in r['fresh']['test_accuracy'])}) | "
             f"{r['fresh']['refit_mean']:.4f} ({', '.join(f'{v:.4f}' for v in r['fresh']['refit_test_accuracy'])}; "
             f"{r['fresh']['refit_epochs']} epochs) |"
             if r["fresh"]["test_accuracy"] else "- (--no-fresh) | - |")
          for k, r in runs.items() if "result" in r),
        "",
        f"halving used {100 * share:.1f} % of the full search's member-epochs (target ≤ 40 %, refit pick ≥ 0.75): "
        f"{'met' if results['met_target'] else 'not met'}",
        *([""] + _ray_table(runs).splitlines() if a.ray_nodes else []),
    ])  # fmt: skip
    return finish(a.out, results, table)


if __name__ == "__main__":
    sys.exit(main())
