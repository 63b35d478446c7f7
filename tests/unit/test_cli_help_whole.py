"""Break (issue 26): a command's --help must say what its docstring says.

Typer renders help as Rich markup, so ``pip install 'certainly-ingest[demo]'`` in the demo's
docstring came out as ``pip install 'certainly-ingest'``: ``[demo]`` was taken for a markup
tag and dropped, and a newcomer following the help installed the package without the
embedded IMAP server the demo needs. The CLI reference page (generated from the raw
docstrings) still showed the right command, so only the terminal lied.
"""

from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer

from ingest.cli import app


def _commands() -> dict[str, Any]:
    """Every command and subcommand by its full name ("hold add")."""
    root: Any = typer.main.get_command(app)
    found: dict[str, Any] = {}
    for name, command in root.commands.items():
        subcommands = getattr(command, "commands", None)
        if subcommands:
            found.update({f"{name} {sub}": c for sub, c in subcommands.items()})
        else:
            found[name] = command
    return found


def _words(text: str) -> str:
    """Text as one line of words, without the boxes Rich draws."""
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


@pytest.mark.parametrize("name", sorted(_commands()))
def test_help_shows_every_word_of_the_docstring(name: str) -> None:
    command = _commands()[name]
    doc = inspect.cleandoc(command.help or "")
    expected = _words(doc.replace("\\[", "["))
    done = subprocess.run(
        [sys.executable, "-m", "ingest", *name.split(), "--help"],
        env={**os.environ, "COLUMNS": "100", "NO_COLOR": "1", "TERM": "dumb"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert expected in _words(done.stdout)
