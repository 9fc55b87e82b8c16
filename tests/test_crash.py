"""kill -9 during training and checkpoint saves: every checkpoint left on disk is complete, and the run,
resumed after every kill, ends bitwise equal to an uninterrupted one (2 kills here; the README's figure is from
scripts/crash_test.py --kills 50)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import default_compile_env

pytestmark = pytest.mark.slow  # kill -9 stress; `make test` and scripts/crash_test.py run it

ROOT = Path(__file__).resolve().parents[1]


def test_two_kills_survived_and_resume_is_bitwise(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "crash_test.py"), "--kills", "2", "--seed", "1",
                           "--out", str(tmp_path / "ct")], capture_output=True, text=True,
                           timeout=900, cwd=ROOT, env=default_compile_env())  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads((tmp_path / "ct" / "results.json").read_text())
    assert res["kills_tried"] == res["kills_survived"] == 2
    assert res["final_state_bitwise_equal"] and res["final_history_equal"] and res["temp_files_left"] == []
    assert "kills survived / tried: 2/2" in proc.stdout


def test_data_loss_a_sweep_killed_twice_resumes_bitwise(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "crash_test.py"), "--sweep", "--kills", "2",
                           "--seed", "1", "--out", str(tmp_path / "ct")], capture_output=True, text=True,
                           timeout=900, cwd=ROOT, env=default_compile_env())  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    res = json.loads((tmp_path / "ct" / "results.json").read_text())
    assert res["command"] == "sweep" and res["kills_tried"] == res["kills_survived"] == 2
    assert res["final_state_bitwise_equal"] and res["final_history_equal"] and res["temp_files_left"] == []


def test_verify_rejects_a_truncated_checkpoint(tmp_path):
    import jax.numpy as jnp

    from jnn.app import checkpoint as ckpt

    p = tmp_path / "c.npz"
    ckpt.save(p, {"w": jnp.ones((64, 64))})
    assert ckpt.verify(p)["format"] == ckpt.FORMAT
    data = p.read_bytes()
    p.write_bytes(data[: len(data) - 200])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        ckpt.verify(p)
