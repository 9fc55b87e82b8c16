"""The command line's on-disk compilation cache: filled by the first run, used by the second, same bits."""

import os
import subprocess
import sys

import numpy as np


def _train(out, cache, env_extra):
    env = {**os.environ, "JNN_CACHE_DIR": str(cache), **env_extra}
    cmd = [sys.executable, "-m", "jnn.cli", "train", "--dataset", "xor", "--hidden", "8", "--max-epochs", "3",
           "--out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    with np.load(out / "model.npz") as z:
        return {k: z[k].tobytes() for k in z.files if k != "header"}


def test_the_compile_cache_is_filled_then_used_and_changes_no_bit(tmp_path):
    cache = tmp_path / "xla"
    off = _train(tmp_path / "off", cache, {"JNN_COMPILE_CACHE": "0"})
    assert not cache.exists() or not any(cache.iterdir())
    cold = _train(tmp_path / "cold", cache, {"JNN_COMPILE_CACHE": "1"})
    entries = sorted(p.name for p in cache.iterdir())
    assert entries, "the first run cached nothing"
    warm = _train(tmp_path / "warm", cache, {"JNN_COMPILE_CACHE": "1"})
    assert sorted(p.name for p in cache.iterdir()) == entries  # the second run compiled nothing new
    assert off == cold == warm
