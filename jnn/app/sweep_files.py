"""A sweep's folder: ``sweep.csv``, ``sweep.json``, ``params.npz`` and ``sweep.png``, written atomically.

``jnn.save_sweep(result, folder)`` writes what ``jnn.sweep.sweep`` returned; ``jnn.load_run(folder,
member=k)`` reads one member back as a model.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from jnn.app import atomic
from jnn.app import checkpoint as ckpt
from jnn.app.plots import PNG_METADATA, pyplot
from jnn.sweep import SweepResult


def save_sweep(result: SweepResult, folder, *, data_info: dict | None = None) -> list[Path]:
    """Write ``sweep.csv``, ``sweep.json``, ``params.npz`` (every member's params, stacked; read by
    ``jnn.load_run(folder, member=k)``) and (with matplotlib) ``sweep.png`` into ``folder``.

    Args:
        result: the ``jnn.sweep.SweepResult`` of ``jnn.sweep.sweep``.
        folder: the sweep folder (created if needed).
        data_info: facts about the data stored in ``sweep.json`` under ``data`` (see ``jnn.fit``).

    Returns:
        The paths written (``sweep.png`` last, when matplotlib is installed).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "sweep.csv", folder / "sweep.json", folder / "params.npz"]
    record = {
        "monitor": result.monitor,
        "best": result.best(),
        "best_rule": result.best_rule(),
        "search": result.search,
        "strategy": result.strategy,
        "workers": result.workers,
        "devices": list(result.devices),
        "rows": result.rows,
        "seconds": result.seconds,
        "histories": [h.metrics for h in result.histories],
        "members_config": [c.to_dict() for c in result.members],
        "members_model": list(result.descriptions),
        "sizes": None if result.sizes is None else list(result.sizes),
        "member_sizes": None if result.member_sizes is None else [list(s) for s in result.member_sizes],
        "stacked": result.stacked,
        "n_features": result.n_features,
        "hyper_names": list(result.hyper_names),
        "data": data_info or {},
    }
    text = json.dumps(record, indent=2, default=lambda o: None)
    meta = {"members": len(result.rows), "stacked": result.stacked, "sweep_hash": sweep_hash(json.loads(text))}
    ckpt.save(paths[2], result.params, meta=meta)
    with atomic.writing(paths[0], "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(result.rows[0]))
        w.writeheader()
        w.writerows(result.rows)
    atomic.write_text(paths[1], text)
    try:
        paths.append(plot_sweep(folder / "sweep.png", result))
    except ImportError:
        pass
    return paths


def sweep_hash(info: dict) -> str:
    """A short hash of what a sweep's ``params.npz`` must match in its ``sweep.json`` (``info``, as read back):
    each member's config and model, the rows, the hyperparameter names and the widths."""
    import hashlib

    keys = ("members_config", "members_model", "rows", "hyper_names", "member_sizes", "sizes", "stacked")
    text = json.dumps({k: info.get(k) for k in keys}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def plot_sweep(path, res: SweepResult) -> Path:
    """Draw ``res``'s validation curves and its test (or best validation) metric per member into the PNG ``path``
    (atomically); ImportError without matplotlib."""

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, h in enumerate(res.histories):
        axes[0].plot(range(1, len(h) + 1), h[res.monitor], linewidth=1, label=f"member {i}")
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel(res.monitor)
    axes[0].set_title("validation curves (a stopped member's curve ends)")
    if len(res.histories) <= 10:
        axes[0].legend(fontsize=7)
    axes[0].grid(alpha=0.3)
    scored = [k for k in res.rows[0] if k.startswith("test_") and k != "test_loss" and res.rows[0][k] is not None]
    key = scored[0] if scored else "best_val"
    values = [r[key] for r in res.rows]
    if any(v is None for v in values):  # no early stopping (no best epoch) and no test set: the last epoch's value
        key = f"final {res.monitor}"
        values = [h[res.monitor][-1] if len(h) else float("nan") for h in res.histories]
    labels = [f"{r['member']}" for r in res.rows]
    best = res.best()["member"]
    axes[1].bar(
        range(len(res.rows)), values, color=["tab:green" if r["member"] == best else "tab:blue" for r in res.rows]
    )
    axes[1].set_xticks(range(len(res.rows)), labels, fontsize=7)
    axes[1].set_xlabel("member (green: best by validation)")
    axes[1].set_ylabel(key)
    axes[1].set_title(f"{key} per member")
    finite = [v for v in values if v == v] or [0.0]
    lo, hi = min(finite), max(finite)
    axes[1].set_ylim(max(0.0, lo - 0.1 * (hi - lo + 1e-9) - 0.02), hi + 0.1 * (hi - lo + 1e-9) + 0.01)
    fig.tight_layout()
    with atomic.writing(path) as fh:
        fig.savefig(fh, dpi=110, format="png", metadata=PNG_METADATA)
    plt.close(fig)
    return Path(path)


__all__ = ["save_sweep", "plot_sweep", "sweep_hash"]
