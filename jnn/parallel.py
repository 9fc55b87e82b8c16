"""Data parallelism over a device mesh, and multi-process start-up on top of ``jax.distributed``.

- ``data_mesh`` builds a 1-D mesh with a ``data`` axis over the (global) devices; pass it to
  ``fit(..., mesh=mesh)`` (or ``jnn train --data-parallel``). Each minibatch's rows are sharded over the
  ``data`` axis; params and optimiser state stay replicated; XLA inserts the gradient all-reduce.
  Dropout masks are drawn with the global batch shape from the step's key, and JAX's partitionable
  threefry makes their values independent of the layout, so a run gives the same result on 1 or N
  devices (up to the summation order of the all-reduce).
- ``initialize`` starts ``jax.distributed`` (coordinator address, process count and id from the
  arguments or the ``JNN_COORDINATOR_ADDRESS`` / ``JNN_NUM_PROCESSES`` / ``JNN_PROCESS_ID`` variables),
  with explicit timeouts, gloo collectives on CPU, and a loopback bind address for local testing.
- ``jnn launch --processes N -- jnn train ...`` (``jnn.app.launcher.launch``) starts N local
  processes with those variables set, waits for them under a deadline, and kills them all (by pid) if
  one fails or the deadline passes.

Pitfall handled: on CPU a long queue of asynchronous dispatches that contain collectives can deadlock;
``fit`` blocks on a small result after every epoch (one dispatch), so the queue never grows.
"""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jnn import _validate as V

#: The variables ``initialize`` reads (``jnn launch`` sets them, see ``jnn.app.launcher``).
ENV_ADDRESS, ENV_COUNT, ENV_ID = "JNN_COORDINATOR_ADDRESS", "JNN_NUM_PROCESSES", "JNN_PROCESS_ID"


def data_mesh(devices=None) -> Mesh:
    """A 1-D ``jax.sharding.Mesh`` named ``("data",)`` over ``devices`` (default: all devices of all
    processes)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("devices must hold at least one device")
    return Mesh(np.asarray(devices), ("data",))


def check_mesh(mesh, batch_size: int) -> int:
    """Validate a mesh for data parallelism; return the size of its ``data`` axis.

    Raises:
        TypeError: not a Mesh.
        ValueError: no ``data`` axis, or ``batch_size`` not divisible by the ``data`` axis size.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"mesh must be a jax.sharding.Mesh (see jnn.parallel.data_mesh); got {type(mesh).__name__}")
    if "data" not in mesh.axis_names:
        raise ValueError(f"mesh must have a 'data' axis to shard the batch over; got axes {tuple(mesh.axis_names)}")
    n = mesh.shape["data"]
    if batch_size % n:
        raise ValueError(
            f"batch_size must be divisible by the {n} devices of the mesh's 'data' axis; got "
            f"batch_size={batch_size} (try {max(n, batch_size // n * n)})"
        )
    return n


def shardings(mesh: Mesh) -> tuple[NamedSharding, NamedSharding]:
    """``(replicated, batch_rows)``: the sharding of params/state and of a minibatch's rows."""
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec("data"))


def replicate(tree, sharding: NamedSharding):
    """Place every leaf of ``tree`` (the same values on every process) with ``sharding``; typed PRNG keys
    are moved through their key data."""

    def place(arr: np.ndarray):
        # make_array_from_callback, not device_put: device_put checks that every process passes equal
        # values, and NaN (the unfilled history buffers) never equals itself.
        return jax.make_array_from_callback(arr.shape, sharding, lambda index: arr[index])

    def put(leaf):
        if isinstance(leaf, jax.Array) and jax.numpy.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            data = place(np.asarray(jax.random.key_data(leaf)))
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(leaf))
        return place(np.asarray(leaf))

    return jax.tree.map(put, tree)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    initialization_timeout: int = 60,
    heartbeat_timeout: int = 10,
    shutdown_timeout: int = 30,
) -> dict:
    """Start ``jax.distributed`` for multi-process training (call before any other JAX work).

    Args:
        coordinator_address: ``host:port`` of process 0 (default ``$JNN_COORDINATOR_ADDRESS``).
        num_processes: number of processes (default ``$JNN_NUM_PROCESSES``).
        process_id: this process's id in ``[0, num_processes)`` (default ``$JNN_PROCESS_ID``).
        initialization_timeout: seconds to wait for all processes to join.
        heartbeat_timeout: seconds after which a silent peer counts as dead (the others then fail
            instead of hanging).
        shutdown_timeout: seconds to wait at shutdown.

    Returns:
        ``{"process_id", "num_processes", "devices", "local_devices"}``.

    Raises:
        ValueError: missing or inconsistent settings.
    """
    address = coordinator_address or os.environ.get(ENV_ADDRESS)
    count = num_processes if num_processes is not None else os.environ.get(ENV_COUNT)
    pid = process_id if process_id is not None else os.environ.get(ENV_ID)
    if not address or count is None or pid is None:
        raise ValueError(
            f"initialize needs coordinator_address, num_processes and process_id (or the {ENV_ADDRESS}, "
            f"{ENV_COUNT}, {ENV_ID} variables); got {address!r}, {count!r}, {pid!r}"
        )
    try:
        count, pid = int(count), int(pid)
    except ValueError:
        raise ValueError(f"num_processes and process_id must be integers; got {count!r}, {pid!r}") from None
    V.check_int("num_processes", count, low=1)
    V.check_int("process_id", pid, low=0, high=count - 1)
    host = address.rsplit(":", 1)[0]
    bind = address if host in ("127.0.0.1", "localhost") else None
    # Cross-process collectives of the CPU backend (harmless on GPU/TPU, whose backends use their own).
    # Asking for the backend here would initialise it too early, so the option is set unconditionally.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=address,
        num_processes=count,
        process_id=pid,
        coordinator_bind_address=bind,
        initialization_timeout=initialization_timeout,
        heartbeat_timeout_seconds=heartbeat_timeout,
        shutdown_timeout_seconds=shutdown_timeout,
    )
    return {
        "process_id": jax.process_index(),
        "num_processes": jax.process_count(),
        "devices": len(jax.devices()),
        "local_devices": len(jax.local_devices()),
    }
