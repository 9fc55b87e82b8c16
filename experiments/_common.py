"""Helpers shared by the scripts in ``experiments/`` (not part of the jnn library): a CLI built from a
config dict, results files, seed statistics and validation of experiment configs.

An experiment script defines ``DEFAULTS`` (a dict), ``run(config) -> results`` and calls
``main`` with them; ``--key value`` flags override the defaults, with the type of the default.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jnn.mlp import MLP, split_mlp_keys
from jnn.train.config import TrainConfig


def seed_stats(values) -> dict:
    """``{"mean", "std", "min", "max", "values"}`` of per-seed results (std with ddof=0)."""
    v = np.asarray(values, np.float64)
    return {
        "mean": float(v.mean()),
        "std": float(v.std()),
        "min": float(v.min()),
        "max": float(v.max()),
        "values": [float(x) for x in v],
    }


def train_config(recipe: dict, **overrides) -> tuple[TrainConfig, MLP]:
    """``(TrainConfig, MLP)`` from a flat recipe dict plus overrides: the keys that are ``jnn.MLP`` fields
    describe the network, the others the training (validated; errors name the field)."""
    training, model = split_mlp_keys({**recipe, **overrides})
    return TrainConfig.from_dict(training), MLP.from_dict(model)


def out_dir(config: dict) -> Path:
    """Create and return the experiment's output folder ``config["out"]``."""
    out = Path(config["out"])
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a folder; {str(out)!r} is a file")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_results(out: Path, results: dict) -> Path:
    """Write ``results.json`` (with the machine and versions) and return its path."""
    import jax

    import jnn

    results = {
        **results,
        "environment": {
            "jnn": jnn.__version__,
            "jax": jax.__version__,
            "device": str(jax.devices()[0]),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"),
        },
    }
    path = out / "results.json"
    path.write_text(json.dumps(results, indent=2, default=_json_default))
    return path


def write_table(out_path: str, rows: list, results: dict | None = None) -> str:
    """Print ``rows`` (dicts of one set of keys) as a Markdown table, write it as ``table.md`` and
    ``results.json`` (``{"rows": rows, **results}``) into the folder ``out_path``; returns the table."""
    cols = list(rows[0])
    table = "\n".join(["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                      + ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows])  # fmt: skip
    print(table)
    out = out_dir({"out": out_path})
    (out / "table.md").write_text(table + "\n")
    print(f"results in {write_results(out, {'rows': rows, **(results or {})})}")
    return table


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _parse_list(kind):
    def parse(text: str):
        try:
            return [kind(t) for t in text.split(",") if t.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a comma-separated list of {kind.__name__}; got {text!r}"
            ) from None

    return parse


def build_parser(description: str, defaults: dict) -> argparse.ArgumentParser:
    """A parser with one ``--key`` flag per entry of ``defaults``, typed like the default value."""
    p = argparse.ArgumentParser(description=description)
    for key, value in defaults.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, type=lambda t: t.lower() in ("1", "true", "yes"), default=value, metavar="BOOL")
        elif isinstance(value, list):
            kind = type(value[0]) if value else float
            p.add_argument(flag, type=_parse_list(kind), default=value, help=f"comma-separated (default {value})")
        elif isinstance(value, (int, float, str)):
            p.add_argument(flag, type=type(value), default=value, help=f"default {value!r}")
    return p


def main(
    name: str,
    description: str,
    defaults: dict,
    run: Callable[[dict], dict],
    summarize: Callable[[dict], str],
    argv=None,
) -> int:
    """Parse flags over ``defaults``, call ``run(config)``, print ``summarize(results)``.

    Returns the exit code: 0, or 2 with a one-line message on a bad value.
    """
    args = build_parser(description, defaults).parse_args(argv)
    config = {k: getattr(args, k) for k in defaults}
    try:
        t0 = time.perf_counter()
        results = run(config)
    except (ValueError, TypeError, ImportError) as err:
        print(f"{name}: error: {err}", file=sys.stderr)
        return 2
    print(summarize(results))
    print(f"{name}: {time.perf_counter() - t0:.1f} s; results in {config['out']}/results.json")
    return 0


def train_seeds(name: str, train, test, recipe: dict, seeds, **overrides) -> tuple[dict, object]:
    """Train ``recipe`` once per seed and evaluate on ``test``.

    Args:
        name: label printed in the progress lines.
        train, test: Datasets.
        recipe: TrainConfig and MLP fields (see ``train_config``).
        seeds: training seeds.
        **overrides: fields that replace the recipe's.

    Returns:
        ``(summary, first_fit_result)``: the summary holds the recipe, one row per seed (test accuracy,
        epochs, steps, best epoch, stopping rule, seconds), ``test_accuracy`` statistics over seeds, the
        mean epochs and the mean seconds per run.
    """
    from jnn.train import evaluate, fit

    rows, first = [], None
    for seed in seeds:
        cfg, net = train_config(recipe, **{**overrides, "seed": seed})
        t0 = time.perf_counter()
        r = fit(train, cfg, task=net)
        seconds = time.perf_counter() - t0
        acc = evaluate(r.params, test, net)["accuracy"]
        rows.append(
            {
                "seed": seed,
                "test_accuracy": acc,
                "epochs": int(r.state.epoch),
                "steps": int(r.state.step),
                "best_epoch": r.best_epoch + 1 if r.best_epoch >= 0 else None,
                "stopped_by": r.stopped_by,
                "seconds": round(seconds, 2),
            }
        )
        print(
            f"{name:9s} seed {seed}: test accuracy {acc:.4f} after {int(r.state.epoch)} epochs ({r.stopped_by}) "
            f"in {seconds:.1f} s",
            flush=True,
        )
        first = r if first is None else first
    summary = {
        "recipe": {**recipe, **overrides},
        "runs": rows,
        "test_accuracy": seed_stats([r["test_accuracy"] for r in rows]),
        "mean_epochs": sum(r["epochs"] for r in rows) / len(rows),
        "mean_seconds": sum(r["seconds"] for r in rows) / len(rows),
    }
    return summary, first


def summarize_recipes(results: dict) -> str:
    """One line per recipe of ``results["recipes"]``: mean ± std (min, max) over seeds."""
    lines = []
    for name, r in results["recipes"].items():
        s = r["test_accuracy"]
        lines.append(
            f"{name:9s} test accuracy {s['mean']:.4f} ± {s['std']:.4f} (min {s['min']:.4f}, max "
            f"{s['max']:.4f}) over {len(s['values'])} seeds, {r['mean_epochs']:.0f} epochs, "
            f"{r['mean_seconds']:.1f} s per run"
        )
    return "\n".join(lines)


def accuracy_bars(path, results: dict, *, title: str, lines: dict, ylim: tuple[float, float]) -> Path:
    """Bar chart of mean test accuracy per recipe with the seeds as dots and reference lines.

    Args:
        path: PNG file.
        results: with ``results["recipes"][name]["test_accuracy"]``.
        title: figure title.
        lines: ``{label: y}`` horizontal reference lines (targets, published figures).
        ylim: y-axis range.
    """
    from jnn.app.plots import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    names = list(results["recipes"])
    for i, name in enumerate(names):
        s = results["recipes"][name]["test_accuracy"]
        ax.bar(i, s["mean"], width=0.5, color="tab:blue" if name == "jnn" else "tab:gray", alpha=0.7)
        ax.plot([i] * len(s["values"]), s["values"], "ko", markersize=4)
        ax.text(i + 0.28, s["mean"], f"{s['mean']:.4f}", ha="left", va="center", fontsize=9)
    for (label, y), color in zip(lines.items(), ("tab:red", "tab:orange", "tab:green")):
        ax.axhline(y, color=color, linestyle="--", label=label)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlim(-0.75, len(names) - 0.25)
    ax.set_ylim(*ylim)
    ax.set_ylabel("test accuracy (bars: mean, dots: seeds)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
