"""Verdicts you can trust: no PASSED on a non-finite f or candidate, on noise or at a precision without power;
no false alarm at kinks; forward mode checked and used where reverse mode is missing; inputs refused by name."""

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn.testing import assert_grads

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT / "experiments"))
_spec = importlib.util.spec_from_file_location("gradcheck_kinks", _ROOT / "experiments" / "gradcheck_kinks.py")
kinks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kinks)

W = jax.random.normal(jax.random.key(0), (8, 5))
X = jax.random.normal(jax.random.key(1), (16, 8))


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_a_nan_at_the_point_fails_and_names_the_operation(mode):
    report = jnn.check_grads(lambda w: jnp.sum(jnp.log(w)), W, mode=mode)
    assert report.verdict == "failed" and not report.passed
    assert "f is nan at the point" in report.problems[0] and "`log`" in report.problems[0]
    assert str(report).splitlines()[-1] == "FAILED: f is nan at the point"


def test_an_array_output_with_one_inf_entry_names_the_entry():
    report = jnn.check_grads(lambda w: 1.0 / (w - W[0, 2]), W[0])
    assert report.verdict == "failed" and "output entry [2]" in report.problems[0]


def test_a_nan_input_is_refused_by_name():
    with pytest.raises(ValueError, match=r"args\[0\]\['w'\] holds a non-finite value \(nan at index \[2, 3\]\)"):
        jnn.check_grads(lambda p: jnp.sum(p["w"] ** 2), {"w": W.at[2, 3].set(jnp.nan)})


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
def test_one_non_finite_candidate_entry_fails_in_fast_mode(bad):
    w = jax.random.normal(jax.random.key(2), (100, 80)) * 0.1

    def f(w):
        return jnp.sum(jnp.tanh(X @ jnp.ones((8, 100)) @ w) ** 2)

    report = jnn.check_grads(f, w, grad=lambda w: jax.grad(f)(w).at[7, 9].set(bad), mode="fast")
    assert report.mode == "fast" and report.verdict == "failed"
    row = report.leaves[0]
    assert row.status == "non-finite" and row.worst_index == (7, 9) and row.failed == 1
    assert "args[0][7, 9]" in report.problems[0]


def _bf16(w):
    return jnp.sum(jnp.tanh(X.astype(jnp.bfloat16) @ w.astype(jnp.bfloat16)).astype(jnp.float32) ** 2)


@pytest.mark.parametrize("factor, verdict", [(1.0, "inconclusive"), (1.05, "inconclusive"), (2.0, "failed"),
                                             (-1.0, "failed")])  # fmt: skip
def test_bfloat16_is_checked_against_its_float64_twin_and_never_passes(factor, verdict):
    report = jnn.check_grads(_bf16, W, grad=lambda w: jax.grad(_bf16)(w) * factor)
    assert report.precision == "bfloat16" and report.verdict == verdict, str(report)
    if verdict == "inconclusive":
        assert report.resolution >= jnn.gradcheck.POWER and "no power at bfloat16" in str(report)
        assert "float32/float64" in str(report)


def test_a_float32_function_keeps_its_power():
    def f(w):
        return jnp.sum(jnp.tanh(X.astype(jnp.float32) @ w.astype(jnp.float32)) ** 2)

    good = jnn.check_grads(f, W)
    assert good.precision == "float32" and good.passed and good.resolution < jnn.gradcheck.POWER, str(good)
    assert not jnn.check_grads(f, W, grad=lambda w: jax.grad(f)(w) * 1.05).passed


def test_a_noisy_function_is_refused():
    def noisy(w):
        n = jax.pure_callback(lambda: np.float32(np.random.randn()), jax.ShapeDtypeStruct((), jnp.float32))
        return jnp.sum(w**2) * (1 + 1e-3 * n)

    with pytest.raises(ValueError, match="f is not deterministic.*PRNG key"):
        jnn.check_grads(noisy, W, grad=lambda w: 2.46 * w)


def test_randomness_drawn_while_tracing_is_refused():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="f is not deterministic"):
        jnn.check_grads(lambda w: jnp.sum(w**2) * (1 + 1e-3 * rng.normal()), W)


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize(
    "f, point",
    [
        (lambda w: jnp.sum(jax.nn.relu(w) * jnp.arange(1.0, 41.0).reshape(8, 5)), W.at[0, 0].set(0.0)),
        (lambda w: jnp.sum(jnp.abs(w) * jnp.arange(1.0, 41.0).reshape(8, 5)), W.at[3, 1].set(0.0)),
        (lambda w: jnp.max(w), W.at[1, 1].set(jnp.max(W))),
    ],
    ids=["relu", "abs", "max"],
)
def test_exactly_at_a_kink_the_entry_is_non_smooth_not_wrong(f, point, mode):
    report = jnn.check_grads(f, point, mode=mode)
    assert report.verdict in ("passed", "inconclusive") and not report.wrong, str(report)
    if mode == "full" and report.leaves[0].nonsmooth:
        assert "non-smooth here" in str(report)


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_a_function_made_of_kinks_only_is_judged_beside_them(mode):
    relu_sum = lambda w: jnp.sum(jax.nn.relu(w) * jnp.arange(1.0, 4.0))  # noqa: E731 - every entry on its kink
    report = jnn.check_grads(relu_sum, jnp.zeros(3), mode=mode)
    assert report.passed and report.leaves[0].beside >= 1, str(report)
    assert "met a kink at the point and were checked beside it" in str(report)
    wrong = jnn.check_grads(relu_sum, jnp.zeros(3), mode=mode, grad=lambda w: 1.05 * (w > 0) * jnp.arange(1.0, 4.0))
    assert wrong.verdict == "failed" and wrong.leaves[0].failed >= 1, str(wrong)


@pytest.mark.parametrize(
    "mode, batch",
    [
        ("full", 64),
        ("fast", 64),
        ("fast", 256),
        # CI time (46 s): python experiments/gradcheck_kinks.py checks full mode at batch 256; make test-heavy runs it
        pytest.param("full", 256, marks=pytest.mark.heavy),
    ],
)
def test_correct_relu_mlps_pass_at_random_points_in_both_modes(mode, batch):
    for seed in range(2):
        report = kinks.check((10, 32, 32, 3), batch, mode, seed)
        assert report.passed, f"seed {seed}\n{report}"
        bad = kinks.check((10, 32, 32, 3), batch, mode, seed, factor=1.05)
        assert bad.verdict == "failed", f"seed {seed}\n{bad}"


def _wave(scale):
    @jax.custom_jvp
    def wave(x):
        return jnp.sin(x)

    wave.defjvp(lambda p, t: (jnp.sin(p[0]), scale * jnp.cos(p[0]) * jnp.sign(t[0]) * jnp.abs(t[0])))
    return lambda w: jnp.sum(wave(X @ w) ** 2)


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_a_rule_without_reverse_mode_is_checked_in_forward_mode(mode):
    good = jnn.check_grads(_wave(1.0), W, mode=mode)
    assert good.passed and good.candidate == "jax.jvp", str(good)
    assert any("reverse mode is not implemented" in n and "forward mode" in n for n in good.notes)
    assert jnn.check_grads(_wave(1.3), W, mode=mode).verdict == "failed"


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_forward_mode_is_checked_beside_reverse_mode_for_scalar_outputs(mode):
    @jax.custom_jvp
    def odd(x):
        return x**3

    odd.defjvp(lambda p, t: (p[0] ** 3, 3 * p[0] ** 2 * t[0]))
    report = jnn.check_grads(lambda w: jnp.sum(odd(jnp.tanh(X @ w))), W, mode=mode)
    assert report.passed and report.forward is not None and all(r.passed for r in report.forward)
    assert "forward mode (jax.jvp): agrees" in str(report)


def test_complex_leaves_are_refused_by_name():
    p = {"a": W, "z": jnp.ones(3, jnp.complex64)}
    with pytest.raises(TypeError, match=r"args\[0\]\['z'\] is complex64: check_grads checks real leaves"):
        jnn.check_grads(lambda p: jnp.sum(p["a"] ** 2) + jnp.sum(jnp.abs(p["z"]) ** 2), p)


def test_a_grad_of_the_right_size_but_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"args\[0\] has shape \(8, 5\), grad returned \(40,\)"):
        jnn.check_grads(lambda w: jnp.sum(w**2), W, grad=lambda w: (2 * w).reshape(-1))


def test_has_aux_ignores_the_auxiliary_output():
    report = jnn.check_grads(lambda w: (jnp.sum(jnp.sin(w)), {"n": 3}), W, has_aux=True)
    assert report.passed
    with pytest.raises(TypeError, match=r"has_aux=True needs f to return \(out, aux\)"):
        jnn.check_grads(lambda w: jnp.sum(w), W, has_aux=True)


def test_jnn_testing_is_reachable_after_import_jnn_and_refuses_an_inconclusive_check():
    assert jnn.testing.assert_grads is assert_grads
    with pytest.raises(AssertionError, match="inconclusive check"):
        assert_grads(_bf16, W)


@pytest.mark.parametrize(
    "kw, err, match",
    [
        ({"localize": "sometimes"}, ValueError, "localize must be one of"),
        ({"has_aux": 1}, TypeError, "has_aux must be True or False"),
        ({"forward": "yes"}, TypeError, "forward must be True or False"),
        ({"rtol": -1.0}, ValueError, r"rtol must be in \[0, inf\]"),
    ],
)
def test_new_options_are_validated(kw, err, match):
    with pytest.raises(err, match=match):
        jnn.check_grads(jnp.sum, W, **kw)
