"""``jnn.check_grads`` on users' code: a corpus of planted gradient bugs, each with its correct twin.

Every bug must be caught (in float64 and float32 inputs, full and fast mode) with the failing leaf named;
every twin must pass (no false alarms, also over 20 seeds).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn.testing import assert_grads

# ---------------------------------------------------------------------------------------------- the corpus


def _custom(fwd_fn, bwd_fn):
    """A custom_vjp function from its forward and (residuals, g) -> cotangents backward."""
    f = jax.custom_vjp(fwd_fn)
    f.defvjp(lambda *a: (fwd_fn(*a), a), bwd_fn)
    return f


def softplus_case(bug):
    sig = jax.nn.sigmoid
    act = _custom(jax.nn.softplus, lambda a, g: (g * (sig(-a[0]) if bug else sig(a[0])),))

    def f(p, x):
        return jnp.sum(act(x @ p["w"]) ** 2)

    return f, "args[0]['w']", {}


def l2_case(bug):
    def f(p):
        return sum(jnp.sum(w**2) for w in jax.tree.leaves(p))

    def grad(p):
        return jax.tree.map(lambda w: (1.0 if bug else 2.0) * w, p)

    return f, "args[0]['w']", {"grad": grad, "only_p": True}


def _layer_norm(eps=1e-2):
    def fwd(x):
        m = jnp.mean(x, -1, keepdims=True)
        v = jnp.mean((x - m) ** 2, -1, keepdims=True)
        return (x - m) / jnp.sqrt(v + eps)

    return fwd


def layer_norm_case(bug, missing="mean"):
    eps = 1e-2
    fwd = _layer_norm(eps)

    def bwd(a, g):
        x = a[0]
        m = jnp.mean(x, -1, keepdims=True)
        v = jnp.mean((x - m) ** 2, -1, keepdims=True)
        s = jnp.sqrt(v + (0.0 if bug and missing == "eps" else eps))
        xh = (x - m) / s
        gm = 0.0 if bug and missing == "mean" else jnp.mean(g, -1, keepdims=True)
        return ((g - gm - xh * jnp.mean(g * xh, -1, keepdims=True)) / s,)

    ln = _custom(fwd, bwd)

    def f(p, x):
        return jnp.sum(jnp.tanh(ln(x @ p["w"])) * p["v"][None, :])

    return f, "args[0]['w']", {}


def scatter_case(bug):
    idx = jnp.array([1, 3, 3, 0, 1, 3])

    def bwd(a, g):
        (table,) = a
        z = jnp.zeros_like(table)
        return ((z.at[idx].set(g) if bug else z.at[idx].add(g)),)

    lookup = _custom(lambda table: table[idx], bwd)

    def f(p, x):
        return jnp.sum(jnp.tanh(lookup(p["E"]) @ p["w"]) ** 2)

    return f, "args[0]['E']", {}


def leaky_case(bug):
    alpha = 0.1
    act = _custom(lambda z: jnp.where(z > 0, z, alpha * z),
                  lambda a, g: (g * jnp.where(a[0] > 0, 1.0, 0.0 if bug else alpha),))  # fmt: skip

    def f(p, x):
        return jnp.sum(act(x @ p["w"]) ** 2)

    return f, "args[0]['w']", {}


def cube_case(bug):
    sg = jax.lax.stop_gradient
    cube = _custom(lambda z: z**3, lambda a, g: (g * 3.0 * (sg(a[0]) if bug else a[0]) ** 2,))

    def f(p, x):
        return jnp.sum(cube(jnp.tanh(x @ p["w"])))

    return f, "args[0]['w']", {"order": 2}


def transpose_case(bug):
    def bwd(a, g):
        x, w = a
        return (g @ (w if bug else w.T), x.T @ g)

    linear = _custom(lambda x, w: x @ w, bwd)

    def f(p, x):
        return jnp.sum(jnp.tanh(linear(x, p["w"])) ** 2)

    return f, "args[1]", {"argnums": 1}


def vector_case(bug):
    fn = _custom(lambda z: jnp.sin(z) * z,
                 lambda a, g: (g * (jnp.cos(a[0]) if bug else jnp.cos(a[0]) * a[0] + jnp.sin(a[0])),))  # fmt: skip

    def f(p, x):
        return fn(x @ p["w"])  # a [batch, out] array: checked through random cotangents

    return f, "args[0]['w']", {}


CASES = {
    "custom_vjp softplus derivative": softplus_case,
    "L2 gradient missing its factor 2 (grad=)": l2_case,
    "layer norm backward missing -mean(g)": layer_norm_case,
    "layer norm backward missing eps": lambda bug: layer_norm_case(bug, "eps"),
    "scatter backward overwrites": scatter_case,
    "leaky ReLU backward loses alpha": leaky_case,
    "stop_gradient in a backward rule (2nd order)": cube_case,
    "input gradient missing a transpose": transpose_case,
    "vector output with a wrong VJP": vector_case,
}


def _inputs(seed, dtype):
    k = jax.random.split(jax.random.key(seed), 4)
    p = {"w": jax.random.normal(k[0], (6, 6), dtype) * 0.5, "v": jax.random.normal(k[1], (6,), dtype),
         "E": jax.random.normal(k[2], (5, 6), dtype)}  # fmt: skip
    x = jax.random.normal(k[3], (6, 6), dtype) - 0.3
    return p, x


def _run(name, bug, dtype, mode, seed=0):
    f, leaf, opts = CASES[name](bug)
    opts = dict(opts)
    p, x = _inputs(seed, dtype)
    if opts.pop("only_p", False):
        return jnn.check_grads(f, {"w": p["w"]}, mode=mode, seed=seed, **opts), leaf
    return jnn.check_grads(f, p, x, mode=mode, seed=seed, **opts), leaf


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_a_planted_bug_is_caught_and_its_leaf_named(name, dtype, mode):
    with jax.enable_x64(dtype == jnp.float64):
        report, leaf = _run(name, True, dtype, mode)
    assert not report.passed, str(report)
    assert report.failed_leaves == [leaf], str(report)
    row = next(r for r in report.leaves if r.path == leaf)
    if mode == "full":
        assert row.failed >= 1 and row.worst_index is not None


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
@pytest.mark.parametrize("name", list(CASES))
def test_the_correct_twin_passes(name, dtype, mode):
    with jax.enable_x64(dtype == jnp.float64):
        report, _ = _run(name, False, dtype, mode)
    assert report.passed, str(report)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_no_false_alarm_over_20_seeds(name):
    for seed in range(20):
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


@pytest.mark.parametrize("name, code", [("right", 0), ("wrong", 1), ("missing", 2)])
def test_cli_checks_a_users_file(name, code, capsys, tmp_path):
    from pathlib import Path

    from jnn import cli

    example = Path(__file__).resolve().parents[1] / "examples" / "my_grads.py"
    out = tmp_path / "report.json"
    assert cli.main(["gradcheck", f"{example}:{name}", "--json", str(out)]) == code
    text = capsys.readouterr()
    if code == 1:
        assert "wrong: args[0]['w']" in text.out and out.exists()
    if code == 2:
        assert "has no function 'missing'" in text.err


def test_cli_refuses_a_malformed_target(capsys):
    from jnn import cli

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
