"""The ``jnn`` command line: ``jnn train``, ``jnn predict``, ``jnn evaluate``, ``jnn sweep``, ``jnn launch``,
``jnn gradcheck`` and ``jnn plot``.

Exit codes: 0 success, 1 a check failed or training diverged, 2 bad input (the message says which
argument and why; nothing is written), 130 / 143 stopped by SIGINT (Ctrl-C) / SIGTERM (the run folder is
written and can be resumed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import types
import typing

from jnn import _validate as V
from jnn.app import atomic


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own errors: usage + message, exit 2
        self.print_usage(sys.stderr)
        print(f"jnn: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _float_list(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers such as 0.01,0.1; got {text!r}") from None


def _compiles(groups: int) -> str:
    return "one compile" if groups == 1 else f"{groups} shape groups, one compile each"


def _hidden_list(text: str) -> list[tuple[int, ...]]:
    """``'64;128,128;none'`` -> ``[(64,), (128, 128), ()]``: one member's widths per ``;``-separated part."""
    return [tuple(_int_list(part)) for part in text.split(";")]


def _int_list(text: str) -> list[int]:
    if text.strip().lower() == "none":  # no hidden layer: a linear model
        return []
    try:
        out = [int(t) for t in text.split(",")]
    except ValueError:
        out = None
    if not out:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints such as 40,32,10 (or none); got {text!r}")
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``jnn`` command: one function per sub-command adds its flags."""
    p = _Parser(prog="jnn", description="Functional feed-forward network training on JAX.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_gradcheck_parser, _train_parser, _sweep_parser, _launch_parser, _predict_parsers, _plot_parser,
                _summarize_parser, _export_parser, _cv_parser):  # fmt: skip
        add(sub)
    return p


def _gradcheck_parser(sub) -> None:
    """``jnn gradcheck``: a user's check (FILE.py:NAME) or the hand-written backprop against ``jax.grad``."""
    from jnn.activations import ACTIVATIONS
    from jnn.dropout import MODES
    from jnn.init import SCHEMES
    from jnn.losses import CLASSIFICATION_LOSSES, DEFAULT_LOSS

    g = sub.add_parser(
        "gradcheck",
        help="check the gradients of your JAX code (FILE.py:NAME), or jnn's hand-written backprop",
        description="With FILE.py:NAME: NAME is a function of no arguments in FILE.py returning (f, args) or "
        "(f, args, options); jnn.check_grads(f, *args, **options) checks f's derivatives against float64 finite "
        "differences and prints the per-leaf report. Without it: compare the vectorised hand-written backprop "
        "(and the node-level one for small nets) with jax.grad on random data. Exit 1 on a mismatch, 2 on bad "
        "input.",
    )
    g.add_argument("target", nargs="?", default=None, metavar="FILE.py:NAME", help="your check, see above")
    g.add_argument("--check-mode", default=None, choices=["auto", "full", "fast"],
                   help="for FILE.py:NAME: every coordinate, random directions, or auto (default auto)")  # fmt: skip
    g.add_argument("--order", type=int, default=None, choices=[1, 2], help="for FILE.py:NAME: 2 checks HVPs")
    g.add_argument("--sizes", type=_int_list, default=[40, 32, 32, 10], help="layer widths (default 40,32,32,10)")
    g.add_argument("--activation", default="tanh", choices=list(ACTIVATIONS))
    g.add_argument("--loss", default=DEFAULT_LOSS, choices=list(CLASSIFICATION_LOSSES),
                   help="a loss the hand-written backprop modules differentiate (the lecture's)")  # fmt: skip
    g.add_argument("--l2", type=float, default=1e-3, help="λ in λΣw² (default 1e-3)")
    g.add_argument("--include-bias", action="store_true", help="penalise biases too")
    g.add_argument("--keep-prob", type=float, default=0.8, help="dropout keep probability p (1 = off)")
    g.add_argument("--mode", default="inverted", choices=list(MODES), help="dropout convention")
    g.add_argument("--scheme", default="lecun_normal", choices=list(SCHEMES))
    g.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    g.add_argument("--batch", type=int, default=16, help="examples in the random batch (default 16)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--rtol", type=float, default=None, help="default 1e-10 (float64) or 1e-5 (float32)")
    g.add_argument(
        "--atol",
        type=float,
        default=None,
        help="absolute floor, times max|grad|; default 1e-13 (float64) or 1e-6 (float32)",
    )
    g.add_argument(
        "--node-limit",
        type=int,
        default=3000,
        help="run the node-level reference only for nets with at most this many params (default 3000)",
    )
    g.add_argument("--json", default=None, help="also write the reports to this JSON file")


def _train_parser(sub) -> None:
    """``jnn train``: the config flags derived from the fields, and the run folder's."""
    t = sub.add_parser(
        "train",
        help="train an MLP with minibatch SGD and early stopping",
        description="Train a feed-forward network. Values come from the defaults, then the "
        "--config TOML file, then the flags.",
    )
    _add_config_flags(t)
    t.add_argument("--out", default=None, help="run folder (default runs/<data>-<time>)")
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out from its checkpoint, with its stored config and data; a finished run "
        "continues when --max-epochs is larger",
    )
    t.add_argument("--from-epoch", type=int, default=None,
                   help="with --resume: restart from the kept checkpoint of this epoch (e.g. the last sane one of a "
                        "run that diverged, with a lower --learning-rate)")  # fmt: skip
    t.add_argument("--overwrite", action="store_true", help="replace the run in --out")
    t.add_argument(
        "--data-parallel",
        action="store_true",
        help="shard each batch over all devices (all processes' devices under jnn launch)",
    )
    t.add_argument("--tensorboard", action="store_true", help="also write TensorBoard events to RUN/tensorboard")


def _sweep_parser(sub) -> None:
    """``jnn sweep``: the config flags, the axes, the search and the strategy."""
    sw = sub.add_parser(
        "sweep",
        help="train many members (seeds, learning rates, λ, keep_prob) at once",
        description="Train one member per value of the sweep axes under jax.vmap, in one compile per shape "
        "(--hiddens and --batch-sizes make shape groups). "
        "The axes make a grid (every combination) unless --zip pairs them one to one; --space with --samples "
        "draws a random search; --scheduler asha stops members that fall behind. The other flags set the shared "
        "config.",
    )
    _add_config_flags(sw)
    sw.add_argument("--seeds", type=_int_list, default=None, help="axis: seeds, e.g. 0,1,2")
    sw.add_argument("--learning-rates", type=_float_list, default=None, help="axis: η values")
    sw.add_argument("--l2s", type=_float_list, default=None, help="axis: λ values")
    sw.add_argument("--keep-probs", type=_float_list, default=None, help="axis: keep_prob values")
    sw.add_argument("--hiddens", type=_hidden_list, default=None,
                    help="axis: hidden widths per member, ';' between members, e.g. '64;128,128;none'")  # fmt: skip
    sw.add_argument("--batch-sizes", type=_int_list, default=None, help="axis: batch sizes, e.g. 32,64,128")
    how = sw.add_mutually_exclusive_group()
    how.add_argument("--grid", action="store_true", help="every combination of the axes' values (the default)")
    how.add_argument("--zip", action="store_true", help="pair the axes one to one (all the same length)")
    sw.add_argument("--space", default=None,
                    help="TOML search space: each axis a table {kind = 'loguniform', low = 1e-3, high = 0.3} "
                         "(uniform, loguniform, randint; choice with values) or a list (a grid axis)")  # fmt: skip
    sw.add_argument("--samples", type=int, default=None, help="members drawn from --space (random search)")
    sw.add_argument("--search-seed", type=int, default=0, help="seed of the random search's draws (default 0)")
    sw.add_argument("--scheduler", choices=["asha"], default=None,
                    help="stop members that fall behind at rungs (successive halving, ASHA's asynchronous rule) "
                         "on the monitored validation metric")  # fmt: skip
    sw.add_argument("--rung-epochs", type=int, default=1, help="--scheduler: epochs at the first rung (default 1)")
    sw.add_argument("--reduction-factor", type=int, default=3,
                    help="--scheduler: η, the share 1/η of members that go on at each rung (default 3)")  # fmt: skip
    sw.add_argument("--strategy", choices=["programs", "stacked"], default=None,
                    help="programs: each member its own jnn train's program, bit for bit (default on a CPU); "
                         "stacked: vmapped batches, equal to rounding (default on an accelerator); --resume takes "
                         "the folder's")  # fmt: skip
    sw.add_argument("--ray", metavar="ADDRESS", default=None,
                    help="run the members' calls on the Ray cluster at ADDRESS (HOST:PORT; pip install 'jnn[ray]'); "
                         "the sweep folder stays here")  # fmt: skip
    sw.add_argument("--devices", type=int, default=None, help="spread the members over the first N local devices "
                    "(default: all)")  # fmt: skip
    sw.add_argument("--out", default=None, help="folder for sweep.csv/json/png (default runs/sweep-<dataset>-<time>)")
    sw.add_argument("--resume", action="store_true",
                    help="go on with the sweep in --out (its config, axes and data; each shape group from its "
                         "checkpoint)")  # fmt: skip
    sw.add_argument("--overwrite", action="store_true", help="start again in an --out that holds another sweep")
    sw.add_argument("--workers", type=int, default=None,
                    help="--strategy programs: threads the members run in, side by side (default: the CPU cores); "
                         "any number gives the same bits")  # fmt: skip


def _launch_parser(sub) -> None:
    """``jnn launch``: N local processes joined by ``jax.distributed``."""
    la = sub.add_parser(
        "launch",
        help="run a command as N local processes joined by jax.distributed",
        description="Start N copies of COMMAND with JNN_COORDINATOR_ADDRESS, JNN_NUM_PROCESSES and "
        "JNN_PROCESS_ID set (loopback coordinator); jnn train then trains data-parallel "
        "over all processes. All are killed if one fails or the deadline passes.",
    )
    la.add_argument("--processes", type=int, required=True, help="number of processes")
    la.add_argument("--port", type=int, default=None, help="coordinator port on 127.0.0.1 (default: a free one)")
    la.add_argument("--timeout", type=float, default=600.0, help="deadline in seconds (default 600)")
    la.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND", help="the command, after --")


def _predict_parsers(sub) -> None:
    """``jnn predict`` and ``jnn evaluate``: a trained run on new data."""
    pr = sub.add_parser(
        "predict",
        help="predict with a trained run on new data",
        description="Load RUN_DIR's model (jnn train --out, or one member of a jnn sweep folder) and write one "
        "row per input row: the predicted label (in the training file's own label values) or value, and "
        "with --proba the class probabilities. The run's preprocessing (feature columns, standardisation) "
        "is applied.",
    )
    _add_model_flags(pr, "CSV (header row; the training feature columns) or .npz (x)")
    pr.add_argument("--out", default=None, help="CSV file to write (default: standard output)")
    pr.add_argument("--proba", action="store_true", help="add one probability column per class")

    ev = sub.add_parser(
        "evaluate",
        help="score a trained run on labelled data",
        description="Load RUN_DIR's model and print the loss and the task's metrics on --data (which needs "
        "the target column), in evaluation mode (the whole network, dropout's test-time rule).",
    )
    _add_model_flags(ev, "CSV (header row, features and target) or .npz (x, y)")
    ev.add_argument("--json", default=None, help="also write the metrics to this JSON file")


def _plot_parser(sub) -> None:
    """``jnn plot``: a run's curves."""
    pl = sub.add_parser(
        "plot",
        help="draw loss/accuracy curves of a run folder",
        description="Draw RUN_DIR/curves.png (loss and accuracy, train and validation, with the "
        "best and stop epochs marked) from the run's history.json.",
    )
    pl.add_argument("run_dir", metavar="RUN_DIR")
    pl.add_argument("--out", default=None, help="PNG path (default RUN_DIR/curves.png)")
    pl.add_argument("--overwrite", action="store_true",
                    help="replace a plot jnn drew at --out (a file jnn did not draw is never replaced)")  # fmt: skip


def _export_parser(sub) -> None:
    """``jnn export``: a run as StableHLO or ONNX."""
    ex = sub.add_parser(
        "export",
        help="export a trained run as StableHLO (jax.export) or ONNX, preprocessing and dropout rule included",
        description="Write RUN_DIR/model.stablehlo or model.onnx (and export.json): a function of the raw inputs "
        "x [n, d] float32 giving what jnn predict --proba gives (class probabilities, or values in the targets' "
        "own units), runnable without jnn (jax.export.deserialize, or onnxruntime).",
    )
    ex.add_argument("run_dir", metavar="RUN_DIR")
    ex.add_argument("--format", required=True, choices=["stablehlo", "onnx"])
    ex.add_argument("--out", default=None, help="the file to write (default RUN_DIR/model.<format>)")
    ex.add_argument("--member", type=int, default=None, help="the member to export, for a sweep folder")
    ex.add_argument("--best", type=int, default=None, help="export the k-th best kept epoch (jnn train --best-k; "
                    "1: the best) instead of model.npz")  # fmt: skip


def _cv_parser(sub) -> None:
    """``jnn cv``: k-fold cross-validation."""
    c = sub.add_parser(
        "cv",
        help="k-fold cross-validation: a fit per fold on the other folds, scored on its own, pooled",
        description="Split the data (--dataset or --data; stratified for class labels) into --folds folds, train "
        "the model on every k-1 of them (a run folder each, OUT/fold-<k>) and score it on the held-out fold; "
        "print and write (OUT/cv.json, OUT/cv.md) each fold's scores and their mean, std and 95%% interval. A data "
        "file's preprocessing (--standardize, --impute) is learned once on all its rows.",
    )
    _add_config_flags(c)
    c.add_argument("--folds", type=int, default=5, help="k (default 5)")
    c.add_argument("--fold-seed", type=int, default=0, help="seed of the folds' permutation (default 0)")
    c.add_argument(
        "--out", default=None, help="folder for fold-<k>/, cv.json and cv.md (default runs/cv-<data>-<time>)"
    )


def _summarize_parser(sub) -> None:
    """``jnn summarize``: a sweep's seeds pooled by setting."""
    su = sub.add_parser(
        "summarize",
        help="pool a sweep's seeds by setting: mean ± std and confidence interval",
        description="Group the rows of SWEEP/sweep.json by the --by columns and write summary.csv, summary.md "
        "and summary.png (mean and interval per setting) with each metric's n, mean, std and Student-t "
        "interval of the mean.",
    )
    su.add_argument("sweep_dir", metavar="SWEEP")
    su.add_argument(
        "--by", required=True, type=_name_list, help="columns naming a setting, e.g. keep_prob or l2,hidden"
    )
    su.add_argument("--metrics", type=_name_list, default=None,
                    help="columns to summarise (default: every numeric result column)")  # fmt: skip
    su.add_argument("--confidence", type=float, default=0.95, help="the interval's level (default 0.95)")
    su.add_argument("--out", default=None, help="folder for the summary files (default SWEEP)")
    su.add_argument("--overwrite", action="store_true",
                    help="replace a summary jnn wrote there (files jnn did not write are never replaced)")  # fmt: skip


def _name_list(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]`` (a flag's comma-separated column names)."""
    names = [t.strip() for t in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names such as keep_prob,l2; got {text!r}")
    return names


def _add_model_flags(p, data_help: str) -> None:
    """The flags ``jnn predict`` and ``jnn evaluate`` share: the run, the data file, the member, the split."""
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--data", required=True, help=data_help)
    p.add_argument("--member", type=int, default=None, help="the member to use, for a sweep folder")
    p.add_argument("--best", type=int, default=None, help="use the k-th best kept epoch (jnn train --best-k; 1: the "
                   "best) instead of model.npz")  # fmt: skip
    p.add_argument("--split", default="train", choices=["train", "val", "test"],
                   help="for an .npz: x, y (train, default), x_val/y_val or x_test/y_test")  # fmt: skip
    p.add_argument(
        "--delimiter",
        default=None,
        help="the CSV delimiter (default: sniffed from the header: comma, semicolon, tab or pipe)",
    )


#: The flags of how a CSV is read and encoded, stored in the run's data source (``--resume`` reads them back).
TABLE_FLAGS = ("impute", "fill_value", "categorical", "unknown_category", "delimiter", "class_weight")


def _add_config_flags(t) -> None:
    """The MLP and TrainConfig flags shared by ``jnn train`` and ``jnn sweep``."""
    from jnn.app.tabular import IMPUTE, UNKNOWN
    from jnn.datasets import LOADERS

    t.add_argument("--config", default=None, help="TOML file with TrainConfig and MLP fields (and optionally dataset)")
    t.add_argument("--dataset", default=None, choices=sorted(LOADERS), help="built-in data set (default mnist1d)")
    t.add_argument("--data", default=None,
                   help="your own data instead: a CSV file with a header row, or a .npz with x, y (and optionally "
                        "x_val/y_val, x_test/y_test)")  # fmt: skip
    t.add_argument("--target", default=None,
                   help="CSV target column(s), comma-separated (default: the last column)")  # fmt: skip
    t.add_argument("--features", default=None, help="CSV feature columns, comma-separated (default: all others)")
    t.add_argument("--standardize", action="store_true",
                   help="scale each feature (and a regression's targets) to mean 0, std 1, learned on the training "
                        "split only; predictions come back in the targets' own units")  # fmt: skip
    t.add_argument("--na-values", default=None,
                   help="CSV cells that mean a missing value besides an empty cell, comma-separated (e.g. 'NA,?'); "
                        "without it NA, null and nan in a label column are labels")  # fmt: skip
    t.add_argument("--impute", default=None, choices=list(IMPUTE),
                   help="fill empty feature cells with the column's mean, median or most frequent value, or "
                        "--fill-value (constant), learned on the training split and stored for predict")  # fmt: skip
    t.add_argument("--fill-value", type=float, default=None, help="the value of --impute constant (default 0)")
    t.add_argument("--categorical", default=None,
                   help="feature columns holding categories, one-hot encoded (categories stored for predict): "
                        "comma-separated names, or auto (every column holding text)")  # fmt: skip
    t.add_argument("--unknown-category", default=None, choices=list(UNKNOWN),
                   help="a category unseen in training at predict time: error (default) or ignore (all-zero "
                        "one-hot columns)")  # fmt: skip
    t.add_argument(
        "--delimiter",
        default=None,
        help="the CSV delimiter (default: sniffed from the header: comma, semicolon, tab or pipe)",
    )
    t.add_argument("--class-weight", default=None,
                   help="weigh the classes in the loss: balanced (n / (classes x count), scikit-learn's) or a JSON "
                        "object {label: weight} / list of weights")  # fmt: skip
    t.add_argument("--val-data", default=None, help="validation file like --data (then nothing is carved out)")
    t.add_argument("--test-data", default=None, help="test file like --data, scored at the end")
    _add_field_flags(t)
    t.add_argument("--log-every", type=int, default=None, help="print a line every k epochs (default: ~10 lines)")


def _field_flags():
    """``(owner, field, dest, flag, kind, attr, help)`` of every ``jnn.MLP`` and TrainConfig flag, declared by
    the field's metadata ``cli`` and ``nested`` (see ``jnn.fields``): owner is ``"mlp"`` or ``"config"``; kind
    is ``"negate"`` for a bool that defaults to True, or a field that holds a rule and may be None
    (``--no-<name>``), else the value's parser; ``attr`` names the attribute of the rule a nested flag sets
    (``--patience`` sets ``early_stopping.patience``), else None; ``help`` has the default."""
    import dataclasses

    from jnn.mlp import MLP
    from jnn.train.config import TrainConfig

    def kind_of(hint):  # a field's resolved annotation: int, float, str, tuple[int, ...], each maybe | None
        args = [a for a in typing.get_args(hint) if a is not type(None)] if typing.get_origin(hint) in (
            types.UnionType, typing.Union) else [hint]  # fmt: skip
        base = args[0]
        if typing.get_origin(base) is tuple:
            return _name_list if typing.get_args(base)[0] is str else _int_list
        return base

    def rule_class(hint):  # the dataclass of a field annotated ``Rule`` or ``Rule | None``
        return next(a for a in (typing.get_args(hint) or (hint,)) if a is not type(None))

    def shown(v) -> str:
        return ",".join(map(str, v)) if isinstance(v, tuple) else ("none" if v is None else f"{v:g}" if
                                                                    isinstance(v, float) else str(v))  # fmt: skip

    out = []
    for owner, cls in (("mlp", MLP), ("config", TrainConfig)):
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.metadata["cli"] is None:
                continue
            name = f.metadata["flag"] or f.name
            text = f.metadata["cli"].replace("{default}", shown(f.default))
            if f.metadata["nested"]:
                rule = rule_class(hints[f.name])
                if f.default is not None:
                    out.append((owner, f, f"no_{name}", f"--no-{name.replace('_', '-')}", "negate", None, text))
                nested, prefix = typing.get_type_hints(rule), f.metadata.get("nested_prefix")
                defaults = f.default if f.default is not None else rule()
                for attr, help_ in f.metadata["nested"].items():
                    flag = (f"{prefix}_{attr}" if prefix else attr).replace("_", "-")
                    out.append((owner, f, flag.replace("-", "_"), f"--{flag}", kind_of(nested[attr]), attr,
                                help_.replace("{default}", shown(getattr(defaults, attr)))))  # fmt: skip
            elif hints[f.name] is bool:
                if f.default is not True:
                    raise TypeError(f"{cls.__name__}.{f.name}: a bool flag is --no-<name> and needs the default True")
                out.append((owner, f, f"no_{name}", f"--no-{name.replace('_', '-')}", "negate", None, text))
            else:
                out.append((owner, f, name, f"--{name.replace('_', '-')}", kind_of(hints[f.name]), None, text))
    return out


def _add_field_flags(t) -> None:
    """One flag per ``jnn.MLP`` and TrainConfig field that declares one (see ``jnn.fields``)."""

    for _, f, dest, flag, kind, _, text in _field_flags():
        if kind == "negate":
            t.add_argument(flag, dest=dest, action="store_true", help=text)
        else:
            choices = None if f.metadata["choices"] is None else list(f.metadata["choices"])
            t.add_argument(flag, dest=dest, type=kind, default=None, choices=choices, help=text)


#: The largest ``--config`` file read (a TOML config is a few hundred bytes; ``/dev/zero`` never ends).
MAX_CONFIG_BYTES = 1 << 20


def read_toml(path, flag: str = "--config") -> dict:
    """The TOML table in ``path``: a regular file, or a pipe such as bash's ``<(…)`` process substitution.

    Raises:
        ValueError: a missing path, a folder, a file over ``MAX_CONFIG_BYTES``, text that is not UTF-8 TOML,
            or tables nested too deeply for the parser (naming ``flag`` and the path).
    """
    import tomllib

    if os.path.isdir(path):
        raise ValueError(f"{flag} must be a TOML file; {path!r} is a folder")
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ValueError(f"{flag} file {path!r} does not exist") from None
    except OSError as err:
        raise ValueError(f"{flag} file {path!r} cannot be read ({err.strerror})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ValueError(f"{flag} file {path!r} is over {MAX_CONFIG_BYTES >> 20} MiB; a config is a short TOML file")
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise ValueError(f"{flag} file {path!r} is not UTF-8 text ({err})") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{flag} file {path!r} is not valid TOML: {err}") from None
    except RecursionError:
        raise ValueError(f"{flag} file {path!r} nests its tables or arrays too deeply to read; a config is a flat "
                         "table (with an optional [mlp] table)") from None  # fmt: skip


def _train_config(args, stored: dict | None = None):
    """``(source, TrainConfig, MLP)``: defaults, then the stored run's config, MLP and data (``--resume``), then
    the ``--config`` TOML file (the MLP's keys flat or in an ``[mlp]`` table), then the flags."""
    import dataclasses

    from jnn.app.tabular import split_names
    from jnn.mlp import MLP, split_mlp_keys
    from jnn.train.config import TrainConfig, upgrade_dict

    values, mlp, source = {}, {}, {"dataset": "mnist1d"}
    if stored is not None:
        values, mlp = dict(stored["config"]), dict(stored.get("mlp") or {})
        source = dict(stored["source"])
    if args.config is not None:
        toml = read_toml(args.config)
        if "dataset" in toml:
            source = {"dataset": toml.pop("dataset")}
        table = toml.pop("mlp", {})
        if not isinstance(table, dict):
            raise ValueError(f"--config file {args.config!r}: mlp must be a table [mlp]; got {table!r}")
        toml, flat = split_mlp_keys(toml)
        values.update(toml)
        mlp.update({**flat, **table})
    if args.dataset is not None and args.data is not None:
        raise ValueError("give --dataset (a built-in data set) or --data (your file), not both")
    if args.dataset is not None:
        source = {"dataset": args.dataset}
    if args.data is not None:
        source = {"data": args.data, "target": args.target, "features": args.features,
                  "standardize": args.standardize, "val_data": args.val_data, "test_data": args.test_data,
                  **({"na_values": split_names(args.na_values)} if args.na_values else {}),
                  **{k: getattr(args, k) for k in TABLE_FLAGS if getattr(args, k) is not None}}  # fmt: skip
    elif any(getattr(args, k) for k in ("target", "features", "standardize", "val_data", "test_data", "na_values",
                                        *TABLE_FLAGS)):  # fmt: skip
        if "data" not in source:
            raise ValueError(
                "--target, --features, --standardize, --na-values, --val-data, --test-data, --impute, "
                "--fill-value, --categorical, --unknown-category and --delimiter need --data FILE"
            )
    values = upgrade_dict(values)  # the flat early-stopping keys of an older run or TOML file
    flags = [(o, f, flag, kind, attr, getattr(args, dest)) for o, f, dest, flag, kind, attr, _ in _field_flags()]
    for owner, f, _, kind, attr, v in flags:
        into = mlp if owner == "mlp" else values
        if kind == "negate":
            if v:
                into[f.name] = None if f.metadata["nested"] else False
        elif v is not None and attr is None:
            into[f.name] = v
    for _, f, flag, _, attr, v in flags:
        if attr is not None and v is not None:
            rule = values.get(f.name, dataclasses.asdict(f.default) if f.default is not None else {})
            if rule is None and f.default is None:
                rule = {}
            if rule is None:
                off = "--no-" + f.name.replace("_", "-")
                raise ValueError(f"{flag} sets {f.name}, which is off ({off}, or the config): leave out one of them")
            values[f.name] = {**(dataclasses.asdict(rule) if dataclasses.is_dataclass(rule) else rule), attr: v}
    return source, TrainConfig.from_dict(values), MLP.from_dict(mlp)


def _stored_run(out) -> dict | None:
    """The config and data source of the run in ``out`` (for ``--resume``), or None when it holds none."""
    cfg = os.path.join(out, "config.json")
    if not os.path.isfile(cfg):
        return None
    from pathlib import Path

    from jnn.app.run_dir import read_config, upgrade_meta

    meta = upgrade_meta(read_config(Path(cfg)))
    source = (meta.get("data") or {}).get("source")
    if source is None:
        raise ValueError(
            f"--out {out!r} holds a run not started by jnn train (no data source stored); resume it from "
            "Python with jnn.fit(..., callbacks=[jnn.RunFolder(path, resume=True)])"
        )
    return {"config": meta["config"], "mlp": meta.get("mlp"), "source": source}


#: Said after metrics of a regression whose targets ``--standardize`` standardised (R² is the same in any units).
SCALED_NOTE = "; loss, mse and mae in standardised target units"


def _stored_sweep(out) -> dict | None:
    """The config, MLP, axes and data source of the sweep in ``out`` (for ``jnn sweep --resume``), or None when
    it holds none (a sweep killed before it started: the flags give everything)."""
    from pathlib import Path

    from jnn.app.run_dir import SWEEP_RUN
    from jnn.app.sweep_folder import stored_strategy

    path = Path(out) / SWEEP_RUN
    if not path.is_file():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        source = meta["data"]["source"]
        mlp = meta["members_model"][0]["mlp"]
        axes = {k: [tuple(v) if isinstance(v, list) else v for v in vals] for k, vals in meta["axes"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"{str(path)!r} is not a sweep record jnn sweep can resume ({type(err).__name__}: {err}); "
                         "pass --overwrite to start again") from None  # fmt: skip
    return {
        "config": meta["config"],
        "mlp": mlp,
        "source": source,
        "axes": axes,
        "strategy": stored_strategy(meta),
        "search": meta.get("search"),
        "schedulers": meta.get("schedulers") or [],
    }


def _describe(metrics: dict, scaled: bool = False) -> str:
    """``accuracy 0.9123 (loss 0.2345, 1000 examples)``: the headline metric, the loss, the others, the count
    (``scaled``: the targets were standardised, said after the count)."""
    keys = sorted((k for k in metrics if k not in ("loss", "n")), key=lambda k: (k not in ("accuracy", "r2"), k))
    head = f"{keys[0]} {metrics[keys[0]]:.4f} (loss {metrics['loss']:.4f}" if keys else f"loss {metrics['loss']:.4f} ("
    rest = "".join(f", {k} {metrics[k]:.4f}" for k in keys[1:])
    return f"{head}{rest}, {metrics['n']} examples{SCALED_NOTE if scaled else ''})"


def _train(args) -> int:
    import datetime

    import jax

    from jnn.app.run_folder import RunFolder
    from jnn.app.sources import class_weight_of, load_source, source_name
    from jnn.model_summary import summary
    from jnn.train import fit, prepare_data
    from jnn.train.host_loop import Interrupted
    from jnn.train.progress import Progress

    if args.log_every is not None:
        V.check_int("--log-every", args.log_every, low=0)
    if args.resume and args.out is None:
        raise ValueError("--resume needs --out RUN (the run folder to continue)")
    stored = _stored_run(args.out) if args.resume and args.out else None
    source, config, mlp = _train_config(args, stored)
    name = source_name(source)
    out = args.out or f"runs/{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    atomic.check_folder_writable(out, "--out")  # before the data is read: errors name the flag
    train, val, test, info = load_source(source, config, mlp.loss)
    fit_ds, val_ds = prepare_data(train, config, val)
    n_fit, n_val = len(fit_ds), 0 if val_ds is None else len(val_ds)
    del fit_ds, val_ds  # counted for the line below; fit makes the same split itself (no copy of x held twice)
    print(_train_header(name, (n_fit, n_val, 0 if test is None else len(test)), mlp.network_sizes(train), mlp,
                        config), flush=True)  # fmt: skip
    print(f"model: {summary(mlp, train).line()}", flush=True)
    log_every = args.log_every if args.log_every is not None else max(1, config.max_epochs // 10)
    mesh = None
    if args.data_parallel or jax.process_count() > 1:
        from jnn.parallel import data_mesh

        mesh = data_mesh()
        print(f"data parallel over {mesh.shape['data']} device(s) in {jax.process_count()} process(es)", flush=True)
    try:
        folder = RunFolder(out, resume=args.resume, overwrite=args.overwrite, from_epoch=args.from_epoch,
                           tensorboard=args.tensorboard, data_info=info)  # fmt: skip
        result = fit(train, config, task=mlp, val=val, mesh=mesh, class_weight=class_weight_of(source, info),
                     callbacks=[folder, Progress(log_every=log_every)])  # fmt: skip
    except Interrupted as stop:
        if jax.process_index() == 0:
            print(f"interrupted at epoch {int(stop.result.state.epoch)}; continue with: jnn train --out {out} --resume")
        return stop.exit_code
    return _train_report(result, config, test, info, name)


def _train_header(name: str, counts: tuple, sizes, mlp, config) -> str:
    """``jnn train``'s first line: the data, the network and the recipe."""
    n_fit, n_val, n_test = counts
    lr = f"{config.optimizer} lr={config.learning_rate:g}" + (
        f" ({config.lr_schedule})" if config.lr_schedule != "constant" else ""
    )
    return (
        f"jnn train: {name} ({n_fit} train / {n_val} validation / {n_test} test), sizes {','.join(map(str, sizes))}, "
        f"{mlp.activation}, {mlp.loss}, {lr}, batch {config.batch_size}, l2={mlp.l2:g}, keep_prob={mlp.keep_prob:g} "
        f"({mlp.dropout_mode}), max {config.max_epochs} epochs"
        + (f", early stopping on {es.monitor} (patience {es.patience})" if (es := config.early_stopping) else "")
    )


def _train_report(result, config, test, info: dict, name: str) -> int:
    """After ``jnn train``'s fit: the test metrics, the summary file and the closing lines; the exit status."""
    import jax

    from jnn.app.run_dir import rollback_epoch, write_confusion, write_summary
    from jnn.train import evaluate

    test_metrics = evaluate(result.params, test, result.task) if test is not None else None
    scaled = bool((info.get("preprocessing") or {}).get("target_mean"))
    if jax.process_index() != 0:
        if test_metrics is not None:
            print(f"process {jax.process_index()}: test {_describe(test_metrics, scaled)}")
        return 0
    extra = {"data": name, "test": test_metrics or {}}
    if test is not None:
        extra.update(write_confusion(result.run_dir, result, test, info))
    write_summary(result.run_dir, result, config, extra)
    print(result.message)
    sane = rollback_epoch(result, config)
    if sane is not None:
        print(f"continue with: jnn train --out {result.run_dir} --resume --from-epoch {sane} --learning-rate ...")
    if test_metrics is not None:
        print(
            f"test {_describe(test_metrics, scaled)}"
            + (f" with the params of epoch {result.best_epoch + 1}" if result.best_epoch >= 0 else "")
        )
    for line in _rule_lines(result, config):
        print(line)
    files = sorted(p.name for p in result.run_dir.iterdir() if not p.name.startswith("."))
    print(f"run folder: {result.run_dir} ({', '.join(files)})")
    return 1 if result.stopped_by == "non_finite" else 0


def _rule_lines(result, config) -> list[str]:
    """What ReduceLROnPlateau did (the rates the history records) and which epochs the best-k rule kept."""
    lines = []
    rates = result.history["learning_rate"] if "learning_rate" in result.history.keys else []
    if config.reduce_lr is not None and rates:
        cuts = sum(b < a for a, b in zip(rates, rates[1:]))
        lines.append(f"learning rate: {rates[0]:.4g} -> {rates[-1]:.4g} ({cuts} reductions on "
                     f"{config.reduce_lr.monitor})")  # fmt: skip
    if config.best_checkpoints is not None:  # the epochs and values only: the params stay where they are
        from jnn.train.best_k import ranked

        order = ranked(result.state.top_k, config.best_checkpoints.direction)
        kept = ", ".join(f"{epoch + 1} ({value:.4g})" for _, epoch, value in order)
        lines.append(f"best epochs by {config.best_checkpoints.monitor}: {kept} in {result.run_dir / 'best'} "
                     f"(jnn predict {result.run_dir} --best 1 ...)")  # fmt: skip
    return lines


def _sweep(args) -> int:
    import datetime

    from jnn.app.sources import class_weight_of, load_source, source_name
    from jnn.app.sweep_folder import SweepFolder
    from jnn.axes import combine as combine_axes
    from jnn.search import draw
    from jnn.sweep import format_table, sweep
    from jnn.train.host_loop import Interrupted
    from jnn.train.progress import Progress

    if args.resume and args.out is None:
        raise ValueError("--resume needs --out SWEEP (the sweep folder to go on with)")
    if args.resume and args.overwrite:
        raise ValueError("give --resume (go on) or --overwrite (start again), not both")
    stored = _stored_sweep(args.out) if args.resume else None  # None: nothing kept yet, the axes come from the flags
    source, config, mlp = _train_config(args, stored)
    axes, how = _sweep_axes(args, stored)
    if args.log_every is not None:
        V.check_int("--log-every", args.log_every, low=0)
    run = _sweep_run_flags(args, stored, config)
    name = source_name(source)
    out = args.out or f"runs/sweep-{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    atomic.check_folder_writable(out, "--out")  # before training: results are never lost to a bad destination
    train, val, test, info = load_source(source, config, mlp.loss)
    m = len(next(iter(combine_axes(draw(axes, how["samples"], how["search_seed"])[0], how["combine"]).values())))
    print(f"jnn sweep: {name}, {m} members over {', '.join(axes)}, max {config.max_epochs} epochs", flush=True)
    folder = SweepFolder(out, resume=args.resume, overwrite=args.overwrite, data_info=info)
    try:
        res = sweep(train, config, task=mlp, val=val, test=test, class_weight=class_weight_of(source, info), **how,
                    **run["sweep"],
                    callbacks=[folder, *run["callbacks"], Progress(log_every=args.log_every or 0)], **axes)  # fmt: skip
    except Interrupted as stop:
        print(format_table(stop.result.rows))
        print(f"interrupted after {len(stop.result.epoch_seconds)} sweep epochs; partial results in {out}; go on "
              f"with: jnn sweep --out {out} --resume")  # fmt: skip
        return stop.exit_code
    print(format_table(res.rows))
    b = res.best()
    scored = next((k for k in b if k.startswith("test_") and k != "test_loss" and b[k] is not None), None)
    print(
        f"best by {res.best_rule()}: member {b['member']} (seed {b['seed']}, learning_rate {b['learning_rate']:g}, "
        + ", ".join(f"{k} {b[k]:g}" for k in res.hyper_names)
        + ")"
        + (f", {scored.replace('_', ' ')} {b[scored]:.4f}" if scored else "")
    )
    print(
        f"{m} members trained in {res.seconds:.1f} s ({_compiles(len(res.groups))}); results in {out} "
        "(sweep.csv, sweep.json, sweep.png, params.npz: jnn predict OUT --member K)"
    )
    return 0


def _sweep_axes(args, stored) -> tuple[dict, dict]:
    """``(axes, how)`` of ``jnn sweep``: the axis flags, or ``--space`` (a random search with ``--samples``), or on
    ``--resume`` the folder's (its members' axes, or its search drawn again); ``how`` holds ``combine``, ``samples``
    and ``search_seed`` for ``jnn.sweep.sweep``."""
    from jnn.search import Distribution, space_from_dict

    flags = (("seed", args.seeds), ("learning_rate", args.learning_rates), ("l2", args.l2s),
             ("keep_prob", args.keep_probs), ("hidden", args.hiddens), ("batch_size", args.batch_sizes))  # fmt: skip
    axes = {k: v for k, v in flags if v is not None}
    how = {"combine": "zip" if args.zip else "grid", "samples": args.samples, "search_seed": args.search_seed}
    if args.space is not None:
        space = space_from_dict(read_toml(args.space, "--space"), f"--space {args.space}")
        clash = sorted(set(space) & set(axes))
        if clash:
            raise ValueError(f"--space sets the axis {clash[0]!r}, given as a flag too; give it in one place")
        axes = {**space, **axes}
        if args.samples is None and any(isinstance(v, Distribution) for v in space.values()):
            raise ValueError(f"--space {args.space} holds distributions: give --samples N to draw N members")
    elif args.samples is not None:
        raise ValueError("--samples draws members from a --space SPACE.toml; give one")
    if stored is not None and not axes:  # the folder's members (a search drawn again: the same draws)
        search = stored.get("search")
        if search:
            axes = space_from_dict(search["space"], "the sweep folder's search record")
            how = {"combine": search.get("combine", "zip"), "samples": search["samples"],
                   "search_seed": search["search_seed"]}  # fmt: skip
        else:
            axes, how = stored["axes"], {**how, "combine": "zip"}  # one value per member, as recorded
    if not axes:
        raise ValueError("jnn sweep needs at least one axis: --seeds, --learning-rates, --l2s, --keep-probs, "
                         "--hiddens, --batch-sizes or --space")  # fmt: skip
    return axes, how


def _sweep_run_flags(args, stored, config) -> dict:
    """``{"sweep": strategy, workers and devices for jnn.sweep.sweep, "callbacks": [the scheduler]}`` of
    ``jnn sweep``'s flags (``--resume``: the folder's strategy unless given)."""
    from jnn.schedulers import SuccessiveHalving

    for flag, value, low in (
        ("--workers", args.workers, 1),
        ("--devices", args.devices, 1),
        ("--rung-epochs", args.rung_epochs, 1),
        ("--reduction-factor", args.reduction_factor, 2),
    ):
        if value is not None:
            V.check_int(flag, value, low=low, high=1_000_000)  # fmt: skip
    strategy = args.strategy or (stored["strategy"] if stored is not None else None)
    callbacks = []
    if args.scheduler is None and stored is not None:  # --resume: the schedulers the sweep started with
        callbacks += [SuccessiveHalving(**s) for s in stored["schedulers"]]
    if args.scheduler == "asha":
        rule = config.monitored()
        callbacks.append(SuccessiveHalving(rule.monitor, rule.direction, min_epochs=args.rung_epochs,
                                           reduction_factor=args.reduction_factor))  # fmt: skip
    sweep_kw = {"strategy": strategy, "workers": args.workers, "devices": args.devices, "cluster": args.ray}
    return {"sweep": sweep_kw, "callbacks": callbacks}


def _model_and_table(args, need_target: bool):
    from jnn.app.tabular import read_table
    from jnn.app.trained import load_run

    model = load_run(args.run_dir, member=args.member, best=args.best)
    prep = model.preprocessing
    target = prep.targets if prep.targets is not None else (None if need_target else ())
    features = None if prep.features is None else [*prep.features, *(prep.categorical or [])]
    table = read_table(args.data, target=target, features=features, need_target=need_target, split=args.split,
                       delimiter=args.delimiter, categorical=prep.categorical,
                       features_flag="the model's feature columns")  # fmt: skip
    return model, table


def _predict(args) -> int:
    import csv

    import numpy as np

    from jnn.app.tabular import features_of
    from jnn.losses import loss_of

    model, table = _model_and_table(args, need_target=False)
    prep = model.preprocessing
    x = features_of(table, prep, what=f"--data {args.data!r}")
    record = loss_of(model.task.loss)
    if args.proba and (record is None or not record.classifies):
        raise ValueError(f"--proba is for classification runs; this run's loss is {model.loss!r}")
    pred = np.asarray(model.predict(x))
    names = prep.targets or ["prediction"]
    cols = names if pred.ndim == 2 and len(names) == pred.shape[1] else [f"prediction_{i}" for i in range(
        pred.shape[1])] if pred.ndim == 2 else ["prediction"]  # fmt: skip
    cell = (lambda v: f"{v:.6g}") if pred.dtype.kind == "f" else (lambda v: v)
    rows = [[cell(v) for v in r] if pred.ndim == 2 else [cell(r)] for r in pred.tolist()]
    if args.proba:
        proba = model.predict_proba(x)
        multilabel = record.kind == "multilabel"
        labels = model.classes if model.classes is not None and not multilabel else None
        labels = labels or (names if multilabel and prep.targets else list(range(proba.shape[1])))
        cols = cols + [f"p_{c}" for c in labels]
        rows = [r + [f"{p:.6g}" for p in ps] for r, ps in zip(rows, proba.tolist())]
    if args.out:
        with atomic.writing(args.out, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(cols)
            w.writerows(rows)
    else:
        w = csv.writer(sys.stdout)
        w.writerow(cols)
        w.writerows(rows)
    if args.out:
        print(f"wrote {len(rows)} predictions ({', '.join(cols)}) to {args.out}", file=sys.stderr)
    return 0


def _evaluate(args) -> int:
    from jnn.app.tabular import dataset

    model, table = _model_and_table(args, need_target=True)
    metrics = model.evaluate(dataset(table, model.preprocessing, what=f"--data {args.data!r}"))
    on = args.data + (f" ({args.split} arrays)" if args.data.endswith(".npz") else "")
    print(f"jnn evaluate: {args.run_dir}{'' if args.member is None else f' member {args.member}'} on {on}")
    for k in sorted(metrics, key=lambda k: (k != "loss", k == "n", k)):
        print(f"{k:>10}  {metrics[k] if k == 'n' else f'{metrics[k]:.6g}'}")
    if model.preprocessing.target_mean is not None:
        print(f"({SCALED_NOTE[2:]}; jnn predict gives values in the targets' own units)")
    if args.json:
        atomic.write_text(args.json, json.dumps(metrics, indent=2))
    return 0


def _user_gradcheck(args) -> int:
    """``jnn gradcheck FILE.py:NAME``: run jnn.check_grads on what NAME() returns."""
    import importlib.util

    from jnn.gradcheck import check_grads

    path, sep, name = args.target.rpartition(":")
    if not sep or not path.endswith(".py") or not name:
        raise ValueError(f"the check must be FILE.py:NAME (a function of no arguments); got {args.target!r}")
    if not os.path.isfile(path):
        raise ValueError(f"{path!r} does not exist")
    spec = importlib.util.spec_from_file_location("jnn_user_check", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as err:
        raise ValueError(f"{path!r} failed to import: {type(err).__name__}: {err}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{path!r} has no function {name!r}")
    got = fn()
    if not isinstance(got, tuple) or len(got) not in (2, 3) or not isinstance(got[1], (tuple, list)):
        raise ValueError(
            f"{name}() must return (f, args) or (f, args, options) with args a tuple; got {type(got).__name__}"
        )
    f, fargs, options = got[0], tuple(got[1]), dict(got[2]) if len(got) == 3 else {}
    for key, v in (("mode", args.check_mode), ("order", args.order), ("rtol", args.rtol), ("atol", args.atol)):
        if v is not None:
            options[key] = v
    options.setdefault("seed", args.seed)
    t0 = time.perf_counter()
    report = check_grads(f, *fargs, **options)
    print(report)
    label = {"passed": "OK", "failed": "MISMATCH", "inconclusive": "INCONCLUSIVE"}[report.verdict]
    print(f"{label}: {args.target} checked in {time.perf_counter() - t0:.2f} s")
    if args.json:
        out = {"passed": report.passed, "verdict": report.verdict, "report": str(report), **report.to_dict()}
        atomic.write_text(args.json, json.dumps(out, indent=2))
    return 0 if report.passed else 1


#: Arrays of the params' size ``jnn gradcheck`` holds at its peak, in the params' dtype (params, jax.grad, the
#: hand-written backprop) and in float64 (check_grads: its point, a perturbed copy or tangent, a gradient).
GRADCHECK_COPIES, GRADCHECK_COPIES64 = 3, 3


def _check_gradcheck_memory(sizes, batch: int, dtype: str, bound=None) -> int:
    """Refuse a ``jnn gradcheck`` model that cannot fit in memory before anything is allocated: the estimate is
    the params' copies (``GRADCHECK_COPIES`` in their dtype, ``GRADCHECK_COPIES64`` in float64) and four
    activations of every layer for the batch. Returns the estimate in bytes."""
    from jnn.train.run_setup import memory_bound

    item = 8 if dtype == "float64" else 4
    n = sum(int(a) * int(b) + int(b) for a, b in zip(sizes[:-1], sizes[1:]))
    need = n * (GRADCHECK_COPIES * item + GRADCHECK_COPIES64 * 8) + 4 * batch * sum(int(s) for s in sizes) * item
    bound = memory_bound() if bound is None else bound
    if bound is not None and need > bound[0]:
        raise ValueError(f"--sizes {','.join(map(str, sizes))} is {n:,} parameters: checking its gradients needs about "
                         f"{need / 1e9:.3g} GB ({GRADCHECK_COPIES + GRADCHECK_COPIES64} arrays of the params' size, "
                         f"half of them in float64, and the batch's activations), but {bound[1]} is "
                         f"{bound[0] / 1e9:.3g} GB; use smaller --sizes or --batch")  # fmt: skip
    return need


def _gradcheck(args) -> int:
    """``jnn gradcheck``: a user's check, or the hand-written backprop against ``jax.grad``, finite differences,
    the node-level backprop (small nets) and the Taylor remainder (float64)."""
    if args.target is not None:
        return _user_gradcheck(args)
    from jnn.gradcheck import float64_mode

    sizes, rtol, atol_rel = _gradcheck_settings(args)
    with float64_mode() if args.dtype == "float64" else contextlib.nullcontext():
        params, x, y, kw, k_dir = _gradcheck_problem(args, sizes)
        print(
            f"jnn gradcheck: sizes={','.join(map(str, sizes))} activation={args.activation} loss={args.loss} "
            f"l2={args.l2:g}{' (with biases)' if args.include_bias else ''} keep_prob={args.keep_prob:g} "
            f"mode={args.mode} dtype={args.dtype} batch={args.batch} seed={args.seed}"
        )
        t0 = time.perf_counter()
        reports, taylor, n_params = _gradcheck_reports(args, params, x, y, kw, k_dir, rtol, atol_rel)
        for i, r in enumerate(reports):
            print()
            if i == 0:
                print("backprop (vectorised) vs float64 finite differences (jnn.check_grads, grad=backprop):")
            print(r)
        if taylor is not None:
            print(f"\nTaylor remainder order of the hand-written gradient: {taylor.order:.3f} (2 = correct, 1 = wrong)")
        ok = all(r.passed for r in reports)
        print(f"\n{'OK' if ok else 'MISMATCH'}: {n_params} parameters checked in {time.perf_counter() - t0:.2f} s")
    if args.json:
        out = {"reports": [r.to_dict() for r in reports], "taylor_order": None if taylor is None else taylor.order}
        atomic.write_text(args.json, json.dumps(out, indent=2))
    return 0 if ok else 1


def _gradcheck_settings(args) -> tuple:
    """``(sizes, rtol, atol_rel)`` of ``jnn gradcheck``'s flags, checked (ValueError naming the flag)."""
    from jnn.losses import get_loss

    sizes = V.check_sizes(args.sizes)
    V.check_int("--batch", args.batch, low=1)
    V.check_real("--l2", args.l2, low=0.0)
    if get_loss(args.loss).outputs == "one" and sizes[-1] != 1:
        raise ValueError(f"--loss {args.loss} needs an output width of 1 (the last of --sizes); got {sizes[-1]}")
    _check_gradcheck_memory(sizes, args.batch, args.dtype)
    f64 = args.dtype == "float64"
    rtol = args.rtol if args.rtol is not None else (1e-10 if f64 else 1e-5)
    atol_rel = args.atol if args.atol is not None else (1e-13 if f64 else 1e-6)
    V.check_real("--rtol", rtol, low=0.0)
    V.check_real("--atol", atol_rel, low=0.0)
    return sizes, rtol, atol_rel


def _gradcheck_problem(args, sizes) -> tuple:
    """``(params, x, y, objective kwargs, Taylor direction key)``: the random problem of ``--seed``."""
    import jax
    import jax.numpy as jnp

    from jnn.dropout import Dropout
    from jnn.init import init_mlp
    from jnn.losses import get_loss

    k_init, k_x, k_y, k_drop, k_dir = jax.random.split(jax.random.key(args.seed), 5)
    params = init_mlp(k_init, sizes, scheme=args.scheme, dtype=args.dtype)
    x = jax.random.normal(k_x, (args.batch, sizes[0]), args.dtype)
    if get_loss(args.loss).outputs == "one":
        y = jax.random.bernoulli(k_y, 0.5, (args.batch,)).astype(jnp.int32)
    else:
        y = jax.random.randint(k_y, (args.batch,), 0, sizes[-1])
    dropout = Dropout(args.keep_prob, args.mode) if args.keep_prob != 1.0 else None
    kw = dict(loss=args.loss, activation=args.activation, l2=args.l2, include_bias=args.include_bias,
              dropout=dropout, key=k_drop, train=True)  # fmt: skip
    return params, x, y, kw, k_dir


def _gradcheck_reports(args, params, x, y, kw, k_dir, rtol, atol_rel) -> tuple:
    """``(reports, taylor, n_params)``: finite differences, the vectorised and node-level backprop against
    ``jax.grad``, and the Taylor test (float64 only)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from jnn.backprop import backprop, node_backprop
    from jnn.gradcheck import check_grads, compare_grads, taylor_test
    from jnn.losses import regularized_loss

    ref = jax.jit(jax.grad(lambda p: regularized_loss(p, x, y, **kw)))(params)
    hand = jax.jit(lambda p: backprop(p, x, y, **kw))(params)
    atol = atol_rel * max(float(jnp.max(jnp.abs(leaf))) for leaf in jax.tree.leaves(ref))
    # x goes in as an argument: check_grads copies float arguments to float64, params and x alike.
    fd = check_grads(lambda p, x: regularized_loss(p, x, y, **kw), params, x,
                     grad=lambda p, x: backprop(p, x, y, **kw), seed=args.seed)  # fmt: skip
    reports = [fd, compare_grads(ref, hand, rtol=rtol, atol=atol, reference_name="jax.grad",
                                 candidate_name="backprop (vectorised)")]  # fmt: skip
    n_params = sum(int(np.size(leaf)) for leaf in jax.tree.leaves(params))
    if n_params <= args.node_limit:
        nodes = node_backprop(params, x, y, **kw)
        reports.append(compare_grads(ref, nodes, rtol=rtol, atol=atol, reference_name="jax.grad",
                                     candidate_name="node_backprop (node level)"))  # fmt: skip
    else:
        print(f"(node-level reference skipped: {n_params} params > --node-limit {args.node_limit})")
    taylor = None
    if args.dtype == "float64":
        taylor = taylor_test(lambda p: regularized_loss(p, x, y, **kw), params, hand, key=k_dir)
    return reports, taylor, n_params


def _cv(args) -> int:
    import datetime
    from pathlib import Path

    from jnn.app.run_folder import RunFolder
    from jnn.app.sources import class_weight_of, load_source, source_name
    from jnn.cv import cross_validate
    from jnn.train.progress import Progress

    source, config, mlp = _train_config(args, None)
    name = source_name(source)
    out = Path(args.out or f"runs/cv-{name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    atomic.check_folder_writable(out, "--out")
    train, val, _, info = load_source(source, config, mlp.loss)
    if val is not None:
        raise ValueError("--val-data does not go with jnn cv: each fold's fit carves its own validation split")
    print(
        f"jnn cv: {name}, {args.folds} folds of about {len(train) // max(args.folds, 1)} rows, {mlp.loss}", flush=True
    )
    out.mkdir(parents=True, exist_ok=True)
    folders = lambda k: [RunFolder(out / f"fold-{k}", data_info=info), Progress(bar=False, log_every=0)]
    cv = cross_validate(train, config, task=mlp, folds=args.folds, seed=args.fold_seed, callbacks_for=folders,
                        class_weight=class_weight_of(source, info))  # fmt: skip
    for row in cv.rows:
        scores = ", ".join(f"{k[5:]} {v:.4f}" for k, v in row.items() if k.startswith("test_"))
        print(f"fold {row['fold']}: {row['n_test']} held-out rows, {row['epochs']} epochs: {scores}")
    lines = [f"{m}: {p['mean']:.4f} ± {p['std']:.4f} (95% interval [{p['ci_low']:.4f}, {p['ci_high']:.4f}], "
             f"{p['n']} folds)" for m, p in cv.pooled.items()]  # fmt: skip
    print("\n".join(lines))
    atomic.write_text(out / "cv.json", json.dumps({"folds": cv.rows, "pooled": cv.pooled, "source": source}, indent=2))
    atomic.write_text(out / "cv.md", "\n".join(["| metric | mean ± std | 95% interval |", "|---|---|---|",
                      *(f"| {m} | {p['mean']:.4f} ± {p['std']:.4f} | [{p['ci_low']:.4f}, {p['ci_high']:.4f}] |"
                        for m, p in cv.pooled.items())]) + "\n")  # fmt: skip
    print(f"cv folder: {out} (cv.json, cv.md, {', '.join(f'fold-{k}' for k in range(len(cv.rows)))})")
    return 0


def _export(args) -> int:
    from jnn.app.export import export

    out = export(args.run_dir, args.format, out=args.out, member=args.member, best=args.best)
    print(f"wrote {out} and {out.parent / 'export.json'}")
    return 0


def _launch(args) -> int:
    from jnn.app.launcher import launch

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    return launch(cmd, processes=args.processes, port=args.port, timeout=args.timeout)


#: Environment variables of the on-disk compilation cache of the command line.
CACHE_ENV, CACHE_DIR_ENV = "JNN_COMPILE_CACHE", "JNN_CACHE_DIR"


def compile_cache_dir() -> str | None:
    """Turn on JAX's persistent compilation cache for this process (the command line does it by default):
    ``$JNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/jnn/xla`` or ``~/.cache/jnn/xla``; ``JNN_COMPILE_CACHE=0`` turns
    it off. A second ``jnn train`` of the same shapes then loads its programs instead of compiling them (same
    programs, so the same results bit for bit). Returns the folder, or None when off or not writable."""
    if os.environ.get(CACHE_ENV, "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    folder = os.environ.get(CACHE_DIR_ENV) or os.path.join(base, "jnn", "xla")
    try:
        os.makedirs(folder, exist_ok=True)
        if not os.access(folder, os.W_OK):
            return None
    except OSError:
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)  # the epoch programs, not each tiny op
    return folder


def _summarize(args) -> int:
    import warnings

    from jnn.app.summary_files import summarize_folder

    with warnings.catch_warnings():  # said below, in one line of its own
        warnings.simplefilter("ignore", UserWarning)
        summary, written = summarize_folder(args.sweep_dir, args.by, metrics=args.metrics, confidence=args.confidence,
                                            out=args.out, overwrite=args.overwrite)  # fmt: skip
    print(summary.to_markdown())
    for w in summary.warnings:
        print(f"jnn summarize: warning: {w}", file=sys.stderr)
    print(f"wrote {', '.join(str(p) for p in written)}")
    return 0


def _check_destinations(args) -> None:
    """Refuse output paths that cannot be written before any work (a folder where a file goes, a missing or
    read-only folder, a name that is not UTF-8, a device or FIFO, one of a run or sweep folder's own files)."""
    from jnn.app.run_dir import check_not_run_file

    cmd = args.command
    if cmd in ("gradcheck", "evaluate") and getattr(args, "json", None):
        atomic.check_file_writable(args.json, "--json")
        check_not_run_file(args.json, "--json")
    if cmd in ("predict", "plot") and getattr(args, "out", None):
        atomic.check_file_writable(args.out, "--out")
        check_not_run_file(args.out, "--out", allow=("curves.png", "sweep.png") if cmd == "plot" else ())
    if cmd == "summarize":
        from jnn.app.summary_files import check_summary_folder

        where = "--out" if args.out else "SWEEP"
        check_summary_folder(args.out or args.sweep_dir, overwrite=args.overwrite, name=where)
    if cmd == "train" and getattr(args, "out", None):  # jnn sweep checks its --out, or the default one, itself
        atomic.check_folder_writable(args.out, "--out")


def check_platform() -> None:
    """Start JAX's platform (``JAX_PLATFORMS``) before any work, naming a platform that is unknown or has no device
    (JAX raises a RuntimeError or a bare AssertionError)."""
    import jax

    try:
        jax.devices()
    except (RuntimeError, AssertionError) as err:
        chosen = os.environ.get("JAX_PLATFORMS", "")
        why = str(err).strip().splitlines()[0][:300] if str(err).strip() else f"{type(err).__name__} without a message"
        hint = ("no CUDA GPU or CUDA plugin is available here (pip install 'jax[cuda12]' on a machine with one)"
                if "cuda" in chosen.lower() or "gpu" in chosen.lower() else f"JAX says: {why}")  # fmt: skip
        raise ValueError(f"JAX cannot start the platform JAX_PLATFORMS={chosen!r}: {hint}; unset JAX_PLATFORMS (or set "
                         "it to cpu) to run on what this machine has") from None  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jnn`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    from jnn.train import host_loop as host

    before, host.SECOND_SIGNAL = host.SECOND_SIGNAL, "exit"  # a second Ctrl-C ends the process at once
    try:
        _check_destinations(args)
        if args.command == "launch":
            return _launch(args)
        compile_cache_dir()
        if os.environ.get("JNN_NUM_PROCESSES"):  # started by jnn launch (or a cluster script): before any JAX call
            from jnn.parallel import initialize

            initialize()
        if args.command in ("gradcheck", "train", "sweep", "predict", "evaluate"):
            check_platform()
        if args.command == "gradcheck":
            return _gradcheck(args)
        if args.command == "train":
            return _train(args)
        if args.command == "sweep":
            return _sweep(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "summarize":
            return _summarize(args)
        if args.command == "export":
            return _export(args)
        if args.command == "cv":
            return _cv(args)
        if args.command == "plot":
            from jnn.app.plots import plot_run

            print(f"wrote {plot_run(args.run_dir, args.out, overwrite=args.overwrite)}")
            return 0
    except (ValueError, TypeError, ImportError) as err:
        print(f"jnn {args.command}: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. jnn predict ... | head: the reader has gone; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as err:  # a full disk, a read-only folder: one line; what was saved before stays as it was
        where = f" ({err.filename})" if err.filename else ""
        print(f"jnn {args.command}: error: {err.strerror or err}{where}; files saved before stay as they were",
              file=sys.stderr)  # fmt: skip
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, between checkpoints
        print(f"jnn {args.command}: stopped at once; the last checkpoint stays valid", file=sys.stderr)
        return 130
    finally:
        host.SECOND_SIGNAL = before
    return 2


if __name__ == "__main__":
    sys.exit(main())
