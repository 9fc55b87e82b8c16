import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gradcheck_study_smoke(tmp_path):
    out = tmp_path / "study"
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "gradcheck_study.py"), "--out", str(out),
                           "--depths", "1", "--widths", "4", "--activations", "tanh,relu"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads((out / "results.json").read_text())
    assert len(data["rows"]) == 2 and (out / "results.csv").exists()
    assert data["summary"]["max_rel_err_float64"] < 1e-12
    assert data["summary"]["max_rel_err_float32"] < 1e-4
    lo, hi = data["summary"]["taylor_order_range"]
    assert 1.9 < lo <= hi < 2.1


def test_gradcheck_study_bad_input_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "experiments" / "gradcheck_study.py"), "--out",
                           str(tmp_path), "--activations", "gelu"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "activation must be one of" in proc.stderr
