"""MkDocs hooks: the CLI reference, the module table of the Layout page and the changelog are written when the site
is built (from the argument parser, the package's docstrings and ``CHANGELOG.md``), so they never go stale."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

MARK = "<!-- cli-reference -->"
MODULES = "<!-- module-table -->"
CHANGELOG = "<!-- changelog -->"
ROOT = Path(__file__).resolve().parents[1]


def cli_reference() -> str:
    """Markdown of ``jnn --help`` and of every subcommand's ``--help``, as the parser prints them."""
    from jnn.app.cli import build_parser

    parser = build_parser()
    parts = ["## jnn", "", "```text", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        parts += [f"## jnn {name}", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def module_table() -> str:
    """A Markdown table of every module of ``jnn/`` and the first sentence of its docstring."""
    rows = ["| module | what it is |", "|---|---|"]
    for path in sorted((ROOT / "jnn").rglob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        first = " ".join(doc.split("\n\n")[0].split()).replace("|", "\\|")
        name = str(path.relative_to(ROOT)).removesuffix(".py").replace("/", ".").removesuffix(".__init__")
        rows.append(f"| `{name}` | {first} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Put the CLI reference, the module table and the changelog where a page marks them."""
    if MARK in markdown:
        markdown = markdown.replace(MARK, cli_reference())
    if MODULES in markdown:
        markdown = markdown.replace(MODULES, module_table())
    if CHANGELOG in markdown:
        text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
        markdown = markdown.replace(CHANGELOG, text.split("\n", 1)[1])  # without its own title
    return markdown
