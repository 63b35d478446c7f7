"""Report files out of emails: plain, gzip and zip attachments, names, bombs, senders."""

from __future__ import annotations

import email.policy
import gzip
import io
import zipfile
from email.message import EmailMessage

import pytest

import ingest.mail.attachments
from ingest.mail.attachments import parse_email, safe_name
from ingest.mail.senders import sender_address, sender_allowed

CSV = 'id,timestamp,message\r\n1,2024-01-01T10:00:00Z,"Grüße, ""hi""\nsecond line"\r\n'.encode()
CSV2 = b"id,timestamp,message\r\n2,2024-01-02T10:00:00Z,plain\r\n"


def _email(body: str = "Your report is attached.\n") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Certainly <reports@certainly.example>"
    msg["To"] = "owner@example.test"
    msg["Subject"] = "Certainly message report"
    msg["Date"] = "Mon, 01 Jan 2024 10:00:00 +0000"
    msg["Message-ID"] = "<report-1@certainly.example>"
    msg["Authentication-Results"] = "mx.example.test; dkim=pass header.d=certainly.example"
    msg.set_content(body)
    return msg


def _raw(msg: EmailMessage) -> bytes:
    return msg.as_bytes(policy=email.policy.SMTP)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_csv_attachment_and_provenance_headers() -> None:
    msg = _email()
    msg.add_attachment(CSV, maintype="text", subtype="csv", filename="report.csv")

    parsed = parse_email(_raw(msg))

    assert [(r.filename, r.data) for r in parsed.reports] == [("report.csv", CSV)]
    assert parsed.problems == []
    assert parsed.message_id == "<report-1@certainly.example>"
    assert parsed.sender == "Certainly <reports@certainly.example>"
    assert parsed.subject == "Certainly message report"
    assert parsed.date == "Mon, 01 Jan 2024 10:00:00 +0000"
    assert parsed.authentication_results == ["mx.example.test; dkim=pass header.d=certainly.example"]


def test_octet_stream_with_csv_name() -> None:
    msg = _email()
    msg.add_attachment(CSV, maintype="application", subtype="octet-stream", filename="export.CSV")

    parsed = parse_email(_raw(msg))

    assert [(r.filename, r.data) for r in parsed.reports] == [("export.CSV", CSV)]


def test_gzipped_csv() -> None:
    msg = _email()
    msg.add_attachment(gzip.compress(CSV), maintype="application", subtype="gzip", filename="report.csv.gz")

    parsed = parse_email(_raw(msg))

    assert [(r.filename, r.data) for r in parsed.reports] == [("report.csv", CSV)]


def test_zip_with_two_csvs_and_a_readme() -> None:
    msg = _email()
    payload = _zip({"day1.csv": CSV, "sub/day2.csv": CSV2, "README.txt": b"not a report"})
    msg.add_attachment(payload, maintype="application", subtype="zip", filename="reports.zip")

    parsed = parse_email(_raw(msg))

    assert sorted((r.filename, r.data) for r in parsed.reports) == [("day1.csv", CSV), ("day2.csv", CSV2)]
    assert parsed.problems == []


def test_rfc2231_non_ascii_filename() -> None:
    raw = (
        b"From: reports@certainly.example\r\nSubject: report\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n'
        b"--B\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
        b"--B\r\nContent-Type: text/csv\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment;\r\n"
        b" filename*=utf-8''rapport_Gr%C3%BC%C3%9Fe_%E4%BD%A0%E5%A5%BD.csv\r\n\r\n"
        b"aWQsbWVzc2FnZQ0KMSxoaQ0K\r\n"
        b"--B--\r\n"
    )

    parsed = parse_email(raw)

    assert [(r.filename, r.data) for r in parsed.reports] == [
        ("rapport_Grüße_你好.csv", b"id,message\r\n1,hi\r\n")
    ]


def test_quoted_printable_csv_decodes_to_the_same_bytes() -> None:
    data = CSV + b"3,2024-01-03T10:00:00Z," + b"x" * 150 + b"=sign\r\n"
    msg = _email()
    msg.add_attachment(data, maintype="text", subtype="csv", filename="qp.csv", cte="quoted-printable")
    raw = _raw(msg)
    assert b"Content-Transfer-Encoding: quoted-printable" in raw

    parsed = parse_email(raw)

    assert [(r.filename, r.data) for r in parsed.reports] == [("qp.csv", data)]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd.csv", "passwd.csv"),
        ("..\\..\\windows\\system32\\x.csv", "x.csv"),
        ("/abs/path/report.csv", "report.csv"),
        ("..csv", "csv"),
        ("rep\x00ort\r\n.csv", "report.csv"),
    ],
)
def test_attachment_names_are_labels_not_paths(name: str, expected: str) -> None:
    assert safe_name(name) == expected


def test_traversal_filename_comes_back_safe() -> None:
    msg = _email()
    msg.add_attachment(CSV, maintype="text", subtype="csv", filename="../../etc/passwd.csv")

    parsed = parse_email(_raw(msg))

    assert [r.filename for r in parsed.reports] == ["passwd.csv"]


def test_zip_member_with_traversal_name_comes_back_safe() -> None:
    msg = _email()
    msg.add_attachment(
        _zip({"../../../tmp/evil.csv": CSV}), maintype="application", subtype="zip", filename="r.zip"
    )

    parsed = parse_email(_raw(msg))

    assert [r.filename for r in parsed.reports] == ["evil.csv"]


def test_zip_bomb_is_a_problem_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest.mail.attachments, "MAX_INFLATED_BYTES", 10_000)
    msg = _email()
    msg.add_attachment(
        _zip({"bomb.csv": b"0" * 200_000}), maintype="application", subtype="zip", filename="bomb.zip"
    )
    msg.add_attachment(CSV2, maintype="text", subtype="csv", filename="fine.csv")

    parsed = parse_email(_raw(msg))

    assert [r.filename for r in parsed.reports] == ["fine.csv"]
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith("attachment bomb.zip:")
    assert "10000" in parsed.problems[0]


def test_gzip_bomb_is_a_problem_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ingest.mail.attachments, "MAX_INFLATED_BYTES", 10_000)
    msg = _email()
    msg.add_attachment(
        gzip.compress(b"0" * 200_000), maintype="application", subtype="gzip", filename="bomb.csv.gz"
    )

    parsed = parse_email(_raw(msg))

    assert parsed.reports == []
    assert len(parsed.problems) == 1
    assert "bomb.csv.gz" in parsed.problems[0]


@pytest.mark.parametrize(
    ("subtype", "filename", "payload"),
    [
        ("zip", "broken.zip", b"PK\x03\x04 definitely not a zip"),
        ("gzip", "broken.csv.gz", b"\x1f\x8b not gzip either"),
    ],
)
def test_corrupt_archive_is_a_problem(subtype: str, filename: str, payload: bytes) -> None:
    msg = _email()
    msg.add_attachment(payload, maintype="application", subtype=subtype, filename=filename)

    parsed = parse_email(_raw(msg))

    assert parsed.reports == []
    assert len(parsed.problems) == 1
    assert filename in parsed.problems[0]


def test_body_text_is_not_a_report() -> None:
    msg = _email("id,timestamp,message\n1,2024-01-01T00:00:00Z,looks like csv\nsee report.csv\n")
    msg.add_alternative("<p>Your report.csv is attached</p>", subtype="html")

    parsed = parse_email(_raw(msg))

    assert parsed.reports == []
    assert parsed.problems == []


def test_body_is_skipped_next_to_a_real_attachment_and_a_logo() -> None:
    msg = _email()
    msg.add_alternative("<p>Hello</p>", subtype="html")
    msg.add_attachment(b"\x89PNG\r\n\x1a\n", maintype="image", subtype="png", filename="logo.png")
    msg.add_attachment(CSV, maintype="text", subtype="csv", filename="report.csv")

    parsed = parse_email(_raw(msg))

    assert [(r.filename, r.data) for r in parsed.reports] == [("report.csv", CSV)]


@pytest.mark.parametrize(
    ("address", "allowed", "expected"),
    [
        ("reports@certainly.io", ["reports@certainly.io"], True),
        ("reports@certainly.io", ["Reports@Certainly.IO"], True),
        ("other@certainly.io", ["reports@certainly.io"], False),
        ("xreports@certainly.io", ["reports@certainly.io"], False),
        ("reports@certainly.io", ["@certainly.io"], True),
        ("anyone@certainly.io", ["certainly.io"], True),
        ("x@evil-certainly.io", ["certainly.io"], False),
        ("x@evil-certainly.io", ["@certainly.io"], False),
        ("x@certainly.io.evil.com", ["@certainly.io"], False),
        ("x@sub.certainly.io", ["@certainly.io"], False),
        ("reports@certainly.io", [], False),
        (None, ["@certainly.io"], False),
    ],
)
def test_sender_allowed(address: str | None, allowed: list[str], expected: bool) -> None:
    assert sender_allowed(address, allowed) is expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("Certainly <Reports@Certainly.IO>", "reports@certainly.io"),
        ("reports@certainly.io", "reports@certainly.io"),
        ("a@certainly.io, b@evil.example", None),
        ("Certainly <reports@certainly.io>, Evil <x@evil.example>", None),
        ("reports@certainly.io <attacker@evil.example>", None),
        ("", None),
        (None, None),
    ],
)
def test_sender_address(header: str | None, expected: str | None) -> None:
    assert sender_address(header) == expected


def test_spoofed_display_name_is_not_the_sender() -> None:
    address = sender_address('"reports@certainly.io" <attacker@evil.example>')

    assert address == "attacker@evil.example"
    assert not sender_allowed(address, ["reports@certainly.io"])
