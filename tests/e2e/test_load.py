"""Load: 20 bots x 1 year of windows through a real Dovecot whose folder also holds 1,000
unrelated emails. Prints wall time, the job's peak RSS and the state store's size."""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest
from imapclient import IMAPClient

from ingest.simulator import CertainlySimulator, ImapDelivery, SimulatorConfig
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.dovecot import Dovecot
from tests.support.job import job_env, run_ingest, start_ingest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BOTS = [f"10ad0000-0000-4000-8000-{n:012d}" for n in range(1, 21)]
FIRST, LAST = date(2023, 1, 1), date(2023, 12, 31)
USER, PASSWORD = "load@example.test", "secret"
USERS = {USER: PASSWORD}
UNRELATED = 1000


@dataclass
class Account:
    host: str
    port: int
    username: str
    password: str


def fill_with_unrelated(dovecot: Dovecot, count: int) -> None:
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=30) as client:
        client.login(USER, PASSWORD)
        for n in range(count):
            msg = EmailMessage()
            msg["From"] = f"newsletter{n % 37}@example.net"
            msg["Subject"] = f"Unrelated message {n}"
            msg.set_content("Nothing to archive here.\n" * 20)
            client.append("INBOX", msg.as_bytes())


def test_twenty_bots_for_a_year_among_a_thousand_unrelated_emails(dovecot: Dovecot, tmp_path: Path) -> None:
    fill_with_unrelated(dovecot, UNRELATED)
    account = Account(dovecot.host, dovecot.port, USER, PASSWORD)
    config = SimulatorConfig(delivery_delay=0.02, recipient=USER)
    with CertainlySimulator(config, deliver=ImapDelivery(dovecot.host, dovecot.port, USER, PASSWORD)) as sim:
        env = job_env(
            sim,
            account,
            tmp_path,
            INGEST_REQUESTER__WINDOW_DAYS="92",
            INGEST_REQUESTER__POLL_INTERVAL="0.02",
            INGEST_LOG_FORMAT="text",
        )
        args = [
            "backfill",
            *[a for bot in BOTS for a in ("--bot", bot)],
            "--from",
            str(FIRST),
            "--to",
            str(LAST),
        ]
        assert run_ingest(*args, env=env, cwd=tmp_path).returncode == 0
        started = time.monotonic()
        log = tmp_path / "job.log"
        with log.open("wb") as sink:
            job = start_ingest(
                "run",
                "--until-done",
                "--timeout",
                "600",
                env=env,
                cwd=tmp_path,
                stdout=sink,
                stderr=subprocess.STDOUT,
                text=False,
            )
            _, status, usage = os.wait4(job.pid, 0)  # wait4: the child's own peak RSS
            job.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        assert job.returncode == 0, log.read_text()
    state_bytes = sum(p.stat().st_size for p in tmp_path.glob("state.sqlite*"))
    with Store.open(tmp_path / "state.sqlite") as store:
        windows = store.windows()
        assert {w.state for w in windows} == {WindowState.ARCHIVED}
        emails = store.email_counts()
    truth = expected_rows(BOTS, FIRST, LAST)
    assert_archive_matches(tmp_path / "archive", truth)
    assert emails.get("ignored") == UNRELATED
    figures = (
        f"load: {len(BOTS)} bots x {(LAST - FIRST).days + 1} days, {len(windows)} windows, "
        f"{UNRELATED} unrelated emails, {len(truth)} rows: wall {wall:.1f} s, "
        f"peak RSS {usage.ru_maxrss / 1024:.0f} MiB, state store {state_bytes / 1024:.0f} KiB"
    )
    print(figures)
    (tmp_path.parent / "load-figures.txt").write_text(figures + "\n")
