"""Kinks never decide a verdict (issue 36, finding 1): at exact kinks the correct gradient never FAILS and a
×1.05 bug never PASSES, in fast, auto and full mode, and the modes agree on the kink set (ties, a zero bias
meeting zero-padded rows, quantised inputs into max-pool)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn.gradcheck import probes as P
from jnn.gradcheck.report import NONSMOOTH, OK, WRONG, CheckReport, LeafCheck


def _padded_mlp(seed: int, hidden: int = 512):
    """A relu MLP 10-hidden-3 with a zero-initialised b1 and 8 of 16 input rows zero-padded: every padded
    row puts every hidden unit exactly on its kink along b1."""
    k = jax.random.split(jax.random.key(seed), 4)
    params = {"w1": jax.random.normal(k[0], (10, hidden)) / 10**0.5, "b1": jnp.zeros(hidden),
              "w2": jax.random.normal(k[1], (hidden, 3)) / hidden**0.5, "b2": jnp.zeros(3)}  # fmt: skip
    x = jax.random.normal(k[2], (16, 10)).at[8:].set(0.0)
    y = jax.random.randint(k[3], (16,), 0, 3)
    return params, x, y


def _mlp_loss(p, x, y):
    z = jax.nn.relu(x @ p["w1"] + p["b1"][None, :]) @ p["w2"] + p["b2"][None, :]
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), y[:, None], 1))


def _scaled(loss, leaf: str, factor: float = 1.05):
    def grad(*args):
        g = jax.grad(loss)(*args)
        return {**g, leaf: g[leaf] * factor}

    return grad


@pytest.mark.parametrize("mode", ["fast", "auto"])
def test_zero_bias_meeting_zero_padding_never_fails_the_right_gradient_nor_passes_a_5_percent_bug(mode):
    for seed in range(10):
        params, x, y = _padded_mlp(seed)
        right = jnn.check_grads(_mlp_loss, params, x, y, mode=mode, seed=seed)
        assert right.mode == "fast"  # 7171 coordinates: auto chooses fast
        assert right.verdict != "failed", f"seed {seed}\n{right}"
        assert right.resolution == max(r.resolution for r in right.leaves)  # every leaf counts
        bug = jnn.check_grads(_mlp_loss, params, x, y, mode=mode, seed=seed, grad=_scaled(_mlp_loss, "b1"))
        assert bug.verdict == "failed" and bug.failed_leaves == ["args[0]['b1']"], f"seed {seed}\n{bug}"
        assert all(r.status == WRONG for r in bug.leaves if r.path == "args[0]['b1']" and r.failed)


def _ties(w):
    """Max over windows of 4 of a quantised vector: exact ties."""
    return jnp.sum(jnp.max(w.reshape(-1, 4), axis=1) * jnp.arange(1.0, 1.0 + w.shape[0] // 4))


def _pool(p, x):
    """Quantised inputs through a linear layer with a zero bias into a max-pool of width 2: the zero rows
    tie every window at the bias."""
    z = x @ p["w"] + p["b"][None, :]
    pooled = jax.lax.reduce_window(z, -jnp.inf, jax.lax.max, (1, 2), (1, 2), "VALID")
    return jnp.sum(pooled * jnp.linspace(-1.0, 1.0, pooled.shape[1])[None, :])


def _kink_cases():
    q = jnp.round(jax.random.normal(jax.random.key(3), (32,)) * 2) / 2
    k = jax.random.split(jax.random.key(4), 2)
    xq = jnp.round(jax.random.uniform(k[0], (12, 6)) * 2) / 2
    xq = xq.at[6:].set(0.0)
    pool_p = {"w": jax.random.normal(k[1], (6, 8)), "b": jnp.zeros(8)}
    small_p, sx, sy = _padded_mlp(5, hidden=16)
    return {
        "ties": (_ties, (q,), None),
        "zero bias + zero padding": (_mlp_loss, (small_p, sx, sy), "b1"),
        "quantised max-pool": (_pool, (pool_p, xq), "b"),
    }


@pytest.mark.parametrize("case", ["ties", "zero bias + zero padding", "quantised max-pool"])
def test_fast_and_full_agree_on_the_kink_set(case):
    f, args, leaf = _kink_cases()[case]
    if leaf is None:
        bug_grad = lambda w: 1.05 * jax.grad(f)(w)  # noqa: E731
    else:
        bug_grad = _scaled(f, leaf)
    verdicts = {}
    for mode in ("fast", "full"):
        right = jnn.check_grads(f, *args, mode=mode)
        bug = jnn.check_grads(f, *args, mode=mode, grad=bug_grad)
        assert right.verdict == "passed", f"{mode}\n{right}"
        assert bug.verdict == "failed", f"{mode}\n{bug}"
        if case != "ties":  # jnp.max splits a tie evenly, as central differences do: no kink to meet there
            assert sum(r.beside for r in right.leaves) > 0, f"{mode}: the case meets no kink\n{right}"
        verdicts[mode] = (right.verdict, bug.verdict, bug.failed_leaves)
    assert verdicts["fast"] == verdicts["full"]


def _fixed(values):
    """``measure`` returning the same four φ values for every probe and step."""
    return lambda ix, sigma: np.tile(np.asarray(values, float)[:, None], (1, len(ix)))


def test_a_probe_is_wrong_only_when_it_also_fails_beside_the_point():
    crit = P.Criterion(2.2e-16, 2.2e-16, 1e-6, 0.0, (1.0, 1 / 8))
    one = np.ones(1)
    # φ = |s| along the probe: a kink at the point; the candidate 0.7 is a one-sided slope of neither side
    kink = lambda ix, sigma: np.abs(np.array([[1.0], [-1.0], [0.5], [-0.5]]) * sigma)  # noqa: E731
    right_beside = lambda ix, t: (lambda i, s: np.abs(t + np.array([[1.0], [-1.0], [0.5], [-0.5]]) * s),
                                  np.sign([t]), one, np.abs(t))  # fmt: skip
    j = P.judge(kink, np.array([0.7]), one, one, 0.0, crit, beside=right_beside)
    assert j.status[0] == OK and j.beside[0]
    wrong_beside = lambda ix, t: (lambda i, s: np.abs(t + np.array([[1.0], [-1.0], [0.5], [-0.5]]) * s),
                                  1.05 * np.sign([t]), one, np.abs(t))  # fmt: skip
    assert P.judge(kink, np.array([0.7]), one, one, 0.0, crit, beside=wrong_beside).status[0] == WRONG
    kinks_beside_too = lambda ix, t: (lambda i, s: np.abs(np.array([[1.0], [-1.0], [0.5], [-0.5]]) * s),
                                      np.array([0.7]), one, 0.0)  # fmt: skip
    j = P.judge(kink, np.array([0.7]), one, one, 0.0, crit, beside=kinks_beside_too)
    assert j.status[0] == NONSMOOTH and not j.status[0] == WRONG


def test_a_leaf_whose_probes_all_met_kinks_makes_the_check_inconclusive_never_passed():
    ok = LeafCheck("args[0]['w']", (3,), 3, 0, 0.0, 0.0, (0,), 1.0, 1.0, OK, 0, 1e-8)
    kinked = LeafCheck("args[0]['b']", (3,), 0, 0, float("nan"), float("nan"), None, 0.5, 0.0, NONSMOOTH, 3,
                       float("inf"))  # fmt: skip
    report = CheckReport([ok, kinked], mode="fast", order=1, candidate="jax.grad", directions=8,
                         precision="float64", resolution=float("inf"))  # fmt: skip
    assert report.verdict == "inconclusive" and not report.wrong
    assert "every probe of args[0]['b'] met a kink" in str(report) and "mode='full'" in str(report)
    assert "1/2 leaves right" not in str(report)


@pytest.mark.parametrize("side", ["reference", "candidate", "both"])
def test_compare_grads_fails_on_a_nan_on_either_side_naming_it(side):
    good, bad = {"w": jnp.array([1.0, 2.0, 3.0])}, {"w": jnp.array([1.0, jnp.nan, 3.0])}
    ref, cand = (bad, good) if side == "reference" else (good, bad) if side == "candidate" else (bad, bad)
    report = jnn.compare_grads(ref, cand, reference_name="jax.grad", candidate_name="backprop")
    assert report.verdict == "failed" and report.leaves[0].status == "non-finite", str(report)
    named = [p for p in report.problems if "nan at w[1]" in p]
    sides = {"reference": ["jax.grad"], "candidate": ["backprop"], "both": ["jax.grad", "backprop"]}[side]
    assert [p.split(" side")[0].removeprefix("the ") for p in named] == sides


_H0 = jnp.ones(4, jnp.float32)  # closed over: the float32 carry start of a scan
_XS = jnp.linspace(-1.0, 1.0, 20, dtype=jnp.float32).reshape(5, 4)


def _scan_rnn(w):
    h, _ = jax.lax.scan(lambda h, x: (jnp.tanh(h @ w + x), None), _H0, _XS)
    return jnp.sum(h)


def _fori(w):
    return jnp.sum(jax.lax.fori_loop(0, 3, lambda i, h: jnp.tanh(h @ w), _H0))


@pytest.mark.parametrize("f", [_scan_rnn, _fori], ids=["scan", "fori_loop"])
def test_a_float32_carry_from_a_closed_over_array_is_checked_against_its_float64_twin(f):
    w = jax.random.normal(jax.random.key(0), (4, 4), jnp.float32) / 2
    report = jnn.check_grads(f, w)
    assert report.passed and report.precision == "float32", str(report)
    assert any("checked at its own dtypes (float32)" in n for n in report.notes)
    assert any("float64 twin" in n for n in report.notes)  # the reference is the twin, not float32 differences
    bug = jnn.check_grads(f, w, grad=lambda w: 1.05 * jax.grad(f)(w))
    assert bug.verdict == "failed", str(bug)


_X = jax.random.normal(jax.random.key(1), (5, 4))


def _heads(w, factor=1.0):
    @jax.custom_vjp
    def squash(z):
        return jnp.tanh(z)

    squash.defvjp(lambda z: (jnp.tanh(z), z), lambda z, g: (g * factor * (1 - jnp.tanh(z) ** 2),))
    z = _X @ w
    return {"box": squash(z[:, :2]), "cls": jax.nn.log_softmax(z)[:, 0], "count": jnp.int32(3)}


def test_pytree_outputs_are_checked_and_the_wrong_output_is_named():
    w = jax.random.normal(jax.random.key(0), (4, 3))
    right = jnn.check_grads(_heads, w)
    assert right.passed and "out['count']" in " ".join(right.notes), str(right)
    bug = jnn.check_grads(lambda w: _heads(w, 1.05), w)
    assert bug.verdict == "failed" and dict(bug.outputs) == {"out['box']": "failed", "out['cls']": "passed"}
    assert "outputs checked alone: out['box'] failed, out['cls'] passed" in str(bug)


def test_a_pair_returned_without_has_aux_gets_a_hint():
    report = jnn.check_grads(lambda w: (jnp.sum(_X @ w), jnp.mean(w)), jnp.ones((4, 3)))
    assert any("has_aux=True" in n for n in report.notes), str(report)
    assert not any("has_aux" in n for n in jnn.check_grads(lambda w: jnp.sum(_X @ w), jnp.ones((4, 3))).notes)


_WB = jax.random.normal(jax.random.key(0), (8, 5))
_XB = jax.random.normal(jax.random.key(1), (16, 8))


def _bf16(w):
    return jnp.sum(jnp.tanh(_XB.astype(jnp.bfloat16) @ w.astype(jnp.bfloat16)).astype(jnp.float32) ** 2)


@pytest.mark.parametrize("factor, verdict", [(1.0, "inconclusive"), (1.3, "failed")])
def test_fast_and_full_agree_in_bfloat16_a_weak_leaf_is_checked_coordinate_by_coordinate(factor, verdict):
    got = {}
    for mode in ("fast", "full"):
        report = jnn.check_grads(_bf16, _WB, mode=mode, grad=lambda w: jax.grad(_bf16)(w) * factor)
        got[mode] = (report.verdict, round(report.resolution, 6) if verdict == "inconclusive" else None)
    assert got["fast"] == got["full"] and got["full"][0] == verdict, got
