"""Seeds pooled by setting: Student-t quantiles, mean ± std and intervals, the table's forms, a sweep's summary."""

import csv
import io
import math

import pytest

import jnn
from jnn.datasets import load
from jnn.results import mean_std_ci, student_t_cdf, student_t_quantile, summarize
from jnn.sweep import grid, sweep
from jnn.train import TrainConfig

# Two-sided 95 % and 99 % critical values from printed t tables (df: t_0.975, t_0.995).
T_TABLE = {1: (12.706, 63.657), 2: (4.303, 9.925), 4: (2.776, 4.604), 10: (2.228, 3.169), 30: (2.042, 2.750),
           1000: (1.962, 2.581)}  # fmt: skip


@pytest.mark.parametrize("df", sorted(T_TABLE))
def test_t_quantiles_match_the_printed_table_and_invert_the_cdf(df):
    for p, expected in zip((0.975, 0.995), T_TABLE[df]):
        q = student_t_quantile(p, df)
        assert q == pytest.approx(expected, abs=1e-3)
        assert student_t_cdf(q, df) == pytest.approx(p, abs=1e-10)
        assert student_t_quantile(1 - p, df) == pytest.approx(-q, abs=1e-12)  # symmetric
    assert student_t_cdf(0.0, df) == pytest.approx(0.5, abs=1e-12)


def test_t_quantiles_agree_with_scipy_where_it_is_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 19, 50):
        for p in (0.6, 0.9, 0.95, 0.975, 0.999):
            assert student_t_quantile(p, df) == pytest.approx(float(stats.t.ppf(p, df)), rel=1e-9, abs=1e-9)


def test_mean_std_and_interval_by_hand():
    # values 1, 2, 3, 6: mean 3, sample variance (4 + 1 + 0 + 9) / 3 = 14/3, half-width t_{0.975,3} * std / 2.
    s = mean_std_ci([1.0, 2.0, 3.0, 6.0, float("nan"), None])
    std = math.sqrt(14 / 3)
    assert s["n"] == 4 and s["mean"] == 3.0 and s["std"] == pytest.approx(std, rel=1e-15)
    half = 3.182446305284263 * std / 2  # scipy.stats.t.ppf(0.975, 3)
    assert s["ci_low"] == pytest.approx(3 - half, rel=1e-9) and s["ci_high"] == pytest.approx(3 + half, rel=1e-9)
    one = mean_std_ci([5.0])
    assert one["mean"] == 5.0 and math.isnan(one["std"]) and math.isnan(one["ci_low"])
    assert mean_std_ci([])["n"] == 0
    wider = mean_std_ci([1.0, 2.0, 3.0, 6.0], confidence=0.99)
    assert wider["ci_high"] - wider["ci_low"] > s["ci_high"] - s["ci_low"]  # a higher level, a wider interval


ROWS = [
    {"member": i, "seed": s, "keep_prob": kp, "stopped_by": "max_epochs", "epochs": 10, "best_val": v,
     "test_accuracy": a}
    for i, (s, kp, v, a) in enumerate(
        [(0, 0.5, 1.0, 0.6), (1, 0.5, 2.0, 0.7), (2, 0.5, 3.0, 0.8), (0, 0.9, 0.5, 0.9), (1, 0.9, 0.7, None)]
    )
]  # fmt: skip


def test_rows_are_pooled_by_setting_in_order_of_appearance():
    s = summarize(ROWS, by=["keep_prob"])
    assert s.metrics == ("epochs", "best_val", "test_accuracy")
    assert [r["keep_prob"] for r in s.rows] == [0.5, 0.9] and [r["n"] for r in s.rows] == [3, 2]
    assert s.rows[0]["best_val_mean"] == 2.0 and s.rows[0]["best_val_std"] == 1.0
    assert s.rows[1]["test_accuracy_mean"] == 0.9 and math.isnan(s.rows[1]["test_accuracy_std"])  # one value
    assert s.rows[0]["epochs_std"] == 0.0
    back = list(csv.DictReader(io.StringIO(s.to_csv())))
    assert list(back[0]) == s.columns() and float(back[0]["best_val_mean"]) == 2.0
    md = s.to_markdown().splitlines()
    assert md[0] == "| keep_prob | n | epochs | best_val | test_accuracy |"
    assert md[2].startswith("| 0.5 | 3 | 10 ± 0 [10, 10] | 2 ± 1 [")
    # silent wrong (issue 37, finding 10): one of the two runs has no test_accuracy; n says so per metric
    assert md[3].endswith("| 0.9 (n=1 of 2) |") and s.rows[1]["test_accuracy_n"] == 1 and s.rows[1]["epochs_n"] == 2
    assert summarize(ROWS, by="keep_prob", metrics=["best_val"]).metrics == ("best_val",)
    assert "Summary(" in repr(s) and "<table>" in s._repr_html_()


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"by must name columns of the sweep's rows \[.*'keep_prob'.*\]; got 'l2'"):
        summarize(ROWS, by=["l2"])
    with pytest.raises(ValueError, match="by must name at least one column"):
        summarize(ROWS, by=[])
    with pytest.raises(ValueError, match="metric 'stopped_by' must be numeric; got 'max_epochs'"):
        summarize(ROWS, by=["keep_prob"], metrics=["stopped_by"])
    with pytest.raises(ValueError, match=r"confidence must be a float in \(0, 1\); got 1.5"):
        summarize(ROWS, by=["keep_prob"], confidence=1.5)
    with pytest.raises(TypeError, match="result must be a jnn.sweep.SweepResult or a non-empty list of row dicts"):
        summarize({"rows": ROWS}, by=["keep_prob"])
    with pytest.raises(ValueError, match=r"metric must be one of \['best_val'\]; got 'x'"):
        summarize(ROWS, by=["keep_prob"], metrics=["best_val"]).plot("x")


def test_a_sweep_over_seeds_and_keep_prob_is_summarised_and_plotted():
    pytest.importorskip("matplotlib")
    train, test = load("spirals", seed=0)
    res = sweep(train, TrainConfig(max_epochs=4, batch_size=64), task=jnn.MLP(hidden=(8,)), test=test,
                callbacks=[jnn.Progress(bar=False)], **grid(seed=[0, 1, 2], keep_prob=[0.6, 0.9]))  # fmt: skip
    s = jnn.results.summarize(res, by=["keep_prob"])
    assert "keep_prob" not in s.metrics and "l2" not in s.metrics and "test_accuracy" in s.metrics
    for r in s.rows:
        accs = [row["test_accuracy"] for row in res.rows if row["keep_prob"] == r["keep_prob"]]
        assert r["n"] == 3 and r["test_accuracy_mean"] == pytest.approx(sum(accs) / 3, rel=1e-12)
        assert r["test_accuracy_ci_low"] <= r["test_accuracy_mean"] <= r["test_accuracy_ci_high"]
    fig = s.plot("test_accuracy")
    ax = fig.axes[0]
    assert ax.get_ylabel() == "test_accuracy" and [t.get_text() for t in ax.get_xticklabels()] == [
        "keep_prob=0.6\n(n=3)", "keep_prob=0.9\n(n=3)"]  # fmt: skip


def test_jnn_summarize_writes_the_table_and_plot_next_to_a_sweep(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    from jnn.app import cli

    train, _ = load("spirals", seed=0)
    res = sweep(train, TrainConfig(max_epochs=3, batch_size=64), task=jnn.MLP(hidden=(8,)),
                callbacks=[jnn.Progress(bar=False)], **grid(seed=[0, 1], l2=[0.0, 1e-3]))  # fmt: skip
    jnn.save_sweep(res, tmp_path / "sw")
    assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "l2", "--metrics", "best_val,epochs"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| l2 | n | best_val | epochs |") and "wrote" in out
    for name in ("summary.csv", "summary.md", "summary.png"):
        assert (tmp_path / "sw" / name).stat().st_size > 0
    back = list(csv.DictReader(io.StringIO((tmp_path / "sw" / "summary.csv").read_text())))
    assert [float(r["l2"]) for r in back] == [0.0, 1e-3] and [int(r["n"]) for r in back] == [2, 2]
    assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "seed"]) == 2  # its own summary: --overwrite only
    assert "already holds a summary jnn wrote" in capsys.readouterr().err
    assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "seed", "--overwrite"]) == 0  # default metrics
    assert capsys.readouterr().out.startswith("| seed | n | epochs | best_val |\n")  # l2, keep_prob: not metrics
    assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "dropout", "--overwrite"]) == 2
    assert "by must name columns of the sweep's rows" in capsys.readouterr().err
    assert cli.main(["summarize", str(tmp_path / "nothing"), "--by", "l2"]) == 2
    assert "SWEEP must be a sweep folder holding sweep.json" in capsys.readouterr().err


def test_data_loss_summarize_never_replaces_files_jnn_did_not_write_nor_writes_into_a_train_run(tmp_path, capsys):
    """Issue 37, finding 2: a user's own summary.md/.csv/.png is never replaced (not even with --overwrite),
    jnn's own summary only with --overwrite, and a jnn train run's folder is refused; nothing is written."""
    from jnn.app import cli

    train, _ = load("spirals", seed=0)
    res = sweep(train, TrainConfig(max_epochs=2, batch_size=64), task=jnn.MLP(hidden=(8,)), **grid(seed=[0, 1]))
    jnn.save_sweep(res, tmp_path / "sw")
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("summary.md", "summary.csv", "summary.png"):
        (mine / name).write_text(f"my own {name}\n")
        for extra in ([], ["--overwrite"]):
            assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "seed", "--out", str(mine), *extra]) == 2
            err = capsys.readouterr().err
            assert "is not a file jnn wrote" in err and name in err and "Traceback" not in err, err
        assert (mine / name).read_text() == f"my own {name}\n"
        (mine / name).unlink()
    assert sorted(p.name for p in mine.iterdir()) == []  # nothing written by the refusals
    run = tmp_path / "run"
    assert cli.main(["train", "--dataset", "spirals", "--hidden", "8", "--max-epochs", "1", "--out", str(run)]) == 0
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "seed", "--out", str(run), "--overwrite"]) == 2
    assert "holds a jnn train run" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == before
    # a summary jnn wrote that a user then edited is the user's now
    assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "seed", "--out", str(mine)]) == 0
    with open(mine / "summary.md", "a") as fh:
        fh.write("my notes\n")
    assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "seed", "--out", str(mine), "--overwrite"]) == 2
    assert "my notes" in (mine / "summary.md").read_text()
    (mine / "summary.md").unlink()
    (mine / "summary.md").symlink_to(tmp_path / "elsewhere.md")
    assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "seed", "--out", str(mine), "--overwrite"]) == 2
    assert "symbolic link" in capsys.readouterr().err and not (tmp_path / "elsewhere.md").exists()


def test_silent_wrong_a_setting_pooled_from_one_run_is_warned_about(tmp_path, capsys):
    """Issue 38 (the silent trap): equal-length axes pair up, so ``summarize(by=["keep"])`` pooled n = 1 per setting
    with a NaN spread and no word; now each such setting is named, in a UserWarning and ``Summary.warnings``."""
    from jnn.app import cli

    rows = [{"member": i, "seed": i, "keep": k, "best_val": 0.5 + i / 10} for i, k in enumerate([0.7, 0.8, 0.9])]
    with pytest.warns(UserWarning, match=r"3 of 3 settings have n = 1 .*keep=0.7; keep=0.8; keep=0.9.*grid"):
        s = summarize(rows, by=["keep"])
    assert len(s.warnings) == 1 and "warning" in repr(s)
    pooled = rows + [{**r, "member": r["member"] + 3, "seed": 9} for r in rows]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert summarize(pooled, by=["keep"]).warnings == ()  # n = 2 everywhere: no warning
    train, _ = load("spirals", seed=0)
    res = sweep(
        train,
        TrainConfig(max_epochs=2, batch_size=64),
        task=jnn.MLP(hidden=(8,)),
        seed=[0, 1],
        l2=[0.0, 1e-3],
        combine="zip",
    )  # paired: one run per l2
    jnn.save_sweep(res, tmp_path / "sw")
    capsys.readouterr()
    assert cli.main(["summarize", str(tmp_path / "sw"), "--by", "l2"]) == 0
    err = capsys.readouterr().err
    assert err.count("jnn summarize: warning: 2 of 2 settings have n = 1") == 1 and "Traceback" not in err
