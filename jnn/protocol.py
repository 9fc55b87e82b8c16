"""The model protocol: what ``fit``, ``sweep`` and ``evaluate`` ask of what they train.

Two kinds of model answer it: a ``jnn.Task`` (a tuple of pure functions with fixed shapes) and a
``jnn.MLP`` (a network described apart from the data). ``Model`` holds the methods both need; a
``Builder`` (the MLP) also builds its task for the data and may give sweep members of different shapes. The
engine asks through the functions below, so a ``jnn.Task`` carries no stub methods::

    task = task_for(model, train)        # an MLP's task for the data, or the Task itself
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from jnn.types import PyTree

if TYPE_CHECKING:
    from jnn.data import Dataset
    from jnn.task import CheckedTask

from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:  # pragma: no cover
    from jnn.task import Task


@runtime_checkable
class Model(Protocol):
    """What every model answers (``jnn.Task`` and ``jnn.MLP``)."""

    def sweep_axes(self) -> tuple[str, ...]:
        """The names ``jnn.sweep`` may vary for this model besides the config's."""

    def member(self, values: Mapping) -> tuple[Model, dict]:
        """One sweep member: ``(model, hyper)`` with ``values`` (``{name: value}``) over the defaults."""

    def with_hyper(self, hyper: Mapping) -> Model:
        """This model with its hyperparameters' defaults set from ``hyper`` (a sweep member as a model of its own)."""

    def describe(self, ct: CheckedTask, params: PyTree) -> dict:
        """What a run records of this model in ``config.json``."""


@runtime_checkable
class Builder(Model, Protocol):
    """A model described apart from the data (``jnn.MLP``): it builds its ``jnn.Task`` for the data,
    and its sweep members may differ in shape (hidden widths)."""

    def task_for(self, train: Dataset, *, hypers: Sequence[dict] | None = None) -> Task:
        """The task that trains on the Dataset ``train`` (for the members with ``hypers``)."""

    def task_for_params(self, params: PyTree, ds: Dataset) -> Task:
        """The task that scores ``params`` on the Dataset ``ds``."""

    def shape_key(self) -> tuple:
        """What of this model changes the program's shapes between sweep members."""

    def shape_label(self) -> str:
        """How a sweep's progress names this model's shapes (``"hidden 64, "``)."""


def task_for(model, train, *, hypers=None):
    """The task that trains ``model`` on the Dataset ``train``: a ``Builder``'s, or ``model`` itself."""
    return model.task_for(train, hypers=hypers) if isinstance(model, Builder) else model


def task_for_params(model, params, ds):
    """The task that scores ``params`` of ``model`` on the Dataset ``ds``: a ``Builder``'s, or ``model``."""
    return model.task_for_params(params, ds) if isinstance(model, Builder) else model


def shape_key(model) -> tuple:
    """What of ``model`` changes the program's shapes between sweep members (``()`` for a fixed-shape task)."""
    return model.shape_key() if isinstance(model, Builder) else ()


def shape_label(model) -> str:
    """How a sweep's progress names ``model``'s shapes (``""`` for a fixed-shape task)."""
    return model.shape_label() if isinstance(model, Builder) else ""


__all__ = ["Builder", "Model", "shape_key", "shape_label", "task_for", "task_for_params"]
