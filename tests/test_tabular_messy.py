"""A CSV as people send it: empty cells, text categories, a semicolon and decimal commas, unscaled columns, string
labels in a middle column. Each transform equals scikit-learn's on the same cells."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

import jnn
from jnn.app import cli, sources, tabular

ROOT = Path(__file__).resolve().parents[1]


def _write(path, header, rows, delimiter=","):
    path.write_text(delimiter.join(header) + "\n" + "".join(delimiter.join(map(str, r)) + "\n" for r in rows))
    return path


def _messy(n=120, seed=0):
    """Rows of (a, b, color, label) with a few empty cells; label depends on a, b and the color."""
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=n), rng.normal(size=n) * 3
    color = rng.choice(["red", "green", "blue"], n)
    label = np.where(a + b / 3 + (color == "red") > 0.3, "yes", "no")
    rows = [[f"{x:.4f}", f"{y:.4f}", c, lab] for x, y, c, lab in zip(a, b, color, label)]
    for r in (3, 17, 40):
        rows[r][0] = ""
    rows[25][1] = ""
    return ["a", "b", "color", "label"], rows


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_the_delimiter_is_sniffed_and_a_semicolon_file_may_write_decimal_commas(tmp_path, delimiter):
    header, rows = ["x1", "x2", "label"], [["1.5", "2", "a"], ["3.25", "-1", "b"]]
    if delimiter == ";":
        rows = [[c.replace(".", ",") for c in r] for r in rows]
    t = tabular.read_table(_write(tmp_path / "d.csv", header, rows, delimiter))
    assert t.features == ["x1", "x2"] and list(t.y) == ["a", "b"]
    np.testing.assert_array_equal(t.x, [[1.5, 2.0], [3.25, -1.0]])
    assert tabular.sniff_delimiter("a;b;c,d") == ";" and tabular.sniff_delimiter("one") == ","


def test_an_explicit_delimiter_wins_and_a_bad_one_is_named(tmp_path):
    path = _write(tmp_path / "d.csv", ["a;b;x", "c"], [["1", "3"]], ",")  # the header has more ';' than ','
    assert tabular.sniff_delimiter(path.read_text().splitlines()[0]) == ";"
    assert tabular.read_table(path, delimiter=",").features == ["a;b;x"]
    with pytest.raises(ValueError, match="--delimiter must be one character"):
        tabular.read_table(path, delimiter=";;")


def test_without_impute_every_empty_cell_is_counted_by_column(tmp_path, capsys):
    path = _write(tmp_path / "m.csv", *_messy())
    code = cli.main(["train", "--data", str(path), "--categorical", "color", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and not (tmp_path / "r").exists()
    assert "has 4 empty feature cells: column 'a': 3 (first at row 5); column 'b': 1 (first at row 27)" in err


@pytest.mark.parametrize("strategy", list(tabular.IMPUTE))
def test_imputation_equals_scikit_learns_simple_imputer_learned_on_the_training_rows(tmp_path, strategy):
    from sklearn.impute import SimpleImputer

    rng = np.random.default_rng(1)
    x = np.round(rng.normal(size=(60, 3)), 1)
    x[rng.random(x.shape) < 0.15] = np.nan
    rows = [["" if np.isnan(v) else f"{v:g}" for v in r] + [str(i % 2)] for i, r in enumerate(x)]
    table = tabular.read_table(_write(tmp_path / "n.csv", ["p", "q", "r", "y"], rows))
    prep = tabular.learn(table, "softmax", impute=strategy)
    fit = np.arange(0, 60, 2)  # the rows a fit trains on
    prep = prep.imputed_on(table, fit, fill_value=7.5)
    want = SimpleImputer(strategy=strategy, fill_value=7.5).fit(x[fit]).transform(x)
    got = prep.transform(tabular.features_of(table, prep))
    np.testing.assert_allclose(got, want.astype(np.float32), rtol=1e-6)


def test_one_hot_equals_scikit_learns_encoder_and_an_unknown_category_is_refused_or_ignored(tmp_path):
    from sklearn.preprocessing import OneHotEncoder

    header, rows = _messy()
    rows = [r for r in rows if r[0] and r[1]]
    table = tabular.read_table(_write(tmp_path / "c.csv", header, rows), categorical="auto")
    assert table.cat_features == ["color"] and table.features == ["a", "b"]
    prep = tabular.learn(table, "softmax")
    assert prep.categories == [["blue", "green", "red"]] and prep.n_features == 5
    colors = np.array([[r[2]] for r in rows])
    np.testing.assert_array_equal(prep.one_hot(table), OneHotEncoder().fit(colors).transform(colors).toarray())
    new = tabular.read_table(_write(tmp_path / "n.csv", header, [["0.1", "0.2", "violet", "yes"]]),
                             categorical=["color"])  # fmt: skip
    with pytest.raises(ValueError, match="holds the category 'violet', which the model was not trained on"):
        tabular.features_of(new, prep)
    ignoring = tabular.learn(table, "softmax", unknown="ignore")
    np.testing.assert_array_equal(tabular.features_of(new, ignoring), [[0.1, 0.2, 0.0, 0.0, 0.0]])


def test_a_text_column_without_target_asks_did_you_mean_target(tmp_path, capsys):
    header, rows = ["f1", "diagnosis", "f2", "id"], [["1", "M", "2", "7"], ["2", "B", "1", "8"]]
    code = cli.main(["train", "--data", str(_write(tmp_path / "t.csv", header, rows)), "--out", str(tmp_path / "r")])
    assert code == 2
    assert "column 'diagnosis' holds 'M', not a number; features must be numeric: did you mean --target diagnosis?" in (
        capsys.readouterr().err)  # fmt: skip


def test_features_whose_scales_span_orders_of_magnitude_get_a_warning_without_standardize(capsys):
    x = np.column_stack([np.linspace(0, 0.05, 50), np.linspace(0, 4000, 50)])
    prep = tabular.Preprocessing("classes", 2)
    assert sources.scale_warning(x, prep) is not None
    assert "orders of magnitude" in capsys.readouterr().err and "--standardize" in sources.scale_warning(x, prep)
    assert sources.scale_warning(x[:, :1] * np.array([[1.0]]), prep) is None


def test_class_weight_balanced_equals_scikit_learns():
    from sklearn.utils.class_weight import compute_class_weight

    from jnn.train.run_setup import class_weights

    y = np.array([0] * 30 + [1] * 10 + [2] * 5, np.int32)
    ds = jnn.Dataset(np.zeros((45, 1), np.float32), y, num_classes=3)
    want = compute_class_weight("balanced", classes=np.arange(3), y=y)
    np.testing.assert_allclose(class_weights(ds, "balanced"), want[y].astype(np.float32), rtol=1e-6)
    assert sources.class_weight_of({"class_weight": '{"yes": 3}'}, {"preprocessing": {"classes": ["no", "yes"]}}) == {
        1: 3}  # fmt: skip
    with pytest.raises(ValueError, match="names the label 'maybe'"):
        sources.class_weight_of({"class_weight": '{"maybe": 3}'}, {"preprocessing": {"classes": ["no", "yes"]}})


def test_a_messy_csv_trains_and_every_row_is_predicted_including_the_empty_ones(tmp_path, capsys):
    header, rows = _messy(200)
    train = _write(tmp_path / "train.csv", header, [[c.replace(".", ",") for c in r] for r in rows], ";")
    run = tmp_path / "run"
    argv = ["train", "--data", str(train), "--categorical", "auto", "--impute", "median", "--standardize",
            "--class-weight", "balanced", "--hidden", "16", "--max-epochs", "40", "--out", str(run)]  # fmt: skip
    assert cli.main(argv) == 0
    capsys.readouterr()
    stored = json.loads((run / "config.json").read_text())["data"]
    assert stored["source"]["impute"] == "median" and stored["source"]["class_weight"] == "balanced"
    assert stored["preprocessing"]["categories"] == [["blue", "green", "red"]]
    test = _write(tmp_path / "test.csv", header, rows[:30])  # comma-delimited, rows 3 and 17 with an empty 'a'
    assert cli.main(["predict", str(run), "--data", str(test), "--proba"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "prediction,p_no,p_yes" and len(lines) == 31
    assert np.mean([ln.split(",")[0] == r[3] for ln, r in zip(lines[1:], rows)]) >= 0.8
    model = jnn.load_run(run)
    counts = {c: sum(r[2] == c for r in rows) for c in ("blue", "green", "red")}  # no empty color: any is fine
    assert model.preprocessing.fill is not None and model.preprocessing.category_fill[0] in counts


def test_predicts_missing_column_message_names_the_models_columns_not_a_flag(tmp_path, capsys):
    header, rows = _messy()
    run = tmp_path / "run"
    argv = ["train", "--data", str(_write(tmp_path / "d.csv", header, rows)), "--categorical", "auto", "--impute",
            "mean", "--max-epochs", "2", "--out", str(run)]  # fmt: skip
    assert cli.main(argv) == 0
    capsys.readouterr()
    lacking = _write(tmp_path / "p.csv", ["a", "color"], [["1", "red"]])
    assert cli.main(["predict", str(run), "--data", str(lacking)]) == 2
    err = capsys.readouterr().err
    assert "has no column 'b' (the model's feature columns)" in err and "--features" not in err


def test_the_breast_cancer_experiment_matches_scikit_learn_on_one_seed(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        import tabular_csv
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    r = tabular_csv.run({"out": str(tmp_path), "seeds": [0], "max_epochs": 300})
    assert r["rows_predicted"] == [r["test_rows"]] == [114]
    assert r["jnn"]["mean"] >= r["sklearn"]["mean"] - 0.02, r
