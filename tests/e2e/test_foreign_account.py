"""Another account's genuine report forwarded into our mailbox (issue 23), against real parts:
a private Dovecot, the simulator over HTTP, the real CLI (``python -m ingest``).

Anyone with a Certainly account of their own can export their own bot and forward the
vendor's genuine email here: its DKIM signature still passes, so our server writes
``dkim=pass`` / ``dmarc=pass``; it arrives after our export was asked for; its file name has
our window's dates; it names no bot. Only its To (signed) says it is not ours; a Cc naming
us, added on the way (unsigned), does not make it ours. Our own report with a raw UTF-8
display name in its To (RFC 6532) is ours.

The job reads the archive mailbox ``archive01@example.test`` while the token's owner is
``owner@corp.test``, whose mail reaches it by a redirect (the original To kept): the
owner's forwarding keeps working while another account's report is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

import pytest
from imapclient import IMAPClient

from ingest.simulator import CertainlySimulator, SimulatorConfig, generate_messages, rows_to_csv
from tests.support.archive import assert_archive_matches, expected_rows, read_archive
from tests.support.dovecot import Dovecot
from tests.support.job import job_env, run_ingest

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PASSWORD = "secret"
MAILBOX = "archive01@example.test"  # the mailbox the job reads
USERS = {MAILBOX: PASSWORD}
OWNER = "owner@corp.test"  # the token's owner: the vendor mails exports here
STRANGER = "ops@other-customer.test"  # another Certainly account's address
VENDOR = "reports@certainly.example"
MX = "mx.example.test"  # our receiving server's authserv-id
BOTS = ["7a2e0000-0000-4000-8000-0000000000a1", "7a2e0000-0000-4000-8000-0000000000b2"]
THEIR_BOT = "7a2e0000-0000-4000-8000-0000000000f9"  # the other account's bot
START, END = date(2024, 5, 1), date(2024, 5, 10)  # two windows of 5 days per bot
WAIT = 30.0


def received_by_our_mx(raw: bytes) -> bytes:
    """The message as our MX stores genuine vendor mail: DKIM and DMARC pass on top."""
    verdict = "dkim=pass header.d=certainly.example; dmarc=pass header.from=certainly.example"
    return f"Authentication-Results: {MX}; {verdict}\r\n".encode() + raw


def their_report(start: date, end: date, *, cc: str | None = None) -> bytes:
    """The vendor's genuine email of the other account's export of the same days: To their
    address, a file name with our dates and no bot, their rows; ``cc``: a Cc added on the
    way (the vendor mails none, so its DKIM signature does not cover one)."""
    msg = EmailMessage(policy=SMTP)
    msg["From"] = VENDOR
    msg["To"] = STRANGER
    if cc:
        msg["Cc"] = cc
    msg["Subject"] = "Your Certainly message report"
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = make_msgid(idstring="theirs", domain="certainly.example")
    msg.set_content("Hello,\n\nYour message report is attached as a CSV file.\n")
    csv = rows_to_csv(generate_messages(THEIR_BOT, start, end))
    msg.add_attachment(
        csv, maintype="text", subtype="csv", filename=f"message_report_{start}_{end}.csv", cte="base64"
    )
    return received_by_our_mx(msg.as_bytes())


@pytest.fixture
def sim() -> Iterator[CertainlySimulator]:
    config = SimulatorConfig(sender=VENDOR, recipient=OWNER, delivery_delay=0.0)
    with CertainlySimulator(config) as simulator:  # no deliver: the test appends each email
        yield simulator


def test_another_accounts_genuine_reports_are_never_archived_and_every_window_gets_its_own(
    dovecot: Dovecot, sim: CertainlySimulator, tmp_path: Path
) -> None:
    env = job_env(
        sim,
        dovecot_account(dovecot),
        tmp_path,
        INGEST_CERTAINLY__ACCOUNT_EMAIL=OWNER,
        INGEST_IMAP__REQUIRE_AUTHENTICATION="true",
        INGEST_IMAP__AUTHSERV_ID=MX,
        INGEST_REQUESTER__WINDOW_DAYS="5",
        INGEST_LOG_FORMAT="text",
        COLUMNS="400",
    )

    def cli(*args: str) -> tuple[int, str]:
        done = run_ingest(*args, env=env, cwd=tmp_path, timeout=120)
        assert "Traceback" not in done.stderr, done.stderr
        return done.returncode, done.stdout + done.stderr

    def append(raw: bytes) -> None:
        with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
            client.login(MAILBOX, PASSWORD)
            client.append("INBOX", raw, flags=())

    code, out = cli(
        "backfill", *[a for bot in BOTS for a in ("--bot", bot)], "--from", str(START), "--to", str(END)
    )
    assert code == 0, out
    outputs = []
    for _ in range(4):  # two bots x two windows, one export at a time
        sent = len(sim.outbox)
        code, out = cli("run")  # POSTs the next window
        assert sim.wait_idle(WAIT) and len(sim.outbox) == sent + 1, out
        ours = sim.outbox[-1]
        window = accepted_window(tmp_path)
        theirs = their_report(*window, cc=OWNER if len(outputs) % 2 else None)  # a Cc never counts
        append(theirs)  # right after the POST, before our own report
        if len(outputs) == 2:  # RFC 6532: a raw UTF-8 display name in our own report's To
            ours = ours.replace(f"To: {OWNER}\r\n".encode(), f"To: Jürgen Müller <{OWNER}>\r\n".encode())
            assert "Jürgen".encode() in ours
        append(received_by_our_mx(ours))
        code, out = cli("run")
        outputs.append(out)
        assert code == 1, out  # the foreign report needs a person
        assert f"addressed to {STRANGER}, not to this account" in out, out
        assert f"attention: email {message_id_of(theirs)}" in out, out  # the email named

    # Every window archived its own report; not one row of the other account's: the archive
    # is exactly the simulator's rows of our bots (ids, contents, bots, days).
    assert window_states(tmp_path) == {"archived"}
    assert_archive_matches(tmp_path / "archive", expected_rows(BOTS, START, END))
    assert read_archive(tmp_path / "archive").height == len(expected_rows(BOTS, START, END))
    # The foreign emails are left where they arrived; ours moved on to the processed folder.
    with IMAPClient(dovecot.host, port=dovecot.port, ssl=False, timeout=10) as client:
        client.login(MAILBOX, PASSWORD)
        client.select_folder("INBOX", readonly=True)
        assert len(client.search(["ALL"])) == 4
        assert len(client.search(["TO", STRANGER])) == 4
    # Each foreign email is kept aside as unmatched with its reason (the two bots' windows
    # share dates, so the other account's two exports of those dates have the same bytes).
    with closing(sqlite3.connect(tmp_path / "state.sqlite")) as conn:
        emails = conn.execute("SELECT outcome, reason FROM emails ORDER BY uid").fetchall()
        unmatched = conn.execute(
            "SELECT filename, reason FROM attachments WHERE outcome = 'unmatched'"
        ).fetchall()
    assert [o for o, _ in emails] == ["unmatched", "archived"] * 4
    assert all(f"addressed to {STRANGER}, not to this account" in r for o, r in emails if o == "unmatched")
    assert sorted(name for name, _ in unmatched) == [
        f"message_report_{START}_2024-05-05.csv",
        f"message_report_2024-05-06_{END}.csv",
    ]


class _Account:
    def __init__(self, dovecot: Dovecot) -> None:
        self.host, self.port, self.username, self.password = dovecot.host, dovecot.port, MAILBOX, PASSWORD


def dovecot_account(dovecot: Dovecot) -> _Account:
    return _Account(dovecot)


def message_id_of(raw: bytes) -> str:
    head = raw.split(b"\r\n\r\n", 1)[0].decode()
    return next(
        line.split(":", 1)[1].strip() for line in head.split("\r\n") if line.lower().startswith("message-id:")
    )


def accepted_window(workdir: Path) -> tuple[date, date]:
    with closing(sqlite3.connect(workdir / "state.sqlite")) as conn:
        [(start, end)] = conn.execute(
            "SELECT from_date, to_date FROM windows WHERE state = 'accepted'"
        ).fetchall()
    return date.fromisoformat(start), date.fromisoformat(end)


def window_states(workdir: Path) -> set[str]:
    with closing(sqlite3.connect(workdir / "state.sqlite")) as conn:
        return {state for (state,) in conn.execute("SELECT state FROM windows")}
