"""`ingest --help` is the first page a user reads: one short line per command, at the
widths terminals have, no type placeholder beside a flag, and an example in every
command's own --help."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ingest.cli import app


def _help(*args: str, columns: int) -> str:
    env = {**os.environ, "COLUMNS": str(columns), "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [sys.executable, "-m", "ingest", *args, "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout


def _commands() -> list[str]:
    names = [info.name or info.callback.__name__ for info in app.registered_commands if info.callback]
    return names + [group.name for group in app.registered_groups if group.name]


@pytest.mark.parametrize("columns", [80, 100])
def test_every_command_summary_fits_one_line(columns: int) -> None:
    text = _help(columns=columns)
    panel = text[text.index("Commands") :].splitlines()[1:]
    rows = [line.strip("│ ").rstrip() for line in panel if line.startswith("│")]
    assert [row.split()[0] for row in rows] == _commands(), "a summary wrapped onto a second line"
    assert all(len(line) <= columns for line in text.splitlines())


@pytest.mark.parametrize(
    "command",
    [
        *(c for c in _commands() if c not in ("hold", "audit")),
        "hold add",
        "hold list",
        "hold remove",
        "audit prove",
    ],
)
def test_each_command_help_has_an_example_and_no_flag_placeholder(command: str) -> None:
    text = _help(*command.split(), columns=100)
    assert "Example" in text
    assert "<bool>" not in text
    assert re.search(r"--help\s+Show this message", text)
