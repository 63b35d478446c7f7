"""Large messages are fetched part by part to disk (BODY.PEEK[n]<offset.length>), and
archive exactly what a whole-message fetch would. Real Dovecot."""

from __future__ import annotations

import io
import zipfile
from datetime import date
from email.message import EmailMessage
from pathlib import Path

import pytest

import ingest.mail.partfetch as partfetch
from ingest.archive.storage import storage_for
from ingest.mail.attachments import parse_email
from ingest.mail.mailbox import Mailbox
from ingest.pipeline.poll import poll_mailbox
from ingest.pipeline.summary import RunSummary
from ingest.settings import explicit_settings
from ingest.simulator import ImapDelivery, generate_messages, rows_to_csv
from ingest.state.store import Store
from ingest.state.windows import WindowState
from tests.support.archive import assert_archive_matches, expected_rows
from tests.support.dovecot import Dovecot

pytestmark = pytest.mark.integration

USER, PASSWORD = "big@example.test", "secret"
USERS = {USER: PASSWORD}
BOT = "b16b16b1-0000-4000-8000-000000000001"
WINDOWS = [
    (date(2024, 8, 1), date(2024, 8, 10)),
    (date(2024, 8, 11), date(2024, 8, 20)),
    (date(2024, 8, 21), date(2024, 8, 30)),
]


def report_email(first: date, last: date, how: str) -> bytes:
    csv = rows_to_csv(generate_messages(BOT, first, last))
    name = f"message_report_{BOT}_{first}_{last}"
    msg = EmailMessage()
    msg["From"] = "reports@certainly.example"
    msg["To"] = USER  # the vendor mails the token owner: the mailbox's own address here
    msg["Subject"] = f"Certainly message report {BOT} {first} - {last}"
    msg.set_content("Your report is attached.")
    if how == "zip":
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(f"{name}.csv", csv)
        msg.add_attachment(buffer.getvalue(), maintype="application", subtype="zip", filename=f"{name}.zip")
    elif how == "quoted-printable":
        msg.add_attachment(csv.decode(), subtype="csv", filename=f"{name}.csv", cte="quoted-printable")
    else:
        msg.add_attachment(csv, maintype="text", subtype="csv", filename=f"{name}.csv")
    return msg.as_bytes()


def test_large_messages_are_fetched_part_by_part_with_the_same_result(
    fresh_dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partfetch, "CHUNK", 64 * 1024)  # several ranges per attachment
    delivery = ImapDelivery(fresh_dovecot.host, fresh_dovecot.port, USER, PASSWORD)
    for (first, last), how in zip(WINDOWS, ["base64", "base64", "zip"], strict=True):
        delivery.deliver(report_email(first, last, how))
    settings = explicit_settings(
        imap={
            "host": fresh_dovecot.host,
            "port": fresh_dovecot.port,
            "security": "none",
            "username": USER,
            "password": PASSWORD,
            "allowed_senders": ["reports@certainly.example"],
            "part_fetch_bytes": 1024,
        },  # every one of these messages counts as large
        output={"root": str(tmp_path / "archive")},
        state={"path": tmp_path / "state.sqlite"},
    )
    with Store.open(settings.state.path) as store:
        for first, last in WINDOWS:
            store.plan_window(BOT, 1, first, last)
        for window in store.windows():
            store.transition(window.id, WindowState.SUBMITTING)
            store.transition(window.id, WindowState.ACCEPTED, accepted_at=1.0)
        summary = RunSummary()
        poll_mailbox(settings, store, storage_for(settings), summary)
        assert (summary.emails_archived, summary.reports_archived) == (3, 3), summary.problems
        assert {w.state for w in store.windows()} == {WindowState.ARCHIVED}
    assert_archive_matches(tmp_path / "archive", expected_rows([BOT], WINDOWS[0][0], WINDOWS[-1][1]))


def test_a_quoted_printable_part_decodes_to_the_same_bytes_as_a_whole_fetch(
    fresh_dovecot: Dovecot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(partfetch, "CHUNK", 16 * 1024)
    raw = report_email(*WINDOWS[0], "quoted-printable")
    ImapDelivery(fresh_dovecot.host, fresh_dovecot.port, USER, PASSWORD).deliver(raw)
    settings = explicit_settings(
        imap={
            "host": fresh_dovecot.host,
            "port": fresh_dovecot.port,
            "security": "none",
            "username": USER,
            "password": PASSWORD,
        }
    )
    with Mailbox(settings.imap) as box:
        box.select()
        header, parts = partfetch.fetch_parts_to_disk(box, box.new_uids(0)[0], tmp_path)
    whole = parse_email(raw)
    assert parse_email(header).message_id == whole.message_id
    assert [(p.filename, p.path.read_bytes()) for p in parts] == [(r.filename, r.data) for r in whole.reports]
