"""Strict test configuration: no implicit dtype or rank promotion, warnings are errors (pyproject),
float64 only behind a fixture that always restores the global flag, and XLA's CPU backend compiling with
LLVM optimisation off (below)."""

import os

# CI time: the suite compiles hundreds of distinct programs and runs each briefly, so compiling dominates;
# with LLVM's optimisation level 0 the suite ran ~30% faster on 2 cores (tests/test_calls.py and
# tests/test_optimizers.py: 161 s -> 109 s). Every process of the suite (the CLI subprocesses inherit it)
# compiles the same way, so bit-for-bit comparisons compare like with like; benchmarks and users keep
# XLA's default, and so do the long trainings of the suite (the accuracy bands, the crash test), which run
# in subprocesses of ``default_compile_env()``: there execution, not compiling, dominates (the MNIST-1D band
# took 243 s at level 0 against 89 s). JNN_TEST_XLA_OPT=default runs the whole suite with the default level.
_FAST_COMPILE = "--xla_backend_optimization_level=0"
if os.environ.get("JNN_TEST_XLA_OPT", "0") != "default" and "xla_backend_optimization_level" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + _FAST_COMPILE).strip()

import jax  # noqa: E402 (after the flags above: XLA reads them when its backend starts)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

# The command line caches compiled programs on disk by default; tests run without it (one test turns it on).
os.environ.setdefault("JNN_COMPILE_CACHE", "0")

import jnn  # noqa: E402

jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")


def default_compile_env() -> dict:
    """``os.environ`` without the suite's fast-compile flag: for a subprocess that trains for long."""
    env = dict(os.environ)
    flags = [f for f in env.pop("XLA_FLAGS", "").split() if f != _FAST_COMPILE]
    if flags:
        env["XLA_FLAGS"] = " ".join(flags)
    return env


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """After each test module, drop every compiled program of this worker (``jax.clear_caches``). A worker compiles
    hundreds of programs, each mapping its machine code into memory; kept all run long, their mappings neared the
    kernel's limit (``vm.max_map_count``, 65,530) and XLA crashed compiling the next one late in the suite."""
    yield
    jax.clear_caches()


@pytest.fixture
def fresh_programs():
    """Empty ``jax.jit``'s caches of the engine's programs before and after the test: for a test that counts
    the traces of a first run (a run equal to one of an earlier test on this worker would otherwise compile
    nothing), or one that patches what the programs are built from (its programs must not serve later tests)."""
    from jnn.train.evaluation import EVAL
    from jnn.train.program import RUN, RUN_DONATING

    def clear():
        for fn in (RUN, RUN_DONATING, EVAL):
            fn.clear_cache()

    clear()
    yield
    clear()


@pytest.fixture
def x64():
    """Run the test in float64; the previous x64 setting is restored afterwards."""
    before = jax.config.jax_enable_x64
    with jnn.float64_mode():
        yield
    assert jax.config.jax_enable_x64 == before


def tree_allclose(a, b, *, rtol=0.0, atol=0.0) -> bool:
    """True when two pytrees have the same structure and allclose leaves."""
    if jax.tree_util.tree_structure(a) != jax.tree_util.tree_structure(b):
        return False
    return all(
        np.allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))
    )


def make_problem(sizes, loss, *, batch=7, seed=0, dtype="float32"):
    """Random params, inputs and labels for a network of ``sizes`` and a ``loss``."""
    k_init, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    params = jnn.init_mlp(k_init, sizes, dtype=dtype)
    x = jax.random.normal(k_x, (batch, sizes[0]), dtype)
    if loss == "softmax":
        y = jax.random.randint(k_y, (batch,), 0, sizes[-1])
    else:
        y = jax.random.bernoulli(k_y, 0.5, (batch,)).astype(np.int32)
    return params, x, y
