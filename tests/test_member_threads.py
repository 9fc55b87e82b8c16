"""The slices a sweep's members are cut into for threads, and the moves of member rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnn.train.member_threads import ThreadedCaller, default_workers, slices
from jnn.train.members import join, put, take
from jnn.train.state import Status


@pytest.mark.parametrize("m, w", [(9, 2), (8, 2), (9, 4), (3, 2), (2, 8), (17, 3), (5, 1)])
def test_slices_cover_every_member_once_in_order_with_at_least_two_each(m, w):
    parts = slices(m, w)
    assert np.array_equal(np.concatenate(parts), np.arange(m))
    assert len(parts) == max(1, min(w, m // 2))
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert len(parts) == 1 or min(sizes) >= 2


def test_default_workers_is_the_cores_this_process_may_use_on_a_cpu():
    assert jax.default_backend() == "cpu"
    assert 1 <= default_workers() <= (len(__import__("os").sched_getaffinity(0)))


def test_take_put_and_join_move_rows_of_every_leaf():
    tree = {"a": jnp.arange(12.0).reshape(6, 2), "b": jnp.arange(6), "none": None}
    at = jnp.asarray([4, 1])
    sub = take(tree, at)
    assert np.array_equal(sub["a"], [[8, 9], [2, 3]]) and np.array_equal(sub["b"], [4, 1]) and sub["none"] is None
    back = put(tree, at, jax.tree.map(lambda x: x * 0, sub))
    assert np.array_equal(back["b"], [0, 0, 2, 3, 0, 5])
    joined = join([tree, sub], (2, 1))
    assert np.array_equal(joined["b"], [0, 1, 4])


class _Inner:
    """A stand-in for the compiled call: each member's epoch counter grows by n while it runs; the summary rows
    carry the member's own id, so a mixed-up slice shows."""

    replays = 0

    def __init__(self):
        self.sizes = []

    def __call__(self, state, data, n):
        self.sizes.append(int(state.epoch.shape[0]))
        running = state.status == Status.RUNNING
        new = state._replace(epoch=state.epoch + jnp.where(running, jnp.int32(n), jnp.int32(0)))
        rows = np.repeat(np.asarray(data)[:, None, None], 3, axis=1).astype(float)
        return new, rows, np.zeros(len(rows), bool)

    def next_n(self, seconds, epochs_run):
        return 1


def test_a_threaded_call_runs_each_slice_once_and_keeps_member_order():
    from typing import NamedTuple

    class S(NamedTuple):
        epoch: jax.Array
        status: jax.Array

    m = 9
    state = S(jnp.zeros(m, jnp.int32), jnp.zeros(m, jnp.int32).at[3].set(Status.MAX_EPOCHS))
    data = jnp.arange(m) * 10
    inner = _Inner()
    caller = ThreadedCaller(inner, workers=2)
    new, rows, suspect = caller(state, data, 2)
    caller.close()
    assert sorted(inner.sizes) == [5, 5]  # 5 + 4 members, the second slice padded to one program size
    assert np.array_equal(new.epoch, [2, 2, 2, 0, 2, 2, 2, 2, 2])  # member 3 had stopped: untouched
    assert np.array_equal(rows[:, 0, 0], np.arange(m) * 10) and rows.shape == (m, 3, 1)
    assert suspect.shape == (m,)
