"""Naming the wrong operation: every planted op is named (innermost first, merged over call sites), every twin
reports no wrong op even when each of its operations is checked (``localize="always"``)."""

import importlib.util
import sys
from pathlib import Path

import jax.numpy as jnp
import pytest

import jnn

_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(_ROOT / "experiments"))
_spec = importlib.util.spec_from_file_location("gradcheck_ops", _ROOT / "experiments" / "gradcheck_ops.py")
ops = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ops)


@pytest.mark.parametrize("name", list(ops.CASES))
def test_the_wrong_operation_is_named_and_the_twin_has_none(name, x64):
    bad, op, calls = ops.run(name, True)
    assert bad.verdict == "failed", str(bad)
    first = bad.failed_operations[0]
    assert first.name == op and first.calls == calls and not first.passed, str(bad)
    assert first.source.startswith("gradcheck_ops.py:") and first.shapes, first
    assert f"operation: the derivative of `{op}`" in str(bad)
    twin, _, _ = ops.run(name, False, localize="always")
    assert twin.passed and twin.operations and not twin.failed_operations, str(twin)


def test_an_operation_inside_a_jit_function_is_named_before_the_function(x64):
    bad, _, _ = ops.run("custom_jvp inside a jax.jit block", True)
    names = [(o.name, o.kind) for o in bad.failed_operations]
    assert names[0] == ("cube", "custom_jvp") and ("block", "jit") in names, names
    assert bad.failed_operations[0].inside == "block" and "/" in bad.failed_operations[0].eqn


def test_a_function_without_operations_says_how_to_name_blocks(x64):
    report = jnn.check_grads(lambda w: jnp.sum(w**3), jnp.ones(3), grad=None, localize="always")
    assert report.passed and not report.operations
    assert any("jax.named_scope" in n for n in report.notes)


def test_localize_never_checks_no_operation_and_a_grad_candidate_says_why(x64):
    bad, _, _ = ops.run("custom_vjp softmax backward", True, localize="never")
    assert bad.verdict == "failed" and bad.operations == ()
    f = lambda w: jnp.sum(w**2)  # noqa: E731
    report = jnn.check_grads(f, jnp.ones(3), grad=lambda w: 3 * w)
    assert not report.operations and any("not localised for a grad=" in n for n in report.notes)
