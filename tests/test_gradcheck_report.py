"""One honest report (issue 36, findings 7-9): intended surrogate gradients are named and can be marked; no
inf or nan in a row marked ``yes``; one definition of the relative error, printed in the header; the real
|Δ| on failing rows; an int ``argnums`` named as such."""

import math

import jax
import jax.numpy as jnp
import pytest

import jnn
from jnn.gradcheck.report import REL_ERR, rel_err

U = jnp.arange(1.0, 7.0)
W = jnp.linspace(-1.1, 0.9, 6)


def _ste(w):
    """A straight-through estimator: the forward pass rounds, the gradient passes straight through."""
    return jnp.sum(U * (w + jax.lax.stop_gradient(jnp.round(w * 4) / 4 - w)) ** 2)


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_a_straight_through_estimator_is_named_as_a_surrogate(mode):
    report = jnn.check_grads(_ste, W, mode=mode)
    assert report.verdict == "failed", str(report)
    note = [n for n in report.notes if "locally constant along args[0]" in n]
    assert note and "`stop_gradient`" in note[0] and "test_gradcheck_report.py:" in note[0], str(report)
    assert "surrogate=['args[0]']" in note[0]


def test_marked_surrogate_leaves_are_reported_never_judged():
    both = jnn.check_grads(lambda a, b: _ste(a) + jnp.sum(b**2), W, W, argnums=(0, 1), surrogate=["args[0]"])
    assert both.passed and [r.status for r in both.leaves] == ["surrogate", "ok"], str(both)
    alone = jnn.check_grads(_ste, W, surrogate=["args[0]"])
    assert alone.verdict == "inconclusive" and "every leaf is marked surrogate" in str(alone)
    with pytest.raises(ValueError, match=r"surrogate names leaves f does not have: \['args\[1\]'\]"):
        jnn.check_grads(_ste, W, surrogate=["args[1]"])
    with pytest.raises(TypeError, match="surrogate must be a list of leaf paths"):
        jnn.check_grads(_ste, W, surrogate="args[0]")


def test_a_correct_function_without_surrogates_gets_no_surrogate_note():
    report = jnn.check_grads(lambda w: jnp.sum(U * w**2), W, grad=lambda w: 2.1 * U * w)
    assert report.verdict == "failed" and not any("locally constant" in n for n in report.notes)


def test_rows_marked_yes_hold_finite_numbers_even_for_exact_zero_derivatives():
    dead = {"w": jnp.zeros((3, 4)).at[0].set(1.0), "b": jnp.array([0.0, -1.0, -2.0, 1.0])}
    x = jnp.ones((2, 3))
    for mode in ("full", "fast"):
        report = jnn.check_grads(lambda p: jnp.sum(jax.nn.relu(x @ p["w"] + p["b"][None, :]) ** 2), dead, mode=mode)
        for row in report.leaves:
            if row.status == "ok":
                cells = [row.max_abs_err, row.max_rel_err, row.reference, row.candidate]
                assert all(math.isfinite(c) for c in cells), f"{mode}\n{report}"
        assert " inf " not in str(report) and " nan " not in str(report), str(report)


def test_one_relative_error_everywhere_printed_in_the_header():
    assert rel_err(0.01, 1.0, 1.01) == pytest.approx(0.01 / 1.01) and rel_err(0.0, 0.0, 0.0) == 0.0
    assert rel_err(3.0, 0.0, 3.0) == 1.0  # a candidate against a zero reference: 1, not inf
    bug = jnn.check_grads(lambda w: jnp.sum(U * w**2), W, grad=lambda w: 1.01 * 2 * U * w)
    assert REL_ERR in str(bug).splitlines()[0]
    row = bug.leaves[0]
    assert row.max_rel_err == pytest.approx(0.01 / 1.01, rel=1e-3)  # a 1 % error reads as 1 %, never inf
    cmp = jnn.compare_grads({"w": 2 * U * W}, {"w": 1.01 * 2 * U * W})
    assert cmp.leaves[0].max_rel_err == pytest.approx(0.01 / 1.01, rel=1e-4) and REL_ERR in str(cmp)


def test_a_failing_row_shows_its_real_difference():
    bug = jnn.check_grads(lambda w: jnp.sum(U * w**2), W, grad=lambda w: 2 * U * w + 0.7 * (jnp.arange(6) == 2))
    row = bug.leaves[0]
    assert row.failed == 1 and row.worst_index == (2,) and row.max_abs_err == pytest.approx(0.7, rel=1e-6)


def test_an_int_argnums_without_float_leaves_is_named_plainly():
    with pytest.raises(ValueError, match=r"args\[1\] must hold float arrays to differentiate; got int32"):
        jnn.check_grads(lambda w, n: jnp.sum(w) * n, W, jnp.int32(3), argnums=1)
