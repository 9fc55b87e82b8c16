"""Where a command-line run's data come from: a built-in data set, or the user's own files.

A *source* is a small JSON-ready dict stored in the run (``config.json`` under ``data.source``), so that
``jnn train --out RUN --resume`` finds the same data again:

- ``{"dataset": "mnist1d"}``: a built-in data set (``jnn.datasets``), with its own test split;
- ``{"data": PATH, "target": ..., "features": ..., "standardize": bool, "val_data": PATH | None,
  "test_data": PATH | None, "na_values": [...]}`` (``na_values`` only when given): a CSV or ``.npz`` file
  (``jnn.app.tabular``); an ``.npz`` may carry its own ``x_val``/``y_val`` and ``x_test``/``y_test``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from jnn.app import tabular
from jnn.data import Dataset


def source_name(source: dict) -> str:
    """A short name for run folders and messages: the data set, or the data file's stem."""
    return source["dataset"] if "dataset" in source else Path(source["data"]).stem


def load_source(source: dict, config, loss: str) -> tuple[Dataset, Dataset | None, Dataset | None, dict]:
    """The data of a source for a run of ``config`` with ``loss``.

    Args:
        source: as in the module docstring.
        config: the run's ``jnn.TrainConfig`` (its seed and ``val_fraction`` fix the training split that
            standardisation learns from).
        loss: the model's loss (``jnn.MLP.loss``); it decides how targets are read.

    Returns:
        ``(train, val, test, data_info)``: ``val`` only when the source has explicit validation data
        (otherwise ``fit`` carves it from ``train``), ``test`` when it has test data, and ``data_info`` for
        ``fit(..., data_info=...)``: the source and, for files, the ``jnn.app.tabular.Preprocessing``.

    Raises:
        ValueError: an unknown data set, or a missing or malformed file (nothing is written before).
    """
    if "dataset" in source:
        from jnn.datasets import load

        train, test = load(source["dataset"], seed=config.seed)
        return train, None, test, {"source": source}
    from jnn.losses import get_loss

    kw = {"target": source.get("target"), "features": source.get("features"), "na_values": source.get("na_values", ()),
          "delimiter": source.get("delimiter")}  # fmt: skip
    path = Path(source["data"])
    if path.suffix.lower() == ".npz" and path.is_file():
        tables = tabular.read_npz(path, what="--data")
    else:
        tables = {"train": tabular.read_table(path, what="--data", categorical=source.get("categorical"), **kw)}
    prep = tabular.learn(tables["train"], loss, impute=source.get("impute"),
                         unknown=source.get("unknown_category", "error"))  # fmt: skip
    for split, flag in (("val", "val_data"), ("test", "test_data")):
        if source.get(flag):
            tables[split] = tabular.read_table(source[flag], what=f"--{flag.replace('_', '-')}",
                                               categorical=prep.categorical, **kw)  # fmt: skip
    rows = fit_rows(tables["train"], prep, config, "val" in tables)
    prep = prep.imputed_on(tables["train"], rows, fill_value=source.get("fill_value", 0.0))
    if source.get("standardize"):
        fit_ds = tabular.dataset(tables["train"], prep).subset(rows)  # the split fit will train on
        prep = prep.standardized_on(fit_ds.x)
        if get_loss(loss).target_scaling:  # regression targets too
            prep = prep.targets_standardized_on(fit_ds.y)
    train = tabular.dataset(tables["train"], prep)
    if not source.get("standardize"):
        scale_warning(train.x[rows], prep)
    val = tabular.dataset(tables["val"], prep) if "val" in tables else None
    test = tabular.dataset(tables["test"], prep) if "test" in tables else None
    return train, val, test, {"source": source, "preprocessing": prep.to_dict()}


def fit_rows(table, prep, config, has_val: bool) -> np.ndarray:
    """The indices of the rows of the training table that ``fit`` will train on: all of them with explicit
    validation data or ``val_fraction == 0``, else the split ``fit`` carves (it depends on the targets, the seed and
    the row count only, so it is made here on the row indices)."""
    from jnn.train.run_setup import prepare_data

    n = table.x.shape[0]
    if has_val or config.val_fraction == 0.0:
        return np.arange(n)
    index = Dataset(np.arange(n, dtype=np.float64)[:, None], prep.encode(table.y), num_classes=prep.num_classes)
    fit_ds, _ = prepare_data(index, config)
    return fit_ds.x[:, 0].astype(np.int64)


def class_weight_of(source: dict, info: dict):
    """The ``class_weight`` argument of ``fit``/``sweep`` from a source's ``--class-weight`` text: None,
    ``"balanced"``, or a JSON object ``{label: weight}`` (labels as in the file, mapped to class indices) or list.

    Raises:
        ValueError: text that is neither ``balanced`` nor JSON of that shape, or a label the data does not hold.
    """
    text = source.get("class_weight")
    if text is None or text == "balanced":
        return text
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ValueError(f"--class-weight must be balanced or JSON such as '{{\"M\": 2}}' or '[1, 2]'; got "
                         f"{text!r}") from None  # fmt: skip
    if isinstance(value, list):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"--class-weight JSON must be an object {{label: weight}} or a list; got {text!r}")
    classes = (info.get("preprocessing") or {}).get("classes")
    names = {str(c): i for i, c in enumerate(classes or [])}
    out = {}
    for label, w in value.items():
        if str(label) in names:
            out[names[str(label)]] = w
        elif classes is None and str(label).isdigit():
            out[int(label)] = w
        else:
            raise ValueError(f"--class-weight names the label {label!r}, which the data does not hold; its classes "
                             f"are {classes}")  # fmt: skip
    return out


#: Feature scales (standard deviations) spanning more than this factor get a warning without ``--standardize``.
SCALE_SPAN = 1e3


def scale_warning(x_fit: np.ndarray, prep) -> str | None:
    """Print (to standard error) and return a warning when the numeric features' standard deviations on the
    training rows span more than ``SCALE_SPAN`` (an unscaled model may then learn only the majority class);
    None when they do not."""
    numeric = x_fit[:, : prep.n_features - prep.onehot_width]
    std = numeric.std(axis=0) if numeric.size else np.zeros(0)
    std = std[std > 0]
    if std.size < 2 or std.max() / std.min() <= SCALE_SPAN:
        return None
    span = np.log10(std.max() / std.min())
    text = (f"warning: the feature scales span {span:.1f} orders of magnitude (std {std.min():.3g} to "
            f"{std.max():.3g}); an unscaled network may learn little: add --standardize")  # fmt: skip
    print(text, file=sys.stderr, flush=True)
    return text


__all__ = ["class_weight_of", "fit_rows", "load_source", "scale_warning", "source_name"]
