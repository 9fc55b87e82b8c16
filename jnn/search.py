"""Search spaces for sweeps: distributions as axis values, drawn into members by a seeded random search.

``jnn.sweep.sweep(train, config, samples=N, search_seed=s, learning_rate=loguniform(1e-3, 0.3),
keep_prob=uniform(0.5, 1.0), hidden=choice([(64,), (128, 128)]), seed=randint(0, 1000))`` draws ``N`` members:
every distribution axis gets ``N`` independent draws from one NumPy ``Generator`` seeded by ``search_seed`` (the
axes drawn in the order given), the i-th draws of all of them making one member (one block, ``jnn.axes``). A
list axis beside them is a grid axis (every draw with each of its values) unless ``combine="zip"``, where it holds
``N`` values, one per draw.
The same ``search_seed`` draws the same members; the space, the number of samples and the seed are recorded in
the sweep's result and folder (``sweep_run.json`` and ``sweep.json`` under ``search``).

Each distribution is a frozen dataclass with ``sample(rng, n) -> list`` (plain Python values, validated by the
sweep like any axis value) and ``to_dict()`` (its JSON record).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jnn import _validate as V
from jnn.axes import Joint


class Distribution:
    """A sweep axis's distribution: ``uniform``, ``loguniform``, ``choice`` or ``randint``."""

    def sample(self, rng: np.random.Generator, n: int) -> list:
        """``n`` independent draws as plain Python values."""
        raise NotImplementedError(f"{type(self).__name__}.sample is not implemented")

    def to_dict(self) -> dict:
        """The JSON record of the distribution (its kind and parameters)."""
        raise NotImplementedError(f"{type(self).__name__}.to_dict is not implemented")


def _bounds(kind: str, low, high, *, positive: bool = False) -> tuple[float, float]:
    low = V.check_real(f"{kind} low", low)
    high = V.check_real(f"{kind} high", high)
    if not low < high:
        raise ValueError(f"{kind}(low, high) needs low < high; got low={low!r}, high={high!r}")
    if positive and low <= 0:
        raise ValueError(f"{kind}(low, high) needs 0 < low (a log scale); got low={low!r}")
    return float(low), float(high)


@dataclass(frozen=True)
class Uniform(Distribution):
    """Real values uniform on ``[low, high)``."""

    low: float
    high: float

    def __post_init__(self):
        _bounds("uniform", self.low, self.high)

    def sample(self, rng, n):
        return [float(v) for v in rng.uniform(self.low, self.high, n)]

    def to_dict(self):
        return {"kind": "uniform", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class LogUniform(Distribution):
    """Real values whose logarithm is uniform on ``[log low, log high)`` (learning rates, weight decays)."""

    low: float
    high: float

    def __post_init__(self):
        _bounds("loguniform", self.low, self.high, positive=True)

    def sample(self, rng, n):
        return [float(math.exp(v)) for v in rng.uniform(math.log(self.low), math.log(self.high), n)]

    def to_dict(self):
        return {"kind": "loguniform", "low": self.low, "high": self.high}


@dataclass(frozen=True)
class Choice(Distribution):
    """One of ``values``, each with the same probability."""

    values: tuple

    def __post_init__(self):
        if isinstance(self.values, (str, bytes)) or not isinstance(self.values, (list, tuple)) or not self.values:
            raise ValueError(f"choice(values) needs a non-empty list of values; got {self.values!r}")
        object.__setattr__(self, "values", tuple(self.values))

    def sample(self, rng, n):
        return [self.values[int(i)] for i in rng.integers(0, len(self.values), n)]

    def to_dict(self):
        return {"kind": "choice", "values": [list(v) if isinstance(v, tuple) else v for v in self.values]}


@dataclass(frozen=True)
class RandInt(Distribution):
    """Integers uniform on ``[low, high)`` (``high`` excluded, as NumPy's ``integers``)."""

    low: int
    high: int

    def __post_init__(self):
        for name, v in (("low", self.low), ("high", self.high)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"randint {name} must be an integer; got {v!r}")
        if not self.low < self.high:
            raise ValueError(
                f"randint(low, high) needs low < high (high excluded); got low={self.low}, high={self.high}"
            )

    def sample(self, rng, n):
        return [int(v) for v in rng.integers(self.low, self.high, n)]

    def to_dict(self):
        return {"kind": "randint", "low": int(self.low), "high": int(self.high)}


def uniform(low: float, high: float) -> Uniform:
    """Real values uniform on ``[low, high)``: a sweep axis for ``sweep(..., samples=N)``."""
    return Uniform(low, high)


def loguniform(low: float, high: float) -> LogUniform:
    """Real values log-uniform on ``[low, high)``, ``0 < low``: a sweep axis for ``sweep(..., samples=N)``."""
    return LogUniform(low, high)


def choice(values: Sequence) -> Choice:
    """One of ``values`` (a non-empty list), uniformly: a sweep axis for ``sweep(..., samples=N)``."""
    return Choice(values)


def randint(low: int, high: int) -> RandInt:
    """Integers uniform on ``[low, high)``: a sweep axis for ``sweep(..., samples=N)``."""
    return RandInt(low, high)


#: A distribution's record (``to_dict()``) kind -> its constructor, for ``space_from_dict``.
KINDS = {"uniform": lambda d: uniform(d["low"], d["high"]), "loguniform": lambda d: loguniform(d["low"], d["high"]),
         "choice": lambda d: choice(d["values"]), "randint": lambda d: randint(d["low"], d["high"])}  # fmt: skip
_KEYS = {"uniform": {"low", "high"}, "loguniform": {"low", "high"}, "choice": {"values"}, "randint": {"low", "high"}}


def space_from_dict(table: dict, where: str = "space") -> dict:
    """A search space from its record, as ``jnn sweep --space SPACE.toml`` reads it.

    Each entry is an axis: a table ``{kind = "loguniform", low = 1e-3, high = 0.3}`` (the form ``to_dict()`` and
    the sweep folder's ``search.space`` record; kinds ``uniform``, ``loguniform``, ``choice`` with ``values``,
    ``randint``) or a list of values (a grid axis). Example SPACE.toml::

        learning_rate = {kind = "loguniform", low = 1e-3, high = 0.3}
        keep_prob = {kind = "uniform", low = 0.5, high = 1.0}
        hidden = {kind = "choice", values = [[64], [128, 128]]}
        seed = [0, 1, 2]

    Args:
        table: ``{axis: table or list}``.
        where: what to name in errors (the file).

    Returns:
        ``{axis: Distribution or list}`` (a choice's or list's inner lists as tuples: hidden widths).

    Raises:
        ValueError: an entry that is neither, an unknown kind, missing or extra keys, or bad bounds.
    """
    if not isinstance(table, dict) or not table:
        raise ValueError(f"{where} must hold at least one axis (a table with kind, or a list); got {table!r}")
    tup = lambda v: tuple(v) if isinstance(v, list) else v  # noqa: E731
    out = {}
    for name, entry in table.items():
        if isinstance(entry, list):
            out[name] = [tup(v) for v in entry]
            continue
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
            raise ValueError(f"{where}: axis {name!r} must be a list of values or a table with kind one of "
                             f"{sorted(KINDS)}; got {entry!r}")  # fmt: skip
        kind = entry["kind"]
        keys = set(entry) - {"kind"}
        if keys != _KEYS[kind]:
            raise ValueError(f"{where}: axis {name!r} ({kind}) needs exactly the keys {sorted(_KEYS[kind])}; got "
                             f"{sorted(keys)}")  # fmt: skip
        given = {k: ([tup(v) for v in entry[k]] if k == "values" and isinstance(entry[k], list) else entry[k])
                 for k in keys}  # fmt: skip
        try:
            out[name] = KINDS[kind](given)
        except (ValueError, TypeError) as err:
            raise ValueError(f"{where}: axis {name!r}: {err}") from None
    return out


def draw(axes: dict, samples: int | None, search_seed: int) -> tuple[dict, dict | None]:
    """The axes of a random search: ``(axes with every distribution drawn, record)``.

    Args:
        axes: ``{axis: Distribution or list}``.
        samples: N (None: no search; then no axis may be a distribution).
        search_seed: seed of the NumPy generator (an integer ≥ 0).

    Returns:
        The axes with every distribution replaced by its N draws, all in one ``jnn.axes.Joint`` block (lists
        unchanged; ``jnn.axes.combine`` makes the members), and the record
        ``{"space": {axis: distribution record, or the list}, "samples": N, "search_seed": s}`` (None without
        ``samples``).

    Raises:
        ValueError, TypeError: a distribution without ``samples``, bad ``samples``
            or ``search_seed``.
    """
    drawn = [n for n, v in axes.items() if isinstance(v, Distribution)]
    if samples is None:
        if drawn:
            raise ValueError(f"axis {drawn[0]!r} is a distribution ({axes[drawn[0]].to_dict()['kind']}); give "
                             "samples=N to draw N members from the space")  # fmt: skip
        return axes, None
    n = V.check_int("samples", samples, low=1, high=100_000)
    seed = V.check_int("search_seed", search_seed, low=0, high=2**63 - 1)
    if not drawn:
        raise ValueError("samples=N draws members from distributions (jnn.sweep.uniform, loguniform, choice, "
                         "randint); no axis is one")  # fmt: skip
    rng = np.random.default_rng(seed)
    block = object()  # the draws move together: member i is the i-th draw of every distribution
    out = {name: Joint(v.sample(rng, n), block) if isinstance(v, Distribution) else v for name, v in axes.items()}
    return out, {"space": space_record(axes), "samples": n, "search_seed": seed}


def space_record(axes: dict) -> dict:
    """The JSON record of a search space: ``{axis: distribution record, or the list}`` (read back by
    ``space_from_dict``)."""
    plain = lambda v: list(v) if isinstance(v, tuple) else v  # noqa: E731
    return {k: (v.to_dict() if isinstance(v, Distribution) else [plain(x) for x in v]) for k, v in axes.items()}


__all__ = ["KINDS", "Choice", "Distribution", "LogUniform", "RandInt", "Uniform", "choice", "draw", "loguniform",
           "randint", "space_from_dict", "space_record", "uniform"]  # fmt: skip
