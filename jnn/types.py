"""Type aliases used at jnn's public boundaries (jaxtyping shapes are documentation and lint aids)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import jax
from jaxtyping import Array, Float, Int

#: One dense layer: ``w`` is ``[d_in, d_out]`` and ``b`` is ``[d_out]``; the layer computes ``z = x @ w + b``.
Layer: TypeAlias = dict[str, Float[Array, "..."]]
#: The network's parameters θ: one ``Layer`` per affine map, input to output.
Params: TypeAlias = list[Layer]
#: A PRNG key: a typed key from ``jax.random.key(seed)`` or a raw ``uint32[2]`` from ``PRNGKey``.
PRNGKey: TypeAlias = jax.Array
#: Inputs ``[batch, d_in]``.
Inputs: TypeAlias = Float[Array, "batch d_in"]
#: Logits ``[batch, d_out]`` (binary tasks may use ``[batch]``).
Logits: TypeAlias = Float[Array, "batch d_out"]
#: Integer class labels ``[batch]``, one-hot/probability targets ``[batch, classes]`` or binary ``{0,1}``.
Labels: TypeAlias = Int[Array, "batch"] | Float[Array, "batch ..."]  # noqa: F821 (jaxtyping shape string)
#: Any pytree.
PyTree: TypeAlias = Any
#: An array or what converts to one: a NumPy array, a JAX array, a nested list or a scalar.
ArrayLike: TypeAlias = Any
#: A dtype or its name: ``jnp.float32``, ``"float64"``, ``np.dtype("float32")``.
DTypeLike: TypeAlias = Any
#: A file or folder path.
PathLike: TypeAlias = str | os.PathLike
#: Per-class loss weights: ``"balanced"``, ``{class: weight}`` or one weight per class.
ClassWeight: TypeAlias = str | Mapping[Any, float] | Sequence[float]
