"""Experiment loggers as callbacks: a CSV file, and MLflow tracking (an optional extra).

Both receive each epoch's history row from the host loop (no extra compiled-call boundary) and work for
``fit`` and ``sweep`` alike::

    jnn.fit(train, config, callbacks=[jnn.CSVLogger("log.csv"), jnn.MLflowLogger("mnist1d")])
"""

from __future__ import annotations

import csv
import math
import os
import stat
import time
from pathlib import Path

from jnn.app.atomic import check_destination
from jnn.train.callbacks import Callback, RunInfo, finite_logs


class CSVLogger(Callback):
    """Append one row per epoch to a CSV file (flushed every row, so ``tail -f`` follows the run).

    Columns: ``member`` (sweeps only), ``epoch`` (1-based), then the history keys; NaN (e.g. no validation
    set) is written as an empty cell.

    Args:
        path: the CSV file (its folder must exist).
        append: add to an existing file with the same columns instead of replacing it (a resumed run);
            a file with other columns is an error.
        overwrite: replace an existing log that jnn wrote (its first row is a jnn log's header: ``epoch`` or
            ``member, epoch``, then metric names). Without it (or ``append``) an existing non-empty file is
            refused; a file that is not a jnn log is never replaced.

    The destination must be a regular file: a folder, a FIFO, a device, a socket or a symbolic link is refused
    when training begins (before the first epoch), never opened for writing and never written through.
    """

    def __init__(self, path, *, append: bool = False, overwrite: bool = False):
        if not isinstance(path, (str, os.PathLike)) or str(path).strip() == "":
            raise TypeError(f"path must be a file path (str or os.PathLike); got {path!r}")
        for name, value in (("append", append), ("overwrite", overwrite)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False; got {value!r}")
        if append and overwrite:
            raise ValueError("give append=True (add rows) or overwrite=True (replace the log), not both")
        self.path, self.append, self.overwrite = Path(path), append, overwrite
        self._fh = self._writer = None
        self._member = False

    def on_train_begin(self, run: RunInfo) -> None:
        check_destination(self.path, "path", links=False)
        if not self.path.parent.is_dir():
            raise ValueError(f"path's folder {str(self.path.parent)!r} does not exist")
        self._member = run.members > 1
        header = (["member"] if self._member else []) + ["epoch", *run.keys]
        old = self._first_row() if self.path.exists() and self.path.stat().st_size > 0 else None
        if old is not None and self.append:
            if old != header:
                raise ValueError(f"{str(self.path)!r} has the columns {old}, not this run's {header}; "
                                 "use another file or append=False")  # fmt: skip
            self._fh = _open_regular(self.path, os.O_APPEND)
            self._writer = csv.writer(self._fh)
        else:
            if old is not None and not _is_log_header(old):
                raise ValueError(f"{str(self.path)!r} is not a log jnn wrote (its first row is {old[:6]}); jnn never "
                                 "replaces it: give another path")  # fmt: skip
            if old is not None and not self.overwrite:
                raise ValueError(f"{str(self.path)!r} already holds a log; pass append=True to add this run's rows "
                                 "or overwrite=True to replace it")  # fmt: skip
            self._fh = _open_regular(self.path, os.O_TRUNC)
            self._writer = csv.writer(self._fh)
            self._writer.writerow(header)
        self._keys = tuple(run.keys)
        self._fh.flush()

    def _first_row(self) -> list:
        try:
            with open(self.path, newline="", encoding="utf-8") as fh:
                return next(csv.reader(fh), [])
        except (UnicodeDecodeError, csv.Error):
            return ["(not UTF-8 CSV)"]

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        cell = lambda v: "" if isinstance(v, float) and math.isnan(v) else repr(float(v))
        row = ([logs["member"]] if self._member else []) + [epoch, *(cell(logs[k]) for k in self._keys)]
        self._writer.writerow(row)
        self._fh.flush()

    def _close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = self._writer = None

    def on_train_end(self, result) -> None:
        self._close()

    def on_train_abort(self, error: BaseException) -> None:
        self._close()


def _is_log_header(row: list) -> bool:
    """Whether ``row`` is the first row of a CSV log jnn wrote: ``epoch`` (or ``member, epoch``), then names."""
    rest = row[1:] if row[:1] == ["member"] else row
    return rest[:1] == ["epoch"] and all(c and c.replace("_", "").isalnum() for c in rest[1:])


def _open_regular(path: Path, flag: int):
    """``path`` opened for writing text (created if missing), never through a link (``O_NOFOLLOW``) and only if it
    is a regular file (a FIFO is opened without blocking, then refused)."""
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | flag | nofollow | os.O_NONBLOCK, 0o644)
    except OSError as err:
        raise ValueError(f"path {str(path)!r} cannot be opened for writing ({err.strerror}); give a regular "
                         "file") from None  # fmt: skip
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ValueError(f"path {str(path)!r} is not a regular file; give a regular file")
    os.set_blocking(fd, True)
    return open(fd, "a" if flag == os.O_APPEND else "w", newline="", encoding="utf-8")


class MLflowLogger(Callback):
    """Log a run to MLflow: its settings as parameters, each epoch's metrics (step = epoch), the outcome.

    A sweep is one parent run with a nested run per member (``mlflow.parentRunId``), as MLflow's UI groups
    them. Metrics are sent in batches, at most once a second and at the end. NaN values (no validation
    set) are not logged. Needs ``pip install 'jnn[mlflow]'`` (the ``mlflow-skinny`` client).

    Args:
        experiment: the experiment's name (created if missing).
        run_name: the run's name (a sweep member's: ``"<run_name>/member <i>"``); None lets MLflow pick.
        tracking_uri: where to log, e.g. ``"file:///tmp/mlruns"`` or a server URL (None: MLflow's default,
            ``MLFLOW_TRACKING_URI`` or ``./mlruns``).
        tags: extra ``{name: value}`` tags of the run.

    Attributes:
        run_id: the (parent) run's id once training began; ``member_run_ids``: a sweep's member runs.
    """

    FLUSH_EVERY_S = 1.0

    def __init__(self, experiment: str = "jnn", *, run_name: str | None = None, tracking_uri: str | None = None,
                 tags: dict | None = None):  # fmt: skip
        for name, v in (("experiment", experiment), ("run_name", run_name), ("tracking_uri", tracking_uri)):
            if v is not None and (not isinstance(v, str) or not v.strip()):
                raise TypeError(f"{name} must be a non-empty string{'' if name == 'experiment' else ' or None'}; "
                                f"got {v!r}")  # fmt: skip
        if tags is not None and not isinstance(tags, dict):
            raise TypeError(f"tags must be a dict or None; got {type(tags).__name__}")
        self.experiment, self.run_name, self.tracking_uri = experiment, run_name, tracking_uri
        self.tags = dict(tags or {})
        self.run_id, self.member_run_ids = None, {}
        self._client = None
        self._pending: dict = {}
        self._sent_at = 0.0

    def on_train_begin(self, run: RunInfo) -> None:
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise ImportError("MLflowLogger needs MLflow: pip install 'jnn[mlflow]'") from None
        self._client = MlflowClient(tracking_uri=self.tracking_uri)
        found = self._client.get_experiment_by_name(self.experiment)
        self._experiment_id = (
            found.experiment_id if found is not None else self._client.create_experiment(self.experiment)
        )
        self._members = run.members
        self.run_id = self._start(self.run_name, {"jnn.members": str(run.members)})
        self._params(self.run_id, run.params)

    def _start(self, name, tags) -> str:
        run = self._client.create_run(self._experiment_id, run_name=name, tags={**self.tags, **tags})
        return run.info.run_id

    def _params(self, run_id: str, params: dict) -> None:
        from mlflow.entities import Param

        items = [Param(str(k), str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per batch
            self._client.log_batch(run_id, params=items[i : i + 100])

    def _member_run(self, member: int) -> str:
        if self._members <= 1:
            return self.run_id
        rid = self.member_run_ids.get(member)
        if rid is None:
            name = f"{self.run_name or 'sweep'}/member {member}"
            rid = self._start(name, {"mlflow.parentRunId": self.run_id, "jnn.member": str(member)})
            self.member_run_ids[member] = rid
        return rid

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        from mlflow.entities import Metric

        rid = self._member_run(int(logs.get("member", 0)))
        now = int(time.time() * 1000)
        values = finite_logs({k: v for k, v in logs.items() if k != "member"})
        self._pending.setdefault(rid, []).extend(Metric(k, v, now, epoch) for k, v in values.items())
        if time.monotonic() - self._sent_at >= self.FLUSH_EVERY_S:
            self._flush()

    def _flush(self) -> None:
        for rid, metrics in self._pending.items():
            for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
                self._client.log_batch(rid, metrics=metrics[i : i + 1000])
        self._pending = {}
        self._sent_at = time.monotonic()

    def on_train_end(self, result) -> None:
        self._flush()
        rows = getattr(result, "rows", None)
        if rows is None:
            self._client.set_tag(self.run_id, "jnn.stopped_by", result.stopped_by)
            self._client.set_tag(self.run_id, "jnn.best_epoch", str(result.best_epoch + 1 if result.best_epoch >= 0
                                                                    else "none"))  # fmt: skip
        else:
            for row in rows:
                rid = self._member_run(int(row["member"]))
                self._client.set_tag(rid, "jnn.stopped_by", str(row["stopped_by"]))
                self._client.set_terminated(rid, "FINISHED")
        self._client.set_terminated(self.run_id, "FINISHED")

    def on_train_abort(self, error: BaseException) -> None:
        if self._client is None or self.run_id is None:
            return
        self._flush()
        status = "KILLED" if isinstance(error, KeyboardInterrupt) else "FAILED"
        for rid in [*self.member_run_ids.values(), self.run_id]:
            self._client.set_terminated(rid, status)


__all__ = ["CSVLogger", "MLflowLogger"]
