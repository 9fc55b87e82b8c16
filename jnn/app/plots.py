"""Figures of runs and studies (matplotlib, Agg backend: no display needed).

``plot_history`` draws loss and accuracy curves for training and validation with the early-stopping
markers; ``plot_run`` does it for a run folder (``jnn plot RUN_DIR``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from jnn.app import atomic, history_files
from jnn.history import History


def pyplot():
    try:
        import matplotlib
    except ImportError:
        raise ImportError("plots need matplotlib: pip install 'jnn[plots]' (or pip install matplotlib)") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_history(
    history: History, path, *, best_epoch: int | None = None, stop_epoch: int | None = None, title: str = ""
) -> Path:
    """The loss and every recorded metric per epoch, train and validation, with the best and stop epochs
    marked: one panel per quantity (``loss``, then each ``<metric>`` of ``train_<metric>``/``val_<metric>``).

    Args:
        history: the run's :class:`jnn.history.History`.
        path: PNG file to write.
        best_epoch: 0-based epoch of the restored best params (a dashed line), or None.
        stop_epoch: 1-based epoch at which the run stopped (a dotted line), or None.
        title: figure title.

    Returns:
        The path written.
    """
    plt = pyplot()
    epochs = list(range(1, len(history) + 1))
    panels = [
        "loss",
        *dict.fromkeys(
            k.split("_", 1)[1]
            for k in history.keys
            if k.startswith(("train_", "val_")) and k.split("_", 1)[1] != "loss"
        ),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, metric in zip(axes[0], panels):
        for split, style in (("train", "-"), ("val", "-")):
            values = history[f"{split}_{metric}"] if f"{split}_{metric}" in history else []
            if values and not all(math.isnan(v) for v in values):
                ax.plot(epochs, values, style, label=f"{'training' if split == 'train' else 'validation'} {metric}")
        if best_epoch is not None and best_epoch >= 0:
            ax.axvline(best_epoch + 1, color="tab:green", linestyle="--", label=f"best epoch {best_epoch + 1}")
        if stop_epoch is not None:
            ax.axvline(stop_epoch, color="tab:red", linestyle=":", label=f"stopped at epoch {stop_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # an empty panel (a run stopped before its first epoch) has none
            ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic.writing(path) as fh:
        fig.savefig(fh, dpi=110, format="png")
    plt.close(fig)
    return path


def plot_run(run_dir, out: str | None = None) -> Path:
    """Draw ``curves.png`` for a run folder written by :func:`jnn.fit` / ``jnn train``.

    Args:
        run_dir: folder with ``history.json`` (and optionally ``summary.json``).
        out: PNG path (default ``run_dir/curves.png``).

    Raises:
        ValueError: if the folder has no ``history.json``.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "history.json").is_file():
        raise ValueError(f"RUN_DIR must be a run folder holding history.json; {str(run_dir)!r} has none")
    history = history_files.load(run_dir)
    best = stop = None
    title = run_dir.name
    s = None
    if (run_dir / "summary.json").is_file():
        try:
            s = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
        except ValueError:
            s = None  # an unreadable summary only loses the title and the markers
    if isinstance(s, dict):
        b = s.get("best_epoch")
        best = b - 1 if isinstance(b, int) and b > 0 else None
        stop = s.get("epochs") if s.get("stopped_by") == "early_stopping" else None
        test = s.get("test") if isinstance(s.get("test"), dict) else {}
        test = {k: v for k, v in test.items() if k != "n" and isinstance(v, (int, float))}
        shown = next((k for k in test if k != "loss"), "loss")
        title = f"{run_dir.name}: {s.get('stopped_by')}" + (f", test {shown} {test[shown]:.4f}" if test else "")
    return plot_history(history, out or run_dir / "curves.png", best_epoch=best, stop_epoch=stop, title=title)
