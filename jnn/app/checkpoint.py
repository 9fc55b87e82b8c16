"""Atomic, bitwise checkpoints of a whole TrainState, without pickle.

Format: a NumPy ``.npz`` (zip) file with one array per pytree leaf, named by its path (``layers/0/w`` for the
built-in MLP's params, ``params/0/w``, ``opt_state/...`` in a state; files written before jnn 0.x named them
``leaf_00000``, ... and still load) and a ``header`` entry holding UTF-8 JSON: format version, jnn version, the
run's metadata (config, config hash, data hash), and per leaf its tree path, entry name, dtype, shape, whether it is
a typed PRNG key (stored via ``jax.random.key_data``, with its implementation name) and a SHA-256 of its bytes. So
``np.load("model.npz")["layers/0/w"]`` reads a weight matrix without jnn.

Saving writes a temp file in the same folder, flushes and fsyncs it, ``os.replace``-s it over the
target and fsyncs the folder, so a reader sees the old file or the new one, never half of one.
Restoring checks the file against a template state (same paths, dtypes and shapes), the metadata
against the run's, and every leaf's checksum; anything else is refused with a ``ValueError`` that says
what differs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import stat
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jnn._version import __version__
from jnn.app import atomic
from jnn.disk import RowSource

FORMAT = "jnn-checkpoint-1"
#: Bytes a ``.npy`` entry may hold beyond its data (its own header).
_NPY_HEADER_MAX = 65536
#: Temp-file prefix of jnn versions before ``jnn.app.atomic`` (their leftovers are removed too).
TEMP_PREFIX = ".jnn-ckpt-"


def data_hash(ds) -> str:
    """SHA-256 (first 16 hex digits) of a Dataset's inputs and labels."""
    h = hashlib.sha256()
    for a in (ds.x, ds.y):
        if isinstance(a, RowSource):  # read in chunks: the same bytes, so the same hash as the array in memory
            h.update(str((a.dtype.str, a.shape)).encode())
            for _, values in a.chunks():
                h.update(np.ascontiguousarray(values).tobytes())
            continue
        a = np.ascontiguousarray(a)
        h.update(str((a.dtype.str, a.shape)).encode())
        h.update(a.reshape(-1).view(np.uint8) if a.size else b"")  # the array's own buffer: no copy of its bytes
    return h.hexdigest()[:16]


def _is_key(leaf) -> bool:
    return isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key)


def _leaves(state):
    flat, treedef = jax.tree_util.tree_flatten_with_path(state)
    return [(jax.tree_util.keystr(p), leaf) for p, leaf in flat], treedef


def entry_names(state) -> list[str]:
    """The ``.npz`` entry name of each leaf: its path joined by ``/`` (``layers/0/w`` for the built-in MLP's list
    of ``{"w", "b"}`` layers), or ``leaf_00000``-style names when a path would not make a unique, plain name."""
    flat, _ = jax.tree_util.tree_flatten_with_path(state)
    mlp = isinstance(state, list) and bool(state) and all(isinstance(l, dict) and set(l) == {"w", "b"} for l in state)
    names = []
    for p, _ in flat:
        parts = [str(getattr(k, "idx", getattr(k, "key", getattr(k, "name", k)))) for k in p]
        names.append("/".join((["layers"] if mlp else []) + parts) or "params")
    plain = all(n and all(c.isalnum() or c in "_/.-" for c in n) for n in names)
    reserved = {"header"} | {n for n in names if n.startswith(("leaf_", "extra_"))}
    if not plain or len(set(names)) != len(names) or reserved & set(names):
        return [f"leaf_{i:05d}" for i in range(len(names))]
    return names


def remove_stale_temp_files(folder) -> list[Path]:
    """Delete temp files a killed save left in ``folder`` (only while holding the folder's lock, see
    ``jnn.app.lock``: a live save's temp file looks the same); returns what was removed."""
    return atomic.remove_temp_files(folder, (atomic.TEMP_PREFIX, TEMP_PREFIX))


def save(path, state, *, meta: dict | None = None, extras: dict | None = None) -> Path:
    """Save ``state`` (any pytree of arrays, typed PRNG keys included) atomically to ``path``.

    Args:
        path: target file (``.npz``); its folder must exist.
        state: the pytree, e.g. a ``jnn.train.TrainState``.
        meta: JSON-ready metadata stored in the header (config, hashes).
        extras: ``{name: array}`` of any shapes stored beside the state (checksummed like the leaves, not
            checked against a template): e.g. the run's history, whose length grows. Read with
            ``read_extras``.

    Returns:
        The path written.

    Raises:
        OSError: if writing fails; the previous checkpoint at ``path`` is then left as it was.
    """
    path = Path(path)
    leaves, _ = _leaves(state)
    arrays, entries = {}, []
    host = jax.device_get([jax.random.key_data(l) if _is_key(l) else l for _, l in leaves])
    for (p, leaf), arr, name in zip(leaves, host, entry_names(state)):
        key = _is_key(leaf)
        arr = np.asarray(arr)
        arrays[name] = arr
        entries.append(
            {
                "path": p,
                "name": name,
                "dtype": arr.dtype.str,
                "shape": list(arr.shape),
                "key_impl": str(jax.random.key_impl(leaf)) if key else None,
                "sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest(),
            }
        )
    extra_entries = []
    for i, (name, arr) in enumerate((extras or {}).items()):
        arr = np.asarray(arr)
        arrays[f"extra_{i:05d}"] = arr
        extra_entries.append({"path": name, "dtype": arr.dtype.str, "shape": list(arr.shape),
                              "sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()})  # fmt: skip
    header = {"format": FORMAT, "jnn_version": __version__, "meta": meta or {}, "leaves": entries,
              "extras": extra_entries}  # fmt: skip
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with atomic.writing(path) as fh:
        np.savez(fh, **arrays)
    return path


def read_header(path) -> dict:
    """The JSON header of a checkpoint file (raises ValueError if the file is not a readable checkpoint)."""
    with _open(path) as z:
        return _header(z, path)


def verify(path) -> dict:
    """Check that a checkpoint file is complete: readable header and every leaf's checksum.

    Returns:
        The header.

    Raises:
        ValueError: truncated, corrupt or foreign file (the message says which leaf).
    """
    with _open(path) as z:
        header = _header(z, path)
        for i, e in enumerate(header["leaves"]):
            _read_leaf(z, i, e, path)
        for i, e in enumerate(header.get("extras", [])):
            _read_leaf(z, i, e, path, "extra")
    return header


def read_extras(path) -> dict:
    """The ``extras`` arrays saved with a checkpoint, ``{name: array}``, each checked against its SHA-256
    (empty for a checkpoint saved without them)."""
    with _open(path) as z:
        header = _header(z, path)
        return {e["path"]: _read_leaf(z, i, e, path, "extra") for i, e in enumerate(header.get("extras", []))}


def _read_leaf(z, i: int, entry: dict, path, kind: str = "leaf") -> np.ndarray:
    """Leaf (or extra) ``i`` of an open checkpoint, checked against the header before anything is decompressed
    (the stored array's dtype and shape, the zip directory's size) and against its SHA-256 after."""
    name = entry.get("name") or f"{kind}_{i:05d}"  # files before entry names: leaf_00000, ...
    want = (np.dtype(entry["dtype"]), tuple(entry["shape"]))
    try:
        info = z.zip.getinfo(name + ".npy")
        if info.file_size > want[0].itemsize * math.prod(want[1]) + _NPY_HEADER_MAX:
            raise ValueError(f"it stores {info.file_size} bytes where the header declares {want[0]}{list(want[1])}")
        with z.zip.open(info) as fh:
            major = np.lib.format.read_magic(fh)[0]
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh, max_header_size=_NPY_HEADER_MAX)
        if (dtype, tuple(shape)) != want or fortran:
            raise ValueError(f"it stores {dtype}{list(shape)} where the header declares {want[0]}{list(want[1])}")
        arr = z[name]
    except (KeyError, ValueError, zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(
            f"checkpoint {str(path)!r}: leaf {entry['path']} cannot be read (truncated, corrupt or forged?): {err}"
        ) from None
    if hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest() != entry["sha256"]:
        raise ValueError(f"checkpoint {str(path)!r}: leaf {entry['path']} fails its checksum (the file is corrupt)")
    return arr


@contextlib.contextmanager
def _open(path):
    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint {str(path)!r} does not exist")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO opens at once instead of waiting for a writer
    except OSError as err:
        raise ValueError(f"checkpoint {str(path)!r} cannot be opened: {err.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"checkpoint {str(path)!r} is not a regular file (a folder, a FIFO or a device)")
    with os.fdopen(fd, "rb") as fh:
        try:
            z = np.load(fh, allow_pickle=False)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
            raise ValueError(
                f"checkpoint {str(path)!r} is not a readable jnn checkpoint (truncated or corrupt?): {err}"
            ) from None
        with z:
            yield z


def _header(z, path) -> dict:
    try:
        if z.zip.getinfo("header.npy").file_size > MAX_HEADER_BYTES:
            raise ValueError(f"the header is over {MAX_HEADER_BYTES} bytes")
        header = json.loads(bytes(z["header"]).decode())
    except (KeyError, ValueError, zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"checkpoint {str(path)!r} has no readable header (truncated or corrupt?): {err}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        got = header.get("format") if isinstance(header, dict) else type(header).__name__
        raise ValueError(f"checkpoint {str(path)!r} has format {got!r}; this jnn reads {FORMAT!r}")
    problem = _header_problem(header)
    if problem:
        raise ValueError(f"checkpoint {str(path)!r} has a malformed header: {problem}")
    return header


#: Largest header a checkpoint may have (JSON: config, leaf paths, shapes and checksums).
MAX_HEADER_BYTES = 64 << 20


def _header_problem(header: dict) -> str | None:
    """What is wrong with a header's fields, or None."""
    if not isinstance(header.get("meta", {}), dict):
        return "'meta' must be an object"
    for kind in ("leaves", "extras"):
        entries = header.get(kind, [] if kind == "extras" else None)
        if not isinstance(entries, list):
            return f"{kind!r} must be a list"
        for i, e in enumerate(entries):
            if not isinstance(e, dict):
                return f"{kind}[{i}] must be an object"
            if not isinstance(e.get("path"), str) or not isinstance(e.get("sha256"), str):
                return f"{kind}[{i}] needs a 'path' and a 'sha256' string"
            shape = e.get("shape")
            if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
                return f"{kind}[{i}] ({e['path']}) needs a 'shape' list of sizes >= 0"
            try:
                bad_dtype = e.get("dtype") is None or np.dtype(e["dtype"]).hasobject
            except TypeError:
                bad_dtype = True
            if bad_dtype:
                return f"{kind}[{i}] ({e['path']}) has dtype {e.get('dtype')!r}"
            if not isinstance(e.get("key_impl"), (str, type(None))):
                return f"{kind}[{i}] ({e['path']}) has key_impl {e.get('key_impl')!r}"
            name = e.get("name")
            if name is not None and (not isinstance(name, str) or not name or name == "header"):
                return f"{kind}[{i}] ({e['path']}) has entry name {name!r}"
    return None


def check_meta(stored: dict, expected: dict, *, what: str, allow: tuple = (), defaults: dict | None = None,
               upgrade=None) -> None:  # fmt: skip
    """Refuse a run whose config or data differ from the expected ones, naming the differences.

    Args:
        stored, expected: metadata dicts (``config``, ``data_hash``).
        what: the file named in the message.
        allow: config fields that may differ (e.g. ``("learning_rate",)`` when resuming).
        defaults: values of config fields that a config may lack (a field added after the stored run was
            written; the MLP's fields, which a custom task's run does not record): a missing field counts as
            its default.
        upgrade: ``fn(meta) -> meta`` that brings stored metadata written by an older version into today's form
            before the comparison (e.g. ``jnn.app.run_dir.upgrade_meta``), or None.

    The built-in MLP's description (``meta["mlp"]``, see ``jnn.MLP``) is compared field by field too
    (``mlp.hidden: stored …, now …``); a missing MLP field counts as its default.
    """
    from jnn.mlp import MLP

    diffs = []
    defaults = defaults or {}
    stored = stored if upgrade is None else upgrade(stored)
    sc, ec = {**defaults, **stored.get("config", {})}, {**defaults, **expected.get("config", {})}
    for k in sorted(set(sc) | set(ec)):
        if k not in allow and sc.get(k) != ec.get(k):
            diffs.append(f"{k}: stored {sc.get(k)!r}, now {ec.get(k)!r}")
    sm, em = stored.get("mlp"), expected.get("mlp")
    if (sm is None) != (em is None):
        diffs.append(f"model: stored {'the MLP' if sm is not None else 'a task'}, now "
                     f"{'the MLP' if em is not None else 'a task'}")  # fmt: skip
    elif sm is not None:
        mlp_defaults = MLP().to_dict()
        sm, em = {**mlp_defaults, **sm}, {**mlp_defaults, **em}
        diffs += [f"mlp.{k}: stored {sm.get(k)!r}, now {em.get(k)!r}" for k in sorted(set(sm) | set(em))
                  if sm.get(k) != em.get(k)]  # fmt: skip
    if stored.get("data_hash") != expected.get("data_hash"):
        diffs.append(f"data: stored hash {stored.get('data_hash')}, now {expected.get('data_hash')}")
    if diffs:
        raise ValueError(f"{what} is from another run; differences: " + "; ".join(diffs))


def restore(
    path,
    template,
    *,
    expect: dict | None = None,
    allow_other_version: bool = False,
    allow_changes: tuple = (),
    config_defaults: dict | None = None,
    config_upgrade=None,
):
    """Load a checkpoint into the structure of ``template``, bitwise.

    Args:
        path: the ``.npz`` file.
        template: a pytree with the expected structure, dtypes and shapes (e.g. a fresh TrainState).
        expect: metadata the checkpoint must match (config and data hash), or None.
        allow_other_version: accept a checkpoint written by another jnn version (refused by default, since
            the meaning of the state may change between versions).
        allow_changes: config fields of ``expect`` that may differ from the stored ones.
        config_defaults: the value a config field takes when the stored config lacks it (see ``check_meta``).
        config_upgrade: brings older stored metadata into today's form (``upgrade`` of ``check_meta``).

    Returns:
        A pytree like ``template`` holding the saved values (typed keys rebuilt).

    Raises:
        ValueError: for a missing, truncated, corrupt or foreign file, saying what is wrong.
    """
    if expect is not None and not isinstance(expect, dict):
        raise TypeError(f"expect must be a dict of metadata (config, data_hash) or None; got {type(expect).__name__}")
    if not isinstance(allow_changes, (tuple, list)):
        raise TypeError(f"allow_changes must be a tuple of config field names; got {type(allow_changes).__name__}")
    t_leaves, treedef = _leaves(template)
    with _open(path) as z:
        header = _header(z, path)
        if not allow_other_version and header.get("jnn_version") != __version__:
            raise ValueError(
                f"checkpoint {str(path)!r} was written by jnn {header.get('jnn_version')}; this is jnn "
                f"{__version__}. Pass allow_other_version=True to load it anyway"
            )
        if expect is not None:
            check_meta(header.get("meta", {}), expect, what=f"checkpoint {str(path)!r}", allow=allow_changes,
                       defaults=config_defaults, upgrade=config_upgrade)  # fmt: skip
        entries = header["leaves"]
        stored_paths = [e["path"] for e in entries]
        want_paths = [p for p, _ in t_leaves]
        if stored_paths != want_paths:
            missing = sorted(set(want_paths) - set(stored_paths))[:5]
            extra = sorted(set(stored_paths) - set(want_paths))[:5]
            raise ValueError(
                f"checkpoint {str(path)!r} has another state structure ({len(stored_paths)} leaves, "
                f"expected {len(want_paths)}); missing {missing}, unexpected {extra}"
            )
        out = []
        for i, ((p, t), e) in enumerate(zip(t_leaves, entries)):
            tarr = jax.random.key_data(t) if _is_key(t) else t
            want = (np.dtype(tarr.dtype).str, list(np.shape(tarr)))
            if (e["dtype"], e["shape"]) != want:
                raise ValueError(
                    f"checkpoint {str(path)!r}: leaf {p} is {e['dtype']}{e['shape']}, expected "
                    f"{want[0]}{want[1]} (another architecture or dtype?)"
                )
            arr = _read_leaf(z, i, e, path)
            if e.get("key_impl") is not None:
                out.append(jax.random.wrap_key_data(jnp.asarray(arr), impl=jax.random.key_impl(t)))
            else:
                out.append(jnp.asarray(arr))
    return jax.tree_util.tree_unflatten(treedef, out)


__all__ = ["save", "restore", "read_header", "read_extras", "verify", "check_meta", "data_hash",
           "remove_stale_temp_files"]  # fmt: skip
