"""The training configuration: every setting of how a run trains, validated before anything is traced.

The model is described apart from it: ``jnn.MLP`` (the built-in network) or any ``jnn.Task``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
import optax

from jnn import _validate as V
from jnn.dropout import MODES
from jnn.fields import (
    PROGRAM_ROLES,
    Instance,
    Interval,
    Options,
    check_fields,
    names_where,
    plain_dict,
    python_scalars,
    role_field,
)
from jnn.mlp import MLP_FIELDS
from jnn.train.best_k import BestCheckpoints
from jnn.train.plateau import ReduceLROnPlateau
from jnn.train.stopping import MONITORS, EarlyStopping

OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")
#: Learning-rate schedules over the run's ``max_epochs``: constant η, cosine decay to 0, and a linear
#: warm-up from 0 over ``warmup_epochs`` followed by cosine decay.
LR_SCHEDULES = ("constant", "cosine", "warmup-cosine")
PRNG_IMPLS = ("threefry2x32", "rbg")
#: Dtypes a step may compute in (``TrainConfig.compute_dtype``; None: the params').
COMPUTE_DTYPES = ("bfloat16", "float32")
#: Weight averages a run can keep (``TrainConfig.average``).
AVERAGES = ("ema", "polyak")


#: Largest epoch or step budget (the counters are int32 on device).
MAX_COUNT = 2**31 - 1
#: A count of epochs or steps: 1 … ``MAX_COUNT`` (0 … for ``COUNT0``).
COUNT = Interval(int, 1, MAX_COUNT)
COUNT0 = Interval(int, 0, MAX_COUNT)
#: The most epochs per call a config may ask for (``epochs_per_call``; the summary buffer has that many rows).
MAX_EPOCHS_PER_CALL_SET = 1 << 16


@dataclass(frozen=True)
class TrainConfig:
    """How a run trains: the lecture's loop (optimiser, minibatches, budgets), its stopping rules, the validation
    split, the seed and the runtime. What is trained is described apart: ``jnn.MLP`` or a ``jnn.Task``.

    The defaults are the training half of the jnn recipe of ``experiments/mnist1d_mlp.py`` (over 70% test
    accuracy on MNIST-1D with ``MLP()``, mean of 3 seeds, in about ten seconds per run on two CPU cores): SGD
    with momentum 0.9 at η = 0.02, minibatches of 100, early stopping on the validation loss with patience 30.
    ``optimizer="sgd"`` is the lecture's plain update θ ← θ − η∇θ l.

    Each field declares its roles once, in its dataclass metadata (see ``jnn.fields.role_field``): how the
    compiled program sees it (``PROGRAM_ROLES``: ``traced`` fields are arrays in the state, so another value
    compiles nothing: seed, η under a constant schedule, momentum, weight decay; ``static`` ones are part of the
    ``jnn.train.program.ProgramSpec``; ``host`` ones are read only outside it), whether it may change on
    resume (``RESUME_CHANGES``), is a sweep axis (``SWEEP_FIELDS``), and its command-line flag and
    help. ``tests/test_config_roles.py`` holds every declaration to what the program does.

    Attributes:
        optimizer: ``"sgd"`` (θ ← θ − η∇θ l, the lecture), ``"momentum"``, ``"adam"`` or ``"adamw"`` (Adam
            with decoupled weight decay); ``fit`` also takes any ``optax.GradientTransformation``.
        learning_rate: η > 0 (the peak value under a schedule).
        momentum: for ``"momentum"``, in [0, 1).
        weight_decay: for ``"adamw"``, the decoupled decay rate ≥ 0 (optax's default 1e-4).
        lr_schedule: one of ``LR_SCHEDULES``; the history's ``learning_rate`` column records the rate
            each epoch's last step used.
        warmup_epochs: for ``"warmup-cosine"``, epochs of linear warm-up from 0 to η (< max_epochs).
        batch_size: T, the minibatch size, 1 ≤ T ≤ n.
        max_epochs: epoch budget ≥ 1.
        max_steps: optional step budget ≥ 1.
        early_stopping: the ``jnn.EarlyStopping`` rule on a monitored metric (default: on ``val_loss`` with
            patience 30, the best epoch's params restored), or None to train for the budget. ``val_*``
            monitors need validation data (``val_fraction > 0`` or ``fit(..., val=...)``); the monitor may be
            any recorded ``train_<metric>``/``val_<metric>`` of the task.
        loss_tol: a second ``jnn.EarlyStopping`` (``stopped_by="loss_tol"``), or None; it must have
            ``restore_best=False`` (only ``early_stopping`` chooses the returned params). The tolerance on the
            training loss: ``EarlyStopping("train_loss", patience=10, min_delta=1e-3, restore_best=False)``
            stops when the training loss has not improved by more than 1e-3 for 10 epochs.
        reduce_lr: a ``jnn.ReduceLROnPlateau`` rule (Keras's, run on device inside the compiled call: the
            optimiser's rate is multiplied by its factor when its monitor stops improving), or None (default). It
            needs a constant rate held as state (the built-in optimisers; ``lr_schedule="constant"``).
        best_checkpoints: a ``jnn.BestCheckpoints(k, monitor)`` rule: the params of the k best epochs are kept on
            device (``FitResult.best_checkpoints()``; a run folder writes them to ``best/`` with each checkpoint),
            or None (default).
        val_fraction: part of the training data held out for validation, in [0, 1) (ignored when ``fit``
            is given ``val=``).
        stratify: stratified validation split.
        drop_last: drop the ragged last minibatch instead of padding and masking it.
        seed: the root seed; split into the ``init``, ``data``, ``dropout`` and ``split`` streams.
        checkpoint_every: save a checkpoint every k epochs (0: only at the end) when ``fit`` has a
            ``jnn.RunFolder``.
        keep_checkpoints: how many of the latest epoch checkpoints a run folder keeps in ``checkpoints/``
            (besides ``checkpoint.npz``, the latest, and the one of the best training loss);
            ``RunFolder(path, resume=True, from_epoch=E)`` restarts from any of them.
        divergence_factor: stop a run (``stopped_by="diverged"``) when an epoch's training loss exceeds this
            factor (> 1) times the best training loss so far and the first epoch's training loss, while
            still finite (None: off); non-finite values are stopped by ``check_finite``.
        prng_impl: generator of the per-epoch permutations and dropout masks: ``"threefry2x32"`` (JAX's
            default) or ``"rbg"`` (cheaper bits per call; other random bits, so other results for the same
            seed). Threefry masks of a small epoch are drawn up front in one call; rbg masks are drawn
            step by step (``benchmarks/throughput.py`` measures both).
        check_finite: check every gradient leaf for NaN/inf before each update (default). A step with a
            non-finite loss or gradient is then not applied: the run stops with the last finite state and
            names the step and the leaf. ``False`` checks the loss only, which saves a pass over the
            gradients (``benchmarks/throughput.py`` measures it); a non-finite gradient is then
            applied and the run stops at the next step, keeping the non-finite parameters. Either way the
            compiled calls check only the loss per step and every parameter once per call; a call that went
            non-finite is replayed with the per-step check (see ``jnn.train.multi_epoch``), so ``True`` costs
            no time while values stay finite.
        epochs_per_call: epochs one compiled call runs (None: chosen from the measured epoch time so that a
            call takes about 0.3 s; at most 256). Results are bit for bit the same for every value;
            progress, history, checkpoints and Ctrl-C act between calls.
        average: keep an average of the params in the optimiser state (see ``jnn.train.averaging``):
            ``"ema"`` (exponential, decay ``average_decay``), ``"polyak"`` (uniform over the iterates) or None.
            The trained params are unchanged; ``FitResult.averaged_params`` holds the average.
        average_decay: the EMA decay d in [0, 1) (``average="ema"``).
        compute_dtype: mixed precision: ``"bfloat16"`` runs each step's forward and backward pass in bfloat16
            while the params, their gradients and the optimiser state stay in the params' dtype (float32 master
            params; see ``jnn.train.precision``); validation, ``evaluate`` and ``predict`` use the params'
            dtype. None (default): the params' dtype throughout. bfloat16 keeps float32's exponent range, so no
            loss scaling is needed; float16 would need it and is refused.
    """

    optimizer: str = role_field("momentum", "static", cli="default {default}", choices=OPTIMIZERS)
    learning_rate: float = role_field(
        0.02, "traced", resume=True, sweep=True, cli="η, the step size of θ ← θ − η∇θ l (default {default})",
        check=Interval(float, 0.0, None, "right", hint="the step size η"),
    )  # fmt: skip
    momentum: float = role_field(0.9, "traced", cli="momentum of --optimizer momentum, in [0, 1) (default {default})",
                                 check=Interval(float, 0.0, 1.0, "left"))  # fmt: skip
    weight_decay: float = role_field(
        1e-4, "traced", cli="decoupled weight decay of --optimizer adamw (default {default})",
        check=Interval(float, 0.0),
    )  # fmt: skip
    lr_schedule: str = role_field(
        "constant",
        "static",
        choices=LR_SCHEDULES,
        cli="η over the run: constant, cosine decay to 0, or linear warm-up then cosine (default {default})",
    )
    warmup_epochs: int = role_field(
        0, "static", cli="warm-up epochs of --lr-schedule warmup-cosine (default {default})", check=COUNT0
    )
    batch_size: int = role_field(100, "static", sweep=True, cli="T, the examples in each minibatch (default {default})",
                                 check=COUNT)  # fmt: skip
    max_epochs: int = role_field(300, "static", resume=True, cli="epoch budget (default {default})", check=COUNT)
    max_steps: int | None = role_field(None, "static", resume=True, cli="step budget (default {default})",
                                       check=COUNT, optional=True)  # fmt: skip
    early_stopping: EarlyStopping | None = role_field(
        EarlyStopping(patience=30),
        "static",
        cli="train for --max-epochs",
        nested={
            "monitor": "metric early stopping watches: val_/train_ + loss or a metric of the loss (accuracy; "
            "mse, mae, r2 for --loss mse) (default {default})",
            "patience": "epochs without improvement before early stopping (default {default})",
        },
        check=Instance(EarlyStopping, "jnn.EarlyStopping", "None trains for the budget; EarlyStopping("
                       "monitor='val_loss', patience=30) is the default"),
        optional=True,
    )  # fmt: skip
    loss_tol: EarlyStopping | None = role_field(
        None, "static", check=Instance(EarlyStopping, "jnn.EarlyStopping", "a tolerance t on the training loss over "
                                       "k epochs is EarlyStopping('train_loss', patience=k, min_delta=t, "
                                       "restore_best=False)"), optional=True,
    )  # fmt: skip
    reduce_lr: ReduceLROnPlateau | None = role_field(
        None, "static", cli="Keras's ReduceLROnPlateau on device, off unless a --plateau-* flag is given",
        nested_prefix="plateau",
        nested={
            "factor": "reduce the learning rate by this factor in (0, 1) when --plateau-monitor stops improving "
            "(Keras's ReduceLROnPlateau, on device; default off)",
            "patience": "epochs without improvement before a reduction (default {default})",
            "monitor": "metric the plateau rule watches (default {default})",
            "cooldown": "epochs after a reduction before counting again (default {default})",
            "min_lr": "the learning rate is never reduced below it (default {default})",
            "min_delta": "an improvement must exceed it (default {default})",
        },
        check=Instance(ReduceLROnPlateau, "jnn.ReduceLROnPlateau", "None keeps the rate"), optional=True,
    )  # fmt: skip
    best_checkpoints: BestCheckpoints | None = role_field(
        None, "static", cli="the k best epochs' params in RUN/best, off unless --best-k is given",
        nested_prefix="best",
        nested={
            "k": "keep the params of the k best epochs by --best-monitor in RUN/best (on device; default off)",
            "monitor": "metric that ranks the kept epochs (default {default})",
        },
        check=Instance(BestCheckpoints, "jnn.BestCheckpoints", "None keeps none"), optional=True,
    )  # fmt: skip
    val_fraction: float = role_field(
        0.1, "host", cli="part of the training data held out for validation (default {default})",
        check=Interval(float, 0.0, 1.0, "left"),
    )  # fmt: skip
    stratify: bool = role_field(True, "host")
    drop_last: bool = role_field(False, "static")
    seed: int = role_field(0, "traced", sweep=True, cli="root seed of every random stream (default {default})",
                           check=Interval(int, 0, 2**63 - 1))  # fmt: skip
    checkpoint_every: int = role_field(
        0, "host", resume=True, cli="epochs between checkpoints; 0 = only at the end (default {default})", check=COUNT0
    )
    prng_impl: str = role_field(
        "threefry2x32",
        "static",
        choices=PRNG_IMPLS,
        cli="generator of permutations and dropout masks (see TrainConfig.prng_impl)",
    )
    check_finite: bool = role_field(
        True, "static", cli="check only the loss for NaN/inf, not every gradient (see TrainConfig.check_finite)"
    )
    divergence_factor: float | None = role_field(
        10.0,
        "static",
        resume=True,
        cli="stop when the training loss exceeds this factor x the best and the first epoch's (default {default})",
        check=Interval(float, 1.0, None, "right"),
        optional=True,
    )
    keep_checkpoints: int = role_field(
        3, "host", resume=True, cli="latest epoch checkpoints kept in RUN/checkpoints (default {default})",
        check=Interval(int, 1, 10_000),
    )  # fmt: skip
    epochs_per_call: int | None = role_field(
        None, "static", resume=True, cli="epochs one compiled call runs (default: ~0.3 s worth; same results for all)",
        check=Interval(int, 1, MAX_EPOCHS_PER_CALL_SET), optional=True,
    )  # fmt: skip
    average: str | None = role_field(None, "static", check=Options(AVERAGES), optional=True)
    average_decay: float = role_field(0.999, "static", check=Interval(float, 0.0, 1.0, "left", hint="the EMA decay d"))
    compute_dtype: str | None = role_field(
        None, "static", choices=COMPUTE_DTYPES, cli="dtype of each step's forward/backward pass (default: the params')",
        optional=True,
    )  # fmt: skip

    def __post_init__(self):
        python_scalars(self)  # NumPy scalars become Python ones (the config is JSON and hashed)
        if self.compute_dtype == "float16":
            raise ValueError("compute_dtype='float16' needs loss scaling, which jnn does not do; use 'bfloat16' "
                             "(float32's exponent range, no scaling needed)")  # fmt: skip
        check_fields(self)  # each field against the constraint declared beside it; then the rules between fields
        with np.errstate(over="ignore", under="ignore"):
            lr32 = np.float32(self.learning_rate)
        if lr32 == 0 or not np.isfinite(lr32):
            f32 = np.finfo(np.float32)
            raise ValueError(f"learning_rate must be representable in float32, in [{f32.smallest_subnormal:g}, "
                             f"{f32.max:g}]; got {self.learning_rate!r}, which becomes {float(lr32)!r}")  # fmt: skip
        if self.warmup_epochs and self.lr_schedule != "warmup-cosine":
            raise ValueError(f"warmup_epochs is for lr_schedule='warmup-cosine'; got lr_schedule={self.lr_schedule!r}")
        if self.warmup_epochs >= self.max_epochs:
            raise ValueError(
                f"warmup_epochs must be in [0, {self.max_epochs - 1}] (less than max_epochs); got {self.warmup_epochs}"
            )
        if self.loss_tol is not None and self.loss_tol.restore_best:
            raise ValueError(
                "loss_tol.restore_best must be False (only early_stopping chooses the returned params); got "
                f"{self.loss_tol!r}"
            )

    # ------------------------------------------------------------------------------------------------

    def monitored(self) -> EarlyStopping:
        """The rule whose monitor ranks epochs and sweep members: ``early_stopping``, or the default
        ``EarlyStopping`` (``val_loss``, min) when it is off."""
        return self.early_stopping if self.early_stopping is not None else EarlyStopping()

    def restores_best(self) -> bool:
        """Whether the run returns its best epoch's params (early stopping on, with ``restore_best``)."""
        return self.early_stopping is not None and self.early_stopping.restore_best

    def steps_per_epoch(self, n_train: int) -> int:
        """Updates per epoch on ``n_train`` examples: ⌈n/T⌉ (⌊n/T⌋ with ``drop_last``)."""
        return n_train // self.batch_size if self.drop_last else -(-n_train // self.batch_size)

    def schedule(self, steps_per_epoch: int):
        """η as optax takes it: the float for ``"constant"``, else a schedule of the step count over
        ``max_epochs × steps_per_epoch`` steps."""
        if self.lr_schedule == "constant":
            return self.learning_rate
        return _cosine(self.learning_rate, self.warmup_epochs * steps_per_epoch if self.lr_schedule == "warmup-cosine"
                       else 0, self.max_epochs * steps_per_epoch)  # fmt: skip

    def make_optimizer(self, steps_per_epoch: int = 1) -> optax.GradientTransformation:
        """The optax transformation named by ``optimizer``, with the learning rate (or its schedule) injected
        as state, so that the history records the rate in use and a checkpoint holds it.

        Args:
            steps_per_epoch: updates per epoch (see ``steps_per_epoch``), to lay a schedule over the run.
        """
        lr = self.schedule(steps_per_epoch)
        if self.optimizer == "sgd":
            tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr)
        elif self.optimizer == "momentum":
            tx = optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=self.momentum)
        elif self.optimizer == "adamw":
            tx = optax.inject_hyperparams(optax.adamw)(learning_rate=lr, weight_decay=self.weight_decay)
        else:
            tx = optax.inject_hyperparams(optax.adam)(learning_rate=lr)
        return self.with_average(tx)

    def with_average(self, tx: optax.GradientTransformation) -> optax.GradientTransformation:
        """``tx`` wrapped by ``jnn.train.averaging.weight_average`` when ``average`` is set, else ``tx``."""
        if self.average is None:
            return tx
        from jnn.train.averaging import weight_average

        return weight_average(tx, decay=self.average_decay if self.average == "ema" else None)

    def to_dict(self) -> dict:
        """Plain JSON-ready dict of the fields."""
        return plain_dict(self)

    def hash(self) -> str:
        """A short stable hash of ``to_dict`` (identifies a run's configuration)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build from a dict (e.g. a TOML file or a run's ``config.json``); unknown keys are refused with the
        list of known ones.

        ``early_stopping`` and ``loss_tol`` may be given as a dict of ``EarlyStopping`` attributes (a TOML
        table ``[early_stopping]``; the attributes it leaves out keep those of the default rule, patience 30),
        as None, or ``false`` (off). The flat keys of configs written before they were one field each
        (``monitor``, ``patience``, ``min_delta``, ``start_epoch``, ``restore_best``, ``monitor_mode``,
        ``early_stopping = true/false``, ``loss_tol = <float>`` with ``tol_patience``) are read too (see
        ``upgrade_dict``).
        """
        if not isinstance(d, dict):
            raise TypeError(f"config must be a table/dict; got {type(d).__name__}")
        d = upgrade_dict(d)
        model = sorted(set(d) & set(MLP_FIELDS))
        if model:
            raise ValueError(
                f"config key(s) {model} describe the model, not the training: give them to jnn.MLP ({', '.join(model)}"
                "=...) and pass fit(..., task=jnn.MLP(...)); in a TOML file put them in an [mlp] table"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config key(s) {V.short(unknown)}; known keys: {sorted(known)}")
        for k in ("early_stopping", "loss_tol"):
            if isinstance(d.get(k), dict):
                d[k] = _stopper_from_dict(k, d[k])
        for k, rule in (("reduce_lr", ReduceLROnPlateau), ("best_checkpoints", BestCheckpoints)):
            if isinstance(d.get(k), dict):
                d[k] = _rule_from_dict(k, rule, d[k])
        return cls(**d)


#: The flat keys of configs written before early stopping became one field, and the EarlyStopping attribute
#: each one set.
FLAT_STOPPING_KEYS = {"monitor": "monitor", "patience": "patience", "min_delta": "min_delta",
                      "start_epoch": "start_epoch", "restore_best": "restore_best", "monitor_mode": "mode"}  # fmt: skip


def upgrade_dict(d: dict) -> dict:
    """A config dict in today's form: the flat early-stopping keys of older configs (see
    ``FLAT_STOPPING_KEYS``; ``early_stopping`` a bool; ``loss_tol`` a float with ``tol_patience``) become the
    ``early_stopping`` and ``loss_tol`` dicts. A dict in today's form comes back equal; ``d`` is not changed.

    Flat keys beside ``early_stopping = false`` are dropped (older run folders recorded them unused).
    """
    d = dict(d)
    flat = {a: d.pop(k) for k, a in FLAT_STOPPING_KEYS.items() if k in d}
    es = d.get("early_stopping", True)
    if isinstance(es, bool):
        d["early_stopping"] = {**_DEFAULT_RULE, **flat} if es else None
    elif flat:
        if not isinstance(es, dict):
            raise ValueError(f"give early stopping's settings in one place, not both early_stopping={es!r} and the "
                             f"flat key(s) {sorted(flat)}")  # fmt: skip
        d["early_stopping"] = {**es, **flat}
    tol, tol_patience = d.get("loss_tol"), d.pop("tol_patience", 10)
    if isinstance(tol, (int, float)) and not isinstance(tol, bool):
        d["loss_tol"] = {"monitor": "train_loss", "patience": tol_patience, "min_delta": tol, "start_epoch": 0,
                         "restore_best": False, "mode": None}  # fmt: skip
    elif tol is False:
        d["loss_tol"] = None
    return d


def _stopper_from_dict(name: str, d: dict) -> EarlyStopping:
    """The ``EarlyStopping`` of a dict of its attributes (over the default rule's, for ``early_stopping``)."""
    known = [f.name for f in dataclasses.fields(EarlyStopping)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown {name} key(s) {V.short(unknown)}; known keys: {known}")
    base = _DEFAULT_RULE if name == "early_stopping" else {}
    return EarlyStopping(**{**base, **d})


def _rule_from_dict(name: str, rule: type, d: dict):
    """The ``rule`` (a settings dataclass) of a dict of its attributes; the ones left out keep their defaults."""
    known = [f.name for f in dataclasses.fields(rule)]
    unknown = sorted(set(d) - set(known))
    if unknown:
        raise ValueError(f"unknown {name} key(s) {V.short(unknown)}; known keys: {known}")
    return rule(**d)


def _cosine(peak: float, warmup: int, total: int):
    """η(step): linear from 0 to ``peak`` over ``warmup`` steps, then a half cosine down to 0 at ``total``
    (optax's ``warmup_cosine_decay_schedule``, with explicit casts, so it also runs under strict dtype
    promotion)."""

    span = float(max(total - warmup, 1))  # Python floats: a budget past int32 does not overflow
    warm = float(warmup)

    def schedule(count):
        t = jnp.asarray(count).astype(jnp.float32)
        decay = jnp.clip((t - warm) / span, 0.0, 1.0)
        cos = 0.5 * peak * (1.0 + jnp.cos(jnp.pi * decay))
        return cos if warmup == 0 else jnp.where(t < warm, peak * t / warm, cos)

    return schedule


#: The attributes of the default ``early_stopping`` rule (what a partial dict leaves out).
_DEFAULT_RULE = dataclasses.asdict(EarlyStopping(patience=30))


def fields_where(**role) -> tuple[str, ...]:
    """The ``TrainConfig`` fields whose metadata has the given values, in field order.

    Example:
        ``fields_where(program="traced")`` are the fields another value of which compiles nothing.
    """
    return names_where(TrainConfig, **role)


#: Fields a resumed run may change (see ``jnn.app.run_dir``): the learning rate lives in the optimiser
#: state, so a run that diverged can continue from its last finite checkpoint with a lower one; the budgets
#: are read only by the stopping rules, so a finished run can be continued with larger ones;
#: divergence_factor is a stopping rule too; checkpoint_every, keep_checkpoints and epochs_per_call only say
#: what is saved and how often the host looks.
RESUME_CHANGES = fields_where(resume=True)
#: The TrainConfig fields ``jnn.sweep`` takes as axes (``seed``, ``learning_rate``, ``batch_size``; the MLP's are
#: ``jnn.mlp.MLP_SWEEP_FIELDS``).
SWEEP_FIELDS = fields_where(sweep=True)


__all__ = ["TrainConfig", "OPTIMIZERS", "LR_SCHEDULES", "MONITORS", "MODES", "RESUME_CHANGES", "SWEEP_FIELDS",
           "PROGRAM_ROLES", "FLAT_STOPPING_KEYS", "fields_where", "upgrade_dict"]  # fmt: skip
