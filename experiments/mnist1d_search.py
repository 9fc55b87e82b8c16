"""MNIST-1D: a heterogeneous sweep searches for an MLP recipe; the pick is retrained on 3 fresh seeds.

Usage:
    python experiments/mnist1d_search.py [--out runs/mnist1d_search] [--per-shape 3] [--final-seeds 100,101,102]

The search is one ``jnn.sweep`` call over members of different shapes: every combination of hidden widths
(``--hiddens``, ';' between choices) and batch size (``--batch-sizes``) gets ``--per-shape`` members whose
keep_prob, λ and η are drawn at random (log-uniform for λ and η) from ``--search-seed``; members are
trained in shape groups (one compile each), with early stopping on the validation loss (10% of the
training data, patience ``--patience``). The pick is the member with the highest validation accuracy at its
restored epoch: **selection uses the validation split only, never the test set.** The picked recipe is
then trained from scratch with each of ``--final-seeds`` (seeds the search never used) and evaluated on the
test set. Target: mean test accuracy >= 0.75 (the MNIST-1D paper's MLP: 0.68; the jnn recipe of
``mnist1d_mlp.py``: 0.7433).

Writes results.json (every member's row, the pick, the final runs and the wall times) and search.png (each
member's validation accuracy, the pick marked) into --out.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from _common import accuracy_bars, out_dir, train_config, train_seeds, write_results
from _common import main as run_main

from jnn import Progress, datasets
from jnn.sweep import sweep

BASE = dict(optimizer="momentum", momentum=0.9, dropout_mode="inverted", val_fraction=0.1)
DEFAULTS = {
    "out": "runs/mnist1d_search",
    "hiddens": "256,256;512,512;256,256,256;1024",
    "batch_sizes": [64, 100],
    "per_shape": 3,
    "keep_probs": [0.5, 0.9],
    "l2s": [1e-5, 1e-3],
    "learning_rates": [0.005, 0.05],
    "patience": 30,
    "max_epochs": 300,
    "search_seed": 0,
    "final_seeds": [100, 101, 102],
    "target": 0.75,
}


def members(config: dict) -> dict:
    """The sweep axes: ``per_shape`` random (keep_prob, λ, η, seed) for every (hidden, batch size)."""
    hiddens = [tuple(int(w) for w in part.split(",") if w.strip()) for part in config["hiddens"].split(";")]
    for name in ("keep_probs", "l2s", "learning_rates"):
        lo, hi = config[name]
        if not 0 < lo <= hi:
            raise ValueError(f"{name} must be two numbers 0 < low <= high; got {config[name]}")
    if config["per_shape"] < 1:
        raise ValueError(f"per_shape must be >= 1; got {config['per_shape']}")
    rng = np.random.default_rng(config["search_seed"])
    log_uniform = lambda lo, hi: float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    axes = {k: [] for k in ("hidden", "batch_size", "keep_prob", "l2", "learning_rate", "seed")}
    for h in hiddens:
        for b in config["batch_sizes"]:
            for _ in range(config["per_shape"]):
                axes["hidden"].append(h)
                axes["batch_size"].append(int(b))
                axes["keep_prob"].append(round(float(rng.uniform(*config["keep_probs"])), 3))
                axes["l2"].append(float(f"{log_uniform(*config['l2s']):.3g}"))
                axes["learning_rate"].append(float(f"{log_uniform(*config['learning_rates']):.3g}"))
                axes["seed"].append(len(axes["seed"]))  # search seeds 0..M-1; the final seeds differ
    if set(axes["seed"]) & set(config["final_seeds"]):
        raise ValueError(f"final_seeds must be seeds the search did not use (0..{len(axes['seed']) - 1})")
    return axes


def picked_val_accuracy(res, i: int) -> float:
    """Member ``i``'s validation accuracy at the epoch whose params it kept (the best validation loss)."""
    row, h = res.rows[i], res.histories[i]
    epoch = row["best_epoch"] or len(h)
    return float(h["val_accuracy"][epoch - 1])


def run(config: dict) -> dict:
    """Search (one heterogeneous sweep, no test set), pick on validation accuracy, retrain the pick on the
    fresh seeds and evaluate them on the test set; write results.json, search.png and accuracy.png."""
    out = out_dir(config)
    axes = members(config)
    train, test = datasets.load("mnist1d")
    stopping = {"monitor": "val_loss", "patience": config["patience"]}
    base, net = train_config(BASE, early_stopping=stopping, max_epochs=config["max_epochs"])
    m = len(axes["seed"])
    groups = len(set(zip(axes["hidden"], axes["batch_size"])))
    print(f"search: {m} members in {groups} shape groups, selection on validation accuracy", flush=True)
    t0 = time.perf_counter()
    res = sweep(
        train, base, task=net, callbacks=[Progress(log_every=50)], combine="zip", **axes
    )  # no test set: the search never sees it; one value per member on every axis
    search_seconds = time.perf_counter() - t0
    val_acc = [picked_val_accuracy(res, i) for i in range(m)]
    best = int(np.argmax(val_acc))
    pick, picked_net = res.members[best], res.models[best]
    recipe = {**BASE, "hidden": list(picked_net.hidden), "batch_size": pick.batch_size,
              "keep_prob": picked_net.keep_prob, "l2": picked_net.l2, "learning_rate": pick.learning_rate,
              "early_stopping": stopping,
              "max_epochs": config["max_epochs"]}  # fmt: skip
    print(f"picked member {best}: {recipe} (validation accuracy {val_acc[best]:.4f}); search {search_seconds:.0f} s")
    t1 = time.perf_counter()
    final, _ = train_seeds("picked", train, test, recipe, config["final_seeds"])
    final_seconds = time.perf_counter() - t1
    results = {
        "task": "mnist1d",
        "target": config["target"],
        "search": {
            "members": m,
            "shape_groups": groups,
            "seconds": search_seconds,
            "rows": [{**r, "val_accuracy": v} for r, v in zip(res.rows, val_acc)],
            "pack_sizes": list(res.pack_sizes),
        },
        "picked": {"member": best, "val_accuracy": val_acc[best], "recipe": recipe},
        "recipes": {"picked": final},
        "final_seconds": final_seconds,
        "met_target": final["test_accuracy"]["mean"] >= config["target"],
    }
    _plot(out / "search.png", res, val_acc, best)
    accuracy_bars(out / "accuracy.png", results, title="MNIST-1D, searched MLP recipe, fresh seeds",
                  lines={f"target {config['target']}": config["target"], "paper MLP 0.68": 0.68},
                  ylim=(min(0.6, final["test_accuracy"]["min"] - 0.05), 0.85))  # fmt: skip
    write_results(out, results)
    return results


def _plot(path, res, val_acc, best: int) -> None:
    from jnn.app.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(10, 5))
    labels = [f"{r['hidden']}/b{r['batch_size']}" for r in res.rows]
    ax.bar(range(len(val_acc)), val_acc, color=["tab:green" if i == best else "tab:blue" for i in range(len(val_acc))])
    ax.set_xticks(range(len(val_acc)), labels, rotation=90, fontsize=6)
    ax.set_ylim(min(val_acc) - 0.02, max(val_acc) + 0.02)
    ax.set_ylabel("validation accuracy (restored epoch)")
    ax.set_title("MNIST-1D search: one member per bar (green: the pick)")
    fig.subplots_adjust(bottom=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(results: dict) -> str:
    """The search and the pick (first line), the fresh-seed test accuracy and the target (second line)."""
    s, p = results["recipes"]["picked"]["test_accuracy"], results["picked"]
    return (
        f"search: {results['search']['members']} members, {results['search']['shape_groups']} shape groups, "
        f"{results['search']['seconds']:.0f} s; picked member {p['member']} (validation accuracy "
        f"{p['val_accuracy']:.4f}): {p['recipe']}\n"
        f"picked recipe, fresh seeds: test accuracy {s['mean']:.4f} ± {s['std']:.4f} (min {s['min']:.4f}, max "
        f"{s['max']:.4f}); target {results['target']}: {'met' if results['met_target'] else 'NOT met'}; "
        f"retraining {results['final_seconds']:.0f} s"
    )


if __name__ == "__main__":
    sys.exit(run_main("mnist1d_search", __doc__.splitlines()[0], DEFAULTS, run, summarize))
