"""MkDocs hook: the CLI reference page is written from the argument parser itself, so it never goes stale."""

from __future__ import annotations

import argparse
import re

MARK = "<!-- cli-reference -->"


def cli_reference() -> str:
    """Markdown of ``jnn --help`` and of every subcommand's ``--help``, as the parser prints them."""
    from jnn.app.cli import build_parser

    parser = build_parser()
    parts = ["## jnn", "", "```text", parser.format_help().rstrip(), "```", ""]
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, p in sub.choices.items():
        parts += [f"## jnn {name}", "", "```text", p.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Put the CLI reference where the page marks it."""
    return markdown.replace(MARK, cli_reference()) if MARK in markdown else markdown


_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc):(<code>)")


def on_page_content(html: str, page, config, files) -> str:
    """Docstrings use Sphinx roles (````jnn.MLP````); the site shows their code span without the role."""
    return _ROLE.sub(r"\1", html)
