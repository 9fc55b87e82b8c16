"""Hostile inputs, round four (issue 37): each test is named after its finding's class (silent wrong, data
loss, wrong refusal, hang, blow-up, traceback) and pins the named error, or the right answer, and that nothing
was written or lost. Findings 1 and 2 live beside their folders (``test_sweep_folder.py``, ``test_results.py``)."""

import numpy as np
import pytest

from jnn.app.cli import main
from jnn.app.tabular import Preprocessing, Table, features_of, read_table


def _csv(path, header, rows):
    path.write_text(",".join(header) + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows))
    return path


@pytest.fixture
def noise_csv(tmp_path):
    rng = np.random.default_rng(0)
    rows = [[f"{a:.4f}", f"{b:.4f}"] for a, b in rng.normal(size=(60, 2))]
    return _csv(tmp_path / "noise.csv", ["f1", "f2"], rows)


def test_silent_wrong_the_target_column_is_refused_as_a_feature(noise_csv, tmp_path, capsys):
    """Finding 3: ``--target f1 --features f1,f2`` trained on its own target (R² 0.997 on noise)."""
    with pytest.raises(ValueError, match="column 'f1' is the target and a feature"):
        read_table(noise_csv, target="f1", features="f1,f2")
    out = tmp_path / "run"
    argv = ["train", "--data", str(noise_csv), "--target", "f1", "--features", "f1,f2", "--loss", "mse", "--out", str(out)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "is the target and a feature" in err and "Traceback" not in err
    assert not out.exists() or not any(out.iterdir())  # nothing written


def test_silent_wrong_a_feature_listed_twice_is_refused(noise_csv):
    """Finding 3: ``--features f1,f1`` trained on f1 twice, f2 silently unused."""
    with pytest.raises(ValueError, match="--features names column 'f1' twice"):
        read_table(noise_csv, target="f2", features="f1,f1")


def test_hang_a_wide_table_picks_its_columns_by_name_in_any_order():
    """Finding 6: picking the model's columns is a dict lookup per column (linear); the values follow the names."""
    c = 5000
    names = [f"f{j}" for j in range(c)]
    x = np.arange(3 * c, dtype=np.float64).reshape(3, c)
    table = Table(x[:, ::-1].copy(), None, names[::-1], None, "t.csv")  # the same columns, reversed in the file
    prep = Preprocessing("values", c, names, None, None)
    np.testing.assert_array_equal(features_of(table, prep), x)
    same = Table(x, None, names, None, "t.csv")
    assert features_of(same, prep) is x  # already in order: no copy
    with pytest.raises(ValueError, match=r"lacks the feature column\(s\) \['f0'\]"):
        features_of(Table(x[:, 1:], None, names[1:], None, "t.csv"), prep)


def test_silent_wrong_the_best_member_without_early_stopping_is_ranked_by_its_last_monitored_value(tmp_path):
    """Finding 4: with early stopping off every best_val is None, and "best by val_loss" named member 0."""
    import json

    import jnn
    from jnn.datasets import load
    from jnn.sweep import sweep
    from jnn.train import TrainConfig

    train, _ = load("spirals", seed=0)
    cfg = TrainConfig(max_epochs=4, batch_size=64, early_stopping=None)
    res = sweep(train, cfg, task=jnn.MLP(hidden=(8,)), learning_rate=[1e-4, 0.05, 0.3],
                callbacks=[jnn.SweepFolder(tmp_path / "sw")])  # fmt: skip
    assert all(r["best_val"] is None for r in res.rows)
    last = [h["val_loss"][-1] for h in res.histories]
    assert int(np.argmin(last)) != 0  # member 0 (the smallest rate) is not the best: the bug would pick it
    assert res.best()["member"] == int(np.argmin(last))
    assert res.best_rule() == "lowest last val_loss (no best epoch: early stopping was off)"
    assert res.best_value() == min(last)
    record = json.loads((tmp_path / "sw" / "sweep.json").read_text())
    assert record["best"]["member"] == int(np.argmin(last)) and record["best_rule"] == res.best_rule()
    assert f"member {int(np.argmin(last))} by lowest last val_loss" in repr(res)
    stopped = sweep(train, TrainConfig(max_epochs=4, batch_size=64), task=jnn.MLP(hidden=(8,)),
                    learning_rate=[1e-4, 0.05])  # fmt: skip
    assert stopped.best_rule() == "lowest val_loss at each member's best epoch"
