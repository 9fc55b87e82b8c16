"""Offline data sets: MNIST-1D (the default), scikit-learn's digits, and the synthetic xor, moons, spirals.

Every loader returns ``(train, test)`` ``jnn.data.Dataset`` objects with a documented split and
scaling; ``jnn.data.split`` carves the validation set from ``train``.
"""

from __future__ import annotations

from jnn.datasets.digits import load_digits
from jnn.datasets.mnist1d import load_mnist1d
from jnn.datasets.synthetic import load_moons, load_spirals, load_xor

#: name -> loader(seed) -> (train, test)
LOADERS = {
    "mnist1d": load_mnist1d,
    "digits": load_digits,
    "xor": load_xor,
    "moons": load_moons,
    "spirals": load_spirals,
}


def load(name: str, *, seed: int = 0):
    """Load a data set by name.

    Args:
        name: one of ``LOADERS`` (``mnist1d``, ``digits``, ``xor``, ``moons``, ``spirals``).
        seed: seed of the synthetic generators and of the digits split (MNIST-1D is fixed by its
            paper's arguments).

    Returns:
        ``(train, test)`` Datasets.

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    if not isinstance(name, str) or name not in LOADERS:
        raise ValueError(f"dataset must be one of {sorted(LOADERS)}; got {name!r}")
    return LOADERS[name](seed=seed)


__all__ = ["LOADERS", "load", "load_digits", "load_mnist1d", "load_xor", "load_moons", "load_spirals"]
