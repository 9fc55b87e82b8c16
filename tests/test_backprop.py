"""Hand-written backprop against jax.grad, finite differences, the Taylor test and a hand-worked example."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_problem, tree_allclose

import jnn
from jnn.backprop import lecture_output_delta, output_delta

ACTS = ["relu", "sigmoid", "tanh", "identity"]
LOSSES = ["binary", "softmax"]
L2 = [("none", 0.0, False), ("weights", 0.05, False), ("with_bias", 0.05, True)]
DROPOUT = [None, "inverted", "classic"]
DEPTHS = [1, 2, 3]


def _setup(activation, loss, depth, dropout_mode, dtype, seed=0):
    sizes = [5] + [6] * depth + [1 if loss == "binary" else 4]
    params, x, y = make_problem(sizes, loss, batch=8, seed=seed, dtype=dtype)
    # Non-zero biases so that include_bias changes something.
    params = [{"w": l["w"], "b": 0.1 * jnp.arange(l["b"].shape[0], dtype=dtype)} for l in params]
    dropout = None if dropout_mode is None else jnn.Dropout(0.75, dropout_mode)
    return params, x, y, dropout


def _agree(ref, cand, rtol=1e-12, floor=1e-13):
    """Max-norm relative error per leaf ≤ rtol, and elementwise |Δ| ≤ floor·max|ref| + rtol·|ref|.

    The absolute floor (1e-13 of the largest gradient entry, ~450 ulp in float64) covers entries that are
    sums of terms of opposite sign and cancel to ~1e-17, whose own relative error is meaningless.
    """
    scale = max(float(np.max(np.abs(np.asarray(g)))) for g in jax.tree.leaves(ref))
    report = jnn.compare_grads(ref, cand, rtol=rtol, atol=floor * scale)
    return report.passed and report.max_rel_err <= rtol, str(report)


def _grads(activation, loss, depth, l2, dropout_mode, dtype):
    params, x, y, dropout = _setup(activation, loss, depth, dropout_mode, dtype)
    _, lam, bias = l2
    kw = dict(
        loss=loss, activation=activation, l2=lam, include_bias=bias, dropout=dropout, key=jax.random.key(42), train=True
    )
    ref = jax.grad(jnn.regularized_loss)(params, x, y, **kw)
    hand = jnn.backprop(params, x, y, **kw)
    return ref, hand, params, x, y, kw


@pytest.mark.parametrize(
    "activation,loss,l2,dropout_mode,depth",
    list(itertools.product(ACTS, LOSSES, L2, DROPOUT, DEPTHS)),
    ids=lambda v: v[0] if isinstance(v, tuple) else str(v),
)
def test_vectorized_equals_jax_grad_float64(activation, loss, l2, dropout_mode, depth, x64):
    ref, hand, *_ = _grads(activation, loss, depth, l2, dropout_mode, "float64")
    ok, table = _agree(ref, hand)
    assert ok, table


# float32: relative 1e-5 with an absolute floor of 1e-6·max|g|. The floor is needed because entries of
# the gradient that are sums of terms of opposite sign cancel to ~1e-8 while each term carries float32
# rounding of ~6e-8 relative to the terms, so their relative error is unbounded; 1e-6·max|g| is ~10 ulp
# of the largest entry.
@pytest.mark.parametrize("activation,loss,dropout_mode,depth", list(itertools.product(ACTS, LOSSES, DROPOUT, [1, 3])))
@pytest.mark.slow
def test_vectorized_equals_jax_grad_float32(activation, loss, dropout_mode, depth):
    ref, hand, *_ = _grads(activation, loss, depth, L2[1], dropout_mode, "float32")
    scale = max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(ref))
    report = jnn.compare_grads(ref, hand, rtol=1e-5, atol=1e-6 * scale)
    assert report.passed, str(report)


@pytest.mark.parametrize(
    "activation,loss,dropout_mode",
    [
        ("tanh", "softmax", None),
        ("relu", "softmax", "inverted"),
        ("sigmoid", "binary", "classic"),
        ("identity", "binary", None),
        ("tanh", "binary", "inverted"),
        ("relu", "softmax", "classic"),
    ],
)
def test_node_level_equals_vectorized(activation, loss, dropout_mode, x64):
    ref, hand, params, x, y, kw = _grads(activation, loss, 2, L2[2], dropout_mode, "float64")
    nodes = jnn.node_backprop(params, x, y, **kw)
    ok, table = _agree(hand, nodes)
    assert ok, table


def test_node_level_with_one_hot_labels_mask_and_input_dropout(x64):
    params, x, y = make_problem([3, 4, 3], "softmax", batch=5, dtype="float64")
    kw = dict(
        loss="softmax",
        activation="tanh",
        l2=0.1,
        dropout=jnn.Dropout(0.6, on_inputs=True),
        key=jax.random.key(1),
        train=True,
        mask=jnp.array([1.0, 1.0, 0.0, 1.0, 0.0]),
    )
    y1 = jax.nn.one_hot(y, 3, dtype=jnp.float64)
    ref = jax.grad(jnn.regularized_loss)(params, x, y1, **kw)
    assert _agree(ref, jnn.backprop(params, x, y1, **kw))[0]
    assert _agree(ref, jnn.node_backprop(params, x, y1, **kw))[0]


def test_node_graph_follows_the_lecture(x64):
    params, x, y = make_problem([2, 2, 1], "binary", batch=1, dtype="float64")
    grads, graph, loss = jnn.node_backprop(params, x, y, loss="binary", activation="sigmoid", return_graph=True)
    assert loss.grad == 1.0  # base case ∂L/∂L = 1
    for u in graph.nodes:  # ∂L/∂u = Σ_{v∈T(u)} ∂L/∂v · ∂v/∂u for every other node
        if u is not loss:
            assert u.grad == pytest.approx(sum(v.grad * d for v, d in u.successors), rel=1e-15, abs=0)
    w_nodes = [u for u in graph.nodes if u.label.startswith("w[0]")]
    # T(w_ji) = {the unit u_i it feeds (one example), the L2 node λΣw²}.
    assert len(w_nodes) == 4
    for u in w_nodes:
        i = u.label.split(",")[1].rstrip("]")
        assert sorted(v.label for v, _ in u.successors) == sorted([f"u[0][0,{i}]", "lambda*sum(w^2)"])


def test_node_level_refuses_big_networks():
    params, x, y = make_problem([200, 200, 10], "softmax", batch=2)
    with pytest.raises(ValueError, match="at most 20000 parameters; got 42210"):
        jnn.node_backprop(params, x, y)


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
def test_finite_differences_agree(activation, x64):
    params, x, y, dropout = _setup(activation, "softmax", 2, "classic", "float64", seed=3)
    kw = dict(loss="softmax", activation=activation, l2=0.02, dropout=dropout, key=jax.random.key(7), train=True)
    f = lambda p: jnn.regularized_loss(p, x, y, **kw)
    fd = jnn.finite_difference_grad(f, params, eps=1e-6)
    report = jnn.compare_grads(fd, jnn.backprop(params, x, y, **kw), rtol=1e-7, atol=1e-9)
    assert report.passed, str(report)


def test_taylor_order_two_for_true_gradient_and_one_for_a_wrong_one(x64):
    params, x, y, dropout = _setup("tanh", "softmax", 2, "inverted", "float64")
    kw = dict(loss="softmax", activation="tanh", l2=0.01, dropout=dropout, key=jax.random.key(0), train=True)
    f = lambda p: jnn.regularized_loss(p, x, y, **kw)
    g = jnn.backprop(params, x, y, **kw)
    good = jnn.taylor_test(f, params, g, key=jax.random.key(1))
    assert abs(good.order - 2.0) <= 0.1, good
    wrong = jax.tree.map(lambda a: a * 1.05, g)
    bad = jnn.taylor_test(f, params, wrong, key=jax.random.key(1), h0=1e-3)
    assert 0.85 <= bad.order <= 1.2, bad


def test_tiny_2_2_1_network_worked_by_hand(x64):
    # x = (1, 2), W1 = [[.1, .2], [.3, .4]] (rows: inputs, columns: hidden units), b1 = 0, sigmoid;
    # W2 = [[.5], [-.5]], b2 = 0, output ŷ = σ(z2), y = 1, BCE.
    # Forward:  z1 = x W1 = (1·.1 + 2·.3, 1·.2 + 2·.4) = (0.7, 1.0)
    #           h  = σ(z1) = (0.6681877721681662, 0.7310585786300049)
    #           z2 = .5·h1 − .5·h2 = −0.03143540323091937;  ŷ = σ(z2) = 0.49214179629458754
    #           L  = −log ŷ = 0.7089884001617932
    # Backward: (a)·(b): δ2 = ŷ − y = −0.5078582037054125
    #           ∂L/∂W2 = hᵀ δ2 = (−0.3393446417112463, −0.3712740965464663);  ∂L/∂b2 = δ2
    #           δ1 = δ2 W2ᵀ ⊙ h(1−h) = (−0.05629935078450204, 0.04992549162153372)
    #           ∂L/∂W1 = xᵀ δ1 = [[−0.05629935078450204, 0.04992549162153372],
    #                             [−0.11259870156900408, 0.09985098324306745]];  ∂L/∂b1 = δ1
    params = [
        {"w": jnp.array([[0.1, 0.2], [0.3, 0.4]]), "b": jnp.zeros(2)},
        {"w": jnp.array([[0.5], [-0.5]]), "b": jnp.zeros(1)},
    ]
    x, y = jnp.array([[1.0, 2.0]]), jnp.array([1])
    by_hand = [
        {
            "w": np.array([[-0.05629935078450204, 0.04992549162153372], [-0.11259870156900408, 0.09985098324306745]]),
            "b": np.array([-0.05629935078450204, 0.04992549162153372]),
        },
        {"w": np.array([[-0.3393446417112463], [-0.3712740965464663]]), "b": np.array([-0.5078582037054125])},
    ]
    kw = dict(loss="binary", activation="sigmoid")
    assert float(jnn.regularized_loss(params, x, y, **kw)) == pytest.approx(0.7089884001617932, rel=1e-12)
    for g in (
        jnn.backprop(params, x, y, **kw),
        jnn.node_backprop(params, x, y, **kw),
        jax.grad(jnn.regularized_loss)(params, x, y, **kw),
    ):
        assert _agree(by_hand, g)[0]


def test_lecture_equations_a_b_equal_the_simplified_output_delta(x64):
    z = jnp.array([-5.0, -0.7, 0.0, 1.3, 8.0])
    y = jnp.array([1, 0, 1, 1, 0])
    np.testing.assert_allclose(lecture_output_delta(z, y), jax.nn.sigmoid(z) - y.astype(jnp.float64), rtol=1e-10)
    d = output_delta("binary", z[:, None], y)
    np.testing.assert_allclose(d[:, 0], (jax.nn.sigmoid(z) - y.astype(jnp.float64)) / 5, rtol=1e-15)
    # The simplified form stays finite where (a) alone overflows.
    assert np.all(np.isfinite(np.asarray(output_delta("binary", jnp.array([[1e4], [-1e4]]), jnp.array([0, 1])))))


def test_cache_returns_every_delta_and_activation(x64):
    params, x, y, dropout = _setup("tanh", "softmax", 2, "inverted", "float64")
    kw = dict(loss="softmax", activation="tanh", dropout=dropout, key=jax.random.key(0), train=True)
    grads, cache = jnn.backprop(params, x, y, return_cache=True, **kw)
    assert [d.shape for d in cache.deltas] == [z.shape for z in cache.forward.zs]
    # δ is ∂l/∂z: compare with autodiff through the cached pre-activations of the last layer.
    logits = cache.forward.zs[-1]
    dz = jax.grad(lambda z: jnn.per_example_loss("softmax", z, y).mean())(logits)
    np.testing.assert_allclose(cache.deltas[-1], dz, rtol=1e-13)
    np.testing.assert_allclose(grads[0]["w"], cache.forward.activations[0].T @ cache.deltas[0], rtol=1e-13)


def test_backprop_is_jittable_and_equal_under_jit(x64):
    params, x, y, dropout = _setup("relu", "softmax", 2, "classic", "float64")
    kw = dict(loss="softmax", activation="relu", l2=0.1, dropout=dropout, train=True)
    eager = jnn.backprop(params, x, y, key=jax.random.key(3), **kw)
    jitted = jax.jit(lambda p, k: jnn.backprop(p, x, y, key=k, **kw))(params, jax.random.key(3))
    assert tree_allclose(eager, jitted, rtol=1e-13)


def test_backprop_validates_like_the_loss():
    params, x, y = make_problem([3, 4, 2], "softmax")
    with pytest.raises(ValueError, match="key is required"):
        jnn.backprop(params, x, y, dropout=jnn.Dropout(0.5), train=True)
    with pytest.raises(ValueError, match=r"class indices in \[0, 1\]"):
        jnn.backprop(params, x, y + 5)
    with pytest.raises(ValueError, match=r"x must be \[batch, d_in\]"):
        jnn.backprop(params, x[0], y)
    assert math.isfinite(float(jnn.regularized_loss(params, x, y)))
