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
        history: the run's ``jnn.history.History``.
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
        fig.savefig(fh, dpi=110, format="png", metadata=PNG_METADATA)
    plt.close(fig)
    return path


#: The ``Software`` text chunk of every PNG jnn draws: what tells its own plots from a user's images.
PNG_METADATA = {"Software": "jnn"}


def is_jnn_png(path) -> bool:
    """Whether ``path`` is a PNG jnn drew (a ``tEXt`` chunk ``Software: jnn`` before the image data)."""
    import struct

    try:
        with open(path, "rb") as fh:
            if fh.read(8) != b"\x89PNG\r\n\x1a\n":
                return False
            for _ in range(64):  # the text chunks come before the image data
                head = fh.read(8)
                if len(head) < 8:
                    return False
                size, kind = struct.unpack(">I4s", head)
                if kind == b"IDAT" or size > 1 << 20:
                    return False
                body = fh.read(size)
                fh.seek(4, 1)  # the CRC
                if kind == b"tEXt" and body.split(b"\0", 1) == [b"Software", PNG_METADATA["Software"].encode()]:
                    return True
    except OSError:
        return False
    return False


def check_plot_destination(path, *, overwrite: bool = False, regenerated: bool = False, name: str = "--out") -> None:
    """The no-takeover rule for a plot's file: a file jnn did not draw (or a link, a FIFO, a device) is never
    replaced; one jnn drew is replaced with ``overwrite``, or when ``regenerated`` (a run's own ``curves.png``,
    redrawn from the history it holds: nothing is lost).

    Raises:
        ValueError: naming ``name``, the file and what to do.
    """
    path = Path(path)
    atomic.check_destination(path, name, links=False)
    if not path.exists():
        return
    if not is_jnn_png(path):
        raise ValueError(f"{name} {str(path)!r} is not a plot jnn drew; jnn never replaces it, even with --overwrite: "
                         "give another path")  # fmt: skip
    if not (overwrite or regenerated):
        raise ValueError(f"{name} {str(path)!r} already holds a plot jnn drew; pass --overwrite to replace it")


def plot_run(run_dir, out: str | None = None, *, overwrite: bool = False) -> Path:
    """Draw ``curves.png`` for a run folder written by ``jnn.fit`` / ``jnn train``.

    Args:
        run_dir: folder with ``history.json`` (and optionally ``summary.json``).
        out: PNG path (default ``run_dir/curves.png``).
        overwrite: replace a plot jnn drew at ``out`` (the run's own ``curves.png`` is redrawn without it; a
            file jnn did not draw is never replaced: ``check_plot_destination``).

    Raises:
        ValueError: if the folder has no ``history.json``, or ``out`` is refused.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "history.json").is_file():
        raise ValueError(f"RUN_DIR must be a run folder holding history.json; {str(run_dir)!r} has none")
    target = Path(out) if out else run_dir / "curves.png"
    own = target.parent.resolve() == run_dir.resolve() and target.name == "curves.png"
    check_plot_destination(target, overwrite=overwrite, regenerated=own, name="--out" if out else "RUN_DIR/curves.png")
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
