"""Fuzzing run folders: every file jnn reads or writes in a run folder is replaced by random bytes, an empty
file, a symbolic link (to a file outside, or dangling), a FIFO, a folder, a truncated or a forged checkpoint;
then the folder is resumed, overwritten, loaded and plotted. Every answer must be a result or a named error
(ValueError/TypeError), within a deadline, and nothing outside the run folder may change."""

import json
import os
import shutil
import signal

import numpy as np
import pytest

import jnn
from jnn import RunFolder
from jnn.app.plots import plot_run
from jnn.datasets import load
from jnn.train import TrainConfig, fit

NET = jnn.MLP(hidden=(4,))
CFG = TrainConfig(max_epochs=2, early_stopping=None, checkpoint_every=1)
TARGETS = ["config.json", "checkpoint.npz", "checkpoints/epoch-000002.npz", "model.npz", "summary.json",
           "history.json", "history.csv", "curves.png"]  # fmt: skip
KINDS = ["random", "empty", "link-out", "link-dangling", "fifo", "folder", "truncated", "forged-header"]


class Deadline(Exception):
    pass


def _alarm(signum, frame):
    raise Deadline


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    train = load("xor", seed=0)[0]
    fit(train, CFG, callbacks=[RunFolder(root / "run")], task=NET)
    return root / "run", train


def _plant(path, kind, outside, rng):
    src = path.read_bytes() if path.is_file() else b""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()
    if kind == "random":
        path.write_bytes(rng.bytes(int(rng.integers(1, 4096))))
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "link-out":
        path.symlink_to(outside)
    elif kind == "link-dangling":
        path.symlink_to(path.parent / "nowhere" / "x")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "truncated":
        path.write_bytes(src[: max(1, len(src) // 2)])
    elif kind == "forged-header":
        header = {"format": "jnn-checkpoint-1", "meta": {}, "leaves": [{"path": "x", "dtype": "<f4", "shape": [2**40],
                                                                         "sha256": "0"}]}  # fmt: skip
        np.savez(path, header=np.frombuffer(json.dumps(header).encode(), np.uint8), leaf_00000=np.zeros(3, "f4"))
        if not path.name.endswith(".npz"):
            os.replace(str(path) + ".npz", path)


def _outcome(fn):
    """'ok', or the named error's type; anything else (another exception, a hang) fails the test."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        fn()
        return "ok"
    except (ValueError, TypeError) as err:
        assert str(err), "an error without a message"
        return type(err).__name__
    except Deadline:
        pytest.fail("hung past the 60 s deadline")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.slow
@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_a_damaged_run_folder_gives_results_or_named_errors_and_writes_nothing_outside(tmp_path, template,
                                                                                           target):  # fmt: skip
    src, train = template
    rng = np.random.default_rng(abs(hash(target)) % 2**32)
    outside = tmp_path / "outside.txt"
    for kind in KINDS:
        outside.write_text("keep")
        run = tmp_path / f"run-{kind}"
        shutil.copytree(src, run, symlinks=True)
        _plant(run / target, kind, outside, rng)
        listing = sorted(p.name for p in tmp_path.iterdir())
        results = {
            "resume": _outcome(lambda r=run: fit(train, CFG, callbacks=[RunFolder(r, resume=True)], task=NET)),
            "load": _outcome(lambda r=run: jnn.load_run(r)),
            "plot": _outcome(lambda r=run: plot_run(r, r / "again.png")),
            "overwrite": _outcome(lambda r=run: fit(train, CFG, callbacks=[RunFolder(r, overwrite=True)], task=NET)),
        }
        assert outside.read_text() == "keep", (kind, results)
        assert sorted(p.name for p in tmp_path.iterdir()) == listing, (kind, results)
        if kind in ("link-out", "link-dangling") and target.count("/") == 0:
            assert results["resume"] == "ValueError" and results["overwrite"] == "ok", (kind, results)
        if kind in ("fifo", "folder") and target in ("config.json", "checkpoint.npz", "model.npz"):
            assert results["resume"] == "ValueError", (kind, results)


@pytest.mark.parametrize("seed", range(40))
def test_fuzz_checkpoint_headers_random_json_is_a_named_error(tmp_path, seed):
    from jnn.app import checkpoint as ckpt

    rng = np.random.default_rng(seed)
    path = tmp_path / "c.npz"
    ckpt.save(path, {"w": np.arange(6.0, dtype=np.float32)}, meta={"config": {}})
    with np.load(path) as z:
        header = json.loads(bytes(z["header"]).decode())
        items = {k: z[k] for k in z.files}

    def junk(depth=0):
        pick = int(rng.integers(0, 7 if depth < 2 else 4))
        makers = [lambda: None, lambda: int(rng.integers(-(2**40), 2**40)), lambda: float(rng.normal()),
                  lambda: "x" * int(rng.integers(0, 5)),
                  lambda: [junk(depth + 1) for _ in range(int(rng.integers(0, 3)))],
                  lambda: {k: junk(depth + 1) for k in ("path", "dtype", "shape", "sha256", "key_impl")},
                  lambda: {"a": junk(depth + 1)}]  # fmt: skip
        return makers[pick]()

    entry = dict(header["leaves"][0])
    field = ["path", "dtype", "shape", "sha256", "key_impl", "meta", "leaves", "extras", "format"][seed % 9]
    if field in entry:
        entry[field] = junk()
        header["leaves"] = [entry]
    else:
        header[field] = junk()
    items["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **items)
    for fn in (ckpt.read_header, ckpt.verify, ckpt.read_extras, lambda p: ckpt.restore(p, {"w": np.zeros(6, "f4")})):
        assert _outcome(lambda f=fn: f(path)) in ("ok", "ValueError", "TypeError")
