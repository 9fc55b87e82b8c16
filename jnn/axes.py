"""How a sweep's axes combine into members: a grid by default, pairs only when asked.

``sweep(train, keep_prob=[0.7, 0.8, 0.9], seed=[0, 1, 2])`` trains the grid it reads as: 9 members, every
keep_prob with every seed. Axes pair up one to one (3 members: the first keep_prob with the first seed, ...) only
when the call says so: ``combine="zip"`` pairs every list axis, and ``zipped`` pairs some axes inside a grid
of the others::

    sweep(train, **zipped(learning_rate=[0.1, 0.03], batch_size=[128, 32]), seed=[0, 1, 2])  # 2 pairs x 3 seeds

``grid`` gives the Cartesian product as equal-length member lists (``grid(seed=[0, 1], l2=[0.0, 1e-4])`` has
4 values per axis) marked as already combined, so ``sweep(train, **grid(...))`` trains those 4 members under
either rule. A random search's draws (``samples=N``) form one block of N members the same way: a list axis beside
them is a grid axis (each draw with every value, as in Ray Tune's ``grid_search`` with ``num_samples``) unless
``combine="zip"``, where it holds one value per draw.

Members are listed in the order of the blocks' first axes, the first slowest (as ``itertools.product``).
"""

from __future__ import annotations

import itertools

import numpy as np

#: The ways plain list axes combine (``sweep(..., combine=)``).
COMBINE = ("grid", "zip")


class Joint(list):
    """The values of one axis of axes already combined into members (by ``grid``, ``zipped`` or a random
    search's draws): the axes that carry the same ``block`` move together, one member per position."""

    def __init__(self, values, block: object):
        super().__init__(values)
        self.block = block


def _names(axes: dict) -> list[str]:
    for n in axes:
        if not isinstance(n, str) or not n.isidentifier():
            raise ValueError(f"sweep axis names must be identifiers such as 'l2'; got {n!r}")
    return list(axes)


def grid(**axes) -> dict[str, list]:
    """The Cartesian product of axes, as equal-length member lists (the first axis slowest).

    Example:
        >>> grid(seed=[0, 1], l2=[0.0, 1e-4])
        {'seed': [0, 0, 1, 1], 'l2': [0.0, 0.0001, 0.0, 0.0001]}

    Returns:
        ``{axis: values}``, each a list of ``prod(len(axis))`` values marked as one combined block, so that a sweep
        trains exactly these members (``sweep(train, **grid(...))``) and combines them with its other axes as one
        axis.
    """
    names = _names(axes)
    combos = list(itertools.product(*(list(axes[n]) for n in names)))
    block = object()
    return {n: Joint([c[i] for c in combos], block) for i, n in enumerate(names)}


def zipped(**axes) -> dict[str, list]:
    """Axes paired one to one (all the same length): member ``i`` takes the ``i``-th value of each.

    Example:
        >>> zipped(learning_rate=[0.1, 0.03], batch_size=[128, 32])
        {'learning_rate': [0.1, 0.03], 'batch_size': [128, 32]}

    Returns:
        ``{axis: values}`` marked as one block: a sweep combines it with its other axes as one axis (a grid of the
        pairs with the others unless ``combine="zip"``).

    Raises:
        ValueError: the axes have different lengths.
    """
    names = _names(axes)
    lengths = {n: _length(n, axes[n]) for n in names}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"zipped axes pair one to one and need the same length; got lengths {lengths}")
    block = object()
    return {n: Joint(list(axes[n]), block) for n in names}


def _length(name: str, values) -> int:
    if not isinstance(values, (list, tuple, np.ndarray)) or len(values) == 0:
        raise ValueError(f"sweep axis {name!r} must be a non-empty list of values; got {values!r}")
    return len(values)


def combine(axes: dict, how: str = "grid") -> dict[str, list]:
    """The members' axes: ``{axis: [value per member]}``, all of one length.

    Args:
        axes: ``{axis: list}``; values of ``Joint`` blocks (``grid``, ``zipped``, a search's draws)
            move together.
        how: ``"grid"``: every block and every other list axis is one axis of a Cartesian product; ``"zip"``:
            the plain lists pair one to one (with each other and with the blocks; all must have one length).

    Raises:
        ValueError: ``how`` not in ``COMBINE``, an empty or non-list axis, or (``"zip"``) unequal lengths.
    """
    if how not in COMBINE:
        raise ValueError(f"combine must be one of {list(COMBINE)}; got {how!r}")
    names = _names(axes)
    lengths = {n: _length(n, axes[n]) for n in names}
    blocks: dict[object, list[str]] = {}
    for n in names:
        v = axes[n]
        key = v.block if isinstance(v, Joint) else ("zip" if how == "zip" else n)
        blocks.setdefault(key, []).append(n)
    if how == "zip":
        if len(set(lengths.values())) != 1:
            raise ValueError(
                f"with combine='zip' the axes pair one to one and need the same length; got lengths {lengths}. "
                "Leave combine at 'grid' for a Cartesian product"
            )
        return {n: list(axes[n]) for n in names}
    for members in blocks.values():
        own = {lengths[n] for n in members}
        if len(own) != 1:
            raise ValueError(f"axes {members} were combined into one block but have lengths "
                             f"{ {n: lengths[n] for n in members} }")  # fmt: skip
    order = list(blocks.values())
    combos = list(itertools.product(*(range(lengths[b[0]]) for b in order)))
    out = {}
    for j, members in enumerate(order):
        for n in members:
            vals = list(axes[n])
            out[n] = [vals[c[j]] for c in combos]
    return {n: out[n] for n in names}


__all__ = ["COMBINE", "Joint", "combine", "grid", "zipped"]
