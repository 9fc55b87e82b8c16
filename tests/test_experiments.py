"""Every experiment runs end to end on a tiny budget and writes results.json and its PNGs."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each runs an experiment end to end; `make test` runs them

ROOT = Path(__file__).resolve().parents[1]


def load_experiment(name):
    if str(ROOT / "experiments") not in sys.path:  # the scripts import their helpers from experiments/_common.py
        sys.path.insert(0, str(ROOT / "experiments"))
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", ROOT / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_mnist1d_mlp_smoke(tmp_path):
    mod = load_experiment("mnist1d_mlp")
    res = mod.run({**mod.DEFAULTS, "out": str(tmp_path), "seeds": [0], "max_epochs": 2, "ref_steps": 40})
    assert set(res["recipes"]) == {"reference", "jnn"}
    assert res["recipes"]["reference"]["runs"][0]["steps"] == 40
    assert res["recipes"]["jnn"]["runs"][0]["epochs"] == 2
    assert json.loads((tmp_path / "results.json").read_text())["task"] == "mnist1d"
    assert _png(tmp_path / "accuracy.png") and _png(tmp_path / "curves.png")
    assert "test accuracy" in mod.summarize_recipes(res)


def test_digits_mlp_smoke(tmp_path):
    mod = load_experiment("digits_mlp")
    res = mod.run({**mod.DEFAULTS, "out": str(tmp_path), "seeds": [0], "max_epochs": 2})
    assert res["recipes"]["jnn"]["runs"][0]["epochs"] == 2
    assert _png(tmp_path / "accuracy.png") and _png(tmp_path / "curves.png")


def test_regularization_smoke(tmp_path):
    mod = load_experiment("regularization")
    res = mod.run({**mod.DEFAULTS, "out": str(tmp_path), "epochs": 3, "lambdas": [0.0, 0.1], "keep_probs": [1.0, 0.5]})
    assert len(res["l2"]) == 2 and len(res["keep_prob"]) == 2
    assert res["norm_decreasing"] is True  # even 3 epochs of λ = 0.1 shrink the weights
    assert _png(tmp_path / "regularization.png")
    assert "|W|^2 decreasing in λ: True" in mod.summarize(res)


def test_dropout_modes_smoke(tmp_path):
    mod = load_experiment("dropout_modes")
    res = mod.run({**mod.DEFAULTS, "out": str(tmp_path), "seeds": [0], "max_epochs": 2, "mc_samples": 400})
    eq = res["equivalence"]
    assert eq["classic_test_vs_scaled_weights_max_abs"] < 1e-4
    assert eq["inverted_W_vs_classic_W_over_p_max_abs"] < 1e-4
    for mode in ("inverted", "classic"):
        assert eq[mode]["z2_within_3se"] > 0.97  # 3σ: ~99.7% expected
    assert _png(tmp_path / "accuracy.png") and _png(tmp_path / "equivalence.png")


def test_early_stopping_smoke(tmp_path):
    mod = load_experiment("early_stopping")
    res = mod.run({**mod.DEFAULTS, "out": str(tmp_path), "patience": 1, "max_epochs": 6})
    assert res["best_epoch"] <= res["stop_epoch"] <= 6
    assert res["epochs_without_early_stopping"] == 6
    assert _png(tmp_path / "early_stopping.png")


def test_binary_xor_smoke(tmp_path):
    mod = load_experiment("binary_xor")
    res = mod.run({**mod.DEFAULTS, "out": str(tmp_path), "max_epochs": 50})
    assert res["datasets"]["xor"]["test_accuracy"] > 0.9
    assert _png(tmp_path / "boundary_xor.png") and _png(tmp_path / "boundary_moons.png")
    with pytest.raises(ValueError, match="two-class sets"):
        mod.run({**mod.DEFAULTS, "out": str(tmp_path), "datasets": ["spirals"]})


def test_gradcheck_study_smoke(tmp_path):
    out = tmp_path / "study"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "gradcheck_study.py"), "--out", str(out),
                           "--depths", "1", "--widths", "4", "--activations", "tanh,relu"], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "results.json").read_text())
    assert len(data["rows"]) == 2 and (out / "results.csv").exists() and _png(out / "errors.png")
    assert data["summary"]["max_rel_err_float64"] < 1e-12
    assert data["summary"]["max_rel_err_float32"] < 1e-4
    lo, hi = data["summary"]["taylor_order_range"]
    assert 1.9 < lo <= hi < 2.1


def test_gradcheck_kinks_smoke_and_bad_input(tmp_path):
    script = str(ROOT / "experiments" / "gradcheck_kinks.py")
    proc = subprocess.run([sys.executable, script, "--seeds", "1", "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert len(rows) == 2 and all(r["correct passed"] == "1/1" and r["×1.05 caught"] == "1/1" for r in rows)
    assert (tmp_path / "table.md").exists()
    bad = subprocess.run([sys.executable, script, "--seeds", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--seeds must be an integer in [1, inf]" in bad.stderr


def test_gradcheck_ops_smoke(tmp_path):
    script = str(ROOT / "experiments" / "gradcheck_ops.py")  # every case: tests/test_gradcheck_ops.py
    proc = subprocess.run([sys.executable, script, "--cases", "2", "--out", str(tmp_path)], capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert len(rows) == 2 and all(r["named first"] == r["planted"] and r["twin"] == "passed" for r in rows)
    bad = subprocess.run([sys.executable, script, "--cases", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--cases must be an integer in [1, 9]" in bad.stderr


def test_gradcheck_study_bad_input_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "gradcheck_study.py"), "--out",
                           str(tmp_path), "--activations", "gelu"], capture_output=True, text=True,
                           timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "activation must be one of" in proc.stderr


def test_experiment_cli_validates_like_jnn_train(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "digits_mlp.py"), "--out", str(tmp_path), "--max-epochs", "0"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2 and "max_epochs must be an integer in [1, 2147483647]; got 0" in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "mnist1d_mlp.py"), "--out", str(tmp_path),
                           "--recipes", "jnn,keras"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2 and "recipes must be among ['jnn', 'reference']; got ['keras']" in proc.stderr


def test_runner_lists_known_experiments_on_an_unknown_name():
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "run.py"), "mnist"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "unknown experiment 'mnist'; known experiments: ['binary_xor', 'custom_model', 'digits_mlp'," in proc.stderr
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / "run.py"), "--list"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and "regularization" in proc.stdout


def test_runner_runs_an_experiment(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "run.py"), "binary_xor", "--out",
                           str(tmp_path), "--datasets", "xor", "--max-epochs", "5"], capture_output=True,
                           text=True, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "xor: test accuracy" in proc.stdout and (tmp_path / "results.json").exists()


def test_missing_optional_extras_name_the_pip_extra(monkeypatch):
    import builtins

    from jnn.app.plots import pyplot
    from jnn.datasets import load

    real_import = builtins.__import__

    def no_extras(name, *args, **kwargs):
        if name.startswith(("sklearn", "matplotlib")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_extras)
    with pytest.raises(ImportError, match=r"pip install 'jnn\[digits\]'"):
        load("digits")
    with pytest.raises(ImportError, match=r"pip install 'jnn\[plots\]'"):
        pyplot()


def test_custom_model_smoke(tmp_path):
    mod = load_experiment("custom_model")
    res = mod.run(
        {**mod.DEFAULTS, "out": str(tmp_path), "max_epochs": 20, "patience": 5, "l2s": [0.0, 1e-2], "loop_epochs": 3}
    )
    assert res["resume_bitwise_equal"] is True
    assert res["optax_loop"]["full batches (32 × 11)"]["bitwise_equal"] is True
    assert res["optax_loop"]["ragged last batch (48 × 7 + 16)"]["max_rel_diff"] <= 1e-5
    assert len(res["recipes"]) == 2 + 2 + 2 + 1
    assert all(r["test_r2"] > 0.0 for r in res["recipes"].values())
    assert _png(tmp_path / "custom_model.png") and json.loads((tmp_path / "results.json").read_text())["recipes"]


def test_mnist1d_search_smoke(tmp_path):
    mod = load_experiment("mnist1d_search")
    cfg = {**mod.DEFAULTS, "out": str(tmp_path), "hiddens": "8;4,4", "batch_sizes": [100], "per_shape": 2,
           "max_epochs": 2, "final_seeds": [100]}  # fmt: skip
    res = mod.run(cfg)
    s = res["search"]
    assert s["members"] == 4 and s["shape_groups"] == 2 and len(s["rows"]) == 4
    assert all("test_accuracy" not in r or r["test_accuracy"] is None for r in s["rows"])  # never looked at
    best = res["picked"]["member"]
    assert res["picked"]["val_accuracy"] == max(r["val_accuracy"] for r in s["rows"]) == s["rows"][best]["val_accuracy"]
    assert res["recipes"]["picked"]["runs"][0]["seed"] == 100
    assert _png(tmp_path / "search.png") and _png(tmp_path / "accuracy.png")
    assert "picked recipe, fresh seeds" in mod.summarize(res)
    with pytest.raises(ValueError, match="final_seeds must be seeds the search did not use"):
        mod.run({**cfg, "final_seeds": [1]})
