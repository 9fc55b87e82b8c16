"""The built-in MLP: its description (``MLP``) and its ``jnn.Task`` (``mlp_task``).

``mlp_task`` wraps the lecture's network (``jnn.init_mlp``, ``jnn.model.forward_cache``), its
dropout in both conventions and the L2 penalty λΣw² as a Task whose hyperparameters are ``l2`` (λ) and
``keep_prob`` (p). ``MLP`` describes that network apart from the data (hidden widths, activation, loss,
λ, dropout); ``jnn.fit(train, config, task=MLP(...))`` trains ``MLP.task_for(train)``, and ``fit`` without a
task trains ``MLP()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from jnn.types import DTypeLike, PyTree

if TYPE_CHECKING:
    from jnn.data import Dataset
    from jnn.task import CheckedTask

import dataclasses
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp

from jnn import _validate as V
from jnn.activations import ACTIVATIONS
from jnn.dropout import MODES, Dropout
from jnn.fields import Interval, Options, check_fields, names_where, plain_dict, python_scalars, role_field
from jnn.init import SCHEMES, init_mlp
from jnn.losses import DEFAULT_LOSS, LOSSES, get_loss, l2_selection, l2_term
from jnn.metrics import resolve_metrics
from jnn.model import dropout_masks, forward_cache
from jnn.task import Task, check_targets


def l2_penalty_fn(params_template, *, include_bias: bool = False):
    """The lecture's penalty as a task penalty: ``penalty(params, hyper) = hyper["l2"] · Σ w²``.

    Args:
        params_template: MLP params (a list of ``{"w", "b"}``) fixing the structure.
        include_bias: also penalise the biases.
    """
    l2_selection(params_template, include_bias)  # validates include_bias
    return L2Penalty(len(params_template), include_bias)


# The MLP's functions are frozen dataclasses rather than closures: two MLPs of the same description have
# equal (and equally hashing) functions, so ``jax.jit``'s own cache serves every run of one description.


@dataclass(frozen=True)
class L2Penalty:
    """``penalty(params, hyper) = hyper["l2"] · Σ w²`` over the ``layers`` weights (and biases)."""

    layers: int
    include_bias: bool = False

    def __call__(self, params, hyper):
        sel = l2_selection([None] * self.layers, self.include_bias)
        return l2_term(params, hyper["l2"], sel)


@dataclass(frozen=True)
class MLPInit:
    """``init(key) -> params`` of ``jnn.init_mlp`` for layer widths ``sizes``."""

    sizes: tuple[int, ...]
    scheme: str
    dtype: Any

    def __call__(self, key):
        return init_mlp(key, self.sizes, scheme=self.scheme, dtype=self.dtype)


@dataclass(frozen=True)
class MLPApply:
    """``apply(params, x, *, key, train, hyper)``: the forward pass; ``key`` is a PRNG key or the masks of
    ``MLPDraw`` (dropout with ``hyper["keep_prob"]`` when ``use_dropout``)."""

    activation: str
    dropout_mode: str
    use_dropout: bool
    #: Its dropout masks come from ``key`` (see ``jnn.task.check_key_used``).
    uses_key = True

    def __call__(self, params, x, *, key, train, hyper):
        masks = key if isinstance(key, dict) else None
        dropout = Dropout(hyper["keep_prob"], self.dropout_mode) if self.use_dropout else None
        return forward_cache(
            params,
            x,
            activation=self.activation,
            dropout=dropout,
            key=None if masks is not None else key,
            train=train,
            masks=masks,
        ).zs[-1]


@dataclass(frozen=True)
class MLPDraw:
    """``draw(key, hyper, batch_size)``: one step's dropout masks for layer widths ``sizes``."""

    sizes: tuple[int, ...]
    dropout_mode: str

    def __call__(self, key, hyper, batch_size):
        return dropout_masks(Dropout(hyper["keep_prob"], self.dropout_mode), key, self.sizes, batch_size)


def mlp_task(
    sizes,
    *,
    activation: str = "relu",
    loss: str = DEFAULT_LOSS,
    scheme: str = "lecun_normal",
    dtype="float32",
    l2: float = 0.0,
    include_bias: bool = False,
    keep_prob: float = 1.0,
    dropout_mode: str = "inverted",
    use_dropout: bool | None = None,
    metrics=None,
) -> Task:
    """The fully connected network of the lecture as a ``jnn.Task``.

    Two calls with the same arguments (other than the defaults ``l2`` and ``keep_prob``, which the engine
    passes as arrays) give tasks with equal functions, so training either compiles once.

    Args:
        sizes: layer widths ``(d_in, h_1, ..., d_out)``.
        activation: hidden activation name.
        loss: a built-in loss name (the network outputs logits / predictions ``[batch, d_out]``).
        scheme: initialisation scheme of ``jnn.init_mlp``.
        dtype: float dtype of the params.
        l2: default λ (``hyper["l2"]``) of λΣw².
        include_bias: also penalise the biases.
        keep_prob: default dropout keep probability p (``hyper["keep_prob"]``); 1 disables dropout.
        dropout_mode: ``"inverted"`` or ``"classic"`` (evaluation then scales by ``hyper["keep_prob"]``).
        use_dropout: compile the dropout path (default ``keep_prob < 1``; a sweep with some members below
            1 passes True).
        metrics: the task's metrics (default: the loss's, see ``jnn.metrics.DEFAULT_METRICS``).

    Returns:
        A Task with hyperparameters ``{"l2": l2, "keep_prob": keep_prob}``; its ``draw`` gives a step's
        dropout masks, so an epoch's masks can be drawn in one call.
    """
    sizes = tuple(int(s) for s in sizes)
    Dropout(keep_prob, dropout_mode)  # validates both
    use_dropout = bool(keep_prob < 1.0 if use_dropout is None else use_dropout)
    return Task(
        init=MLPInit(sizes, scheme, _dtype_name(dtype)),
        apply=MLPApply(activation, dropout_mode, use_dropout),
        loss=loss,
        penalty=L2Penalty(len(sizes) - 1, include_bias),
        metrics=metrics,
        hyper={"l2": float(l2), "keep_prob": float(keep_prob)},
        draw=MLPDraw(sizes, dropout_mode) if use_dropout else None,
    )


def _dtype_name(dtype):
    """``dtype``'s name (so that ``"float32"`` and ``jnp.float32`` describe one MLP); as given if not a dtype
    (``jnn.init_mlp`` then says what is wrong)."""
    try:
        return jnp.dtype(dtype).name
    except TypeError:
        return dtype


@dataclass(frozen=True)
class MLP:
    """The built-in network of the lecture, described apart from the data and the training.

    ``fit(train, config, task=MLP(hidden=(100, 100), keep_prob=0.8))`` trains it; the layer widths come from
    the data (``(d_in, *hidden, d_out)``, d_out = classes for softmax, 1 for binary, the targets' width for mse
    and multilabel) and ``task_for`` builds its ``jnn.Task``. The defaults are the jnn recipe of
    ``experiments/mnist1d_mlp.py``: a 256-256 relu network, λ = 1e-4, inverted dropout with keep_prob 0.7.
    Each field declares its roles in its metadata as ``jnn.TrainConfig``'s do (see ``jnn.fields``):
    ``l2`` and ``keep_prob`` are traced (another value compiles nothing), ``hidden``, ``l2`` and ``keep_prob``
    are sweep axes, and the command line derives its flags from them.

    Attributes:
        hidden: hidden-layer widths (``()``: a linear model). Ignored when ``sizes`` is given.
        sizes: full layer widths ``(d_in, ..., d_out)``; checked against the data.
        activation: hidden activation (one of ``jnn.activations.ACTIVATIONS``).
        loss: a built-in loss (``jnn.losses.LOSSES``): ``"softmax"``, ``"binary"`` (two classes, one
            logit), ``"mse"`` or ``"huber"`` (float targets, regression) or ``"multilabel"`` (0/1 targets
            ``[n, k]``, one sigmoid per label).
        scheme: initialisation scheme of ``jnn.init_mlp``.
        l2: λ ≥ 0 of λΣw².
        include_bias: penalise the biases too.
        keep_prob: dropout's p in (0, 1]; 1 disables dropout.
        dropout_mode: ``"inverted"`` or ``"classic"`` (evaluation then scales by p).
        metrics: the metric names recorded each epoch and scored by ``evaluate`` (None: the loss's defaults, see
            ``jnn.metrics.METRICS``): per-example ones (``accuracy``, ``top3_accuracy``, ``mse``...) for training
            and validation, set ones (``f1``, ``f1_macro``, ``roc_auc``...) for validation and evaluation.
    """

    hidden: tuple[int, ...] = role_field((256, 256), "static", sweep=True, cli="hidden widths (default {default})")
    sizes: tuple[int, ...] | None = role_field(None, "static", cli="full layer widths, e.g. 40,100,100,10")
    activation: str = role_field("relu", "static", cli="default {default}", choices=ACTIVATIONS)
    loss: str = role_field(DEFAULT_LOSS, "static", cli="default {default}", choices=LOSSES)
    scheme: str = role_field("lecun_normal", "host", check=Options(tuple(SCHEMES)))
    l2: float = role_field(1e-4, "traced", sweep=True, cli="λ, the strength of the L2 penalty λΣw² (default {default})",
                           check=Interval(float, 0.0, hint="λ in λΣw²"))  # fmt: skip
    include_bias: bool = role_field(False, "static")
    keep_prob: float = role_field(
        0.7, "traced", sweep=True, cli="p, the probability of keeping a unit in dropout; 1 = off (default {default})"
    )
    dropout_mode: str = role_field(
        "inverted", "static", flag="mode", choices=MODES, cli="dropout convention (default {default})"
    )
    metrics: tuple[str, ...] | None = role_field(
        None, "static", cli="metrics recorded and scored, comma-separated, e.g. accuracy,f1_macro,roc_auc "
        "(default: the loss's)", check=lambda name, v: _check_metric_names(v), optional=True,
    )  # fmt: skip

    def __post_init__(self):
        python_scalars(self)
        hidden = self.hidden
        if isinstance(hidden, (str, bytes)) or not isinstance(hidden, (list, tuple)):
            raise TypeError(f"hidden must be a sequence of positive ints such as (100, 100); got {hidden!r}")
        for i, h in enumerate(hidden):
            V.check_int(f"hidden[{i}]", h, low=1, high=V.MAX_WIDTH)
        object.__setattr__(self, "hidden", tuple(int(h) for h in hidden))
        if self.sizes is not None:
            object.__setattr__(self, "sizes", V.check_sizes(self.sizes))
        check_fields(self)
        if self.metrics is not None:
            resolve_metrics(self.metrics, self.loss)  # each name known and suited to the loss (named if not)
        Dropout(self.keep_prob, self.dropout_mode)  # validates keep_prob and mode
        object.__setattr__(self, "keep_prob", float(self.keep_prob))

    def dropout(self) -> Dropout | None:
        """The ``Dropout``, or None when ``keep_prob == 1``."""
        return None if self.keep_prob == 1.0 else Dropout(self.keep_prob, self.dropout_mode)

    def network_sizes(self, train: Dataset) -> tuple[int, ...]:
        """Full layer widths for the Dataset ``train`` (validated against ``sizes`` if given).

        The output width: the number of classes (softmax), 1 (binary), the number of targets (mse and
        multilabel; 1 for targets ``[n]``).

        Raises:
            ValueError: ``sizes`` does not start with the data's features or end with the loss's outputs.
        """
        d_in = int(train.x.shape[1])
        outputs = get_loss(self.loss).outputs
        if outputs == "classes":
            d_out = train.num_classes or 0
        elif outputs == "one":
            d_out = 1
        else:
            d_out = int(train.y.shape[1]) if train.y.ndim == 2 else 1
        if self.sizes is None or d_out == 0:
            return (d_in, *self.hidden, d_out)
        if self.sizes[0] != d_in or self.sizes[-1] != d_out:
            raise ValueError(
                f"sizes must start with the data's {d_in} features and end with {d_out} output "
                f"unit(s) for loss={self.loss!r}; got sizes={list(self.sizes)}"
            )
        return self.sizes

    def build(self, sizes: Sequence[int], dtype: DTypeLike = "float32", *, use_dropout: bool | None = None) -> Task:
        """The ``jnn.Task`` of this MLP with layer widths ``sizes`` (see ``mlp_task``); ``evaluate`` passes
        the widths of trained params."""
        return mlp_task(sizes, activation=self.activation, loss=self.loss, scheme=self.scheme, dtype=dtype,
                        l2=self.l2, include_bias=self.include_bias, keep_prob=self.keep_prob,
                        dropout_mode=self.dropout_mode, use_dropout=use_dropout, metrics=self.metrics)  # fmt: skip

    # The model protocol, shared with jnn.Task: what fit, sweep and evaluate ask of what they train.

    def task_for(self, train: Dataset, *, hypers: Sequence[dict] | None = None) -> Task:
        """The ``jnn.Task`` that trains this MLP on the Dataset ``train``: its targets checked against the loss,
        the widths from ``network_sizes``, the params in the data's float dtype.

        Args:
            train: the training data.
            hypers: the hyperparameters (``{"keep_prob": ...}``) of the sweep members that will share the task:
                the dropout path is compiled when any of them keeps less than every unit (default: when
                ``keep_prob < 1``).
        """
        check_targets(self.loss, train, "training")
        use_dropout = None if hypers is None else any(h["keep_prob"] < 1.0 for h in hypers)
        return self.build(self.network_sizes(train), str(train.x.dtype), use_dropout=use_dropout)

    def task_for_params(self, params: PyTree, ds: Dataset) -> Task:
        """The ``jnn.Task`` of this MLP that scores ``params`` (their widths and dtype) on the Dataset ``ds``.

        Raises:
            TypeError: ``params`` are not an MLP's list of ``{"w", "b"}`` dicts.
            ValueError: ``ds`` has another number of features than the params take.
        """
        leaves = params if isinstance(params, (list, tuple)) else None
        if not leaves or not all(isinstance(l, dict) and "w" in l for l in leaves):
            raise TypeError(
                "with a jnn.MLP, params must be the built-in MLP's list of {'w', 'b'} dicts; pass "
                "the jnn.Task to evaluate another model"
            )
        sizes = (int(leaves[0]["w"].shape[0]), *(int(l["w"].shape[1]) for l in leaves))
        if ds.x.shape[1] != sizes[0]:
            raise ValueError(f"ds has {ds.x.shape[1]} features but the params take {sizes[0]} (their first layer "
                             f"is {sizes[0]}x{sizes[1]})")  # fmt: skip
        return self.build(sizes, str(jnp.asarray(leaves[0]["w"]).dtype))

    def sweep_axes(self) -> tuple[str, ...]:
        """The fields ``jnn.sweep`` may vary per member (``MLP_SWEEP_FIELDS``: hidden, l2, keep_prob)."""
        return MLP_SWEEP_FIELDS

    def member(self, values: dict) -> tuple[MLP, dict]:
        """One sweep member: ``(MLP with values, its hyper {"l2", "keep_prob"})``, validated as a new MLP."""
        m = MLP.from_dict({**self.to_dict(), **values})
        return m, {"l2": m.l2, "keep_prob": m.keep_prob}

    def with_hyper(self, hyper: dict) -> MLP:
        """This MLP with ``l2`` and ``keep_prob`` from ``hyper`` where it has them (a sweep member's model)."""
        return dataclasses.replace(self, l2=float(hyper.get("l2", self.l2)),
                                   keep_prob=float(hyper.get("keep_prob", self.keep_prob)))  # fmt: skip

    def shape_key(self) -> tuple:
        """What of this MLP changes the program's shapes between sweep members: its widths."""
        return (self.hidden, self.sizes)

    def shape_label(self) -> str:
        """How a sweep's progress names this MLP's shapes: ``"hidden 64,64, "`` (``"hidden none, "``: linear)."""
        return f"hidden {','.join(str(h) for h in self.hidden) or 'none'}, "

    def describe(self, ct: CheckedTask, params: PyTree) -> dict:
        """What a run records of this MLP (``config.json``): ``{"mlp": its fields, "sizes": its layer widths}``.

        Args:
            ct: the checked task (unused: the MLP describes itself).
            params: its params (arrays or ``jax.ShapeDtypeStruct``), for the widths.
        """
        del ct
        return {"mlp": self.to_dict(), "sizes": [int(params[0]["w"].shape[0]), *(int(l["w"].shape[1]) for l in params)]}

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of the fields (what a run folder's ``config.json`` records under ``"mlp"``)."""
        return plain_dict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MLP:
        """Build from a dict (a TOML table ``[mlp]`` or a run's ``config.json["mlp"]``); unknown keys are refused
        with the list of known ones."""
        if not isinstance(d, dict):
            raise TypeError(f"mlp must be a table/dict; got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown MLP key(s) {V.short(unknown)}; known keys: {known}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)


#: The fields of ``MLP``, in order (the keys of ``config.json["mlp"]``).
MLP_FIELDS = tuple(f.name for f in dataclasses.fields(MLP))


def _check_metric_names(v) -> tuple[str, ...]:
    """``metrics`` as a tuple of names (checked against the loss when the task is built)."""
    if isinstance(v, str) or not isinstance(v, (list, tuple)) or not all(isinstance(m, str) and m for m in v):
        raise TypeError(f"metrics must be a sequence of metric names such as ('accuracy', 'f1_macro'); got {v!r}")
    return tuple(v)


#: The ``MLP`` fields ``jnn.sweep`` takes as axes (``hidden``, ``l2``, ``keep_prob``).
MLP_SWEEP_FIELDS = names_where(MLP, sweep=True)


def split_mlp_keys(d: dict) -> tuple[dict, dict]:
    """``(training keys, MLP keys)`` of one flat dict (a TOML file, or a ``config.json`` written before the MLP
    left ``jnn.TrainConfig``): the keys that are ``MLP`` fields go to the second dict."""
    return {k: v for k, v in d.items() if k not in MLP_FIELDS}, {k: v for k, v in d.items() if k in MLP_FIELDS}


__all__ = [
    "MLP",
    "MLP_FIELDS",
    "MLP_SWEEP_FIELDS",
    "split_mlp_keys",
    "mlp_task",
    "l2_penalty_fn",
    "L2Penalty",
    "MLPInit",
    "MLPApply",
    "MLPDraw",
]
