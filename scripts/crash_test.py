"""Crash test: kill -9 a training run at random moments, resume it each time, and check it ends bitwise equal
to an uninterrupted run.

Usage:
    python scripts/crash_test.py [--kills 50] [--seed 0] [--signals] [--contender] [--sweep] [--out runs/crash_test]

``--sweep`` does the same to ``jnn sweep``: 8 members in two shape groups (hidden 64 and 128,128; seeds 0-7; each
group of 4 runs its members in two threads, ``--workers 2``), a checkpoint of each group's stacked state after
every epoch, every life resumed with ``jnn sweep --resume``; the final ``params.npz`` and every member's history
must equal an uninterrupted sweep's, bitwise.

``--signals`` stops each life with a signal drawn among SIGKILL, SIGTERM and SIGINT (SIGTERM and SIGINT must
end the life cleanly at the end of its epoch: exit 143 / 130, run folder written). ``--contender`` starts,
during each life, a second ``jnn train`` into the same folder, which must be refused at once (exit 2, "in use
by process PID") without disturbing the running one.

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

#: Flags a crashed run and a crashed sweep share: dropout on, no early stopping, a checkpoint every epoch.
COMMON = ["--batch-size", "64", "--keep-prob", "0.7", "--learning-rate", "0.05", "--max-epochs", "{epochs}",
          "--no-early-stopping", "--checkpoint-every", "1", "--log-every", "1"]  # fmt: skip
TRAIN = ["train", "--dataset", "spirals", "--hidden", "512,512", *COMMON]
SWEEP = ["sweep", "--dataset", "spirals", "--hiddens", "64;128,128;64;128,128;64;128,128;64;128,128", "--seeds",
         "0,1,2,3,4,5,6,7", "--zip", "--workers", "2", *COMMON]  # fmt: skip
#: The command crashed: TRAIN, or SWEEP with --sweep.
COMMAND = TRAIN


def _cmd(out: Path, epochs: int, resume: bool) -> list[str]:
    args = [a.format(epochs=epochs) for a in COMMAND]
    return [sys.executable, "-m", "jnn.app.cli", *args, "--out", str(out), *(["--resume"] if resume else [])]


def _checkpoints(folder: Path) -> list[Path]:
    """The checkpoints a kill may have hit: the run's checkpoint.npz, or a sweep's group files."""
    if COMMAND is SWEEP:
        return sorted((folder / "checkpoints").glob("group-*.npz"))
    return [p for p in [folder / "checkpoint.npz"] if p.exists()]


def _final(folder: Path) -> tuple[dict, object]:
    """``(arrays, history)`` of a finished run or sweep, to compare bitwise."""
    if COMMAND is SWEEP:
        record = json.loads((folder / "sweep.json").read_text())
        return _leaves(folder / "params.npz"), (record["histories"], record["rows"])
    return _leaves(folder / "checkpoint.npz"), (folder / "history.json").read_text()


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


def _kill_once(out: Path, epochs: int, delay: float, timeout: float, sig=signal.SIGKILL, contend: bool = False):
    """Start a life, wait for its first epoch line, (start a contender into the same folder,) sleep ``delay``,
    send ``sig`` to it. Returns ``(stopped, exit code, contender refused or None)``."""
    proc = subprocess.Popen(
        _cmd(out, epochs, resume=True),
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    refused = None
    try:
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            if line.startswith("epoch") or time.monotonic() > deadline:
                break
        if contend:
            other = subprocess.run(_cmd(out, epochs, resume=True), env=_env(), capture_output=True, text=True,
                                   timeout=timeout)  # fmt: skip
            refused = other.returncode == 2 and f"in use by process {proc.pid}" in other.stderr
        time.sleep(delay)
        stopped = proc.poll() is None
        if stopped:
            os.killpg(proc.pid, sig)
        code = proc.wait(timeout=timeout)
        return stopped, code, refused
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        proc.stdout.close()


def _leaves(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files if k != "header"}


def _temps(folder: Path) -> list:
    return [p for prefix in (".jnn-tmp-", ".jnn-ckpt-") for p in folder.rglob(f"{prefix}*")]


def run(kills: int, seed: int, out: Path, epochs: int, window: float, timeout: float, signals: bool = False,
        contender: bool = False) -> dict:  # fmt: skip
    from jnn.app.checkpoint import verify

    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    t0 = time.perf_counter()
    if _run_to_end(out / "reference", epochs, resume=False, timeout=timeout) != 0:
        raise RuntimeError("the reference run failed")
    rng = random.Random(seed)
    crash = out / "crashed"
    tried = survived = verified = during_save = clean = refused = 0
    sent = {"SIGKILL": 0, "SIGTERM": 0, "SIGINT": 0}
    for i in range(kills):
        delay = rng.uniform(0.0, window)
        sig = rng.choice([signal.SIGKILL, signal.SIGTERM, signal.SIGINT]) if signals else signal.SIGKILL
        killed, code, got_refused = _kill_once(crash, epochs, delay, timeout, sig, contender)
        sent[sig.name] += 1
        refused += bool(got_refused)
        graceful = sig == signal.SIGKILL or code == 128 + sig
        clean += graceful
        if not killed:
            raise RuntimeError(
                f"life {i + 1} finished before its kill: raise --epochs (now {epochs}) so that the run "
                f"outlasts {kills} kills"
            )
        tried += 1
        during_save += bool(_temps(crash))  # a temp file left: the kill hit a save
        ok = True
        for ckpt in _checkpoints(crash):
            try:
                verify(ckpt)
                verified += 1
            except ValueError as err:
                ok = False
                print(f"kill {i + 1}: checkpoint {ckpt.name} corrupt after kill: {err}", file=sys.stderr)
        survived += ok and graceful and (got_refused is not False)
        print(
            f"kill {i + 1}/{kills}: {sig.name} {delay:.2f} s after the first epoch line; exit {code}; checkpoint "
            f"{'complete' if ok else 'CORRUPT'}" + ("" if got_refused is None else
                                                    f"; contender {'refused' if got_refused else 'NOT REFUSED'}"),
            flush=True,
        )  # fmt: skip
    code = _run_to_end(crash, epochs, resume=True, timeout=timeout)
    (ref, ref_history), (got, got_history) = _final(out / "reference"), _final(crash)
    same_state = code == 0 and ref.keys() == got.keys() and all(ref[k].tobytes() == got[k].tobytes() for k in ref)
    same_history = ref_history == got_history
    leftovers = [p.name for p in _temps(crash)]
    res = {
        "kills_tried": tried,
        "kills_survived": survived,
        "checkpoints_verified": verified,
        "kills_during_a_save": during_save,
        "final_state_bitwise_equal": bool(same_state),
        "final_history_equal": bool(same_history),
        "temp_files_left": leftovers,
        "signals_sent": sent,
        "clean_exits_after_sigterm_sigint": clean - sent["SIGKILL"],
        "contenders_refused": refused if contender else None,
        "epochs": epochs,
        "command": COMMAND[0],
        "seed": seed,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "results.json").write_text(json.dumps(res, indent=2))
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="epochs (default per kill: 40, 100 with --contender; 160 and 200 with --sweep; at least 120)",
    )
    p.add_argument("--window", type=float, default=2.0, help="kill within this many seconds of the first epoch line")
    p.add_argument("--timeout", type=float, default=300.0, help="deadline per process life")
    p.add_argument("--signals", action="store_true", help="stop lives with SIGKILL, SIGTERM or SIGINT at random")
    p.add_argument("--contender", action="store_true", help="start a second run into the folder during each life")
    p.add_argument("--sweep", action="store_true", help="crash a jnn sweep (two shape groups) instead of a run")
    p.add_argument("--out", default="runs/crash_test")
    a = p.parse_args(argv)
    global COMMAND
    COMMAND = SWEEP if a.sweep else TRAIN
    per_kill = (200 if a.contender else 160) if a.sweep else (100 if a.contender else 40)  # a sweep's epochs are fast
    a.epochs = a.epochs if a.epochs is not None else max(120, per_kill * a.kills)
    if a.kills < 1 or a.epochs < 2 or a.window <= 0:
        print("crash_test.py: error: --kills >= 1, --epochs >= 2 and --window > 0 are required", file=sys.stderr)
        return 2
    res = run(a.kills, a.seed, Path(a.out), a.epochs, a.window, a.timeout, a.signals, a.contender)
    print(
        f"kills survived / tried: {res['kills_survived']}/{res['kills_tried']}; checkpoints verified after a kill: "
        f"{res['checkpoints_verified']}; kills that hit a save: {res['kills_during_a_save']}; "
        "final state bitwise equal to the uninterrupted run: "
        f"{res['final_state_bitwise_equal']}; history equal: {res['final_history_equal']}; temp files left: "
        f"{len(res['temp_files_left'])}; signals {res['signals_sent']}, clean exits after SIGTERM/SIGINT "
        f"{res['clean_exits_after_sigterm_sigint']}; contenders refused: {res['contenders_refused']}; "
        f"{res['seconds']} s"
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
