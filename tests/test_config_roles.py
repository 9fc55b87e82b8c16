"""Each TrainConfig and MLP field declares its role once (dataclass metadata); the compiled program, the CLI flags,
the resume policy and the sweep axes follow from it. These tests hold the declarations to the code: a field
declared ``traced`` or ``host`` must leave the compiled program as it is, a ``static`` one must change it."""

import dataclasses
import re

import jax
import numpy as np
import pytest

from jnn.app import cli
from jnn.data import Dataset
from jnn.fields import Boolean, Instance, Interval, Options, names_where
from jnn.mlp import MLP, MLP_FIELDS, MLP_SWEEP_FIELDS
from jnn.sweep import AXES, CONFIG_AXES
from jnn.task import check_task
from jnn.train import BestCheckpoints, EarlyStopping, Keys, ReduceLROnPlateau, TrainConfig
from jnn.train.config import PROGRAM_ROLES, RESUME_CHANGES, SWEEP_FIELDS, fields_where
from jnn.train.program import compiled_caller, optimizer_key
from jnn.train.run_setup import initial_state

#: field -> (the base config's or MLP's other fields, another value of the field); the MLP's fields first.
OTHER = {
    "hidden": ({}, (32,)),
    "sizes": ({}, (5, 16, 3)),
    "activation": ({}, "tanh"),
    "loss": ({}, "multilabel"),
    "scheme": ({}, "he_normal"),
    "optimizer": ({}, "adam"),
    "learning_rate": ({}, 0.5),
    "momentum": ({}, 0.5),
    "weight_decay": ({"optimizer": "adamw"}, 0.3),
    "lr_schedule": ({}, "cosine"),
    "warmup_epochs": ({"lr_schedule": "warmup-cosine"}, 5),
    "batch_size": ({}, 20),
    "l2": ({}, 0.5),
    "include_bias": ({}, True),
    "keep_prob": ({}, 0.4),
    "dropout_mode": ({}, "classic"),
    "metrics": ({}, ("accuracy", "f1_macro")),
    "max_epochs": ({}, 7),
    "max_steps": ({}, 9),
    "early_stopping": ({}, None),
    "loss_tol": ({}, EarlyStopping("train_loss", patience=3, min_delta=0.01, restore_best=False)),
    "reduce_lr": ({}, ReduceLROnPlateau(factor=0.5, patience=1)),
    "best_checkpoints": ({}, BestCheckpoints(k=2)),
    "val_fraction": ({}, 0.3),
    "stratify": ({}, False),
    "drop_last": ({}, True),
    "seed": ({}, 11),
    "checkpoint_every": ({}, 5),
    "prng_impl": ({}, "rbg"),
    "check_finite": ({}, False),
    "divergence_factor": ({}, 3.0),
    "keep_checkpoints": ({}, 1),
    "epochs_per_call": ({}, 4),
    "average": ({}, "polyak"),
    "average_decay": ({"average": "ema"}, 0.5),
    "compute_dtype": ({}, "bfloat16"),
}


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(90, 5)).astype(np.float32)
    return Dataset(x, rng.integers(0, 3, 90).astype(np.int32), num_classes=3)


def _program(config: TrainConfig, mlp: MLP, fit_ds: Dataset, val_ds: Dataset):
    """What decides whether a run compiles: the compiled calls' static arguments, and the kind of state."""
    if mlp.loss == "multilabel":  # 0/1 targets [n, k] for the multilabel loss
        y = np.eye(3, dtype=np.float32)[fit_ds.y]
        fit_ds, val_ds = Dataset(fit_ds.x, y), Dataset(val_ds.x, np.eye(3, dtype=np.float32)[val_ds.y])
    task = mlp.build(mlp.network_sizes(fit_ds), "float32")
    ct = check_task(task, fit_ds, batch_size=config.batch_size, val=val_ds)
    n = len(fit_ds)
    tx = config.make_optimizer(config.steps_per_epoch(n))
    caller = compiled_caller(ct, config, tx, optimizer_key(config, config.steps_per_epoch(n)), n_train=n, has_val=True)
    keys = Keys.from_seed(config.seed, config.prng_impl)
    state = initial_state(ct, config, tx, ct.task.init(keys.init), keys)
    kind = (jax.tree.structure(state), [(np.shape(a), str(a.dtype)) for a in jax.tree.leaves(state)])
    guarded = None if caller.guarded is None else (caller.guarded.func, caller.guarded.args)
    return (caller.fast.func, caller.fast.args, guarded, kind)


def _fields():
    return [*dataclasses.fields(MLP), *dataclasses.fields(TrainConfig)]


def test_every_field_declares_its_roles_and_the_table_covers_them():
    assert sorted(OTHER) == sorted(f.name for f in _fields())
    assert not set(MLP_FIELDS) & {f.name for f in dataclasses.fields(TrainConfig)}  # model and training apart
    for f in _fields():
        assert f.metadata["program"] in PROGRAM_ROLES, f.name
        assert set(f.metadata) == {"program", "resume", "sweep", "cli", "flag", "choices", "nested", "check",
                                   "optional", "nested_prefix"}, f.name  # fmt: skip
    assert set(fields_where(program="traced")) == {"learning_rate", "momentum", "weight_decay", "seed"}
    assert set(names_where(MLP, program="traced")) == {"l2", "keep_prob"}
    assert not names_where(MLP, resume=True)  # a resumed run trains the model it began with


#: Fields whose values are checked by code of their own, not by a declared constraint: the hidden widths and
#: sizes (a sequence of ints), keep_prob (jnn.Dropout's rule, with dropout_mode).
CHECKED_APART = {"hidden", "sizes", "keep_prob"}


def test_every_field_declares_its_constraint_and_a_value_outside_it_is_refused_naming_the_field():
    for f in _fields():
        check = f.metadata["check"]
        assert (check is None) == (f.name in CHECKED_APART), f.name
        cls = MLP if f.name in MLP_FIELDS else TrainConfig
        if f.metadata["optional"]:
            assert cls(**{f.name: None}) is not None  # None is allowed
        if isinstance(check, Interval):  # one value below the range and a value of the wrong type
            below = (check.low - 1) if check.low is not None else None
            if below is not None:
                with pytest.raises(ValueError, match=rf"^{f.name} must be"):
                    cls(**{f.name: check.type(below)})
            with pytest.raises(TypeError, match=rf"^{f.name} must be"):
                cls(**{f.name: "x"})
        elif isinstance(check, Options):
            with pytest.raises(ValueError, match=rf"^{f.name} must be one of {re.escape(str(list(check.values)))}"):
                cls(**{f.name: "no such value"})
        elif isinstance(check, Boolean):
            with pytest.raises(TypeError, match=rf"^{f.name} must be a bool; got 1"):
                cls(**{f.name: 1})
        elif isinstance(check, Instance):
            with pytest.raises(TypeError, match=rf"^{f.name} must be a {re.escape(check.label)} or None"):
                cls(**{f.name: 3})


@pytest.mark.parametrize("name", sorted(OTHER))
def test_a_fields_declared_program_role_is_what_the_compiled_program_does(name):
    ds = _data()
    fit_ds, val_ds = ds.subset(np.arange(60)), ds.subset(np.arange(60, 90))
    base, other = OTHER[name]
    cls = MLP if name in MLP_FIELDS else TrainConfig
    a, b = cls(**base), cls(**{**base, name: other})
    runs = [(a, MLP()), (b, MLP())] if cls is TrainConfig else [(TrainConfig(), a), (TrainConfig(), b)]
    role = next(f for f in _fields() if f.name == name)
    same = _program(*runs[0], fit_ds, val_ds) == _program(*runs[1], fit_ds, val_ds)
    if role.metadata["program"] == "static":
        assert not same, f"{name} is declared static, but another value leaves the program as it is"
    else:
        assert same, f"{name} is declared {role.metadata['program']}, but another value changes the program"


def test_the_lists_derived_from_the_declarations():
    assert MLP_FIELDS == ("hidden", "sizes", "activation", "loss", "scheme", "l2", "include_bias", "keep_prob",
                          "dropout_mode", "metrics")  # fmt: skip
    assert set(RESUME_CHANGES) == {"learning_rate", "max_epochs", "max_steps", "divergence_factor",
                                   "keep_checkpoints", "checkpoint_every", "epochs_per_call"}  # fmt: skip
    assert AXES == SWEEP_FIELDS + MLP_SWEEP_FIELDS
    assert set(AXES) == {"seed", "learning_rate", "l2", "keep_prob", "hidden", "batch_size"}
    assert CONFIG_AXES == SWEEP_FIELDS == ("learning_rate", "batch_size", "seed")
    assert MLP_SWEEP_FIELDS == ("hidden", "l2", "keep_prob")


#: A value for each flag that sets an attribute of a rule (``--patience`` sets ``early_stopping.patience``).
NESTED = {
    "early_stopping": {"monitor": "train_loss", "patience": 4},
    "reduce_lr": {"factor": 0.5, "patience": 2, "monitor": "train_loss", "cooldown": 1, "min_lr": 1e-4,
                  "min_delta": 0.01},
    "best_checkpoints": {"k": 2, "monitor": "val_accuracy"},
}  # fmt: skip


def test_every_declared_flag_sets_its_field(tmp_path):
    flags = cli._field_flags()
    assert {f.name for _, f, *_ in flags} == {f.name for f in _fields() if f.metadata["cli"]}
    assert {o for o, f, *_ in flags if f.name in MLP_FIELDS} == {"mlp"}
    argv, nested_argv = [], []
    want, want_nested = {}, {}
    for _, f, _, flag, kind, attr, _ in flags:
        if attr is not None:
            nested_argv += [flag, str(NESTED[f.name][attr])]
            want_nested.setdefault(f.name, {})[attr] = NESTED[f.name][attr]
        elif kind == "negate":
            argv.append(flag)
            want[f.name] = None if f.metadata["nested"] else False
        elif f.name not in ("sizes", "warmup_epochs", "loss"):  # these need other fields to match
            value = OTHER[f.name][1]
            argv += [flag, ",".join(map(str, value)) if isinstance(value, tuple) else str(value)]
            want[f.name] = value
    _, config, mlp = cli._train_config(cli.build_parser().parse_args(["train", *argv]))
    assert {k: getattr(mlp if k in MLP_FIELDS else config, k) for k in want} == want
    assert want_nested == NESTED
    _, config, _ = cli._train_config(cli.build_parser().parse_args(["train", *nested_argv]))
    assert config.early_stopping == EarlyStopping(**NESTED["early_stopping"])  # the others: the default rule's
    assert config.reduce_lr == ReduceLROnPlateau(**NESTED["reduce_lr"])  # a rule off by default: turned on
    assert config.best_checkpoints == BestCheckpoints(**NESTED["best_checkpoints"])
    with pytest.raises(ValueError, match="--patience sets early_stopping, which is off"):
        cli._train_config(cli.build_parser().parse_args(["train", "--no-early-stopping", "--patience", "3"]))
