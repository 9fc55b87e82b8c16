"""Digits (scikit-learn's 8×8 images) with an MLP: the jnn recipe, 3 seeds.

Usage:
    python experiments/digits_mlp.py [--out runs/digits_mlp] [--seeds 0,1,2]

Data: 1797 images, 75/25 stratified split (split seed 0, the same for every training seed), pixels
scaled to [0, 1]; 10% of the training part is held out for early stopping. Recipe: 256-256 relu MLP,
SGD with momentum 0.9 at 0.02, batch 32, L2 λ = 1e-4, inverted dropout keep_prob 0.8, early stopping
on the validation loss (patience 30), best params restored. Target: >= 0.975 test accuracy, mean of 3
seeds. Needs scikit-learn (``pip install 'jnn[digits]'``).

Writes results.json, accuracy.png and curves.png into --out.
"""

from __future__ import annotations

import sys

from _common import accuracy_bars, out_dir, summarize_recipes, train_seeds, write_results
from _common import main as run_main

from jnn import datasets
from jnn.app.plots import plot_history

# fmt: off
JNN = dict(hidden=[256, 256], optimizer="momentum", learning_rate=0.02, momentum=0.9, batch_size=32, l2=1e-4,
           keep_prob=0.8, early_stopping={"monitor": "val_loss", "patience": 30}, max_epochs=300,
           val_fraction=0.1)
# fmt: on
DEFAULTS = {"out": "runs/digits_mlp", "seeds": [0, 1, 2], "max_epochs": 300}


def run(config: dict) -> dict:
    """Train the recipe with each seed; return the test accuracies (mean, spread, per seed)."""
    out = out_dir(config)
    train, test = datasets.load("digits", seed=0)
    summary, first = train_seeds("jnn", train, test, JNN, config["seeds"], max_epochs=config["max_epochs"])
    results = {"task": "digits", "target": 0.975, "recipes": {"jnn": summary}}
    accuracy_bars(
        out / "accuracy.png", results, title="Digits MLP, test accuracy", lines={"target 0.975": 0.975}, ylim=(0.9, 1.0)
    )
    plot_history(
        first.history,
        out / "curves.png",
        best_epoch=first.best_epoch,
        stop_epoch=int(first.state.epoch) if first.stopped_by == "early_stopping" else None,
        title=f"Digits, jnn recipe, seed {config['seeds'][0]}",
    )
    write_results(out, results)
    return results


if __name__ == "__main__":
    sys.exit(run_main("digits_mlp", __doc__.splitlines()[0], DEFAULTS, run, summarize_recipes))
