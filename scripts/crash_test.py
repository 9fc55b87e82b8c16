"""Crash test: kill -9 a training run at random moments, resume it each time, and check it ends bitwise equal
to an uninterrupted run.

Usage:
    python scripts/crash_test.py [--kills 50] [--seed 0] [--out runs/crash_test]

The run is ``jnn train`` on spirals with a 2-512-512-3 MLP (a TrainState of about 3 MB: params, momentum,
best params), dropout on, a checkpoint after every epoch (atomic: temp file, fsync, os.replace, fsync of the
folder). Each life of the process is killed with SIGKILL at a moment drawn from a seeded schedule (uniform
in the first ``--window`` seconds after its first epoch line), often in the middle of a checkpoint write.
After every kill the script checks that

- the checkpoint on disk (if any) is complete: header readable and every leaf's SHA-256 matches
  (``jnn.checkpoint.verify``), i.e. no half-written file is ever in place;
- the next life starts with ``--resume`` (which removes stale temp files and restores the checkpoint).

When all kills are done, a last life runs to the end, and its final checkpoint and history must equal,
bitwise, those of an uninterrupted reference run of the same config and seed.

Prints the counts and writes ``results.json`` into --out; exit 0 when everything held, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

TRAIN = [
    "train",
    "--dataset",
    "spirals",
    "--hidden",
    "512,512",
    "--batch-size",
    "64",
    "--keep-prob",
    "0.7",
    "--learning-rate",
    "0.05",
    "--max-epochs",
    "{epochs}",
    "--no-early-stopping",
    "--checkpoint-every",
    "1",
    "--log-every",
    "1",
]


def _cmd(out: Path, epochs: int, resume: bool) -> list[str]:
    args = [a.format(epochs=epochs) for a in TRAIN]
    return [sys.executable, "-m", "jnn.cli", *args, "--out", str(out), *(["--resume"] if resume else [])]


def _env() -> dict:
    return {**{k: v for k, v in os.environ.items() if not k.startswith("JNN_")}, "CI": "1"}


def _run_to_end(out: Path, epochs: int, resume: bool, timeout: float) -> int:
    proc = subprocess.run(
        _cmd(out, epochs, resume),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        print(proc.stderr[-2000:], file=sys.stderr)
    return proc.returncode


def _kill_once(out: Path, epochs: int, delay: float, timeout: float) -> tuple[bool, int]:
    """Start a life, wait for its first epoch line, sleep ``delay``, SIGKILL it. Returns (killed, epochs seen)."""
    proc = subprocess.Popen(
        _cmd(out, epochs, resume=True),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    seen = 0
    try:
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            if line.startswith("epoch"):
                seen += 1
                break
            if time.monotonic() > deadline:
                break
        time.sleep(delay)
        killed = proc.poll() is None
        if killed:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        return killed, seen
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def _leaves(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "header"}


def run(kills: int, seed: int, out: Path, epochs: int, window: float, timeout: float) -> dict:
    from jnn.checkpoint import verify

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    if _run_to_end(out / "reference", epochs, resume=False, timeout=timeout) != 0:
        raise RuntimeError("the reference run failed")
    rng = random.Random(seed)
    crash = out / "crashed"
    tried = survived = verified = during_save = 0
    for i in range(kills):
        delay = rng.uniform(0.0, window)
        killed, _ = _kill_once(crash, epochs, delay, timeout)
        if not killed:
            raise RuntimeError(
                f"life {i + 1} finished before its kill: raise --epochs (now {epochs}) so that the run "
                f"outlasts {kills} kills"
            )
        tried += 1
        during_save += bool(list(crash.glob(".jnn-ckpt-*")))  # a temp file left: the kill hit a save
        ckpt = crash / "checkpoint.npz"
        ok = True
        if ckpt.exists():
            try:
                verify(ckpt)
                verified += 1
            except ValueError as err:
                ok = False
                print(f"kill {i + 1}: checkpoint corrupt after kill: {err}", file=sys.stderr)
        survived += ok
        print(
            f"kill {i + 1}/{kills}: SIGKILL {delay:.2f} s after the first epoch line; checkpoint "
            f"{'complete' if ok else 'CORRUPT'}",
            flush=True,
        )
    code = _run_to_end(crash, epochs, resume=True, timeout=timeout)
    ref, got = _leaves(out / "reference" / "checkpoint.npz"), _leaves(crash / "checkpoint.npz")
    same_state = code == 0 and ref.keys() == got.keys() and all(ref[k].tobytes() == got[k].tobytes() for k in ref)
    same_history = (out / "reference" / "history.json").read_text() == (crash / "history.json").read_text()
    leftovers = [p.name for p in crash.glob(".jnn-ckpt-*")]
    res = {
        "kills_tried": tried,
        "kills_survived": survived,
        "checkpoints_verified": verified,
        "kills_during_a_save": during_save,
        "final_state_bitwise_equal": bool(same_state),
        "final_history_equal": bool(same_history),
        "temp_files_left": leftovers,
        "epochs": epochs,
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "results.json").write_text(json.dumps(res, indent=2))
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="epochs of the run (default 40 per kill, at least 120)")
    p.add_argument("--window", type=float, default=2.0, help="kill within this many seconds of the first epoch line")
    p.add_argument("--timeout", type=float, default=300.0, help="deadline per process life")
    p.add_argument("--out", default="runs/crash_test")
    a = p.parse_args(argv)
    a.epochs = a.epochs if a.epochs is not None else max(120, 40 * a.kills)
    if a.kills < 1 or a.epochs < 2 or a.window <= 0:
        print("crash_test.py: error: --kills >= 1, --epochs >= 2 and --window > 0 are required", file=sys.stderr)
        return 2
    res = run(a.kills, a.seed, Path(a.out), a.epochs, a.window, a.timeout)
    print(
        f"kills survived / tried: {res['kills_survived']}/{res['kills_tried']}; checkpoints verified after a kill: "
        f"{res['checkpoints_verified']}; kills that hit a save: {res['kills_during_a_save']}; "
        "final state bitwise equal to the uninterrupted run: "
        f"{res['final_state_bitwise_equal']}; history equal: {res['final_history_equal']}; temp files left: "
        f"{len(res['temp_files_left'])}; {res['seconds']} s"
    )
    good = (
        res["kills_survived"] == res["kills_tried"]
        and res["final_state_bitwise_equal"]
        and res["final_history_equal"]
        and not res["temp_files_left"]
    )
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
