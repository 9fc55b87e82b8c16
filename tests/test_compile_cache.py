"""The command line's on-disk compilation cache: filled by the first run, used by the second, same bits."""

import os
import subprocess
import sys

import numpy as np


def _train(out, cache, env_extra, log=None):
    env = {**os.environ, "JNN_CACHE_DIR": str(cache), "JAX_LOG_COMPILES": "1", **env_extra}
    cmd = [sys.executable, "-m", "jnn.app.cli", "train", "--dataset", "xor", "--hidden", "8", "--max-epochs", "3",
           "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    if log is not None:
        log.append(proc.stderr)
    with np.load(out / "model.npz") as z:
        return {k: z[k].tobytes() for k in z.files if k != "header"}


def test_the_compile_cache_is_filled_then_used_and_changes_no_bit(tmp_path):
    cache = tmp_path / "xla"
    off = _train(tmp_path / "off", cache, {"JNN_COMPILE_CACHE": "0"})
    assert not cache.exists() or not any(cache.iterdir())
    cold = _train(tmp_path / "cold", cache, {"JNN_COMPILE_CACHE": "1"})
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "the first run cached nothing"
    log = []
    warm = _train(tmp_path / "warm", cache, {"JNN_COMPILE_CACHE": "1"}, log)
    # Every program the first run stored was loaded by the second, not compiled again. (Which programs cross the
    # 0.1 s threshold to be stored depends on the machine's load, so the second run may store a few more.)
    assert set(entries) <= {p.name for p in cache.iterdir()}
    for name in entries:
        key = name.removesuffix("-cache")
        assert f"Persistent compilation cache hit for '{key.split('-')[0]}' with key '{key}'" in log[0], key
    assert off == cold == warm
