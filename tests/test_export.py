"""Models that leave jnn: StableHLO and ONNX exports predict what jnn predict does (onnxruntime; a JAX process that
never imports jnn), and model.npz names its entries by pytree path while old files still load."""

import json
import subprocess
import sys

import numpy as np
import pytest

import jnn
from jnn.app import cli, tabular

pytest.importorskip("onnxruntime")
pytest.importorskip("jax2onnx")


def _csv(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 3)) * np.array([1.0, 50.0, 0.01])
    color = rng.choice(["red", "blue"], 160)
    label = np.where(x[:, 0] + x[:, 1] / 50 + (color == "red") > 0.5, "yes", "no")
    rows = [[f"{a:.5g}", f"{b:.5g}", f"{c:.5g}", k, lab] for (a, b, c), k, lab in zip(x, color, label)]
    rows[4][1] = rows[9][0] = ""  # empty cells: imputed by the run, NaN in the exported model's input
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,color,label\n" + "".join(",".join(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    data, out = _csv(tmp), tmp / "run"
    argv = ["train", "--data", str(data), "--categorical", "auto", "--impute", "median", "--standardize", "--mode",
            "classic", "--keep-prob", "0.7", "--hidden", "16", "--max-epochs", "30", "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0
    return data, out


def _inputs(data, model):
    prep = model.preprocessing
    t = tabular.read_table(data, features=[*prep.features, *prep.categorical], categorical=prep.categorical)
    return tabular.features_of(t, prep).astype(np.float32)


def test_the_onnx_export_predicts_jnn_predicts_probabilities_in_onnxruntime(run, capsys):
    import onnxruntime as ort

    data, out = run
    assert cli.main(["export", str(out), "--format", "onnx"]) == 0
    model = jnn.load_run(out)
    x = _inputs(data, model)
    assert np.isnan(x).sum() == 2
    got = ort.InferenceSession(str(out / "model.onnx")).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, model.predict_proba(x), atol=1e-5)
    info = json.loads((out / "export.json").read_text())
    assert info["inputs"] == ["a", "b", "c", "color=blue", "color=red"] and info["classes"] == ["no", "yes"]
    capsys.readouterr()
    assert cli.main(["predict", str(out), "--data", str(data), "--proba"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    np.testing.assert_allclose([[float(v) for v in ln.split(",")[1:]] for ln in lines], got, atol=1e-5)


def test_the_stablehlo_export_runs_in_a_jax_process_that_never_imports_jnn(run, tmp_path):
    data, out = run
    assert cli.main(["export", str(out), "--format", "stablehlo", "--out", str(tmp_path / "m.stablehlo")]) == 0
    model = jnn.load_run(out)
    x = _inputs(data, model)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, jax\n"
            f"e = jax.export.deserialize(bytearray(open({str(tmp_path / 'm.stablehlo')!r}, 'rb').read()))\n"
            f"np.save({str(tmp_path / 'y.npy')!r}, np.asarray(e.call(np.load({str(tmp_path / 'x.npy')!r}))))\n"
            "assert not any(m == 'jnn' or m.startswith('jnn.') for m in sys.modules)\n")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict_proba(x), atol=1e-5)


def test_a_regression_export_gives_values_in_the_targets_own_units(tmp_path):
    import onnxruntime as ort

    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 2))
    y = 300 + 40 * x[:, 0] - 10 * x[:, 1]
    data = tmp_path / "r.npz"
    np.savez(data, x=x, y=y)
    out = tmp_path / "run"
    argv = ["train", "--data", str(data), "--loss", "huber", "--standardize", "--hidden", "8", "--max-epochs", "20",
            "--out", str(out)]  # fmt: skip
    assert cli.main(argv) == 0 and cli.main(["export", str(out), "--format", "onnx"]) == 0
    model = jnn.load_run(out)
    got = ort.InferenceSession(str(out / "model.onnx")).run(None, {"x": x.astype(np.float32)})[0]
    np.testing.assert_allclose(got[:, 0], model.predict(x), rtol=1e-5, atol=1e-3)
    assert json.loads((out / "export.json").read_text())["output"] == "values"


def test_model_npz_names_entries_by_path_and_an_old_file_still_loads(run, tmp_path):
    data, out = run
    with np.load(out / "model.npz") as z:
        arrays = {k: z[k] for k in z.files}
    assert sorted(arrays) == ["header", "layers/0/b", "layers/0/w", "layers/1/b", "layers/1/w"]
    model = jnn.load_run(out)
    np.testing.assert_array_equal(arrays["layers/0/w"], np.asarray(model.params[0]["w"]))
    # the format before entry names: leaf_00000, ... and no "name" in the header
    header = json.loads(bytes(arrays.pop("header")).decode())
    old = {f"leaf_{i:05d}": arrays[e.pop("name")] for i, e in enumerate(header["leaves"])}
    np.savez(out / "model.npz", header=np.frombuffer(json.dumps(header).encode(), np.uint8), **old)
    again = jnn.load_run(out)
    x = _inputs(data, again)
    np.testing.assert_array_equal(again.predict_proba(x), model.predict_proba(x))
