"""MNIST-1D (Greydanus & Kobak, 2020/2024): 10 classes of 40-sample 1-D signals, generated offline.

The data are made by the ``mnist1d`` package from its paper's arguments
(``make_dataset(get_dataset_args())``: 5000 examples, 4000 train / 1000 test, 40 features, already
centred to mean 0 and standard deviation 1) — never its download path — and cached as ``.npz`` in
``$XDG_CACHE_HOME/jnn`` (default ``~/.cache/jnn``; override with ``JNN_CACHE_DIR``).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from jnn.data import Dataset

CACHE_NAME = "mnist1d-v0.0.2-seed42.npz"


def cache_dir() -> Path:
    """Where generated data sets are cached."""
    if os.environ.get("JNN_CACHE_DIR"):
        return Path(os.environ["JNN_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jnn"


def _generate() -> dict[str, np.ndarray]:
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise ImportError(
            "the MNIST-1D data set needs the `mnist1d` package (an optional extra of jnn): pip install 'jnn[mnist1d]'"
        ) from None
    state = np.random.get_state()  # make_dataset seeds NumPy's global RNG; leave it as we found it
    try:
        d = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(state)
    return {"x": d["x"], "y": d["y"], "x_test": d["x_test"], "y_test": d["y_test"]}


def load_mnist1d(*, seed: int = 0):
    """MNIST-1D as ``(train, test)``: 4000 and 1000 examples, ``x`` float32 ``[n, 40]``, labels 0–9.

    Args:
        seed: unused (the data set is fixed by the paper's seed 42); accepted for a uniform loader API.
    """
    del seed
    path = cache_dir() / CACHE_NAME
    if path.exists():
        with np.load(path, allow_pickle=False) as f:
            d = {k: f[k] for k in ("x", "y", "x_test", "y_test")}
    else:
        d = _generate()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **d)
        os.replace(tmp, path)
    train = Dataset(d["x"].astype(np.float32), d["y"].astype(np.int32), 10)
    test = Dataset(d["x_test"].astype(np.float32), d["y_test"].astype(np.int32), 10)
    return train, test
