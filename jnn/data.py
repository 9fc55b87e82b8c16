"""Data for training: a validated ``Dataset``, keyed splits, and per-epoch minibatches drawn on device.

The lecture's step "pick randomly a batch of examples (x_i, y_i), i ∈ B, |B| = T < n" is done one
epoch at a time: a permutation of the n examples is drawn from the epoch's key and cut into
⌈n/T⌉ minibatches of T indices, drawn without replacement. The ragged last minibatch is padded to T
with indices from the start of the permutation and carries a 0/1 mask, so it has exactly the loss and
gradient of its real rows and every minibatch has the same shape (one compile), or it is dropped when
``drop_last=True``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jnn import _validate as V


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs and labels, validated on construction.

    Attributes:
        x: inputs ``[n, d_in]``, finite floats.
        y: labels ``[n]``: integer classes in ``[0, num_classes)`` (softmax) or 0/1 (binary).
        num_classes: number of classes (2 for binary tasks); inferred as ``max(y) + 1`` (at least 2)
            when omitted.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int | None = None

    def __post_init__(self):
        x = np.asarray(V.check_float_array("x", self.x, min_ndim=2))
        if x.ndim != 2:
            raise ValueError(f"x must be [n, d_in]; got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError("x must hold at least one example; got an empty array")
        y = np.asarray(V.as_array("y", self.y))
        if not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
            raise TypeError(f"y must hold integer class labels; got dtype {y.dtype}. "
                            "Convert float labels with y.astype(int) if they are whole numbers")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y must have shape [n] = ({x.shape[0]},) to match x; got {y.shape}")
        y = y.astype(np.int32)
        k = self.num_classes
        if k is None:
            k = max(int(y.max()) + 1, 2)
        k = V.check_int("num_classes", k, low=2)
        if y.min() < 0 or y.max() >= k:
            raise ValueError(f"y must hold labels in [0, {k - 1}] for num_classes={k}; got values in "
                             f"[{int(y.min())}, {int(y.max())}]")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "num_classes", k)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx) -> Dataset:
        """The examples at ``idx`` (a NumPy index array), same ``num_classes``."""
        return Dataset(self.x[idx], self.y[idx], self.num_classes)


def split(ds: Dataset, fractions, *, key, stratify: bool = True) -> tuple[Dataset, ...]:
    """Split a data set at random into parts of the given fractions.

    Args:
        ds: the data set.
        fractions: e.g. ``(0.8, 0.2)``; positive, summing to 1 (within 1e-9).
        key: PRNG key; the same key gives the same split.
        stratify: keep the class proportions in every part (each class is split separately).

    Returns:
        One :class:`Dataset` per fraction, each non-empty.

    Raises:
        ValueError: on bad fractions or when a part would be empty.
    """
    key = V.check_key("key", key)
    fr = [V.check_real(f"fractions[{i}]", f, low=0.0, high=1.0, low_open=True) for i, f in enumerate(fractions)]
    if len(fr) < 2 or abs(sum(fr) - 1.0) > 1e-9:
        raise ValueError(f"fractions must have at least two entries summing to 1; got {list(fractions)}")
    n = len(ds)
    perm = np.asarray(jax.random.permutation(key, n))
    groups = [perm[ds.y[perm] == c] for c in range(ds.num_classes)] if stratify else [perm]
    parts: list[list[np.ndarray]] = [[] for _ in fr]
    for g in groups:
        bounds = np.round(np.cumsum([0.0] + fr) * len(g)).astype(int)
        for i in range(len(fr)):
            parts[i].append(g[bounds[i]:bounds[i + 1]])
    out = []
    for i, p in enumerate(parts):
        idx = np.sort(np.concatenate(p))
        if idx.size == 0:
            raise ValueError(f"split part {i} (fraction {fr[i]:g} of {n} examples) would be empty")
        out.append(ds.subset(idx))
    return tuple(out)


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Minibatches per epoch: ⌈n/T⌉, or ⌊n/T⌋ with ``drop_last``."""
    return n // batch_size if drop_last else math.ceil(n / batch_size)


def epoch_batches(key, n: int, batch_size: int, drop_last: bool = False):
    """Indices and masks of one epoch's minibatches, drawn on device (jit-able; n and T static).

    Args:
        key: the epoch's data key.
        n: number of examples.
        batch_size: T.
        drop_last: drop the ragged last minibatch instead of padding it.

    Returns:
        ``(idx, mask)``: ``idx [steps, T]`` int32 indices into the data set (no index twice among the
        real rows of an epoch) and ``mask [steps, T]`` bool, False on the padding of the last minibatch.
    """
    steps = num_batches(n, batch_size, drop_last)
    total = steps * batch_size
    perm = jax.random.permutation(key, n).astype(jnp.int32)
    if total > n:
        perm = jnp.concatenate([perm, perm[: total - n]])
    else:
        perm = perm[:total]
    mask = jnp.arange(total) < n
    return perm.reshape(steps, batch_size), mask.reshape(steps, batch_size)
