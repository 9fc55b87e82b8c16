import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import make_problem, tree_allclose

import jnn


def test_bce_equals_the_lecture_formula(x64):
    z = jnp.array([-4.0, -0.5, 0.0, 0.3, 2.0, 6.0])
    y = jnp.array([0, 1, 1, 0, 1, 0])
    f = 1.0 / (1.0 + np.exp(-np.asarray(z)))
    yn = np.asarray(y, np.float64)
    lecture = -(yn * np.log(f) + (1 - yn) * np.log(1 - f))  # −(y log f + (1−y) log(1−f))
    assert float(jnn.binary_cross_entropy(z, y)) == pytest.approx(lecture.mean(), rel=1e-14)
    assert float(jnn.binary_cross_entropy(z[:, None], y)) == pytest.approx(lecture.mean(), rel=1e-14)


def test_softmax_ce_equals_the_formula_with_int_and_one_hot_labels(x64):
    z = jax.random.normal(jax.random.key(0), (5, 4), jnp.float64)
    y = jnp.array([0, 3, 1, 1, 2])
    p = np.exp(np.asarray(z)) / np.exp(np.asarray(z)).sum(1, keepdims=True)
    expected = -np.log(p[np.arange(5), np.asarray(y)]).mean()
    assert float(jnn.softmax_cross_entropy(z, y)) == pytest.approx(expected, rel=1e-14)
    assert float(jnn.softmax_cross_entropy(z, jax.nn.one_hot(y, 4, dtype=jnp.float64))) == pytest.approx(
        expected, rel=1e-14
    )


def test_losses_are_finite_and_exact_at_huge_logits():
    z = jnp.array([1e4, -1e4, 1e4, -1e4])
    y = jnp.array([1, 0, 0, 1])
    # log σ(1e4) = −e^−1e4 ≈ 0; log(1 − σ(1e4)) = −1e4 exactly.
    assert float(jnn.binary_cross_entropy(z, y)) == pytest.approx((0 + 0 + 1e4 + 1e4) / 4, rel=1e-7)
    logits = jnp.array([[1e4, -1e4, 0.0], [0.0, 1e4, -1e4]])
    assert float(jnn.softmax_cross_entropy(logits, jnp.array([0, 2]))) == pytest.approx((0 + 2e4) / 2, rel=1e-7)
    g = jax.grad(lambda z: jnn.binary_cross_entropy(z, y))(z)
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_allclose(g, np.array([0.0, 0.0, 1.0, -1.0]) / 4, atol=1e-7)


@pytest.mark.parametrize("loss", ["softmax", "binary"])
def test_mask_excludes_padded_rows_exactly(loss, x64):
    sizes = [4, 5, 3 if loss == "softmax" else 1]
    params, x, y = make_problem(sizes, loss, batch=9, dtype="float64")
    real = 6
    # Padded rows hold other data (as a padded batch does); the mask must remove them exactly.
    mask = jnp.arange(9) < real
    kw = dict(loss=loss, activation="tanh", l2=0.01)
    padded = jnn.regularized_loss(params, x, y, mask=mask, **kw)
    unpadded = jnn.regularized_loss(params, x[:real], y[:real], **kw)
    assert float(padded) == pytest.approx(float(unpadded), rel=1e-15)
    g_pad = jax.grad(jnn.regularized_loss)(params, x, y, mask=mask, **kw)
    g_unpad = jax.grad(jnn.regularized_loss)(params, x[:real], y[:real], **kw)
    assert tree_allclose(g_pad, g_unpad, rtol=1e-14, atol=1e-16)
    assert float(jnn.regularized_loss(params, x, y, mask=mask.astype(jnp.float64), **kw)) == float(padded)


def test_l2_penalty_value_and_gradient(x64):
    params, _, _ = make_problem([3, 4, 2], "softmax", dtype="float64")
    lam = 0.3
    expected = lam * sum(float(jnp.sum(l["w"] ** 2)) for l in params)
    assert float(jnn.l2_penalty(params, lam)) == pytest.approx(expected, rel=1e-14)
    g = jax.grad(jnn.l2_penalty)(params, lam)
    for gl, pl in zip(g, params):
        np.testing.assert_allclose(gl["w"], 2 * lam * pl["w"], rtol=1e-14)
        np.testing.assert_array_equal(gl["b"], 0.0)  # biases untouched by default
    gb = jax.grad(lambda p: jnn.l2_penalty(p, lam, include_bias=True))(params)
    np.testing.assert_allclose(gb[0]["b"], 2 * lam * params[0]["b"], rtol=1e-14)
    only_last = [{"w": False, "b": False}, {"w": True, "b": False}]
    assert float(jnn.l2_penalty(params, lam, mask=only_last)) == pytest.approx(
        lam * float(jnp.sum(params[1]["w"] ** 2)), rel=1e-14
    )


def test_l2_maps_to_optax_add_decayed_weights_with_2_lambda(x64):
    # SGD on CE + λΣw² equals SGD on CE with optax.add_decayed_weights(2λ) (weights only).
    params, x, y = make_problem([3, 4, 2], "softmax", dtype="float64")
    lam, lr = 0.05, 0.1
    g_reg = jax.grad(jnn.regularized_loss)(params, x, y, l2=lam)
    upd_a, _ = optax.sgd(lr).update(g_reg, optax.sgd(lr).init(params), params)
    tx = optax.chain(optax.add_decayed_weights(2 * lam, mask=[{"w": True, "b": False}] * 2), optax.sgd(lr))
    g_ce = jax.grad(jnn.regularized_loss)(params, x, y)
    upd_b, _ = tx.update(g_ce, tx.init(params), params)
    assert tree_allclose(optax.apply_updates(params, upd_a), optax.apply_updates(params, upd_b), rtol=1e-14)


def test_larger_lambda_gives_smaller_weights_after_training():
    params, x, y = make_problem([4, 16, 3], "softmax", batch=64)
    norms = []
    for lam in (0.0, 0.01, 0.1):
        p = params
        step = jax.jit(
            lambda p, lam=lam: jax.tree.map(
                lambda a, g: a - 0.5 * g, p, jax.grad(jnn.regularized_loss)(p, x, y, l2=lam)
            )
        )
        for _ in range(200):
            p = step(p)
        norms.append(sum(float(jnp.sum(l["w"] ** 2)) for l in p))
    assert norms[0] > norms[1] > norms[2]


@pytest.mark.parametrize(
    "fn,args,exc,match",
    [
        (
            "softmax_cross_entropy",
            (jnp.zeros((3, 4)), jnp.array([0, 4, 1])),
            ValueError,
            r"class indices in \[0, 3\].*\[0, 4\]",
        ),
        ("softmax_cross_entropy", (jnp.zeros((3, 4)), jnp.array([0, -1, 1])), ValueError, r"class indices in \[0, 3\]"),
        ("softmax_cross_entropy", (jnp.zeros((3, 4)), jnp.array([0.0, 1.0, 1.0])), TypeError, "integer class indices"),
        ("softmax_cross_entropy", (jnp.zeros((3, 4)), jnp.array([0, 1])), ValueError, r"must have shape \(3,\)"),
        ("softmax_cross_entropy", (jnp.zeros((3, 4)), np.array(["a", "b", "c"])), TypeError, "y must be"),
        ("softmax_cross_entropy", (jnp.zeros((3, 1)), jnp.array([0, 0, 0])), ValueError, "at least 2 output units"),
        ("binary_cross_entropy", (jnp.zeros(3), jnp.array([0, 2, 1])), ValueError, r"y must be in \{0, 1\}"),
        ("binary_cross_entropy", (jnp.zeros((3, 2)), jnp.array([0, 1, 1])), ValueError, "one logit per example"),
        ("binary_cross_entropy", (jnp.zeros(3), jnp.array([0, 1])), ValueError, r"y must have shape \(3,\)"),
        (
            "binary_cross_entropy",
            (jnp.array([0.0, jnp.inf, 1.0]), jnp.array([0, 1, 1])),
            ValueError,
            "logits must be finite",
        ),
    ],
)
def test_bad_labels_and_logits(fn, args, exc, match):
    with pytest.raises(exc, match=match):
        getattr(jnn, fn)(*args)


def test_bad_mask_and_lambda():
    z, y = jnp.zeros((3, 2)), jnp.array([0, 1, 1])
    with pytest.raises(ValueError, match=r"mask must have shape \[batch\] = \(3,\)"):
        jnn.softmax_cross_entropy(z, y, mask=jnp.ones(4, bool))
    with pytest.raises(ValueError, match="mask must contain only 0 and 1"):
        jnn.softmax_cross_entropy(z, y, mask=jnp.array([0.5, 1.0, 1.0]))
    params, _, _ = make_problem([3, 2], "softmax")
    with pytest.raises(ValueError, match=r"lam must be in \[0, inf\]; got -0.1"):
        jnn.l2_penalty(params, -0.1)
    with pytest.raises(ValueError, match=r"l2 must be in \[0, inf\]; got -1"):
        jnn.regularized_loss(params, jnp.ones((2, 3)), jnp.array([0, 1]), l2=-1.0)
    with pytest.raises(ValueError, match="loss must be one of"):
        jnn.regularized_loss(params, jnp.ones((2, 3)), jnp.array([0, 1]), loss="mse")
    with pytest.raises(ValueError, match="mask decides alone"):
        jnn.l2_penalty(params, 0.1, include_bias=True, mask=[{"w": True, "b": True}])
