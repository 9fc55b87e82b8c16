"""Capture what jnn computes, as hashes, to compare two versions of the code bit for bit (before/after a refactor).

Usage:
    python scripts/behaviour_capture.py OUT.json          # run under the version to capture
    python scripts/behaviour_capture.py --compare A.json B.json

Captured (small problems; a minute on two cores): fits of the built-in MLP with every built-in loss of the
lecture and the regression and multi-label losses (params, history, evaluation), a sweep of 4 members, a classic-
dropout fit, ``jnn train`` + ``jnn predict --proba`` on a CSV, the hand-written backprop, and the messages of
twenty bad inputs. Each entry is the SHA-256 of the values' bytes (or the message itself), so two captures are
equal only if every bit is. ``--compare`` lists the entries that differ and exits 1 if any does.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

import jax
import numpy as np

import jnn
from jnn.app import cli


def _digest(tree) -> str:
    h = hashlib.sha256()
    for leaf in jax.tree.leaves(tree):
        a = np.asarray(leaf)
        h.update(str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:20]


def _history(r) -> dict:
    return {k: list(map(float, v)) for k, v in r.history.arrays().items()}


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 6)).astype(np.float32)
    w = rng.normal(size=(6, 3))
    classes = np.argmax(x @ w, axis=1).astype(np.int32)
    values = (x @ w[:, :2]).astype(np.float32)
    labels = (x @ w > 0).astype(np.float32)
    return x, {"softmax": classes, "binary": (classes == 0).astype(np.int32), "mse": values, "multilabel": labels}


def capture() -> dict:
    out = {}
    x, ys = _data()
    quiet = [jnn.Progress(bar=False, log_every=0)]
    config = jnn.TrainConfig(max_epochs=6, batch_size=32, early_stopping=None, seed=3)
    for loss, y in ys.items():
        train, test = jnn.Dataset(x[:120], y[:120]), jnn.Dataset(x[120:], y[120:])
        model = jnn.MLP(hidden=(8,), loss=loss, keep_prob=0.8)
        r = jnn.fit(train, config, task=model, callbacks=quiet)
        out[f"fit/{loss}/params"] = _digest(r.params)
        out[f"fit/{loss}/history"] = _digest(list(_history(r).values()))
        out[f"fit/{loss}/evaluate"] = {k: float(v) for k, v in jnn.evaluate(r.params, test, model).items()}
    train = jnn.Dataset(x[:120], ys["softmax"][:120])
    classic = jnn.MLP(hidden=(8,), keep_prob=0.7, dropout_mode="classic")
    r = jnn.fit(train, config, task=classic, callbacks=quiet)
    out["fit/classic/params"] = _digest(r.params)
    es = jnn.TrainConfig(max_epochs=30, batch_size=16, seed=1, early_stopping=jnn.EarlyStopping(patience=3))
    r = jnn.fit(train, es, task=jnn.MLP(hidden=(8,)), callbacks=quiet)
    out["fit/early_stopping"] = [_digest(r.params), r.stopped_by, int(r.best_epoch)]
    from jnn.sweep import sweep

    s = sweep(train, config, task=jnn.MLP(hidden=(8,)), seed=[0, 1], keep_prob=[0.7, 1.0], callbacks=quiet)
    out["sweep/params"] = _digest(s.params)
    out["sweep/rows"] = [{k: v for k, v in row.items() if isinstance(v, (int, float, str))} for row in s.rows]
    from jnn.backprop import backprop, node_backprop

    params = jnn.init_mlp(jax.random.key(0), (6, 5, 3))
    for loss, y in (("softmax", ys["softmax"][:10]), ("binary", ys["binary"][:10])):
        p = params if loss == "softmax" else jnn.init_mlp(jax.random.key(0), (6, 5, 1))
        out[f"backprop/{loss}"] = _digest(backprop(p, x[:10], y, loss=loss, l2=0.01))
        out[f"node_backprop/{loss}"] = _digest(node_backprop(p, x[:10], y, loss=loss, l2=0.01))
    out.update(_cli(x, ys))
    out.update(_errors())
    return out


def _cli(x, ys) -> dict:
    out = {}
    with tempfile.TemporaryDirectory() as d:
        csv = Path(d) / "data.csv"
        names = np.array(["cat", "dog", "eel"])[ys["softmax"]]
        rows = ["a,b,c,d,e,f,kind"] + [",".join(f"{v:.5f}" for v in r) + f",{n}" for r, n in zip(x, names)]
        csv.write_text("\n".join(rows) + "\n")
        run = Path(d) / "run"
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(io.StringIO()):
            cli.main(["train", "--data", str(csv), "--target", "kind", "--standardize", "--hidden", "8",
                      "--max-epochs", "5", "--out", str(run)])  # fmt: skip
        out["cli/train/params"] = _digest(jnn.load_run(run).params)
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            cli.main(["predict", str(run), "--data", str(csv), "--proba"])
        out["cli/predict"] = hashlib.sha256(buf.getvalue().encode()).hexdigest()[:20]
    return out


def _errors() -> dict:
    bad = {
        "lr0": lambda: jnn.TrainConfig(learning_rate=0),
        "momentum1": lambda: jnn.TrainConfig(momentum=1.0),
        "batch0": lambda: jnn.TrainConfig(batch_size=0),
        "stratify1": lambda: jnn.TrainConfig(stratify=1),
        "early3": lambda: jnn.TrainConfig(early_stopping=3),
        "loss_tol3": lambda: jnn.TrainConfig(loss_tol=3),
        "average": lambda: jnn.TrainConfig(average="x"),
        "float16": lambda: jnn.TrainConfig(compute_dtype="float16"),
        "bf": lambda: jnn.TrainConfig(compute_dtype="int8"),
        "steps0": lambda: jnn.TrainConfig(max_steps=0),
        "seed-1": lambda: jnn.TrainConfig(seed=-1),
        "div1": lambda: jnn.TrainConfig(divergence_factor=1.0),
        "opt": lambda: jnn.TrainConfig(optimizer="x"),
        "lr_tiny": lambda: jnn.TrainConfig(learning_rate=1e-50),
        "warmup": lambda: jnn.TrainConfig(warmup_epochs=3),
        "val1": lambda: jnn.TrainConfig(val_fraction=1.0),
        "keep_ck0": lambda: jnn.TrainConfig(keep_checkpoints=0),
        "mlp_loss": lambda: jnn.MLP(loss="hinge"),
        "mlp_act": lambda: jnn.MLP(activation="x"),
        "mlp_l2": lambda: jnn.MLP(l2=-1),
        "mlp_bias": lambda: jnn.MLP(include_bias=1),
        "mlp_scheme": lambda: jnn.MLP(scheme="x"),
        "mlp_keep": lambda: jnn.MLP(keep_prob=0),
    }
    out = {}
    for name, make in bad.items():
        try:
            make()
            out[f"error/{name}"] = "no error"
        except (TypeError, ValueError) as err:
            out[f"error/{name}"] = f"{type(err).__name__}: {err}"
    return out


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--compare"]:
        a, b = (json.loads(Path(p).read_text()) for p in argv[1:3])
        diff = sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))
        for k in diff:
            print(f"{k}:\n  before {a.get(k)!r}\n  after  {b.get(k)!r}")
        print(f"{len(a.keys() & b.keys()) - len(set(diff) & a.keys() & b.keys())} of {len(a.keys() | b.keys())} "
              f"entries equal; {len(diff)} differ")  # fmt: skip
        return 1 if diff else 0
    out = capture()
    Path(argv[0]).parent.mkdir(parents=True, exist_ok=True)
    Path(argv[0]).write_text(json.dumps(out, indent=1, sort_keys=True))
    print(f"{len(out)} entries written to {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
