"""``jnn export``: a trained run as a model that leaves jnn, as serialized StableHLO (``jax.export``) or ONNX.

The exported function takes the run's raw inputs ``x [n, d]`` float32 (the feature columns in the run's order,
then a categorical column's one-hot columns, as ``jnn.app.tabular.features_of`` gives them; NaN for an empty
cell when the run imputes) and applies everything ``jnn predict`` does: the imputation and standardisation the run
learned, the network in evaluation mode with the run's dropout rule (classic dropout's expected weights), and the
loss's output activation. It returns class probabilities ``[n, k]`` for a classification run (the columns in the
order of the run's classes) and the predictions in the targets' own units for a regression run.

- ``stablehlo``: ``jax.export`` serialized bytes (``model.stablehlo``), with a symbolic batch size; a JAX process
  that never imports jnn runs it with ``jax.export.deserialize(open(path, "rb").read()).call(x)``.
- ``onnx``: an ONNX model (``model.onnx``) converted by ``jax2onnx`` (``pip install 'jnn[onnx]'``), batch size
  ``"n"``; ``onnxruntime.InferenceSession(path).run(None, {"x": x})``.

Beside the model, ``export.json`` records the input columns, the classes and what the output holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jnn.types import PathLike

if TYPE_CHECKING:
    from jnn.app.trained import TrainedModel

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jnn.app import atomic
from jnn.losses import loss_of

FORMATS = ("stablehlo", "onnx")
SUFFIX = {"stablehlo": ".stablehlo", "onnx": ".onnx"}


def prediction_function(model: TrainedModel):
    """``fn(x [n, d] float32) -> outputs``: what ``jnn predict --proba`` computes for a
    ``jnn.app.trained.TrainedModel``, as one pure JAX function with the params as constants.

    Returns:
        ``(fn, d, what)``: the function, the input width and ``"probabilities"`` or ``"values"`` (or
        ``"outputs"`` for a custom loss).
    """
    prep, task = model.preprocessing, model.task
    dtype = jax.tree.leaves(model.params)[0].dtype
    params = jax.tree.map(jnp.asarray, model.params)
    hyper = {k: jnp.asarray(v, dtype) for k, v in {**(task.hyper or {}), **model.hyper}.items()}
    row = lambda v: None if v is None else np.asarray(v, np.float32).reshape(1, -1)  # broadcasts over the rows
    fill, mean, std = row(prep.fill), row(prep.mean), row(prep.std)
    record = loss_of(task.loss)

    def fn(x):
        if fill is not None:
            x = jnp.where(jnp.isnan(x), fill, x)
        if mean is not None:
            x = (x - mean) / std
        out = task.apply(params, x.astype(dtype), key=None, train=False, hyper=hyper)
        if record is not None and record.classifies:
            return record.probabilities(out)
        if record is not None and record.target_scaling and prep.target_mean is not None:
            out = out * row(prep.target_std) + row(prep.target_mean)
        return out

    what = "outputs" if record is None else ("probabilities" if record.classifies else "values")
    return fn, prep.n_features, what


def export(
    run_dir: PathLike, fmt: str, *, out: PathLike | None = None, member: int | None = None, best: int | None = None
) -> Path:
    """Export the run (or sweep member, or with ``best`` the run's ``best``-th best kept epoch: see
    ``jnn.load_run``) in ``run_dir`` as ``fmt`` (``FORMATS``) to ``out`` (default ``RUN/model.<format>``),
    with ``export.json`` beside it.

    Raises:
        ValueError: an unknown format, or a folder that is not a run.
        ImportError: ``onnx`` without jax2onnx installed.
    """
    from jnn.app.trained import load_run

    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}; got {fmt!r}")
    model = load_run(run_dir, member=member, best=best)
    fn, d, what = prediction_function(model)
    out = Path(out) if out is not None else Path(run_dir) / f"model{SUFFIX[fmt]}"
    if fmt == "stablehlo":
        (n,) = jax.export.symbolic_shape("n")
        exported = jax.export.export(jax.jit(fn))(jax.ShapeDtypeStruct((n, d), jnp.float32))
        atomic.write_bytes(out, bytes(exported.serialize()))
    else:
        try:
            from jax2onnx import to_onnx
        except ImportError as err:
            raise ImportError("--format onnx needs jax2onnx: pip install 'jnn[onnx]'") from err
        proto = to_onnx(fn, [("n", d)], model_name="jnn_model", input_names=["x"], output_names=["y"])
        atomic.write_bytes(out, proto.SerializeToString())
    prep = model.preprocessing
    onehot = [f"{c}={v}" for c, cats in zip(prep.categorical or [], prep.categories or []) for v in cats]
    info = {"format": fmt, "file": out.name, "inputs": [*(prep.features or []), *onehot] or d,
            "input_dtype": "float32", "output": what, "classes": prep.classes,
            "missing": "NaN (imputed)" if prep.fill is not None else None}  # fmt: skip
    atomic.write_text(out.parent / "export.json", json.dumps(info, indent=2, default=str))
    return out


__all__ = ["FORMATS", "export", "prediction_function"]
