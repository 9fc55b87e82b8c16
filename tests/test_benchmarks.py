"""Smoke test of the throughput benchmark (tiny budget; timings are never asserted)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # benchmark smoke; `make test` runs it

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.heavy  # CI time: benchmarks/throughput.py is the script itself (make test-heavy runs this smoke)
def test_throughput_benchmark_smoke(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--quick", "--rounds", "1",
                           "--cold-reps", "1", "--workloads", "small", "--stacks", "jnn.fit (custom-model MLP)",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    stacks = res["workloads"]["small"]["stacks"]
    assert set(stacks) == {"jnn.fit", "jnn.fit (custom-model MLP)", "raw JAX B (scan epoch)"}  # --stacks
    assert all(s["samples_per_s"] > 0 and s["first_epoch_s"] > 0 for s in stacks.values())
    assert all(s["first_epoch_warm_s"] > 0 and s["peak_bytes"] > 0 for s in stacks.values())
    assert (
        stacks["jnn.fit"]["first_epoch_disk_s"] > 0
        and stacks["jnn.fit (custom-model MLP)"]["first_epoch_disk_s"] is None
    )
    assert "speedup_vs_raw JAX B (scan epoch)" in stacks["jnn.fit"]
    assert stacks["jnn.fit (custom-model MLP)"]["speed_vs_builtin"] > 0
    assert res["backprop"]["hand_over_grad_time"] > 0
    assert "| small | jnn.fit |" in (tmp_path / "table.md").read_text()


def test_throughput_benchmark_rejects_bad_flags(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--workloads", "huge", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 2 and "--workloads a subset of small,large" in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "throughput.py"), "--stacks", "torch"],
                          capture_output=True, text=True, timeout=120, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 2 and "unknown stacks ['torch']" in proc.stderr


@pytest.mark.heavy  # CI time (47 s): benchmarks/gradcheck.py is the script itself; make test-heavy runs it
def test_gradcheck_benchmark_cases_smoke():
    import json as _json

    tools = (("jnn-fast", True), ("jnn-fast-planted", False), ("jnn-op-planted", False), ("jax.test_util", True))
    for tool, passed in tools:
        out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gradcheck.py"), "--case", "1e3", tool],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        assert out.returncode == 0, out.stderr
        row = _json.loads(out.stdout.strip().splitlines()[-1])
        assert row["passed"] is passed and row["params"] == 961
        if tool == "jnn-fast-planted":
            assert row["note"].startswith("args[0]['w1'][10, 15]")
        if tool == "jnn-op-planted":
            assert "names `my_tanh` (custom_vjp, gradcheck.py:" in row["note"]


@pytest.mark.heavy  # CI time (158 s): benchmarks/accelerator.sh --quick is the script itself; make test-heavy runs it
def test_accelerator_benchmark_quick_runs_on_cpu_and_names_the_device(tmp_path):
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "accelerator.sh"), "--quick", "--rounds", "1",
                           "--members", "2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["workloads"]) == {"large b256", "large b4096", "small b100"}
    for w in res["workloads"].values():
        assert all(v > 0 for v in w["samples_per_s"].values()) and w["jnn_vs_raw_scan"] > 0
        assert set(w["peak_memory"]) == {"jnn.fit", "raw JAX B (scan epoch)"}
    assert res["sweep"]["members"] == 2 and res["sweep"]["steady_speedup"] > 0
    table = (tmp_path / "table.md").read_text()
    assert table.startswith(f"Device: {res['device']['kind']}") and "| large b4096 |" in table


@pytest.mark.heavy  # CI time (51 s): benchmarks/peers.py is the script itself; make test-heavy runs it
def test_peers_benchmark_smoke(tmp_path):
    out = tmp_path / "peers.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "peers.py"), "--quick", "--stacks", "jax_scan,jnn_fit",
           "--workloads", "small", "--out", str(out), "--md", str(tmp_path / "p.md")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    stacks = res["workloads"]["small"]["stacks"]
    assert stacks["jnn_fit"]["samples_per_s"] > 0 and stacks["jax_scan"]["samples_per_s"] > 0
    assert "jnn.fit" in (tmp_path / "p.md").read_text()


def test_precision_benchmark_quick_compares_float32_and_bfloat16(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "precision.py"), "--quick", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    for got in res["workloads"].values():
        assert set(got) == {"None", "bfloat16"} and all(r["epoch_ms"] > 0 and r["epochs"] == 3 for r in got.values())
    assert 0 <= res["workloads"]["MNIST-1D 40-256-256-10 b100"]["bfloat16"]["test_accuracy"] <= 1
    assert "| MNIST-1D 40-256-256-10 b100 (3 epochs) |" in (tmp_path / "table.md").read_text()


def test_streaming_benchmark_quick_trains_from_disk_and_from_memory(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "streaming.py"), "--quick", "--dir", str(tmp_path / "data"),
           "--out", str(tmp_path / "out")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    disk, mem = res["runs"]["disk"], res["runs"]["memory"]
    assert disk["rows"] == 12_000 and mem["rows"] == 8_192 and disk["steps"] == res["steps"] and mem["steps"] == 64
    assert disk["samples_per_s"] > 0 and disk["peak_rss_bytes"] > disk["state_bytes"] > 0
    assert not (tmp_path / "data" / "x.npy").exists()  # deleted without --keep


def test_wide_csv_benchmark_reads_trains_and_predicts_on_every_width(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "wide_csv.py"), "--columns", "50,500", "--rows", "40",
           "--out", str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "results.json").read_text())["rows"]
    assert [r["columns"] for r in rows] == [50, 500]
    assert all(r["read_s"] > 0 and r["train_s"] > 0 and r["predict_s"] > 0 for r in rows)
    assert "| 500 | 40 |" in (tmp_path / "table.md").read_text()


@pytest.mark.heavy  # CI time (30 s): benchmarks/keras_rules.py --quick is the script itself; make test-heavy runs it
def test_keras_rules_benchmark_quick_times_every_variant(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "keras_rules.py"), "--quick", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((tmp_path / "results.json").read_text())
    assert set(res["ratio_to_plain"]) == {"plain", "plateau", "best-3", "both", "plain, run folder",
                                          "both, run folder", "plain, run folder, checkpoint every 10",
                                          "both, run folder, checkpoint every 10",
                                          "host best-3 (needs params every epoch)"}  # fmt: skip
    assert res["ratio_to_plain"]["plain"] == 1.0 and all(v > 0 for v in res["median_seconds_per_epoch"].values())
    assert "| both, run folder |" in (tmp_path / "table.md").read_text()
