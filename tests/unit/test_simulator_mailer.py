"""The simulator's report email: headers, body and an exact attachment round trip."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

from ingest.simulator import build_report_email, generate_messages, rows_to_csv
from ingest.simulator.mailer import ImapDelivery

BOT = "3f2b8c1e-0000-4000-8000-000000000001"


def _build(csv_bytes: bytes, **extra: object) -> EmailMessage:
    raw = build_report_email(
        csv_bytes=csv_bytes, bot_id=BOT, from_date=date(2024, 1, 1), to_date=date(2024, 1, 15), **extra
    )  # type: ignore[arg-type]
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_headers_and_body() -> None:
    sent = datetime(2024, 1, 16, 8, 30, tzinfo=UTC)
    msg = _build(b"id\r\n1\r\n", sent_at=sent)
    assert msg["Subject"] == f"Certainly message report {BOT} 2024-01-01 - 2024-01-15"
    assert msg["From"] == "reports@certainly.example"
    assert msg["To"] == "owner@example.test"
    assert parsedate_to_datetime(msg["Date"]) == sent
    assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@certainly.example>")
    body = msg.get_body(preferencelist=("plain",))
    assert body is not None and BOT in body.get_content()


def test_attachment_bytes_come_back_exactly() -> None:
    rows = generate_messages(BOT, date(2024, 1, 1), date(2024, 1, 3))
    csv_bytes = rows_to_csv(rows, bom=True)  # BOM, CRLF, bare LF in cells, non-ASCII
    msg = _build(csv_bytes)
    attachments = list(msg.iter_attachments())
    assert len(attachments) == 1
    part = attachments[0]
    assert part.get_content_type() == "text/csv"
    assert part.get_filename() == f"message_report_{BOT}_2024-01-01_2024-01-15.csv"
    assert part["Content-Transfer-Encoding"] == "base64"
    assert part.get_payload(decode=True) == csv_bytes


def test_custom_addresses_and_distinct_message_ids() -> None:
    first = _build(b"x", sender="a@example.com", recipient="b@example.org", message_id_domain="example.net")
    second = _build(b"x")
    assert first["From"] == "a@example.com" and first["To"] == "b@example.org"
    assert first["Message-ID"].endswith("@example.net>")
    assert first["Message-ID"] != second["Message-ID"]


def test_imap_delivery_repr_hides_password() -> None:
    delivery = ImapDelivery("127.0.0.1", 1, "user@example.test", "s3cret-value")
    assert "s3cret-value" not in repr(delivery)
    assert callable(delivery)
