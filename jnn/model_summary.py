"""``jnn.summary``: a model's layers (or parameter leaves), their shapes, parameter counts and FLOPs per example.

Keras's ``model.summary()`` for jnn's models::

    >>> print(jnn.summary(jnn.MLP(), train))
    ModelSummary: MLP 40-256-256-10, relu, softmax
      layer      shape      params           FLOPs/example
      layers[0]  40 x 256   10,496                  20,736
      layers[1]  256 x 256  65,792                 131,328
      layers[2]  256 x 10    2,570                   5,130
      total                 78,858  157,194 (XLA: 157,706)

For the built-in MLP each row is a layer (its weight matrix and bias); the FLOPs are the matrix products' 2·d_in·d_out
and the bias additions. For any ``jnn.Task`` each row is a parameter leaf; the FLOPs per example are XLA's own
count (``cost_analysis`` of ``apply`` compiled for one example, evaluation mode), which the MLP's total shows too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jnn.types import ArrayLike, PyTree

if TYPE_CHECKING:
    from jnn.data import Dataset
    from jnn.mlp import MLP
    from jnn.task import Task

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from jnn.display import view
from jnn.pytree import leaf_names


@dataclass(frozen=True)
class ModelSummary:
    """What ``summary`` returns.

    Attributes:
        title: the model in one line.
        rows: one dict per layer or leaf: ``name``, ``shape`` (tuple), ``params`` (count) and ``flops`` (per example;
            None for a leaf of a task, whose FLOPs XLA counts as a whole).
        params: the total parameter count.
        flops: the analytic FLOPs per example (the MLP), or None.
        xla_flops: XLA's count of FLOPs per example for ``apply`` in evaluation mode (None when the backend gives
            none).
    """

    title: str
    rows: list
    params: int
    flops: int | None
    xla_flops: float | None

    def to_dict(self) -> dict:
        """JSON-ready fields."""
        return {"title": self.title, "rows": [{**r, "shape": list(r["shape"])} for r in self.rows],
                "params": self.params, "flops": self.flops, "xla_flops": self.xla_flops}  # fmt: skip

    def line(self) -> str:
        """``"79,114 params, 158,720 FLOPs per example"``: the one-line form ``jnn train`` prints."""
        flops = self.flops if self.flops is not None else self.xla_flops
        return f"{self.params:,} params" + ("" if flops is None else f", {int(flops):,} FLOPs per example")

    def __str__(self) -> str:
        head = ("layer" if self.flops is not None else "leaf", "shape", "params", "FLOPs/example")
        body = [(r["name"], " x ".join(map(str, r["shape"])) or "scalar", f"{r['params']:,}",
                 "" if r["flops"] is None else f"{r['flops']:,}") for r in self.rows]  # fmt: skip
        xla = "" if self.xla_flops is None else f"XLA: {int(self.xla_flops):,}"
        total = f"{self.flops:,} ({xla})" if self.flops is not None and xla else (f"{self.flops:,}" if self.flops
                                                                                  is not None else xla)  # fmt: skip
        body.append(("total", "", f"{self.params:,}", total))
        widths = [max(len(str(row[i])) for row in (head, *body)) for i in range(4)]
        fmt = lambda row: "  " + "  ".join(str(c).ljust(w) if i < 2 else str(c).rjust(w) for i, (c, w) in
                                           enumerate(zip(row, widths)))  # fmt: skip
        return "\n".join([f"ModelSummary: {self.title}", fmt(head), *(fmt(r) for r in body)])

    def __repr__(self) -> str:
        flops = self.flops if self.flops is not None else self.xla_flops
        return view("ModelSummary", [("model", self.title), ("params", f"{self.params:,}"),
                                     ("FLOPs per example", "-" if flops is None else f"{int(flops):,}")])  # fmt: skip


def summary(model: Task | MLP, x: ArrayLike | Dataset | None, *, params: PyTree = None) -> ModelSummary:
    """The summary of ``model`` for inputs like ``x``.

    Args:
        model: a ``jnn.MLP`` or a ``jnn.Task``.
        x: the training ``jnn.Dataset`` (its width, dtype and classes decide the shapes), or example inputs
            ``[n, d]`` (then an MLP without ``sizes`` shows 10 class outputs, a placeholder).
        params: the params to describe (default: the shapes of the model's initial params; nothing is allocated).

    Returns:
        A ``ModelSummary`` (``print`` it for the table).

    Raises:
        TypeError: ``model`` is neither an MLP nor a Task.
    """
    from jnn.data import Dataset
    from jnn.mlp import MLP
    from jnn.task import Task

    ds = x if isinstance(x, Dataset) else None
    x = np.asarray(ds.x[:1] if ds is not None else x)
    x = x[None, :] if x.ndim == 1 else x
    if isinstance(model, MLP):
        sizes = model.network_sizes(ds) if ds is not None else model.sizes or (x.shape[1], *model.hidden,
                                                                                _mlp_outputs(model))  # fmt: skip
        task = model.build(sizes, str(x.dtype) if x.dtype.kind == "f" else "float32")
        title = f"MLP {'-'.join(map(str, sizes))}, {model.activation}, {model.loss}"
    elif isinstance(model, Task):
        task, title = model, f"Task (loss {model.loss if isinstance(model.loss, str) else 'custom'})"
    else:
        raise TypeError(f"model must be a jnn.MLP or a jnn.Task; got {type(model).__name__}")
    # Shapes only: a model too large for memory is described (and then refused by fit's memory check), never built.
    params = jax.eval_shape(task.init, jax.random.key(0)) if params is None else params
    one = jnp.asarray(x[:1], jax.tree.leaves(params)[0].dtype)
    xla = _xla_flops(task, params, one)
    if isinstance(model, MLP):
        rows = [{"name": f"layers[{i}]", "shape": tuple(int(s) for s in layer["w"].shape),
                 "params": int(np.size(layer["w"]) + np.size(layer["b"])),
                 "flops": int(2 * np.size(layer["w"]) + np.size(layer["b"]))}
                for i, layer in enumerate(params)]  # fmt: skip
        flops = sum(r["flops"] for r in rows)
    else:
        rows = [{"name": n, "shape": tuple(int(s) for s in np.shape(leaf)), "params": int(np.size(leaf)), "flops": None}
                for n, leaf in leaf_names(params)]  # fmt: skip
        flops = None
    return ModelSummary(title, rows, sum(r["params"] for r in rows), flops, xla)


def _mlp_outputs(model) -> int:
    """The MLP's output width without data: the classes of its loss are unknown, so ``sizes`` decides when given,
    else 1 for one logit or one target and 10 (a placeholder shown in the title) for class scores."""
    from jnn.losses import get_loss

    return 10 if get_loss(model.loss).outputs == "classes" else 1


def _xla_flops(task, params, x) -> float | None:
    """XLA's FLOPs of ``task.apply`` (evaluation mode) on the one-example batch ``x``."""
    h = {k: jnp.asarray(v) for k, v in (task.hyper or {}).items()}
    try:
        lowered = jax.jit(lambda p, xx: task.apply(p, xx, key=None, train=False, hyper=h)).lower(params, x)
        cost = lowered.compile().cost_analysis()
    except Exception:  # a backend without cost analysis: the count is left out
        return None
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    flops = (cost or {}).get("flops")
    return None if flops is None or flops < 0 else float(flops)


__all__ = ["ModelSummary", "summary"]
