import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jnn.train import EarlyStopping


def _run(stopper, curve):
    """Feed a scripted curve epoch by epoch; return (stop epoch or None, best_epoch, states)."""
    s = stopper.init()
    states = []
    for e, v in enumerate(curve):
        s, _ = stopper.update(s, v, e)
        states.append(s)
        if bool(s.stop):
            return e, int(s.best_epoch), states
    return None, int(s.best_epoch), states


def test_improvement_resets_the_counter():
    _, _, states = _run(EarlyStopping(patience=5), [1.0, 0.9, 0.95, 0.97, 0.8, 0.85])
    assert [int(s.bad_epochs) for s in states] == [0, 0, 1, 2, 0, 1]
    assert [int(s.best_epoch) for s in states] == [0, 1, 1, 1, 4, 4]


@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_patience_k_stops_after_exactly_k_bad_epochs(k):
    curve = [1.0, 0.5] + [0.6] * 10
    stop, best, _ = _run(EarlyStopping(patience=k), curve)
    assert best == 1
    assert stop == 1 + max(k, 1)  # patience 0 stops at the first bad epoch, like patience 1


def test_a_change_of_exactly_min_delta_does_not_count():
    # 1.0 → 0.75 is an improvement of 0.25 = min_delta: not counted. 0.75 → 0.5 is 0.5 > 0.25: counted.
    _, _, states = _run(EarlyStopping(patience=10, min_delta=0.25), [1.0, 0.75, 0.5])
    assert [int(s.best_epoch) for s in states] == [0, 0, 2]
    assert [float(s.best) for s in states] == [1.0, 1.0, 0.5]


def test_max_mode_for_accuracy():
    stop, best, _ = _run(EarlyStopping(monitor="val_accuracy", patience=2), [0.5, 0.7, 0.69, 0.7, 0.6])
    assert best == 1 and stop == 3


def test_start_epoch_ignores_early_epochs():
    stop, best, states = _run(EarlyStopping(patience=1, start_epoch=3), [0.1, 0.2, 0.3, 0.9, 0.8, 0.85])
    assert [int(s.bad_epochs) for s in states[:3]] == [0, 0, 0] and int(states[2].best_epoch) == -1
    assert best == 4 and stop == 5


def test_update_is_jittable_and_runs_in_a_scan():
    stopper = EarlyStopping(patience=2)
    curve = jnp.array([3.0, 2.0, 1.0, 1.5, 1.2, 0.9, 2.0])

    def body(s, ev):
        e, v = ev
        s, improved = stopper.update(s, v, e)
        return s, (s.stop, improved)

    s, (stops, improved) = jax.lax.scan(body, stopper.init(), (jnp.arange(7), curve))
    assert np.asarray(stops).tolist() == [False, False, False, False, True, True, True]
    assert np.asarray(improved).tolist()[:4] == [True, True, True, False]
    assert int(s.best_epoch) == 2


@pytest.mark.parametrize(
    "kwargs,exc,match",
    [
        (dict(monitor="loss"), ValueError, "monitor must name a recorded metric, train_<name> or val_<name>"),
        (dict(monitor="val_kappa"), ValueError, r"'val_kappa' is not a metric jnn knows: .*mode must be 'min'"),
        (dict(monitor="val_f1", mode="best"), ValueError, r"mode must be one of \['min', 'max'\]; got 'best'"),
        (dict(patience=-1), ValueError, r"patience must be an integer in \[0, 2147483647\]; got -1"),
        (dict(patience=1.5), TypeError, "patience must be an integer"),
        (dict(min_delta=-0.1), ValueError, r"min_delta must be in \[0, inf\]; got -0.1"),
        (dict(start_epoch=-2), ValueError, "start_epoch must be an integer"),
        (dict(restore_best="yes"), TypeError, "restore_best must be a bool"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        EarlyStopping(**kwargs)


def test_the_direction_is_inferred_from_the_monitor_or_given():
    assert EarlyStopping("val_r2").direction == "max" and EarlyStopping("train_mae").direction == "min"
    assert EarlyStopping("val_f1", mode="max").direction == "max"
    stopper = EarlyStopping("val_f1", patience=1, mode="max")
    s = stopper.init()
    s, improved = stopper.update(s, 0.5, 0)
    s, worse = stopper.update(s, 0.4, 1)
    assert bool(improved) and not bool(worse) and bool(s.stop) and int(s.best_epoch) == 0
