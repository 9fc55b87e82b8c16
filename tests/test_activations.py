import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnn.activations import ACTIVATIONS, get_activation

Z = np.array([-3.0, -1.2, -0.3, 0.4, 1.1, 2.5])


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_derivative_matches_autodiff(name, x64):
    act = get_activation(name)
    z = jnp.asarray(Z)
    a = act.fn(z)
    expected = jax.vmap(jax.grad(act.fn))(z)
    np.testing.assert_allclose(act.deriv(z, a), expected, rtol=1e-14, atol=0)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_numpy_path_equals_jax_path(name, x64):
    act = get_activation(name)
    a_np = act.fn(Z)
    a_jx = np.asarray(act.fn(jnp.asarray(Z)))
    np.testing.assert_allclose(a_np, a_jx, rtol=1e-14)
    np.testing.assert_allclose(act.deriv(Z, a_np), np.asarray(act.deriv(jnp.asarray(Z), jnp.asarray(a_jx))), rtol=1e-13)
    assert isinstance(act.fn(np.float64(0.5)), (float, np.floating, np.ndarray))


def test_relu_subgradient_at_zero_matches_jax():
    act = get_activation("relu")
    z = jnp.zeros(3)
    np.testing.assert_array_equal(act.deriv(z, act.fn(z)), jax.vmap(jax.grad(jax.nn.relu))(z))


def test_unknown_activation_lists_known_ones():
    with pytest.raises(ValueError, match=r"activation must be one of \['relu', 'sigmoid'.*got 'gelu'"):
        get_activation("gelu")
    with pytest.raises(TypeError, match="activation must be a string"):
        get_activation(None)
