"""The unrolled Threefry draw of dropout masks is jax.random.bernoulli bit for bit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnn.threefry import bernoulli


@pytest.mark.parametrize("shape", [(100, 256), (7,), (3, 5, 11), (1,), (2, 0)])
@pytest.mark.parametrize("p", [0.8, 0.5, 0.123456, 1.0, 0.0, 1e-8])
def test_the_masks_are_jax_random_bernoulli_bit_for_bit(shape, p):
    for key in jax.random.split(jax.random.key(3), 6):
        want = jax.random.bernoulli(key, jnp.float32(p), shape)
        got = bernoulli(key, jnp.float32(p), shape)
        assert got.shape == want.shape and got.dtype == want.dtype and np.array_equal(got, want)


def test_the_same_under_jit_vmap_and_fold_in_as_dropout_draws_them():
    key, p = jax.random.key(11), jnp.float32(0.7)

    def draws(fn):
        step = lambda s: jax.vmap(lambda layer: fn(jax.random.fold_in(jax.random.fold_in(key, s), layer), p, (40,)))
        return jax.jit(jax.vmap(lambda s: step(s)(jnp.arange(3))))(jnp.arange(5))

    assert np.array_equal(draws(bernoulli), draws(jax.random.bernoulli))
    ps = jnp.asarray([0.1, 0.5, 0.9], jnp.float32)  # a probability per member, as in a sweep
    keys = jax.random.split(key, 3)
    assert np.array_equal(jax.vmap(lambda k, q: bernoulli(k, q, (64,)))(keys, ps),
                          jax.vmap(lambda k, q: jax.random.bernoulli(k, q, (64,)))(keys, ps))  # fmt: skip


def test_float64_draws_64_bits_like_jax():
    with jax.enable_x64(True):
        for key in jax.random.split(jax.random.key(5), 4):
            p = jnp.float64(0.3)
            assert np.array_equal(bernoulli(key, p, (33, 7)), jax.random.bernoulli(key, p, (33, 7)))


def test_a_python_float_probability_takes_the_dtype_jax_gives_it():
    key = jax.random.key(2)
    assert np.array_equal(bernoulli(key, 0.8, (300,)), jax.random.bernoulli(key, 0.8, (300,)))
    with jax.enable_x64(True):
        assert np.array_equal(bernoulli(key, 0.8, (300,)), jax.random.bernoulli(key, 0.8, (300,)))


def test_keys_it_does_not_cover_go_to_jax_itself():
    rbg = jax.random.key(0, impl="rbg")
    assert np.array_equal(bernoulli(rbg, jnp.float32(0.6), (50,)), jax.random.bernoulli(rbg, jnp.float32(0.6), (50,)))
    key = jax.random.key(1)
    half = jnp.asarray(0.4, jnp.bfloat16)
    assert np.array_equal(bernoulli(key, half, (50,)), jax.random.bernoulli(key, half, (50,)))


def test_the_keep_rate_is_p():
    mask = bernoulli(jax.random.key(0), jnp.float32(0.8), (1000, 1000))
    assert abs(float(mask.mean()) - 0.8) < 5 * np.sqrt(0.8 * 0.2 / 1e6)
