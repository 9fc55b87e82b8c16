"""Short text and HTML views of results, for terminals and notebooks (``__repr__`` and ``_repr_html_``).

A result holds params, optimiser state and histories; Python's default dataclass repr prints them all (a
``FitResult`` of the default MNIST-1D run printed 35,052 characters). The views here name what a reader looks for
(how the run stopped, its size, the last metrics, a sweep's best member) in at most ``MAX_LINES`` lines.
"""

from __future__ import annotations

import html
import math

import jax
import numpy as np

#: The most lines a view prints.
MAX_LINES = 20
#: The most table rows (sweep members) a view shows; the rest are counted.
MAX_ROWS = 10


def fmt(value) -> str:
    """A value as a table shows it: floats to 4 significant digits, None as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def params_line(params) -> str:
    """``3 arrays, 36,010 parameters (float32)`` for any pytree of arrays (a list of them: counted together)."""
    leaves = [l for l in jax.tree.leaves(params) if hasattr(l, "shape")]
    count = sum(int(np.prod(l.shape, dtype=np.int64)) for l in leaves)
    dtypes = sorted({str(l.dtype) for l in leaves})
    return f"{len(leaves)} arrays, {count:,} parameters ({', '.join(dtypes) or 'none'})"


def last_metrics(history) -> str:
    """The last epoch's value of each history key, ``train_loss 0.4123, val_loss 0.5234, ...`` (empty history:
    ``no epoch``)."""
    if len(history) == 0:
        return "no epoch"
    return ", ".join(f"{k} {fmt(float(history[k][-1]))}" for k in history.metrics if k != "learning_rate")


def text_table(rows: list[dict], columns: list[str]) -> list[str]:
    """Aligned lines of ``rows`` (at most ``MAX_ROWS``, then a line counting the others)."""
    shown = [[fmt(r.get(c)) for c in columns] for r in rows[:MAX_ROWS]]
    table = [columns] + shown
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table]
    if len(rows) > MAX_ROWS:
        lines.append(f"... {len(rows) - MAX_ROWS} more")
    return lines


def html_view(title: str, items: list[tuple[str, str]], rows: list[dict] | None = None, columns=None) -> str:
    """A small HTML block: a bold title, ``name: value`` items, and optionally a table of rows (at most
    ``MAX_ROWS``)."""
    esc = html.escape
    out = [f"<div><b>{esc(title)}</b><ul>"] + [f"<li>{esc(k)}: {esc(v)}</li>" for k, v in items] + ["</ul>"]
    if rows:
        out.append("<table><tr>" + "".join(f"<th>{esc(c)}</th>" for c in columns) + "</tr>")
        for r in rows[:MAX_ROWS]:
            out.append("<tr>" + "".join(f"<td>{esc(fmt(r.get(c)))}</td>" for c in columns) + "</tr>")
        out.append("</table>")
        if len(rows) > MAX_ROWS:
            out.append(f"<p>... {len(rows) - MAX_ROWS} more</p>")
    return "".join(out) + "</div>"


def view(title: str, items: list[tuple[str, str]]) -> str:
    """``Title(`` then one indented ``name: value`` line per item, then ``)``."""
    return "\n".join([f"{title}(", *(f"  {k}: {v}" for k, v in items), ")"])


__all__ = ["MAX_LINES", "MAX_ROWS", "fmt", "html_view", "last_metrics", "params_line", "text_table", "view"]
