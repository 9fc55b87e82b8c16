"""Accuracy bands of the documented recipes: they fail if a change makes jnn learn worse.

These train the full recipes (3 seeds each), in a subprocess compiled as users compile (XLA's default
optimisation level, not the suite's fast-compile one; see ``conftest.default_compile_env``); together about
two minutes on 2 CPU cores.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import default_compile_env

pytestmark = pytest.mark.slow  # full recipes, 3 seeds each; `make test` runs them

TESTS = Path(__file__).resolve().parent

_RUN = """
import json, sys
import jax
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_numpy_rank_promotion", "raise")
sys.path.insert(0, sys.argv[1])
from test_experiments import load_experiment
mod = load_experiment(sys.argv[2])
res = mod.run({**mod.DEFAULTS, **json.loads(sys.argv[3])})
print("RESULT " + json.dumps(res["recipes"]["jnn"]["test_accuracy"]))
"""


def _test_accuracy(name: str, **overrides) -> dict:
    """The jnn recipe's test accuracy (``{"values", "mean", ...}``) of experiment ``name``, run in a subprocess."""
    proc = subprocess.run([sys.executable, "-c", _RUN, str(TESTS), name, json.dumps(overrides)], capture_output=True,
                          text=True, timeout=900, env=default_compile_env())  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def test_mnist1d_jnn_recipe_reaches_70_percent_mean_of_3_seeds(tmp_path):
    acc = _test_accuracy("mnist1d_mlp", out=str(tmp_path), recipes=["jnn"])
    assert len(acc["values"]) == 3
    assert acc["mean"] >= 0.70, acc


def test_digits_recipe_reaches_0975_mean_of_3_seeds(tmp_path):
    acc = _test_accuracy("digits_mlp", out=str(tmp_path))
    assert len(acc["values"]) == 3
    assert acc["mean"] >= 0.975, acc
