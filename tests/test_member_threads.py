"""Members in pairs, pairs in threads: the cut, the calls handed to free threads, and the invariance that makes
re-pairing free: a member's bits do not depend on its partner, its place in the pair, a pad or the workers."""

import threading
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jnn
from jnn.data import Dataset
from jnn.sweep import sweep
from jnn.train import EarlyStopping, TrainConfig
from jnn.train.member_threads import SlicedCaller, default_workers, plan
from jnn.train.members import join, put, stack, take
from jnn.train.state import Status


@pytest.mark.parametrize("m", [1, 2, 3, 8, 9])
def test_plan_pairs_the_members_in_order_and_pads_an_odd_one_out(m):
    parts = plan(range(m))
    assert all(len(p) == 2 for p in parts) and len(parts) == -(-m // 2)
    flat = np.concatenate(parts)
    real = flat[flat >= 0]
    assert np.array_equal(real, np.arange(m))  # every member once, in order
    if m % 2:
        assert flat[-1] == -1 - flat[-2]  # the pad copies its partner
    assert [p.tolist() for p in plan([4, 7, 8])] == [[4, 7], [8, -9]]
    with pytest.raises(ValueError, match="at least one member"):
        plan([])


def test_default_workers_is_the_cores_this_process_may_use_on_a_cpu():
    assert jax.default_backend() == "cpu"
    assert 1 <= default_workers() <= (len(__import__("os").sched_getaffinity(0)))


def test_take_put_join_and_stack_move_rows_of_every_leaf():
    tree = {"a": jnp.arange(12.0).reshape(6, 2), "b": jnp.arange(6), "none": None}
    at = jnp.asarray([4, 1])
    sub = take(tree, at)
    assert np.array_equal(sub["a"], [[8, 9], [2, 3]]) and np.array_equal(sub["b"], [4, 1]) and sub["none"] is None
    back = put(tree, at, jax.tree.map(lambda x: x * 0, sub))
    assert np.array_equal(back["b"], [0, 0, 2, 3, 0, 5])
    joined = join([tree, sub], (2, 1))
    assert np.array_equal(joined["b"], [0, 1, 4])
    stacked = stack([{"a": jnp.zeros(2), "b": 1}, {"a": jnp.ones(2), "b": 2}])
    assert stacked["a"].shape == (2, 2) and np.array_equal(stacked["b"], [1, 2])


class S(NamedTuple):
    epoch: jax.Array
    status: jax.Array
    ident: jax.Array


class _Inner:
    """A stand-in for the compiled call: a running member's epoch grows by n (up to its own ``stop_at``); the
    summary rows carry the epoch and the member's id; each call sleeps a little, so calls of different slices
    overlap in time, and it records whether two calls of one slice ever ran at once."""

    replays, rows = 0, 16

    def __init__(self, stop_at):
        self.stop_at, self.calls, self.active, self.overlap = np.asarray(stop_at), [], set(), False
        self.threads, self.lock = set(), threading.Lock()

    def __call__(self, state, data, n):
        key = tuple(np.asarray(state.ident).tolist())
        with self.lock:
            self.overlap |= key in self.active
            self.active.add(key)
            self.calls.append((key, n))
            self.threads.add(threading.get_ident())
        time.sleep(0.01)
        ident = np.asarray(state.ident)
        epoch, status = np.asarray(state.epoch).copy(), np.asarray(state.status).copy()
        rows = np.full((len(ident), self.rows, 3), np.nan)
        for j in range(len(ident)):
            for i in range(n):
                if status[j] != Status.RUNNING:
                    break
                epoch[j] += 1
                if epoch[j] >= self.stop_at[ident[j]]:
                    status[j] = Status.EARLY_STOPPING
                rows[j, i] = (epoch[j], status[j], ident[j])
        with self.lock:
            self.active.discard(key)
        return S(jnp.asarray(epoch), jnp.asarray(status), state.ident), rows, np.zeros(len(ident), bool)

    def next_n(self, seconds, epochs_run, **kwargs):
        return 4


def test_a_call_runs_every_slice_in_calls_handed_to_free_threads_and_keeps_member_order():
    m = 9
    stop_at = [100] * m
    state = S(jnp.zeros(m, jnp.int32), jnp.zeros(m, jnp.int32).at[3].set(Status.MAX_EPOCHS), jnp.arange(m))
    inner = _Inner(stop_at)
    caller = SlicedCaller(inner, m, workers=2, repack=False)
    new, rows, suspect = caller(state, jnp.arange(m), 4)
    caller.close()
    # 5 slices on 2 threads: each slice's 4 epochs in 2 calls of 2, so that the 10 calls share out evenly
    assert sorted(n for _, n in inner.calls) == [2] * 10 and len(inner.threads) == 2 and not inner.overlap
    assert np.array_equal(new.epoch, [4, 4, 4, 0, 4, 4, 4, 4, 4])  # member 3 had stopped: untouched
    assert rows.shape == (m, 4, 3) and np.array_equal(rows[:, 0, 2], np.where(np.arange(m) == 3, np.nan, np.arange(m)),
                                                      equal_nan=True)  # fmt: skip
    assert np.array_equal(rows[0, :, 0], [1, 2, 3, 4]) and np.all(np.isnan(rows[3]))
    assert suspect.shape == (m,) and caller.sizes == [10]


def test_stopped_members_are_dropped_from_the_pairs_after_the_call():
    m = 6
    stop_at = [3, 100, 2, 100, 1, 100]  # members 0, 2, 4 stop within the first call
    state = S(jnp.zeros(m, jnp.int32), jnp.zeros(m, jnp.int32), jnp.arange(m))
    inner = _Inner(stop_at)
    caller = SlicedCaller(inner, m, workers=2)
    first, _, _ = caller(state, jnp.arange(m), 4)
    assert np.array_equal(first.epoch, [3, 4, 2, 4, 1, 4])
    assert [p.tolist() for p in caller.parts] == [[1, 3], [5, -6]]  # the running three, paired afresh
    inner.calls.clear()
    second, rows, _ = caller(first, jnp.arange(m), 4)
    caller.close()
    assert np.array_equal(second.epoch, [3, 8, 2, 8, 1, 8])
    assert sorted(inner.calls) == [((1, 3), 4), ((5, 5), 4)]  # 2 slices on 2 threads: one call each
    assert np.all(np.isnan(rows[[0, 2, 4]])) and caller.sizes == [6, 4]


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
def test_a_members_bits_do_not_depend_on_its_partner_its_place_a_pad_or_the_workers(case):
    task, extra = CASES[case]
    ds = _data()
    cfg = TrainConfig(batch_size=16, max_epochs=6, early_stopping=None, **extra)
    axes = dict(seed=[0, 1, 2, 3, 4], keep_prob=[0.6, 0.7, 0.8, 0.9, 1.0])
    base = sweep(ds, cfg, task=task, workers=2, repack=False, **axes)
    perm = [4, 2, 0, 3, 1]  # every member in another pair, another place; member 1 now the odd one with a pad
    moved = sweep(ds, cfg, task=task, workers=3, repack=False, **{k: [v[p] for p in perm] for k, v in axes.items()})
    alone = sweep(ds, cfg, task=task, workers=2, repack=False, seed=[2, 3, 4], keep_prob=[0.8, 0.9, 1.0])
    for j, p in enumerate(perm):
        assert all(np.array_equal(a, b) for a, b in zip(_member(base, p), _member(moved, j))), (p, j)
    for j in range(3):  # members 2, 3, 4 paired otherwise (4 with a pad)
        assert all(np.array_equal(a, b) for a, b in zip(_member(base, 2 + j), _member(alone, j)))
    assert [h.metrics for h in moved.histories] == [base.histories[p].metrics for p in perm]


def test_re_pairing_running_members_changes_no_bit_and_stops_computing_stopped_ones():
    ds = _data(160)
    axes = dict(seed=list(range(7)), learning_rate=[0.3, 0.2, 0.1, 0.05, 0.03, 0.01, 0.003])
    cfg = TrainConfig(batch_size=16, max_epochs=30, early_stopping=EarlyStopping(patience=2), epochs_per_call=3)
    plain = sweep(ds, cfg, task=jnn.MLP(hidden=(8,), keep_prob=0.8), workers=2, repack=False, **axes)
    packed = sweep(ds, cfg, task=jnn.MLP(hidden=(8,), keep_prob=0.8), workers=2, **axes)
    epochs = [r["epochs"] for r in plain.rows]
    assert min(epochs) < max(epochs) // 2  # staggered stops
    assert plain.pack_sizes == (8,) and packed.pack_sizes[0] == 8 and packed.pack_sizes[-1] < 8
    assert list(packed.pack_sizes) == sorted(packed.pack_sizes, reverse=True)
    assert [r["epochs"] for r in packed.rows] == epochs and packed.rows == plain.rows
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(packed.params)))
    assert [h.metrics for h in packed.histories] == [h.metrics for h in plain.histories]
