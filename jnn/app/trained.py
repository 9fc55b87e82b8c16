"""``load_run``: a trained model back from its run folder (or one member of a sweep folder), in any process,
without the training data: ``.params``, ``.predict(x)``, ``.predict_proba(x)``, ``.evaluate(ds)``.

Predictions run the model in evaluation mode (``train=False``): the whole network, with classic dropout's
expected weights (activations scaled by keep_prob) or inverted dropout's unscaled ones, exactly as
``jnn.evaluate`` scores it. Inputs are preprocessed as in training (a run trained on a data file keeps
its feature columns, standardisation and label classes; see ``jnn.app.tabular``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jnn.app import checkpoint as ckpt
from jnn.app.best_files import best_file
from jnn.app.run_dir import MODEL_NAME, read_config
from jnn.app.tabular import Preprocessing
from jnn.data import Dataset
from jnn.display import html_view, params_line, view
from jnn.losses import loss_of
from jnn.predict import labels_of, outputs, proba_of
from jnn.task import Task
from jnn.train.config import TrainConfig
from jnn.types import ArrayLike, PathLike

#: Files of a sweep folder that ``load_run(..., member=k)`` reads.
SWEEP_PARAMS, SWEEP_INFO = "params.npz", "sweep.json"


@dataclass(frozen=True, repr=False)
class TrainedModel:
    """A trained model: params, the task that defines it, and the preprocessing of its data.

    Attributes:
        params: the params the run returned (the best epoch's when early stopping restored them).
        task: the ``jnn.Task`` (for a run of a ``jnn.MLP``, its task, rebuilt from ``config.json["mlp"]``).
        config: the run's ``TrainConfig`` (a sweep member's own values).
        hyper: the run's task hyperparameters (the MLP: ``l2`` and ``keep_prob``).
        preprocessing: the run's ``jnn.app.tabular.Preprocessing`` (feature columns, standardisation, label
            classes) when it was trained on a data file (or given ``data_info``); otherwise one that only
            checks the input width (inputs used as they are, classes are indices).
        run_dir: the folder it was loaded from.
        member: the sweep member, or None for a run.
    """

    params: object
    task: Task
    config: TrainConfig
    hyper: dict
    preprocessing: Preprocessing
    run_dir: Path
    member: int | None = None

    def _items(self) -> list[tuple[str, str]]:
        where = str(self.run_dir) + ("" if self.member is None else f", member {self.member}")
        items = [("run", where), ("loss", self.loss), ("params", params_line(self.params))]
        if self.classes is not None:
            shown = ", ".join(str(c) for c in self.classes[:10])
            items.append(("classes", f"{len(self.classes)}: {shown}" + (", ..." if len(self.classes) > 10 else "")))
        return items

    def __repr__(self) -> str:
        return view("TrainedModel", self._items())

    def _repr_html_(self) -> str:
        return html_view("TrainedModel", self._items())

    @property
    def loss(self) -> str:
        """The loss name (``"custom"`` for a loss function)."""
        return self.task.loss if isinstance(self.task.loss, str) else "custom"

    def inputs(self, x: ArrayLike) -> jax.Array:
        """``x [n, d]`` (raw features, as in the training file) as the model's inputs."""
        dtype = jax.tree.leaves(self.params)[0].dtype
        return jnp.asarray(self.preprocessing.transform(x), dtype)

    def outputs(self, x: ArrayLike) -> np.ndarray:
        """The network's outputs (logits for classification) on ``x [n, d]``, evaluation mode."""
        return outputs(self.task, self.params, self.inputs(x), self.hyper)

    def predict_proba(self, x: ArrayLike) -> np.ndarray:
        """Class probabilities ``[n, k]`` (columns in the order of ``classes``); for a binary model
        ``[n, 2]``: P(class 0), P(class 1); for a multi-label model, each label's probability ``[n, k]``.

        Raises:
            TypeError: for a regression (``mse``) or custom-loss model.
        """
        record = loss_of(self.task.loss)
        if record is None or not record.classifies:
            raise TypeError(f"predict_proba is for classification models; this run's loss is {self.loss!r}")
        return proba_of(self.task.loss, self.outputs(x))

    def predict(self, x: ArrayLike) -> np.ndarray:
        """Predictions for ``x [n, d]``: class labels in the user's own label values (or class indices when
        the run had none), 0/1 columns for multi-label, values for regression in the targets' own units (the
        outputs mapped back when ``--standardize`` standardised the targets), the raw outputs for a custom
        loss."""
        record = loss_of(self.task.loss)
        pred = labels_of(self.task.loss, self.outputs(x))
        if record is not None and record.kind == "classes":
            return pred if self.classes is None else self.preprocessing.decode(pred)
        if record is not None and record.target_scaling:
            return self.preprocessing.decode_values(pred)
        return pred

    @property
    def classes(self) -> list | None:
        """The class labels (``classes[i]`` is class ``i``), when the run encoded them."""
        return self.preprocessing.classes

    def evaluate(self, ds: Dataset) -> dict:
        """The loss and metrics on ``ds`` (already encoded, as ``jnn.app.tabular.dataset`` gives),
        as ``jnn.evaluate`` reports them."""
        from jnn.train.evaluation import evaluate

        return evaluate(self.params, ds, self.task, hyper={k: jnp.asarray(v) for k, v in self.hyper.items()})


def load_run(
    run_dir: PathLike, *, member: int | None = None, task: Task | None = None, best: int | None = None
) -> TrainedModel:
    """Load a trained model from a run folder (``jnn train`` / ``fit(callbacks=[jnn.RunFolder(path)])``) or a
    sweep folder.

    Args:
        run_dir: the folder.
        member: for a sweep folder (``jnn sweep`` / ``jnn.save_sweep``), the member to load.
        task: the ``jnn.Task`` of a run that trained its own model (functions are not stored in the
            folder); None for the built-in MLP, rebuilt from the stored description (``"mlp"``).
        best: load the ``best``-th best epoch kept by ``TrainConfig.best_checkpoints`` (1: the best; see
            ``RUN/best/best.json``) instead of ``model.npz``.

    Returns:
        A ``TrainedModel``.

    Raises:
        ValueError: not a finished run folder, a member out of range, or ``task`` not matching the params.
    """
    folder = Path(run_dir)
    sweep_info = folder / SWEEP_INFO
    if best is not None and member is not None:
        raise ValueError(f"give member (a sweep's) or best (a run's kept epochs), not both; got member={member!r}, "
                         f"best={best!r}")  # fmt: skip
    if member is not None or (sweep_info.is_file() and not (folder / "config.json").is_file()):
        info, params_file = _sweep_member(folder, member)
    else:
        cfg_file = folder / "config.json"
        if not cfg_file.is_file():
            raise ValueError(f"run_dir {str(folder)!r} holds no run (no config.json); train one with jnn train --out")
        info, params_file = read_config(cfg_file), folder / MODEL_NAME
        if best is not None:
            params_file = best_file(folder, best)
        elif not params_file.is_file():
            raise ValueError(
                f"run_dir {str(folder)!r} has no {MODEL_NAME}: the run has not finished (resume it with "
                f"jnn train --out {folder} --resume)"
            )
    try:
        return _load(folder, info, params_file, member, task)
    except (KeyError, IndexError, AttributeError) as err:  # a stored file with fields of another shape
        raise ValueError(f"{str(folder)!r} holds malformed run files ({type(err).__name__}: {err})") from None


#: What a run's ``config.json`` and the header of its ``model.npz`` must agree on.
AGREED = ("config", "config_hash", "mlp", "sizes", "task", "data_hash", "preprocessing")


def _agreement(folder: Path, info: dict, header: dict, member) -> None:
    """Refuse a folder whose record and params file disagree (an edited ``config.json``, or a ``model.npz`` /
    ``params.npz`` of another run), naming both files and the first differences."""
    from jnn.app.run_dir import upgrade_meta

    stored = header.get("meta", {})
    if member is not None:  # a sweep: params.npz holds the hash of sweep.json's members (see sweep_hash)
        want = stored.get("sweep_hash")
        if want is not None and want != info.get("sweep_hash"):
            raise ValueError(f"{str(folder / SWEEP_INFO)!r} does not match {str(folder / SWEEP_PARAMS)!r} (its "
                             "members, models or rows were edited, or params.npz is from another sweep)")  # fmt: skip
        return
    a, b = (upgrade_meta(m) for m in (info, stored))
    for m in (a, b):
        m["preprocessing"] = (m.get("data") or {}).get("preprocessing")
    diffs = []
    for k in AGREED:
        if k not in b or a.get(k) == b.get(k):
            continue
        if isinstance(a.get(k), dict) and isinstance(b[k], dict):
            diffs += [f"{k}.{f}: {a[k].get(f)!r} there, {b[k].get(f)!r} in {MODEL_NAME}" for f in sorted(set(a[k]) |
                      set(b[k])) if a[k].get(f) != b[k].get(f)]  # fmt: skip
        else:
            diffs.append(f"{k}: {a.get(k)!r} there, {b[k]!r} in {MODEL_NAME}")
    if diffs:
        raise ValueError(
            f"{str(folder / 'config.json')!r} does not match {str(folder / MODEL_NAME)!r}: "
            + "; ".join(diffs[:4])
            + (f" and {len(diffs) - 4} more" if len(diffs) > 4 else "")
            + " (the folder was edited, or model.npz is from another run: restore the run's own files or train again)"
        )


def _load(folder: Path, info: dict, params_file: Path, member, task) -> TrainedModel:
    from jnn.app.run_dir import upgrade_meta
    from jnn.mlp import MLP

    header = ckpt.read_header(params_file)
    _agreement(folder, info, header, member)
    info = upgrade_meta(info)
    config = TrainConfig.from_dict(info["config"])
    dtype = np.dtype(header["leaves"][0]["dtype"]).name
    every = info.get("member_sizes")
    if task is None:
        sizes = every[member] if member is not None and every else info.get("sizes")
        if not sizes:
            raise ValueError(f"{str(folder)!r} trained its own jnn.Task; pass it: load_run(run_dir, task=task)")
        task = MLP.from_dict(info.get("mlp") or {}).build(tuple(sizes), dtype)
    elif not isinstance(task, Task):
        raise TypeError(f"task must be a jnn.Task or None; got {type(task).__name__}")
    template = jax.eval_shape(task.init, jax.random.key(0))
    listed = member is not None and not info.get("stacked", True)  # members of several shapes: a list
    if listed:
        described = info.get("members_model") or [upgrade_meta({"config": c, "sizes": s}) for c, s in
                                                   zip(info["members_config"], every)]  # fmt: skip
        template = [jax.eval_shape(MLP.from_dict(d["mlp"]).build(tuple(s), dtype).init, jax.random.key(0))
                    for d, s in zip(described, every)]  # fmt: skip
    elif member is not None:
        n = int(info["members"])
        template = jax.tree.map(lambda s: jax.ShapeDtypeStruct((n, *s.shape), s.dtype), template)
    try:
        params = ckpt.restore(params_file, template)
    except ValueError as err:
        raise ValueError(f"{err}; is task the one this run trained?") from None
    if listed:
        params = params[member]
    elif member is not None:
        params = jax.tree.map(lambda a: a[member], params)
    hyper = {**(task.hyper or {}), **info.get("task", {}).get("hyper", {}), **info.get("hyper", {})}
    stored = (info.get("data") or {}).get("preprocessing")
    record = str(folder / ("config.json" if member is None else SWEEP_INFO))
    if stored:
        prep = Preprocessing.from_dict(stored, what=f"{record}'s data.preprocessing")
    else:  # inputs used as they are; class indices as labels
        kind = getattr(loss_of(task.loss), "kind", "values")  # a custom loss: outputs as values
        prep = Preprocessing(kind, int(info.get("n_features") or info["sizes"][0]))
    _check_outputs(prep, task, params, record)
    return TrainedModel(params, task, config, hyper, prep, folder, member)


def _check_outputs(prep: Preprocessing, task, params, record: str) -> None:
    """The stored inputs and classes must fit the params: as many features as the model takes, one class per
    output (two for a binary model's one)."""
    x = jax.ShapeDtypeStruct((1, prep.n_features), jax.tree.leaves(params)[0].dtype)
    try:
        out = jax.eval_shape(lambda p, xx: task.apply(p, xx, key=None, train=False, hyper=dict(task.hyper or {})),
                             params, x)  # fmt: skip
    except Exception as err:  # the stored width does not fit the params
        raise ValueError(f"{record}'s data.preprocessing gives {prep.n_features} features, which the stored params "
                         f"do not take ({type(err).__name__})") from None  # fmt: skip
    width = int(out.shape[-1]) if out.ndim == 2 else 1
    record = loss_of(task.loss)
    if prep.classes is not None and record is not None and record.kind == "classes":
        want = 2 if record.outputs == "one" else width
        if len(prep.classes) != want:
            raise ValueError(f"{record}'s data.preprocessing.classes lists {len(prep.classes)} classes but the model "
                             f"has {want} ({task.loss}): {prep.classes}")  # fmt: skip


def _sweep_member(folder: Path, member) -> tuple[dict, Path]:
    from jnn.app.sweep_files import sweep_hash

    path = folder / SWEEP_INFO
    if not path.is_file() or not (folder / SWEEP_PARAMS).is_file():
        raise ValueError(f"{str(folder)!r} is not a sweep folder (no {SWEEP_INFO} and {SWEEP_PARAMS})")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        n = len(info["members_config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{str(path)!r} is not a readable sweep record ({type(err).__name__}: {err})") from None
    if member is None or isinstance(member, bool) or not isinstance(member, int) or not 0 <= member < n:
        raise ValueError(f"member must be an int in [0, {n - 1}] for the sweep in {str(folder)!r}; got {member!r}")
    if not isinstance(info.get("rows"), list) or len(info["rows"]) != n:
        raise ValueError(f"{str(path)!r} lists {n} members but {len(info.get('rows') or [])} rows; the sweep record "
                         "was edited or cut: restore it or run the sweep again")  # fmt: skip
    row = info["rows"][member]
    hyper = {k: row[k] for k in info.get("hyper_names", [])}
    described = (info.get("members_model") or [{}] * n)[member]  # older sweeps: the MLP's fields in the config
    member_info = {**info, "config": info["members_config"][member], "hyper": hyper, "members": n, **described,
                   "sweep_hash": sweep_hash(info)}  # fmt: skip
    return member_info, folder / SWEEP_PARAMS


__all__ = ["TrainedModel", "load_run"]
