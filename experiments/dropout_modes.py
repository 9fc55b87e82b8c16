"""Inverted vs classic dropout, trained the same way, side by side.

Usage:
    python experiments/dropout_modes.py [--out runs/dropout_modes] [--seeds 0,1,2] [--keep-prob 0.7]

Both modes train the same 256-256 relu MLP on MNIST-1D with the same seeds (so the same masks), the
same optimiser (SGD, momentum 0.9, η = 0.02, batch 100) and early stopping on the validation loss.
``inverted`` scales kept units by 1/p while training; ``classic`` (the lecture) keeps them unscaled
and multiplies by p at test time ("use the entire network with expected weights").

The expected-weight equivalence is checked three ways on the trained classic network:
1. test-time forward (activations × p) = plain forward with the outgoing weights × p (max |Δ logits|);
2. the mean over ``mc_samples`` dropout masks of the pre-activations of the second layer (which only
   the first hidden layer's mask touches) ≈ their test-time value, within 3 standard errors, for both
   modes. At the logits, after a second dropout layer and a relu, the rule is an approximation (the
   mean of a nonlinear function of the mask is not the function of the mean); its error is reported;
3. the classic net with weights W/p (hidden-to-next) at test time = the inverted net with weights W.

Writes results.json, accuracy.png and equivalence.png into --out.
"""

from __future__ import annotations

import sys

import jax
import jax.numpy as jnp
import numpy as np
from _common import accuracy_bars, out_dir, summarize_recipes, train_seeds, write_results
from _common import main as run_main

from jnn import Dropout, datasets, forward, forward_cache

# fmt: off
RECIPE = dict(hidden=[256, 256], optimizer="momentum", learning_rate=0.02, momentum=0.9, batch_size=100, l2=0.0,
              early_stopping={"monitor": "val_loss", "patience": 30}, max_epochs=300, val_fraction=0.1)
# fmt: on
DEFAULTS = {"out": "runs/dropout_modes", "seeds": [0, 1, 2], "keep_prob": 0.7, "max_epochs": 300, "mc_samples": 2000}


def _scale_outgoing(params, factor):
    """Multiply every weight matrix fed by a hidden layer (all but the first) by ``factor``."""
    return [params[0]] + [{"w": l["w"] * factor, "b": l["b"]} for l in params[1:]]


def _equivalence(params, mode, p, x, samples):
    d = Dropout(p, mode)
    test = forward_cache(params, x, dropout=d, train=False).zs
    keys = jax.random.split(jax.random.key(123), samples)
    draws = jax.vmap(lambda k: forward_cache(params, x, dropout=d, key=k, train=True).zs)(keys)
    z2, z2_test = draws[1], test[1]  # second-layer pre-activations: one dropout mask upstream
    mean, se = z2.mean(0), z2.std(0) / np.sqrt(samples)
    dev = jnp.abs(mean - z2_test)
    logit_dev = jnp.abs(draws[-1].mean(0) - test[-1])
    return {
        "z2_within_3se": float(jnp.mean(dev <= 3 * se + 1e-6)),
        "z2_max_abs_dev": float(dev.max()),
        "logits_mean_abs_dev": float(logit_dev.mean()),
        "logits_mean_abs": float(jnp.abs(test[-1]).mean()),
        "mc_mean": np.asarray(mean).ravel(),
        "test_value": np.asarray(z2_test).ravel(),
    }


def run(config: dict) -> dict:
    """Train both modes for every seed; check the expected-weight equivalence on the seed-0 nets."""
    out = out_dir(config)
    p = config["keep_prob"]
    train, test = datasets.load("mnist1d")
    results = {"keep_prob": p, "recipes": {}, "equivalence": {}}
    nets = {}
    for mode in ("inverted", "classic"):
        results["recipes"][mode], first = train_seeds(
            mode, train, test, RECIPE, config["seeds"], keep_prob=p, dropout_mode=mode, max_epochs=config["max_epochs"]
        )
        nets[mode] = first.params
    x = jnp.asarray(test.x[:64])
    classic = nets["classic"]
    plain_scaled = forward(_scale_outgoing(classic, p), x)
    eq = {
        "classic_test_vs_scaled_weights_max_abs": float(
            jnp.max(jnp.abs(forward(classic, x, dropout=Dropout(p, "classic"), train=False) - plain_scaled))
        )
    }
    inv_as_classic = _scale_outgoing(nets["inverted"], 1.0 / p)
    eq["inverted_W_vs_classic_W_over_p_max_abs"] = float(
        jnp.max(
            jnp.abs(
                forward(nets["inverted"], x, dropout=Dropout(p, "inverted"), train=False)
                - forward(inv_as_classic, x, dropout=Dropout(p, "classic"), train=False)
            )
        )
    )
    scatter = {}
    for mode in ("inverted", "classic"):
        e = _equivalence(nets[mode], mode, p, x[:16], config["mc_samples"])
        scatter[mode] = (e.pop("mc_mean"), e.pop("test_value"))
        eq[mode] = e
    results["equivalence"] = eq
    accuracy_bars(
        out / "accuracy.png",
        results,
        title=f"MNIST-1D, dropout keep_prob {p:g}: test accuracy",
        lines={"target 0.70": 0.70},
        ylim=(0.5, 0.85),
    )
    _plot(out / "equivalence.png", scatter, config["mc_samples"])
    write_results(out, results)
    return results


def _plot(path, scatter, samples):
    from jnn.app.plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, (mode, (mc, tv)) in zip(axes, scatter.items()):
        ax.plot(tv, mc, ".", markersize=4)
        lo, hi = float(min(tv.min(), mc.min())), float(max(tv.max(), mc.max()))
        ax.plot([lo, hi], [lo, hi], "k--", linewidth=0.8, label="y = x")
        ax.set_xlabel("test-time value (expected weights)" if mode == "classic" else "test-time value (identity)")
        ax.set_ylabel(f"mean over {samples} dropout masks")
        ax.set_title(f"{mode}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle("Second-layer pre-activations: training-time mean vs test-time value (16 test examples)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(results: dict) -> str:
    """Accuracies of both modes and the three equivalence checks."""
    eq = results["equivalence"]
    return (
        summarize_recipes(results) + "\n"
        "classic test forward vs outgoing weights × p: max |Δ logit| "
        f"{eq['classic_test_vs_scaled_weights_max_abs']:.2e}; "
        f"inverted(W) vs classic(W/p): {eq['inverted_W_vs_classic_W_over_p_max_abs']:.2e}; "
        f"Monte-Carlo mean of z2 within 3 s.e. of the test value: inverted {eq['inverted']['z2_within_3se']:.3f}, "
        f"classic {eq['classic']['z2_within_3se']:.3f}; logits (approximate rule): mean |Δ| "
        f"{eq['inverted']['logits_mean_abs_dev']:.3f} / {eq['classic']['logits_mean_abs_dev']:.3f} "
        f"vs mean |logit| {eq['inverted']['logits_mean_abs']:.2f} / {eq['classic']['logits_mean_abs']:.2f}"
    )


if __name__ == "__main__":
    sys.exit(run_main("dropout_modes", __doc__.splitlines()[0], DEFAULTS, run, summarize))
