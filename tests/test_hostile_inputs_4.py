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
    argv = ["train", "--data", str(noise_csv), "--target", "f1", "--features", "f1,f2", "--loss", "mse",
            "--out", str(out)]  # fmt: skip
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


X64_SCRIPT = r"""
import json, sys
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import jnn
from jnn.datasets import load
from jnn.sweep import sweep
from jnn.train import TrainConfig, fit

folder = sys.argv[1]
train, test = load("spirals", seed=0)
out = {}
# a float32 run made without x64 goes on here
res = fit(train, TrainConfig(max_epochs=4, batch_size=64), callbacks=[jnn.RunFolder(folder, resume=True)])
out["resumed_epochs"] = len(res.history)
# float64 data trains (the advice jnn gives for float64 data is true)
x64 = jnn.Dataset(np.asarray(train.x, np.float64), np.asarray(train.y))
r64 = fit(x64, TrainConfig(max_epochs=2, batch_size=64))
out["float64_data_loss"] = float(r64.history["train_loss"][-1])
model = jnn.load_run(folder)
out["predict_shape"] = list(np.shape(model.predict(np.asarray(test.x[:5], np.float64))))
sw = sweep(train, TrainConfig(max_epochs=2, batch_size=64), seed=[0, 1], callbacks=[jnn.SweepFolder(folder + "-sw")])
again = sweep(train, TrainConfig(max_epochs=2, batch_size=64), seed=[0, 1],
              callbacks=[jnn.SweepFolder(folder + "-sw", resume=True)])
out["sweep_rows_equal"] = sw.rows == again.rows
report = jnn.check_grads(lambda w: jnp.sum(jnp.tanh(w) ** 2), jnp.linspace(-1.0, 1.0, 7))
out["check_grads"] = report.passed
print(json.dumps(out))
""".replace("import numpy as np\n", "import numpy as np\nimport jax.numpy as jnp\n")


def test_wrong_refusal_everything_trains_resumes_sweeps_predicts_and_checks_in_64_bit_mode(tmp_path):
    """Finding 5: nothing trained under ``jax_enable_x64`` (an int32 index beside an int64 one in the compiled
    epoch loop), so jnn's own advice for float64 data (``float64_mode``) was false; a float32 run could not
    be resumed there either."""
    import json
    import os
    import subprocess
    import sys

    import jnn
    from jnn.datasets import load
    from jnn.train import TrainConfig, fit

    train, _ = load("spirals", seed=0)
    run = tmp_path / "run"
    fit(train, TrainConfig(max_epochs=2, batch_size=64), callbacks=[jnn.RunFolder(run)])  # float32, x64 off
    script = tmp_path / "x64.py"
    script.write_text(X64_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    proc = subprocess.run([sys.executable, str(script), str(run)], capture_output=True, text=True, timeout=600,
                          env={**env, "JAX_PLATFORMS": "cpu"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["resumed_epochs"] == 4
    assert np.isfinite(out["float64_data_loss"]) and out["predict_shape"][0] == 5
    assert out["sweep_rows_equal"] and out["check_grads"]


def test_silent_wrong_a_streamed_file_rewritten_during_a_fit_is_noticed(tmp_path):
    """Finding 10: a .npy rewritten while a fit streamed it was read on, mixing two files' rows."""
    import jnn
    from jnn.train import TrainConfig, fit

    rng = np.random.default_rng(0)
    path = tmp_path / "x.npy"
    np.save(path, rng.normal(size=(256, 4)).astype(np.float32))
    y = rng.integers(0, 2, 256)

    class Rewrite(jnn.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 2:
                np.save(path, rng.normal(size=(256, 4)).astype(np.float32))  # same size, new content

    cfg = TrainConfig(max_epochs=5, batch_size=32, epochs_per_call=1, early_stopping=None)
    with pytest.raises(ValueError, match="changed on disk during the run"):
        fit(jnn.Dataset(str(path), y), cfg, callbacks=[Rewrite()])
    fit(jnn.Dataset(str(path), y), cfg)  # an unchanged file trains to the end


def test_wrong_refusal_big_endian_and_capital_suffix_npy_files_are_read(tmp_path):
    """Finding 11: a big-endian float32 .npy ("must have dtype float32; got >f4") and a .NPY suffix."""
    import jnn
    from jnn.train import TrainConfig, fit

    x = np.random.default_rng(1).normal(size=(128, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.save(tmp_path / "le.npy", x)
    np.save(tmp_path / "be.npy", x.astype(">f4"))
    (tmp_path / "le.npy").rename(tmp_path / "UP.NPY")
    cfg = TrainConfig(max_epochs=2, batch_size=32, seed=3)
    losses = [fit(jnn.Dataset(str(tmp_path / name), y), cfg).history["train_loss"] for name in ("UP.NPY", "be.npy")]
    assert losses[0] == losses[1]  # the same rows whatever the byte order
    assert jnn.Dataset(str(tmp_path / "be.npy"), y).x.dtype == np.float32


@pytest.mark.parametrize("flag", ["--patience", "--checkpoint-every", "--batch-size", "--warmup-epochs"])
def test_traceback_an_int_flag_above_int32_is_refused_before_any_folder_is_written(tmp_path, capsys, flag):
    """Finding 8: ``--patience 2**31`` crashed in the compiled step (OverflowError) and left a half-written run."""
    out = tmp_path / "run"
    argv = ["train", "--dataset", "spirals", "--max-epochs", "2", flag, str(2**31), "--out", str(out)]
    if flag == "--warmup-epochs":
        argv += ["--lr-schedule", "warmup-cosine"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "must be an integer in [" in err and "2147483647]" in err and "Traceback" not in err, err
    assert not out.exists() or not any(out.iterdir())
    toml = tmp_path / "c.toml"
    toml.write_text(f'dataset = "spirals"\n{flag[2:].replace("-", "_")} = {2**40}\n')
    assert main(["train", "--config", str(toml), "--out", str(out)]) == 2  # the same bound from a TOML key
    assert "must be an integer in [" in capsys.readouterr().err


def test_traceback_a_toml_nested_50000_deep_and_endless_config_are_named(tmp_path, capsys):
    """Finding 13: a TOML nested 50,000 deep raised RecursionError; /dev/zero would never end."""
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 50_000 + "]" * 50_000 + "\n")
    assert main(["train", "--config", str(deep), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "nests its tables or arrays too deeply" in err and "Traceback" not in err
    assert main(["train", "--config", "/dev/zero", "--out", str(tmp_path / "r")]) == 2
    assert "is over 1 MiB" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_wrong_refusal_a_config_from_a_pipe_is_read(tmp_path, capsys):
    """Finding 11: ``--config <(…)`` (a pipe) was refused as "not a regular file"."""
    import os
    import threading

    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)

    def write():
        with open(fifo, "w") as fh:
            fh.write('dataset = "spirals"\nmax_epochs = 1\nhidden = [8]\n')

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert main(["train", "--config", str(fifo), "--out", str(tmp_path / "run")]) == 0
    writer.join(timeout=10)
    import json

    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["config"]["max_epochs"] == 1


def test_hang_a_csv_logger_refuses_fifos_links_and_files_it_did_not_write(tmp_path):
    """Finding 9: ``CSVLogger`` on a FIFO blocked forever (plain ``open``), wrote through links and replaced any
    file. Now: a regular file only, checked before the first epoch; jnn's own log replaced only with
    overwrite=True; a file that is not a jnn log never."""
    import os
    import threading

    import jnn
    from jnn.datasets import load
    from jnn.train import TrainConfig, fit

    train, _ = load("spirals", seed=0)
    cfg = TrainConfig(max_epochs=1, batch_size=64)
    fifo = tmp_path / "log.fifo"
    os.mkfifo(fifo)
    done = []
    t = threading.Thread(target=lambda: done.append(_refused(lambda: fit(train, cfg, callbacks=[jnn.CSVLogger(fifo)]))))
    t.start()
    t.join(timeout=120)
    assert done and "FIFO" in done[0], done  # refused, not blocked
    target = tmp_path / "elsewhere.csv"
    target.write_text("precious\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    assert "symbolic link" in _refused(lambda: fit(train, cfg, callbacks=[jnn.CSVLogger(link)]))
    assert target.read_text() == "precious\n"
    mine = tmp_path / "mine.csv"
    mine.write_text("name,score\nada,3\n")
    for kw in ({}, {"overwrite": True}):
        refused = _refused(lambda kw=kw: fit(train, cfg, callbacks=[jnn.CSVLogger(mine, **kw)]))
        assert "is not a log jnn wrote" in refused
    assert mine.read_text() == "name,score\nada,3\n"
    log = tmp_path / "log.csv"
    fit(train, cfg, callbacks=[jnn.CSVLogger(log)])
    assert "already holds a log" in _refused(lambda: fit(train, cfg, callbacks=[jnn.CSVLogger(log)]))
    fit(train, cfg, callbacks=[jnn.CSVLogger(log, overwrite=True)])
    assert len(log.read_text().splitlines()) == 2  # the header and one epoch: replaced, not appended


def _refused(run) -> str:
    with pytest.raises(ValueError) as err:
        run()
    return str(err.value)


def test_silent_wrong_evaluate_split_val_on_a_csv_is_refused(noise_csv, tmp_path, capsys):
    """Finding 10: ``jnn evaluate --split val`` on a CSV scored the whole file as if it were the val split."""
    run = tmp_path / "run"
    assert main(["train", "--data", str(noise_csv), "--target", "f2", "--loss", "mse", "--max-epochs", "1",
                 "--batch-size", "16", "--out", str(run)]) == 0  # fmt: skip
    capsys.readouterr()
    for cmd in ("evaluate", "predict"):
        assert main([cmd, str(run), "--data", str(noise_csv), "--split", "val"]) == 2
        err = capsys.readouterr().err
        assert "--split val is for .npz files" in err and "Traceback" not in err, err
    assert main(["evaluate", str(run), "--data", str(noise_csv)]) == 0  # the whole file, as asked


def test_blow_up_jnn_gradcheck_refuses_a_model_too_large_for_memory_before_allocating(capsys):
    """Finding 12: ``jnn gradcheck`` had no model-size check (9.7 GB resident, then a raw JaxRuntimeError)."""
    import resource

    from jnn.app.cli import _check_gradcheck_memory

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["gradcheck", "--sizes", "60000,60000,10"]) == 2  # 3.6e9 parameters
    err = capsys.readouterr().err
    assert "checking its gradients needs about" in err and "use smaller --sizes" in err and "Traceback" not in err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000  # KiB: nothing of its size made
    with pytest.raises(ValueError, match="1,010 parameters"):
        _check_gradcheck_memory((100, 10), 4, "float32", bound=(1000, "a test's memory"))
    assert _check_gradcheck_memory((100, 10), 4, "float32", bound=(10**9, "a test's memory")) > 0


@pytest.mark.parametrize("platform, says", [("bogus", "Unable to initialize backend 'bogus'"), ("cuda", "no CUDA GPU")])
def test_traceback_an_unavailable_or_bogus_jax_platform_is_named_with_exit_2(tmp_path, platform, says):
    """Finding 13: ``JAX_PLATFORMS=cuda`` without a GPU (a bare AssertionError) or ``bogus`` (RuntimeError)."""
    import os
    import subprocess
    import sys

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("JAX_")}, "JAX_PLATFORMS": platform}
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "jnn.app.cli", "train", "--dataset", "spirals", "--max-epochs", "1",
                           "--out", str(out)], capture_output=True, text=True, timeout=300, env=env)  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"JAX_PLATFORMS='{platform}'" in proc.stderr and says in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def _npy_with_header(path, shape, rows_written: int, cols: int = 3):
    """A .npy whose header declares ``shape`` over ``rows_written`` × ``cols`` float32 values."""
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    with open(path, "wb") as fh:
        fh.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1"))
        fh.write(np.zeros((rows_written, cols), "<f4").tobytes())
    return path


@pytest.mark.parametrize("shape, rows, match", [
    ((-100, 3), 3, r"declares the shape \(-100, 3\)"),
    ((100, 0), 3, r"declares the shape \(100, 0\)"),
    ((100, 3), 10, r"is truncated: its header declares 100 × 3 float32"),
])  # fmt: skip
def test_traceback_a_bad_npy_header_is_a_named_error(tmp_path, shape, rows, match):
    """Finding 13: a .npy header with shape (-100, 3) or (100, 0) (and a truncated file) gave tracebacks."""
    import jnn

    path = _npy_with_header(tmp_path / "x.npy", shape, rows)
    with pytest.raises(ValueError, match=match):
        jnn.Dataset(str(path), np.zeros(100, np.int64))


def test_traceback_a_run_store_given_to_the_wrong_function_is_refused_before_training(tmp_path):
    """Finding 13: ``fit(..., callbacks=[SweepFolder])`` trained to the end, then failed with AttributeError."""
    import jnn
    from jnn.datasets import load
    from jnn.sweep import sweep
    from jnn.train import TrainConfig, fit

    train, _ = load("spirals", seed=0)
    calls = []

    class Count(jnn.Callback):
        def on_epoch_end(self, epoch, logs):
            calls.append(epoch)

    cfg = TrainConfig(max_epochs=2, batch_size=64)
    with pytest.raises(TypeError, match=r"callbacks\[0\] is a SweepFolder, which keeps a sweep"):
        fit(train, cfg, callbacks=[jnn.SweepFolder(tmp_path / "sw"), Count()])
    with pytest.raises(TypeError, match=r"callbacks\[1\] is a RunFolder, which keeps one run"):
        sweep(train, cfg, seed=[0, 1], callbacks=[Count(), jnn.RunFolder(tmp_path / "run")])
    assert calls == [] and not (tmp_path / "sw").exists() and not (tmp_path / "run").exists()


def test_blow_up_an_npz_declaring_more_than_memory_is_refused_before_reading_and_x_keeps_its_dtype(tmp_path, capsys):
    """Finding 7: a 2 MB deflated .npz whose x declared 2.15 GB peaked at 10.7 GB (read, then float64, then
    float32, then split), with no size check. Now the headers are read first, and x stays in its own dtype."""
    import zipfile

    from jnn.app.tabular import read_npz

    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as z:
        header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000, 1000000), }"
        header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
        z.writestr("x.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1"))
        buf = __import__("io").BytesIO()
        np.save(buf, np.zeros(1000000, np.int64))
        z.writestr("y.npy", buf.getvalue())
    assert bomb.stat().st_size < 100_000
    with pytest.raises(ValueError, match=r"declares arrays of 1.2e\+04 GB .*its largest, 'x': \(1000000, 1000000\)"):
        read_npz(bomb)
    assert main(["train", "--data", str(bomb), "--out", str(tmp_path / "run")]) == 2
    assert "declares arrays of" in capsys.readouterr().err and not (tmp_path / "run").exists()
    x = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32)
    np.savez(tmp_path / "ok.npz", x=x, y=(x[:, 0] > 0).astype(np.int64), x_val=x.astype(">f4"), y_val=np.zeros(50))
    tables = read_npz(tmp_path / "ok.npz")
    assert tables["train"].x.dtype == np.float32 and np.array_equal(tables["train"].x, x)  # no float64 detour
    assert tables["val"].x.dtype == np.float32 and np.array_equal(tables["val"].x, x)  # big-endian, read as native


def test_data_loss_jnn_plot_never_replaces_an_image_it_did_not_draw(tmp_path, capsys):
    """Finding 2 (the one rule, for plots): ``jnn plot --out`` replaced any file; now an image jnn did not draw
    (told by the PNG's ``Software: jnn`` text chunk) is never replaced, jnn's own only with --overwrite, and
    the run's own curves.png is redrawn in place."""
    from jnn.app.plots import is_jnn_png

    run = tmp_path / "run"
    assert main(["train", "--dataset", "spirals", "--max-epochs", "2", "--out", str(run)]) == 0
    assert is_jnn_png(run / "curves.png")
    assert main(["plot", str(run)]) == 0  # its own curves.png: redrawn
    photo = tmp_path / "holiday.png"
    photo.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    capsys.readouterr()
    for extra in ([], ["--overwrite"]):
        assert main(["plot", str(run), "--out", str(photo), *extra]) == 2
        assert "is not a plot jnn drew" in capsys.readouterr().err
    assert photo.read_bytes() == b"\x89PNG\r\n\x1a\n" + b"\x00" * 64 and not is_jnn_png(photo)
    mine = tmp_path / "curves-copy.png"
    assert main(["plot", str(run), "--out", str(mine)]) == 0
    assert main(["plot", str(run), "--out", str(mine)]) == 2
    assert "already holds a plot jnn drew" in capsys.readouterr().err
    assert main(["plot", str(run), "--out", str(mine), "--overwrite"]) == 0
