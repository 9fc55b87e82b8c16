"""How a sweep's axes make members: a grid unless the call pairs them (``combine="zip"``, ``jnn.sweep.zipped``);
never a silent pairing of equal-length lists that reads like a grid."""

import json

import pytest

import jnn
from jnn.app import cli
from jnn.axes import combine
from jnn.datasets import load
from jnn.results import summarize
from jnn.sweep import grid, sweep, zipped
from jnn.train import TrainConfig


def test_equal_length_lists_make_the_grid_they_read_as_and_pair_only_when_asked():
    axes = dict(keep_prob=[0.7, 0.8, 0.9], seed=[0, 1, 2])
    members = combine(axes)
    assert list(zip(members["keep_prob"], members["seed"])) == [(k, s) for k in (0.7, 0.8, 0.9) for s in (0, 1, 2)]
    assert combine(axes, "zip") == {"keep_prob": [0.7, 0.8, 0.9], "seed": [0, 1, 2]}
    # grid() and zipped() blocks move together under either rule, and make a grid with the other axes.
    for how in ("grid", "zip"):
        assert combine(grid(**axes), how) == members
    pairs = combine({**zipped(learning_rate=[0.1, 0.03], batch_size=[128, 32]), "seed": [0, 1, 2]})
    assert list(zip(pairs["learning_rate"], pairs["batch_size"], pairs["seed"])) == [
        (lr, b, s) for lr, b in ((0.1, 128), (0.03, 32)) for s in (0, 1, 2)
    ]
    assert combine({"seed": [0, 1, 2], "l2": [0.0]}) == {"seed": [0, 1, 2], "l2": [0.0] * 3}


def test_axes_that_cannot_combine_are_refused_with_the_lengths():
    with pytest.raises(ValueError, match=r"combine='zip' the axes pair one to one .*\{'seed': 3, 'l2': 2\}"):
        combine({"seed": [0, 1, 2], "l2": [0.0, 1e-3]}, "zip")
    with pytest.raises(ValueError, match=r"zipped axes pair one to one .*\{'seed': 2, 'l2': 1\}"):
        zipped(seed=[0, 1], l2=[0.0])
    with pytest.raises(ValueError, match=r"combine must be one of \['grid', 'zip'\]; got 'product'"):
        combine({"seed": [0]}, "product")
    with pytest.raises(ValueError, match="sweep axis 'seed' must be a non-empty list of values; got 3"):
        combine({"seed": 3})
    with pytest.raises(ValueError, match="sweep axis names must be identifiers"):
        grid(**{"not a name": [1]})


def test_the_readme_study_trains_a_grid_and_its_summary_pools_every_seed(spirals):
    train, _ = spirals
    cfg = TrainConfig(max_epochs=2, batch_size=64)
    res = sweep(train, cfg, task=jnn.MLP(hidden=(8,)), keep_prob=[0.8, 0.9], seed=[0, 1, 2])
    assert [(r["keep_prob"], r["seed"]) for r in res.rows] == [(k, s) for k in (0.8, 0.9) for s in (0, 1, 2)]
    summary = summarize(res, by=["keep_prob"])
    assert summary.warnings == () and [row["n"] for row in summary.rows] == [3, 3]
    paired = sweep(train, cfg, task=jnn.MLP(hidden=(8,)), keep_prob=[0.8, 0.9], seed=[0, 1], combine="zip")
    assert [(r["keep_prob"], r["seed"]) for r in paired.rows] == [(0.8, 0), (0.9, 1)]
    with pytest.warns(UserWarning, match="2 of 2 settings have n = 1"):
        summarize(paired, by=["keep_prob"])


def test_the_cli_sweeps_a_grid_pairs_with_zip_and_draws_a_search_it_can_resume(tmp_path, capsys):
    common = ["--dataset", "spirals", "--hidden", "8", "--max-epochs", "4", "--log-every", "0"]
    assert cli.main(["sweep", *common, "--l2s", "0,0.001", "--seeds", "0,1", "--out", str(tmp_path / "g")]) == 0
    assert "4 members over seed, l2" in capsys.readouterr().out
    zipped_run = ["sweep", *common, "--l2s", "0,0.001", "--seeds", "0,1", "--zip", "--out", str(tmp_path / "z")]
    assert cli.main(zipped_run) == 0
    assert "2 members over seed, l2" in capsys.readouterr().out
    space = tmp_path / "space.toml"
    space.write_text('learning_rate = {kind = "loguniform", low = 1e-3, high = 0.3}\n'
                     'hidden = {kind = "choice", values = [[8], [8, 8]]}\n')  # fmt: skip
    run = ["sweep", *common, "--space", str(space), "--samples", "3", "--search-seed", "4", "--seeds", "0,1",
           "--scheduler", "asha", "--out", str(tmp_path / "s")]  # fmt: skip
    assert cli.main(run) == 0
    assert "6 members over learning_rate, hidden, seed" in capsys.readouterr().out
    record = json.loads((tmp_path / "s" / "sweep.json").read_text())
    assert record["search"] == {"space": {"learning_rate": {"kind": "loguniform", "low": 1e-3, "high": 0.3},
                                          "hidden": {"kind": "choice", "values": [[8], [8, 8]]}, "seed": [0, 1]},
                                "samples": 3, "search_seed": 4, "combine": "grid"}  # fmt: skip
    assert record["strategy"] == "programs" and record["devices"] == ["cpu:0"] * 6
    assert [r["seed"] for r in record["rows"]] == [0, 1] * 3
    rows = record["rows"]
    assert cli.main(["sweep", "--out", str(tmp_path / "s"), "--resume", "--log-every", "0"]) == 0  # drawn again
    assert json.loads((tmp_path / "s" / "sweep.json").read_text())["rows"] == rows
    capsys.readouterr()
    for bad, message in ((["--samples", "3"], "--samples draws members from a --space SPACE.toml"),
                         (["--space", str(space)], "holds distributions: give --samples N"),
                         (["--space", str(space), "--samples", "2", "--learning-rates", "0.1"],
                          "--space sets the axis 'learning_rate', given as a flag too")):  # fmt: skip
        assert cli.main(["sweep", *common, *bad, "--out", str(tmp_path / "bad")]) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_a_search_space_file_is_read_as_the_record_it_writes():
    from jnn.search import loguniform, space_from_dict

    space = space_from_dict({"learning_rate": {"kind": "loguniform", "low": 1e-3, "high": 0.3}, "seed": [0, 1]})
    assert space == {"learning_rate": loguniform(1e-3, 0.3), "seed": [0, 1]}
    assert space["learning_rate"].to_dict() == {"kind": "loguniform", "low": 1e-3, "high": 0.3}
    for entry, message in (({"kind": "normal", "low": 0, "high": 1}, "a table with kind one of"),
                           ({"kind": "uniform", "low": 0}, r"needs exactly the keys \['high', 'low'\]; got \['low'\]"),
                           ({"kind": "uniform", "low": 1, "high": 0}, "needs low < high"),
                           (3, "a list of values")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            space_from_dict({"l2": entry}, "space.toml")


@pytest.fixture(scope="module")
def spirals():
    return load("spirals", seed=0)
