"""Seeds aggregated by setting: the mean, standard deviation and confidence interval of a sweep's metrics.

A sweep over ``seed × keep_prob`` answers "which keep_prob is better" only once the seeds of each setting are
pooled. ``summarize`` groups a sweep's rows by the columns named in ``by`` and gives, for every metric, the
number of runs n, the mean, the sample standard deviation (ddof = 1) and the two-sided Student-t confidence
interval of the mean, ``mean ± t_{(1+c)/2, n-1} · std / √n`` (n = 1: std and interval NaN). The
``Summary`` prints as a short table and gives CSV and Markdown text and a grouped plot (mean and
interval per setting); ``jnn summarize SWEEP --by keep_prob`` writes them next to a sweep.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jnn.sweep import SweepResult

import csv
import io
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from jnn.display import fmt, html_view, text_table, view

#: Columns of a sweep's rows that describe a run, not a measurement.
NOT_METRICS = ("member", "seed", "stopped_by", "best_epoch")


def _betacf(a: float, b: float, x: float) -> float:
    """The continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """The regularised incomplete beta function I_x(a, b) for 0 <= x <= 1."""
    if x <= 0.0 or x >= 1.0:
        return 0.0 if x <= 0.0 else 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def student_t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def student_t_quantile(p: float, df: float) -> float:
    """The ``p``-quantile of Student's t with ``df`` degrees of freedom (bisection on the CDF to 1e-12).

    Example:
        >>> round(student_t_quantile(0.975, 4), 3)
        2.776
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1); got {p!r}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while student_t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if student_t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12:
            break
    return 0.5 * (lo + hi)


def mean_std_ci(values: Sequence[float], confidence: float = 0.95) -> dict:
    """``{"n", "mean", "std", "ci_low", "ci_high"}`` of ``values`` (NaN ignored; std with ddof = 1; the
    Student-t interval of the mean; std and interval NaN when fewer than two values)."""
    xs = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(xs)
    nan = float("nan")
    if n == 0:
        return {"n": 0, "mean": nan, "std": nan, "ci_low": nan, "ci_high": nan}
    mean = math.fsum(xs) / n
    if n == 1:
        return {"n": 1, "mean": mean, "std": nan, "ci_low": nan, "ci_high": nan}
    std = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    half = student_t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half}


#: The metrics a summary shows first, in order of preference (as ``test_<name>``).
HEADLINE = ("accuracy", "r2", "f1_macro", "f1", "roc_auc")


@dataclass(frozen=True, repr=False)
class Summary:
    """What ``summarize`` returns.

    Attributes:
        by: the grouping columns.
        metrics: the summarised metrics.
        confidence: the interval's level, e.g. 0.95.
        rows: one dict per setting, in order of first appearance: the ``by`` values, ``n`` (runs pooled), and
            for each metric ``<metric>_n`` (the runs with a value: a NaN or missing value is left out of that
            metric's statistics, and the Markdown cell says ``n=k of n``), ``_mean``, ``_std``, ``_ci_low``,
            ``_ci_high``.
        warnings: what makes the table weaker than it looks: settings pooled from a single run (n = 1: no
            spread, no interval), each named; also raised as a ``UserWarning`` by ``summarize`` and printed
            by ``jnn summarize``.
    """

    by: tuple[str, ...]
    metrics: tuple[str, ...]
    confidence: float
    rows: list
    warnings: tuple = ()

    def columns(self) -> list[str]:
        """The table's columns, in order."""
        stats = [f"{m}_{s}" for m in self.metrics for s in ("n", "mean", "std", "ci_low", "ci_high")]
        return [*self.by, "n", *stats]

    def to_csv(self) -> str:
        """The table as CSV text (full precision)."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=self.columns(), lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        return buf.getvalue()

    def to_markdown(self) -> str:
        """The table as Markdown: each metric as ``mean ± std [ci_low, ci_high]`` (4 significant digits), with
        ``(n=k of n)`` where only k of the setting's n runs have a value."""
        head = [*self.by, "n", *self.metrics]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.rows:
            cells = [fmt(r[b]) for b in self.by] + [str(r["n"])] + [_cell(r, m) for m in self.metrics]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def headline(self) -> str:
        """The metric shown and plotted first: the test score of the loss's own metric (``test_accuracy``,
        ``test_r2``, then any other ``test_`` score, then ``test_loss``), else the first metric."""
        for name in (*(f"test_{m}" for m in HEADLINE), None):
            if name is None:
                tests = [m for m in self.metrics if m.startswith("test_")]
                return next((m for m in tests if m != "test_loss"), tests[0] if tests else self.metrics[0])
            if name in self.metrics:
                return name
        return self.metrics[0]

    def ordered(self) -> tuple[str, ...]:
        """``metrics`` with the ``headline`` first."""
        first = self.headline()
        return (first, *(m for m in self.metrics if m != first))

    def plot(self, metric: str | None = None):
        """A matplotlib figure: one point per setting at the mean of ``metric`` (default ``headline``), with its
        confidence interval as an error bar. Needs matplotlib (``pip install 'jnn[plots]'``).

        Returns:
            The ``matplotlib.figure.Figure`` (save it with ``fig.savefig(path)``).
        """
        metric = self.headline() if metric is None else metric
        if metric not in self.metrics:
            raise ValueError(f"metric must be one of {list(self.metrics)}; got {metric!r}")
        from matplotlib.figure import Figure

        fig = Figure(figsize=(max(4.0, 0.8 * len(self.rows) + 2.0), 3.5), layout="constrained")
        ax = fig.add_subplot()
        labels = [", ".join(f"{b}={fmt(r[b])}" for b in self.by) + f"\n(n={r[f'{metric}_n']})" for r in self.rows]
        means = [r[f"{metric}_mean"] for r in self.rows]
        err = [[_nan0(m - r[f"{metric}_ci_low"]) for m, r in zip(means, self.rows)],
               [_nan0(r[f"{metric}_ci_high"] - m) for m, r in zip(means, self.rows)]]  # fmt: skip
        ax.errorbar(range(len(self.rows)), means, yerr=err, fmt="o", capsize=4)
        tilt = len(self.rows) > 4
        ax.set_xticks(range(len(self.rows)), labels, rotation=30 if tilt else 0, ha="right" if tilt else "center")
        ax.set_ylabel(metric)
        ax.set_title(f"{metric}: mean, {self.confidence:.0%} interval")
        return fig

    def _items(self) -> list[tuple[str, str]]:
        items = [("by", ", ".join(self.by)), ("metrics", ", ".join(self.metrics)),
                 ("interval", f"{self.confidence:.0%} Student t of the mean")]  # fmt: skip
        return items + [("warning", w) for w in self.warnings]

    def __repr__(self) -> str:
        shown = self.ordered()
        for k in range(len(shown), 0, -1):  # every metric when the table fits in 120 columns, else the first k
            cols = [*self.by, "n", *(f"{m}_{s}" for m in shown[:k] for s in ("mean", "std"))]
            table = "\n".join("  " + line for line in text_table(self.rows, cols))
            if k == 1 or max(map(len, table.splitlines()), default=0) <= 120:
                break
        if k < len(shown):
            table += f"\n  ({len(shown) - k} more metrics: {', '.join(shown[k:])}; see .rows or to_markdown())"
        return view("Summary", self._items())[:-1] + table + "\n)"

    def _repr_html_(self) -> str:
        return html_view("Summary", self._items(), self.rows, self.columns())


def _cell(row: dict, metric: str) -> str:
    m, s, lo, hi = (row[f"{metric}_{k}"] for k in ("mean", "std", "ci_low", "ci_high"))
    k = row[f"{metric}_n"]
    of = f" (n={k} of {row['n']})" if k != row["n"] else ""
    if math.isnan(s):
        return fmt(m) + of
    return f"{fmt(m)} ± {fmt(s)} [{fmt(lo)}, {fmt(hi)}]{of}"


def _nan0(x: float) -> float:
    return 0.0 if math.isnan(x) else x


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def summarize(result: SweepResult, by: Sequence[str], *, metrics: Sequence[str] | None = None, confidence: float = 0.95,
              hyper_names: Sequence[str] = ()) -> Summary:  # fmt: skip
    """Pool a sweep's runs by setting: mean ± std and the confidence interval of each metric.

    Args:
        result: a ``jnn.sweep.SweepResult``, or its rows (a list of dicts, e.g. ``sweep.json``'s ``rows``).
        by: the columns that name a setting (e.g. ``["keep_prob"]``); the other axes (typically ``seed``) are
            pooled.
        metrics: the columns to summarise (default: every numeric column that is neither in ``by`` nor one of
            ``member``, ``seed``, ``stopped_by``, ``best_epoch``, nor a swept axis, and has a value somewhere:
            ``best_val``, ``epochs``, ``test_accuracy``, ...).
        confidence: the interval's level, in (0, 1).
        hyper_names: columns that are hyperparameters, never metrics (a SweepResult's ``hyper_names`` are taken
            from it; for rows, e.g. ``sweep.json``'s ``hyper_names``).

    Returns:
        A ``Summary``.

    Raises:
        ValueError: ``by`` or ``metrics`` naming no column (the message lists the columns), an empty ``by``,
            a non-numeric metric, or ``confidence`` outside (0, 1).
        TypeError: ``result`` neither a SweepResult nor a list of dicts.
    """
    rows = getattr(result, "rows", result)
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"result must be a jnn.sweep.SweepResult or a non-empty list of row dicts; got "
                        f"{type(result).__name__}")  # fmt: skip
    columns = list(rows[0])
    if isinstance(by, str):
        by = [by]
    by = tuple(by)
    if not by:
        raise ValueError(f"by must name at least one column among {columns}")
    for b in by:
        if b not in columns:
            raise ValueError(f"by must name columns of the sweep's rows {columns}; got {b!r}")
    if not isinstance(confidence, float) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be a float in (0, 1); got {confidence!r}")
    axes = set(getattr(result, "hyper_names", ())) | set(hyper_names) | {"learning_rate", "hidden", "batch_size"}
    if metrics is None:
        metrics = [c for c in columns if c not in by and c not in NOT_METRICS and c not in axes
                   and any(_is_number(r.get(c)) for r in rows)]  # fmt: skip
    metrics = tuple(metrics)
    for m in metrics:
        if m not in columns:
            raise ValueError(f"metrics must name columns of the sweep's rows {columns}; got {m!r}")
        bad = next((r[m] for r in rows if r.get(m) is not None and not _is_number(r[m])), None)
        if bad is not None:
            raise ValueError(f"metric {m!r} must be numeric; got {bad!r}")
    groups: dict = {}
    for r in rows:
        key = tuple(_hashable(r.get(b)) for b in by)
        groups.setdefault(key, []).append(r)
    out = []
    for members in groups.values():
        row = dict(zip(by, (members[0].get(b) for b in by)))
        row["n"] = len(members)
        for m in metrics:
            stats = mean_std_ci([r.get(m) for r in members], confidence)
            row.update({f"{m}_{k}": stats[k] for k in ("n", "mean", "std", "ci_low", "ci_high")})
        out.append(row)
    single = [", ".join(f"{b}={fmt(r[b])}" for b in by) for r in out if r["n"] == 1]
    notes = ()
    if single:
        shown = "; ".join(single[:5]) + (f"; and {len(single) - 5} more" if len(single) > 5 else "")
        notes = (f"{len(single)} of {len(out)} settings have n = 1 (one run: no std, no interval): {shown}. "
                 "Equal-length sweep axes pair up one to one; jnn.sweep.grid(...) sweeps every combination "
                 "(seeds × settings)",)  # fmt: skip
        warnings.warn(notes[0], UserWarning, stacklevel=2)
    return Summary(by, metrics, confidence, out, notes)


def _hashable(v):
    return tuple(v) if isinstance(v, list) else v


__all__ = ["NOT_METRICS", "Summary", "mean_std_ci", "student_t_cdf", "student_t_quantile", "summarize"]
