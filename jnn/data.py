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
import os
from collections.abc import Sequence
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jnn import _validate as V
from jnn.disk import DiskArray, RowSource, check_finite
from jnn.types import ArrayLike, PRNGKey

#: Largest number of classes (the output layer has one unit per class).
MAX_CLASSES = 1 << 20


@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs and targets, validated on construction.

    The kind of targets follows from ``y``:

    - integer (or bool) ``[n]``: class labels in ``[0, num_classes)`` (softmax or binary losses);
    - float ``[n]`` or ``[n, k]``: real-valued targets (regression, e.g. ``loss="mse"``), stored in the
      dtype of ``x``;
    - integer/bool ``[n, k]``: multi-label targets in {0, 1} (``loss="multilabel"``).

    Which targets a loss accepts is checked when training starts (``jnn.task.check_task``).

    Attributes:
        x: inputs ``[n, d_in]``, finite floats: an array, or rows kept out of memory (a
            ``jnn.disk.RowSource`` such as a ``jnn.disk.DiskArray``, an ``np.memmap`` of a ``.npy``, or
            the file's path): checked in chunks, subsets are index arrays, ``jnn.fit`` streams its minibatches.
        y: targets as above.
        num_classes: number of classes (2 for binary tasks) for class labels, inferred as ``max(y) + 1``
            (at least 2) when omitted; None for other targets.
        sample_weight: optional ``[n]`` non-negative finite example weights: each example's loss counts
            with its weight (the loss is the weighted mean, see ``jnn.losses.masked_mean``).
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int | None = None
    sample_weight: np.ndarray | None = None

    def __post_init__(self):
        if isinstance(self.x, (str, os.PathLike)) and str(self.x).lower().endswith(".npy"):
            object.__setattr__(self, "x", DiskArray(self.x))  # a path: the file stays on disk
        if isinstance(self.x, (RowSource, np.memmap)):  # stays out of memory: checked in chunks, never copied
            x = DiskArray.of(self.x)
            if not np.issubdtype(x.dtype, np.floating):
                raise TypeError(f"x must be a floating-point array (float32 or float64); got dtype {x.dtype} in {x!r}")
            check_finite(x, "x")
        else:
            x = np.asarray(V.check_float_array("x", self.x, min_ndim=2))
        if x.ndim != 2:
            raise ValueError(f"x must be [n, d_in]; got shape {x.shape}")
        if x.shape[0] == 0:
            raise ValueError("x must hold at least one example; got an empty array")
        y = np.asarray(V.as_array("y", self.y))
        if y.ndim not in (1, 2) or y.shape[0] != x.shape[0]:
            raise ValueError(f"y must have shape [n] or [n, k] with n = {x.shape[0]} to match x; got {y.shape}")
        integral = np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_
        if not integral and not np.issubdtype(y.dtype, np.floating):
            raise TypeError(
                f"y must hold integer class labels, float targets or 0/1 multi-label targets; got dtype {y.dtype}"
            )
        k = self.num_classes
        if integral and y.ndim == 1:
            lo, hi = int(y.min()), int(y.max())  # in y's own dtype: no label wraps before it is checked
            if k is None:
                if hi >= MAX_CLASSES:
                    raise ValueError(f"y holds labels up to {hi}; class labels must be in [0, {MAX_CLASSES - 1}] "
                                     "(num_classes is inferred as max(y) + 1)")  # fmt: skip
                k = max(hi + 1, 2)
            k = V.check_int("num_classes", k, low=2, high=MAX_CLASSES)
            if lo < 0 or hi >= k:
                raise ValueError(f"y must hold labels in [0, {k - 1}] for num_classes={k}; got values in [{lo}, {hi}]")
            y = y.astype(np.int32)
        else:
            if k is not None:
                raise ValueError(
                    f"num_classes is for integer class labels y [n]; y is {y.dtype} of shape {y.shape}, "
                    "so it must be None"
                )
            if integral:
                if np.any((y != 0) & (y != 1)):
                    raise ValueError(
                        f"integer y of shape [n, k] holds multi-label targets and must be 0/1; got values "
                        f"in [{int(y.min())}, {int(y.max())}]"
                    )
                y = y.astype(np.int32)
            else:
                y = np.asarray(V.check_float_array("y", y)).astype(x.dtype)
        w = self.sample_weight
        if w is not None:
            w = np.asarray(V.check_float_array("sample_weight", w)).astype(x.dtype)
            if w.shape != (x.shape[0],):
                raise ValueError(f"sample_weight must have shape [n] = ({x.shape[0]},); got {w.shape}")
            if np.any(w < 0) or not np.any(w > 0):
                raise ValueError(
                    f"sample_weight must be >= 0 with at least one positive weight; got values in "
                    f"[{w.min():g}, {w.max():g}]"
                )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "num_classes", k)
        object.__setattr__(self, "sample_weight", w)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def targets(self) -> str:
        """``"class labels"``, ``"real targets"`` or ``"multi-label targets"`` (see the class docstring)."""
        if self.num_classes is not None:
            return "class labels"
        return "real targets" if np.issubdtype(self.y.dtype, np.floating) else "multi-label targets"

    def subset(self, idx: ArrayLike) -> Dataset:
        """The examples at ``idx`` (a NumPy index array), same ``num_classes``."""
        w = None if self.sample_weight is None else self.sample_weight[idx]
        return Dataset(self.x[idx], self.y[idx], self.num_classes, w)


def split(ds: Dataset, fractions: Sequence[float], *, key: PRNGKey, stratify: bool = True) -> tuple[Dataset, ...]:
    """Split a data set at random into parts of the given fractions.

    Args:
        ds: the data set.
        fractions: e.g. ``(0.8, 0.2)``; positive, summing to 1 (within 1e-9).
        key: PRNG key; the same key gives the same split.
        stratify: keep the class proportions in every part (each class is split separately); ignored
            for targets that are not class labels.

    Returns:
        One ``Dataset`` per fraction, each non-empty.

    Raises:
        ValueError: on bad fractions or when a part would be empty.
    """
    key = V.check_key("key", key)
    fr = [V.check_real(f"fractions[{i}]", f, low=0.0, high=1.0, low_open=True) for i, f in enumerate(fractions)]
    if len(fr) < 2 or abs(sum(fr) - 1.0) > 1e-9:
        raise ValueError(f"fractions must have at least two entries summing to 1; got {list(fractions)}")
    n = len(ds)
    perm = np.asarray(jax.random.permutation(key, n))
    groups = [perm[ds.y[perm] == c] for c in range(ds.num_classes)] if stratify and ds.num_classes else [perm]
    parts: list[list[np.ndarray]] = [[] for _ in fr]
    for g in groups:
        bounds = np.round(np.cumsum([0.0] + fr) * len(g)).astype(int)
        for i in range(len(fr)):
            parts[i].append(g[bounds[i] : bounds[i + 1]])
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
