"""Inputs that stay out of memory: row sources read on demand, a ``.npy`` file read by rows among them.

A ``RowSource`` is a 2-D array ``[n, d]`` that gives its rows when asked (``fetch(rows)``), in the manner of
a random-access data source (grain's ``RandomAccessDataSource``): ``jnn.data.Dataset`` accepts one as ``x``,
checks it in chunks, and ``jnn.fit`` streams its minibatches in the keyed order of the run
(``jnn.train.streaming``), bit for bit the run on the same rows in memory. Subclass it for your own storage
(shards, a database, a decoder): implement ``shape``, ``dtype`` and ``fetch``.

``DiskArray`` is the one jnn ships: a ``.npy`` file (or an ``np.memmap`` of one) read with ``os.pread`` into
buffers it returns, never mapped, so the process holds only the rows it asked for (a memory map would keep every
page it touched resident). A view (``src[index_array]``, a ``RowView``) is a list of rows of its source: a
validation split of a 20 GB file is an index array, not a copy.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from jnn.types import ArrayLike, PathLike

#: Bytes of rows read at once when a whole source is walked (finiteness check, hashing), and the most
#: ``np.asarray`` of a source may read.
CHUNK_BYTES = 1 << 26


class RowSource:
    """A 2-D array ``[n, d]`` whose rows are read on demand (subclass it; see the module docstring).

    A subclass sets ``shape`` (``(n, d)``) and ``dtype`` and implements ``fetch``. Everything else is
    given: ``len``, ``read``, views (``src[i:j]``, ``src[index_array]``), ``chunks``, and an
    ``np.asarray`` that refuses to load more than ``CHUNK_BYTES`` at once.
    """

    shape: tuple[int, int]
    dtype: np.dtype

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        """The rows ``rows`` (int64 indices of this source, any order, repeats allowed) as ``[len(rows), d]``."""
        raise NotImplementedError

    def cache_key(self):
        """A hashable name of this source's current content (None: never cached); a source found finite under a
        key is not read again for the check while the key stays the same."""
        return None

    @property
    def ndim(self) -> int:
        return 2

    @property
    def size(self) -> int:
        return int(self.shape[0]) * int(self.shape[1])

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize

    def __len__(self) -> int:
        return int(self.shape[0])

    def _rows(self, idx) -> np.ndarray:
        return np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, np.int64)

    def __getitem__(self, idx) -> RowView:
        if isinstance(idx, (int, np.integer, tuple)):
            raise TypeError("a row source takes a slice or an index array of rows; use .read(rows) for values")
        return RowView(self, self._rows(idx))

    def read(self, idx: ArrayLike) -> np.ndarray:
        """The rows ``idx`` (a slice or indices into this source) as a NumPy array ``[len(idx), d]``."""
        return self.fetch(self._rows(idx).ravel())

    def chunks(self, rows: int | None = None):
        """``(start, values)`` over this source in order, ``rows`` rows at a time (default: about
        ``CHUNK_BYTES`` per chunk)."""
        n = len(self)
        step = rows or max(1, CHUNK_BYTES // max(1, int(self.shape[1]) * np.dtype(self.dtype).itemsize))
        for start in range(0, n, step):
            yield start, self.read(np.arange(start, min(n, start + step)))

    def __array__(self, dtype=None, copy=None):
        if self.nbytes > CHUNK_BYTES:
            raise TypeError(f"{self!r} is {self.nbytes / 1e9:.2f} GB: read it in parts (.read(rows), .chunks()), "
                            "not as one array")  # fmt: skip
        out = self.read(slice(None))
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={tuple(self.shape)}, dtype={np.dtype(self.dtype)})"


class RowView(RowSource):
    """Some rows of a ``RowSource``, in a given order (what ``source[index_array]`` returns).

    Args:
        base: the source (a view of a view points at the first source).
        rows: indices into ``base``.
    """

    def __init__(self, base: RowSource, rows):
        if isinstance(base, RowView):
            base, rows = base.base, base.rows[np.asarray(rows, np.int64)]
        self.base, self.rows = base, np.asarray(rows, np.int64)
        if self.rows.size and (self.rows.min() < 0 or self.rows.max() >= len(base)):
            raise ValueError(f"rows must be in [0, {len(base) - 1}] for {base!r}")
        self.shape, self.dtype = (len(self.rows), int(base.shape[1])), np.dtype(base.dtype)

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        return self.base.fetch(self.rows[rows])

    def cache_key(self):
        return None  # checked through its base (see check_finite)

    def __repr__(self) -> str:
        return f"{len(self)} rows of {self.base!r}"


def npy_header(fh) -> tuple:
    """``(shape, fortran_order, dtype)`` from the ``.npy`` header at ``fh``'s position (left just after it),
    without reading the data; ValueError for another format or version (jnn reads 1.0 and 2.0)."""
    version = np.lib.format.read_magic(fh)
    header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version not in header:
        raise ValueError(f"format version {version} (jnn reads 1.0 and 2.0)")
    return header[version](fh)


class DiskArray(RowSource):
    """A 2-D ``.npy`` file read by rows with ``os.pread`` (see the module docstring).

    Args:
        path: the ``.npy`` file (C order, a numeric dtype, 2-D).

    Attributes:
        path: the file. shape: ``(n, d)``. dtype: the rows' dtype, in this machine's byte order (a big-endian
        ``>f4`` file reads as float32). file_dtype: the dtype as stored. offset: bytes before the data.

    Raises:
        ValueError: the file is not a 2-D C-order ``.npy`` array (naming the file and what it holds).
    """

    def __init__(self, path: PathLike):
        path = Path(path)
        with open(path, "rb") as fh:
            try:
                shape, fortran, dtype = npy_header(fh)
            except ValueError as err:
                raise ValueError(f"{str(path)!r} is not a .npy file jnn can read ({err})") from None
            offset = fh.tell()
        if len(shape) != 2 or fortran or dtype.hasobject:
            raise ValueError(f"{str(path)!r} must hold a 2-D C-order numeric array; it holds {dtype} of shape "
                             f"{shape}{' in Fortran order' if fortran else ''}")  # fmt: skip
        if any(not isinstance(s, int) or s < 1 for s in shape):
            raise ValueError(f"{str(path)!r} declares the shape {shape} in its header; a data file needs at least one "
                             "row and one column")  # fmt: skip
        need = offset + shape[0] * shape[1] * dtype.itemsize
        size = os.path.getsize(path)
        if size < need:
            raise ValueError(f"{str(path)!r} is truncated: its header declares {shape[0]:,} × {shape[1]:,} {dtype} "
                             f"({need:,} bytes with the header) but the file holds {size:,} bytes")  # fmt: skip
        self.path, self.offset, self.shape = path, offset, (int(shape[0]), int(shape[1]))
        self.file_dtype, self.dtype = dtype, dtype.newbyteorder("=")

    @classmethod
    def of(cls, x) -> RowSource:
        """``x`` as a row source: a RowSource as it is, an ``np.memmap`` of a whole ``.npy`` or a path to one as a
        DiskArray."""
        if isinstance(x, RowSource):
            return x
        if isinstance(x, np.memmap):
            if x.filename is None or x.offset is None:
                raise ValueError("x is an np.memmap without a file")
            arr = cls(x.filename)
            if arr.offset != x.offset or arr.shape != x.shape or arr.file_dtype != x.dtype:
                raise ValueError(f"x must map a whole .npy file (np.load(path, mmap_mode='r')); {x.filename!r} "
                                 f"maps shape {x.shape} at offset {x.offset}")  # fmt: skip
            return arr
        return cls(x)

    def cache_key(self):
        st = os.stat(self.path)
        return (str(self.path), st.st_size, st.st_mtime_ns)

    def __repr__(self) -> str:
        return f"DiskArray({str(self.path)!r}, shape={self.shape}, dtype={self.dtype})"

    def fetch(self, rows: np.ndarray) -> np.ndarray:
        """Consecutive file rows are read with one ``pread`` each: sorted indices read in long runs."""
        rows = np.asarray(rows, np.int64).ravel()
        d, item = self.shape[1], self.dtype.itemsize
        out = np.empty((len(rows), d), self.dtype)
        if not len(rows):
            return out
        if rows.min() < 0 or rows.max() >= self.shape[0]:
            raise IndexError(f"rows must be in [0, {self.shape[0] - 1}] for {self!r}")
        order = np.argsort(rows, kind="stable")
        srt = rows[order]
        breaks = np.flatnonzero(np.diff(srt) != 1) + 1
        starts, ends = np.concatenate([[0], breaks]), np.concatenate([breaks, [len(srt)]])
        row_bytes = d * item
        buf = np.empty((len(rows), d), self.file_dtype)  # the rows in file order, then put in the asked order
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
        out[order] = buf  # (and in this machine's byte order)
        return out


_CHECKED: dict = {}  # cache_key -> True once a whole source was found finite


def check_finite(x: RowSource, name: str = "x") -> None:
    """Raise a ValueError naming ``name`` when ``x`` holds NaN or Inf, read in chunks (a whole source found finite
    is remembered under its ``RowSource.cache_key``, so its views and splits are not read again)."""
    base = x.base if isinstance(x, RowView) else x
    key = base.cache_key()
    if key is not None and _CHECKED.get(key):
        return
    bad = 0
    for _, values in x.chunks():
        bad += int(values.size - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise ValueError(f"{name} must be finite; got {bad} NaN/Inf value(s) in {x!r}")
    if key is not None and x is base:
        _CHECKED[key] = True


def in_memory(x):
    """``x`` as an array: a row source read whole (for data kept in memory, such as a validation set), anything
    else as it is."""
    return x.read(slice(None)) if isinstance(x, RowSource) else x


def open_npy(path) -> DiskArray:
    """A ``DiskArray`` of the ``.npy`` file at ``path`` (read by rows when trained on)."""
    return DiskArray(path)


__all__ = ["CHUNK_BYTES", "DiskArray", "RowSource", "RowView", "check_finite", "in_memory", "npy_header", "open_npy"]
