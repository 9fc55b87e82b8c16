import builtins

import jax
import numpy as np
import pytest

from jnn.data import Dataset, epoch_batches, num_batches, split
from jnn.datasets import LOADERS, load


def _ds(n=50, d=3, k=3, seed=0):
    rng = np.random.default_rng(seed)
    return Dataset(rng.standard_normal((n, d)).astype(np.float32), rng.integers(0, k, n), k)


def test_epoch_batches_cover_every_example_once_and_pad_with_a_mask():
    n, t = 23, 5
    idx, mask = epoch_batches(jax.random.key(0), n, t)
    idx, mask = np.asarray(idx), np.asarray(mask)
    assert idx.shape == (5, 5) and mask.shape == (5, 5)
    assert sorted(idx[mask].tolist()) == list(range(n))  # without replacement: each example once
    assert mask.sum() == n and not mask[-1, 3:].any() and mask[:-1].all()
    assert np.all((idx >= 0) & (idx < n))


def test_drop_last_and_exact_division():
    idx, mask = epoch_batches(jax.random.key(0), 23, 5, drop_last=True)
    assert idx.shape == (4, 5) and bool(np.asarray(mask).all()) and len(set(np.asarray(idx).ravel())) == 20
    assert num_batches(20, 5) == 4 and num_batches(23, 5) == 5 and num_batches(23, 5, True) == 4


def test_epochs_are_reshuffled_and_keyed():
    a, _ = epoch_batches(jax.random.key(0), 30, 10)
    b, _ = epoch_batches(jax.random.key(0), 30, 10)
    c, _ = epoch_batches(jax.random.key(1), 30, 10)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_split_is_stratified_keyed_and_disjoint():
    ds = Dataset(np.arange(200, dtype=np.float32)[:, None], np.repeat([0, 1, 2, 3], 50), 4)
    tr, va = split(ds, (0.8, 0.2), key=jax.random.key(3))
    assert len(tr) == 160 and len(va) == 40
    assert np.bincount(va.y, minlength=4).tolist() == [10, 10, 10, 10]
    assert not set(tr.x[:, 0]) & set(va.x[:, 0])
    tr2, va2 = split(ds, (0.8, 0.2), key=jax.random.key(3))
    np.testing.assert_array_equal(va.x, va2.x)


@pytest.mark.parametrize(
    "x,y,k,exc,match",
    [
        (
            np.zeros((3, 2), np.float32),
            np.array([0, 1]),
            None,
            ValueError,
            r"y must have shape \[n\] or \[n, k\] with n = 3",
        ),
        (np.array([[0.0, np.nan]], np.float32), np.array([0]), None, ValueError, "x must be finite; got 1 NaN/Inf"),
        (np.zeros((2, 2), np.int64), np.array([0, 1]), None, TypeError, "x must be a floating-point array"),
        (np.zeros((0, 2), np.float32), np.zeros(0, int), None, ValueError, "at least one example"),
        (np.zeros((2, 2), np.float32), np.array([0, 3]), 3, ValueError, r"labels in \[0, 2\] for num_classes=3"),
        (np.zeros((2, 2), np.float32), np.array([0, -1]), None, ValueError, r"labels in \[0, 1\]"),
        (
            np.zeros((2, 2), np.float32),
            np.array(["a", "b"]),
            None,
            TypeError,
            "y must hold integer class labels, float",
        ),
        (np.zeros((2, 2), np.float32), np.array([0.5, 1.0]), 2, ValueError, "num_classes is for integer class labels"),
        (np.zeros((2, 2), np.float32), np.array([[0, 2], [1, 0]]), None, ValueError, "must be 0/1"),
        (np.zeros((2, 2), np.float32), np.array([0.5, np.inf]), None, ValueError, "y must be finite"),
        (np.zeros(4, np.float32), np.array([0, 1, 0, 1]), None, ValueError, "at least 2 dimension"),
    ],
)
def test_dataset_validation(x, y, k, exc, match):
    with pytest.raises(exc, match=match):
        Dataset(x, y, k)


def test_split_errors():
    ds = _ds(n=4)
    with pytest.raises(ValueError, match="summing to 1"):
        split(ds, (0.5, 0.3), key=jax.random.key(0))
    with pytest.raises(ValueError, match="would be empty"):
        split(_ds(n=3, k=3), (0.9, 0.1), key=jax.random.key(0), stratify=False)


def test_loaders_are_deterministic_and_shaped():
    for name in ("xor", "moons", "spirals"):
        a, at = load(name, seed=1)
        b, _ = load(name, seed=1)
        np.testing.assert_array_equal(a.x, b.x)
        assert a.x.dtype == np.float32 and a.x.shape[1] == 2 and len(a) > len(at) > 0
    with pytest.raises(ValueError, match=r"dataset must be one of \['digits', 'mnist1d', 'moons', 'spirals', 'xor'\]"):
        load("mnist")
    assert set(LOADERS) == {"mnist1d", "digits", "xor", "moons", "spirals"}


def test_mnist1d_is_generated_offline_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("JNN_CACHE_DIR", str(tmp_path))
    state = np.random.get_state()[1].copy()
    train, test = load("mnist1d")
    assert train.x.shape == (4000, 40) and test.x.shape == (1000, 40) and train.num_classes == 10
    assert abs(float(train.x.mean())) < 0.1 and sorted(set(train.y.tolist())) == list(range(10))
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # NumPy's global RNG left alone
    assert (tmp_path / "mnist1d-v0.0.2-seed42.npz").exists()
    again, _ = load("mnist1d")  # from the cache
    np.testing.assert_array_equal(again.x, train.x)
    # The mnist1d package is an extra: without it, the cached file still loads, and a missing cache says
    # which extra to install.
    real_import = builtins.__import__

    def no_mnist1d(name, *args, **kwargs):
        if name.startswith("mnist1d"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mnist1d)
    cached, _ = load("mnist1d")
    np.testing.assert_array_equal(cached.x, train.x)
    monkeypatch.setenv("JNN_CACHE_DIR", str(tmp_path / "empty"))
    with pytest.raises(ImportError, match=r"pip install 'jnn\[mnist1d\]'"):
        load("mnist1d")


def test_digits_split_and_scaling():
    train, test = load("digits")
    assert (len(train), len(test)) == (1347, 450) and train.x.shape[1] == 64
    assert train.x.min() >= 0.0 and train.x.max() <= 1.0 and train.x.dtype == np.float32
    frac = np.bincount(test.y, minlength=10) / np.bincount(np.concatenate([train.y, test.y]), minlength=10)
    assert np.all(np.abs(frac - 0.25) < 0.02)  # stratified 75/25
