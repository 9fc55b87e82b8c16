"""Your own model: a residual MLP regressor on scikit-learn's diabetes data, trained through jnn.fit.

Usage:
    python experiments/custom_model.py [--out runs/custom_model] [--max-epochs 400]

jnn ships no residual network and no regression head; this script writes one as a ``jnn.Task``
(pure ``init``/``apply``, the built-in ``"mse"`` loss, a λΣw² penalty with λ in ``hyper``) and gets
from ``jnn.fit`` what a hand-written loop lacks: compiled epochs, early stopping on ``val_r2``,
checkpoints with bitwise resume, and a sweep over λ in one compile. It also trains the same model with
a plain optax loop written below (same keys, same permutations) and shows the two give the same params:
bitwise when every minibatch is full, to float rounding when the last one is ragged.

Data: the 442 patients of ``sklearn.datasets.load_diabetes`` (bundled, offline), 10 standardised
features, the disease-progression target standardised with the training mean and std; a fixed split
of 352 training and 90 test patients. Test MSE is reported in target units² and R² as sklearn's
``r2_score``; an ordinary least-squares fit (sklearn ``LinearRegression``) is the reference.

Writes results.json and custom_model.png into --out.
"""

from __future__ import annotations

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from _common import main as run_main
from _common import out_dir, write_results

import jnn
from jnn import RunFolder
from jnn.sweep import sweep

DEFAULTS = {
    "out": "runs/custom_model",
    "width": 32,
    "blocks": 2,
    "max_epochs": 400,
    "patience": 40,
    "seed": 0,
    "l2s": [0.0, 1e-3, 1e-2, 1e-1, 1.0],
    "loop_epochs": 30,
}


def residual_mlp(d_in: int, width: int, blocks: int, *, l2: float = 1e-3) -> jnn.Task:
    """x → tanh(x W₀ + b₀) = h; h ← h + tanh(h Wₖ + bₖ) per block; ŷ = h w + b. Penalty λΣ‖Wₖ‖²."""

    def init(key):
        keys = jax.random.split(key, blocks + 2)
        dense = lambda k, m, n: {"w": jax.random.normal(k, (m, n)) / m**0.5, "b": jnp.zeros(n)}
        return {
            "inp": dense(keys[0], d_in, width),
            "blocks": [dense(keys[i + 1], width, width) for i in range(blocks)],
            "out": dense(keys[-1], width, 1),
        }

    def apply(params, x, *, key, train, hyper):
        h = jnp.tanh(x @ params["inp"]["w"] + params["inp"]["b"][None])
        for block in params["blocks"]:
            h = h + jnp.tanh(h @ block["w"] + block["b"][None])
        return h @ params["out"]["w"] + params["out"]["b"][None]  # [batch, 1]

    def penalty(params, hyper):
        return hyper["l2"] * sum(jnp.sum(b["w"] ** 2) for b in params["blocks"])

    return jnn.Task(init, apply, loss="mse", penalty=penalty, metrics=("mse", "r2"), hyper={"l2": l2})


def diabetes(seed: int = 0):
    """Standardised train (352) and test (90) Datasets and the target's training std (to report MSE in units²)."""
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True)
    perm = np.random.default_rng(seed).permutation(len(x))
    tr, te = perm[:352], perm[352:]
    mx, sx, my, sy = x[tr].mean(0), x[tr].std(0), y[tr].mean(), y[tr].std()
    make = lambda i: jnn.Dataset(((x[i] - mx) / sx).astype(np.float32), ((y[i] - my) / sy).astype(np.float32))
    return make(tr), make(te), float(sy)


def optax_loop(task: jnn.Task, train: jnn.Dataset, config: jnn.TrainConfig):
    """The same training as ``jnn.fit(train, config, task=task)`` (no validation split, no early stopping),
    written as a plain optax loop: the same keys, permutations, objective and optimiser."""
    keys = jnn.Keys.from_seed(config.seed)
    params, tx = task.init(keys.init), config.make_optimizer()
    opt_state = tx.init(params)
    hyper = {k: jnp.asarray(v, jnp.float32) for k, v in task.hyper.items()}

    @jax.jit
    def step(params, opt_state, x, y, hyper):
        def objective(p):
            f = task.apply(p, x, key=None, train=True, hyper=hyper)[:, 0]
            return jnp.mean((f - y) ** 2) + task.penalty(p, hyper)

        updates, opt_state = tx.update(jax.grad(objective)(params), opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    n, t = len(train), config.batch_size
    for epoch in range(config.max_epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(keys.data, epoch), n))
        for i in range(0, n, t):
            idx = perm[i : i + t]
            params, opt_state = step(params, opt_state, train.x[idx], train.y[idx], hyper)
    return params


def _max_rel(a, b) -> float:
    diff = max(
        float(np.max(np.abs(np.asarray(u) - np.asarray(v)))) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )
    return diff / max(float(np.max(np.abs(np.asarray(v)))) for v in jax.tree.leaves(b))


def _test_row(task, params, test, sy, **extra) -> dict:
    m = jnn.evaluate(params, test, task)
    return {"test_mse": m["mse"] * sy**2, "test_r2": m["r2"], **extra}


def run(config: dict) -> dict:
    """Train the residual MLP four ways and return test MSE/R² per recipe plus the equality checks."""
    out = out_dir(config)
    train, test, sy = diabetes(config["seed"])
    task = residual_mlp(train.x.shape[1], config["width"], config["blocks"], l2=1e-2)
    cfg = jnn.TrainConfig(optimizer="momentum", learning_rate=0.01, batch_size=32, max_epochs=config["max_epochs"],
                          early_stopping=jnn.EarlyStopping("val_r2", patience=config["patience"]), val_fraction=0.2,
                          seed=config["seed"], checkpoint_every=10)  # fmt: skip
    recipes = {}
    t0 = time.perf_counter()
    r = jnn.fit(train, cfg, task=task, callbacks=[RunFolder(out / "run", overwrite=True)])
    recipes["jnn.fit, early stopping on val_r2"] = _test_row(task, r.params, test, sy, epochs=int(r.state.epoch),
                                                            best_epoch=r.best_epoch + 1,
                                                            seconds=time.perf_counter() - t0)  # fmt: skip
    # Pause half-way, resume from the checkpoint in the run folder: the same run, bit for bit.
    half = jnn.fit(
        train,
        cfg,
        task=task,
        stop_at_epoch=max(1, int(r.state.epoch) // 2),
        callbacks=[RunFolder(out / "resumed", overwrite=True)],
    )
    resumed = jnn.fit(train, cfg, task=task, callbacks=[RunFolder(out / "resumed", resume=True)])
    recipes["jnn.fit, paused and resumed"] = _test_row(task, resumed.params, test, sy, paused_at=int(half.state.epoch))
    t0 = time.perf_counter()
    sw = sweep(train, cfg, task=task, test=test, l2=list(config["l2s"]))  # a sweep over λ: one compile
    sweep_seconds = time.perf_counter() - t0
    for row in sw.rows:
        recipes[f"jnn.sweep member l2={row['l2']:g}"] = {
            "test_mse": row["test_mse"] * sy**2, "test_r2": row["test_r2"], "epochs": row["epochs"],
            "best_val_r2": row["best_val"],
        }  # fmt: skip
    checks = _loop_checks(task, train, test, sy, cfg, config["loop_epochs"], recipes)
    recipes["reference: least squares (sklearn)"] = _least_squares(train, test, sy)
    states_equal = zip(jax.tree.leaves(resumed.state), jax.tree.leaves(r.state))
    results = {"recipes": recipes, "optax_loop": checks, "sweep_seconds": sweep_seconds, "sweep_best": sw.best(),
               "resume_bitwise_equal": all(np.array_equal(u, v, equal_nan=True) for u, v in states_equal
                                           if not jnp.issubdtype(u.dtype, jax.dtypes.prng_key)),
               "history": r.history.metrics, "sweep_rows": sw.rows}  # fmt: skip
    _figure(out / "custom_model.png", r, sw, task, test)
    write_results(out, results)
    return results


def _loop_checks(task, train, test, sy, cfg, epochs: int, recipes: dict) -> dict:
    """jnn.fit (no validation split, no early stopping) against the plain optax loop, full and ragged batches."""
    checks = {}
    for name, batch in (("full batches (32 × 11)", 32), ("ragged last batch (48 × 7 + 16)", 48)):
        plain = jnn.TrainConfig(**{**cfg.to_dict(), "batch_size": batch, "max_epochs": epochs, "val_fraction": 0.0,
                                   "early_stopping": None, "checkpoint_every": 0})  # fmt: skip
        a, b = jnn.fit(train, plain, task=task).params, optax_loop(task, train, plain)
        equal = all(np.array_equal(u, v) for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
        checks[name] = {"bitwise_equal": equal, "max_rel_diff": _max_rel(a, b)}
        recipes[f"plain optax loop, batch {batch}, {epochs} epochs"] = _test_row(task, b, test, sy)
    return checks


def _least_squares(train, test, sy) -> dict:
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import r2_score

    pred = LinearRegression().fit(train.x, train.y).predict(test.x)
    return {"test_mse": float(np.mean((pred - test.y) ** 2)) * sy**2, "test_r2": float(r2_score(test.y, pred))}


def _figure(path, r, sw, task, test):
    from jnn.app.plots import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    h = r.history
    epochs = range(1, len(h) + 1)
    axes[0].plot(epochs, h["train_mse"], label="training MSE")
    axes[0].plot(epochs, h["val_mse"], label="validation MSE")
    axes[0].axvline(r.best_epoch + 1, color="tab:green", linestyle="--", label=f"best epoch {r.best_epoch + 1}")
    axes[0].set(xlabel="epoch", ylabel="MSE (standardised target)", title="jnn.fit, early stopping on val_r2")
    axes[0].legend(fontsize=8)
    l2s = [row["l2"] for row in sw.rows]
    xs = range(len(l2s))
    axes[1].plot(xs, [row["best_val"] for row in sw.rows], "o-", label="best validation R²")
    axes[1].plot(xs, [row["test_r2"] for row in sw.rows], "s-", label="test R²")
    axes[1].set_xticks(list(xs), [f"{v:g}" for v in l2s])
    axes[1].set(xlabel="λ", ylabel="R²", title="jnn.sweep over λ (one compile)")
    axes[1].legend(fontsize=8)
    pred = np.asarray(task.apply(r.params, jnp.asarray(test.x), key=None, train=False, hyper={}))[:, 0]
    axes[2].scatter(test.y, pred, s=12)
    lim = [min(test.y.min(), pred.min()), max(test.y.max(), pred.max())]
    axes[2].plot(lim, lim, "k--", linewidth=1)
    axes[2].set(xlabel="true (standardised)", ylabel="predicted", title="test set, restored best params")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summarize(results: dict) -> str:
    """One line per recipe, then the equality checks."""
    lines = [
        f"{name:48s} test MSE {r['test_mse']:8.1f}  R² {r['test_r2']:.4f}" for name, r in results["recipes"].items()
    ]
    lines.append(
        f"resume from the checkpoint bitwise equal to the uninterrupted run: {results['resume_bitwise_equal']}"
    )
    for name, c in results["optax_loop"].items():
        lines.append(
            f"jnn.fit vs plain optax loop, {name}: bitwise equal {c['bitwise_equal']}, "
            f"max relative difference {c['max_rel_diff']:.1e}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(run_main("custom_model", __doc__.splitlines()[0], DEFAULTS, run, summarize))
