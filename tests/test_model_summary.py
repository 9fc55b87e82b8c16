"""jnn.summary: layers or leaves, shapes, parameter counts and FLOPs per example, checked against the params and
XLA's own count."""

import jax
import numpy as np
import pytest

import jnn


@pytest.fixture(scope="module")
def train():
    return jnn.datasets.load("mnist1d")[0]


def test_an_mlps_layers_counts_and_flops_are_the_params_own(train):
    s = jnn.summary(jnn.MLP(hidden=(64, 32)), train)
    assert s.title == "MLP 40-64-32-10, relu, softmax"
    assert [r["shape"] for r in s.rows] == [(40, 64), (64, 32), (32, 10)]
    params = jnn.MLP(hidden=(64, 32)).task_for(train).init(jax.random.key(0))
    assert s.params == sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params)) == 40 * 64 + 64 + 64 * 32 + 32 + 330
    assert s.flops == 2 * (40 * 64 + 64 * 32 + 32 * 10) + 64 + 32 + 10
    assert s.xla_flops is not None and abs(s.xla_flops - s.flops) / s.flops < 0.05  # XLA adds the activations
    text = str(s)
    assert text.splitlines()[0] == "ModelSummary: MLP 40-64-32-10, relu, softmax" and "total" in text.splitlines()[-1]


def test_a_tasks_leaves_are_listed_with_xlas_flops(train):
    task = jnn.MLP(hidden=(8,)).task_for(train)
    s = jnn.summary(task, train.x)
    assert {r["name"] for r in s.rows} == {"layers[0].w", "layers[0].b", "layers[1].w", "layers[1].b"}
    assert s.params == 40 * 8 + 8 + 8 * 10 + 10 and s.flops is None and s.xla_flops > 0
    assert s.to_dict()["rows"][0]["shape"] in ([8], [40, 8], [10], [8, 10])
    with pytest.raises(TypeError, match="model must be a jnn.MLP or a jnn.Task; got int"):
        jnn.summary(3, train.x)


def test_jnn_train_prints_the_summary_line(tmp_path, capsys):
    from jnn.app import cli

    assert cli.main(["train", "--dataset", "xor", "--hidden", "8", "--max-epochs", "2", "--out", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == f"model: {jnn.summary(jnn.MLP(hidden=(8,), loss='softmax'), jnn.datasets.load('xor')[0]).line()}"


def test_a_model_too_large_for_memory_is_described_without_being_built():
    import resource

    import jax.numpy as jnp

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    s = jnn.summary(jnn.MLP(hidden=(100_000, 100_000)), jnp.zeros((1, 2), jnp.float32))
    assert s.params == 2 * 100_000 + 100_000 + 100_000 * 100_000 + 100_000 + 100_000 * 10 + 10  # 40 GB in float32
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: the 40 GB were never made
