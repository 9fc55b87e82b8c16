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


@pytest.mark.parametrize(
    "scheme,var",
    [
        ("lecun_normal", lambda i, o: 1 / i),
        ("he_normal", lambda i, o: 2 / i),
        ("glorot_uniform", lambda i, o: 2 / (i + o)),  # U(±√(6/(i+o))) has variance 2/(i+o)
        ("uniform", lambda i, o: 1 / (3 * i)),  # U(±1/√i) has variance 1/(3i)
    ],
)
def test_weight_variance_matches_the_scheme(scheme, var):
    fan_in, fan_out = 400, 300
    w = np.asarray(jnn.init_mlp(jax.random.key(3), [fan_in, fan_out], scheme=scheme)[0]["w"])
    assert abs(w.mean()) < 0.02 * np.sqrt(var(fan_in, fan_out))
    assert w.var() == pytest.approx(var(fan_in, fan_out), rel=0.03)


def test_biases_zero_except_uniform_scheme():
    assert np.all(np.asarray(jnn.init_mlp(jax.random.key(0), [3, 4])[0]["b"]) == 0)
    b = np.asarray(jnn.init_mlp(jax.random.key(0), [9, 400], scheme="uniform")[0]["b"])
    assert np.all(np.abs(b) <= 1 / 3) and b.std() > 0.1


@pytest.mark.parametrize(
    "sizes,exc,match",
    [
        ([3], ValueError, "at least two entries"),
        ([3, 0, 2], ValueError, r"sizes\[1\] must be an int in \[1, 2147483647\]; got 0"),
        ([3, -1], ValueError, r"sizes\[1\] must be an int in \[1, 2147483647\]; got -1"),
        ([3, 2.5], TypeError, r"sizes\[1\] must be a positive int; got 2.5"),
        ([3, True], TypeError, r"sizes\[1\] must be a positive int"),
        ("32", TypeError, "sizes must be a sequence"),
        (7, TypeError, "sizes must be a sequence"),
    ],
)
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


def _eager_reference(key, sizes, scheme, dt):
    # The draws one layer at a time, outside jit: the compiled init must give exactly these bits (the
    # published experiment numbers depend on them).
    import math

    out = []
    for k, (fi, fo) in zip(jax.random.split(key, len(sizes) - 1), zip(sizes[:-1], sizes[1:])):
        kw, kb = jax.random.split(k)
        b = jnp.zeros((fo,), dt)
        if scheme in ("lecun_normal", "he_normal"):
            w = jax.random.normal(kw, (fi, fo), dt) * math.sqrt((1.0 if scheme == "lecun_normal" else 2.0) / fi)
        else:
            lim = math.sqrt(6.0 / (fi + fo)) if scheme == "glorot_uniform" else 1.0 / math.sqrt(fi)
            w = jax.random.uniform(kw, (fi, fo), dt, -lim, lim)
            if scheme == "uniform":
                b = jax.random.uniform(kb, (fo,), dt, -lim, lim)
        out.append({"w": w, "b": b})
    return out


@pytest.mark.slow  # 24 compiled inits; `make test` runs them
@pytest.mark.parametrize("scheme", list(SCHEMES))
@pytest.mark.parametrize(
    "sizes,path",
    [
        ((40, 256, 256, 10), "vectorised"),
        ((3, 7, 5, 1), "vectorised"),
        ((10, 100, 30, 2), "vectorised"),
        ((3000, 400, 2, 2), "per_layer"),
    ],
)
def test_compiled_init_gives_the_bits_of_eager_per_layer_draws(scheme, sizes, path, monkeypatch):
    import jnn.init as init_mod

    calls = []
    for name in ("_init_vectorised", "_init_per_layer"):
        real = getattr(init_mod, name)
        monkeypatch.setattr(init_mod, name, lambda *a, f=real, n=name: calls.append(n) or f(*a))
    for key in (jax.random.key(0), jax.random.key(7), jax.random.PRNGKey(3)):
        got, want = jnn.init_mlp(key, sizes, scheme=scheme), _eager_reference(key, sizes, scheme, jnp.float32)
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            np.testing.assert_array_equal(a, b)
    assert calls == [f"_init_{path}"] * 3


def test_rbg_keys_draw_layer_by_layer_with_the_eager_bits():
    key = jax.random.key(2, impl="rbg")
    for a, b in zip(
        jax.tree.leaves(jnn.init_mlp(key, (5, 9, 4))),
        jax.tree.leaves(_eager_reference(key, (5, 9, 4), "lecun_normal", jnp.float32)),
    ):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_compiled_init_bits_in_float64(x64):
    key = jax.random.key(3)
    for scheme in SCHEMES:
        got, want = (
            jnn.init_mlp(key, (6, 11, 3), scheme=scheme, dtype="float64"),
            _eager_reference(key, (6, 11, 3), scheme, jnp.float64),
        )
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
            assert a.dtype == jnp.float64
            np.testing.assert_array_equal(a, b)
