"""The lecture's binary case: one sigmoid output and binary cross-entropy, on xor and moons.

Usage:
    python experiments/binary_xor.py [--out runs/binary_xor] [--datasets xor,moons]

The network ends in one logit z; the lecture's output is ŷ = σ(z) and its loss
−(y log ŷ + (1−y) log(1−ŷ)) (``loss="binary"``, computed from the logit). Recipe: 2-16-16-1 tanh MLP,
plain SGD (θ ← θ − η∇θ l, η = 0.3), batch 32, early stopping on the validation loss (patience 30).

Writes results.json and one decision-boundary PNG per data set (ŷ over the plane, the 0.5 contour,
the test points) into --out.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from _common import main as run_main
from _common import out_dir, train_config, write_results

from jnn import datasets, forward
from jnn.train import evaluate, fit

# fmt: off
RECIPE = dict(hidden=[16, 16], activation="tanh", loss="binary", optimizer="sgd", learning_rate=0.3, batch_size=32,
              l2=0.0, keep_prob=1.0, early_stopping={"monitor": "val_loss", "patience": 30}, max_epochs=400,
              val_fraction=0.1)
# fmt: on
DEFAULTS = {"out": "runs/binary_xor", "datasets": ["xor", "moons"], "max_epochs": 400, "seed": 0}


def run(config: dict) -> dict:
    """Train on each data set; return test accuracy and loss per set."""
    out = out_dir(config)
    results = {"datasets": {}}
    for name in config["datasets"]:
        if name not in ("xor", "moons"):
            raise ValueError(f"datasets must be among ['moons', 'xor'] (two-class sets); got {name!r}")
        train, test = datasets.load(name, seed=config["seed"])
        cfg, net = train_config(RECIPE, max_epochs=config["max_epochs"], seed=config["seed"])
        r = fit(train, cfg, task=net)
        m = evaluate(r.params, test, net)
        results["datasets"][name] = {
            "test_accuracy": m["accuracy"],
            "test_loss": m["loss"],
            "epochs": int(r.state.epoch),
            "best_epoch": r.best_epoch + 1,
            "stopped_by": r.stopped_by,
        }
        print(
            f"{name}: test accuracy {m['accuracy']:.4f} (BCE {m['loss']:.4f}) after {int(r.state.epoch)} epochs",
            flush=True,
        )
        _boundary(out / f"boundary_{name}.png", r.params, test, name, m["accuracy"])
    write_results(out, results)
    return results


def _boundary(path, params, test, name, acc):
    from jnn.app.plots import pyplot

    plt = pyplot()
    lo, hi = test.x.min(0) - 0.5, test.x.max(0) + 0.5
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 200), np.linspace(lo[1], hi[1], 200))
    grid = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], 1), jnp.float32)
    yhat = np.asarray(jax.nn.sigmoid(forward(params, grid, activation="tanh")[:, 0])).reshape(gx.shape)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    cs = ax.contourf(gx, gy, yhat, levels=20, cmap="RdBu_r", alpha=0.7)
    ax.contour(gx, gy, yhat, levels=[0.5], colors="k", linewidths=1.5)
    ax.scatter(test.x[:, 0], test.x[:, 1], c=test.y, cmap="RdBu_r", edgecolors="k", s=18)
    fig.colorbar(cs, ax=ax, label="ŷ = σ(z)")
    ax.set_title(f"{name}: boundary ŷ = 0.5 (black), test accuracy {acc:.3f}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(results: dict) -> str:
    """Test accuracy per data set."""
    return "; ".join(
        f"{k}: test accuracy {v['test_accuracy']:.4f} (BCE {v['test_loss']:.4f}, {v['epochs']} epochs)"
        for k, v in results["datasets"].items()
    )


if __name__ == "__main__":
    sys.exit(run_main("binary_xor", __doc__.splitlines()[0], DEFAULTS, run, summarize))
