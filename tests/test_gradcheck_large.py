"""Fast mode's large-model path (issue 36, finding 6): from ``probes.SPLIT_FROM`` coordinates the probes run
as separate programs over the user's own arrays (the float64 point lifted inside each call), the candidate is
recomputed for each direction rather than held, and determinism is compared by fingerprints. Here the
thresholds are lowered so that small problems take that path: its verdicts, named entries and numbers must be
those of the small path, and XLA's own count of the largest call must stay within two float64 copies of θ."""

import contextlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn.gradcheck import check as C
from jnn.gradcheck import probes as P


@pytest.fixture
def large(monkeypatch):
    """``large()``: a context in which every problem takes the large path."""

    @contextlib.contextmanager
    def on():
        with monkeypatch.context() as m:
            m.setattr(P, "SPLIT_FROM", 1)
            m.setattr(C, "FINGERPRINT_FROM", 1)
            yield

    return on


def _mlp(seed: int, act=jnp.tanh, zero_rows: bool = False):
    k = jax.random.split(jax.random.key(seed), 4)
    params = {"w1": jax.random.normal(k[0], (12, 40)) / 12**0.5, "b1": jnp.zeros(40),
              "w2": jax.random.normal(k[1], (40, 1)) / 40**0.5, "b2": jnp.zeros(1)}  # fmt: skip
    x = jax.random.normal(k[2], (8, 12))
    if zero_rows:
        x = x.at[4:].set(0.0)
    y = jax.random.normal(k[3], (8, 1))

    def loss(p):
        z = act(x @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]
        return jnp.mean((z - y) ** 2)

    return params, loss


def _planted(loss, leaf, index, factor):
    def grad(p):
        g = jax.grad(loss)(p)
        return {**g, leaf: g[leaf].at[index].mul(factor)}

    return grad


def _both(large, f, *args, **kw):
    """The same check on the small path, then on the large one."""
    small = jnn.check_grads(f, *args, **kw)
    with large():
        return small, jnn.check_grads(f, *args, **kw)


def _same_rows(a, b):
    assert [r.path for r in a.leaves] == [r.path for r in b.leaves]
    for ra, rb in zip(a.leaves, b.leaves):
        assert (ra.status, ra.failed, ra.worst_index) == (rb.status, rb.failed, rb.worst_index), (ra, rb)
        np.testing.assert_allclose(ra.reference, rb.reference, rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_large_path_passes_a_right_gradient_as_the_small_one_does(large, dtype):
    params, loss = _mlp(0)
    params = jax.tree.map(lambda a: np.asarray(a, dtype), params)  # NumPy float64 arrays: float64 points
    small, big = _both(large, loss, params, mode="fast")
    assert small.passed and big.passed, big
    _same_rows(small, big)


def test_the_large_path_names_one_planted_entry_as_the_small_one_does(large):
    params, loss = _mlp(1)
    grad = _planted(loss, "w1", (5, 17), 1.5)
    small, big = _both(large, loss, params, grad=grad, mode="fast")
    assert not big.passed and big.failed_leaves == ["args[0]['w1']"], big
    bad = [r for r in big.leaves if r.failed]
    assert bad[0].worst_index == (5, 17)
    _same_rows(small, big)


def test_the_large_path_judges_kinks_beside_the_point_as_the_small_one_does(large):
    """A zero b1 meeting zero rows puts relu units on their kinks: probes move off the point and the candidate
    is recomputed there (the large path's two-program moved candidate)."""
    params, loss = _mlp(2, act=jax.nn.relu, zero_rows=True)
    for grad, wrong in ((None, []), (_planted(loss, "b1", slice(None), 1.05), ["args[0]['b1']"])):
        small, big = _both(large, loss, params, grad=grad, mode="fast")
        assert small.verdict != "failed" if grad is None else small.failed_leaves == wrong, small
        assert (big.verdict, big.failed_leaves) == (small.verdict, small.failed_leaves), big


def test_the_large_path_reports_a_non_finite_candidate_entry(large):
    params, loss = _mlp(3)

    def grad(p):
        g = jax.grad(loss)(p)
        return {**g, "w2": g["w2"].at[7, 0].set(jnp.nan)}

    with large():
        r = jnn.check_grads(loss, params, grad=grad, mode="fast")
    assert not r.passed and "args[0]['w2']" in r.failed_leaves
    assert any("nan at args[0]['w2'][7, 0]" in p for p in r.problems), r.problems
    assert all(r_.passed for r_ in r.leaves if r_.path != "args[0]['w2']")  # the nan does not leak into others


def test_the_large_path_refuses_a_nondeterministic_gradient(large):
    params, loss = _mlp(4)
    with large(), pytest.raises(ValueError, match="not deterministic"):
        jnn.check_grads(loss, params, grad=_host_random(loss), mode="fast")


def _host_random(loss):
    """A gradient with host-side randomness: differs between two compiled evaluations."""

    def grad(p):
        g = jax.grad(loss)(p)
        noise = jax.pure_callback(lambda: np.float64(np.random.default_rng().normal()),
                                  jax.ShapeDtypeStruct((), jnp.float64))  # fmt: skip
        return {**g, "b2": g["b2"] + 1e-6 * noise}

    return grad


def test_the_large_path_holds_at_most_two_float64_copies_of_theta_in_one_call(large):
    """XLA's own count for the largest compiled call of the check (arguments + outputs + temporaries): the
    float32 point (half a float64 copy) plus at most two float64 copies (a jvp's primal and tangent; a
    gradient's input and output), with room for the forward pass of this small batch."""
    k = jax.random.split(jax.random.key(5), 3)
    params = {"w": (jax.random.normal(k[0], (1000, 600)) / 30).astype(jnp.float32),
              "b": jnp.zeros(600, jnp.float32)}  # fmt: skip
    x = jax.random.normal(k[1], (4, 1000), jnp.float32)

    def loss(p):
        return jnp.mean(jnp.tanh(x @ p["w"] + p["b"][None, :]) ** 2)

    n = 1000 * 600 + 600
    with large():
        r = jnn.check_grads(loss, params, mode="fast")
    assert r.passed, r
    assert r.buffer_bytes is not None and r.buffer_bytes <= 2.6 * 8 * n, r.buffer_bytes / (8 * n)


def test_the_large_path_checks_forward_mode_alone_without_a_candidate_gradient(large):
    """A rule JAX cannot run in reverse mode: forward mode is checked instead, and the large path holds no zero
    gradient for it (the dots of zeros are fused)."""
    from test_gradcheck_trust import W, _wave  # the rule without reverse mode, and its point

    for scale, verdict in ((1.0, "passed"), (1.3, "failed")):
        small, big = _both(large, _wave(scale), W, mode="fast")
        assert (small.verdict, big.verdict) == (verdict, verdict), big
        assert any("reverse mode is not implemented" in n for n in big.notes)
        _same_rows(small, big)
