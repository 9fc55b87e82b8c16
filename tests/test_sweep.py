"""Sweeps: M members in one compile equal M separate fits; stopped members are frozen."""

import jax
import numpy as np
import pytest

import jnn
from jnn.datasets import load
from jnn.debug import trace_counts
from jnn.sweep import format_table, grid, members_of, sweep, zipped
from jnn.train import EarlyStopping, TrainConfig, fit

NET = jnn.MLP(hidden=(32, 32))
CFG = dict(batch_size=64, max_epochs=8, early_stopping=EarlyStopping(patience=50), learning_rate=0.05)
AXES = zipped(
    seed=[0, 1, 2, 3, 0, 1, 2, 3],
    learning_rate=[0.05, 0.05, 0.1, 0.1, 0.02, 0.02, 0.05, 0.05],
    l2=[0.0, 1e-4, 0.0, 1e-3, 0.0, 0.0, 1e-4, 0.0],
    keep_prob=[0.7, 0.7, 0.9, 1.0, 0.8, 0.7, 1.0, 0.5],
)


@pytest.fixture(scope="module")
def spirals():
    return load("spirals")


@pytest.mark.slow
def test_eight_members_equal_eight_fits_and_compile_once(spirals, fresh_programs):
    train, test = spirals
    before = dict(trace_counts())
    res = sweep(train, TrainConfig(**CFG), task=NET, test=test, **AXES)
    assert trace_counts()["run_epoch"] - before.get("run_epoch", 0) == 1
    assert trace_counts()["train_step"] - before.get("train_step", 0) == 1
    assert len(res.rows) == 8
    for i, c in enumerate(res.members):
        m = res.models[i]
        assert (c.seed, c.learning_rate, m.l2, m.keep_prob) == tuple(AXES[k][i] for k in AXES)
        assert m.hidden == NET.hidden
        r = fit(train, c, task=m)
        report = jnn.compare_grads(r.params, res.member_params(i), rtol=1e-6)
        assert report.max_rel_err <= 1e-6, (i, str(report))
        np.testing.assert_allclose(res.histories[i]["val_loss"], r.history["val_loss"], rtol=1e-5)
        assert res.rows[i]["test_accuracy"] == pytest.approx(jnn.evaluate(r.params, test, m)["accuracy"], abs=2e-3)


@pytest.mark.slow
def test_a_stopped_member_is_frozen_while_the_others_go_on(spirals):
    train, _ = spirals
    cfg = TrainConfig(**{**CFG, "max_epochs": 30, "early_stopping": EarlyStopping(patience=1, restore_best=False)})
    # lr 0.5 is noisy and stops after a few epochs; lr 0.01 improves steadily and runs longer.
    res = sweep(train, cfg, learning_rate=[0.5, 0.01], seed=[0, 0], task=NET, combine="zip")
    fast, slow = res.rows
    assert fast["stopped_by"] == "early_stopping" and fast["epochs"] < slow["epochs"]
    h = res.histories[0]
    assert len(h) == fast["epochs"]  # nothing recorded after the stop
    assert len(res.histories[1]) == slow["epochs"]  # each member's history has its own length
    # Frozen: the member's step count and params equal a lone fit that stopped at the same epoch (had it
    # gone on for the other member's epochs, its params would differ by far more than rounding; lr 0.5
    # amplifies the ~1e-7 batched-matmul rounding, hence 1e-5 here).
    alone = fit(train, res.members[0], task=res.models[0])
    assert int(alone.state.epoch) == fast["epochs"] and int(alone.state.step) == int(res.state.step[0])
    assert jnn.compare_grads(alone.state.params, res.member_params(0), rtol=1e-5).max_rel_err <= 1e-5


@pytest.mark.slow
def test_best_picks_by_validation_metric_and_save_writes_files(spirals, tmp_path):
    train, test = spirals
    res = sweep(train, TrainConfig(**{**CFG, "max_epochs": 3}), test=test, learning_rate=[0.001, 0.1], task=NET)
    assert res.best()["member"] == int(np.argmin([r["best_val"] for r in res.rows]))
    paths = jnn.save_sweep(res, tmp_path)
    assert {p.name for p in paths} == {"sweep.csv", "sweep.json", "sweep.png", "params.npz"}
    assert (tmp_path / "sweep.csv").read_text().splitlines()[0].startswith("member,seed,learning_rate,l2,keep_prob")
    assert "member" in format_table(res.rows)
    acc = TrainConfig(**{**CFG, "max_epochs": 3, "early_stopping": EarlyStopping("val_accuracy", patience=50)})
    res2 = sweep(train, acc, learning_rate=[0.001, 0.1], task=NET)
    assert res2.best()["member"] == int(np.argmax([r["best_val"] for r in res2.rows]))


def test_grid_is_the_cartesian_product():
    g = grid(seed=[0, 1], l2=[0.0, 1e-4, 1e-3])
    assert g == {"seed": [0, 0, 0, 1, 1, 1], "l2": [0.0, 1e-4, 1e-3, 0.0, 1e-4, 1e-3]}


@pytest.mark.parametrize(
    "axes,exc,match",
    [
        (dict(seed=[0, 1], l2=[0.0]), ValueError, r"same length .* got lengths \{'seed': 2, 'l2': 1\}"),
        (
            dict(momentum=[0.9]),
            ValueError,
            r"sweep axis must be one of \['learning_rate', 'batch_size', 'seed', 'hidden', "
            r"'l2', 'keep_prob'\]",
        ),  # fmt: skip
        (dict(hidden=[(8,), (0,)]), ValueError, r"sweep member 1 \(hidden=\(0,\)\): hidden\[0\] must be"),
        (dict(batch_size=[8, 0]), ValueError, r"sweep member 1 \(batch_size=0\): batch_size must be"),
        (dict(keep_prob=[0.5, 1.5]), ValueError, r"sweep member 1 \(keep_prob=1.5\): keep_prob must be in \(0, 1\]"),
        (dict(learning_rate=[0.1, -1.0]), ValueError, r"sweep member 1 \(learning_rate=-1.0\): learning_rate must be"),
        (dict(l2=[-0.1]), ValueError, r"sweep member 0 \(l2=-0.1\): l2 must be in \[0, inf\]"),
        (dict(seed=[]), ValueError, "non-empty list"),
        ({}, ValueError, "at least one axis"),
    ],
)
def test_bad_axes_name_the_member(axes, exc, match):
    with pytest.raises(exc, match=match):
        members_of(TrainConfig(**CFG), axes)


@pytest.mark.slow
def test_cli_sweep(tmp_path, capsys):
    from jnn.app import cli

    out = tmp_path / "sw"
    argv = [
        "sweep",
        "--dataset",
        "spirals",
        "--hidden",
        "16",
        "--batch-size",
        "64",
        "--max-epochs",
        "3",
        "--seeds",
        "0,1",
        "--l2s",
        "0,0.001",
        "--grid",
        "--out",
        str(out),
    ]
    assert cli.main(argv) == 0
    text = capsys.readouterr().out
    assert "4 members over seed, l2" in text and "best by lowest val_loss at each member's best epoch: member" in text
    assert (out / "sweep.csv").read_text().count("\n") == 5
    assert cli.main(["sweep", "--dataset", "spirals", "--seeds", "0,1", "--l2s", "0", "--zip"]) == 2
    assert "same length" in capsys.readouterr().err
    assert cli.main(["sweep", "--dataset", "spirals"]) == 2
    assert "needs at least one axis" in capsys.readouterr().err


@pytest.mark.heavy  # CI time (59 s): benchmarks/sweep.py is the script itself; make test-heavy runs it
def test_sweep_benchmark_smoke(tmp_path):
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run([sys.executable, str(root / "benchmarks" / "sweep.py"), "--members", "2", "--epochs",
                           "1", "--stagger-epochs", "3", "--recipe-members", "0", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=root)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["members"] == 2 and res["end_to_end_seconds"]["sweep"] > 0
    assert "| end to end |" in proc.stdout


def test_members_of_different_widths_depths_and_batch_sizes_train_in_shape_groups(spirals, tmp_path, fresh_programs):
    train, test = spirals
    cfg = TrainConfig(**{**CFG, "max_epochs": 6})
    axes = zipped(hidden=[(16,), (8, 8), (16,), (8, 8)], batch_size=[32, 32, 64, 32], seed=[0, 1, 2, 3])
    before = trace_counts()["run_epoch"]
    res = sweep(train, cfg, task=NET, test=test, **axes)
    assert trace_counts()["run_epoch"] - before == 3  # one compile per shape group
    assert res.groups == ((0,), (1, 3), (2,)) and not res.stacked
    assert [r["hidden"] for r in res.rows] == ["16", "8,8", "16", "8,8"]
    assert [r["batch_size"] for r in res.rows] == [32, 32, 64, 32]
    for i, c in enumerate(res.members):
        m = res.models[i]
        assert (m.hidden, c.batch_size, c.seed) == (axes["hidden"][i], axes["batch_size"][i], axes["seed"][i])
        r = fit(train, c, task=m)
        assert jnn.compare_grads(r.params, res.member_params(i), rtol=1e-6).max_rel_err <= 1e-6, i
        np.testing.assert_allclose(res.histories[i]["val_loss"], r.history["val_loss"], rtol=1e-5)
        assert res.member_sizes[i] == (2, *m.hidden, 3)
    jnn.save_sweep(res, tmp_path / "sw")
    for i in (1, 2):
        model = jnn.load_run(tmp_path / "sw", member=i)
        for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(res.member_params(i))):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # Groups that differ only in batch size have params of one shape: stacked as before.
    same = sweep(train, cfg, batch_size=[32, 64], seed=[0, 1], task=NET, combine="zip")
    assert same.stacked and same.groups == ((0,), (1,)) and same.params[0]["w"].shape[0] == 2


def test_the_command_line_reads_shape_axes():
    import argparse

    from jnn.app.cli import _hidden_list

    assert _hidden_list("64;128,128;none") == [(64,), (128, 128), ()]
    with pytest.raises(argparse.ArgumentTypeError, match="comma-separated ints"):
        _hidden_list("64;12x")


def test_a_task_and_an_mlp_answer_one_model_protocol_and_a_sweep_records_each_members_model(spirals, tmp_path):
    import json

    from jnn import protocol

    train, _ = spirals
    mlp = jnn.MLP(hidden=(8,), keep_prob=0.9)
    task = mlp.task_for(train)
    assert protocol.task_for(task, train) is task
    assert protocol.shape_key(task) == () and protocol.shape_label(task) == ""
    assert isinstance(task, protocol.Model) and not isinstance(task, protocol.Builder)  # no stubs on a Task
    assert isinstance(mlp, protocol.Builder) and protocol.task_for(mlp, train) == task
    assert task.sweep_axes() == ("l2", "keep_prob") and mlp.sweep_axes() == ("hidden", "l2", "keep_prob")
    assert mlp.shape_key() == ((8,), None) and mlp.shape_label() == "hidden 8, "
    m, h = mlp.member({"hidden": (4,), "l2": 0.5})
    assert m == jnn.MLP(hidden=(4,), l2=0.5, keep_prob=0.9) and h == {"l2": 0.5, "keep_prob": 0.9}
    t, h = task.member({"l2": 0.5})
    assert t is task and h == {"l2": 0.5, "keep_prob": 0.9}
    with pytest.raises(ValueError, match=r"l2 must be in \[0, inf\]"):
        mlp.member({"l2": -1.0})
    with pytest.raises(TypeError, match="l2 must be a real number"):
        task.member({"l2": "big"})
    cfg = TrainConfig(**{**CFG, "max_epochs": 1})
    res = sweep(train, cfg, task=task, l2=[0.0, 0.1])
    assert res.models == (task, task) and res.sizes is None and res.member_sizes is None
    assert res.descriptions[0]["task"]["params"][1] == ["layers[0].w", [2, 8], "float32"]
    res_mlp = sweep(train, cfg, task=mlp, hidden=[(4,), (8,)])
    assert [d["mlp"]["hidden"] for d in res_mlp.descriptions] == [[4], [8]]
    assert (
        [d["sizes"] for d in res_mlp.descriptions] == [[2, 4, 3], [2, 8, 3]] == [list(s) for s in res_mlp.member_sizes]
    )
    jnn.save_sweep(res, tmp_path / "task")
    assert json.loads((tmp_path / "task" / "sweep.json").read_text())["members_model"] == list(res.descriptions)
    loaded = jnn.load_run(tmp_path / "task", member=1, task=task)
    assert loaded.hyper["l2"] == 0.1 and loaded.params[0]["w"].shape == (2, 8)


def test_reproducibility_members_as_programs_are_bit_for_bit_their_fits_and_refit_reruns_one(spirals):
    import optax

    train, test = spirals
    cfg = TrainConfig(max_epochs=12, batch_size=64, early_stopping=EarlyStopping(patience=2))
    net = jnn.MLP(hidden=(8,))
    axes = zipped(seed=[0, 1, 2], learning_rate=[0.05, 0.3, 0.1], keep_prob=[0.8, 0.9, 1.0])
    exact = sweep(train, cfg, task=net, test=test, strategy="programs", workers=1, **axes)
    vmapped = sweep(train, cfg, task=net, test=test, strategy="stacked", **axes)
    for k in range(3):
        alone = fit(train, exact.members[k], task=exact.models[k])
        assert _same(exact.member_params(k), alone.params), k  # bit for bit
        assert exact.histories[k].metrics == alone.history.metrics and exact.rows[k]["epochs"] == len(alone.history)
        again = vmapped.refit(k)  # the vmapped member as a single run
        assert _same(again.params, alone.params)
        assert jnn.compare_grads(vmapped.member_params(k), alone.params, rtol=1e-5).max_rel_err <= 1e-5
    assert [r["stopped_by"] for r in exact.rows] == [r.stopped_by for r in (vmapped.refit(k) for k in range(3))]
    # An optimizer built from the members' hyperparameters, and a task's own hyperparameter axis.
    task = net.task_for(train)
    build = lambda h: optax.chain(optax.clip_by_global_norm(h["clip"]), optax.sgd(h["learning_rate"]))  # noqa: E731
    res = sweep(train, cfg, task=task, optimizer=build, **zipped(l2=[0.0, 0.01], clip=[0.5, 5.0]), strategy="programs")
    one = fit(train, res.members[1], task=task.with_hyper({"l2": 0.01}),
              optimizer=jnn.train.optimizers.from_hyperparams(build, {"learning_rate": 0.02, "clip": 5.0}))  # fmt: skip
    assert _same(res.member_params(1), one.params) and _same(res.refit(1).params, one.params)
    with pytest.raises(ValueError, match=r"k must be a member in \[0, 2\]; got 3"):
        exact.refit(3)


def _same(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
