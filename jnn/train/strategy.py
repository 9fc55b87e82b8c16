"""How a sweep runs its members, and on which devices.

Two strategies, one guarantee each:

- ``"programs"``: each member runs its own fit's program (the one ``jnn.fit`` compiles for its shapes), the
  members' calls side by side in threads (``jnn.train.member_threads``), each member placed on one device:
  every member is **bit for bit its own fit** on its device, whatever the threads, devices or other members.
  The default on a CPU, where one small program leaves the other cores idle.
- ``"stacked"``: the members stacked on a leading axis and run by one ``jax.vmap``-ed program per shape
  (``jnn.train.repacking``), the member axis sharded over the devices: each member equals its fit **to
  rounding** (a batched matrix product may round otherwise in the last bits; ``SweepResult.refit(k)`` gives the
  fit's bits). The default on an accelerator, where one batched program fills the device.

Devices: ``devices=None`` takes every local device of the default backend; an integer ``n`` the first ``n``; or a
list of ``jax.Device``. Member ``i`` of ``"programs"`` runs on ``devices[i % n]``; ``"stacked"`` shards its members
over the largest number of the devices that divides the member count (without re-packing when that is above one).
The result and ``sweep.json`` record each member's device (``"cpu:3"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jax

#: The sweep strategies (``sweep(..., strategy=)``).
STRATEGIES = ("programs", "stacked")


@dataclass(frozen=True)
class Plan:
    """How one sweep runs: its strategy, threads (``"programs"``), devices, whether a stacked batch re-packs
    (off with a sweep folder: a resume must meet the batches the uninterrupted sweep ran), and the Ray cluster the
    members' calls run on (``jnn.cluster``; None: this process)."""

    strategy: str
    workers: int
    devices: tuple
    repack: bool = True
    cluster: str | None = None


def default_strategy() -> str:
    """``"programs"`` when jax runs on the CPU, else ``"stacked"``."""
    return "programs" if jax.default_backend() == "cpu" else "stacked"


def check_strategy(strategy) -> str:
    """The strategy, checked (None: ``default_strategy``)."""
    if strategy is None:
        return default_strategy()
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {list(STRATEGIES)} (or None: the backend's default); got "
                         f"{strategy!r}")  # fmt: skip
    return strategy


def local_devices(devices: int | Sequence[jax.Device] | None = None) -> list:
    """The devices a sweep spreads its members over.

    Args:
        devices: None (every local device of the default backend), an integer ``n`` (the first ``n`` of them) or a
            non-empty list of distinct ``jax.Device`` objects of this process, all of one platform.

    Raises:
        ValueError, TypeError: naming the argument, what is allowed and the value.
    """
    every = jax.local_devices()
    if devices is None:
        return every
    if isinstance(devices, int) and not isinstance(devices, bool):
        if not 1 <= devices <= len(every):
            raise ValueError(f"devices must be in [1, {len(every)}] (the local {every[0].platform} devices) or a "
                             f"list of them; got {devices!r}")  # fmt: skip
        return every[:devices]
    if not isinstance(devices, (list, tuple)) or not devices:
        raise TypeError(f"devices must be None, a count or a non-empty list of jax devices; got {devices!r}")
    mine = {d.id: d for d in jax.local_devices(backend=getattr(devices[0], "platform", None))}
    for i, d in enumerate(devices):
        if not isinstance(d, jax.Device) or mine.get(d.id) is not d:
            raise ValueError(f"devices[{i}] must be a local jax device of this process; got {d!r}")
    if len({d.platform for d in devices}) != 1 or len(set(devices)) != len(devices):
        raise ValueError(f"devices must be distinct devices of one platform; got {list(devices)!r}")
    return list(devices)


def label(device) -> str:
    """A device as recorded in a sweep: ``"cpu:3"`` (platform and id)."""
    return f"{device.platform}:{device.id}"


def stacked_devices(devices: list, members: int) -> list:
    """The devices a stacked batch of ``members`` is sharded over: the first ``d`` of ``devices``, ``d`` the largest
    count up to ``len(devices)`` that divides ``members`` (a sharded axis splits evenly)."""
    d = max(k for k in range(1, min(len(devices), members) + 1) if members % k == 0)
    return devices[:d]


__all__ = ["STRATEGIES", "Plan", "check_strategy", "default_strategy", "label", "local_devices", "stacked_devices"]
