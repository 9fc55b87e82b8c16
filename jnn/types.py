"""Type aliases used at jnn's public boundaries (jaxtyping shapes are documentation and lint aids)."""

from __future__ import annotations

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
