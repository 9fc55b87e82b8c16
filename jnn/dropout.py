"""Dropout, with both conventions named: the lecture's ``"classic"`` rule and the usual ``"inverted"`` one.

The lecture: "during training, keep a neuron active w.p. p, delete otherwise; at test time use the
entire network with expected weights". A unit that is kept with probability p contributes p·a on
average, so:

============  =====================================  ==============================
mode          training (mask m ~ Bernoulli(p))        test time
============  =====================================  ==============================
``classic``   a ← m ⊙ a                               a ← p · a   (expected weights)
``inverted``  a ← m ⊙ a / p                           a ← a       (identity)
============  =====================================  ==============================

Both give the next layer the same expected pre-activation. Multiplying the activations of a layer by
p is the same as multiplying the outgoing weights by p, which is the lecture's "expected weights".
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

from jnn import _validate as V
from jnn import threefry
from jnn.types import ArrayLike, DTypeLike, PRNGKey

MODES = ("inverted", "classic")


@dataclass(frozen=True)
class Dropout:
    """Dropout configuration (hashable, so it can be a static argument of ``jax.jit``).

    Attributes:
        keep_prob: the lecture's p, the probability of *keeping* a unit, in (0, 1]. 1 disables dropout.
        mode: ``"inverted"`` (default; scale by 1/p while training) or ``"classic"`` (the lecture; scale
            by p at test time).
        on_inputs: also drop input features (with the same ``keep_prob``). Hidden units are always
            subject to dropout; the output layer never is.
    """

    keep_prob: float
    mode: str = "inverted"
    on_inputs: bool = False

    def __post_init__(self):
        # Inside compiled code a sweep passes keep_prob as a traced scalar (one value per member); it was
        # validated in Python before tracing, so only a concrete value is checked here.
        if V.is_concrete(self.keep_prob):
            p = V.check_real(
                "keep_prob",
                self.keep_prob,
                low=0.0,
                high=1.0,
                low_open=True,
                hint="keep_prob is the probability of keeping a unit (the lecture's p)",
            )
            object.__setattr__(self, "keep_prob", p)
        V.check_choice("mode", self.mode, MODES)
        if not isinstance(self.on_inputs, bool):
            raise TypeError(f"on_inputs must be a bool; got {self.on_inputs!r}")

    def factor(self, key: PRNGKey, layer: int, shape: tuple[int, ...], dtype: DTypeLike, *, train: bool):
        """The multiplier applied to the activations of one layer.

        Args:
            key: the dropout key of this forward pass (ignored at test time).
            layer: index of the layer whose activations are multiplied (0 = inputs, k = k-th hidden).
                The mask's key is ``fold_in(key, layer)``, so any function that asks for the same layer
                with the same key gets the same mask.
            shape: shape of the activations, e.g. ``[batch, width]``.
            dtype: dtype of the activations.
            train: training (random mask) or test (deterministic scale).

        Returns:
            An array of ``shape`` (training) or a scalar (test) to multiply the activations by.
        """
        p = self.keep_prob
        if not train:
            return jnp.asarray(p, dtype) if self.mode == "classic" else jnp.ones((), dtype)
        if isinstance(p, float) and p == 1.0:
            return jnp.ones(shape, dtype)
        return self.factor_from_mask(self.keep_mask(key, layer, shape), dtype)

    def keep_mask(self, key: PRNGKey, layer: int, shape: tuple[int, ...]):
        """The training mask of one layer: True where a unit is kept, each with probability ``keep_prob``.

        Args:
            key: the dropout key of this forward pass.
            layer: 0 = inputs, k = k-th hidden layer; the mask's key is ``fold_in(key, layer)``.
            shape: shape of the activations, e.g. ``[batch, width]``.

        Returns:
            A bool array of ``shape``. ``jax.vmap`` over keys draws the masks of many steps at once,
            bit for bit the masks that one call per step draws.
        """
        # bernoulli(p) is uniform < p, so p = 1 keeps every unit and the factor is exactly 1. jnn.threefry draws
        # jax.random.bernoulli's bits, faster.
        return threefry.bernoulli(jax.random.fold_in(key, layer), self.keep_prob, shape)

    def factor_from_mask(self, keep: ArrayLike, dtype: DTypeLike):
        """The training multiplier for a mask from ``keep_mask``: ``keep / p`` (inverted) or ``keep``.

        Args:
            keep: bool array, True where a unit is kept.
            dtype: dtype of the activations.

        Returns:
            An array of ``keep.shape`` and ``dtype``.
        """
        scale = 1.0 / jnp.asarray(self.keep_prob, dtype) if self.mode == "inverted" else jnp.ones((), dtype)
        return jnp.where(keep, scale, jnp.zeros((), dtype))

    def applies_to(self, layer: int) -> bool:
        """Whether activations of ``layer`` (0 = inputs) are subject to dropout."""
        return layer > 0 or self.on_inputs


def check_dropout(dropout, key, train) -> None:
    """Validate a ``(dropout, key, train)`` triple as passed to forward/loss/backprop functions."""
    if dropout is not None and not isinstance(dropout, Dropout):
        raise TypeError(f"dropout must be a jnn.Dropout(keep_prob, mode) or None; got {type(dropout).__name__}")
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool; got {train!r}")
    if train and dropout is not None and dropout.keep_prob < 1.0:
        if key is None:
            raise ValueError(
                "key is required when train=True with dropout (keep_prob="
                f"{dropout.keep_prob:g}); pass key=jax.random.key(seed) or train=False"
            )
        V.check_key("key", key)
