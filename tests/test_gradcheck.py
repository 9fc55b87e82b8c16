import importlib
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import make_problem

import jnn
from jnn.app import cli


def test_compare_grads_reports_the_worst_entry_and_fails_on_a_mismatch():
    ref = [{"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}]
    cand = [{"w": jnp.ones((3, 4)).at[2, 1].add(1e-3), "b": jnp.zeros(4)}]
    report = jnn.compare_grads(ref, cand, rtol=1e-6)
    assert not report.passed
    w = report.leaves[1]
    assert (w.path, w.shape, w.worst_index, w.passed) == ("layers[0].w", (3, 4), (2, 1), False)
    assert w.max_abs_err == pytest.approx(1e-3, rel=1e-3) and w.max_rel_err == pytest.approx(1e-3, rel=1e-3)
    assert report.leaves[0].passed and report.leaves[0].max_rel_err == 0.0
    text = str(report)
    assert "layers[0].w" in text and "NO" in text and "FAILED: 1/2" in text
    assert json.loads(json.dumps(report.to_dict()))["passed"] is False
    assert jnn.compare_grads(ref, cand, rtol=2e-3).passed


def test_compare_grads_treats_nan_as_a_failure():
    ref = [{"w": jnp.ones(2), "b": jnp.ones(1)}]
    cand = [{"w": jnp.array([1.0, jnp.nan]), "b": jnp.ones(1)}]
    assert not jnn.compare_grads(ref, cand, rtol=1.0, atol=1.0).passed


def test_compare_grads_refuses_mismatched_trees():
    with pytest.raises(ValueError, match="same tree structure"):
        jnn.compare_grads([{"w": jnp.ones(2), "b": jnp.ones(1)}], [{"w": jnp.ones(2)}])
    with pytest.raises(ValueError, match="reference shape"):
        jnn.compare_grads([jnp.ones(2)], [jnp.ones(3)])
    with pytest.raises(ValueError, match=r"rtol must be in \[0, inf\]; got -1"):
        jnn.compare_grads([jnp.ones(2)], [jnp.ones(2)], rtol=-1.0)


def test_float64_mode_restores_the_flag_even_after_an_error():
    before = jax.config.jax_enable_x64
    with pytest.raises(RuntimeError):
        with jnn.float64_mode():
            assert jnp.ones(1).dtype == jnp.float64
            raise RuntimeError("boom")
    assert jax.config.jax_enable_x64 == before
    assert jnp.ones(1).dtype == jnp.float32


def test_finite_differences_of_a_quadratic_are_exact(x64):
    a = jnp.array([[2.0, 1.0], [1.0, 3.0]])
    f = lambda p: 0.5 * p["v"] @ a @ p["v"]
    v = jnp.array([0.3, -0.7])
    fd = jnn.finite_difference_grad(f, {"v": v}, eps=1e-3, chunk=1)
    np.testing.assert_allclose(fd["v"], a @ v, rtol=1e-10)


@pytest.mark.slow
def test_cli_gradcheck_prints_the_table_and_passes(capsys, tmp_path):
    out = tmp_path / "report.json"
    rc = cli.main(["gradcheck", "--sizes", "6,5,3", "--batch", "4", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0
    assert "backprop (vectorised) vs jax.grad" in text and "node_backprop (node level) vs jax.grad" in text
    assert "layers[1].w" in text and "PASSED: 4/4" in text and "Taylor remainder order" in text
    data = json.loads(out.read_text())
    assert all(r["passed"] for r in data["reports"]) and abs(data["taylor_order"] - 2) < 0.1
    assert jax.config.jax_enable_x64 is False


def test_cli_gradcheck_float32_binary(capsys):
    rc = cli.main(
        [
            "gradcheck",
            "--sizes",
            "4,3,1",
            "--loss",
            "binary",
            "--activation",
            "sigmoid",
            "--dtype",
            "float32",
            "--mode",
            "classic",
            "--batch",
            "5",
        ]
    )
    assert rc == 0 and "PASSED" in capsys.readouterr().out


def test_cli_gradcheck_exits_1_on_a_wrong_gradient(capsys, monkeypatch):
    bp = importlib.import_module("jnn.backprop")

    real = bp.backprop

    def wrong(*args, **kwargs):
        g = real(*args, **kwargs)
        return [{"w": l["w"] * 1.01, "b": l["b"]} for l in g]

    monkeypatch.setattr(bp, "backprop", wrong)
    rc = cli.main(["gradcheck", "--sizes", "4,3,2", "--batch", "3"])
    out = capsys.readouterr().out
    assert rc == 1 and "MISMATCH" in out and "NO" in out


@pytest.mark.parametrize(
    "argv,match",
    [
        (["gradcheck", "--keep-prob", "1.5"], r"keep_prob must be in \(0, 1\]; got 1.5"),
        (["gradcheck", "--sizes", "4"], "at least two entries"),
        (["gradcheck", "--l2", "-1"], r"--l2 must be in \[0, inf\]; got -1"),
        (["gradcheck", "--loss", "binary"], "--loss binary needs an output width of 1"),
        (["gradcheck", "--batch", "0"], r"--batch must be an integer in \[1, inf\]; got 0"),
    ],
)
def test_cli_bad_values_exit_2_with_a_message(argv, match, capsys):
    assert cli.main(argv) == 2
    import re

    assert re.search(match, capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv", [["gradcheck", "--activation", "gelu"], ["gradcheck", "--sizes", "4,x"], ["gradcheck", "--nope"], []]
)
def test_cli_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_make_problem_is_valid():
    params, x, y = make_problem([3, 2], "binary")
    assert params[-1]["w"].shape == (3, 2) and x.shape == (7, 3) and set(np.unique(y)) <= {0, 1}
