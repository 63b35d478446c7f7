"""Killing the job at a crash point (``INGEST_CRASH_AT``, :mod:`ingest.crashpoints`) and
looking at the mailbox afterwards: shared by the crash tests of the emailed path and of
routing."""

from __future__ import annotations

import signal
from pathlib import Path

from imapclient import IMAPClient

from tests.support.job import ImapAccount, run_ingest


def run_killed_at(point: str, env: dict[str, str], cwd: Path) -> None:
    """``ingest run --until-done`` SIGKILLed by itself at ``point``; fails the test when the
    run never got there (it ended some other way)."""
    crashed = run_ingest(
        "run", "--until-done", "--timeout", "60", env={**env, "INGEST_CRASH_AT": point}, cwd=cwd
    )
    assert crashed.returncode == -signal.SIGKILL, f"{point} was never reached: {crashed.stderr}"


def folder_counts(account: ImapAccount) -> dict[str, int]:
    """Messages per selectable folder of the account (the mailbox after the runs)."""
    with IMAPClient(account.host, port=account.port, ssl=False, timeout=10) as client:
        client.login(account.username, account.password)
        return {
            name: client.folder_status(name, [b"MESSAGES"])[b"MESSAGES"]
            for flags, _, name in client.list_folders()
            if b"\\Noselect" not in flags
        }
