"""The `ingest` command as a user runs it: help, exit codes, one-line errors, backfill + status."""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path

import pytest

from ingest.request.requester import split_range
from tests.support.job import run_ingest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BOT = "3f2b8c1e-0000-4000-8000-000000000001"


#: A stable terminal width, no colours.
TERMINAL = {"COLUMNS": "120", "NO_COLOR": "1"}


def _commands(help_text: str) -> list[str]:
    """Command names from the Commands section of `ingest --help` (rich panel or plain click)."""
    names, inside = [], False
    for line in help_text.splitlines():
        if re.search(r"\bCommands\b", line):
            inside = True
            continue
        if inside:
            if line.startswith("╰") or not line.strip():
                break
            match = re.match(r"^[│|]?\s{1,2}([a-z][a-z0-9-]*)(\s{2,}|\s*[│|]?$)", line)
            if match:
                names.append(match.group(1))
    return names


@pytest.fixture(scope="module")
def main_help(tmp_path_factory: pytest.TempPathFactory) -> str:
    result = run_ingest("--help", env=TERMINAL, cwd=tmp_path_factory.mktemp("help"))
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_main_help_lists_commands_and_an_example(main_help: str) -> None:
    commands = _commands(main_help)

    assert {"backfill", "run", "status"} <= set(commands)
    assert "Example" in main_help


@pytest.mark.parametrize(
    "command",
    [
        "demo",
        "backfill",
        "run",
        "watch",
        "import",
        "fetch",
        "status",
        "verify",
        "compact",
        "doctor",
        "retry",
        "keygen",
        "export",
        "verify-export",
        "report",
    ],
)
def test_command_help_has_an_example(command: str, tmp_path: Path) -> None:
    result = run_ingest(command, "--help", env=TERMINAL, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "Example" in result.stdout


def test_every_command_listed_by_help_has_its_own_help(main_help: str, tmp_path: Path) -> None:
    for command in _commands(main_help):
        result = run_ingest(command, "--help", env=TERMINAL, cwd=tmp_path)
        assert result.returncode == 0, (command, result.stderr)
        assert "Example" in result.stdout, command


def test_every_command_is_documented_in_the_readme(main_help: str) -> None:
    readme = REPO / "README.md"
    assert readme.is_file(), "README.md is missing"
    text = readme.read_text(encoding="utf-8")

    missing = [c for c in _commands(main_help) if f"ingest {c}" not in text]

    assert missing == []


def test_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    bad = "s3cr3t-hunter2"
    result = run_ingest("status", env={**TERMINAL, "INGEST_IMAP__PORT": bad}, cwd=tmp_path)

    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert "INGEST_IMAP__PORT" in lines[0]
    assert bad not in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run_ingest(
        "status", env={**TERMINAL, "INGEST_CONFIG": str(tmp_path / "nope.toml")}, cwd=tmp_path
    )

    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "INGEST_CONFIG" in result.stderr
    assert "Traceback" not in result.stderr


def test_backfill_then_status_json_shows_planned_windows(tmp_path: Path) -> None:
    backfill = run_ingest(
        "backfill", "--bot", BOT, "--from", "2024-01-01", "--to", "2024-03-31", env=TERMINAL, cwd=tmp_path
    )
    assert backfill.returncode == 0, backfill.stderr
    expected = len(split_range(date(2024, 1, 1), date(2024, 3, 31), 30))  # default window_days
    assert f"planned {expected} new window(s)" in backfill.stdout
    assert (tmp_path / "ingest-state.sqlite").is_file()

    status = run_ingest("status", "--json", env=TERMINAL, cwd=tmp_path)

    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    [bot] = report["bots"]
    assert bot["bot_id"] == BOT
    assert bot["windows"] == expected
    assert bot["states"] == {"planned": expected}


def test_backfill_again_plans_nothing_new(tmp_path: Path) -> None:
    args = ("backfill", "--bot", BOT, "--from", "2024-01-01", "--to", "2024-01-31")
    assert run_ingest(*args, env=TERMINAL, cwd=tmp_path).returncode == 0

    again = run_ingest(*args, env=TERMINAL, cwd=tmp_path)

    assert again.returncode == 0
    assert "planned 0 new window(s)" in again.stdout


def test_backfill_with_reversed_dates_exits_2(tmp_path: Path) -> None:
    result = run_ingest(
        "backfill", "--bot", BOT, "--from", "2024-02-01", "--to", "2024-01-01", env=TERMINAL, cwd=tmp_path
    )

    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr


def test_backfill_without_bot_is_a_usage_error(tmp_path: Path) -> None:
    result = run_ingest("backfill", "--from", "2024-01-01", "--to", "2024-01-31", env=TERMINAL, cwd=tmp_path)

    assert result.returncode == 2
    assert "--bot" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_without_a_token_exits_2_naming_the_variable(tmp_path: Path) -> None:
    assert (
        run_ingest(
            "backfill", "--bot", BOT, "--from", "2024-01-01", "--to", "2024-01-31", env=TERMINAL, cwd=tmp_path
        ).returncode
        == 0
    )

    result = run_ingest(
        "run",
        env={
            **TERMINAL,
            "INGEST_CERTAINLY__REPORT_PATH": "api/v1/message-report/",
            "INGEST_IMAP__ALLOWED_SENDERS": "reports@certainly.example",
        },
        cwd=tmp_path,
    )

    assert result.returncode == 2
    assert result.stderr.startswith("error:")
    assert "INGEST_CERTAINLY__TOKEN" in result.stderr
    assert "Traceback" not in result.stderr
