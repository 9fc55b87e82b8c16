"""Your own data on the command line: CSV/npz in, predictions out, in fresh processes; bad files refused
with exit 2 and nothing written; SIGINT/SIGTERM stop cleanly and resume bit for bit."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import jnn
from jnn import RunFolder
from jnn.app import cli

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
JNN = [sys.executable, "-m", "jnn.app.cli"]


def _run(*args, cwd=None, check=True):
    p = subprocess.run([*JNN, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300,
                       env={**os.environ, "CI": "1"})  # fmt: skip
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _labelled(tmp_path, n=120, seed=0):
    """Two well separated blobs with string labels, plus a constant and an unused text column."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, 3)) + 3.0 * y[:, None]
    rows = [[f"{a:.5f}", f"{b:.5f}", f"{c:.5f}", "7", f"id{i}", ["cat", "dog"][t]] for i, ((a, b, c), t) in
            enumerate(zip(x, y))]  # fmt: skip
    return _write_csv(tmp_path / "pets.csv", ["a", "b", "c", "const", "name", "kind"], rows), x, y


@pytest.mark.slow
def test_csv_with_string_labels_trains_and_predicts_in_a_new_process(tmp_path):
    data, x, y = _labelled(tmp_path)
    run = tmp_path / "run"
    out = _run("train", "--data", data, "--target", "kind", "--features", "a,b,c,const", "--standardize",
               "--hidden", "8", "--max-epochs", "30", "--batch-size", "16", "--out", run).stdout  # fmt: skip
    assert "jnn train: pets (108 train / 12 validation / 0 test)" in out
    info = json.loads((run / "config.json").read_text())["data"]
    prep = info["preprocessing"]
    assert prep["classes"] == ["cat", "dog"] and prep["features"] == ["a", "b", "c", "const"]
    assert prep["std"][3] == 1.0 and prep["mean"][3] == 7.0  # a constant column is centred, not divided by 0
    # Predict in a fresh process, from a file without the target column and with its columns reordered.
    _write_csv(tmp_path / "new.csv", ["const", "c", "b", "a"],
               [["7", f"{r[2]:.5f}", f"{r[1]:.5f}", f"{r[0]:.5f}"] for r in x])  # fmt: skip
    _run("predict", run, "--data", tmp_path / "new.csv", "--out", tmp_path / "preds.csv", "--proba")
    with open(tmp_path / "preds.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(y) and set(rows[0]) == {"prediction", "p_cat", "p_dog"}
    assert {r["prediction"] for r in rows} <= {"cat", "dog"}
    acc = np.mean([r["prediction"] == ["cat", "dog"][t] for r, t in zip(rows, y)])
    ev = _run("evaluate", run, "--data", data, "--json", tmp_path / "ev.json").stdout
    assert "accuracy" in ev
    assert json.loads((tmp_path / "ev.json").read_text())["accuracy"] == pytest.approx(acc, abs=1e-6)
    assert all(abs(float(r["p_cat"]) + float(r["p_dog"]) - 1.0) < 1e-5 for r in rows)


@pytest.mark.slow
def test_npz_regression_r2_matches_scikit_learn(tmp_path):
    from sklearn.metrics import r2_score

    import jnn

    run = tmp_path / "run"
    _run("train", "--data", EXAMPLES / "diabetes.npz", "--loss", "mse", "--standardize", "--hidden", "16",
         "--max-epochs", "40", "--out", run)  # fmt: skip
    _run("evaluate", run, "--data", EXAMPLES / "diabetes.npz", "--json", tmp_path / "ev.json")
    got = json.loads((tmp_path / "ev.json").read_text())
    with np.load(EXAMPLES / "diabetes.npz") as z:
        x, y = z["x"], z["y"]
    pred = jnn.load_run(run).predict(x)
    assert pred.shape == y.shape
    assert got["r2"] == pytest.approx(r2_score(y, pred), abs=1e-5)
    assert got["n"] == len(y)


BAD = {
    "ragged": (["a,b,label", "1,2,x", "3,4,5,y"], "row 3 has 4 fields but the header has 3"),
    "no target": (["a,b,label", "1,2,x"], "has no target column 'kind'"),
    "text feature": (["a,b,kind", "1,2,x", "1,oops,y"], "row 3, column 'b' holds 'oops', not a number"),
    "empty": ([], "is empty"),
    "nan": (["a,b,kind", "1,2,x", "nan,2,y"], "1 empty feature cell: column 'a': 1 (first at row 3)"),
    "inf": (["a,b,kind", "1,2,x", "inf,2,y"], "row 3, column 'a' holds 'inf', not a finite number"),
    "missing cell": (["a,b,kind", "1,,x", "1,2,y"], "column 'b': 1 (first at row 2); fill them with --impute"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_file_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    lines, message = BAD[case]
    path = tmp_path / "bad.csv"
    path.write_text("\n".join(lines) + ("\n" if lines else ""))
    target = ["--target", "kind"] if case != "ragged" else []
    code = cli.main(["train", "--data", str(path), *target, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and str(path) in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_bad_labels_and_flags_are_named(tmp_path, capsys):
    data, _, _ = _labelled(tmp_path)
    assert cli.main(["train", "--data", str(data), "--target", "kind", "--features", "a,b", "--loss", "mse"]) == 2
    assert "must be numbers for this loss; row 0 holds 'cat' (class labels need --loss softmax" in (
        capsys.readouterr().err.replace("'dog'", "'cat'")
    )
    assert cli.main(["train", "--standardize"]) == 2
    assert "need --data FILE" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(data), "--dataset", "xor"]) == 2
    assert "not both" in capsys.readouterr().err
    assert cli.main(["train", "--data", str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_an_unseen_label_at_evaluation_is_named(tmp_path, capsys):
    data, _, _ = _labelled(tmp_path)
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(data), "--target", "kind", "--features", "a,b", "--hidden", "4",
                     "--max-epochs", "2", "--out", str(run)]) == 0  # fmt: skip
    _write_csv(tmp_path / "other.csv", ["a", "b", "kind"], [["1", "2", "cat"], ["1", "2", "bird"]])
    assert cli.main(["evaluate", str(run), "--data", str(tmp_path / "other.csv")]) == 2
    assert "holds the label 'bird' (row 1), which the model was not trained on" in capsys.readouterr().err


@pytest.mark.slow
def test_sweep_members_are_saved_and_predict(tmp_path):
    data, x, _ = _labelled(tmp_path)
    out = tmp_path / "sw"
    _run("sweep", "--data", data, "--target", "kind", "--features", "a,b,c", "--hidden", "4", "--max-epochs", "5",
         "--keep-probs", "0.5,1.0", "--out", out)  # fmt: skip
    import jnn

    a, b = jnn.load_run(out, member=0), jnn.load_run(out, member=1)
    assert a.hyper["keep_prob"] == 0.5 and b.hyper["keep_prob"] == 1.0
    assert set(a.predict(x[:, :3])) <= {"cat", "dog"}
    p = _run("predict", out, "--member", "1", "--data", data).stdout.splitlines()
    assert p[0] == "prediction" and len(p) == len(x) + 1
    with pytest.raises(ValueError, match=r"member must be an int in \[0, 1\]"):
        jnn.load_run(out, member=2)


def _history(run):
    return json.loads((Path(run) / "history.json").read_text())


@pytest.mark.slow
def test_cli_resume_continues_a_finished_run_with_its_stored_config(tmp_path):
    data, _, _ = _labelled(tmp_path)
    common = ["--target", "kind", "--features", "a,b,c", "--hidden", "8", "--keep-prob", "0.8", "--no-early-stopping"]
    assert cli.main(["train", "--data", str(data), *common, "--max-epochs", "4", "--out", str(tmp_path / "a")]) == 0
    assert cli.main(["train", "--out", str(tmp_path / "a"), "--resume", "--max-epochs", "8"]) == 0
    assert cli.main(["train", "--data", str(data), *common, "--max-epochs", "8", "--out", str(tmp_path / "b")]) == 0
    a, b = _history(tmp_path / "a"), _history(tmp_path / "b")
    assert a["epochs"] == 8 and a == b


def _start(args, tmp_path):
    return subprocess.Popen([*JNN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "1"}, cwd=tmp_path)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_at_the_end_of_an_epoch_and_the_run_resumes_bitwise(tmp_path, sig, code):
    data, _, _ = _labelled(tmp_path, n=400)
    common = ["--data", data, "--target", "kind", "--features", "a,b", "--hidden", "64,64", "--keep-prob", "0.8",
              "--batch-size", "4", "--no-early-stopping", "--log-every", "1"]  # fmt: skip
    run = tmp_path / "run"
    p = _start(["train", *common, "--max-epochs", "400", "--out", run], tmp_path)
    for line in p.stdout:  # wait until two epochs are done (the compile is behind us)
        if line.startswith("epoch    2"):
            break
    p.send_signal(sig)
    out, err = p.communicate(timeout=120)
    assert p.returncode == code, (out, err)
    assert "Traceback" not in err and "Traceback" not in out
    line = next(l for l in out.splitlines() if l.startswith("interrupted at epoch"))
    stopped = int(line.split()[3].rstrip(";"))
    assert line.endswith(f"continue with: jnn train --out {run} --resume")
    assert _history(run)["epochs"] == stopped and (run / "model.npz").exists()
    assert json.loads((run / "summary.json").read_text())["stopped_by"] == "interrupted"
    total = stopped + 2
    assert cli.main(["train", "--out", str(run), "--resume", "--max-epochs", str(total)]) == 0
    whole = tmp_path / "whole"
    assert cli.main(["train", *map(str, common), "--max-epochs", str(total), "--out", str(whole)]) == 0
    assert _history(run) == _history(whole)


@pytest.mark.slow
def test_launch_forwards_sigterm_to_its_children_and_leaves_no_orphans(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(
        "import os, signal, sys, time\n"
        "out = os.environ['OUT'] + os.environ['JNN_PROCESS_ID']\n"
        "signal.signal(signal.SIGTERM, lambda s, f: (open(out + '.got', 'w').write('got'), sys.exit(143)))\n"
        "open(out + '.ready', 'w').write('ready')\n"
        "time.sleep(60)\n"
    )
    env = {**os.environ, "OUT": str(tmp_path / "child")}
    cmd = [*JNN, "launch", "--processes", "2", "--", sys.executable, str(script)]
    p = subprocess.Popen(cmd, env=env)
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("child*.ready"))) < 2:  # both children have set their handler
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.05)
    t = time.monotonic()
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=30)
    assert p.returncode == 143 and time.monotonic() - t < 20
    assert sorted(f.name for f in tmp_path.glob("*.got")) == ["child0.got", "child1.got"]  # both got the signal


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_and_the_checkpoint_stays_valid(tmp_path):
    from jnn.app import checkpoint as ckpt

    data, _, _ = _labelled(tmp_path, n=400)
    run = tmp_path / "run"
    p = _start(
        [
            "train",
            "--data",
            data,
            "--target",
            "kind",
            "--features",
            "a,b",
            "--hidden",
            "256,256",
            "--batch-size",
            "2",
            "--no-early-stopping",
            "--log-every",
            "1",
            "--checkpoint-every",
            "1",
            "--max-epochs",
            "400",
            "--learning-rate",
            "0.001",
            "--out",
            run,
        ],
        tmp_path,
    )  # fmt: skip (a rate that does not diverge)
    for line in p.stdout:
        if line.startswith("epoch    1"):
            break
    deadline = time.monotonic() + 60  # the epoch line comes before its checkpoint is written
    while not (run / "checkpoint.npz").exists():
        assert time.monotonic() < deadline and p.poll() is None
        time.sleep(0.01)
    assert p.poll() is None  # still training
    p.send_signal(signal.SIGINT)
    time.sleep(0.05)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130 and "Traceback" not in err, (p.returncode, out[-2000:], err[-2000:])
    assert "stopped at once; the last checkpoint stays valid" in err or "interrupted at epoch" in out
    ckpt.verify(run / "checkpoint.npz")


@pytest.mark.slow
def test_fit_raises_interrupted_with_the_result_after_writing_the_run(tmp_path, monkeypatch):
    import jnn
    from jnn.train import host_loop as host

    calls = []

    def fake_agreed(signum):  # as if SIGTERM arrived during the second epoch
        calls.append(1)
        return signal.SIGTERM if len(calls) == 2 else None

    monkeypatch.setattr(host, "_agreed", fake_agreed)
    train, _ = jnn.datasets.load("xor")
    cfg = jnn.TrainConfig(max_epochs=50, batch_size=64, early_stopping=None)
    net = jnn.MLP(hidden=(4,), loss="binary")
    with pytest.raises(jnn.train.Interrupted) as info:
        jnn.fit(train, cfg, task=net, callbacks=[RunFolder(tmp_path)])
    err = info.value
    assert err.exit_code == 143 and err.result.stopped_by == "interrupted" and len(err.result.history) == 2
    assert json.loads((tmp_path / "history.json").read_text())["epochs"] == 2
    assert (tmp_path / "model.npz").exists()
    resumed = jnn.fit(train, cfg, task=net, callbacks=[RunFolder(tmp_path, resume=True)])
    assert resumed.history.metrics == jnn.fit(train, cfg, task=net).history.metrics


def test_multilabel_csv_trains_and_predicts_one_column_per_label(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], 1).astype(int)
    data = _write_csv(tmp_path / "ml.csv", ["a", "b", "c", "tag_a", "tag_b"],
                      [[f"{v:.4f}" for v in r] + list(t) for r, t in zip(x, y)])  # fmt: skip
    run = str(tmp_path / "run")
    assert cli.main(["train", "--data", str(data), "--target", "tag_a,tag_b", "--loss", "multilabel", "--hidden", "8",
                     "--max-epochs", "3", "--batch-size", "16", "--out", run]) == 0  # fmt: skip
    capsys.readouterr()
    assert cli.main(["predict", run, "--data", str(data), "--proba"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "tag_a,tag_b,p_tag_a,p_tag_b" and len(lines) == 81
    assert all(set(l.split(",")[:2]) <= {"0", "1"} for l in lines[1:])


def test_a_huge_epoch_budget_allocates_nothing_up_front(tmp_path):
    import jnn

    train, _ = jnn.datasets.load("xor")
    cfg = jnn.TrainConfig(max_epochs=1_000_000_000, batch_size=64)
    r = jnn.fit(
        train, cfg, task=jnn.MLP(hidden=(4,), loss="binary"), stop_at_epoch=2
    )  # the history grows on the host; no [max_epochs] buffers
    assert r.stopped_by == "paused" and len(r.history) == 2


def test_regression_raw_targets_train_with_standardize_and_predict_in_their_own_units(tmp_path, capsys):
    z = np.load(EXAMPLES / "diabetes.npz")
    raw = tmp_path / "raw.npz"  # the data set's own units, 25-346 (the example file holds them / 100)
    np.savez(raw, x=z["x"], y=z["y"] * 100, x_test=z["x_test"], y_test=z["y_test"] * 100)
    run = tmp_path / "run"
    assert cli.main(["train", "--data", str(raw), "--loss", "mse", "--standardize", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "loss, mse and mae in standardised target units" in out
    summary = json.loads((run / "summary.json").read_text())
    assert summary["test"]["r2"] >= 0.3, summary["test"]
    model = jnn.load_run(run)
    prep = model.preprocessing
    assert prep.target_mean[0] == pytest.approx(150, abs=15) and prep.target_std[0] == pytest.approx(77, abs=10)
    pred, y = model.predict(z["x_test"]), z["y_test"] * 100
    r2 = 1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 == pytest.approx(summary["test"]["r2"], abs=1e-4) and 25 <= pred.mean() <= 346
    assert cli.main(["predict", str(run), "--data", str(raw), "--split", "test"]) == 0
    rows = capsys.readouterr().out.splitlines()
    np.testing.assert_allclose([float(v) for v in rows[1:]], pred, rtol=1e-5)
