"""Hostile inputs get a named error before any work: labels that would wrap, data of the wrong width, rates
that vanish in float32, checkpoints that are FIFOs, folders, zip bombs or forged headers."""

import io
import json
import os
import threading
import zipfile

import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn import RunFolder
from jnn.app import atomic
from jnn.app import checkpoint as ckpt
from jnn.datasets import load
from jnn.sweep import sweep
from jnn.train import TrainConfig, fit


@pytest.mark.parametrize(
    "y, match",
    [
        ([0, 1, -(2**32) + 1], r"labels in \[0, 1\].*got values in \[-4294967295, 1\]"),
        ([0, 1, 2**32, 2**32 + 1], r"labels up to 4294967297"),
        ([0, 1, 2**31], r"labels up to 2147483648"),
    ],
)
def test_wrapping_labels_are_refused_before_any_cast(y, match):
    with pytest.raises(ValueError, match=match):
        jnn.Dataset(np.zeros((len(y), 2), "f4"), np.array(y, np.int64))


def test_wrapping_multilabel_targets_are_refused_before_any_cast():
    y = np.array([[0, 1], [1, 2**32]], np.int64)  # 2**32 would become 0 in int32
    with pytest.raises(ValueError, match="must be 0/1"):
        jnn.Dataset(np.zeros((2, 2), "f4"), y)


def test_allocation_bombs_num_classes_and_layer_widths_are_bounded():
    with pytest.raises(ValueError, match=r"num_classes must be an integer in \[2, 1048576\]; got 50000000"):
        jnn.Dataset(np.zeros((3, 2), "f4"), np.array([0, 1, 1]), num_classes=5 * 10**7)
    with pytest.raises(ValueError, match=r"hidden\[0\] must be an integer in \[1, 2147483647\]"):
        jnn.MLP(hidden=(10**30,))


@pytest.mark.parametrize("lr", [1e-320, 1e39])
def test_vanishing_rates_a_learning_rate_that_is_0_or_inf_in_float32_is_refused(lr):
    with pytest.raises(ValueError, match=r"learning_rate must be representable in float32"):
        TrainConfig(learning_rate=lr)


def test_wrong_widths_evaluate_and_sweep_test_name_the_mismatch_before_training():
    train = load("xor", seed=0)[0]
    cfg, net = TrainConfig(max_epochs=1, early_stopping=None), jnn.MLP(hidden=(4,))
    params = fit(train, cfg, task=net).params
    wide = jnn.Dataset(np.zeros((5, 7), "f4"), np.array([0, 1, 0, 1, 0]))
    with pytest.raises(ValueError, match="ds has 7 features but the params take 2"):
        jnn.evaluate(params, wide, net)
    with pytest.raises(ValueError, match="test must be data like train: 2 features.*got 7 features"):
        sweep(train, cfg, task=net, test=wide, learning_rate=[0.1, 0.2])
    three = jnn.Dataset(train.x, np.arange(len(train.x)) % 3)
    with pytest.raises(ValueError, match="3 classes"):
        jnn.evaluate(params, three, net)


def _saved(tmp_path):
    path = tmp_path / "c.npz"
    ckpt.save(path, {"w": jnp.arange(6.0).reshape(2, 3)}, meta={"config": {}})
    return path


def test_not_regular_files_a_fifo_or_a_folder_as_checkpoint_is_refused_at_once(tmp_path):
    template = {"w": jnp.zeros((2, 3))}
    fifo = tmp_path / "fifo.npz"
    os.mkfifo(fifo)
    out = []
    t = threading.Thread(target=lambda: out.append(_error(lambda: ckpt.restore(fifo, template))), daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "restoring from a FIFO hung"
    assert "not a regular file" in out[0]
    assert "not a regular file" in _error(lambda: ckpt.restore(tmp_path, template))


def _error(fn) -> str:
    try:
        fn()
    except ValueError as err:
        return str(err)
    return "no error"


def _rewrite(path, header=None, arrays=None):
    """Rewrite a checkpoint with another header and/or other arrays (a forged file)."""
    with np.load(path) as z:
        items = {k: z[k] for k in z.files}
    if header is not None:
        items["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    items.update(arrays or {})
    np.savez_compressed(path, **items)


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda h: [h], "format 'list'"),
        (lambda h: {k: v for k, v in h.items() if k != "leaves"}, "'leaves' must be a list"),
        (lambda h: {**h, "leaves": [{k: v for k, v in h["leaves"][0].items() if k != "sha256"}]}, "'sha256'"),
        (lambda h: {**h, "meta": "abc"}, "'meta' must be an object"),
        (lambda h: {**h, "leaves": [{**h["leaves"][0], "shape": "x"}]}, "'shape' list"),
        (lambda h: {**h, "leaves": [{**h["leaves"][0], "dtype": "|O"}]}, "dtype"),
    ],
)
def test_malformed_headers_are_named_errors(tmp_path, mutate, match):
    path = _saved(tmp_path)
    with np.load(path) as z:
        header = json.loads(bytes(z["header"]).decode())
    _rewrite(path, header=mutate(header))
    for fn in (ckpt.read_header, ckpt.verify, lambda p: ckpt.restore(p, {"w": jnp.zeros((2, 3))})):
        with pytest.raises(ValueError, match=match):
            fn(path)


def test_forged_headers_stored_arrays_must_match_the_header(tmp_path):
    path = _saved(tmp_path)
    with np.load(path) as z:
        header = json.loads(bytes(z["header"]).decode())
    forged = np.arange(12.0, dtype=np.float32).reshape(3, 4)  # another shape than the header declares
    _rewrite(path, arrays={header["leaves"][0]["name"]: forged})
    with pytest.raises(ValueError, match=r"stores float32\[3, 4\] where the header declares float32\[2, 3\]"):
        ckpt.verify(path)
    assert header["leaves"][0]["shape"] == [2, 3]


def test_zip_bombs_a_leaf_that_inflates_past_its_declared_size_is_refused_before_decompressing(tmp_path):
    import resource

    path = _saved(tmp_path)
    with np.load(path) as z:
        items = {k: z[k] for k in z.files}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in items.items():
            if k == "w":  # the leaf's entry, named by its path
                v = np.zeros((2**27,), np.float32)  # 512 MiB of zeros, a few hundred KiB compressed
            with zf.open(k + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, v)
    path.write_bytes(buf.getvalue())
    assert path.stat().st_size < 4 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for fn in (ckpt.verify, lambda p: ckpt.restore(p, {"w": jnp.zeros((2, 3))})):
        with pytest.raises(ValueError, match=r"stores 53687\d+ bytes where the header declares"):
            fn(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100 * 1024  # KiB: nothing inflated


@pytest.mark.parametrize("expect, allow", [("x", ()), (None, "learning_rate")])
def test_wrong_kinds_restore_names_its_arguments(tmp_path, expect, allow):
    path = _saved(tmp_path)
    with pytest.raises(TypeError, match="expect must be a dict|allow_changes must be a tuple"):
        ckpt.restore(path, {"w": jnp.zeros((2, 3))}, expect=expect, allow_changes=allow)


@pytest.mark.parametrize(
    "make, exc, match",
    [
        (lambda: jnn.RunFolder(""), ValueError, "RunFolder path must name a folder; got an empty path"),
        (lambda: jnn.RunFolder(3), TypeError, "RunFolder path must be a str or os.PathLike; got int"),
        (lambda: jnn.RunFolder("/proc/jnn-run"), ValueError, r"RunFolder path '/proc/jnn-run' cannot be written"),
        (lambda: jnn.Progress(log_every="x"), TypeError, "log_every must be an integer"),
        (lambda: jnn.Progress(log_every=-1), ValueError, r"log_every must be an integer in \[0, inf\]; got -1"),
        (lambda: jnn.Progress(bar="yes"), TypeError, r"bar must be True, False or None \(automatic\); got 'yes'"),
        (lambda: jnn.RunFolder("r", resume="yes"), TypeError, "resume must be True or False"),
        (lambda: jnn.RunFolder("r", overwrite=1), TypeError, "overwrite must be True or False"),
        (lambda: jnn.RunFolder("r", data_info=[1]), TypeError, "data_info must be a dict or None; got list"),
        (lambda: fit(load("xor", seed=0)[0], callbacks=[jnn.Progress(), jnn.Progress()]), ValueError,
         r"at most one jnn.Progress; got one at each of \[0, 1\]"),
    ],
)  # fmt: skip
def test_wrong_kinds_run_folder_and_progress_name_their_arguments_before_any_work(tmp_path, monkeypatch, make, exc,
                                                                                  match):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    with pytest.raises(exc, match=match):
        make()
    assert list(tmp_path.iterdir()) == []  # nothing written, not even into the current folder


def test_unwritable_destinations_sweep_out_is_checked_before_training(tmp_path, capsys):
    from jnn.app.cli import main

    (tmp_path / "afile").write_text("x")
    code = main(["sweep", "--dataset", "xor", "--hidden", "4", "--max-epochs", "50", "--seeds", "0,1",
                 "--out", str(tmp_path / "afile")])  # fmt: skip
    err = capsys.readouterr()
    assert code == 2 and "--out must be a folder" in err.err and "jnn sweep: xor" not in err.out


def _cli(argv, capsys):
    from jnn.app.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as stop:  # argparse: its usage line, then one error line
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_full_disk_a_failed_save_is_one_line_exit_2_and_keeps_the_old_checkpoint(tmp_path, capsys, monkeypatch):
    import errno

    run = tmp_path / "r"
    base = ["train", "--dataset", "xor", "--hidden", "4", "--no-early-stopping", "--out", run]
    assert _cli([*base, "--max-epochs", "2"], capsys)[0] == 0
    before = (run / "checkpoint.npz").read_bytes()

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt.np, "savez", full)
    code, _, err = _cli([*base, "--max-epochs", "4", "--resume"], capsys)
    assert code == 2 and "No space left on device" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert (run / "checkpoint.npz").read_bytes() == before
    assert not list(run.rglob(f"{atomic.TEMP_PREFIX}*"))


@pytest.mark.parametrize(
    "argv, match",
    [
        (["gradcheck", "--json", "{tmp}"], "--json must be a file"),
        (["evaluate", "{tmp}/r", "--data", "x.csv", "--json", "{tmp}"], "--json must be a file"),
        (["predict", "{tmp}/r", "--data", "x.csv", "--out", "{tmp}"], "--out must be a file"),
        (["train", "--config", "{tmp}"], "--config must be a TOML file"),
        (["train", "--dataset", "xor", "--out", "/proc/jnn-x"], "--out '/proc/jnn-x' cannot be written"),
        (["sweep", "--dataset", "xor", "--seeds", "0,1", "--out", "{tmp}/nope/\udcff"], "--out must be a UTF-8 path"),
        (["plot", "{tmp}/h"], "is not a jnn history"),
        (["launch", "--processes", "2", "--", "/nonexistent/cmd"], "command not found"),
        (["launch", "--processes", "100000", "--", "true"], r"processes must be an integer in \[1, 256\]"),
        (["train", "--dataset", "xor", "--max-steps", "99999999999999999999999"], r"max_steps must be an integer in"),
        (["train", "--dataset", "xor", "--max-epochs", "9223372036854775808"], r"max_epochs must be an integer in"),
        (["train", "--dataset", "xor", "--hidden", ""], "expected comma-separated ints"),
    ],
)
def test_unwritable_destinations_and_bad_files_are_one_line_and_exit_2(tmp_path, capsys, argv, match):
    (tmp_path / "h").mkdir()
    (tmp_path / "h" / "history.json").write_text("{}")
    code, _, err = _cli([a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    lines = [line for line in err.strip().splitlines() if not line.startswith(("usage:", " "))]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert __import__("re").search(match, err), err


def test_long_values_are_cut_in_messages():
    with pytest.raises(ValueError) as info:
        jnn.MLP(activation="x" * 5_000_000)
    assert len(str(info.value)) < 400 and "(5000002 characters)" in str(info.value)
    with pytest.raises(ValueError, match=r"got 1.0000001;"):
        jnn.MLP(keep_prob=1.0000001)


def test_numpy_integers_are_accepted_and_stored_as_python_ones():
    cfg = TrainConfig(batch_size=np.int32(8), max_epochs=np.int16(3), learning_rate=np.float32(0.5))
    assert type(cfg.batch_size) is int and type(cfg.learning_rate) is float and json.dumps(cfg.to_dict())
    assert cfg.hash() == TrainConfig(batch_size=8, max_epochs=3, learning_rate=float(np.float32(0.5))).hash()
    net = jnn.MLP(hidden=(np.int64(4),), l2=np.float64(0.5))
    assert type(net.hidden[0]) is int and type(net.l2) is float and net == jnn.MLP(hidden=(4,), l2=0.5)
    assert json.dumps(net.to_dict())


def test_launcher_reports_a_killed_child_as_128_plus_the_signal():
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "jnn.app.cli", "launch", "--processes", "2", "--", "bash", "-c", "kill -9 $$"]
    assert subprocess.run(cmd, capture_output=True, timeout=120).returncode == 137


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143), ("SIGINT", 130)])
def test_launcher_a_signal_leaves_no_orphans_and_no_traceback(tmp_path, sig, code):
    import signal
    import subprocess
    import sys
    import time

    pids = tmp_path / "pids"
    child = f"echo $$ >> {pids}; exec sleep 60"
    launcher = subprocess.Popen([sys.executable, "-m", "jnn.app.cli", "launch", "--processes", "3", "--", "bash", "-c",
                                 child], stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while not pids.exists() or len(pids.read_text().split()) < 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    launcher.send_signal(getattr(signal, sig))
    assert launcher.wait(timeout=90) == code
    assert "Traceback" not in launcher.stderr.read()
    launcher.stderr.close()
    for pid in map(int, pids.read_text().split()):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_allocation_bombs_a_huge_epoch_budget_with_a_schedule_and_a_step_budget_runs(tmp_path):
    import resource

    train = load("xor", seed=0)[0]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cfg = TrainConfig(max_epochs=10**9, max_steps=5, lr_schedule="warmup-cosine", warmup_epochs=3,
                      early_stopping=None)  # fmt: skip
    res = fit(train, cfg, task=jnn.MLP(hidden=(4,)), callbacks=[RunFolder(tmp_path / "r")])
    assert res.stopped_by == "max_steps" and int(res.state.step) == 5
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200 * 1024  # KiB


@pytest.fixture(scope="module")
def xor_run(tmp_path_factory):
    """A finished 2-epoch run folder and a CSV of inputs for it."""
    root = tmp_path_factory.mktemp("xor_run")
    train = load("xor", seed=0)[0]
    fit(train, TrainConfig(max_epochs=2, early_stopping=None), task=jnn.MLP(hidden=(4,)),
        callbacks=[RunFolder(root / "run")])  # fmt: skip
    data = root / "x.csv"
    data.write_text("x0,x1\n0.1,0.2\n-0.3,0.4\n")
    return root / "run", data


def test_data_loss_a_device_a_fifo_or_a_folder_as_destination_is_refused_and_left_as_it_is(tmp_path, capsys, xor_run):
    run, data = xor_run
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    for dest, kind in ((fifo, "FIFO"), ("/dev/null", "character device"), (tmp_path, "folder")):
        with pytest.raises(ValueError, match=f"is a {kind}"):
            with atomic.writing(dest, "w") as fh:
                fh.write("x")
        code, out, err = _cli(["predict", run, "--data", data, "--out", dest], capsys)
        assert code == 2 and "Traceback" not in err and ("is a " in err or "is a folder" in err), err
        assert "wrote" not in err
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")  # still the device
    assert __import__("stat").S_ISFIFO(os.lstat(fifo).st_mode)
    code, out, err = _cli(["predict", run, "--data", data], capsys)  # without --out: standard output
    assert code == 0 and out.splitlines()[0] == "prediction" and len(out.splitlines()) == 3


def test_data_loss_out_refuses_the_run_folders_own_files(tmp_path, capsys, xor_run):
    run, data = xor_run
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    for target in ("model.npz", "config.json", "checkpoint.npz", "history.csv", "checkpoints/epoch-000002.npz"):
        code, _, err = _cli(["predict", run, "--data", data, "--out", run / target], capsys)
        assert code == 2 and "is one of the files of the jnn run or sweep in" in err, (target, err)
        code, _, err = _cli(["evaluate", run, "--data", data, "--json", run / target], capsys)
        assert code == 2 and "--json" in err and "is one of the files of the jnn run" in err, (target, err)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    code, _, err = _cli(["plot", run, "--out", run / "curves.png"], capsys)  # the plot's own file: allowed
    assert code == 0, err
    code, _, err = _cli(["predict", run, "--data", data, "--out", tmp_path / "model.npz"], capsys)  # not a run
    assert code == 0 and (tmp_path / "model.npz").read_text().startswith("prediction")


def test_hang_a_model_too_large_for_memory_is_refused_before_anything_is_allocated(tmp_path, capsys, monkeypatch):
    import jnn.train.run_setup as run_setup

    monkeypatch.setattr(run_setup, "memory_bound", lambda: (24 * 10**9, "the machine's memory"))
    out = tmp_path / "big"
    code, _, err = _cli(["train", "--dataset", "xor", "--hidden", "100000,100000", "--out", out], capsys)
    assert code == 2 and "Traceback" not in err, err
    assert "10,000,600,002 parameters (40 GB) need about 160 GB" in err and "the machine's memory is 24 GB" in err
    assert not out.exists()  # refused before the run folder was made
    train = load("xor", seed=0)[0]
    with pytest.raises(ValueError, match=r"8 members × params.* is 24 GB"):
        sweep(train, TrainConfig(max_epochs=1), task=jnn.MLP(hidden=(30000, 30000)), seed=list(range(8)))
    ct = run_setup.checked_task(jnn.MLP(hidden=(4,)), TrainConfig(), *run_setup.prepare_data(train, TrainConfig()),
                                None)  # fmt: skip
    tx = TrainConfig().make_optimizer()
    params = 2 * 4 + 4 + 4 * 2 + 2  # (2, 4, 2) weights and biases
    # float32: three copies of the params, momentum's trace, and inject_hyperparams' count, rate and momentum
    assert run_setup.check_memory(ct, tx) == 4 * (3 * params + params) + 3 * 4
    # A sweep counts the data it holds: every member's split, stacked (here 2 x 0.88 MB against a 1 MB bound).
    monkeypatch.setattr(run_setup, "memory_bound", lambda: (10**6, "a test's memory"))
    wide = jnn.Dataset(np.zeros((20000, 10), np.float32), np.zeros(20000, np.int32))
    with pytest.raises(ValueError, match=r"\(2 members × params.*, and 0.00176 GB of data\) but a test's memory"):
        sweep(wide, TrainConfig(max_epochs=1), task=jnn.MLP(hidden=(4,)), seed=[0, 1])


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    """Two finished 2-epoch runs of one standardised CSV (seeds 0 and 1), and the CSV."""
    from jnn.app.cli import main

    root = tmp_path_factory.mktemp("csv_run")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    labels = np.where(x[:, 0] + x[:, 1] > 0, "up", "down")
    data = root / "d.csv"
    data.write_text("a,b,c,label\n" + "".join(f"{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{t}\n" for r, t in zip(x, labels)))
    for seed in (0, 1):
        argv = ["train", "--data", data, "--standardize", "--hidden", "4", "--max-epochs", "2", "--batch-size", "16",
                "--seed", seed, "--out", root / f"run{seed}"]  # fmt: skip
        assert main([str(a) for a in argv]) == 0
    return root, data


def _edited_copy(src, dst, edit=None, model_from=None):
    import shutil

    shutil.copytree(src, dst)
    if edit is not None:
        meta = json.loads((dst / "config.json").read_text())
        edit(meta)
        (dst / "config.json").write_text(json.dumps(meta))
    if model_from is not None:
        shutil.copy(model_from / "model.npz", dst / "model.npz")
    return dst


def test_silent_wrong_a_run_folder_whose_files_disagree_is_refused_naming_both(tmp_path, capsys, csv_run):
    root, data = csv_run
    run = root / "run0"
    assert jnn.load_run(run).predict(np.zeros((1, 3))).shape == (1,)  # the untouched folder loads

    def nan_std(m):
        m["data"]["preprocessing"]["std"][0] = float("nan")

    edits = {
        "activation": lambda m: m["mlp"].update(activation="tanh"),
        "dropout": lambda m: m["mlp"].update(dropout_mode="classic"),
        "features": lambda m: m["data"]["preprocessing"]["features"].reverse(),
        "hash": lambda m: m.update(config_hash="0" * 16),
        "std": nan_std,
    }
    for name, edit in edits.items():
        bad = _edited_copy(run, tmp_path / name, edit)
        with pytest.raises(ValueError, match=r"config.json' does not match .*model.npz'"):
            jnn.load_run(bad)
        code, _, err = _cli(["predict", bad, "--data", data], capsys)
        assert code == 2 and "does not match" in err and "Traceback" not in err, (name, err)
    other = _edited_copy(run, tmp_path / "other", model_from=root / "run1")  # another run's model, same shapes
    with pytest.raises(ValueError, match=r"config_hash: .* there, .* in model.npz"):
        jnn.load_run(other)


def test_silent_wrong_stored_preprocessing_and_classes_are_validated():
    from jnn.app.tabular import Preprocessing

    good = dict(kind="classes", n_features=3, features=["a", "b", "c"], targets=["label"], classes=["down", "up"],
                mean=[0.0, 0.1, 0.2], std=[1.0, 2.0, 3.0])  # fmt: skip
    assert Preprocessing.from_dict(good) == Preprocessing(**good)
    cases = [
        (dict(std=[1.0, float("nan"), 3.0]), r"feature 1 has mean 0.1 and std nan"),
        (dict(std=[1.0, 0.0, 3.0]), r"feature 1 has mean 0.1 and std 0.0; .* a std finite and positive"),
        (dict(std=[1.0, float("inf"), 3.0]), "std inf"),
        (dict(std=[1.0]), r"std must hold one entry per feature \(3\); got 1 values"),
        (dict(mean=[0.0, float("inf"), 0.0]), "feature 1 has mean inf"),
        (dict(classes=["up"]), r"classes must list at least two classes; got \['up'\]"),
        (dict(classes=["up", "down", "up"]), r"classes must be distinct; 'up' appears more than once"),
        (dict(classes=[3, 3.0]), "must be distinct"),
        (dict(features=["a"]), r"features must hold one entry per feature \(3\)"),
        (dict(kind="labels"), r"kind must be one of \['classes', 'values', 'multilabel'\]"),
        (dict(n_features=0), "n_features must be a positive int"),
        (dict(extra=1), "must have the keys"),
    ]
    for change, match in cases:
        with pytest.raises(ValueError, match=match):
            Preprocessing.from_dict({**good, **change}, what="config.json's data.preprocessing")


def test_silent_wrong_a_sweeps_class_list_or_rows_edited_are_refused_at_load(tmp_path, capsys, csv_run):
    root, data = csv_run
    sw = tmp_path / "sw"
    code, _, err = _cli(["sweep", "--data", data, "--hidden", "4", "--seeds", "0,1", "--max-epochs", "2",
                         "--batch-size", "16", "--out", sw], capsys)  # fmt: skip
    assert code == 0, err
    assert jnn.load_run(sw, member=1).classes == ["down", "up"]
    info = json.loads((sw / "sweep.json").read_text())
    for name, change, match in (
        ("three", {"data": {**info["data"], "preprocessing": {**info["data"]["preprocessing"],
                                                                "classes": ["down", "up", "sideways"]}}},
         r"lists 3 classes but the model has 2 \(softmax\)"),
        ("one", {"data": {**info["data"], "preprocessing": {**info["data"]["preprocessing"], "classes": ["up"]}}},
         r"classes must list at least two classes"),
        ("rows", {"rows": info["rows"][:1]}, r"lists 2 members but 1 rows"),
        ("member", {"members_config": info["members_config"][::-1]}, r"sweep.json' does not match .*params.npz'"),
    ):  # fmt: skip
        bad = _edited_copy(sw, tmp_path / name)
        (bad / "sweep.json").write_text(json.dumps({**info, **change}))
        with pytest.raises(ValueError, match=match):
            jnn.load_run(bad, member=1)
        code, _, err = _cli(["predict", bad, "--member", "1", "--data", data], capsys)
        assert code == 2 and "Traceback" not in err, (name, err)


def test_tracebacks_a_broken_npz_and_complex_features_are_named_errors(tmp_path, capsys):
    broken = tmp_path / "x.npz"
    np.savez(broken, x=np.zeros((4, 2)), y=np.arange(4) % 2)
    broken.write_bytes(broken.read_bytes()[:-30])  # the zip's central directory cut off
    code, _, err = _cli(["train", "--data", broken, "--max-epochs", "1", "--out", tmp_path / "r"], capsys)
    assert code == 2 and "is not a readable .npz file (BadZipFile" in err and "Traceback" not in err, err
    lone = tmp_path / "lone.npz"
    with open(lone, "wb") as fh:
        np.save(fh, np.zeros((4, 2)))
    code, _, err = _cli(["train", "--data", lone, "--max-epochs", "1", "--out", tmp_path / "r"], capsys)
    assert code == 2 and "holds one array, not named arrays x, y" in err, err
    cplx = tmp_path / "c.npz"
    np.savez(cplx, x=np.ones((8, 2)) * (1 + 2j), y=np.arange(8) % 2)
    code, _, err = _cli(["train", "--data", cplx, "--max-epochs", "1", "--out", tmp_path / "r"], capsys)
    assert code == 2 and "holds complex numbers (complex128)" in err and "Traceback" not in err, err
    assert not (tmp_path / "r").exists()


def test_wrong_refusal_na_and_null_are_labels_unless_na_values_says_missing(tmp_path, capsys):
    from jnn.app.tabular import read_table

    rows = [f"{i % 7 / 7:.3f},{i % 3 / 3:.3f},{('NA', 'null', 'Na')[i % 3]}" for i in range(30)]
    data = tmp_path / "labels.csv"
    data.write_text("a,b,label\n" + "\n".join(rows) + "\n")
    t = read_table(data)
    assert sorted(set(t.y)) == ["NA", "Na", "null"]
    code, _, err = _cli(["train", "--data", data, "--hidden", "4", "--max-epochs", "1", "--batch-size", "8",
                         "--out", tmp_path / "r"], capsys)  # fmt: skip
    assert code == 0, err
    assert jnn.load_run(tmp_path / "r").classes == ["NA", "Na", "null"]
    with pytest.raises(ValueError, match=r"row 2, target column 'label' is missing \('NA'\).*--na-values"):
        read_table(data, na_values=["NA"])
    code, _, err = _cli(["train", "--data", data, "--na-values", "NA,?", "--out", tmp_path / "r2"], capsys)
    assert code == 2 and "is missing ('NA')" in err, err
    with pytest.raises(ValueError, match=r"row 2, target column 'label' is missing \(''\)"):
        (tmp_path / "empty.csv").write_text("a,b,label\n0.1,0.2,\n0.3,0.4,x\n")
        read_table(tmp_path / "empty.csv")


def test_blow_up_a_csv_is_read_in_memory_near_its_arrays_size(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "big.csv"
    rng = np.random.default_rng(0)
    block = "\n".join(",".join(f"{v:.5f}" for v in r) + f",c{int(r[0] * 9) % 5}" for r in rng.random((20_000, 10)))
    with open(data, "w") as fh:
        fh.write(",".join(f"f{i}" for i in range(10)) + ",label\n")
        for _ in range(10):  # 200,000 rows
            fh.write(block + "\n")
    size = data.stat().st_size
    script = (
        "import resource, sys\n"
        "from jnn.app.tabular import read_table\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        f"t = read_table({str(data)!r})\n"
        "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024\n"
        "print(t.x.shape[0], grown)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split()
    rows, grown = int(out[0]), int(out[1])
    assert rows == 200_000
    assert grown <= 3 * size, f"reading a {size / 1e6:.1f} MB CSV grew the peak memory by {grown / 1e6:.1f} MB"
