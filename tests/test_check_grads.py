"""``jnn.check_grads`` on users' code: a corpus of planted gradient bugs, each with its correct twin.

Every bug must be caught (in float64 and float32 inputs, full and fast mode) with the failing leaf named;
every twin must pass (no false alarms, also over 3 seeds; seeds 3-19 are marked ``heavy``, left out of
``make test`` and covered by ``python experiments/gradcheck_corpus.py --seeds 20``).
"""

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
_spec = importlib.util.spec_from_file_location("gradcheck_corpus", _ROOT / "experiments" / "gradcheck_corpus.py")
corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corpus)
CASES, _run, _inputs, softplus_case = corpus.CASES, corpus._run, corpus._inputs, corpus.softplus_case


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("bug", [True, False], ids=["bug", "twin"])
@pytest.mark.parametrize("name", list(CASES))
def test_a_planted_bug_is_caught_with_its_leaf_named_and_its_twin_passes(name, bug, dtype, mode):
    with jax.enable_x64(dtype == jnp.float64):
        report, leaf = _run(name, bug, dtype, mode, localize="never")  # naming ops: tests/test_gradcheck_ops.py
    if not bug:
        assert report.passed, str(report)
        return
    assert not report.passed, str(report)
    assert report.failed_leaves == [leaf], str(report)
    row = next(r for r in report.leaves if r.path == leaf)
    if mode == "full":
        assert row.failed >= 1 and row.worst_index is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_no_false_alarm_over_3_seeds(name):
    for seed in range(3):
        for mode, dtype in (("full", jnp.float32), ("fast", jnp.float64)):
            with jax.enable_x64(dtype == jnp.float64):
                report, _ = _run(name, False, dtype, mode, seed)
            assert report.passed, f"seed {seed} {mode}\n{report}"


@pytest.mark.heavy
@pytest.mark.parametrize("name", list(CASES))
def test_no_false_alarm_over_20_seeds(name):
    for seed in range(3, 20):
        for mode, dtype in (("full", jnp.float32), ("fast", jnp.float64)):
            with jax.enable_x64(dtype == jnp.float64):
                report, _ = _run(name, False, dtype, mode, seed)
            assert report.passed, f"seed {seed} {mode}\n{report}"


def test_the_x64_flag_is_restored_and_float32_inputs_are_not_changed():
    p, x = _inputs(0, jnp.float32)
    f, _, _ = softplus_case(False)
    before = jax.config.jax_enable_x64
    jnn.check_grads(f, p, x)
    assert jax.config.jax_enable_x64 == before and p["w"].dtype == jnp.float32


def test_a_single_wrong_entry_at_1e5_params_is_named_in_fast_mode():
    w = jax.random.normal(jax.random.key(0), (400, 250), jnp.float32) * 0.05
    x = jax.random.normal(jax.random.key(1), (4, 400), jnp.float32)

    def f(p):
        return jnp.sum(jnp.tanh(x @ p["w"]) ** 2)

    def grad(p):
        g = jax.grad(f)(p)
        return {"w": g["w"].at[123, 45].add(0.5)}

    report = jnn.check_grads(f, {"w": w}, grad=grad, mode="fast")
    assert not report.passed
    row = report.leaves[0]
    assert row.path == "args[0]['w']" and row.worst_index == (123, 45) and row.failed == 1


def test_report_table_and_paths_for_tuples_dicts_and_single_arrays():
    def f(a, b):
        return jnp.sum(a[0] ** 2) + jnp.sum(a[1]["z"]) + jnp.sum(jnp.sin(b))

    a = (jnp.ones(3), {"z": jnp.ones((2, 2))})
    report = jnn.check_grads(f, a, jnp.ones(4), argnums=(0, 1))
    assert [r.path for r in report.leaves] == ["args[0][0]", "args[0][1]['z']", "args[1]"]
    text = str(report)
    assert text.splitlines()[-1] == "PASSED: 3/3 leaves right" and "args[0][1]['z']" in text


def test_nan_gradients_show_as_nan_and_fail():
    def f(w):
        return jnp.sum(w**2)

    report = jnn.check_grads(f, jnp.ones(3), grad=lambda w: w * jnp.nan)
    assert not report.passed and "nan" in str(report)


@pytest.mark.parametrize(
    "call, err, match",
    [
        (lambda: jnn.check_grads(3, jnp.ones(2)), TypeError, "f must be a callable"),
        (lambda: jnn.check_grads(jnp.sum, jnp.ones(2), argnums=1), ValueError, r"argnums must be .* in \[0, 0\]"),
        (lambda: jnn.check_grads(jnp.sum, jnp.ones(2), order=3), ValueError, "order must be 1 or 2"),
        (lambda: jnn.check_grads(jnp.sum, jnp.ones(2), mode="slow"), ValueError, "mode must be one of"),
        (lambda: jnn.check_grads(lambda a: 0.0, {}), ValueError, "must hold float arrays"),
        (lambda: jnn.check_grads(jnp.sum, jnp.arange(3)), ValueError, "must hold float arrays"),
        (
            lambda: jnn.check_grads(lambda p: jnp.sum(p["a"]), {"a": jnp.ones(2)}, grad=lambda p: [p["a"]]),
            TypeError,
            "grad must return the structure",
        ),
        (lambda: jnn.check_grads(lambda w: w, jnp.ones(2), grad=lambda w: w), ValueError, "grad= is for scalar f"),
    ],
)
def test_bad_arguments_are_named(call, err, match):
    with pytest.raises(err, match=match):
        call()


def test_assert_grads_raises_with_the_table():
    def f(w):
        return jnp.sum(w**3)

    assert_grads(f, jnp.ones(3))
    with pytest.raises(AssertionError, match=r"(?s)wrong derivatives:\n.*FAILED"):
        assert_grads(f, jnp.ones(3), grad=lambda w: 2 * w**2)


def test_a_million_parameters_in_fast_mode_names_the_leaf():
    k = jax.random.split(jax.random.key(0), 3)
    p = {"a": jax.random.normal(k[0], (1000, 1000), jnp.float32) * 0.03, "b": jax.random.normal(k[1], (1000,)) * 0.1}
    x = jax.random.normal(k[2], (4, 1000))

    def f(p):
        return jnp.sum(jnp.tanh(x @ p["a"] + p["b"][None, :]) ** 2)

    def grad(p):
        g = jax.grad(f)(p)
        return {"a": g["a"], "b": g["b"].at[777].mul(1.1)}

    report = jnn.check_grads(f, p, grad=grad)
    assert report.mode == "fast" and report.failed_leaves == ["args[0]['b']"] and report.leaves[1].worst_index == (777,)
    assert np.isfinite(report.leaves[1].reference)


def test_fast_mode_holds_three_copies_of_float64_params_beyond_them_and_a_forward_pass():
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(1), 3)
        p = {"a": jax.random.normal(k[0], (1000, 1000), jnp.float64) * 0.03, "b": jnp.zeros(1000, jnp.float64)}
        x = jax.random.normal(k[2], (4, 1000), jnp.float64)

        def f(p):
            return jnp.sum(jnp.tanh(x @ p["a"] + p["b"][None, :]) ** 2)

        m = jax.jit(f).lower(p).compile().memory_analysis()
        forward = m.temp_size_in_bytes + m.output_size_in_bytes
    report = jnn.check_grads(f, p, mode="fast")
    params = 8 * 1001000
    assert report.passed and report.buffer_bytes is not None
    # The candidate gradient, the direction and one perturbed copy: float64 params are not copied.
    assert report.buffer_bytes - params - forward <= 3.01 * params


@pytest.mark.parametrize("name, code", [("right", 0), ("wrong", 1), ("missing", 2)])
def test_cli_checks_a_users_file(name, code, capsys, tmp_path):
    from pathlib import Path

    from jnn.app import cli

    example = Path(__file__).resolve().parents[1] / "examples" / "my_grads.py"
    out = tmp_path / "report.json"
    assert cli.main(["gradcheck", f"{example}:{name}", "--json", str(out)]) == code
    text = capsys.readouterr()
    if code == 1:
        assert "wrong: args[0]['w']" in text.out and out.exists()
    if code == 2:
        assert "has no function 'missing'" in text.err


def test_cli_refuses_a_malformed_target(capsys):
    from jnn.app import cli

    assert cli.main(["gradcheck", "nofile.py"]) == 2
    assert "the check must be FILE.py:NAME" in capsys.readouterr().err


def test_taylor_test_gives_a_verdict_also_for_float32_params_and_at_1e6_parameters():
    k = jax.random.split(jax.random.key(0), 2)
    w = jax.random.normal(k[0], (1000, 1000), jnp.float32) * 0.03
    x = jax.random.normal(k[1], (4, 1000), jnp.float32)

    def f(p):
        return jnp.sum(jnp.tanh(x @ p) ** 2)

    g = jax.grad(f)(w)
    good = jnn.taylor_test(f, w, g, key=jax.random.key(2))
    assert good.passed and abs(good.order - 2.0) < 0.2 and good.used
    bad = jnn.taylor_test(f, w, g.at[3].mul(1.5), key=jax.random.key(2))
    assert not bad.passed and abs(bad.order - 1.0) < 0.2


def test_compare_grads_defaults_pass_a_correct_finite_difference_gradient_and_refuse_empty_trees():
    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(0), 2)
        p = {"w": jax.random.normal(k[0], (5, 4), jnp.float64), "b": jnp.zeros(4, jnp.float64)}
        x = jax.random.normal(k[1], (8, 5), jnp.float64)

        def f(p):
            return jnp.sum(jnp.tanh(x @ p["w"] + p["b"][None, :]) ** 2)

        fd = jnn.finite_difference_grad(f, p)
        assert jnn.compare_grads(fd, jax.grad(f)(p)).passed
    with pytest.raises(ValueError, match="reference must hold at least one array"):
        jnn.compare_grads(None, None)
