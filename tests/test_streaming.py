"""Data on disk: DiskArray reads rows exactly, Dataset checks it in chunks, fit streams it bit for bit."""

import jax
import numpy as np
import pytest

import jnn
from jnn.app.checkpoint import data_hash
from jnn.data import Dataset, split
from jnn.disk import DiskArray, RowSource, RowView
from jnn.sweep import sweep, zipped
from jnn.train import EarlyStopping, TrainConfig, fit, streaming


@pytest.fixture
def npy(tmp_path):
    x = np.random.default_rng(0).standard_normal((500, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy", x


def test_rows_read_from_disk_are_the_arrays_rows_in_any_order(npy):
    path, x = npy
    a = DiskArray(path)
    assert a.shape == (500, 6) and a.dtype == np.float32 and len(a) == 500
    idx = np.random.default_rng(1).permutation(500)[:123]
    assert np.array_equal(a.read(idx), x[idx])
    assert np.array_equal(a.read(np.array([7, 7, 3])), x[[7, 7, 3]])  # repeats (a padded last minibatch)
    view = a[idx][10:40]  # a view of a view
    assert np.array_equal(np.asarray(view), x[idx][10:40]) and view.shape == (30, 6)
    starts = [s for s, _ in a.chunks(rows=128)]
    assert starts == [0, 128, 256, 384] and np.array_equal(np.concatenate([c for _, c in a.chunks(rows=128)]), x)
    assert DiskArray.of(np.load(path, mmap_mode="r")).shape == (500, 6)
    assert isinstance(Dataset(str(path), np.zeros(500, np.int32)).x, DiskArray)  # a path stays on disk too
    assert view.base is a and np.array_equal(view.rows, idx[10:40])  # a view of a view points at the file
    with pytest.raises(TypeError, match="a row source takes a slice or an index array"):
        a[3]


def test_bad_files_and_values_are_named(tmp_path, npy, monkeypatch):
    path, x = npy
    (tmp_path / "t.txt").write_text("not an array")
    with pytest.raises(ValueError, match="is not a .npy file jnn can read"):
        DiskArray(tmp_path / "t.txt")
    np.save(tmp_path / "c.npy", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(
        ValueError, match=r"must hold a 2-D C-order numeric array; it holds float32 of shape \(2, 3, 4\)"
    ):
        DiskArray(tmp_path / "c.npy")
    np.save(tmp_path / "i.npy", np.zeros((4, 3), np.int64))
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        Dataset(DiskArray(tmp_path / "i.npy"), np.zeros(4, np.int32))
    bad = x.copy()
    bad[100, 2], bad[400, 0] = np.nan, np.inf
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"x must be finite; got 2 NaN/Inf value\(s\)"):
        Dataset(DiskArray(tmp_path / "bad.npy"), np.zeros(500, np.int32))
    monkeypatch.setattr("jnn.disk.CHUNK_BYTES", 1024)
    with pytest.raises(TypeError, match="read it in parts"):
        np.asarray(DiskArray(path))


def test_a_split_of_data_on_disk_is_index_arrays_and_hashes_like_memory(npy):
    path, x = npy
    y = (x[:, 0] > 0).astype(np.int32)
    disk, mem = Dataset(DiskArray(path), y), Dataset(x, y)
    parts = split(disk, (0.8, 0.2), key=jax.random.key(0))
    same = split(mem, (0.8, 0.2), key=jax.random.key(0))
    for p, q in zip(parts, same):
        assert isinstance(p.x, RowView) and p.x.base is disk.x  # index arrays into the file, not copies
        assert np.array_equal(np.asarray(p.x), q.x) and np.array_equal(p.y, q.y)
    assert data_hash(disk) == data_hash(mem)


@pytest.mark.parametrize("chunk_bytes", [1 << 25, 40 * 64 * 4 * 5])  # one chunk per epoch; chunks of 5 steps
def test_a_fit_from_disk_is_bit_for_bit_the_fit_in_memory(tmp_path, monkeypatch, chunk_bytes):
    monkeypatch.setattr(streaming, "CHUNK_BYTES", chunk_bytes)
    train, _ = jnn.datasets.load("mnist1d")
    train = train.subset(np.arange(1500))
    np.save(tmp_path / "x.npy", train.x)
    disk = Dataset(DiskArray(tmp_path / "x.npy"), train.y)
    cfg = TrainConfig(max_epochs=5, batch_size=64, early_stopping=EarlyStopping(patience=1))  # 1350 rows: ragged
    net = jnn.MLP(hidden=(32,), keep_prob=0.8)
    runs = [fit(d, cfg, task=net, class_weight={0: 2.0}, callbacks=[jnn.Progress(bar=False)]) for d in (train, disk)]
    keyless = lambda t: jax.tree.map(
        lambda a: jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a, t
    )
    a, b = (jax.tree.leaves(keyless(r.state)) for r in runs)
    assert all(np.array_equal(u, v) for u, v in zip(a, b))
    assert runs[0].history.metrics == runs[1].history.metrics and runs[0].stopped_by == runs[1].stopped_by
    steps = TrainConfig(max_epochs=5, batch_size=64, max_steps=30, early_stopping=None)  # stops in epoch 2
    runs = [fit(d, steps, task=net, callbacks=[jnn.Progress(bar=False)]) for d in (train, disk)]
    assert runs[0].stopped_by == runs[1].stopped_by == "max_steps"
    a, b = (jax.tree.leaves(keyless(r.state)) for r in runs)
    assert all(np.array_equal(u, v) for u, v in zip(a, b)) and runs[0].history.metrics == runs[1].history.metrics


def test_a_sweep_from_disk_is_bit_for_bit_the_sweep_in_memory(tmp_path):
    train, _ = jnn.datasets.load("mnist1d")
    train = train.subset(np.arange(1500))
    np.save(tmp_path / "x.npy", train.x)
    disk = Dataset(DiskArray(tmp_path / "x.npy"), train.y)
    # Members stop at different epochs (patience 1, rates 0.001 to 0.5): 6 running, then re-packed to 2.
    # Calls of 2 epochs: threaded members are re-paired after each call, so both runs re-pair at the same epochs.
    cfg = TrainConfig(max_epochs=30, batch_size=64, early_stopping=EarlyStopping(patience=1), epochs_per_call=2)
    axes = zipped(seed=[0, 1, 2, 3, 4, 5], learning_rate=[0.5, 0.2, 0.05, 0.01, 0.003, 0.001],
                keep_prob=[0.8, 0.9, 0.7, 1.0, 0.8, 0.9])  # fmt: skip
    net = jnn.MLP(hidden=(16,))
    keyless = lambda t: jax.tree.map(
        lambda a: jax.random.key_data(a) if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key) else a, t
    )
    for strategy in ("stacked", "programs"):
        mem, src = (sweep(d, cfg, task=net, strategy=strategy, callbacks=[jnn.Progress(bar=False)], **axes)
                    for d in (train, disk))  # fmt: skip
        assert mem.pack_sizes == src.pack_sizes and src.pack_sizes[-1] < 6  # re-packed
        a, b = (jax.tree.leaves(keyless(r.state)) for r in (mem, src))
        assert all(np.array_equal(u, v) for u, v in zip(a, b))
        assert [h.metrics for h in mem.histories] == [h.metrics for h in src.histories] and mem.rows == src.rows
    assert len(set(r["epochs"] for r in mem.rows)) > 2  # staggered stops


def test_data_on_disk_is_refused_where_it_cannot_stream(npy):
    path, x = npy
    disk = Dataset(DiskArray(path), (x[:, 0] > 0).astype(np.int32))
    from jnn.parallel import data_mesh

    with pytest.raises(ValueError, match="trains on one device"):
        fit(disk, TrainConfig(max_epochs=1, batch_size=10), mesh=data_mesh())


class Shards(RowSource):
    """A user's source: rows spread over several arrays (say, files of a sharded data set), stored doubled and
    halved on read (exact in floating point)."""

    def __init__(self, shards):
        self.shards, self.bounds = shards, np.cumsum([0] + [len(s) for s in shards])
        self.shape, self.dtype = (int(self.bounds[-1]), shards[0].shape[1]), shards[0].dtype

    def fetch(self, rows):
        which = np.searchsorted(self.bounds, rows, side="right") - 1
        return np.stack([self.shards[w][r - self.bounds[w]] for w, r in zip(which, rows)]) * np.float32(0.5)


def test_a_users_row_source_trains_bit_for_bit_like_its_rows_in_memory():
    train, _ = jnn.datasets.load("mnist1d")
    train = train.subset(np.arange(1200))
    shards = Shards([train.x[:500] * 2, train.x[500:900] * 2, train.x[900:] * 2])
    assert np.array_equal(shards.read(np.array([899, 0, 900])), train.x[[899, 0, 900]])
    cfg = TrainConfig(max_epochs=3, batch_size=50, early_stopping=None)
    net = jnn.MLP(hidden=(16,), keep_prob=0.9)
    mem = fit(train, cfg, task=net, callbacks=[jnn.Progress(bar=False)])
    src = fit(Dataset(shards, train.y), cfg, task=net, callbacks=[jnn.Progress(bar=False)])
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(mem.params), jax.tree.leaves(src.params)))
    assert mem.history.metrics == src.history.metrics
