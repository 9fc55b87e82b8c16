"""An exclusive lock on a run (or sweep) folder, held for the life of the run.

``fcntl.flock`` on ``FOLDER/.jnn.lock``: a second run into the same folder is refused before it touches
anything (``FolderInUse``, naming the holder's process id); the kernel drops the lock when its holder
exits, however it dies (a SIGKILLed run leaves a lock file that is free again at once).
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

LOCK_NAME = ".jnn.lock"

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None


class FolderInUse(ValueError):
    """Another process holds the folder's lock."""


class FolderLock:
    """The lock of one folder; use ``acquire`` (or ``with acquire(folder):``)."""

    def __init__(self, folder: Path, fd: int | None):
        self.folder = folder
        self._fd = fd

    def release(self) -> None:
        """Release the lock (the lock file stays: removing it would race with a process waiting on it)."""
        if self._fd is not None:
            if fcntl is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def acquire(folder) -> FolderLock:
    """Take the exclusive lock of ``folder`` (which must exist) without waiting.

    Raises:
        FolderInUse: another process holds it (the message names that process and the folder).
        ValueError: the lock file is a symbolic link or not a regular file.
    """
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK, 0o644)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR):
            raise ValueError(f"{path} is not a regular file (a link, a FIFO or a folder); remove it") from None
        raise
    if fcntl is None:
        return FolderLock(folder, fd)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as err:
        holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if err.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise FolderInUse(f"{str(folder)!r} is in use by process {holder}; wait for it to finish or pick "
                              "another folder") from None  # fmt: skip
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return FolderLock(folder, fd)


class HoldsLock:
    """Mixin of the folder stores (``jnn.RunFolder``, ``jnn.SweepFolder``): ``self._held`` is the
    ``FolderLock`` taken when the store opens; ``_release`` drops it once (later calls do nothing)."""

    _held = None

    def _release(self) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            held.release()


__all__ = ["LOCK_NAME", "FolderInUse", "FolderLock", "HoldsLock", "acquire"]
