"""Members in threads: each member's calls handed to free threads, stopped members never run, and each member
bit for bit its own fit whatever the workers or the other members."""

import dataclasses
import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn.data import Dataset
from jnn.sweep import sweep, zipped
from jnn.train import EarlyStopping, TrainConfig
from jnn.train.member_threads import MemberThreads, default_workers
from jnn.train.members import put, row, set_row, set_row_in_place, stack, take
from jnn.train.state import Status


def test_default_workers_is_the_cores_this_process_may_use_on_a_cpu():
    assert jax.default_backend() == "cpu"
    assert 1 <= default_workers() <= (len(__import__("os").sched_getaffinity(0)))


def test_take_put_row_and_stack_move_rows_of_every_leaf():
    tree = {"a": jnp.arange(12.0).reshape(6, 2), "b": jnp.arange(6), "none": None}
    at = jnp.asarray([4, 1])
    sub = take(tree, at)
    assert np.array_equal(sub["a"], [[8, 9], [2, 3]]) and np.array_equal(sub["b"], [4, 1]) and sub["none"] is None
    back = put(tree, at, jax.tree.map(lambda x: x * 0, sub))
    assert np.array_equal(back["b"], [0, 0, 2, 3, 0, 5])
    stacked = stack([{"a": jnp.zeros(2), "b": 1}, {"a": jnp.ones(2), "b": 2}])
    assert stacked["a"].shape == (2, 2) and np.array_equal(stacked["b"], [1, 2])
    one = row(tree, jnp.int32(2))
    assert np.array_equal(one["a"], [4, 5]) and int(one["b"]) == 2
    again = set_row(tree, jnp.int32(5), one)
    assert np.array_equal(again["a"][5], [4, 5]) and np.array_equal(tree["a"][5], [10, 11])  # a copy
    copy = jax.tree.map(jnp.copy, tree)
    moved = set_row_in_place(copy, jnp.int32(0), one)
    assert np.array_equal(moved["b"], [2, 1, 2, 3, 4, 5])


class S(NamedTuple):
    epoch: jax.Array
    status: jax.Array
    ident: jax.Array


class _Inner:
    """A stand-in for one member's compiled call: a running member's epoch grows by n (up to its own ``stop_at``);
    the summary rows carry the epoch and the member's id; each call sleeps a little, so calls of different members
    overlap in time, and it records whether two calls of one member ever ran at once."""

    replays, rows = 0, 16

    def __init__(self, stop_at):
        self.stop_at, self.calls, self.active, self.overlap = np.asarray(stop_at), [], set(), False
        self.threads, self.lock = set(), threading.Lock()

    def __call__(self, state, data, n):
        ident = int(state.ident)
        assert int(data) == 10 * ident  # the member's own row of the data
        with self.lock:
            self.overlap |= ident in self.active
            self.active.add(ident)
            self.calls.append((ident, n))
            self.threads.add(threading.get_ident())
        time.sleep(0.01)
        epoch, status = int(state.epoch), int(state.status)
        rows = np.full((self.rows, 3), np.nan)
        for i in range(n):
            if status != Status.RUNNING:
                break
            epoch += 1
            if epoch >= self.stop_at[ident]:
                status = Status.EARLY_STOPPING
            rows[i] = (epoch, status, ident)
        with self.lock:
            self.active.discard(ident)
        return S(jnp.int32(epoch), jnp.int32(status), state.ident), rows, False

    def next_n(self, seconds, epochs_run, **kwargs):
        return 4


def test_a_call_runs_every_running_member_in_calls_handed_to_free_threads_and_keeps_member_order():
    m = 9
    state = S(jnp.zeros(m, jnp.int32), jnp.zeros(m, jnp.int32).at[3].set(Status.MAX_EPOCHS), jnp.arange(m))
    inner = _Inner([100] * m)
    caller = MemberThreads(inner, m, workers=2)
    new, rows, suspect = caller(state, jnp.arange(m) * 10, 4)
    caller.close()
    # 8 running members on 2 threads share out evenly: one call of 4 epochs each; member 3 had stopped: not run
    assert sorted(inner.calls) == [(i, 4) for i in range(m) if i != 3] and len(inner.threads) == 2
    assert not inner.overlap
    assert np.array_equal(new.epoch, [4, 4, 4, 0, 4, 4, 4, 4, 4])
    assert rows.shape == (m, 4, 3) and np.array_equal(rows[:, 0, 2], np.where(np.arange(m) == 3, np.nan, np.arange(m)),
                                                      equal_nan=True)  # fmt: skip
    assert np.array_equal(rows[0, :, 0], [1, 2, 3, 4]) and np.all(np.isnan(rows[3]))
    assert suspect.shape == (m,) and caller.sizes == [8]


def test_an_odd_count_is_cut_into_calls_that_share_out_evenly_and_stopped_members_are_not_called_again():
    m = 5
    stop_at = [3, 100, 2, 100, 100]  # members 0 and 2 stop within the first call
    state = S(jnp.zeros(m, jnp.int32), jnp.zeros(m, jnp.int32), jnp.arange(m))
    inner = _Inner(stop_at)
    caller = MemberThreads(inner, m, workers=2)
    first, _, _ = caller(state, jnp.arange(m) * 10, 4)
    # 5 members on 2 threads: 2 calls of 2 epochs each; member 2 stops at the end of its first call: not called again
    assert sorted(inner.calls) == [(0, 2), (0, 2), (1, 2), (1, 2), (2, 2), (3, 2), (3, 2), (4, 2), (4, 2)]
    assert np.array_equal(first.epoch, [3, 4, 2, 4, 4]) and not inner.overlap
    inner.calls.clear()
    second, rows, _ = caller(first, jnp.arange(m) * 10, 4)
    caller.close()
    assert np.array_equal(second.epoch, [3, 8, 2, 8, 8])
    assert sorted(i for i, _ in inner.calls) == [1, 1, 3, 3, 4, 4] and caller.sizes == [5, 3]
    assert np.all(np.isnan(rows[[0, 2]]))


# --- the invariance, on real programs ------------------------------------------------------------------------


def _data(n=120, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    return Dataset(x, ((x[:, 0] * x[:, 1] > 0) + (x[:, 2] > 0.5)).astype(np.int32))


def _member(result, i):
    return [np.asarray(leaf[i]) for leaf in jax.tree.leaves(result.params)]


CASES = {
    "relu, dropout, momentum": (jnn.MLP(hidden=(16, 16), keep_prob=0.8, l2=1e-3), dict(optimizer="momentum")),
    "tanh, adam": (
        jnn.MLP(hidden=(12,), activation="tanh", keep_prob=0.9),
        dict(optimizer="adam", learning_rate=0.01),
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(CASES))
def test_each_member_is_bit_for_bit_its_own_fit_whatever_the_workers_or_the_other_members(case):
    task, extra = CASES[case]
    ds = _data()
    cfg = TrainConfig(batch_size=16, max_epochs=6, early_stopping=None, **extra)
    axes = zipped(seed=[0, 1, 2, 3, 4], keep_prob=[0.6, 0.7, 0.8, 0.9, 1.0])
    base = sweep(ds, cfg, task=task, workers=2, **axes)
    perm = [4, 2, 0, 3, 1]
    moved = sweep(ds, cfg, task=task, workers=3, combine="zip", **{k: [v[p] for p in perm] for k, v in axes.items()})
    for j, p in enumerate(perm):
        assert all(np.array_equal(a, b) for a, b in zip(_member(base, p), _member(moved, j))), (p, j)
    assert [h.metrics for h in moved.histories] == [base.histories[p].metrics for p in perm]
    for i in (0, 3):
        c = TrainConfig(batch_size=16, max_epochs=6, early_stopping=None, seed=axes["seed"][i], **extra)
        alone = jnn.fit(ds, c, task=dataclasses.replace(task, keep_prob=axes["keep_prob"][i]))
        assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(_member(base, i), jax.tree.leaves(alone.params)))
        assert alone.history.metrics == base.histories[i].metrics


def test_members_that_stop_early_are_not_run_and_the_others_are_bit_for_bit_the_same():
    ds = _data(160)
    axes = zipped(seed=list(range(7)), learning_rate=[0.3, 0.2, 0.1, 0.05, 0.03, 0.01, 0.003])
    cfg = TrainConfig(batch_size=16, max_epochs=30, early_stopping=EarlyStopping(patience=2), epochs_per_call=3)
    threaded = sweep(ds, cfg, task=jnn.MLP(hidden=(8,), keep_prob=0.8), workers=2, **axes)
    epochs = [r["epochs"] for r in threaded.rows]
    assert min(epochs) < max(epochs) // 2  # staggered stops
    assert threaded.pack_sizes[0] == 7 and list(threaded.pack_sizes) == sorted(threaded.pack_sizes, reverse=True)
    assert threaded.pack_sizes[-1] < 7  # fewer members run as they stop
    for i in (0, 6):  # the first to stop and the last
        c = TrainConfig(batch_size=16, max_epochs=30, early_stopping=EarlyStopping(patience=2), seed=i,
                        learning_rate=axes["learning_rate"][i])  # fmt: skip
        alone = jnn.fit(ds, c, task=jnn.MLP(hidden=(8,), keep_prob=0.8))
        assert len(alone.history) == epochs[i] and alone.history.metrics == threaded.histories[i].metrics
        assert all(
            np.array_equal(a, np.asarray(b)) for a, b in zip(_member(threaded, i), jax.tree.leaves(alone.params))
        )
