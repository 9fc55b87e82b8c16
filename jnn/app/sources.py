"""Where a command-line run's data come from: a built-in data set, or the user's own files.

A *source* is a small JSON-ready dict stored in the run (``config.json`` under ``data.source``), so that
``jnn train --out RUN --resume`` finds the same data again:

- ``{"dataset": "mnist1d"}``: a built-in data set (:mod:`jnn.datasets`), with its own test split;
- ``{"data": PATH, "target": ..., "features": ..., "standardize": bool, "val_data": PATH | None,
  "test_data": PATH | None, "na_values": [...]}`` (``na_values`` only when given): a CSV or ``.npz`` file
  (:mod:`jnn.app.tabular`); an ``.npz`` may carry its own ``x_val``/``y_val`` and ``x_test``/``y_test``.
"""

from __future__ import annotations

from pathlib import Path

from jnn.app import tabular
from jnn.data import Dataset


def source_name(source: dict) -> str:
    """A short name for run folders and messages: the data set, or the data file's stem."""
    return source["dataset"] if "dataset" in source else Path(source["data"]).stem


def load_source(source: dict, config, loss: str) -> tuple[Dataset, Dataset | None, Dataset | None, dict]:
    """The data of a source for a run of ``config`` with ``loss``.

    Args:
        source: as in the module docstring.
        config: the run's :class:`jnn.TrainConfig` (its seed and ``val_fraction`` fix the training split that
            standardisation learns from).
        loss: the model's loss (:attr:`jnn.MLP.loss`); it decides how targets are read.

    Returns:
        ``(train, val, test, data_info)``: ``val`` only when the source has explicit validation data
        (otherwise ``fit`` carves it from ``train``), ``test`` when it has test data, and ``data_info`` for
        ``fit(..., data_info=...)``: the source and, for files, the :class:`jnn.app.tabular.Preprocessing`.

    Raises:
        ValueError: an unknown data set, or a missing or malformed file (nothing is written before).
    """
    if "dataset" in source:
        from jnn.datasets import load

        train, test = load(source["dataset"], seed=config.seed)
        return train, None, test, {"source": source}
    from jnn.losses import get_loss
    from jnn.train.run_setup import prepare_data

    kw = {"target": source.get("target"), "features": source.get("features"), "na_values": source.get("na_values", ())}
    path = Path(source["data"])
    if path.suffix.lower() == ".npz" and path.is_file():
        tables = tabular.read_npz(path, what="--data")
    else:
        tables = {"train": tabular.read_table(path, what="--data", **kw)}
    for split, flag in (("val", "val_data"), ("test", "test_data")):
        if source.get(flag):
            tables[split] = tabular.read_table(source[flag], what=f"--{flag.replace('_', '-')}", **kw)
    prep = tabular.learn(tables["train"], loss)
    val = tabular.dataset(tables["val"], prep) if "val" in tables else None
    if source.get("standardize"):
        fit_ds, _ = prepare_data(tabular.dataset(tables["train"], prep), config, val)  # the split fit will use
        prep = prep.standardized_on(fit_ds.x)
        if get_loss(loss).target_scaling:  # regression targets too
            prep = prep.targets_standardized_on(fit_ds.y)
        val = tabular.dataset(tables["val"], prep) if "val" in tables else None
    train = tabular.dataset(tables["train"], prep)
    test = tabular.dataset(tables["test"], prep) if "test" in tables else None
    return train, val, test, {"source": source, "preprocessing": prep.to_dict()}


__all__ = ["load_source", "source_name"]
