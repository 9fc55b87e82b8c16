"""Run one experiment by name: ``python experiments/run.py NAME [flags of that experiment]``.

``python experiments/run.py --list`` lists them. Each experiment is also runnable on its own as
``python experiments/NAME.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def known() -> list[str]:
    """Names of the experiment scripts next to this file."""
    return sorted(p.stem for p in HERE.glob("*.py") if p.stem != "run" and not p.stem.startswith("_"))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = known()
    if not argv or argv[0] in ("-h", "--help", "--list"):
        print("experiments: " + ", ".join(names))
        print("usage: python experiments/run.py NAME [--help | flags]")
        return 0 if argv else 2
    name = argv[0]
    if name not in names:
        print(f"run.py: error: unknown experiment {name!r}; known experiments: {names}", file=sys.stderr)
        return 2
    spec = importlib.util.spec_from_file_location(f"experiments_{name}", HERE / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    sys.argv = [str(HERE / f"{name}.py"), *argv[1:]]
    # the gradient-checking studies have their own main (no run(config) recipe)
    plain = name == "gradcheck_study" or not hasattr(mod, "DEFAULTS")
    return mod.main(argv[1:]) if plain else _run_main(mod, name, argv[1:])


def _run_main(mod, name, argv) -> int:
    from _common import main as run_main

    summarize = getattr(mod, "summarize", None) or mod.summarize_recipes
    return run_main(name, mod.__doc__.splitlines()[0], mod.DEFAULTS, mod.run, summarize, argv)


if __name__ == "__main__":
    sys.exit(main())
