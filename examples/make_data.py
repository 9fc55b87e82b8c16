"""Write the example data files of the README's "Your own data" section (from scikit-learn's bundled sets).

    python examples/make_data.py   # writes examples/wine_{train,test,new}.csv and examples/diabetes.npz

- ``wine_train.csv`` / ``wine_test.csv``: 142 / 36 wines (a stratified split), 13 chemical measurements and
  the cultivar as a string label, with a header row.
- ``wine_new.csv``: 8 test wines without the label column, as new inputs for ``jnn predict``.
- ``diabetes.npz``: the diabetes regression set (``x``, ``y``) with a held-out test split (``x_test``, ``y_test``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


def main() -> None:
    from sklearn.datasets import load_diabetes, load_wine

    here = Path(__file__).resolve().parent
    wine = load_wine()
    names = [n.replace("/", "_") for n in wine.feature_names]
    cultivars = np.array(["barolo", "grignolino", "barbera"])[wine.target]
    rng = np.random.default_rng(0)
    test = np.sort(np.concatenate([rng.permutation(np.flatnonzero(wine.target == c))[:12] for c in range(3)]))
    train = np.setdiff1d(np.arange(len(wine.target)), test)
    for name, rows in (("wine_train.csv", train), ("wine_test.csv", test)):
        with open(here / name, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow([*names, "cultivar"])
            for row, label in zip(wine.data[rows], cultivars[rows]):
                w.writerow([f"{v:g}" for v in row] + [label])
    pick = test[rng.choice(len(test), 8, replace=False)]
    with open(here / "wine_new.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(names)
        for row in wine.data[pick]:
            w.writerow([f"{v:g}" for v in row])
    d = load_diabetes()
    order = np.random.default_rng(0).permutation(len(d.target))
    d_test, d_train = order[:88], order[88:]
    np.savez(here / "diabetes.npz", x=d.data[d_train], y=d.target[d_train] / 100.0, x_test=d.data[d_test],
             y_test=d.target[d_test] / 100.0)  # fmt: skip
    print(f"wrote wine_train.csv ({len(train)} rows), wine_test.csv ({len(test)}), wine_new.csv (8), diabetes.npz "
          f"({len(d_train)} train / {len(d_test)} test) in {here}")  # fmt: skip


if __name__ == "__main__":
    main()
