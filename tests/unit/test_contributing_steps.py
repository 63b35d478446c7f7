"""Break (issue 26): CONTRIBUTING.md ran ruff, mypy and lint-imports from .venv/bin but never
said how they get there. They moved from the `test` extra to the `lint` dependency group,
which the README's `pip install -e '.[test]'` does not install and which a Python 3.11 venv's
own pip (23.x) cannot install (`no such option: --group`)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_contributing_installs_the_lint_group_it_runs() -> None:
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    tools = {re.split(r"[<>=~!\[ ]", spec)[0] for spec in project["dependency-groups"]["lint"]}
    run = set(re.findall(r"\.venv/bin/([\w-]+)", text))
    executables = {"import-linter": "lint-imports"}
    assert {executables.get(tool, tool) for tool in tools} & run, "CONTRIBUTING runs none of the lint tools?"
    install = text.index("pip install --group lint")
    first_use = min(text.index(f".venv/bin/{tool}") for tool in ("ruff", "mypy", "lint-imports"))
    assert install < first_use
    assert re.search(r"pip install (-q )?--upgrade 'pip>=25\.1'", text[:install]), "pip 25.1+ first"
