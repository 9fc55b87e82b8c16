import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_problem

import jnn

DROP = jnn.Dropout(0.7)


def test_jit_equals_eager():
    params, x, _ = make_problem([6, 5, 4, 3], "softmax")
    key = jax.random.key(9)
    eager = jnn.forward(params, x, activation="tanh", dropout=DROP, key=key, train=True)
    jitted = jax.jit(lambda p, x, k: jnn.forward(p, x, activation="tanh", dropout=DROP, key=k, train=True))(
        params, x, key
    )
    np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-7)


def test_vmap_over_examples_equals_batch():
    params, x, _ = make_problem([6, 5, 3], "softmax")
    batched = jnn.forward(params, x, activation="sigmoid")
    per_row = jax.vmap(lambda r: jnn.forward(params, r, activation="sigmoid"))(x)
    np.testing.assert_allclose(batched, per_row, rtol=1e-6, atol=1e-7)


def test_output_layer_is_affine():
    # Logits can be negative and unbounded: no activation on the output layer.
    params, x, _ = make_problem([3, 4, 2], "softmax")
    params[-1]["b"] = jnp.array([-50.0, 50.0])
    out = jnn.forward(params, x, activation="relu")
    assert float(out[:, 0].max()) < -40 and float(out[:, 1].min()) > 40


def test_forward_cache_matches_forward_and_layer_formula():
    params, x, _ = make_problem([3, 4, 2], "softmax")
    cache = jnn.forward_cache(params, x, activation="tanh")
    np.testing.assert_allclose(cache.zs[0], x @ params[0]["w"] + params[0]["b"][None, :], rtol=1e-6)
    np.testing.assert_allclose(cache.activations[1], jnp.tanh(cache.zs[0]), rtol=1e-6)
    np.testing.assert_array_equal(cache.zs[-1], jnn.forward(params, x, activation="tanh"))


def test_train_without_dropout_is_deterministic_and_ignores_key():
    params, x, _ = make_problem([3, 4, 2], "softmax")
    np.testing.assert_array_equal(jnn.forward(params, x, train=True), jnn.forward(params, x))


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(activation="gelu"), ValueError, "activation must be one of"),
        (dict(dropout=0.5), TypeError, r"dropout must be a jnn.Dropout"),
        (dict(dropout=DROP, train=True), ValueError, "key is required when train=True with dropout"),
        (dict(dropout=DROP, train=True, key=3), TypeError, "key must be a PRNG key"),
        (dict(train="yes"), TypeError, "train must be a bool"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    params, x, _ = make_problem([3, 4, 2], "softmax")
    with pytest.raises(exc, match=match):
        jnn.forward(params, x, **kwargs)


def test_bad_inputs():
    params, x, _ = make_problem([3, 4, 2], "softmax")
    with pytest.raises(ValueError, match=r"x must have last dimension 3 .* got x of shape \(7, 5\)"):
        jnn.forward(params, jnp.ones((7, 5)))
    with pytest.raises(TypeError, match="x must be a floating-point array .* got dtype int32"):
        jnn.forward(params, jnp.ones((7, 3), jnp.int32))
    with pytest.raises(ValueError, match=r"x must be finite; got 1 NaN/Inf"):
        jnn.forward(params, x.at[0, 0].set(jnp.nan))
    with pytest.raises(TypeError, match="params must be a non-empty list"):
        jnn.forward({"w": 1}, x)
    with pytest.raises(ValueError, match=r"params\[1\]\['w'\] has 5 input rows but the previous layer has 4"):
        jnn.forward([params[0], {"w": jnp.ones((5, 2)), "b": jnp.ones(2)}], x)
