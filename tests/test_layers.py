"""The core (``jnn/`` outside ``jnn/app/``) never imports the application wing (``jnn.app``)."""

import ast
import pathlib
import subprocess
import sys

import jnn

ROOT = pathlib.Path(jnn.__file__).parent


def _app_imports(tree, *, top_level_only: bool) -> list[int]:
    nodes = tree.body if top_level_only else ast.walk(tree)
    lines = []
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        if any(n == "jnn.app" or n.startswith("jnn.app.") for n in names):
            lines.append(node.lineno)
    return lines


def test_no_core_module_imports_the_app_wing():
    core = [p for p in ROOT.rglob("*.py") if "app" not in p.relative_to(ROOT).parts]
    assert len(core) > 40
    found = {}
    for path in core:
        tree = ast.parse(path.read_text())
        # jnn/__init__.py re-exports load_run and TrainedModel lazily (inside its module __getattr__).
        lines = _app_imports(tree, top_level_only=path.name == "__init__.py" and path.parent == ROOT)
        if lines:
            found[str(path.relative_to(ROOT))] = lines
    assert found == {}


def test_import_jnn_loads_no_app_module_and_the_lazy_names_resolve():
    code = "import sys, jnn; print(sorted(m for m in sys.modules if m.startswith('jnn.app')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    from jnn.app.trained import TrainedModel, load_run

    assert jnn.load_run is load_run and jnn.TrainedModel is TrainedModel
