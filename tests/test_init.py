import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn.init import SCHEMES


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_shapes_dtype_and_forward_shapes_agree(scheme):
    sizes = [5, 7, 3, 2]
    params = jnn.init_mlp(jax.random.key(0), sizes, scheme=scheme)
    assert [(l["w"].shape, l["b"].shape) for l in params] == [((5, 7), (7,)), ((7, 3), (3,)), ((3, 2), (2,))]
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(params))
    assert jnn.forward(params, jnp.ones((4, 5))).shape == (4, 2)


def test_float64_params(x64):
    params = jnn.init_mlp(jax.random.key(0), [3, 2], dtype="float64")
    assert params[0]["w"].dtype == jnp.float64


def test_float64_without_x64_mode_is_refused():
    with pytest.raises(ValueError, match="float64_mode"):
        jnn.init_mlp(jax.random.key(0), [3, 2], dtype="float64")


def test_same_key_same_params_different_key_different_params():
    a = jnn.init_mlp(jax.random.key(1), [4, 4, 2])
    b = jnn.init_mlp(jax.random.key(1), [4, 4, 2])
    c = jnn.init_mlp(jax.random.key(2), [4, 4, 2])
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not np.array_equal(a[0]["w"], c[0]["w"])


@pytest.mark.parametrize("scheme,var", [
    ("lecun_normal", lambda i, o: 1 / i),
    ("he_normal", lambda i, o: 2 / i),
    ("glorot_uniform", lambda i, o: 2 / (i + o)),  # U(±√(6/(i+o))) has variance 2/(i+o)
    ("uniform", lambda i, o: 1 / (3 * i)),  # U(±1/√i) has variance 1/(3i)
])
def test_weight_variance_matches_the_scheme(scheme, var):
    fan_in, fan_out = 400, 300
    w = np.asarray(jnn.init_mlp(jax.random.key(3), [fan_in, fan_out], scheme=scheme)[0]["w"])
    assert abs(w.mean()) < 0.02 * np.sqrt(var(fan_in, fan_out))
    assert w.var() == pytest.approx(var(fan_in, fan_out), rel=0.03)


def test_biases_zero_except_uniform_scheme():
    assert np.all(np.asarray(jnn.init_mlp(jax.random.key(0), [3, 4])[0]["b"]) == 0)
    b = np.asarray(jnn.init_mlp(jax.random.key(0), [9, 400], scheme="uniform")[0]["b"])
    assert np.all(np.abs(b) <= 1 / 3) and b.std() > 0.1


@pytest.mark.parametrize("sizes,exc,match", [
    ([3], ValueError, "at least two entries"),
    ([3, 0, 2], ValueError, r"sizes\[1\] must be a positive int; got 0"),
    ([3, -1], ValueError, r"sizes\[1\] must be a positive int; got -1"),
    ([3, 2.5], TypeError, r"sizes\[1\] must be a positive int; got 2.5"),
    ([3, True], TypeError, r"sizes\[1\] must be a positive int"),
    ("32", TypeError, "sizes must be a sequence"),
    (7, TypeError, "sizes must be a sequence"),
])
def test_bad_sizes(sizes, exc, match):
    with pytest.raises(exc, match=match):
        jnn.init_mlp(jax.random.key(0), sizes)


def test_bad_scheme_dtype_and_key():
    with pytest.raises(ValueError, match=r"scheme must be one of .*lecun_normal.*got 'xavier'"):
        jnn.init_mlp(jax.random.key(0), [2, 2], scheme="xavier")
    with pytest.raises(TypeError, match="dtype must be a floating dtype.*int32"):
        jnn.init_mlp(jax.random.key(0), [2, 2], dtype="int32")
    with pytest.raises(TypeError, match="key must be a PRNG key"):
        jnn.init_mlp(0, [2, 2])


def test_raw_uint32_key_is_accepted():
    params = jnn.init_mlp(jax.random.PRNGKey(0), [2, 3])
    assert params[0]["w"].shape == (2, 3)
