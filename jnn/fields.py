"""Dataclass fields that declare their roles once, in their metadata (``jnn.TrainConfig``, ``jnn.MLP``).

From one declaration per field the engine derives the compile key (``program``), the resume policy (``resume``),
the sweep axes (``sweep``) and the command line's flags and help (``cli``, ``flag``, ``choices``, ``nested``);
``tests/test_config_roles.py`` holds each declaration to what the program does.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from jnn import _validate as V

#: How a compiled program sees a field (metadata ``"program"``): ``"traced"``, an array in the state (another
#: value compiles nothing); ``"static"``, part of the program (another value is another program); ``"host"``,
#: read only outside the program (the split, the init, what is saved).
PROGRAM_ROLES = ("traced", "static", "host")


# ----------------------------------------------------------------------------------------------------
# value constraints (scikit-learn's ``_parameter_constraints``): declared beside the roles, checked by check_fields


@dataclass(frozen=True)
class Interval:
    """A number in an interval: ``Interval(float, 0, 1, closed="left")`` is [0, 1).

    Attributes:
        type: ``int`` or ``float`` (floats come back as Python floats, ints are checked to be ints).
        low: the lower end, or None (unbounded).
        high: the upper end, or None.
        closed: ``"both"``, ``"left"``, ``"right"`` or ``"neither"``: which ends belong (ints: always both).
        hint: said after the range in the error message (``"the step size η"``).
    """

    type: type
    low: float | None = None
    high: float | None = None
    closed: str = "both"
    hint: str = ""

    def __call__(self, name: str, value: Any) -> Any:
        """``value`` checked (and a float made a Python float); raises TypeError/ValueError naming ``name``, the
        range and the value."""
        if self.type is int:
            return V.check_int(name, value, low=self.low, high=self.high)
        return V.check_real(name, value, low=self.low, high=self.high, low_open=self.closed in ("right", "neither"),
                            high_open=self.closed in ("left", "neither"), hint=self.hint)  # fmt: skip


@dataclass(frozen=True)
class Options:
    """One of a fixed set of strings."""

    values: tuple[str, ...]

    def __call__(self, name: str, value: Any) -> Any:
        """``value`` if it is one of ``values``, else a ValueError listing them."""
        return V.check_choice(name, value, list(self.values))


@dataclass(frozen=True)
class Boolean:
    """``True`` or ``False`` (not 0/1)."""

    def __call__(self, name: str, value: Any) -> Any:
        """``value`` if it is a bool, else a TypeError."""
        if not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool; got {value!r}")
        return value


@dataclass(frozen=True)
class Instance:
    """An instance of a class (a nested settings record such as ``jnn.EarlyStopping``)."""

    cls: type
    label: str
    hint: str = ""

    def __call__(self, name: str, value: Any) -> Any:
        """``value`` if it is an instance of ``cls``, else a TypeError naming ``label``."""
        if not isinstance(value, self.cls):
            raise TypeError(f"{name} must be a {self.label} or None ({self.hint}); got {value!r}")
        return value


def check_fields(obj: Any) -> None:
    """Check every field of the frozen dataclass ``obj`` against its declared constraint (``check``, or
    ``Options`` from ``choices``), in field order; a field declared ``optional`` may be None. A checked float
    is stored back as a Python float.

    Raises:
        TypeError, ValueError: the first field that breaks its constraint, named with the allowed range and the
            value.
    """
    for f in dataclasses.fields(obj):
        check = f.metadata.get("check")
        value = getattr(obj, f.name)
        if check is None or (value is None and f.metadata.get("optional")):
            continue
        checked = check(f.name, value)
        if checked is not value:
            object.__setattr__(obj, f.name, checked)


def role_field(
    default: Any,
    program: str,
    *,
    resume: bool = False,
    sweep: bool = False,
    cli: str | None = None,
    flag: str | None = None,
    choices: Sequence | None = None,
    nested: dict | None = None,
    nested_prefix: str | None = None,
    check: Callable | None = None,
    optional: bool = False,
):
    """A dataclass field with its roles and its allowed values declared in its metadata.

    Args:
        default: the default value.
        program: one of ``PROGRAM_ROLES``.
        resume: a resumed run may change it (``jnn.train.config.RESUME_CHANGES``).
        sweep: ``jnn.sweep`` takes it as an axis.
        cli: the help of its command-line flag (``{default}`` is replaced by the default); None: no flag.
            A bool that defaults to True gets ``--no-<name>``.
        flag: the flag's name when it is not the field's (``--mode`` for ``dropout_mode``).
        choices: the allowed values of a string flag.
        nested: for a field that holds a dataclass (``early_stopping``): ``{attribute: help}`` of the
            attributes that get a flag of their own (``--patience``); ``cli`` is then the help of ``--no-<name>``,
            which sets the field to None.
        nested_prefix: name the nested flags ``--<prefix>-<attribute>`` (``--plateau-patience``); for a rule that
            is off by default (default None): any of its flags turns it on, the attributes left out keep the rule
            class's defaults, and there is no ``--no-<name>``.
        check: the constraint its value must meet (``Interval``, ``Options``, ``Boolean``,
            ``Instance``, or any ``check(name, value) -> value`` raising TypeError/ValueError);
            ``check_fields`` applies it. Default: ``Options`` of ``choices`` when given, a bool default
            gets ``Boolean``, else nothing is checked.
        optional: None is allowed besides the constrained values.

    Raises:
        ValueError: ``program`` is not one of ``PROGRAM_ROLES``.
    """
    if program not in PROGRAM_ROLES:
        raise ValueError(f"program must be one of {PROGRAM_ROLES}; got {program!r}")
    if check is None and choices is not None:
        check = Options(tuple(choices))
    elif check is None and isinstance(default, bool):
        check = Boolean()
    meta = {"program": program, "resume": resume, "sweep": sweep, "cli": cli, "flag": flag,
            "choices": None if choices is None else tuple(choices), "nested": dict(nested or {}), "check": check,
            "optional": optional, "nested_prefix": nested_prefix}  # fmt: skip
    return dataclasses.field(default=default, metadata=meta)


def names_where(cls, **role) -> tuple[str, ...]:
    """The fields of the dataclass ``cls`` whose role metadata has the given values, in field order.

    Example:
        ``names_where(TrainConfig, program="traced")`` are the fields another value of which compiles nothing.
    """
    return tuple(f.name for f in dataclasses.fields(cls) if all(f.metadata[k] == v for k, v in role.items()))


def plain_dict(obj) -> dict:
    """A role dataclass as a JSON-ready dict (tuples become lists, nested dataclasses dicts)."""
    d = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def python_scalars(obj) -> None:
    """Replace NumPy scalars in the fields of the frozen dataclass ``obj`` by Python ones, in place (so that it
    is JSON-ready and hashes like the same config written with Python numbers)."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if isinstance(v, np.generic):
            object.__setattr__(obj, f.name, v.item())
        elif isinstance(v, (list, tuple)) and any(isinstance(x, np.generic) for x in v):
            object.__setattr__(obj, f.name, type(v)(x.item() if isinstance(x, np.generic) else x for x in v))


__all__ = [
    "PROGRAM_ROLES",
    "Boolean",
    "Instance",
    "Interval",
    "Options",
    "check_fields",
    "role_field",
    "names_where",
    "plain_dict",
    "python_scalars",
]
