"""A messy breast-cancer CSV through ``jnn train``/``jnn predict`` against scikit-learn's Pipeline on the same split.

Usage:
    python experiments/tabular_csv.py [--out runs/tabular_csv] [--seeds 0,1,2,3,4]

Data: scikit-learn's breast_cancer (569 rows, 30 numeric features) written as the CSV a clinic would send: the
string label (``malignant``/``benign``) in a middle column, a categorical column (``size``: small/medium/large from
the mean radius), 10 empty cells in 2 feature columns, the training file semicolon-delimited with decimal commas
(Excel in most of Europe), the test file comma-delimited. The split is fixed (stratified 80/20, split seed 0).

jnn: ``jnn train --data train.csv --target diagnosis --categorical auto --impute mean --standardize --test-data
test.csv --seed S`` (the jnn defaults otherwise: a 256-256 relu MLP, 10 % of the training rows held out for early
stopping), then ``jnn predict RUN --data test.csv`` scores every test row.
scikit-learn: ``Pipeline(ColumnTransformer(numeric: SimpleImputer(mean) + StandardScaler, size: OneHotEncoder),
MLPClassifier(random_state=S))`` with its defaults (100 hidden units, adam, early stopping off).

Target: jnn's mean test accuracy within 2 points of scikit-learn's (5 seeds). Writes results.json and the CSVs into
--out.
"""

from __future__ import annotations

import contextlib
import io
import sys

import numpy as np
from _common import main as run_main
from _common import out_dir, seed_stats, write_results

DEFAULTS = {"out": "runs/tabular_csv", "seeds": [0, 1, 2, 3, 4], "max_epochs": 300}


def write_csvs(out) -> dict:
    """The train (semicolon, decimal commas) and test (comma) CSVs; returns their paths and the raw split."""
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split

    d = load_breast_cancer()
    x, names = d.data, [n.replace(" ", "_") for n in d.feature_names]
    label = np.array(["malignant", "benign"])[d.target]
    size = np.where(x[:, 0] < 12, "small", np.where(x[:, 0] < 16, "medium", "large"))
    cells = [[f"{v:.6g}" for v in row] for row in x]
    rng = np.random.default_rng(0)
    for col, count in ((2, 6), (15, 4)):  # 10 empty cells in 2 columns
        for r in rng.choice(len(x), count, replace=False):
            cells[r][col] = ""
    header = names[:10] + ["diagnosis"] + names[10:] + ["size"]
    rows = [c[:10] + [lab] + c[10:] + [s] for c, lab, s in zip(cells, label, size)]
    tr, te = train_test_split(np.arange(len(x)), test_size=0.2, stratify=d.target, random_state=0)
    paths = {"train": out / "train.csv", "test": out / "test.csv"}
    paths["train"].write_text(";".join(header) + "\n" + "".join(
        ";".join(c.replace(".", ",") for c in rows[i]) + "\n" for i in tr))  # fmt: skip
    paths["test"].write_text(",".join(header) + "\n" + "".join(",".join(rows[i]) + "\n" for i in te))
    return {**paths, "header": header, "rows": rows, "train_idx": tr, "test_idx": te, "label": label}


def sklearn_accuracy(data: dict, seed: int) -> float:
    """scikit-learn's Pipeline on the same split, reading the same cells."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    header, rows = data["header"], data["rows"]
    num = [j for j, h in enumerate(header) if h not in ("diagnosis", "size")]
    x = np.array([[float(r[j]) if r[j] != "" else np.nan for j in num] + [r[-1]] for r in rows], dtype=object)
    y = data["label"]
    pre = ColumnTransformer([("num", make_pipeline(SimpleImputer(strategy="mean"), StandardScaler()),
                              list(range(len(num)))), ("cat", OneHotEncoder(), [len(num)])])  # fmt: skip
    model = Pipeline([("pre", pre), ("mlp", MLPClassifier(random_state=seed, max_iter=500))])
    tr, te = data["train_idx"], data["test_idx"]
    model.fit(x[tr], y[tr])
    return float(model.score(x[te], y[te]))


def jnn_accuracy(data: dict, seed: int, out, max_epochs: int) -> tuple[float, int]:
    """``jnn train`` then ``jnn predict`` on every test row; returns the accuracy and the rows predicted."""
    from jnn.app import cli

    run = out / f"run-{seed}"
    argv = ["train", "--data", str(data["train"]), "--target", "diagnosis", "--categorical", "auto", "--impute",
            "mean", "--standardize", "--test-data", str(data["test"]), "--seed", str(seed), "--max-epochs",
            str(max_epochs), "--log-every", "0", "--out", str(run), "--overwrite"]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        if cli.main(argv) != 0:
            raise ValueError(f"jnn train failed for seed {seed}")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        if cli.main(["predict", str(run), "--data", str(data["test"])]) != 0:
            raise ValueError(f"jnn predict failed for seed {seed}")
    pred = buf.getvalue().splitlines()[1:]
    truth = data["label"][data["test_idx"]]
    return float(np.mean(np.asarray(pred) == truth)), len(pred)


def run(config: dict) -> dict:
    """Both stacks on every seed; the accuracies and the gap."""
    out = out_dir(config)
    data = write_csvs(out)
    jnn_acc, sk_acc, predicted = [], [], []
    for seed in config["seeds"]:
        acc, n = jnn_accuracy(data, seed, out, config["max_epochs"])
        jnn_acc.append(acc)
        predicted.append(n)
        sk_acc.append(sklearn_accuracy(data, seed))
        print(f"seed {seed}: jnn {acc:.4f} ({n} rows predicted), scikit-learn {sk_acc[-1]:.4f}", flush=True)
    j, s = seed_stats(jnn_acc), seed_stats(sk_acc)
    results = {"task": "breast_cancer CSV (semicolon train file, empty cells, a categorical column)",
               "jnn": j, "sklearn": s, "gap": j["mean"] - s["mean"], "rows_predicted": predicted,
               "test_rows": int(len(data["test_idx"])), "target": "jnn within 0.02 of scikit-learn",
               "met": abs(j["mean"] - s["mean"]) <= 0.02 or j["mean"] > s["mean"]}  # fmt: skip
    write_results(out, results)
    return results


def summarize(r: dict) -> str:
    return (f"test accuracy over {len(r['jnn']['values'])} seeds: jnn {r['jnn']['mean']:.4f} ± {r['jnn']['std']:.4f}, "
            f"scikit-learn {r['sklearn']['mean']:.4f} ± {r['sklearn']['std']:.4f} (gap {r['gap']:+.4f}); every test "
            f"row predicted: {all(n == r['test_rows'] for n in r['rows_predicted'])}; target (within 0.02): "
            f"{'met' if r['met'] else 'not met'}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_main("tabular_csv", __doc__.splitlines()[0], DEFAULTS, run, summarize))
