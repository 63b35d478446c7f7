"""Output is inert: stored or remote text holding rich markup or control characters is
shown literally by `status`, `doctor`, `verify` and text-mode logs, through the real
command (colours forced on, so that rich would render markup and hyperlinks if it could).
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
from datetime import date
from pathlib import Path

import pytest

from ingest.logs import setup_logging
from ingest.simulator import CertainlySimulator, EmbeddedImap
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.job import job_env, run_ingest

pytestmark = pytest.mark.integration

BOT = "5e2a7c1d-0000-4000-8000-0000000000d2"
ESC = "\x1b"
#: An API message as an attacker would write it: a closing tag, a hyperlink, a screen clear
#: and an OSC 8 terminal hyperlink.
HOSTILE = (
    f"[/bold] refused [link=https://evil.example/]click here[/link] {ESC}[2J"
    f"{ESC}]8;;https://evil.example/{ESC}\\x{ESC}]8;;{ESC}\\ [red]done"
)


#: rich's own colours (SGR, ``ESC [ ... m``); nothing the tests inject is one of these.
_SGR = re.compile("\x1b\\[[0-9;]*m")


def run(*args: str, env: dict[str, str], cwd: Path, rich: bool = True) -> subprocess.CompletedProcess[str]:
    """`ingest ARGS` with colours forced, as on a terminal; rich's own colour codes are
    taken out of stdout and stderr afterwards, so that the text can be compared."""
    done = run_ingest(
        *args,
        env={**env, "FORCE_COLOR": "1", "COLUMNS": "400", "INGEST_LOG_FORMAT": "text", "NO_COLOR": None},
        cwd=cwd,
    )
    if rich:  # a rich table: colours were on, so rich renders whatever markup it parses
        assert "\x1b[" in done.stdout + done.stderr
    return subprocess.CompletedProcess(
        done.args, done.returncode, _SGR.sub("", done.stdout), _SGR.sub("", done.stderr)
    )


def assert_inert(output: str) -> None:
    """No injected control sequence, no hyperlink, no crash; the text shown literally."""
    assert "Traceback" not in output and "MarkupError" not in output
    assert f"{ESC}[2J" not in output and f"{ESC}]8;" not in output
    assert "[/bold]" in output and "[link=https://evil.example/]" in output
    assert "\\x1b[2J" in output  # the ESC is visible as text instead


def test_status_shows_markup_and_escape_in_stored_text_literally(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    env = job_env(sim, imap, tmp_path)
    with Store.open(tmp_path / "state.sqlite") as store:
        store.plan_window(BOT, 1, date(2024, 3, 1), date(2024, 3, 5))
        window = store.windows()[0]
        store.transition(window.id, WindowState.SUBMITTING)
        store.transition(window.id, WindowState.FAILED, last_error=HOSTILE)
        store.record_email(
            "INBOX",
            1,
            7,
            message_id=None,
            sender=None,
            subject=HOSTILE,
            outcome=f"[/red]{ESC}[2J",
            reason=HOSTILE,
        )

    shown = run("status", env=env, cwd=tmp_path)
    as_json = run("status", "--json", env=env, cwd=tmp_path, rich=False)

    assert shown.returncode == 0, shown.stderr
    assert_inert(shown.stdout + shown.stderr)
    assert "[/red]\\x1b[2J" in shown.stdout
    # The machine-readable form keeps the stored text exactly (JSON escapes it itself).
    assert json.loads(as_json.stdout)["bots"][0]["last_error"] == HOSTILE


def test_doctor_shows_a_hostile_folder_name_literally(
    sim: CertainlySimulator, imap: EmbeddedImap, tmp_path: Path
) -> None:
    env = job_env(sim, imap, tmp_path, INGEST_IMAP__FOLDER=HOSTILE)

    shown = run("doctor", env=env, cwd=tmp_path)

    assert shown.returncode == 1  # that folder does not exist: FAIL, not a crash
    assert_inert(shown.stdout + shown.stderr)
    assert "FAIL" in shown.stdout


def test_verify_shows_hostile_file_names_literally(tmp_path: Path) -> None:
    name = f"bot_id=[bold][link=https:evil.example]x{ESC}[2J"  # a folder name: no '/'
    partition = tmp_path / "archive" / "messages" / name / "date=2024-03-01"
    partition.mkdir(parents=True)
    (partition / "part-0.parquet").write_bytes(b"not parquet")
    env = dict(INGEST_OUTPUT__ROOT=str(tmp_path / "archive"), INGEST_STATE__PATH=str(tmp_path / "s.sqlite"))

    shown = run("verify", env=env, cwd=tmp_path, rich=False)  # plain lines

    assert shown.returncode == 1
    assert f"{ESC}[2J" not in shown.stdout + shown.stderr and "Traceback" not in shown.stderr
    assert "bot_id=[bold][link=https:evil.example]x\\x1b[2J/date=2024-03-01/part-0.parquet" in shown.stdout


def test_text_logs_carry_no_control_characters(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INGEST_LOG_FORMAT", "text")
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        setup_logging()
        logging.getLogger("ingest.test").warning("quarantined %s: %s", f"report{ESC}[2J.csv", HOSTILE)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    err = capsys.readouterr().err
    assert ESC not in err and "\x07" not in err
    assert "report\\x1b[2J.csv" in err and "[/bold]" in err
