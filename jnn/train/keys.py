"""The named PRNG streams of a run, all derived from one seed."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Keys(NamedTuple):
    """A run's four independent streams, split once from ``jax.random.key(seed)``.

    Attributes:
        init: initial params (``task.init(keys.init)``).
        data: per-epoch permutations (epoch e uses ``fold_in(data, e)``).
        dropout: the model's randomness (step s uses ``fold_in(dropout, s)``).
        split: the validation split carved from the training data.
    """

    init: jax.Array
    data: jax.Array
    dropout: jax.Array
    split: jax.Array

    @classmethod
    def from_seed(cls, seed: int, prng_impl: str = "threefry2x32") -> Keys:
        """The streams of ``seed``.

        With ``prng_impl="rbg"`` the data and dropout streams become RBG keys whose key data are drawn from
        the threefry streams, so init and split stay the same and only the per-step random bits change
        generator.
        """
        k_init, k_data, k_dropout, k_split = jax.random.split(jax.random.key(seed), 4)
        if prng_impl != "threefry2x32":
            shape = jax.random.key_data(jax.random.key(0, impl=prng_impl)).shape
            k_data, k_dropout = (
                jax.random.wrap_key_data(jax.random.bits(k, shape, jnp.uint32), impl=prng_impl)
                for k in (k_data, k_dropout)
            )
        return cls(k_init, k_data, k_dropout, k_split)
