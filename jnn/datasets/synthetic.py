"""Small synthetic classification sets that need no package: xor, moons, spirals.

Each is drawn from ``numpy.random.default_rng(seed)`` (deterministic), in float32, features roughly in
[−1.5, 1.5] (no further scaling), split 80% train / 20% test after a shuffle.
"""

from __future__ import annotations

import numpy as np

from jnn.data import Dataset


def _finish(x, y, rng, num_classes):
    perm = rng.permutation(len(y))
    x, y = x[perm].astype(np.float32), y[perm].astype(np.int32)
    cut = int(0.8 * len(y))
    return Dataset(x[:cut], y[:cut], num_classes), Dataset(x[cut:], y[cut:], num_classes)


def load_xor(*, seed: int = 0, n: int = 1000, noise: float = 0.1):
    """XOR: points around the four corners (±1, ±1); label 1 when the signs differ. 2 classes."""
    rng = np.random.default_rng(seed)
    corners = rng.integers(0, 2, size=(n, 2))
    x = (2.0 * corners - 1.0) + noise * rng.standard_normal((n, 2))
    y = (corners[:, 0] != corners[:, 1]).astype(np.int32)
    return _finish(x, y, rng, 2)


def load_moons(*, seed: int = 0, n: int = 1000, noise: float = 0.15):
    """Two interleaving half circles (as scikit-learn's make_moons), centred. 2 classes."""
    rng = np.random.default_rng(seed)
    n0 = n // 2
    t0 = rng.uniform(0, np.pi, n0)
    t1 = rng.uniform(0, np.pi, n - n0)
    x = np.concatenate([np.stack([np.cos(t0), np.sin(t0)], 1), np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], 1)])
    x = x - np.array([0.5, 0.25]) + noise * rng.standard_normal((n, 2))
    y = np.concatenate([np.zeros(n0), np.ones(n - n0)])
    return _finish(x, y, rng, 2)


def load_spirals(*, seed: int = 0, n: int = 1500, classes: int = 3, noise: float = 0.2):
    """Interleaved spiral arms, one per class (the CS231n toy problem). ``classes`` classes."""
    rng = np.random.default_rng(seed)
    per = n // classes
    xs, ys = [], []
    for c in range(classes):
        r = np.linspace(0.0, 1.0, per)
        t = np.linspace(c * 4.0, (c + 1) * 4.0, per) + noise * rng.standard_normal(per)
        xs.append(np.stack([r * np.sin(t), r * np.cos(t)], 1))
        ys.append(np.full(per, c))
    return _finish(np.concatenate(xs), np.concatenate(ys), rng, classes)
