"""L2 and dropout on MNIST-1D: sweeps of λ and of keep_prob showing the train/validation gap closing.

Usage:
    python experiments/regularization.py [--out runs/regularization] [--epochs 150]

Every run trains the same 256-256 relu MLP (SGD, momentum 0.9, η = 0.02, batch 100) for a fixed number
of epochs, without early stopping, so that only the regulariser changes. The λ sweep has no dropout;
the keep_prob sweep has no L2. For each run: training accuracy (evaluated without dropout), validation
and test accuracy, the gap train − validation, and ‖W‖² = Σ w² over the weight matrices. It checks
the lecture's "larger λ → smaller ‖W‖" (``norm_decreasing`` in results.json).

Writes results.json and regularization.png (accuracy vs λ, accuracy vs p, ‖W‖² vs λ) into --out.
"""

from __future__ import annotations

import sys

import jax.numpy as jnp
from _common import main as run_main
from _common import out_dir, train_config, write_results

from jnn import datasets
from jnn.train import evaluate, fit, prepare_data

# fmt: off
BASE = dict(hidden=[256, 256], optimizer="momentum", learning_rate=0.02, momentum=0.9, batch_size=100,
            early_stopping=None, val_fraction=0.1, l2=0.0, keep_prob=1.0)
# fmt: on
DEFAULTS = {
    "out": "runs/regularization",
    "epochs": 150,
    "lambdas": [0.0, 1e-4, 1e-3, 3e-3, 1e-2],
    "keep_probs": [1.0, 0.9, 0.8, 0.7, 0.5],
    "seed": 0,
}


def _one(train, test, **fields) -> dict:
    cfg, net = train_config(BASE, **fields)
    r = fit(train, cfg, task=net)
    fit_ds, val_ds = prepare_data(train, cfg)
    row = {
        "train_accuracy": evaluate(r.params, fit_ds, net)["accuracy"],
        "val_accuracy": evaluate(r.params, val_ds, net)["accuracy"],
        "test_accuracy": evaluate(r.params, test, net)["accuracy"],
        "weight_norm_sq": float(sum(jnp.sum(l["w"] ** 2) for l in r.params)),
    }
    row["gap"] = row["train_accuracy"] - row["val_accuracy"]
    return row


def run(config: dict) -> dict:
    """Run both sweeps; return one row per λ and per keep_prob."""
    out = out_dir(config)
    train, test = datasets.load("mnist1d")
    common = dict(max_epochs=config["epochs"], seed=config["seed"])
    results = {"epochs": config["epochs"], "l2": [], "keep_prob": []}
    for lam in config["lambdas"]:
        row = {"l2": lam, **_one(train, test, l2=lam, **common)}
        results["l2"].append(row)
        print(f"l2={lam:<7g} train {row['train_accuracy']:.4f} val {row['val_accuracy']:.4f} test "
              f"{row['test_accuracy']:.4f} gap {row['gap']:+.4f} |W|^2 {row['weight_norm_sq']:.1f}",
              flush=True)  # fmt: skip
    for p in config["keep_probs"]:
        row = {"keep_prob": p, **_one(train, test, keep_prob=p, **common)}
        results["keep_prob"].append(row)
        print(f"keep_prob={p:<4g} train {row['train_accuracy']:.4f} val {row['val_accuracy']:.4f} test "
              f"{row['test_accuracy']:.4f} gap {row['gap']:+.4f}", flush=True)  # fmt: skip
    norms = [r["weight_norm_sq"] for r in results["l2"]]
    results["norm_decreasing"] = all(a > b for a, b in zip(norms, norms[1:]))
    gaps_l2 = [r["gap"] for r in results["l2"]]
    gaps_p = [r["gap"] for r in results["keep_prob"]]
    results["gap_closes"] = {"l2": gaps_l2[-1] < gaps_l2[0], "keep_prob": gaps_p[-1] < gaps_p[0]}
    _plot(out, results)
    write_results(out, results)
    return results


def _plot(out, results):
    from jnn.app.plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    lams = [r["l2"] for r in results["l2"]]
    xs = list(range(len(lams)))
    for key, label in (("train_accuracy", "training"), ("val_accuracy", "validation"), ("test_accuracy", "test")):
        axes[0].plot(xs, [r[key] for r in results["l2"]], "o-", label=label)
        axes[1].plot(
            [r["keep_prob"] for r in results["keep_prob"]], [r[key] for r in results["keep_prob"]], "o-", label=label
        )
    axes[0].set_xticks(xs, [f"{v:g}" for v in lams])
    axes[0].set_xlabel("λ (L2 strength; no dropout)")
    axes[1].set_xlabel("keep_prob p (no L2)")
    axes[1].invert_xaxis()
    for ax in axes[:2]:
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_title("accuracy vs λ")
    axes[1].set_title("accuracy vs p (stronger dropout to the right)")
    axes[2].plot(xs, [r["weight_norm_sq"] for r in results["l2"]], "o-", color="tab:purple")
    axes[2].set_xticks(xs, [f"{v:g}" for v in lams])
    axes[2].set_yscale("log")
    axes[2].set_xlabel("λ")
    axes[2].set_ylabel("‖W‖² = Σ w²")
    axes[2].set_title("larger λ → smaller ‖W‖")
    axes[2].grid(alpha=0.3)
    fig.suptitle(f"MNIST-1D, 256-256 MLP, {results['epochs']} epochs, no early stopping")
    fig.tight_layout()
    fig.savefig(out / "regularization.png", dpi=110)
    plt.close(fig)


def summarize(results: dict) -> str:
    """The gaps at both ends of each sweep and the norm check."""
    l2, kp = results["l2"], results["keep_prob"]
    return (
        f"gap train-val: λ={l2[0]['l2']:g} {l2[0]['gap']:+.4f} -> λ={l2[-1]['l2']:g} {l2[-1]['gap']:+.4f}; "
        f"p={kp[0]['keep_prob']:g} {kp[0]['gap']:+.4f} -> p={kp[-1]['keep_prob']:g} {kp[-1]['gap']:+.4f}; "
        f"|W|^2 decreasing in λ: {results['norm_decreasing']}"
    )


if __name__ == "__main__":
    sys.exit(run_main("regularization", __doc__.splitlines()[0], DEFAULTS, run, summarize))
