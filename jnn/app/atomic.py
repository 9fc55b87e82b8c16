"""Atomic file writes that never go through a symbolic link.

Every file jnn writes into a run or sweep folder goes through ``writing``: the content goes to a fresh
temp file in the same folder (created with ``O_EXCL | O_NOFOLLOW``, so a link planted at the temp name is
never followed), is flushed and fsynced, and is ``os.replace``-d over the target. Renaming over a symbolic
link replaces the link itself, so whatever the link pointed to is never written; a reader sees the old
file or the new one, never half of one. ``append_text`` appends (the live ``history.csv``) and refuses
to follow a link (then the caller rewrites the whole file through ``writing``).

A destination that exists and is neither a regular file nor a symbolic link (a character device such as
``/dev/null`` or ``/dev/stdout``, a FIFO, a socket, a block device, a folder) is refused before anything is
written (``check_destination``): renaming over it would replace the device node or the pipe with a
regular file. Commands that can print write to standard output when given no ``--out``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

#: Prefix of the temp files; a folder's leftovers from a killed write are removed by ``remove_temp_files``.
TEMP_PREFIX = ".jnn-tmp-"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


@contextlib.contextmanager
def writing(path, mode: str = "wb", **open_kw):
    """Open a fresh temp file beside ``path`` for writing; on a clean exit it replaces ``path`` atomically.

    Args:
        path: the target file; its folder must exist.
        mode: ``"wb"`` or ``"w"`` (text; ``open_kw`` such as ``newline=""`` go to ``open``).

    Yields:
        The open file object.

    Raises:
        OSError: if writing fails; ``path`` is then left as it was and the temp file is removed.
        ValueError: ``path`` exists and is neither a regular file nor a symbolic link (see
            ``check_destination``); nothing is written.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb'; got {mode!r}")
    path = Path(path)
    check_destination(path)
    tmp = path.parent / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, 0o644)
    try:
        with open(fd, mode, **open_kw) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def link_over(source, path) -> bool:
    """Make ``path`` a hard link to ``source`` atomically (a link made under a temp name, renamed over
    ``path``). Returns False, changing nothing, where the file system has no hard links."""
    path = Path(path)
    tmp = path.parent / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{path.name}"
    try:
        os.link(source, tmp)
        os.replace(tmp, path)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()
        return False
    fsync_dir(path.parent)
    return True


def write_text(path, text: str) -> Path:
    """Replace ``path`` atomically with ``text`` (UTF-8)."""
    with writing(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    """Replace ``path`` atomically with ``data``."""
    with writing(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def append_text(path, text: str) -> bool:
    """Append ``text`` to the regular file ``path`` (created if missing) and flush it.

    Returns:
        False, writing nothing, when ``path`` is a symbolic link or not a regular file (the caller then
        rewrites the whole file with ``writing``, which replaces the link).
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as err:
        if err.errno in (errno.ELOOP, errno.EISDIR, errno.ENXIO):
            return False
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO with a reader, a device
        os.close(fd)
        return False
    with open(fd, "a", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
    return True


_KINDS = ((stat.S_ISDIR, "folder"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
          (stat.S_ISFIFO, "FIFO (named pipe)"), (stat.S_ISSOCK, "socket"))  # fmt: skip


def check_destination(path, name: str = "destination", *, links: bool = True) -> None:
    """Refuse a destination that exists and is neither a regular file nor a symbolic link.

    Args:
        path: the file about to be replaced.
        name: how messages call it (``--out``).
        links: False refuses a symbolic link too (files that are appended to, or whose owner is judged by
            reading them: a log, a summary, a plot).

    Raises:
        ValueError: ``path`` is a folder, a character or block device (``/dev/null``), a FIFO or a socket,
            naming the kind: an atomic write renames a temp file over its target and would replace it.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as err:
        raise ValueError(f"{name} {str(path)!r} cannot be examined ({err.strerror})") from None
    if stat.S_ISLNK(mode) and not links:
        raise ValueError(f"{name} {str(path)!r} is a symbolic link; jnn never writes through links: remove it or give "
                         "another path")  # fmt: skip
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        return
    kind = next((k for test, k in _KINDS if test(mode)), "special file")
    raise ValueError(
        f"{name} {str(path)!r} is a {kind}, not a regular file: jnn writes a file by renaming a finished temp file "
        "over it, which would replace the "
        f"{kind}; give the path of a regular file (without --out, predictions go to standard output)"
    )


def _check_text(path, name: str) -> None:
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(f"{name} must be a UTF-8 path; got {str(path)!r}") from None


def check_file_writable(path, name: str = "file") -> None:
    """Refuse an output file that cannot be written, before any work: a folder in its place, a missing or
    unwritable parent folder, a name that is not UTF-8 (probed like ``check_folder_writable``).

    Raises:
        ValueError: naming ``name``, the path and why.
    """
    path = Path(path)
    _check_text(path, name)
    if path.is_dir():
        raise ValueError(f"{name} must be a file; {str(path)!r} is a folder")
    check_destination(path, name)
    parent = path.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {str(path)!r}: its folder {str(parent)!r} does not exist")
    check_folder_writable(parent, name)


def check_folder_writable(folder, name: str = "folder") -> None:
    """Refuse a destination folder that cannot be written, before any work: create (and remove) a probe file
    in it, or in its nearest existing parent when it does not exist yet.

    Raises:
        ValueError: naming ``name``, the folder and why (a file in the way, permissions, a read-only or
            full file system).
    """
    target = Path(folder)
    _check_text(target, name)
    probe_in = target
    while not probe_in.exists() and probe_in.parent != probe_in:
        probe_in = probe_in.parent
    if probe_in.exists() and not probe_in.is_dir():
        what = name if probe_in == target else f"{name}'s parent {str(probe_in)!r}"
        raise ValueError(f"{what} must be a folder; {str(probe_in)!r} is a file")
    try:
        probe = write_bytes(probe_in / f"{TEMP_PREFIX}probe-{os.getpid()}", b"")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"{name} {str(target)!r} cannot be written ({err.strerror} in {str(probe_in)!r}); "
                         "pick a writable folder") from None  # fmt: skip


def fsync_dir(folder) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_temp_files(folder, prefixes: tuple = (TEMP_PREFIX,)) -> list[Path]:
    """Delete the temp files a killed write left in ``folder`` (call it only while holding the folder's
    lock: another process's live write looks the same); returns what was removed."""
    removed = []
    for prefix in prefixes:
        for p in Path(folder).glob(f"{prefix}*"):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


__all__ = ["TEMP_PREFIX", "append_text", "check_destination", "check_file_writable", "check_folder_writable",
           "fsync_dir", "link_over", "remove_temp_files", "write_bytes", "write_text", "writing"]  # fmt: skip
