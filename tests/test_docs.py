"""The documentation site: it builds with ``mkdocs build --strict``, every Python block on it (and in the README)
runs, and every ``jnn`` command of its shell blocks exits 0.

Each page's blocks run in order, in one fresh process per page, in a temporary folder. A page's setup (below)
provides what its text says comes from elsewhere (the data, a user's module, a run folder) and caps every epoch
budget at 2: the blocks must run, their numbers are the pages' own.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

CAP = """
import jnn
_TrainConfig = jnn.TrainConfig
def _capped(*args, **kw):
    kw["max_epochs"] = min(kw.get("max_epochs", 300), 2)
    return _TrainConfig(*args, **kw)
jnn.TrainConfig = _capped
"""

SETUP = {
    "own-data.md": """
import numpy as np
from jnn.app import cli
rng = np.random.default_rng(0)
np.save("big_x.npy", rng.standard_normal((3000, 8)).astype(np.float32))
np.save("big_y.npy", rng.integers(0, 3, 3000).astype(np.int32))
assert cli.main(["train", "--data", EXAMPLES + "/wine_train.csv", "--target", "cultivar", "--standardize",
                 "--hidden", "8", "--max-epochs", "2", "--out", "runs/wine"]) == 0
""",
    "own-model.md": """
import jax
import jax.numpy as jnp
import numpy as np
import equinox as eqx
from flax import nnx
from jnn.sweep import sweep

d = np.load(EXAMPLES + "/diabetes.npz")
data = jnn.Dataset(d["x"].astype(np.float32), d["y"].astype(np.float32))
train, test = data.subset(np.arange(350)), data.subset(np.arange(350, len(data)))
spirals, _ = jnn.datasets.load("spirals")

class MyEqxMLP(eqx.Module):
    l1: eqx.nn.Linear
    drop: eqx.nn.Dropout
    l2: eqx.nn.Linear
    def __init__(self, key):
        k1, k2 = jax.random.split(key)
        self.l1, self.drop, self.l2 = eqx.nn.Linear(2, 16, key=k1), eqx.nn.Dropout(0.2), eqx.nn.Linear(16, 3, key=k2)
    def __call__(self, x, *, key=None):
        return self.l2(self.drop(jax.nn.relu(self.l1(x)), key=key))

class MyNnxMLP(nnx.Module):
    def __init__(self, rngs):
        self.l1, self.drop = nnx.Linear(2, 16, rngs=rngs), nnx.Dropout(0.2, rngs=rngs)
        self.l2 = nnx.Linear(16, 3, rngs=rngs)
    def __call__(self, x):
        return self.l2(self.drop(nnx.relu(self.l1(x))))

set_p = lambda m, h: eqx.tree_at(lambda m: m.drop.p, m, h["p"])

_adapters_train = spirals
""",
    "study.md": """
train, test = jnn.datasets.load("spirals")
""",
    "export.md": """
from jnn.app import cli
assert cli.main(["train", "--data", EXAMPLES + "/wine_train.csv", "--target", "cultivar", "--standardize",
                 "--hidden", "8", "--max-epochs", "2", "--out", "runs/wine-export"]) == 0
assert cli.main(["export", "runs/wine-export", "--format", "stablehlo"]) == 0
""",
    "check-a-gradient.md": """
import jax
import jax.numpy as jnp
params = {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3)}
x = jnp.linspace(0.1, 0.6, 6).reshape(3, 2)
loss = lambda p, x=x: jnp.sum(jnp.tanh(x @ p["w"]) ** 2)
my_grad = jax.grad(loss)
layer = lambda p, x=x: jnp.tanh(x @ p["w"])
loss_and_stats = lambda p: (loss(p), {"norm": jnp.sum(p["w"] ** 2)})
i = 0
""",
}


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a page, in order."""
    return [textwrap.dedent(b) for b in re.findall(r"^```python\n(.*?)^```$", page.read_text(), flags=re.S | re.M)]


PAGES = [ROOT / "README.md"] + sorted(p for p in DOCS.rglob("*.md") if python_blocks(p))


def test_the_pages_with_code_are_the_expected_ones():
    assert {p.name for p in PAGES} >= {"README.md", "first-fit.md", "own-data.md", "own-model.md", "study.md",
                                       "building-blocks.md", "check-a-gradient.md", "export.md", "resume.md",
                                       "plateau-and-best.md", "callbacks.md", "sklearn.md"}  # fmt: skip
    names = [p.name for p in DOCS.rglob("*.md")]
    assert len(names) == len(set(names))  # a page's setup below is found by its name


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_python_block_of_a_page_runs(page, tmp_path):
    setup = f"EXAMPLES = {str(ROOT / 'examples')!r}\n" + CAP + SETUP.get(page.name, "")
    code = setup
    for n, block in enumerate(python_blocks(page)):
        if page.name == "own-model.md" and "from_equinox" in block:  # the recipe trains on the 2-D spirals data
            block = block.replace("(train,", "(_adapters_train,")
        code += f"\nprint('--- block {n}', flush=True)\n" + block
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "CI": "1"})  # fmt: skip
    assert proc.returncode == 0, f"{page.name}: {proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"


def test_the_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    site = tmp_path / "site"
    cli_page = (site / "reference" / "cli" / "index.html").read_text()
    assert "jnn summarize" in cli_page and "--compute-dtype" in cli_page  # written from the parser
    api = (site / "reference" / "api" / "index.html").read_text()
    assert "Train a model on" in api and "DiskArray" in api  # from the docstrings
    assert "jnn.train.plateau" in (site / "internals" / "layout" / "index.html").read_text()  # the module table
    assert "Fresh-clone test runs" in (site / "internals" / "changelog" / "index.html").read_text()
    for page in site.rglob("*.html"):
        text = re.sub(r"<(pre|script)\b.*?</\1>", "", page.read_text(), flags=re.S)  # prose and tables only
        roles = ROLE_TEXT.findall(text)
        assert not roles, f"{page.relative_to(site)}: Sphinx role text rendered: {roles[:3]}"
    returns = re.findall(r'doc-section-title">Returns:</span></p>\s*<table>(.*?)</table>', api, flags=re.S)
    assert returns and not [r for r in returns if "<th>Name</th>" in r]  # "Word: ..." read as a returned name


#: A Sphinx role as it renders when Markdown meets it (``:class:`X``` becomes ``class:X``) or is left as it was.
ROLE_TEXT = re.compile(r"(?<![\w/.-])(?:class|func|meth|mod|data|attr|obj|exc):(?:<code>|`|[A-Za-z_])")

#: The user pages (tutorials, how-to guides, reference, explanation, the home page and the README) describe jnn as it
#: is: no dates, issue numbers, sessions or rounds in their prose; the measured history is in CHANGELOG.md.
USER_PAGES = [ROOT / "README.md", DOCS / "index.md"] + sorted(
    p for d in ("tutorials", "how-to", "reference", "explanation") for p in (DOCS / d).rglob("*.md"))  # fmt: skip
HISTORY = re.compile(
    r"\b20\d\d-\d\d-\d\d\b|\b[Ii]ssues? \d+|\bthe issue\b|\bsessions?\b|\bthis round\b|"
    r"\b[Rr]ound (?:two|three|four)\b|\bbefore this (?:round|change)\b|\bat the start of the\b"
)


def prose(page: Path) -> str:
    """A page's text outside its fenced code blocks (which hold commands and their printed output)."""
    return re.sub(r"^```.*?^```$", "", page.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("page", USER_PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_pages_hold_no_dated_history(page):
    found = [m.group(0) for m in HISTORY.finditer(prose(page))]
    assert not found, f"{page.name}: history in a user page (move it to CHANGELOG.md): {found[:5]}"


def test_the_history_test_would_catch_history():
    assert HISTORY.search("measured on 2026-12-06") and HISTORY.search("the goals of issue 16")
    assert HISTORY.search("the 9-member sweep of the issue that asked for 1.5x")
    assert not HISTORY.search("issued 5 warnings; 1.75x against sequential jnn fits")


def test_every_guarantee_names_a_test_that_exists():
    text = (DOCS / "reference" / "guarantees.md").read_text()
    named = re.findall(r"`(tests/test_\w+\.py)(?:::(\w+))?`|`::(\w+)`", text)
    assert len(named) >= 30
    current = None
    for file, test, more in named:
        if file:
            current = ROOT / file
            assert current.is_file(), file
        name = test or more
        if name:
            assert re.search(rf"^def {name}\(", current.read_text(), flags=re.M), f"{current.name}::{name}"


def test_every_parameter_in_the_api_reference_has_a_type():
    import importlib
    import inspect

    def resolve(name):
        parts = name.split(".")
        for i in range(len(parts), 0, -1):
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ImportError:
                continue
            for attr in parts[i:]:
                obj = getattr(obj, attr)
            return obj

    def functions(obj):
        if inspect.isclass(obj):
            yield obj.__name__, vars(obj).get("__init__")
            yield from ((f"{obj.__name__}.{k}", v) for k, v in vars(obj).items() if not k.startswith("_") and
                        inspect.isfunction(v))  # fmt: skip
        elif callable(obj):
            yield obj.__name__, obj

    missing = []
    for name in re.findall(r"^::: (\S+)", (DOCS / "reference" / "api.md").read_text(), flags=re.M):
        for label, fn in functions(resolve(name)):
            if fn is None:
                continue
            for p in inspect.signature(fn).parameters.values():
                if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and (
                        p.annotation is inspect.Parameter.empty):  # fmt: skip
                    missing.append(f"{label}({p.name})")
    assert not missing, missing


def test_the_readme_stays_short_and_keeps_its_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 200
    assert "make train" in text and "make test" in text


def shell_commands(page: Path) -> list[str]:
    """The ``jnn`` commands of a page's ```bash blocks (continuation lines joined, comments dropped); ``make`` and
    ``pip`` lines are the project's own install and test commands (CI runs them) and are left out."""
    out = []
    for block in re.findall(r"^```bash\n(.*?)^```$", page.read_text(), flags=re.S | re.M):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith("jnn "):
                out.append(line)
    return out


SHELL_PAGES = [p for p in [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))] if shell_commands(p)]


def _capped_args(cmd: str) -> list[str]:
    """A page's command as arguments of ``jnn``, its epoch budget capped (2, or 4 to resume a capped run; a sweep's
    members 2)."""
    args = shlex.split(cmd)[1:]
    if args[0] == "sweep" and "--resume" not in args:  # the members' budget, like a run's
        if "--max-epochs" in args:
            args[args.index("--max-epochs") + 1] = "2"
        else:
            args += ["--max-epochs", "2"]
    if args[0] == "train" and "--help" not in args:
        cap = "4" if "--resume" in args else "2"
        if "--warmup-epochs" in args:  # the budget must outlast the warm-up
            cap = str(int(args[args.index("--warmup-epochs") + 1]) + 1)
        if "--max-epochs" in args:
            args[args.index("--max-epochs") + 1] = cap
        elif "--config" not in args or "--resume" in args:
            args += ["--max-epochs", cap]
    return args


@pytest.mark.parametrize("page", SHELL_PAGES, ids=lambda p: p.name)
def test_every_jnn_command_of_a_page_runs(page, tmp_path):
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    (tmp_path / "run.toml").write_text('dataset = "spirals"\nhidden = [8]\nmax_epochs = 2\n')
    for cmd in shell_commands(page):
        proc = subprocess.run([sys.executable, "-m", "jnn.app.cli", *_capped_args(cmd)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=600, env={**os.environ, "CI": "1"})  # fmt: skip
        assert proc.returncode == 0, f"{page.name}: {cmd}\n{proc.stdout[-1500:]}\n{proc.stderr[-3000:]}"
