"""Hand-written backprop vs jax.grad: errors in float32 and float64 across depths, widths and activations.

Usage:
    python experiments/gradcheck_study.py [--out runs/gradcheck_study] [--depths 1,2,3] [--widths 8,64]

Writes ``results.json``, ``results.csv`` and ``errors.png`` (relative error per configuration in
float32 and float64, log scale) into the output folder and prints a table. For each
configuration it records the max-norm relative error of the vectorised hand backprop against
``jax.grad`` (per leaf, the worst leaf) in float32 and float64, and the Taylor-remainder order in float64.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import sys
import time

import jax
import numpy as np

import jnn


def _one(sizes, activation, dtype, seed):
    k_init, k_x, k_y, k_drop, k_dir = jax.random.split(jax.random.key(seed), 5)
    params = jnn.init_mlp(k_init, sizes, dtype=dtype)
    # Small random biases: with zero biases a relu unit whose inputs are all zero sits exactly on its kink
    # (z = b = 0), where the loss is not differentiable and the Taylor remainder is O(h) whatever the gradient.
    params = [
        {"w": l["w"], "b": 0.1 * jax.random.normal(jax.random.fold_in(k_init, i), l["b"].shape, dtype)}
        for i, l in enumerate(params)
    ]
    x = jax.random.normal(k_x, (32, sizes[0]), dtype)
    y = jax.random.randint(k_y, (32,), 0, sizes[-1])
    kw = dict(loss="softmax", activation=activation, l2=1e-3, dropout=jnn.Dropout(0.8), key=k_drop, train=True)
    ref = jax.grad(jnn.regularized_loss)(params, x, y, **kw)
    hand = jnn.backprop(params, x, y, **kw)
    report = jnn.compare_grads(ref, hand)
    order = None
    if dtype == "float64":
        order = jnn.taylor_test(lambda p: jnn.regularized_loss(p, x, y, **kw), params, hand, key=k_dir, h0=1e-3).order
    return report.max_rel_err, report.max_abs_err, order


def run(config: dict) -> dict:
    """Run the study.

    Args:
        config: ``depths`` (list of hidden-layer counts), ``widths`` (hidden widths), ``activations``,
            ``seed``, ``out`` (folder for results.json / results.csv).

    Returns:
        ``{"rows": [...], "summary": {...}}``, also written to ``out/results.json``.
    """
    rows = []
    t0 = time.perf_counter()
    grid = list(itertools.product(config["depths"], config["widths"], config["activations"]))
    for i, (depth, width, act) in enumerate(grid, 1):
        sizes = [20] + [width] * depth + [10]
        row = {"depth": depth, "width": width, "activation": act}
        rel32, abs32, _ = _one(sizes, act, "float32", config["seed"])
        with jnn.float64_mode():
            rel64, abs64, order = _one(sizes, act, "float64", config["seed"])
        row.update(
            rel_err_float32=rel32,
            abs_err_float32=abs32,
            rel_err_float64=rel64,
            abs_err_float64=abs64,
            taylor_order_float64=order,
        )
        rows.append(row)
        print(
            f"[{i}/{len(grid)}] depth={depth} width={width:<4d} {act:<8s} rel err f32={rel32:.2e} "
            f"f64={rel64:.2e} taylor order={order:.3f}",
            flush=True,
        )
    summary = {
        "max_rel_err_float32": max(r["rel_err_float32"] for r in rows),
        "max_rel_err_float64": max(r["rel_err_float64"] for r in rows),
        "taylor_order_range": [
            min(r["taylor_order_float64"] for r in rows),
            max(r["taylor_order_float64"] for r in rows),
        ],
        "configs": len(rows),
        "seconds": round(time.perf_counter() - t0, 2),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
    }
    out = config["out"]
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "results.json"), "w") as fh:
        json.dump({"config": config, "rows": rows, "summary": summary}, fh, indent=2)
    with open(os.path.join(out, "results.csv"), "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _plot(os.path.join(out, "errors.png"), rows)
    return {"rows": rows, "summary": summary}


def _plot(path, rows):
    from jnn.app.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.3 * len(rows) + 2), 4))
    xs = np.arange(len(rows))
    floor = 1e-18  # exact agreement (error 0) is drawn at this floor on the log scale
    for key, label, color in (("rel_err_float32", "float32", "tab:orange"), ("rel_err_float64", "float64", "tab:blue")):
        ax.semilogy(xs, [max(r[key], floor) for r in rows], "o", color=color, label=label)
    ax.axhline(1e-5, color="tab:orange", linestyle="--", linewidth=0.8, label="float32 bound 1e-5")
    ax.axhline(1e-12, color="tab:blue", linestyle="--", linewidth=0.8, label="float64 bound 1e-12")
    ax.set_xticks(xs, [f"{r['activation'][:4]} d{r['depth']} w{r['width']}" for r in rows], rotation=90, fontsize=7)
    ax.set_ylabel("max-norm relative error vs jax.grad")
    ax.set_title("Hand-written vectorised backprop vs jax.grad")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/gradcheck_study")
    p.add_argument("--depths", default="1,2,3")
    p.add_argument("--widths", default="8,64,256")
    p.add_argument("--activations", default=",".join(["relu", "sigmoid", "tanh", "identity"]))
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    try:
        config = {
            "depths": [int(v) for v in a.depths.split(",")],
            "widths": [int(v) for v in a.widths.split(",")],
            "activations": a.activations.split(","),
            "seed": a.seed,
            "out": a.out,
        }
        for act in config["activations"]:
            jnn.get_activation(act)
        if min(config["depths"]) < 1 or min(config["widths"]) < 1:
            raise ValueError(f"--depths and --widths must be positive ints; got {a.depths!r}, {a.widths!r}")
    except ValueError as err:
        print(f"gradcheck_study: error: {err}", file=sys.stderr)
        return 2
    res = run(config)
    s = res["summary"]
    print(
        f"max rel err: float32 {s['max_rel_err_float32']:.2e}, float64 {s['max_rel_err_float64']:.2e}; "
        f"Taylor order in [{s['taylor_order_range'][0]:.3f}, {s['taylor_order_range'][1]:.3f}]; "
        f"{s['configs']} configs in {s['seconds']} s -> {config['out']}/results.json"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
