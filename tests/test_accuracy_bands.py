"""Accuracy bands of the documented recipes: they fail if a change makes jnn learn worse.

These train the full recipes (3 seeds each); together about a minute on 2 CPU cores.
"""

import pytest
from test_experiments import load_experiment

pytestmark = pytest.mark.slow  # full recipes, 3 seeds each; `make test` runs them


def test_mnist1d_jnn_recipe_reaches_70_percent_mean_of_3_seeds(tmp_path):
    mod = load_experiment("mnist1d_mlp")
    res = mod.run({**mod.DEFAULTS, "out": str(tmp_path), "recipes": ["jnn"]})
    acc = res["recipes"]["jnn"]["test_accuracy"]
    assert len(acc["values"]) == 3
    assert acc["mean"] >= 0.70, acc


def test_digits_recipe_reaches_0975_mean_of_3_seeds(tmp_path):
    mod = load_experiment("digits_mlp")
    res = mod.run({**mod.DEFAULTS, "out": str(tmp_path)})
    acc = res["recipes"]["jnn"]["test_accuracy"]
    assert len(acc["values"]) == 3
    assert acc["mean"] >= 0.975, acc
