"""The command line stays a thin layer over the library: every command body parses its
arguments, calls one library function and renders what it returns (no body over 30
lines), and the cli package imports only light modules at its top, so that `ingest
--help` and each command load only what they use."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ingest.cli

CLI = Path(ingest.cli.__file__).resolve().parent
MAX_BODY_LINES = 30
#: What a cli module may import at its top: the command-line toolkit, the settings, the
#: errors and the light helpers; everything else inside the command that uses it.
LIGHT = (
    "typer",
    "rich.console",
    "ingest.settings",
    "ingest.errors",
    "ingest.inert",
    "ingest.logs",
    "ingest.cli",
)
STDLIB = set(sys.stdlib_module_names)


def _commands() -> list[tuple[str, ast.FunctionDef]]:
    found = []
    for path in sorted(CLI.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and any(
                isinstance(d, ast.Call) and isinstance(d.func, ast.Attribute) and d.func.attr == "command"
                for d in node.decorator_list
            ):
                found.append((f"{path.name}:{node.name}", node))
    return found


def _body_lines(func: ast.FunctionDef) -> int:
    """Lines from the first statement after the docstring to the end of the function."""
    body = func.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return 0 if not body else (body[-1].end_lineno or body[-1].lineno) - body[0].lineno + 1


def test_every_registered_command_is_found_here() -> None:
    registered = {c.callback.__name__ for c in ingest.cli.app.registered_commands if c.callback}
    registered |= {
        c.callback.__name__
        for g in ingest.cli.app.registered_groups
        if g.typer_instance
        for c in g.typer_instance.registered_commands
        if c.callback
    }
    assert registered == {node.name for _, node in _commands()}


def test_no_command_body_is_over_thirty_lines() -> None:
    long = {name: n for name, func in _commands() if (n := _body_lines(func)) > MAX_BODY_LINES}
    assert not long, f"command bodies over {MAX_BODY_LINES} lines (move the work into the library): {long}"


def test_cli_modules_import_only_light_modules_at_their_top() -> None:
    heavy = []
    for path in sorted(CLI.glob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            for name in names:
                light = name == "ingest" or name.split(".")[0] in STDLIB or name.startswith(LIGHT)
                if not light and name != "__future__":
                    heavy.append(f"{path.name}: {name}")
    assert not heavy, f"import these inside the command that uses them: {heavy}"


def test_help_loads_no_library_stage() -> None:
    """`ingest --help` imports none of the pipeline's stages (a subprocess: a fresh interpreter)."""
    code = (
        "import sys\nfrom ingest.cli import main\nsys.argv = ['ingest', '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in sys.modules if m.startswith("
        "('ingest.ops', 'ingest.pipeline', 'ingest.archive', 'ingest.state', 'ingest.request', "
        "'ingest.mail', 'ingest.parse', 'ingest.export', 'polars', 'pyarrow'))), file=sys.stderr)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert "Commands" in done.stdout
    assert done.stderr.strip() == "[]"
