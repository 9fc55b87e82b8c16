"""Naming the wrong operation through control flow and remat (issue 36, finding 4): a wrong custom_vjp rule
inside ``jax.checkpoint``, ``lax.scan`` (a ``named_scope`` inside the body; the failing step named),
``fori_loop``, ``while_loop``, ``lax.cond``/``switch`` (the branch taken) and ``vmap`` is named once, with the
user's source line, never jnn's; its correct twin gets no wrong operation."""

import jax
import jax.numpy as jnp
import pytest

import jnn

W = jax.random.normal(jax.random.key(0), (4, 4)) / 2
X = jax.random.normal(jax.random.key(1), (5, 4))


def _squash(factor):
    @jax.custom_vjp
    def squash(z):
        return jnp.tanh(z)

    squash.defvjp(lambda z: (jnp.tanh(z), z), lambda z, g: (g * factor * (1 - jnp.tanh(z) ** 2),))
    return squash


def _squash_jvp(factor):
    @jax.custom_jvp
    def squash(z):
        return jnp.tanh(z)

    squash.defjvp(lambda p, t: (jnp.tanh(p[0]), factor * (1 - jnp.tanh(p[0]) ** 2) * t[0]))
    return squash


def _cases(factor):
    sq, sqj = _squash(factor), _squash_jvp(factor)

    def remat(w):
        return jnp.sum(jax.checkpoint(lambda w: sq(X @ w))(w))

    def scan(w):
        def step(h, x):
            with jax.named_scope("cell"):
                h = sq(h @ w + x)
            return h, None

        return jnp.sum(jax.lax.scan(step, jnp.zeros(4), X)[0])

    def fori(w):
        return jnp.sum(jax.lax.fori_loop(0, 3, lambda i, h: sq(h @ w), X))

    def while_(w):
        # reverse mode cannot enter a while loop: forward mode is checked, through a custom_jvp rule
        return jnp.sum(jax.lax.while_loop(lambda c: c[0] < 3, lambda c: (c[0] + 1, sqj(c[1] @ w)), (0, X))[1])

    def cond(w):
        return jnp.sum(jax.lax.cond(jnp.sum(w) > -1e9, lambda w: sq(X @ w), lambda w: jnp.tanh(X @ w), w))

    def switch(w):
        return jnp.sum(jax.lax.switch(2, [lambda w: X @ w, lambda w: jnp.sin(X @ w), lambda w: sq(X @ w)], w))

    def vmapped(w):
        return jnp.sum(jax.vmap(lambda x: sq(x @ w))(X))

    return {"remat": remat, "scan": scan, "fori_loop": fori, "while_loop": while_, "cond": cond, "switch": switch,
            "vmap": vmapped}  # fmt: skip


WITHIN = {"remat": "", "scan": "in scan (step 0)", "fori_loop": "in scan (step 0)", "while_loop": "in while loop",
          "cond": "in cond branch 1", "switch": "in cond branch 2", "vmap": ""}  # fmt: skip


@pytest.mark.parametrize("case", list(WITHIN))
def test_a_wrong_rule_inside_control_flow_is_named_once_with_the_users_line(case):
    report = jnn.check_grads(_cases(1.05)[case], W)
    assert report.verdict == "failed", str(report)
    ops = report.failed_operations
    kind = "custom_jvp" if case == "while_loop" else "custom_vjp"
    assert ops and ops[0].name == "squash" and ops[0].kind == kind, str(report)
    assert sum(o.name == "squash" for o in ops) == 1 and not any(o.name.endswith(")") for o in ops), str(report)
    assert ops[0].source.startswith("test_gradcheck_control_flow.py:"), str(report)
    assert WITHIN[case] in str(ops[0]), str(report)
    if case == "scan":
        assert "inside cell" in str(ops[0])  # the named_scope in the scan body
    assert "no operation to localise" not in str(report)


@pytest.mark.parametrize("case", ["scan", "while_loop", "cond"])
def test_the_correct_twin_inside_control_flow_has_no_wrong_operation(case):
    report = jnn.check_grads(_cases(1.0)[case], W, localize="always")
    assert report.passed and report.operations and not report.failed_operations, str(report)


def test_a_rule_checked_alone_names_where_it_is_defined_not_jnn():
    report = jnn.check_grads(_squash(1.05), X)
    src = report.failed_operations[0].source
    assert src.startswith("defined at test_gradcheck_control_flow.py:") and "check.py" not in str(report)


def test_the_documented_examples_name_the_rule_in_the_scan_and_the_straight_through_estimator():
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("my_grads", Path(__file__).resolve().parents[1] / "examples"
                                                  / "my_grads.py")  # fmt: skip
    ex = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ex)
    f, args = ex.in_a_scan()
    first = jnn.check_grads(f, *args).failed_operations[0]
    assert first.name == "layer_norm" and "inside cell in scan (step 0)" in str(first)
    f, args = ex.straight_through()
    report = jnn.check_grads(f, *args)
    assert report.verdict == "failed" and any("`stop_gradient`" in n for n in report.notes)
    assert jnn.check_grads(f, *args, surrogate=["args[0]"]).verdict == "inconclusive"
