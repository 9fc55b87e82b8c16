"""Small pytree helpers: readable leaf paths such as ``layers[1].w``."""

from __future__ import annotations

import jax
from jax.tree_util import DictKey, GetAttrKey, SequenceKey


def path_str(path, root: str = "layers") -> str:
    """Format a pytree key path: ``(SequenceKey(1), DictKey('w'))`` -> ``layers[1].w``.

    Args:
        path: a key path from ``jax.tree_util.tree_flatten_with_path``.
        root: the name printed before a leading sequence index.
    """
    out = ""
    for i, k in enumerate(path):
        if isinstance(k, SequenceKey):
            out += f"{root if i == 0 else ''}[{k.idx}]"
        elif isinstance(k, DictKey):
            out += f"{'.' if out else ''}{k.key}"
        elif isinstance(k, GetAttrKey):
            out += f"{'.' if out else ''}{k.name}"
        else:
            out += str(k)
    return out or root


def named_leaves(tree, root: str = "layers") -> list[tuple[str, object]]:
    """``[(path_str, leaf), ...]`` in flattening order."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(path_str(p, root), leaf) for p, leaf in flat]


def leaf_names(tree) -> list[tuple[str, object]]:
    """``[(name, leaf), ...]`` naming each leaf as a user would write its path.

    The built-in MLP's list of ``{"w", "b"}`` dicts reads ``layers[1].w``; any other pytree reads as its
    indexing expression, e.g. ``['blocks'][1]['w']``.
    """
    if isinstance(tree, list) and tree and all(isinstance(l, dict) and set(l) == {"w", "b"} for l in tree):
        return named_leaves(tree)
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(p) or "params", leaf) for p, leaf in flat]
