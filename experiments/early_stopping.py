"""Early stopping on MNIST-1D: the validation curve with the stop epoch and the restored best epoch.

Usage:
    python experiments/early_stopping.py [--out runs/early_stopping] [--patience 15]

An MLP without regulariser (256-256 relu, SGD with momentum 0.9, η = 0.05, batch 100) overfits
MNIST-1D quickly; early stopping on the validation loss stops the run ``patience`` epochs after the
best epoch and restores that epoch's params. The same run is continued without early stopping to
``max_epochs`` for comparison, and repeated with early stopping on the validation accuracy: on
MNIST-1D the validation loss turns up (the net grows over-confident) while the accuracy still
improves, so the monitored metric decides where the run stops.

Writes results.json and early_stopping.png into --out.
"""

from __future__ import annotations

import sys

from _common import main as run_main
from _common import out_dir, train_config, write_results

from jnn import datasets
from jnn.app.plots import plot_history
from jnn.train import EarlyStopping, evaluate, fit

# fmt: off
RECIPE = dict(hidden=[256, 256], optimizer="momentum", learning_rate=0.05, momentum=0.9, batch_size=100, l2=0.0,
              keep_prob=1.0, val_fraction=0.1)
# fmt: on
DEFAULTS = {"out": "runs/early_stopping", "patience": 15, "max_epochs": 150, "seed": 0}


def run(config: dict) -> dict:
    """Train with and without early stopping; return stop/best epochs and test accuracies."""
    out = out_dir(config)
    train, test = datasets.load("mnist1d")
    on_loss = EarlyStopping("val_loss", patience=config["patience"])
    cfg, net = train_config(RECIPE, early_stopping=on_loss, max_epochs=config["max_epochs"], seed=config["seed"])
    r = fit(train, cfg, task=net)
    full_cfg, _ = train_config(RECIPE, early_stopping=None, max_epochs=config["max_epochs"], seed=config["seed"])
    full = fit(train, full_cfg, task=net)
    acc_cfg, _ = train_config(
        RECIPE,
        early_stopping=EarlyStopping("val_accuracy", patience=config["patience"]),
        max_epochs=config["max_epochs"],
        seed=config["seed"],
    )
    by_acc = fit(train, acc_cfg, task=net)
    results = {
        "patience": config["patience"],
        "stopped_by": r.stopped_by,
        "stop_epoch": int(r.state.epoch),
        "best_epoch": r.best_epoch + 1,
        "best_val_loss": min(r.history["val_loss"]),
        "test_accuracy_restored_best": evaluate(r.params, test, net)["accuracy"],
        "test_accuracy_at_stop": evaluate(r.state.params, test, net)["accuracy"],
        "test_accuracy_without_early_stopping": evaluate(full.params, test, net)["accuracy"],
        "epochs_without_early_stopping": int(full.state.epoch),
        "val_accuracy_monitor": {
            "stop_epoch": int(by_acc.state.epoch),
            "best_epoch": by_acc.best_epoch + 1,
            "test_accuracy_restored_best": evaluate(by_acc.params, test, net)["accuracy"],
        },
        "val_loss": r.history["val_loss"],
        "val_loss_without_early_stopping": full.history["val_loss"],
    }
    plot_history(
        full.history,
        out / "early_stopping.png",
        best_epoch=r.best_epoch,
        stop_epoch=int(r.state.epoch) if r.stopped_by == "early_stopping" else None,
        title=f"MNIST-1D without regulariser, trained {int(full.state.epoch)} epochs; early stopping "
        f"(patience {config['patience']}) stops at {int(r.state.epoch)}",
    )
    write_results(out, results)
    return results


def summarize(results: dict) -> str:
    """Stop and best epochs and the three test accuracies."""
    return (
        f"stopped by {results['stopped_by']} at epoch {results['stop_epoch']}, best epoch "
        f"{results['best_epoch']} (val loss {results['best_val_loss']:.4f}); test accuracy with the restored "
        f"best params {results['test_accuracy_restored_best']:.4f}, with the params at the stop "
        f"{results['test_accuracy_at_stop']:.4f}, after {results['epochs_without_early_stopping']} epochs "
        f"without early stopping {results['test_accuracy_without_early_stopping']:.4f}; monitoring val_accuracy "
        f"instead: stop at {results['val_accuracy_monitor']['stop_epoch']}, best epoch "
        f"{results['val_accuracy_monitor']['best_epoch']}, test accuracy "
        f"{results['val_accuracy_monitor']['test_accuracy_restored_best']:.4f}"
    )


if __name__ == "__main__":
    sys.exit(run_main("early_stopping", __doc__.splitlines()[0], DEFAULTS, run, summarize))
