"""The core (``jnn/`` outside ``jnn/app/``) never imports the application wing (``jnn.app``)."""

import ast
import pathlib
import subprocess
import sys

import pytest

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
    from jnn.app import checkpoint, loggers, run_folder, sweep_files
    from jnn.app.trained import TrainedModel, load_run

    assert jnn.load_run is load_run and jnn.TrainedModel is TrainedModel
    assert jnn.RunFolder is run_folder.RunFolder and jnn.save_sweep is sweep_files.save_sweep
    assert jnn.CSVLogger is loggers.CSVLogger and jnn.MLflowLogger is loggers.MLflowLogger
    assert jnn.checkpoint is checkpoint
    from jnn.app import plots

    assert jnn.plots is plots and callable(jnn.plots.plot_history)
    from importlib.metadata import version

    assert jnn.__version__ == version("jnn") and jnn.__version__.count(".") >= 1  # the installed distribution's
    with pytest.raises(AttributeError, match="no attribute 'RunFolders'"):
        jnn.RunFolders  # noqa: B018


def _writes(tree) -> list[str]:
    """The file-writing calls in a module: ``open`` in a write mode, ``write_text``/``write_bytes``,
    ``mkdir``, ``os.replace``/``rename``/``link``, ``np.save*`` and ``fcntl`` (locks)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            found += [f"import {n}" for n in names if n.split(".")[0] == "fcntl"]
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name in ("open", "fdopen"):
            modes = [a.value for a in node.args[1:2] + [k.value for k in node.keywords if k.arg == "mode"]
                     if isinstance(a, ast.Constant)]  # fmt: skip
            if any(isinstance(m, str) and set(m) & set("wax+") for m in modes):
                found.append(f"{name}(..., {modes[0]!r})")
        elif name in ("write_text", "write_bytes", "mkdir", "replace", "rename", "link", "savez",
                      "savez_compressed", "save"):  # fmt: skip
            if name in ("replace", "save") and not (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                                                    and f.value.id in ("os", "np")):  # fmt: skip
                continue  # str.replace, dataclasses.replace, ...
            found.append(name)
    return found


def test_everything_that_writes_files_is_in_the_app_wing():
    """No core module writes a file, makes a folder, renames one into place or takes a lock; the mnist1d
    generator's data cache (jnn/datasets/mnist1d.py) is the one exception: it is where that data set comes from."""
    found = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).as_posix()
        if "app" in path.relative_to(ROOT).parts:
            continue
        hits = _writes(ast.parse(path.read_text()))
        if hits:
            found[rel] = hits
    assert found == {"datasets/mnist1d.py": found.get("datasets/mnist1d.py")} and found["datasets/mnist1d.py"]
    # the detector sees the app wing's writes (so an empty answer above means something)
    assert {"replace", "link"} <= set(_writes(ast.parse((ROOT / "app" / "atomic.py").read_text())))
    assert _writes(ast.parse((ROOT / "app" / "lock.py").read_text())) == ["import fcntl"]


def test_fit_knows_the_run_folder_only_as_a_run_store(tmp_path):
    """A RunStore of one's own gets the run's description and data, and its kept epochs reach the message."""
    import numpy as np

    from jnn.train.callbacks import RunStore

    class Memory(RunStore):
        def __init__(self):
            self.opened = None

        def open(self, meta, state, config, custom_optimizer, keys, *, data):
            self.opened = (meta, data)
            return state, {k: [] for k in keys}

    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    train = jnn.Dataset(x, (x[:, 0] > 0).astype(np.int32))
    store = Memory()
    r = jnn.fit(train, jnn.TrainConfig(max_epochs=2, batch_size=8, early_stopping=None), task=jnn.MLP(hidden=(4,)),
                callbacks=[store, jnn.Progress(bar=False)])  # fmt: skip
    meta, data = store.opened
    assert data[0] is train and data[1] is None and meta["config"]["max_epochs"] == 2 and meta["sizes"] == [3, 4, 2]
    assert r.run_dir is None and len(r.history) == 2
    with pytest.raises(ValueError, match=r"at most one run folder \(jnn.RunFolder or another jnn.RunStore\)"):
        jnn.fit(train, jnn.TrainConfig(max_epochs=1), callbacks=[store, jnn.RunFolder(tmp_path / "r")])
    assert not (tmp_path / "r").exists()
