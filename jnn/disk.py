"""Inputs that stay on disk: a 2-D ``.npy`` array read by rows, never loaded whole and never memory-mapped.

:class:`DiskArray` opens a ``.npy`` file (or an ``np.memmap`` of one) and reads rows with ``os.pread`` into
buffers it returns, so the process holds only the rows it asked for (a memory map would keep every page it
touched resident in the process). A view (``arr[index_array]``) is a list of rows of the same file: a validation
split of a 20 GB file is an index array, not a copy. :class:`jnn.data.Dataset` accepts one as ``x``, checks it in
chunks, and :func:`jnn.fit` streams its minibatches (:mod:`jnn.train.streaming`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

#: Rows read at once when a whole array is walked (finiteness check, hashing).
CHUNK_BYTES = 1 << 26


class DiskArray:
    """A 2-D array ``[n, d]`` in a ``.npy`` file, optionally restricted to some of its rows.

    Args:
        path: the ``.npy`` file (C order, a float or integer dtype, 2-D).
        rows: the file rows this array holds, in order (None: all of them).

    Attributes:
        path: the file. shape: ``(rows, d)``. dtype: the file's dtype. offset: bytes before the data.

    Indexing: ``a[i:j]`` and ``a[int_array]`` give a view (another DiskArray); :meth:`read` and ``np.asarray(a[..])``
    of a small view give NumPy rows. ``np.asarray`` of a view above :data:`CHUNK_BYTES` raises, so that no code
    path loads a large file by accident.

    Raises:
        ValueError: the file is not a 2-D C-order ``.npy`` array (naming the file and what it holds).
    """

    def __init__(self, path, rows=None):
        path = Path(path)
        with open(path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
                if version not in header:
                    raise ValueError(f"format version {version} (jnn reads 1.0 and 2.0)")
                shape, fortran, dtype = header[version](fh)
            except ValueError as err:
                raise ValueError(f"{str(path)!r} is not a .npy file jnn can read ({err})") from None
            offset = fh.tell()
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"{str(path)!r} must hold a 2-D C-order numeric array; it holds {dtype} of shape "
                             f"{shape}{' in Fortran order' if fortran else ''}")  # fmt: skip
        self.path, self.offset, self.dtype, self._file_shape = path, offset, dtype, tuple(shape)
        self.rows = None if rows is None else np.asarray(rows, np.int64)
        if self.rows is not None and self.rows.size and (self.rows.min() < 0 or self.rows.max() >= shape[0]):
            raise ValueError(f"rows must be in [0, {shape[0] - 1}] for {str(path)!r}")

    @classmethod
    def of(cls, x) -> DiskArray:
        """``x`` as a DiskArray: a DiskArray, a path to a ``.npy`` file, or an ``np.memmap`` of a whole ``.npy``."""
        if isinstance(x, DiskArray):
            return x
        if isinstance(x, np.memmap):
            if x.filename is None or x.offset is None:
                raise ValueError("x is an np.memmap without a file")
            arr = cls(x.filename)
            if arr.offset != x.offset or arr._file_shape != x.shape or arr.dtype != x.dtype:
                raise ValueError(f"x must map a whole .npy file (np.load(path, mmap_mode='r')); {x.filename!r} "
                                 f"maps shape {x.shape} at offset {x.offset}")  # fmt: skip
            return arr
        return cls(x)

    @property
    def shape(self) -> tuple[int, int]:
        n = self._file_shape[0] if self.rows is None else len(self.rows)
        return (n, self._file_shape[1])

    @property
    def ndim(self) -> int:
        return 2

    @property
    def size(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DiskArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def _file_rows(self, idx) -> np.ndarray:
        idx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, np.int64)
        return idx if self.rows is None else self.rows[idx]

    def __getitem__(self, idx) -> DiskArray:
        if isinstance(idx, (int, np.integer)) or (isinstance(idx, tuple)):
            raise TypeError("a DiskArray takes a slice or an index array of rows; use .read(rows) for values")
        return DiskArray._view(self, self._file_rows(idx))

    @classmethod
    def _view(cls, base: DiskArray, rows) -> DiskArray:
        out = cls.__new__(cls)
        out.path, out.offset, out.dtype, out._file_shape = base.path, base.offset, base.dtype, base._file_shape
        out.rows = np.asarray(rows, np.int64)
        return out

    def __array__(self, dtype=None, copy=None):
        if self.nbytes > CHUNK_BYTES:
            raise TypeError(f"{self!r} is {self.nbytes / 1e9:.2f} GB: read it in parts (.read(rows), .chunks()), "
                            "not as one array")  # fmt: skip
        out = self.read(np.arange(len(self)))
        return out if dtype is None else out.astype(dtype)

    def read(self, idx, out: np.ndarray | None = None) -> np.ndarray:
        """The rows ``idx`` (indices into this array) as a NumPy array ``[len(idx), d]`` (into ``out`` if given).

        Consecutive file rows are read with one ``pread`` each: a sorted index array reads in long runs.
        """
        rows = self._file_rows(idx).ravel()
        d, item = self._file_shape[1], self.dtype.itemsize
        out = np.empty((len(rows), d), self.dtype) if out is None else out
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        breaks = np.flatnonzero(np.diff(srt) != 1) + 1
        starts, ends = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(srt)]])
        row_bytes = d * item
        buf = np.empty((len(rows), d), self.dtype)  # the rows in file order, then put in the asked order
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for s, e in zip(starts, ends):
                want = (e - s) * row_bytes
                view = memoryview(buf[s:e]).cast("B")
                got, pos = 0, self.offset + int(srt[s]) * row_bytes
                while got < want:
                    n = os.preadv(fd, [view[got:]], pos + got)
                    if n <= 0:
                        raise OSError(f"{str(self.path)!r} ended before row {int(srt[s])} + {got // row_bytes}")
                    got += n
        finally:
            os.close(fd)
        out[order] = buf
        return out

    def chunks(self, rows: int | None = None):
        """``(start, values)`` over this array in order, ``rows`` rows at a time (default: about
        :data:`CHUNK_BYTES` per chunk)."""
        n = len(self)
        step = rows or max(1, CHUNK_BYTES // max(1, self._file_shape[1] * self.dtype.itemsize))
        for start in range(0, n, step):
            yield start, self.read(np.arange(start, min(n, start + step)))


_CHECKED: dict = {}  # (path, size, mtime) -> True once a whole file was found finite


def check_finite(x: DiskArray, name: str = "x") -> None:
    """Raise a ValueError naming ``name`` when ``x`` holds NaN or Inf, read in chunks (a whole file found finite
    is remembered while it stays unchanged, so its views and splits are not read again)."""
    st = os.stat(x.path)
    key = (str(x.path), st.st_size, st.st_mtime_ns)
    if _CHECKED.get(key):
        return
    whole = x.rows is None
    bad = 0
    for _, values in x.chunks():
        bad += int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise ValueError(f"{name} must be finite; got {bad} NaN/Inf value(s) in {x!r}")
    if whole:
        _CHECKED[key] = True


def open_npy(path) -> DiskArray:
    """A :class:`DiskArray` of the ``.npy`` file at ``path`` (read by rows when trained on)."""
    return DiskArray(path)


__all__ = ["CHUNK_BYTES", "DiskArray", "check_finite", "open_npy"]
