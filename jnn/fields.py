"""Dataclass fields that declare their roles once, in their metadata (:class:`jnn.TrainConfig`, :class:`jnn.MLP`).

From one declaration per field the engine derives the compile key (``program``), the resume policy (``resume``),
the sweep axes (``sweep``) and the command line's flags and help (``cli``, ``flag``, ``choices``, ``nested``);
``tests/test_config_roles.py`` holds each declaration to what the program does.
"""

from __future__ import annotations

import dataclasses

import numpy as np

#: How a compiled program sees a field (metadata ``"program"``): ``"traced"``, an array in the state (another
#: value compiles nothing); ``"static"``, part of the program (another value is another program); ``"host"``,
#: read only outside the program (the split, the init, what is saved).
PROGRAM_ROLES = ("traced", "static", "host")


def role_field(default, program: str, *, resume: bool = False, sweep: bool = False, cli: str | None = None,
               flag: str | None = None, choices=None, nested: dict | None = None):  # fmt: skip
    """A dataclass field with its roles declared in its metadata.

    Args:
        default: the default value.
        program: one of :data:`PROGRAM_ROLES`.
        resume: a resumed run may change it (:data:`jnn.train.config.RESUME_CHANGES`).
        sweep: ``jnn.sweep`` takes it as an axis.
        cli: the help of its command-line flag (``{default}`` is replaced by the default); None: no flag.
            A bool that defaults to True gets ``--no-<name>``.
        flag: the flag's name when it is not the field's (``--mode`` for ``dropout_mode``).
        choices: the allowed values of a string flag.
        nested: for a field that holds a dataclass (``early_stopping``): ``{attribute: help}`` of the
            attributes that get a flag of their own (``--patience``); ``cli`` is then the help of ``--no-<name>``,
            which sets the field to None.

    Raises:
        ValueError: ``program`` is not one of :data:`PROGRAM_ROLES`.
    """
    if program not in PROGRAM_ROLES:
        raise ValueError(f"program must be one of {PROGRAM_ROLES}; got {program!r}")
    meta = {"program": program, "resume": resume, "sweep": sweep, "cli": cli, "flag": flag,
            "choices": None if choices is None else tuple(choices), "nested": dict(nested or {})}  # fmt: skip
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


__all__ = ["PROGRAM_ROLES", "role_field", "names_where", "plain_dict", "python_scalars"]
