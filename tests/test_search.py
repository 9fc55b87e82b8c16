"""Random search (issue 38, search spaces): distributions as sweep axes, drawn by a seeded generator, validated
before any work, recorded with the space in the sweep's result and folder."""

import json
import math

import numpy as np
import pytest

import jnn
from jnn.axes import combine
from jnn.datasets import load
from jnn.search import draw
from jnn.sweep import choice, loguniform, randint, sweep, uniform
from jnn.train import TrainConfig


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: uniform(1.0, 1.0), ValueError, r"uniform\(low, high\) needs low < high"),
        (lambda: loguniform(0.0, 1.0), ValueError, r"needs 0 < low \(a log scale\)"),
        (lambda: loguniform(1e-3, float("nan")), ValueError, "loguniform high"),
        (lambda: choice([]), ValueError, "non-empty list"),
        (lambda: choice("abc"), ValueError, "non-empty list"),
        (lambda: randint(0, 1.5), TypeError, "randint high must be an integer"),
        (lambda: randint(3, 3), ValueError, r"high excluded"),
    ],
)
def test_bad_distributions_are_refused_by_name(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_draws_follow_their_distributions_and_the_seed():
    rng = np.random.default_rng(0)
    u = uniform(-1.0, 2.0).sample(rng, 4000)
    assert min(u) >= -1.0 and max(u) < 2.0 and abs(np.mean(u) - 0.5) < 3 * 3 / math.sqrt(12 * 4000)
    lg = np.log(loguniform(1e-4, 1e-1).sample(rng, 4000))
    lo, hi = math.log(1e-4), math.log(1e-1)
    assert lg.min() >= lo and lg.max() < hi and abs(lg.mean() - (lo + hi) / 2) < 3 * (hi - lo) / math.sqrt(12 * 4000)
    ints = randint(2, 5).sample(rng, 3000)
    assert set(ints) == {2, 3, 4} and all(isinstance(v, int) for v in ints)  # high excluded, plain ints
    picks = choice([(8,), (16, 16), "x"]).sample(rng, 3000)
    counts = [picks.count(v) for v in [(8,), (16, 16), "x"]]
    assert all(abs(c - 1000) < 4 * math.sqrt(3000 * (1 / 3) * (2 / 3)) for c in counts), counts
    axes = {"learning_rate": loguniform(1e-3, 0.3), "seed": [0, 1, 2]}
    a, rec = draw(axes, 3, 7)
    b, _ = draw(axes, 3, 7)
    c, _ = draw(axes, 3, 8)
    assert a == b and a != c and a["seed"] == [0, 1, 2]
    assert rec == {"space": {"learning_rate": {"kind": "loguniform", "low": 1e-3, "high": 0.3}, "seed": [0, 1, 2]},
                   "samples": 3, "search_seed": 7}  # fmt: skip


def test_a_list_axis_beside_a_search_is_a_grid_axis_unless_the_call_zips():
    space = {"l2": uniform(0.0, 1e-3), "seed": [0, 1], "keep_prob": choice([0.5, 0.9])}
    drawn, _ = draw(space, 3, 5)
    members = combine(drawn, "grid")  # every draw with every seed: 6 members, the draws' order kept, seeds inside
    assert members["seed"] == [0, 1] * 3
    assert members["l2"] == [v for v in drawn["l2"] for _ in range(2)]
    assert members["keep_prob"] == [v for v in drawn["keep_prob"] for _ in range(2)]
    paired = combine(draw({**space, "seed": [7, 8, 9]}, 3, 5)[0], "zip")  # one seed per draw
    assert paired["seed"] == [7, 8, 9] and paired["l2"] == drawn["l2"]


def test_a_search_is_refused_before_any_work_when_it_cannot_be_drawn():
    with pytest.raises(ValueError, match=r"axis 'l2' is a distribution \(uniform\); give samples=N"):
        draw({"l2": uniform(0.0, 1e-3)}, None, 0)
    with pytest.raises(ValueError, match="no axis is one"):
        draw({"seed": [0, 1]}, 2, 0)
    drawn, _ = draw({"seed": [0, 1], "l2": uniform(0.0, 1e-3)}, 3, 0)
    with pytest.raises(ValueError, match=r"combine='zip' the axes pair one to one .*lengths \{'seed': 2, 'l2': 3\}"):
        combine(drawn, "zip")
    with pytest.raises(ValueError, match=r"samples must be an integer in \[1, 100000\]; got 0"):
        draw({"l2": uniform(0.0, 1e-3)}, 0, 0)
    with pytest.raises(ValueError, match="search_seed must be an integer"):
        draw({"l2": uniform(0.0, 1e-3)}, 2, -1)


def test_a_random_search_sweeps_its_draws_and_records_the_space(tmp_path):
    train, _ = load("spirals", seed=0)
    cfg = TrainConfig(max_epochs=2, batch_size=64)
    space = dict(learning_rate=loguniform(1e-3, 0.3), keep_prob=uniform(0.5, 1.0), seed=randint(0, 100))
    res = sweep(train, cfg, task=jnn.MLP(hidden=(8,)), samples=4, search_seed=11,
                callbacks=[jnn.SweepFolder(tmp_path / "sw")], **space)  # fmt: skip
    drawn, record = draw(space, 4, 11)
    assert [r["learning_rate"] for r in res.rows] == pytest.approx(drawn["learning_rate"], rel=1e-6)
    assert [r["keep_prob"] for r in res.rows] == drawn["keep_prob"] and [r["seed"] for r in res.rows] == drawn["seed"]
    assert res.search == {**record, "combine": "grid"}
    record = res.search
    for name in ("sweep_run.json", "sweep.json"):
        assert json.loads((tmp_path / "sw" / name).read_text())["search"] == record
    again = sweep(train, cfg, task=jnn.MLP(hidden=(8,)), samples=4, search_seed=11,
                  callbacks=[jnn.SweepFolder(tmp_path / "sw", resume=True)], **space)  # fmt: skip
    assert again.rows == res.rows and again.epoch_seconds == ()  # the same draws: the folder's sweep, finished
    with pytest.raises(ValueError, match="is from another sweep; differences: axes"):
        sweep(train, cfg, task=jnn.MLP(hidden=(8,)), samples=4, search_seed=12,
              callbacks=[jnn.SweepFolder(tmp_path / "sw", resume=True)], **space)  # fmt: skip


def test_tpe_asks_in_rounds_is_told_each_points_seed_mean_and_the_same_seed_asks_the_same(tmp_path):
    pytest.importorskip("optuna")
    train, test = load("spirals", seed=0)
    cfg = TrainConfig(max_epochs=8, batch_size=64, early_stopping=jnn.EarlyStopping(patience=2))
    space = dict(learning_rate=loguniform(1e-3, 0.5), hidden=choice([(8,), (8, 8)]), seed=[0, 1])
    res = sweep(train, cfg, task=jnn.MLP(), samples=12, sampler="tpe", search_seed=3, **space)
    assert res.search["sampler"] == "tpe" and res.search["rounds"] == [10, 2] and len(res.rows) == 24
    assert [r["seed"] for r in res.rows] == [0, 1] * 12  # each asked point with every seed (a grid axis)
    for j, value in enumerate(res.search["told"]):  # the mean of the point's members' best validation losses
        assert value == pytest.approx(np.mean([res.rows[2 * j + s]["best_val"] for s in (0, 1)]), rel=1e-12)
        assert res.rows[2 * j]["learning_rate"] == res.rows[2 * j + 1]["learning_rate"]
    assert [r["member"] for r in res.rows] == list(range(24)) and not res.stacked  # two widths: a list of params
    again = sweep(train, cfg, task=jnn.MLP(), samples=12, sampler="tpe", search_seed=3, **space)
    assert again.rows == res.rows
    with pytest.raises(ValueError, match="sampler='tpe' asks samples=N members"):
        sweep(train, cfg, sampler="tpe", learning_rate=loguniform(1e-3, 0.5))
    with pytest.raises(ValueError, match="sampler must be 'random' or 'tpe'; got 'grid'"):
        sweep(train, cfg, samples=2, sampler="grid", learning_rate=loguniform(1e-3, 0.5))
    with pytest.raises(ValueError, match="keeps no sweep folder"):
        sweep(train, cfg, samples=2, sampler="tpe", callbacks=[jnn.SweepFolder(tmp_path / "x")],
              learning_rate=loguniform(1e-3, 0.5))  # fmt: skip
    assert not (tmp_path / "x").exists()
