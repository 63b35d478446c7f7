"""Model-based test of the watcher: hypothesis drives a real IMAP server (pymap) through
deliveries, duplicates, unrelated mail, expunges, UIDVALIDITY changes, crashes at every
crash point and job runs, and checks after each step: no duplicates in the archive, and
after a clean run, exactly the rows of every report that reached the mailbox."""

from __future__ import annotations

import itertools
from datetime import date, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from imapclient import IMAPClient

import ingest.crashpoints as crashpoints
from ingest.archive.storage import storage_for
from ingest.pipeline.poll import poll_mailbox
from ingest.pipeline.summary import RunSummary
from ingest.settings import explicit_settings
from ingest.simulator import (
    EmbeddedImap,
    build_report_email,
    generate_messages,
    rows_to_csv,
)
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import read_archive
from tests.support.mail import RECIPIENT

pytestmark = [pytest.mark.slow, pytest.mark.integration]

BOT = "9e0d7c6b-0000-4000-8000-0000000000e1"
SENDER = "reports@certainly.example"
WINDOWS = [
    (date(2024, 7, 1) + timedelta(days=3 * i), date(2024, 7, 3) + timedelta(days=3 * i)) for i in range(4)
]
MAIL_POINTS = ("after_screening", "after_fetch", "after_state", "after_move")
_counter = itertools.count()


class SimulatedCrash(BaseException):
    """Stands for SIGKILL inside the test process (BaseException: nothing catches it)."""


def report_email(index: int) -> bytes:
    first, last = WINDOWS[index]
    return build_report_email(
        csv_bytes=rows_to_csv(generate_messages(BOT, first, last)),
        bot_id=BOT,
        from_date=first,
        to_date=last,
        sender=SENDER,
    )


def stranger_email(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "someone@example.net"
    msg["Subject"] = f"unrelated {n}"
    msg.set_content("hello")
    return msg.as_bytes()


@pytest.fixture(scope="module")
def imap_server() -> Any:
    with EmbeddedImap() as server:
        yield server


def test_watcher_state_machine(
    imap_server: EmbeddedImap, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def die() -> None:
        raise SimulatedCrash

    monkeypatch.setattr(crashpoints, "_die", die)
    emails = [report_email(i) for i in range(len(WINDOWS))]

    class Mailbox(RuleBasedStateMachine):
        @initialize()
        def setup(self) -> None:
            n = next(_counter)
            self.folder, self.processed = f"In{n}", f"Done{n}"
            self.workdir = tmp_path_factory.mktemp(f"model{n}")
            self.settings = explicit_settings(
                certainly={"account_email": [RECIPIENT]},  # build_report_email's default To
                imap={
                    "host": imap_server.host,
                    "port": imap_server.port,
                    "security": "none",
                    "username": imap_server.username,
                    "password": imap_server.password,
                    "folder": self.folder,
                    "processed_folder": self.processed,
                    "allowed_senders": [SENDER],
                    "timeout": 10,
                    "reconnect_attempts": 1,
                },
                output={"root": str(self.workdir / "archive")},
                state={"path": self.workdir / "state.sqlite"},
            )
            self.client = IMAPClient(imap_server.host, port=imap_server.port, ssl=False, timeout=10)
            self.client.login(imap_server.username, imap_server.password)
            self.client.create_folder(self.folder)
            self.store = Store.open(self.settings.state.path)
            for first, last in WINDOWS:  # exports were requested and accepted
                self.store.plan_window(BOT, 1, first, last)
            for window in self.store.windows():
                self.store.transition(window.id, WindowState.SUBMITTING)
                self.store.transition(window.id, WindowState.ACCEPTED, accepted_at=float(window.id))
            self.reached: set[int] = set()  # windows whose report was archived or is in the folder
            self.strangers = 0

        def teardown(self) -> None:
            if hasattr(self, "store"):
                self.store.close()
                self.client.logout()

        def inbox(self) -> dict[int, bytes]:
            self.client.select_folder(self.folder)
            uids = self.client.search("ALL")
            fetched = self.client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
            return {uid: data[b"BODY[]"] for uid, data in fetched.items()}

        @rule(index=st.integers(0, len(WINDOWS) - 1))
        def deliver(self, index: int) -> None:
            self.client.append(self.folder, emails[index])

        @rule()
        def unrelated(self) -> None:
            self.strangers += 1
            self.client.append(self.folder, stranger_email(self.strangers))

        @rule(data=st.data())
        def expunge_one(self, data: st.DataObject) -> None:
            inbox = self.inbox()
            if inbox:
                uid = data.draw(st.sampled_from(sorted(inbox)))
                self.client.delete_messages([uid])
                self.client.uid_expunge([uid])

        @rule()
        def uidvalidity_changes(self) -> None:
            kept = list(self.inbox().values())
            self.client.close_folder()
            self.client.delete_folder(self.folder)
            self.client.create_folder(self.folder)
            for message in kept:
                self.client.append(self.folder, message)

        @rule(point=st.sampled_from(MAIL_POINTS))
        def crash(self, point: str) -> None:
            self._note_reached()
            monkeypatch.setenv("INGEST_CRASH_AT", point)
            try:
                poll_mailbox(self.settings, self.store, storage_for(self.settings), RunSummary())
            except SimulatedCrash:
                pass
            finally:
                monkeypatch.delenv("INGEST_CRASH_AT")

        @rule()
        def run_job(self) -> None:
            self._note_reached()
            summary = RunSummary()
            poll_mailbox(self.settings, self.store, storage_for(self.settings), summary)
            assert summary.balanced
            archived = {w.from_date for w in self.store.windows(states=(WindowState.ARCHIVED,))}
            assert archived == {WINDOWS[i][0] for i in self.reached}
            assert set(self.archive_keys()) == {
                row["id"] for i in self.reached for row in generate_messages(BOT, *WINDOWS[i])
            }
            # Only unrelated mail is left in the watched folder.
            assert all(b"someone@example.net" in raw for raw in self.inbox().values())

        def _note_reached(self) -> None:
            wanted = {raw: i for i, raw in enumerate(emails)}
            self.reached |= {wanted[raw] for raw in self.inbox().values() if raw in wanted}

        def archive_keys(self) -> list[int]:
            root = Path(self.settings.output.root) / "messages"
            return read_archive(root.parent)["id"].to_list() if any(root.rglob("*.parquet")) else []

        @invariant()
        def never_a_duplicate(self) -> None:
            if hasattr(self, "settings"):
                keys = self.archive_keys()
                assert len(keys) == len(set(keys))

    Mailbox.TestCase.settings = hsettings(
        max_examples=12,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    Mailbox.TestCase().runTest()
