"""The maintainability figures of jnn's source, measured from its syntax trees (nothing imported).

Usage:
    python scripts/code_health.py [--json runs/code_health.json] [--list]

Prints, for ``jnn/``:
- the files that spell a built-in loss name as a string literal (``"mse"``), outside the loss registry;
- ``TrainConfig.__post_init__``'s length in lines;
- the classes with more than 15 fields (dataclass / NamedTuple annotations);
- the functions over 60 lines;
- the import cycles between jnn's modules, at import time (module-level imports) and counting the imports
  inside functions too.

``--list`` names every item behind a count. Written to ``--json`` as well.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "jnn"
#: The modules allowed to spell loss names: the loss registry, and the metric registry (whose ``"mse"`` is a metric).
REGISTRY = {"jnn/losses.py", "jnn/metrics.py"}
#: A loss record's fields whose values share a loss's spelling (kind "multilabel", output_activation "softmax"):
#: a comparison with one of them names a kind of loss, not a loss.
RECORD_FIELDS = {"kind", "output_activation", "outputs"}
LONG_FUNCTION = 60
MANY_FIELDS = 15


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    out = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(ROOT)
        name = ".".join(rel.with_suffix("").parts)
        name = name.removesuffix(".__init__")
        out[name] = (path, ast.parse(path.read_text(), str(rel)))
    return out


def _loss_names(mods) -> set[str]:
    """The built-in loss names: the keys the registry registers (``Loss(name="...")`` calls)."""
    names = set()
    for node in ast.walk(mods["jnn.losses"][1]):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Loss":
            for kw in node.keywords:
                if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                    names.add(kw.value.value)
            if node.args and isinstance(node.args[0], ast.Constant):
                names.add(node.args[0].value)
    if not names:  # before the registry: the LOSSES tuple
        for node in ast.walk(mods["jnn.losses"][1]):
            if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "LOSSES":
                names = {e.value for e in node.value.elts}
    return names


def _docstrings(tree) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def _field_values(tree) -> set[int]:
    """Constants compared with a loss record's field (``record.kind == "multilabel"``)."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(isinstance(x, ast.Attribute) and x.attr in RECORD_FIELDS for x in sides):
                ids.update(id(x) for x in sides if isinstance(x, ast.Constant))
    return ids


def loss_literals(mods) -> dict[str, int]:
    names = _loss_names(mods)
    out = {}
    for _, (path, tree) in mods.items():
        rel = str(path.relative_to(ROOT))
        if rel in REGISTRY:
            continue
        skip = _docstrings(tree) | _field_values(tree)
        n = sum(isinstance(nd, ast.Constant) and nd.value in names and id(nd) not in skip for nd in ast.walk(tree))
        if n:
            out[rel] = n
    return out


def post_init_lines(mods) -> int:
    for node in ast.walk(mods["jnn.train.config"][1]):
        if isinstance(node, ast.ClassDef) and node.name == "TrainConfig":
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == "__post_init__":
                    return item.end_lineno - item.lineno + 1
    return 0


def many_fields(mods) -> dict[str, int]:
    out = {}
    for name, (_, tree) in mods.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                n = sum(isinstance(i, ast.AnnAssign) and isinstance(i.target, ast.Name) for i in node.body)
                if n > MANY_FIELDS:
                    out[f"{name}.{node.name}"] = n
    return out


def long_functions(mods) -> dict[str, int]:
    out = {}
    for name, (_, tree) in mods.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > LONG_FUNCTION:
                    out[f"{name}.{node.name}"] = n
    return out


def _imports(mods, name: str, tree, top_only: bool) -> set[str]:
    pkg = name if mods[name][0].name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    nodes = tree.body if top_only else ast.walk(tree)
    for node in nodes:
        if isinstance(node, ast.If) and top_only:  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in mods and t != name)
    return found


def cycles(mods, top_only: bool) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {n: _imports(mods, n, t, top_only) for n, (_, t) in mods.items()}
    # a package's __init__ importing its own submodules is not a cycle of design
    for n in graph:
        graph[n] = {m for m in graph[n] if not (mods[n][0].name == "__init__.py" and m.startswith(n + "."))}
        graph[n] = {m for m in graph[n] if not (mods[m][0].name == "__init__.py" and n.startswith(m + "."))}
    index, low, stack, on, comps, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return comps


def measure() -> dict:
    mods = _modules()
    return {
        "loss_literal_files": loss_literals(mods),
        "post_init_lines": post_init_lines(mods),
        "classes_over_15_fields": many_fields(mods),
        "functions_over_60_lines": long_functions(mods),
        "import_cycles_top_level": cycles(mods, top_only=True),
        "import_cycles_any": cycles(mods, top_only=False),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", default="runs/code_health.json")
    p.add_argument("--list", action="store_true", help="name every item behind a count")
    a = p.parse_args(argv)
    m = measure()
    print(f"files of jnn/ spelling a loss name (outside {', '.join(sorted(REGISTRY))}): "
          f"{len(m['loss_literal_files'])}")  # fmt: skip
    print(f"TrainConfig.__post_init__: {m['post_init_lines']} lines")
    print(f"classes over {MANY_FIELDS} fields: {len(m['classes_over_15_fields'])}")
    print(f"functions over {LONG_FUNCTION} lines: {len(m['functions_over_60_lines'])}")
    print(f"import cycles: {len(m['import_cycles_top_level'])} at import time, "
          f"{len(m['import_cycles_any'])} counting imports inside functions")  # fmt: skip
    if a.list:
        for key in ("loss_literal_files", "classes_over_15_fields", "functions_over_60_lines"):
            for k, v in sorted(m[key].items(), key=lambda kv: -kv[1]):
                print(f"  {key}: {k} ({v})")
        for key in ("import_cycles_top_level", "import_cycles_any"):
            for c in m[key]:
                print(f"  {key}: {' <-> '.join(c)}")
    out = Path(a.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(m, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
