"""Rows of stacked members: stack them, take some or one, put them back; each one compiled call over the whole
pytree.

A sweep's state and epoch arrays hold its members on a leading axis. Re-packing the running members
(``jnn.train.repacking``) and handing each member to its own program in a thread
(``jnn.train.member_threads``) move rows of every leaf; done leaf by leaf in eager mode, each leaf's shape
compiles its own small gather (dozens of them, about a second in all on a 2-core CPU), so here each move is one
jitted function of the whole tree.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


@jax.jit
def take(tree, at):
    """``tree`` with each leaf's rows ``at`` (``[k]`` ints), in that order: leaves ``[M, ...] -> [k, ...]``."""
    return jax.tree.map(lambda a: a[at], tree)


@jax.jit
def put(full, at, sub):
    """``full`` with rows ``at`` replaced by the rows of ``sub`` (leaves ``[M, ...]`` and ``[len(at), ...]``)."""
    return jax.tree.map(lambda f, s: f.at[at].set(s), full, sub)


@jax.jit
def stack(trees):
    """One tree whose leaves stack the leaves of ``trees`` (a list of trees of one structure) on a new leading
    axis: ``M x [...] -> [M, ...]``."""
    return jax.tree.map(lambda *a: jnp.stack([jnp.asarray(x) for x in a]), *trees)


@jax.jit
def row(tree, i):
    """Member ``i``'s row of every leaf (``[M, ...] -> [...]``): what one member's own program takes."""
    return jax.tree.map(lambda a: a[i], tree)


def _set_row(full, i, sub):
    return jax.tree.map(lambda f, s: f.at[i].set(s), full, sub)


#: ``set_row(full, i, sub)``: ``full`` with member ``i``'s row of every leaf set from ``sub``; ``set_row_in_place``
#: the same, donating ``full`` (its buffers are updated in place; ``full`` is invalid afterwards).
set_row = jax.jit(_set_row)
set_row_in_place = jax.jit(_set_row, donate_argnums=0)


__all__ = ["put", "row", "set_row", "set_row_in_place", "stack", "take"]
