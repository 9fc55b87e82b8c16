"""scikit-learn's ``load_digits``: 1797 8×8 images of handwritten digits (10 classes), offline.

Split: 75% train / 25% test, stratified, keyed by ``seed`` (default 0). Scaling: pixel values 0–16
are divided by 16, so every feature lies in [0, 1]. Needs scikit-learn, the ``digits`` extra:
``pip install 'jnn[digits]'``.
"""

from __future__ import annotations

import jax
import numpy as np

from jnn.data import Dataset, split


def load_digits(*, seed: int = 0):
    """Digits as ``(train, test)``: 1347 and 450 examples, ``x`` float32 ``[n, 64]`` in [0, 1].

    Args:
        seed: seed of the stratified 75/25 split.

    Raises:
        ImportError: when scikit-learn is missing; the message names the extra to install.
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise ImportError(
            "the digits data set needs scikit-learn: pip install 'jnn[digits]' (or pip install scikit-learn)"
        ) from None
    d = sk_load_digits()
    ds = Dataset((d.data / 16.0).astype(np.float32), d.target.astype(np.int32), 10)
    return split(ds, (0.75, 0.25), key=jax.random.key(seed), stratify=True)
