import jax
import numpy as np
import pytest
from conftest import make_problem

import jnn


def _hidden(params, x, dropout, key, train):
    return jnn.forward_cache(params, x, activation="relu", dropout=dropout, key=key, train=train).activations[1]


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_same_key_same_mask_different_key_different_mask(mode):
    params, x, _ = make_problem([8, 64, 3], "softmax", batch=16)
    d = jnn.Dropout(0.5, mode)
    a = _hidden(params, x, d, jax.random.key(1), True)
    b = _hidden(params, x, d, jax.random.key(1), True)
    c = _hidden(params, x, d, jax.random.key(2), True)
    np.testing.assert_array_equal(a == 0, b == 0)
    assert np.mean(np.asarray(a == 0) != np.asarray(c == 0)) > 0.2


@pytest.mark.parametrize("mode", ["inverted", "classic"])
def test_keep_prob_one_is_identity(mode):
    params, x, _ = make_problem([5, 6, 3], "softmax")
    d = jnn.Dropout(1.0, mode)
    plain = jnn.forward(params, x)
    np.testing.assert_array_equal(jnn.forward(params, x, dropout=d, key=jax.random.key(0), train=True), plain)
    np.testing.assert_array_equal(jnn.forward(params, x, dropout=d, train=False), plain)
    np.testing.assert_array_equal(jnn.forward(params, x, dropout=d, train=True), plain)  # no key needed at p = 1


def test_train_scaling_of_each_mode():
    params, x, _ = make_problem([5, 40, 3], "softmax")
    h = _hidden(params, x, None, None, False)
    key = jax.random.key(4)
    inv = np.asarray(_hidden(params, x, jnn.Dropout(0.8, "inverted"), key, True))
    cla = np.asarray(_hidden(params, x, jnn.Dropout(0.8, "classic"), key, True))
    kept = cla != 0
    np.testing.assert_allclose(cla[kept], np.asarray(h)[kept], rtol=1e-6)  # classic: kept units unscaled
    np.testing.assert_allclose(inv[kept], np.asarray(h)[kept] / 0.8, rtol=1e-6)  # inverted: ÷p
    np.testing.assert_array_equal(inv == 0, cla == 0)  # same key → same mask in both modes


def test_test_time_rules():
    params, x, _ = make_problem([5, 6, 3], "softmax")
    h = _hidden(params, x, None, None, False)
    np.testing.assert_allclose(_hidden(params, x, jnn.Dropout(0.6, "classic"), None, False), 0.6 * h, rtol=1e-6)
    np.testing.assert_array_equal(_hidden(params, x, jnn.Dropout(0.6, "inverted"), None, False), h)
    # Expected weights: scaling the activations by p equals scaling the outgoing weights by p.
    scaled = [params[0], {"w": 0.6 * params[1]["w"], "b": params[1]["b"]}]
    np.testing.assert_allclose(
        jnn.forward(params, x, dropout=jnn.Dropout(0.6, "classic")), jnn.forward(scaled, x), rtol=1e-5, atol=1e-6
    )


def test_inverted_and_classic_give_the_same_expected_preactivation():
    # Over 20,000 masks, the mean next-layer pre-activation while training must equal, within 3 standard
    # errors, the deterministic test-time value: h W + b for inverted, p·h W + b (expected weights) for
    # classic. And a classic net with outgoing weights W is, in distribution, the inverted net with p·W.
    params, x, _ = make_problem([6, 12, 4], "softmax", batch=1)
    p, n = 0.7, 20_000
    keys = jax.random.split(jax.random.key(0), n)
    scaled = [params[0], {"w": p * params[1]["w"], "b": params[1]["b"]}]

    def z2(ps, d, k, train):
        return jnn.forward(ps, x, activation="tanh", dropout=d, key=k, train=train)[0]

    inv = np.asarray(jax.vmap(lambda k: z2(params, jnn.Dropout(p, "inverted"), k, True))(keys), np.float64)
    cla = np.asarray(jax.vmap(lambda k: z2(params, jnn.Dropout(p, "classic"), k, True))(keys), np.float64)
    test_inv = np.asarray(z2(params, jnn.Dropout(p, "inverted"), None, False), np.float64)
    test_cla = np.asarray(z2(params, jnn.Dropout(p, "classic"), None, False), np.float64)
    se_inv = inv.std(0) / np.sqrt(n)
    se_cla = cla.std(0) / np.sqrt(n)
    assert np.all(np.abs(inv.mean(0) - test_inv) < 3 * se_inv)
    assert np.all(np.abs(cla.mean(0) - test_cla) < 3 * se_cla)
    # Same masks (same keys): classic with W equals inverted with p·W, draw by draw, and at test time.
    inv_scaled = np.asarray(jax.vmap(lambda k: z2(scaled, jnn.Dropout(p, "inverted"), k, True))(keys), np.float64)
    np.testing.assert_allclose(cla, inv_scaled, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(
        test_cla, np.asarray(z2(scaled, jnn.Dropout(p, "inverted"), None, False)), rtol=1e-5, atol=1e-6
    )


def test_keep_fraction_is_p_and_inputs_only_when_asked():
    params, x, _ = make_problem([50, 400, 3], "softmax", batch=50)
    d = jnn.Dropout(0.3)
    cache = jnn.forward_cache(params, x, dropout=d, key=jax.random.key(5), train=True)
    assert 0.27 < np.mean(np.asarray(cache.factors[0]) != 0) < 0.33
    np.testing.assert_array_equal(cache.inputs, x)
    cache_in = jnn.forward_cache(params, x, dropout=jnn.Dropout(0.3, on_inputs=True), key=jax.random.key(5), train=True)
    assert 0.25 < np.mean(np.asarray(cache_in.inputs) != 0) < 0.35


@pytest.mark.parametrize(
    "keep_prob,exc,match",
    [
        (0.0, ValueError, r"keep_prob must be in \(0, 1\]; got 0"),
        (1.5, ValueError, r"keep_prob must be in \(0, 1\]; got 1.5"),
        (-0.2, ValueError, r"keep_prob must be in \(0, 1\]; got -0.2"),
        (float("nan"), ValueError, "keep_prob must be finite"),
        ("0.5", TypeError, "keep_prob must be a real number"),
    ],
)
def test_bad_keep_prob(keep_prob, exc, match):
    with pytest.raises(exc, match=match):
        jnn.Dropout(keep_prob)


def test_bad_mode_and_flag():
    with pytest.raises(ValueError, match=r"mode must be one of \['inverted', 'classic'\]; got 'standard'"):
        jnn.Dropout(0.5, "standard")
    with pytest.raises(TypeError, match="on_inputs must be a bool"):
        jnn.Dropout(0.5, on_inputs=1)


def test_dropout_is_hashable_for_jit():
    d = jnn.Dropout(0.5, "classic")
    assert hash(d) == hash(jnn.Dropout(0.5, "classic")) and d == jnn.Dropout(0.5, "classic")


@pytest.mark.parametrize("mode,on_inputs", [("inverted", False), ("classic", True)])
@pytest.mark.slow
def test_masks_drawn_up_front_under_vmap_are_the_masks_of_each_key(mode, on_inputs):
    # An epoch draws all its masks in one vmapped call; each step must get bit for bit its own pass.
    from jnn.model import dropout_masks

    sizes = [6, 9, 5, 3]
    params, x, _ = make_problem(sizes, "softmax", batch=4)
    d = jnn.Dropout(0.6, mode, on_inputs=on_inputs)
    keys = jax.random.split(jax.random.key(11), 5)
    stacked = jax.vmap(lambda k: dropout_masks(d, k, sizes, 4))(keys)
    assert sorted(stacked) == ([0, 1, 2] if on_inputs else [1, 2])
    for i, k in enumerate(keys):
        own = jnn.forward_cache(params, x, dropout=d, key=k, train=True)
        given = jnn.forward_cache(params, x, dropout=d, train=True, masks={j: m[i] for j, m in stacked.items()})
        for a, b in zip(jax.tree.leaves(own), jax.tree.leaves(given)):
            np.testing.assert_array_equal(a, b)
    # and the masks differ between steps (a vmap that broadcast one key would pass the loop above only once)
    assert not np.array_equal(stacked[1][0], stacked[1][1])
