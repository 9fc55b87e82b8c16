"""``jnn launch``: N local processes wired together through ``jax.distributed`` (see ``jnn.parallel``).

``launch`` starts N local processes with the ``JNN_COORDINATOR_ADDRESS`` / ``JNN_NUM_PROCESSES`` /
``JNN_PROCESS_ID`` variables that ``jnn.parallel.initialize`` reads, waits for them under a deadline,
and kills them all (by pid) if one fails or the deadline passes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from jnn import _validate as V
from jnn.parallel import ENV_ADDRESS, ENV_COUNT, ENV_ID

#: Seconds the children of ``launch`` get to finish their epoch after a forwarded SIGINT/SIGTERM.
SIGNAL_GRACE_S = 60.0


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: Most local processes ``launch`` starts.
MAX_PROCESSES = 256


def launch(
    command: list[str], *, processes: int, port: int | None = None, timeout: float = 600.0, env: dict | None = None
) -> int:
    """Run ``command`` as ``processes`` local processes wired together through ``jax.distributed``.

    Each process gets ``JNN_COORDINATOR_ADDRESS=127.0.0.1:PORT``, ``JNN_NUM_PROCESSES`` and its own
    ``JNN_PROCESS_ID``. Returns 0 when all succeed; when one fails, the others are killed (by pid) and its
    exit code is returned; when ``timeout`` seconds pass, all are killed and 124 is returned. SIGINT and
    SIGTERM are forwarded to every child's process group; the children stop at the end of their epoch
    (writing their run folder) and ``128 + signum`` is returned (130, 143); children still running
    ``SIGNAL_GRACE_S`` seconds later are killed.
    """
    V.check_int("processes", processes, low=1, high=MAX_PROCESSES)
    V.check_real("timeout", timeout, low=0.0, low_open=True)
    if not command:
        raise ValueError("launch needs a command to run, e.g. jnn launch --processes 2 -- jnn train")
    if shutil.which(command[0], path=(env or os.environ).get("PATH")) is None:
        raise ValueError(f"launch: command not found or not executable: {command[0]!r}")
    port = port or free_port()
    procs, received = [], []

    def forward(signum, frame):  # Ctrl-C / SIGTERM: every child's process group gets it (no orphans)
        received.append(signum)
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signum)

    main = threading.current_thread() is threading.main_thread()
    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    deadline, grace_until = time.monotonic() + timeout, None
    code = 0
    try:
        for i in range(processes):
            e = {**os.environ, **(env or {}), ENV_ADDRESS: f"127.0.0.1:{port}", ENV_COUNT: str(processes),
                 ENV_ID: str(i)}  # fmt: skip
            try:
                procs.append(subprocess.Popen(command, env=e, start_new_session=True))
            except OSError as err:  # the started ones are killed below
                raise ValueError(f"launch: process {i} of {processes} could not start: {err}") from None
        while True:
            codes = [p.poll() for p in procs]
            if received:  # the children stop at the end of their epoch; wait for them (within the grace time)
                grace_until = grace_until or time.monotonic() + SIGNAL_GRACE_S
                if all(c is not None for c in codes) or time.monotonic() > grace_until:
                    code = 128 + received[0]
                    break
                time.sleep(0.1)
                continue
            failed = [c for c in codes if c not in (None, 0)]
            if failed:  # a child killed by signal s reports -s: the shell's 128 + s
                code = 128 - failed[0] if failed[0] < 0 else failed[0]
                break
            if all(c == 0 for c in codes):
                break
            if time.monotonic() > deadline:
                print(f"jnn launch: deadline of {timeout:g} s passed; killing {len(procs)} processes", file=sys.stderr)
                code = 124
                break
            time.sleep(0.1)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()
    return code
