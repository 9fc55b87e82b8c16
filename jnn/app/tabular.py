"""Your own data: a CSV file with a header row, or a ``.npz`` file, read into ``jnn.Dataset``, with the
preprocessing a run stores and applies again at prediction time.

- CSV: parsed by Python's ``csv`` module; ``target`` names the label column(s) (default: the last column),
  ``features`` the input columns (default: every other column). Every feature cell must be a finite
  number; the target may hold strings (class names), which are encoded.
- ``.npz``: arrays ``x [n, d]`` and ``y [n]``/``[n, k]``, optionally ``x_val``/``y_val`` and
  ``x_test``/``y_test``.

Class labels (any values: strings, or numbers such as wine qualities 3..8) are encoded as indices into the
sorted distinct training labels, as scikit-learn's ``LabelEncoder`` does; ``standardize`` learns a mean and
standard deviation per feature on the training split only. Both live in a ``Preprocessing``, stored in
the run (``config.json``, under ``data``) and read back by ``jnn.load_run``.

Every malformed file is refused with a ``ValueError`` naming the file, the row (as a line number of the
file) or the column, and the fix.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from jnn.disk import npy_header
from jnn.losses import REGISTRY, TARGETS

#: How targets are read for each built-in loss: class labels, real values, or 0/1 columns (``Loss.kind``).
KIND_OF_LOSS = {name: loss.kind for name, loss in REGISTRY.items()}
#: The kinds of targets a run's preprocessing knows.
KINDS = tuple(TARGETS)


@dataclass(frozen=True)
class Table:
    """Columns read from a file.

    Attributes:
        x: ``[n, d]`` float64 numeric feature columns; NaN where a cell was empty (or a ``--na-values`` cell).
        y: ``[n]`` or ``[n, k]`` raw target values, or None when the file has no target.
        features: the numeric feature columns' names (None for ``.npz``).
        targets: the target columns' names (None for ``.npz``).
        path: the file.
        cat: ``[n, c]`` strings of the categorical feature columns (``""`` where missing), or None.
        cat_features: their names (None when there are none).
        missing: ``{column: (empty cells, first row as a line number)}`` of the feature columns with empty cells.
    """

    x: np.ndarray
    y: np.ndarray | None
    features: list | None
    targets: list | None
    path: str
    cat: np.ndarray | None = None
    cat_features: list | None = None
    missing: dict = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class Preprocessing:
    """What a run learned about its data and applies to new inputs.

    Attributes:
        kind: ``"classes"``, ``"values"`` or ``"multilabel"`` (from the loss, see ``KIND_OF_LOSS``).
        n_features: input width d.
        features: the CSV feature columns, in order (None for ``.npz`` data).
        targets: the CSV target columns (None for ``.npz``).
        classes: the distinct training labels, sorted; class ``i`` of the model is ``classes[i]``
            (None unless ``kind == "classes"``).
        mean, std: per-feature standardisation learned on the training split (None: not standardised).
        target_mean, target_std: for regression (``kind == "values"``), the per-target standardisation learned
            on the training split with ``--standardize``: the model trains on ``(y - target_mean) / target_std``
            and ``decode_values`` maps its outputs back (None: targets as they are).
        impute: how missing feature cells are filled (``IMPUTE``), or None (a missing cell is refused).
        fill: the value each model input's missing cells get, learned on the training split (None: no imputation).
        categorical: the categorical feature columns, one-hot encoded after the numeric ones (None: none).
        categories: each categorical column's categories, sorted (the one-hot columns' order).
        category_fill: each categorical column's most frequent training category, for its missing cells (with
            ``impute``).
        unknown: a category not seen in training at prediction time: ``"error"`` (refused, named) or
            ``"ignore"`` (an all-zero one-hot row, scikit-learn's ``handle_unknown="ignore"``).

    The model's inputs are the numeric ``features`` (imputed) followed by the one-hot columns of ``categorical``;
    ``n_features`` counts them all, and ``mean``/``std``/``fill`` hold one entry per input.
    """

    kind: str
    n_features: int
    features: list | None = None
    targets: list | None = None
    classes: list | None = None
    mean: list | None = None
    std: list | None = None
    target_mean: list | None = None
    target_std: list | None = None
    impute: str | None = None
    fill: list | None = None
    categorical: list | None = None
    categories: list | None = None
    category_fill: list | None = None
    unknown: str = "error"

    @property
    def onehot_width(self) -> int:
        """The number of one-hot inputs (0 without categorical columns)."""
        return sum(len(c) for c in self.categories or [])

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, what: str = "preprocessing") -> Preprocessing:
        """Inverse of ``to_dict``, validated: a stored record may have been edited by hand.

        Raises:
            ValueError: naming ``what`` and the field: an unknown key or kind, a width that is not a positive
                int, feature names, means or stds not one per feature, a non-finite mean, a std that is not
                finite and positive, or classes that are not distinct or fewer than two.
        """
        if not isinstance(d, dict):
            raise ValueError(f"{what} must be an object; got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown or "kind" not in d or "n_features" not in d:
            raise ValueError(f"{what} must have the keys {known} (kind and n_features at least); got {sorted(d)}")
        if d["kind"] not in KINDS:
            raise ValueError(f"{what}.kind must be one of {list(KINDS)}; got {d['kind']!r}")
        n = d["n_features"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{what}.n_features must be a positive int; got {n!r}")
        _check_columns(d, what)
        width = sum(len(c) for c in d.get("categories") or [])
        for key, want in (("features", n - width), ("mean", n), ("std", n), ("fill", n)):
            v = d.get(key)
            if v is not None and (not isinstance(v, list) or len(v) != want):
                got = f"{len(v)} values" if isinstance(v, list) else repr(v)
                raise ValueError(f"{what}.{key} must hold one entry per "
                                 f"feature ({want}); got {got}")  # fmt: skip
        for m_key, s_key, unit in (("mean", "std", "feature"), ("target_mean", "target_std", "target")):
            if (d.get(m_key) is None) != (d.get(s_key) is None):
                raise ValueError(f"{what} must have both {m_key} and {s_key}, or neither")
            if d.get(m_key) is None:
                continue
            mean, std = (np.asarray(d[k], dtype=object) for k in (m_key, s_key))
            if unit == "target" and (d["kind"] != "values" or len(mean) != len(std) or not len(mean)):
                raise ValueError(f"{what}.{m_key}/{s_key} are for regression targets, one entry per target")
            for key, arr in ((m_key, mean), (s_key, std)):
                if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in arr):
                    raise ValueError(f"{what}.{key} must hold numbers")
            bad = [i for i, (m, s) in enumerate(zip(mean, std)) if not np.isfinite(m) or not (np.isfinite(s) and s > 0)]
            if bad:
                i = bad[0]
                raise ValueError(f"{what}: {unit} {i} has mean {mean[i]!r} and std {std[i]!r}; a mean must be finite "
                                 "and a std finite and positive")  # fmt: skip
        classes = d.get("classes")
        if classes is not None:
            if not isinstance(classes, list) or len(classes) < 2:
                raise ValueError(f"{what}.classes must list at least two classes; got {classes!r}")
            keys = [_key(c) for c in classes]
            if len(set(keys)) != len(keys):
                dup = next(c for c, k in zip(classes, keys) if keys.count(k) > 1)
                raise ValueError(f"{what}.classes must be distinct; {dup!r} appears more than once in {classes}")
        return cls(**d)

    def transform(self, x, *, what: str = "x") -> np.ndarray:
        """Inputs as the model saw them in training: ``[n, d]`` float32, standardised when learned.

        Raises:
            ValueError: a width other than ``n_features``, or non-finite values.
        """
        x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 and self.n_features == x.shape[0]:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_features:
            raise ValueError(f"{what} must be [n, {self.n_features}] (the model's inputs); got shape {x.shape}")
        if self.fill is not None and x.dtype.kind == "f" and np.isnan(x).any():
            x = np.where(np.isnan(x), np.asarray(self.fill, np.float64), x)
        _check_finite_rows(x, what)
        if self.mean is None:
            return x if x.dtype == np.float32 else x.astype(np.float32)
        mean, std = np.asarray(self.mean, np.float64), np.asarray(self.std, np.float64)
        out = np.empty(x.shape, np.float32)  # in blocks of rows: float64 arithmetic, no float64 copy of x
        for lo in range(0, x.shape[0], ROW_BLOCK):
            out[lo : lo + ROW_BLOCK] = (x[lo : lo + ROW_BLOCK].astype(np.float64) - mean) / std
        return out

    def encode(self, y, *, what: str = "y") -> np.ndarray:
        """Targets as the model trains on them: class indices (int32), float32 values, or 0/1 int32 columns.

        Raises:
            ValueError: a label not seen in training, non-numeric or non-finite values, or non-0/1 labels.
        """
        y = np.asarray(y)
        if self.kind == "classes" and self.classes is None:  # a run without label encoding: indices as they are
            return _numeric(y, what).astype(np.int32)
        if self.kind == "classes":
            index = {_key(c): i for i, c in enumerate(self.classes)}
            out = np.empty(y.shape[0], np.int32)
            for i, v in enumerate(y.reshape(y.shape[0], -1)[:, 0]):
                if _key(v) not in index:
                    raise ValueError(
                        f"{what} holds the label {_plain(v)!r} (row {i}), which the model was not trained on; "
                        f"its classes are {self.classes}"
                    )
                out[i] = index[_key(v)]
            return out
        num = _numeric(y, what)
        if self.kind == "multilabel":
            if not np.all(np.isin(num, (0.0, 1.0))):
                raise ValueError(f"{what} must hold 0/1 labels for a multi-label task; got values {np.unique(num)[:5]}")
            return num.astype(np.int32)
        if self.target_mean is not None:
            num = (num - self._target_axis(self.target_mean, num)) / self._target_axis(self.target_std, num)
        return num.astype(np.float32)

    @staticmethod
    def _target_axis(values: list, y: np.ndarray) -> np.ndarray:
        """``values`` (one per target) shaped to broadcast over ``y`` (``[n]`` or ``[n, k]``)."""
        v = np.asarray(values, np.float64)
        return v[0] if y.ndim == 1 else v

    def decode_values(self, out) -> np.ndarray:
        """A regression model's outputs back in the targets' own units: ``out × target_std + target_mean`` (as
        they are when the targets were not standardised)."""
        out = np.asarray(out)
        if self.target_mean is None:
            return out
        return out * self._target_axis(self.target_std, out) + self._target_axis(self.target_mean, out)

    def targets_standardized_on(self, y) -> Preprocessing:
        """This preprocessing with a per-target mean and std learned on the regression targets ``y`` (``[n]`` or
        ``[n, k]``, the training split only); a constant target keeps std 1. Other kinds come back unchanged."""
        if self.kind != "values":
            return self
        y = np.asarray(y, np.float64).reshape(len(y), -1)
        std = y.std(axis=0)
        return replace(self, target_mean=y.mean(axis=0).tolist(), target_std=np.where(std > 0, std, 1.0).tolist())

    def decode(self, indices) -> np.ndarray:
        """Class indices back to the user's labels (an object array of strings, or numbers)."""
        values = [_plain(c) for c in self.classes]
        arr = np.asarray(values, dtype=object if any(isinstance(v, str) for v in values) else None)
        return arr[np.asarray(indices)]

    def one_hot(self, table: Table, *, what: str = "x") -> np.ndarray:
        """``[n, onehot_width]`` float64 one-hot columns of the table's categorical columns (picked by name).

        Raises:
            ValueError: a categorical column the table lacks, a missing cell without ``impute``, or (with
                ``unknown="error"``) a category not seen in training, named with its row.
        """
        have = {c: k for k, c in enumerate(table.cat_features or [])}
        lacking = [c for c in self.categorical if c not in have]
        if lacking:
            raise ValueError(f"{what} lacks the categorical column(s) {lacking} the model was trained on "
                             "(read it with categorical=the run's categorical columns)")  # fmt: skip
        n = table.x.shape[0]
        out = np.zeros((n, self.onehot_width), np.float64)
        at = 0
        for k, (col, cats) in enumerate(zip(self.categorical, self.categories)):
            index = {c: i for i, c in enumerate(cats)}
            for r, v in enumerate(table.cat[:, have[col]]):
                if v == "" and self.category_fill is not None:
                    v = self.category_fill[k]
                i = index.get(v)
                if i is not None:
                    out[r, at + i] = 1.0
                elif v == "":
                    raise ValueError(f"{what}: row {r}, categorical column {col!r} is empty; train with --impute")
                elif self.unknown == "error":
                    raise ValueError(f"{what}: row {r}, column {col!r} holds the category {v!r}, which the model "
                                     f"was not trained on (its categories: {cats[:10]}); train with "
                                     "--unknown-category ignore (all-zero one-hot columns for it)")  # fmt: skip
            at += len(cats)
        return out

    def imputed_on(self, table: Table, rows, *, fill_value: float = 0.0) -> Preprocessing:
        """This preprocessing with the fill values of ``impute`` learned on the training rows ``rows`` of
        ``table`` (the split the fit trains on): per numeric column its mean, median or most frequent value (the
        smallest of ties) over the present cells, or ``fill_value`` (``"constant"``; also a column with no
        value at all); per categorical column its most frequent category."""
        if self.impute is None:
            return self
        x = table.x[np.asarray(rows)]
        fill = []
        for j in range(x.shape[1]):
            col = x[:, j][~np.isnan(x[:, j])]
            if self.impute == "constant" or col.size == 0:
                fill.append(float(fill_value))
            elif self.impute == "mean":
                fill.append(float(col.mean()))
            elif self.impute == "median":
                fill.append(float(np.median(col)))
            else:
                values, counts = np.unique(col, return_counts=True)
                fill.append(float(values[np.argmax(counts)]))
        fill += [0.0] * self.onehot_width  # one-hot inputs are never missing (a missing category is filled)
        category_fill = None
        if self.categorical:
            category_fill = []
            for k, cats in enumerate(self.categories):
                present = [v for v in table.cat[np.asarray(rows), k] if v != ""]
                counts = {c: 0 for c in cats}
                for v in present:
                    counts[v] = counts.get(v, 0) + 1
                best = max(range(len(cats)), key=lambda i: (counts[cats[i]], -i))  # ties: the first in sort order
                category_fill.append(cats[best])
        return replace(self, fill=fill, category_fill=category_fill)

    def standardized_on(self, x) -> Preprocessing:
        """This preprocessing with a per-feature mean and std learned on ``x [n, d]`` (the training split
        only, so that validation and test data stay unseen); a constant feature keeps std 1."""
        x = np.asarray(x)
        n = x.shape[0]
        mean = np.zeros(x.shape[1], np.float64)
        for lo in range(0, n, ROW_BLOCK):  # in blocks of rows, in float64: no float64 copy of x
            mean += x[lo : lo + ROW_BLOCK].sum(axis=0, dtype=np.float64)
        mean /= n
        var = np.zeros(x.shape[1], np.float64)
        for lo in range(0, n, ROW_BLOCK):
            var += np.square(x[lo : lo + ROW_BLOCK].astype(np.float64) - mean).sum(axis=0)
        std = np.sqrt(var / n)
        return replace(self, mean=mean.tolist(), std=np.where(std > 0, std, 1.0).tolist())

    @property
    def num_classes(self) -> int | None:
        """Number of classes (None unless ``kind == "classes"``)."""
        return None if self.classes is None else max(len(self.classes), 2)


#: How missing feature cells are filled (scikit-learn's ``SimpleImputer`` strategies), learned on the training split.
IMPUTE = ("mean", "median", "most_frequent", "constant")
#: What a category unseen in training does at prediction time.
UNKNOWN = ("error", "ignore")


def _check_columns(d: dict, what: str) -> None:
    """The imputation and categorical fields of a stored preprocessing record."""
    if d.get("impute") is not None and d["impute"] not in IMPUTE:
        raise ValueError(f"{what}.impute must be one of {list(IMPUTE)} or null; got {d['impute']!r}")
    if d.get("unknown", "error") not in UNKNOWN:
        raise ValueError(f"{what}.unknown must be one of {list(UNKNOWN)}; got {d['unknown']!r}")
    cols, cats, fill = d.get("categorical"), d.get("categories"), d.get("category_fill")
    if cols is None and cats is None and fill is None:
        return
    ok = isinstance(cols, list) and isinstance(cats, list) and len(cols) == len(cats) and all(
        isinstance(c, list) and c and all(isinstance(v, str) for v in c) for c in cats)  # fmt: skip
    if not ok or (fill is not None and (not isinstance(fill, list) or len(fill) != len(cols))):
        raise ValueError(f"{what}.categorical, .categories and .category_fill must name the categorical columns, "
                         "list each one's categories (strings) and its fill category")  # fmt: skip


def missing_message(table: Table, what: str) -> str:
    """``"--data 'x.csv' has 10 empty feature cells: column 'a': 6 (first at row 3), ..."``."""
    total = sum(c for c, _ in table.missing.values())
    cols = "; ".join(f"column {c!r}: {k} (first at row {first})" for c, (k, first) in table.missing.items())
    return f"{what} has {total} empty feature cell{'s' if total != 1 else ''}: {cols}"


#: Rows per block of the preprocessing's float64 arithmetic (a few MB at a time, never a float64 copy of x).
ROW_BLOCK = 16384


def _check_finite_rows(x: np.ndarray, what: str) -> None:
    """Refuse a non-finite value, naming its row and column (checked in blocks of rows: no mask of x's size)."""
    if x.dtype.kind != "f":
        return
    for lo in range(0, x.shape[0], ROW_BLOCK):
        block = x[lo : lo + ROW_BLOCK]
        if not np.isfinite(block).all():
            r, c = np.argwhere(~np.isfinite(block))[0]
            raise ValueError(f"{what} holds a missing or non-finite value at row {lo + r}, column {c}; drop or fill "
                             "it, or train with --impute")  # fmt: skip


def _key(v):
    """A label's identity across files: numbers by value (``3`` == ``3.0`` == ``"3"`` in a CSV), strings as is."""
    v = _plain(v)
    if isinstance(v, str):
        try:
            f = float(v)
            return ("n", f) if math.isfinite(f) else ("s", v)
        except ValueError:
            return ("s", v)
    return ("n", float(v))


def _plain(v):
    """A NumPy scalar as a plain Python value; integral floats as int (labels 3.0 read back as 3)."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def _numeric(y, what: str) -> np.ndarray:
    try:
        num = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError):
        flat = np.asarray(y, dtype=object).reshape(len(y), -1)
        row, bad = next((i, v) for i, r in enumerate(flat) for v in r if not _is_number(v))
        raise ValueError(
            f"{what} must be numbers for this loss; row {row} holds {bad!r} (class labels need --loss softmax or "
            "binary)"
        ) from None
    if not np.all(np.isfinite(num)):
        r = int(np.argwhere(~np.isfinite(num))[0][0])
        raise ValueError(f"{what} holds a missing or non-finite value at row {r}; drop or fill it")
    return num


def _is_number(v) -> bool:
    try:
        float(v)
        return True
    except (TypeError, ValueError):
        return False


def read_table(
    path,
    *,
    target=None,
    features=None,
    what: str = "--data",
    need_target: bool = True,
    split: str = "train",
    na_values=(),
    delimiter: str | None = None,
    categorical=None,
    features_flag: str = "--features",
) -> Table:
    """Read a CSV (header row) or ``.npz`` file.

    Args:
        path: the file (``.csv`` or ``.npz``).
        target: CSV target column(s), a name, comma-separated names or a list (default: the last column;
            an empty list: none). Ignored for npz.
        features: CSV feature columns (default: all but the target columns).
        what: how the file is named in messages (the flag it came from).
        need_target: False for prediction inputs: a CSV without the target column is fine (its features
            are still picked by name).
        split: for ``.npz``, which arrays: ``"train"`` (``x``, ``y``), ``"val"`` or ``"test"``.
        na_values: CSV cells that mean a missing value besides an empty cell (``["NA", "?"]``); without it
            ``NA``, ``null`` and ``nan`` in a label column are labels like any other.
        delimiter: the CSV delimiter (default: sniffed from the header line: comma, semicolon, tab or pipe; a
            semicolon file may write decimal commas, ``3,14``).
        categorical: feature columns read as categories (strings), a name list or comma-separated names, or
            ``"auto"``: every feature column that holds text. None: a text cell in a feature column is refused.
        features_flag: how the feature columns' source is named in messages (``"--features"``, or the run's
            feature columns at prediction time).

    Returns:
        A ``Table`` (for ``.npz``, the ``x``/``y`` arrays). A CSV is read in two streaming passes into
        preallocated arrays, so memory stays near the arrays' size.

    Raises:
        ValueError: a missing, empty or malformed file, naming the row or column and the fix.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {str(p)!r} does not exist (expected a .csv file with a header row or a .npz file)")
    if p.suffix.lower() == ".npz":
        tables = read_npz(p, what=what, need_target=need_target)
        if split not in tables:
            raise ValueError(
                f"{what} {str(p)!r} has no {split} arrays (x_{split}, y_{split}); it holds {sorted(tables)}"
            )
        return tables[split]
    if p.suffix.lower() not in (".csv", ".txt", ".tsv"):
        raise ValueError(f"{what} {str(p)!r}: unknown file type {p.suffix!r}; use .csv (with a header row) or .npz")
    if split != "train":
        raise ValueError(f"--split {split} is for .npz files (x_{split}, y_{split}); {str(p)!r} is a CSV, one table: "
                         f"give the file of the {split} split as {what} (and leave --split out)")  # fmt: skip
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1):
        raise ValueError(f"--delimiter must be one character such as ';' or '\\t'; got {delimiter!r}")
    return _read_csv(p, target, features, what, need_target, na_values, delimiter=delimiter,
                     categorical=categorical, features_flag=features_flag)  # fmt: skip


#: The delimiters a CSV file's header is sniffed for (``--delimiter`` names one outright).
DELIMITERS = (",", ";", "\t", "|")


def sniff_delimiter(header_line: str, suffix: str = ".csv") -> str:
    """The delimiter of a CSV file from its header line: the one of ``DELIMITERS`` it holds most often
    (tab for ``.tsv``; comma when it holds none, a one-column file)."""
    if suffix.lower() == ".tsv":
        return "\t"
    counts = {d: header_line.count(d) for d in DELIMITERS}
    best = max(DELIMITERS, key=lambda d: (counts[d], d == ","))
    return best if counts[best] else ","


def _csv_rows(p: Path, what: str, delimiter: str | None = None):
    """The non-blank rows of a CSV file, streamed, split at ``delimiter`` (default: sniffed from the header line,
    see ``sniff_delimiter``); errors name the file."""
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            first = fh.readline()
            fh.seek(0)
            delim = delimiter or sniff_delimiter(first, p.suffix)
            for r in csv.reader(fh, delimiter=delim):
                if any(c.strip() for c in r):
                    yield r
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {str(p)!r} is not UTF-8 text ({err}); save it as UTF-8 CSV") from None
    except csv.Error as err:
        raise ValueError(f"{what} {str(p)!r} is not valid CSV: {err}") from None


def _number(cell: str, decimal_comma: bool) -> float | None:
    """The number in a cell (``3,14`` too in a semicolon file, Excel's decimal comma), or None."""
    try:
        return float(cell)
    except ValueError:
        if decimal_comma and cell.count(",") == 1:
            try:
                return float(cell.replace(",", "."))
            except ValueError:
                return None
        return None


def _read_csv(p: Path, target, features, what: str, need_target: bool, na_values=(), *, delimiter=None,
              categorical=None, features_flag: str = "--features") -> Table:  # fmt: skip
    # Two streaming passes, so that memory stays near the arrays' size (not a list of every cell's string): the
    # first checks the shape, counts the rows and finds the columns that hold text, the second fills the arrays.
    with open(p, newline="", encoding="utf-8-sig", errors="replace") as fh:
        delim = delimiter or sniff_delimiter(fh.readline(), p.suffix)
    rows = _csv_rows(p, what, delim)
    header = next(rows, None)
    if header is None:
        raise ValueError(f"{what} {str(p)!r} is empty; it needs a header row and at least one data row")
    header = [c.strip() for c in header]
    dup = _first_repeat(header)
    if dup is not None:
        raise ValueError(f"{what} {str(p)!r}: the header names column {dup!r} twice; give columns unique names")
    targets, has_target, feats = _target_and_features(header, target, features, p, what, need_target, features_flag)
    col = {c: j for j, c in enumerate(header)}
    fcols = [col[c] for c in feats]
    missing_values = {"", *(str(v) for v in na_values)}
    decimal_comma = delim == ";"
    empty = {j: [0, 0] for j in fcols}  # column -> [empty cells, first line]
    text: dict = {}  # column -> (line, cell) of its first cell that is not a number
    n = 0
    for n, r in enumerate(rows, start=1):
        if len(r) != len(header):
            raise ValueError(
                f"{what} {str(p)!r}: row {n + 1} has {len(r)} fields but the header has {len(header)} (ragged rows); "
                "fix that row (quote fields that contain the delimiter)"
            )
        for j in fcols:
            cell = r[j].strip()
            if cell in missing_values or cell.lower() == "nan":
                e = empty[j]
                e[0], e[1] = e[0] + 1, e[1] or n + 1
            elif j not in text and _number(cell, decimal_comma) is None:
                text[j] = (n + 1, cell)
    if n == 0:
        raise ValueError(f"{what} {str(p)!r} has a header but no data rows")
    cats = _categorical_columns(categorical, feats, {header[j]: v for j, v in text.items()}, target, p, what)
    nums = [c for c in feats if c not in set(cats)]
    ncols, ccols = [col[c] for c in nums], [col[c] for c in cats]
    tcols = [col[t] for t in targets] if has_target else []
    x = np.empty((n, len(nums)), np.float64)
    cat = np.empty((n, len(cats)), dtype=object) if cats else None
    y = np.empty((n, len(tcols)), dtype=object) if has_target else None
    labels: dict = {}  # one string object per distinct label or category
    rows = _csv_rows(p, what, delim)
    next(rows)
    for i, r in enumerate(rows):
        for k, j in enumerate(ncols):
            cell = r[j].strip()
            v = np.nan if cell in missing_values else _number(cell, decimal_comma)
            if v is None or math.isinf(v):
                raise ValueError(f"{what} {str(p)!r}: row {i + 2}, column {header[j]!r} holds {cell!r}, not a finite "
                                 "number; drop the row or fill the value")  # fmt: skip
            x[i, k] = v
        for k, j in enumerate(ccols):
            cell = r[j].strip()
            cat[i, k] = "" if cell in missing_values else labels.setdefault(cell, cell)
        for k, j in enumerate(tcols):
            cell = r[j].strip()
            if cell in missing_values:
                raise ValueError(
                    f"{what} {str(p)!r}: row {i + 2}, target column {header[j]!r} is missing ({cell!r}); drop the row"
                    + (" (--na-values marks it missing)" if cell else "")
                )
            y[i, k] = labels.setdefault(cell, cell)
    if y is not None and len(targets) == 1:
        y = y[:, 0]
    missing = {header[j]: (c, first) for j, (c, first) in empty.items() if c}
    return Table(x, y, nums, targets if has_target else None, str(p), cat, cats or None, missing)


def _target_and_features(header, target, features, p, what, need_target, flag) -> tuple:
    """``(targets, has_target, features)`` of a CSV header: the target columns (default: the last), whether the
    file holds them, and the feature columns (default: every other)."""
    targets = [header[-1]] if target is None else split_names(target)
    has_target = bool(targets) and all(t in header for t in targets)
    if target is not None and not has_target and need_target:
        missing = next(t for t in targets if t not in header)
        raise ValueError(f"{what} {str(p)!r} has no target column {missing!r}; its columns are {header}")
    if features is None:
        tset = set(targets)
        feats = [c for c in header if c not in tset]
    else:
        feats = _columns(features, header, p, what, flag)
        tset = set(targets) if has_target else set()
        both = [c for c in feats if c in tset]
        if both:
            raise ValueError(f"{what} {str(p)!r}: column {both[0]!r} is the target and a feature ({flag}); a "
                             "model given its own target learns nothing true: leave it out of --features")  # fmt: skip
    if not feats:
        raise ValueError(f"{what} {str(p)!r}: no feature columns left beside the target {targets}")
    return targets, has_target, feats


def _categorical_columns(categorical, feats, text: dict, target, p, what) -> list:
    """The feature columns read as categories: ``categorical`` names them, ``"auto"`` means those holding text;
    without it a column holding text is refused, with the likely fixes (``--target`` when the target was the
    default last column, ``--categorical``, ``--features``)."""
    if categorical == "auto":
        return [c for c in feats if c in text]
    if categorical is not None:
        names = split_names(categorical)
        unknown = [c for c in names if c not in feats]
        if unknown:
            raise ValueError(f"--categorical names {unknown[0]!r}, which is not a feature column of {what} "
                             f"{str(p)!r}; its feature columns are {feats[:20]}")  # fmt: skip
        return [c for c in feats if c in set(names)]
    if text:
        c = next(c for c in feats if c in text)
        line, cell = text[c]
        guess = f"did you mean --target {c}? Or " if target is None else ""
        raise ValueError(
            f"{what} {str(p)!r}: row {line}, column {c!r} holds {cell!r}, not a number; features must be numeric: "
            f"{guess}one-hot encode it with --categorical {c} (or --categorical auto), or leave it out with "
            "--features"
        )
    return []


def split_names(spec) -> list:
    """Names from ``"a,b"`` (CSV columns, ``--na-values``) or a sequence (empty: none)."""
    return [s.strip() for s in spec.split(",") if s.strip()] if isinstance(spec, str) else list(spec)


def _columns(spec, header, p, what, flag) -> list:
    """The columns ``spec`` names, each in ``header`` and named once (linear in the columns: a set lookup)."""
    names = split_names(spec)
    known = set(header)
    for n in names:
        if n not in known:
            shown = header if len(header) <= 20 else [*header[:20], f"... ({len(header)} columns)"]
            raise ValueError(f"{what} {str(p)!r} has no column {n!r} ({flag}); its columns are {shown}")
    dup = _first_repeat(names)
    if dup is not None:
        raise ValueError(f"{flag} names column {dup!r} twice; name each column once")
    return names


def _first_repeat(names) -> str | None:
    """The first name that occurs twice in ``names``, or None (one pass)."""
    seen = set()
    for n in names:
        if n in seen:
            return n
        seen.add(n)
    return None


class TooLarge(ValueError):
    """A file whose declared arrays do not fit in memory (refused before they are read)."""


def _check_npz_size(z, p: Path, what: str, bound=None) -> int:
    """Refuse an .npz whose arrays, as their headers declare them, cannot be read into memory with the two
    float32 copies of each ``x`` that training makes (the validation split's and the device's): a small
    deflated file may declare gigabytes. Returns the estimate in bytes; ValueError naming the file, the largest
    array and the memory."""
    from jnn.train.run_setup import memory_bound

    sizes = {}
    for name in z.files:
        try:
            with z.zip.open(name + ".npy") as m:
                shape, _, dtype = npy_header(m)
        except Exception as err:  # a member that is not an .npy array: np.load names it below
            raise ValueError(f"array {name!r}: {err}") from None
        if any(not isinstance(k, int) or k < 0 for k in shape):
            raise ValueError(f"array {name!r} declares the shape {shape} in its header")
        sizes[name] = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize, shape, dtype
    need = sum(b for b, _, _ in sizes.values())
    need += sum(2 * 4 * int(np.prod(shape, dtype=np.int64)) for k, (_, shape, _) in sizes.items() if k.startswith("x"))
    bound = memory_bound() if bound is None else bound
    if bound is not None and need > bound[0]:
        big = max(sizes, key=lambda k: sizes[k][0])
        b, shape, dtype = sizes[big]
        raise TooLarge(f"{what} {str(p)!r} declares arrays of {need / 1e9:.3g} GB with the copies of x training "
                         f"makes (its largest, {big!r}: {shape} {dtype}, {b / 1e9:.3g} GB), but {bound[1]} is "
                         f"{bound[0] / 1e9:.3g} GB; save x as a .npy and stream it (jnn.Dataset('x.npy', y)), or use a "
                         "smaller file")  # fmt: skip
    return need


def read_npz(path, *, what: str = "--data", need_target: bool = True) -> dict:
    """Read ``x``/``y`` (and ``x_val``/``y_val``, ``x_test``/``y_test`` when present) from a ``.npz`` file:
    ``{"train": Table, "val": Table, "test": Table}`` (the splits present)."""
    p = Path(path)
    import zipfile

    try:
        with open(p, "rb") as fh:  # opened here, so that it is closed whatever np.load meets
            z = np.load(fh, allow_pickle=False)
            if not hasattr(z, "files"):  # a lone .npy saved under an .npz name
                raise ValueError("it holds one array, not named arrays x, y (save with np.savez)")
            with z:
                _check_npz_size(z, p, what)  # from the arrays' headers, before any is read
                arrays = {k: z[k] for k in z.files}
    except TooLarge:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise ValueError(f"{what} {str(p)!r} is not a readable .npz file ({type(err).__name__}: {err})") from None
    if "x" not in arrays:
        raise ValueError(f"{what} {str(p)!r} has no array 'x' (it holds {sorted(arrays)}); save x=..., y=...")
    if need_target and "y" not in arrays:
        raise ValueError(f"{what} {str(p)!r} has no array 'y' (it holds {sorted(arrays)}); save x=..., y=...")
    out = {}
    for split, sx, sy in (("train", "x", "y"), ("val", "x_val", "y_val"), ("test", "x_test", "y_test")):
        if sx not in arrays:
            continue
        x, y = arrays[sx], arrays.get(sy)
        name = f"{what} {str(p)!r} array {sx!r}"
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError(f"{name} must be [n, d] with n ≥ 1; got shape {x.shape}")
        if x.dtype.kind == "c":
            raise ValueError(f"{name} holds complex numbers ({x.dtype}); jnn trains on real features: split them "
                             "into real and imaginary columns (np.concatenate([x.real, x.imag], axis=1))")  # fmt: skip
        if x.dtype.kind not in "fiub":
            raise ValueError(f"{name} must hold numbers; got dtype {x.dtype}")
        if x.dtype.kind == "f" and not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))  # a big-endian file's floats, in this machine's order
        if x.dtype.kind == "f":  # kept in its own dtype: no float64 detour (a float32 x stays float32)
            try:
                _check_finite_rows(x, name)
            except ValueError as err:
                raise ValueError(str(err).replace("non-finite value", "NaN or infinity")) from None
        if y is not None and (y.ndim not in (1, 2) or y.shape[0] != x.shape[0]):
            raise ValueError(f"{what} {str(p)!r} array {sy!r} must be [n] or [n, k] with n = {x.shape[0]}; "
                             f"got shape {y.shape}")  # fmt: skip
        if y is None and need_target and split != "train":
            raise ValueError(f"{what} {str(p)!r} has {sx!r} but no {sy!r}")
        out[split] = Table(x, y, None, None, str(p))
    return out


def learn(table: Table, loss: str, *, impute: str | None = None, unknown: str = "error") -> Preprocessing:
    """The preprocessing of a training table for ``loss``: the label classes (sorted distinct labels) and each
    categorical column's categories; see ``Preprocessing.imputed_on`` and
    ``Preprocessing.standardized_on`` for what is learned on the training split.

    Args:
        table: the training table.
        loss: the model's loss.
        impute: how missing feature cells will be filled (``IMPUTE``); None refuses a table with empty cells,
            counting them by column.
        unknown: what an unseen category does at prediction time (``UNKNOWN``).

    Raises:
        ValueError: an unknown loss, targets that do not suit it, a single class, or empty cells without
            ``impute``.
    """
    if impute is not None and impute not in IMPUTE:
        raise ValueError(f"--impute must be one of {list(IMPUTE)}; got {impute!r}")
    if unknown not in UNKNOWN:
        raise ValueError(f"--unknown-category must be one of {list(UNKNOWN)}; got {unknown!r}")
    if table.missing and impute is None:
        raise ValueError(missing_message(table, repr(table.path)) + "; fill them with --impute "
                         + "|".join(IMPUTE) + " (learned on the training split), or fill them in the file")  # fmt: skip
    if loss not in KIND_OF_LOSS:
        raise ValueError(f"loss must be one of {sorted(KIND_OF_LOSS)} to read a data file; got {loss!r}")
    kind = KIND_OF_LOSS[loss]
    where = f"the target of {table.path!r}"
    if table.y is None:
        raise ValueError(f"{table.path!r} has no target")
    classes = None
    if kind == "classes":
        y = table.y if table.y.ndim == 1 else table.y[:, 0]
        if table.y.ndim == 2 and table.y.shape[1] > 1:
            raise ValueError(f"{where} has {table.y.shape[1]} columns; --loss {loss} needs one label column")
        distinct = {}
        for v in y:
            distinct.setdefault(_key(v), _plain(v))
        if all(k[0] == "n" for k in distinct):
            nums = sorted(k[1] for k in distinct)
            if any(not float(v).is_integer() for v in nums) and len(nums) > 20:
                regression = " or ".join(n for n, r in REGISTRY.items() if r.kind == "values")
                raise ValueError(
                    f"{where} holds {len(nums)} distinct non-integer numbers (e.g. {nums[1]}); for regression "
                    f"pass --loss {regression}"
                )
            classes = [_plain(v) for v in nums]
        else:
            classes = sorted(str(v) for v in distinct.values())
        if len(classes) < 2:
            raise ValueError(f"{where} holds a single class {classes}; classification needs at least two")
        if REGISTRY[loss].outputs == "one" and len(classes) != 2:
            raise ValueError(f"{where} holds {len(classes)} classes; --loss {loss} needs exactly 2 (use softmax)")
    categories = None
    if table.cat_features:
        categories = [sorted({v for v in table.cat[:, k] if v != ""}) for k in range(len(table.cat_features))]
        empty = [c for c, cats in zip(table.cat_features, categories) if not cats]
        if empty:
            raise ValueError(f"{table.path!r}: categorical column {empty[0]!r} holds no value at all")
    width = table.x.shape[1] + sum(len(c) for c in categories or [])
    prep = Preprocessing(kind, width, table.features, table.targets, classes, impute=impute,
                         categorical=table.cat_features, categories=categories, unknown=unknown)  # fmt: skip
    prep.encode(table.y, what=where)  # every kind of bad target is found now, before training
    return prep


def dataset(table: Table, prep: Preprocessing, *, what: str | None = None):
    """``jnn.Dataset`` of a table under a run's preprocessing (CSV features picked by name).

    Raises:
        ValueError: missing feature or target columns, labels the run has not seen, bad values.
    """
    from jnn.data import Dataset

    what = what or repr(table.path)
    x = prep.transform(features_of(table, prep, what=what), what=f"the features of {what}")
    if table.y is None:
        raise ValueError(f"{what} has no target column {prep.targets}; it is needed to evaluate")
    return Dataset(x, prep.encode(table.y, what=f"the target of {what}"), num_classes=prep.num_classes)


def features_of(table: Table, prep: Preprocessing, *, what: str | None = None) -> np.ndarray:
    """The raw feature columns ``[n, d]`` of a table in the order the run trained on (CSV columns picked
    by name; no target needed); ``Preprocessing.transform`` (or ``TrainedModel.predict``) scales them."""
    what = what or repr(table.path)
    if table.missing and prep.impute is None:
        raise ValueError(missing_message(table, what) + "; the model was trained without --impute: fill them")
    x = table.x
    if prep.categorical:
        return np.hstack([_numeric_features(table, prep, x, what), prep.one_hot(table, what=what)])
    return _numeric_features(table, prep, x, what)


def _numeric_features(table: Table, prep: Preprocessing, x, what: str) -> np.ndarray:
    """The numeric feature columns of ``table`` in the run's order (picked by name)."""
    numeric = prep.n_features - prep.onehot_width
    if prep.features is not None and table.features is not None:
        at = {c: j for j, c in enumerate(table.features)}  # a dict: linear in the columns
        missing = [c for c in prep.features if c not in at]
        if missing:
            raise ValueError(f"{what} lacks the feature column(s) {missing[:20]} the model was trained on")
        order = [at[c] for c in prep.features]
        if order != list(range(x.shape[1])):
            x = x[:, order]
    if x.shape[1] != numeric:
        raise ValueError(f"{what} has {x.shape[1]} feature columns; the model takes {numeric}")
    return x


__all__ = [
    "DELIMITERS",
    "IMPUTE",
    "UNKNOWN",
    "missing_message",
    "sniff_delimiter",
    "KIND_OF_LOSS",
    "KINDS",
    "Preprocessing",
    "Table",
    "read_table",
    "read_npz",
    "learn",
    "dataset",
    "features_of",
    "split_names",
    "TooLarge",
]
