"""Sweep members on a Ray cluster: each member's compiled calls run as Ray tasks on the cluster's nodes.

``sweep(..., strategy="programs", cluster="ray")`` (a Ray this process is connected to) or ``cluster="HOST:PORT"``
(``ray.init(address=...)`` first) runs the sweep exactly as on one machine (the same sweep folder, lock,
checkpoints, resume, callbacks and scheduler, all in this process) except where a member's calls run: each call of
a few epochs of one member is a Ray task (``_member_call``) that runs the member's own fit's program in a worker
process of some node, from the member's state, and returns its new state and summary rows. What travels:

- the program's recipe (the task, config and optimizer, ``RayMembers``'s ``spec``) and the stacked epoch arrays
  of the members go into the object store **once** per shape group; a worker process builds the program once per
  recipe (its compile cache lives as long as the process) and takes a member's row of the arrays once;
- per call, the member's state (its params and optimizer state) there and back.

A call is a pure function of its inputs, so when a worker node dies in the middle of a call Ray runs the call again
on another node (``max_retries``) from the same input state: the member goes on from where its last call began,
and the sweep's results are bit for bit those of the uninterrupted sweep. A member's calls equal its local fit bit
for bit where the node's XLA setup is the same (the same kind of CPU, the same number of threads, the same jax and
XLA flags); another CPU kind (other vector instructions) or thread count may round otherwise.
Each member's node is recorded as ``"ray:<node ip>:<node id prefix>"`` in ``SweepResult.devices`` and
``sweep.json``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jnn.train.state import TrainState

import threading

from jnn.train.member_threads import MemberThreads

#: Times Ray runs a member's call again when its worker or node dies.
MAX_RETRIES = 5

_programs: dict = {}  # in a worker process: the member programs built there, by recipe
_rows: dict = {}  # in a worker process: the members' epoch arrays taken there, by (arrays, member)
_lock = threading.Lock()


def connect(cluster: str | None) -> int:
    """Connect to the Ray cluster a sweep runs on and return its number of CPUs.

    Args:
        cluster: ``"ray"`` (the Ray this process is connected to with ``ray.init``) or an address (``"HOST:PORT"``
            or ``"ray://HOST:PORT"``) to connect to when not connected yet.

    Raises:
        ImportError: Ray is not installed (``pip install 'jnn[ray]'``).
        ValueError: ``"ray"`` without a connection, or a connection to another address.
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError("cluster= runs members on a Ray cluster: pip install 'jnn[ray]' (ray[tune])") from err
    if not isinstance(cluster, str) or not cluster:
        raise TypeError(f"cluster must be 'ray' or a Ray address such as '127.0.0.1:6379'; got {cluster!r}")
    if not ray.is_initialized():
        if cluster == "ray":
            raise ValueError("cluster='ray' runs on the Ray this process is connected to; call ray.init(address=...) "
                             "first or pass the address (cluster='HOST:PORT')")  # fmt: skip
        ray.init(address=cluster, log_to_driver=False)
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _member_call(spec, data, member: int, state, n: int):
    """A Ray task: ``n`` epochs of ``member`` from ``state`` with its own fit's program (built from ``spec`` once per
    worker process) on its row of the stacked epoch arrays ``data``. Returns ``(state, rows, suspect, node)``."""
    import jax
    import jax.numpy as jnp
    import ray

    from jnn.train.members import row
    from jnn.train.program import compiled_caller

    ctx = ray.get_runtime_context()
    spec_key, data_key = spec[0].hex(), data[0].hex()
    with _lock:
        if spec_key not in _programs:
            _programs[spec_key] = compiled_caller(**ray.get(spec[0]))
        if (data_key, member) not in _rows:
            _rows[(data_key, member)] = row(ray.get(data[0]), jnp.int32(member))
        program, rows = _programs[spec_key], _rows[(data_key, member)]
    new, out, suspect = program(jax.device_put(state), rows, n)
    node = f"ray:{ray.util.get_node_ip_address()}:{ctx.get_node_id()[:8]}"
    return new, out, bool(suspect), node


class RayMembers(MemberThreads):
    """``jnn.train.member_threads.MemberThreads`` whose calls run as Ray tasks (``_member_call``): the
    sweep's host loop, folder and callbacks stay in this process; ``workers`` threads here each wait on one task at
    a time (default: the cluster's CPUs).

    Args:
        inner: the local caller of one member's program (its call-length rule; it is never called here).
        spec: the keyword arguments of ``jnn.train.program.compiled_caller`` that build that program.
        members: M.
        workers: tasks in flight at once.
    """

    def __init__(self, inner: Any, spec: dict, members: int, *, workers: int):
        import ray

        super().__init__(inner, members, workers=workers)
        self._spec = ray.put(spec)
        self._remote = ray.remote(_member_call).options(num_cpus=1, max_retries=MAX_RETRIES, retry_exceptions=False,
                                                        scheduling_strategy="SPREAD")  # fmt: skip
        self._data_ref = self._data_of = None

    def warm(self, state: TrainState, data: Any) -> None:
        """Nothing to compile here: each worker process compiles the member program on its first call."""

    def _data_for(self, data, i: int):
        import ray

        if self._data_of is not data:  # the stacked epoch arrays, once into the object store
            self._data_of, self._data_ref = data, ray.put(data)
        return i

    def _call(self, member: int, state, data, n: int):
        import jax
        import ray

        ref = self._remote.remote([self._spec], [self._data_ref], int(data), state, n)
        new, rows, suspect, node = ray.get(ref)
        self.ran_on[member] = node
        return jax.device_put(new), rows, suspect


__all__ = ["MAX_RETRIES", "RayMembers", "connect"]
