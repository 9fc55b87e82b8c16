"""Sweeps over every local device: 8 simulated CPU devices in a subprocess (``--xla_force_host_platform_device_count``).

``"programs"``: 16 members over 8 devices, each member recorded on its device and bit for bit its own fit there; a
sweep folder killed mid-sweep resumes to the same bits. ``"stacked"``: the member axis sharded over the devices
(2 members each), each member equal to its fit to rounding; a resume over another number of devices is refused.
"""

import json
import sys
import textwrap

import pytest
from test_parallel import _run

_SCRIPT = textwrap.dedent("""
    import dataclasses, json, sys
    from pathlib import Path
    import jax, numpy as np
    import jnn
    from jnn.sweep import sweep

    out = Path(sys.argv[1])
    train, _ = jnn.datasets.load("spirals", seed=0)
    cfg = jnn.TrainConfig(max_epochs=20, batch_size=64, checkpoint_every=2,
                          early_stopping=jnn.EarlyStopping(patience=2))
    net = jnn.MLP(hidden=(16,), keep_prob=0.8)
    axes = dict(learning_rate=[1.0, 0.3, 0.05, 0.01], seed=[0, 1, 2, 3])  # a grid: 16 members
    same = lambda a, b: all(np.array_equal(np.asarray(x), np.asarray(y))
                            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))

    class Boom(jnn.Callback):
        def on_epoch_end(self, epoch, logs):
            if logs["member"] == 5 and epoch == 4:
                raise RuntimeError("boom")

    report = {"devices": len(jax.devices())}
    whole = sweep(train, cfg, task=net, strategy="programs", callbacks=[jnn.SweepFolder(out / "a")], **axes)
    report["programs_devices"] = list(whole.devices)
    report["programs_json"] = json.loads((out / "a" / "sweep.json").read_text())["devices"]
    fits = []
    for k, c in enumerate(whole.members):
        device = jax.devices()[k % 8]
        with jax.default_device(device):
            r = jnn.fit(train, c, task=net)
        fits.append(r)
        report.setdefault("bitwise", []).append(same(r.params, whole.member_params(k))
                                                and r.history.metrics == whole.histories[k].metrics)
    report["epochs"] = [r["epochs"] for r in whole.rows]
    try:
        sweep(train, cfg, task=net, callbacks=[jnn.SweepFolder(out / "b"), Boom()], **axes)
    except RuntimeError as err:
        report["crashed"] = str(err)
    again = sweep(train, cfg, task=net, callbacks=[jnn.SweepFolder(out / "b", resume=True)], **axes)
    report["resumed_bitwise"] = same(again.params, whole.params) and again.rows == whole.rows
    report["resumed_devices"] = list(again.devices)

    stacked = sweep(train, cfg, task=net, strategy="stacked", callbacks=[jnn.SweepFolder(out / "c")], **axes)
    report["stacked_devices"] = list(stacked.devices)
    report["stacked_rel"] = max(jnn.compare_grads(f.params, stacked.member_params(k), rtol=1e-5).max_rel_err
                                for k, f in enumerate(fits))
    try:
        sweep(train, cfg, task=net, strategy="stacked", devices=4,
              callbacks=[jnn.SweepFolder(out / "c", resume=True)], **axes)
    except ValueError as err:
        report["stacked_refusal"] = str(err)
    print("RESULT " + json.dumps(report))
""")


@pytest.mark.slow
def test_a_sweep_spreads_its_members_over_8_devices_each_bit_for_bit_its_fit_and_resumes_bitwise(tmp_path):
    code, out = _run([sys.executable, "-c", _SCRIPT, str(tmp_path)], timeout=420,
                     XLA_FLAGS="--xla_force_host_platform_device_count=8")  # fmt: skip
    assert code == 0, out[-3000:]
    report = json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])
    assert report["devices"] == 8
    every = [f"cpu:{i}" for i in range(8)]
    assert report["programs_devices"] == every * 2 == report["programs_json"]  # member k on device k % 8
    assert report["bitwise"] == [True] * 16
    assert len(set(report["epochs"])) > 1  # members stopped at different epochs
    assert report["crashed"] == "boom" and report["resumed_bitwise"]
    assert report["resumed_devices"] == every * 2
    assert report["stacked_devices"] == [d for d in every for _ in range(2)]  # 2 members per device, in blocks
    assert report["stacked_rel"] <= 1e-5
    assert "was swept stacked over 8 devices, now 4" in report["stacked_refusal"]


def test_devices_and_strategy_are_checked_before_any_work():
    import jax

    from jnn.train.strategy import check_strategy, local_devices, stacked_devices

    assert local_devices() == jax.local_devices() and local_devices(1) == jax.local_devices()[:1]
    with pytest.raises(ValueError, match=r"devices must be in \[1, 1\] \(the local cpu devices\) or a list of them; "
                                         r"got 2"):  # fmt: skip
        local_devices(2)
    with pytest.raises(TypeError, match="devices must be None, a count or a non-empty list of jax devices; got 'gpu'"):
        local_devices("gpu")
    with pytest.raises(ValueError, match=r"devices\[0\] must be a local jax device of this process; got 3"):
        local_devices([3])
    with pytest.raises(ValueError, match="devices must be distinct devices of one platform"):
        local_devices([jax.devices()[0]] * 2)
    assert check_strategy(None) == "programs"  # jax runs on the CPU here
    letters = list("abcdefgh")
    assert stacked_devices(letters, 16) == letters and stacked_devices(letters, 6) == letters[:6]
    assert stacked_devices(letters, 12) == letters[:6] and stacked_devices(letters, 7) == letters[:7]
    assert stacked_devices(letters, 11) == ["a"]  # a prime above the devices: one device
