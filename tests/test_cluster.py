"""Sweeps on a real local Ray cluster (a head and two worker nodes, ``ray.cluster_utils.Cluster``, 127.0.0.1 only).

Each test runs its cluster in a subprocess of its own process group, bounded in time and killed by that group at
the end. The script asserts that every node and every connection of the cluster's processes is on 127.0.0.1
(Ray would otherwise put the machine's own address in place of 127.0.0.1: the head is started with
``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, under which Ray keeps the loopback address).
"""

import json
import sys
import textwrap

import pytest
from test_parallel import _run

pytest.importorskip("ray")

pytestmark = pytest.mark.slow

#: Starts the cluster, defines ``train``, ``same`` and ``loopback_only()``; each test's script follows it.
_CLUSTER = textwrap.dedent("""
    import json, os, signal, sys, threading, time
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # keep 127.0.0.1 (see the module)
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import jax, numpy as np, psutil, ray
    from ray.cluster_utils import Cluster
    import jnn
    from jnn.sweep import sweep

    LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
    STORE = 256 * 2**20  # each node's object store: small, two clusters may run side by side in the suite
    cluster = Cluster(initialize_head=True, head_node_args={"node_ip_address": "127.0.0.1", "num_cpus": 1,
                                                             "include_dashboard": False, "object_store_memory": STORE})
    workers = [cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1", object_store_memory=STORE) for _ in range(2)]
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    train, _ = jnn.datasets.load("spirals", seed=0)
    plain = lambda x: np.asarray(jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x)
    same = lambda a, b: all(np.array_equal(plain(x), plain(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    report = {}

    def loopback_only():
        nodes = [n["NodeManagerAddress"] for n in ray.nodes()]
        addresses = set()
        for p in psutil.Process().children(recursive=True):
            try:
                for c in p.net_connections(kind="inet"):
                    addresses |= {a.ip for a in (c.laddr, c.raddr) if a}
            except psutil.Error:
                pass
        return {"nodes": nodes, "gcs": ray.get_runtime_context().gcs_address,
                "other_addresses": sorted(addresses - LOOPBACK - {"0.0.0.0", "::"})}
""")

_SWEEPS = _CLUSTER + textwrap.dedent("""
    out = sys.argv[1]
    cfg = jnn.TrainConfig(max_epochs=30, batch_size=64, epochs_per_call=2, checkpoint_every=2,
                          early_stopping=jnn.EarlyStopping(patience=3))
    net = jnn.MLP(hidden=(32, 32), keep_prob=0.8)
    axes = dict(learning_rate=[0.3, 0.05], seed=[0, 1, 2])  # a grid: 6 members
    local = sweep(train, cfg, task=net, **axes)
    on_cluster = sweep(train, cfg, task=net, cluster="ray", callbacks=[jnn.SweepFolder(out + "/a")], **axes)
    report["equal"] = same(local.params, on_cluster.params) and local.rows == on_cluster.rows
    report["histories_equal"] = [h.metrics for h in local.histories] == [h.metrics for h in on_cluster.histories]
    report["nodes_used"] = sorted(set(on_cluster.devices))
    report["json_devices"] = json.load(open(out + "/a/sweep.json"))["devices"]
    report["network"] = loopback_only()

    # A worker node killed with SIGKILL in the middle of the sweep: its calls run again elsewhere.
    victim = workers[0]
    pids = [p.process.pid for p in victim.all_processes["raylet"]]
    killed, killers = [], []

    class KillAfter(jnn.Callback):
        def on_epoch_end(self, epoch, logs):
            if epoch == 4 and not killers:
                def kill():
                    time.sleep(0.3)  # calls in flight on the victim's workers
                    for pid in pids:
                        os.kill(pid, signal.SIGKILL)
                    killed.append(time.time())
                killers.append(threading.Thread(target=kill))
                killers[0].start()

    t0 = time.time()
    hit = sweep(train, cfg, task=net, cluster="ray", callbacks=[jnn.SweepFolder(out + "/b"), KillAfter()], **axes)
    for k in killers:
        k.join()
    report["killed"] = bool(killed)
    report["after_kill_equal"] = same(local.params, hit.params) and local.rows == hit.rows
    deadline = time.time() + 90  # the cluster notices a dead node after its health checks
    while sum(n["Alive"] for n in ray.nodes()) > 2 and time.time() < deadline:
        time.sleep(1)
    report["alive_nodes"] = sum(n["Alive"] for n in ray.nodes())
    report["seconds"] = time.time() - t0

    # The command line, a driver of its own: jnn sweep --ray ADDRESS.
    import subprocess
    cmd = [sys.executable, "-m", "jnn.app.cli", "sweep", "--dataset", "spirals", "--hidden", "8", "--max-epochs", "3",
           "--seeds", "0,1,2", "--log-every", "0", "--ray", cluster.address, "--out", out + "/c"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    report["cli"] = [proc.returncode, proc.stderr[-2000:]]
    if proc.returncode == 0:
        report["cli_devices"] = json.load(open(out + "/c/sweep.json"))["devices"]
    print("RESULT " + json.dumps(report), flush=True)
    ray.shutdown()
    cluster.shutdown()
""")


def _report(out: str) -> dict:
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


def _loopback(network: dict) -> None:
    assert set(network["nodes"]) == {"127.0.0.1"} and len(network["nodes"]) == 3
    assert network["gcs"].startswith("127.0.0.1:") and network["other_addresses"] == []


def test_a_sweep_on_a_local_cluster_equals_the_local_sweep_and_survives_a_killed_node(tmp_path):
    code, out = _run([sys.executable, "-c", _SWEEPS, str(tmp_path)], timeout=400)
    assert code == 0, out[-4000:]
    r = _report(out)
    _loopback(r["network"])
    assert r["equal"] and r["histories_equal"]  # bit for bit the local sweep
    assert len(r["nodes_used"]) >= 2 and all(d.startswith("ray:127.0.0.1:") for d in r["nodes_used"])
    assert sorted(set(r["json_devices"])) == r["nodes_used"]
    assert r["killed"] and r["alive_nodes"] == 2 and r["after_kill_equal"]
    assert r["cli"][0] == 0, r["cli"][1]
    assert len(r["cli_devices"]) == 3 and all(d.startswith("ray:127.0.0.1:") for d in r["cli_devices"])


_TUNE = _CLUSTER + textwrap.dedent("""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from jnn.app import checkpoint as ckpt

    out = sys.argv[1]
    cfg = jnn.TrainConfig(max_epochs=9, batch_size=64, early_stopping=None)
    net = jnn.MLP(hidden=(16,))
    marker = out + "/failed-once"

    class FailOnce(jnn.Callback):  # the first trial to reach epoch 4 fails once: Tune restores it
        def on_epoch_end(self, epoch, logs):
            if epoch == 4 and not os.path.exists(marker):
                open(marker, "w").close()
                raise RuntimeError("a node went away")

    rates = [1e-4, 0.3, 3e-4, 0.1, 1e-3, 0.05]
    tuner = tune.Tuner(
        jnn.tune.trainable(train, cfg, task=net, callbacks=[FailOnce()]),
        param_space={"learning_rate": tune.grid_search(rates), "seed": 0},
        tune_config=tune.TuneConfig(metric="val_loss", mode="min", max_concurrent_trials=3,
                                    scheduler=ASHAScheduler(time_attr="epoch", grace_period=1, reduction_factor=3,
                                                            max_t=9)),
        run_config=tune.RunConfig(storage_path=out + "/tune", name="asha", verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=2)))
    results = tuner.fit()
    trials = []
    for r in results:
        lr = r.config["learning_rate"]
        row = {"learning_rate": lr, "epochs": r.metrics["epoch"], "error": r.error is not None}
        if r.metrics["epoch"] == 9:  # trained to the end: bit for bit its fit, also after a failure
            alone = jnn.fit(train, jnn.TrainConfig.from_dict({**cfg.to_dict(), "learning_rate": lr}), task=net)
            with r.checkpoint.as_directory() as folder:
                state = ckpt.restore(os.path.join(folder, "state.npz"), alone.state)
            row["bitwise"] = same(state, alone.state)
        trials.append(row)
    report["trials"] = trials
    report["failed_once"] = os.path.exists(marker)
    report["network"] = loopback_only()
    print("RESULT " + json.dumps(report), flush=True)
    ray.shutdown()
    cluster.shutdown()
""")


def test_asha_through_tune_stops_jnn_trials_at_rungs_and_a_failed_trial_resumes_bit_for_bit(tmp_path):
    code, out = _run([sys.executable, "-c", _TUNE, str(tmp_path)], timeout=400)
    assert code == 0, out[-4000:]
    r = _report(out)
    _loopback(r["network"])
    trials = r["trials"]
    assert len(trials) == 6 and not any(t["error"] for t in trials) and r["failed_once"]
    stopped = [t for t in trials if t["epochs"] < 9]
    finished = [t for t in trials if t["epochs"] == 9]
    assert stopped and finished  # ASHA cut some trials at its rungs (epoch 1 or 3), the others ran to max_t
    assert {t["epochs"] for t in stopped} <= {1, 3}
    assert all(t["bitwise"] for t in finished)
