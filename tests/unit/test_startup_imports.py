"""Start-up pays only for what a command uses (issue 25): the modules each command loads.

Every figure of a cold start is imports (bench/README.md, `startup`): pandas alone is
0.3-0.7 CPU s, and pyarrow imports it behind the scenes the first time a Python object is
converted (``pa.scalar``, a ``str`` handed to a compute function). These tests run whole
commands in a fresh interpreter and check *which* libraries they loaded, never how long
it took.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

from tests.support.job import ingest_env

#: Loaded by nothing `--help` shows: the data stack, the network clients, the exporters.
HEAVY = {"polars", "pyarrow", "deltalake", "numpy", "pandas", "httpx", "imapclient", "duckdb"}
HEAVY |= {"cryptography", "jinja2", "boto3", "botocore", "tenacity", "sqlite3"}
#: Loaded only by a command that runs: the settings (pydantic-settings imports asyncio).
SETTINGS = {"pydantic_settings", "asyncio"}
#: Not needed to archive a report file: the network clients, the exporters, pandas.
NOT_FOR_IMPORT = HEAVY - {"polars", "pyarrow", "deltalake", "numpy", "sqlite3"}

#: Not needed by any command run without a terminal: rich's emoji names (the consoles
#: print text as it is).
NEVER_FOR_IMPORT = {"rich._emoji_codes"}

#: Runs ``python -m ingest ARGS`` in this interpreter, then prints the modules it loaded
#: (as JSON, on the last line of stderr) and exits with the command's code.
_PROGRAM = (
    "import json, runpy, sys\n"
    "sys.argv = ['ingest', *sys.argv[1:]]\n"
    "code = 0\n"
    "try:\n"
    "    runpy.run_module('ingest', run_name='__main__')\n"
    "except SystemExit as done:\n"
    "    code = done.code or 0\n"
    "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def loaded_by(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """The top-level packages ``ingest ARGS`` loaded, and its stdout."""
    modules, shown = modules_loaded_by(*args, cwd=cwd, env=env)
    return {m.split(".")[0] for m in modules}, shown


def modules_loaded_by(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """Every module ``ingest ARGS`` loaded (dotted names), and its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, *args],
        env=ingest_env(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.splitlines()[-1])), done.stdout


def test_help_loads_no_data_library_and_no_network_client(tmp_path: Path) -> None:
    for args in (["--help"], ["import", "--help"], ["run", "--help"]):
        modules, shown = loaded_by(*args, cwd=tmp_path)
        assert "Usage" in shown
        assert modules & HEAVY == set(), args
        assert modules & SETTINGS == set(), args


def test_importing_the_cli_loads_no_data_library() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import sys, ingest.cli; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert {m.split(".")[0] for m in done.stdout.split()} & HEAVY == set()


def test_a_report_import_loads_no_network_client_and_no_pandas(tmp_path: Path) -> None:
    """Into a new archive, then into the table the first made (the second import reads its
    snapshot: the bot's files, chosen in Arrow): rows archived, and neither loaded pandas,
    an HTTP or IMAP client, an exporter or a cipher."""
    header = "id,timestamp,message,response,conversation_id,botuser\n"
    env = {
        "INGEST_OUTPUT__ROOT": str(tmp_path / "archive"),
        "INGEST_STATE__PATH": str(tmp_path / "state.sqlite"),
    }
    for day in (1, 2):
        report = tmp_path / f"day{day}.csv"
        rows = [f"{day}0{n},2024-05-0{day}T10:0{n}:00Z,hello {n},hi,c{n},u{n}\n" for n in range(5)]
        report.write_text(header + "".join(rows))
        modules, summary = modules_loaded_by("import", str(report), "--bot", "b1", cwd=tmp_path, env=env)
        assert "5 written" in summary
        assert {m.split(".")[0] for m in modules} & NOT_FOR_IMPORT == set(), day
        assert modules & NEVER_FOR_IMPORT == set(), day
    files = sorted((tmp_path / "archive").glob("**/bot_id=*/date=*/*.parquet"))
    assert sum(pq.ParquetFile(f).metadata.num_rows for f in files) == 10
