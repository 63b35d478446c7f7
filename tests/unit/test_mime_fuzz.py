"""Fuzzing the email side: random MIME structures and random bytes never raise; every
report found is either archived or quarantined with a reason."""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from email.message import EmailMessage
from pathlib import Path

from hypothesis import HealthCheck, given, settings, strategies as st

from ingest.archiver import RunSummary, archive_report
from ingest.attachments import parse_email
from ingest.simulator import generate_messages, rows_to_csv
from ingest.store import Store

BOT = "f0f0f0f0-0000-4000-8000-000000000001"
GOOD_CSV = rows_to_csv(generate_messages(BOT, *[__import__("datetime").date(2024, 1, 1)] * 2))

names = st.one_of(st.none(), st.text(max_size=40).map(lambda s: " ".join(s.splitlines())), st.sampled_from(
    ["report.csv", "../../etc/passwd.csv", "r.csv.gz", "bundle.zip", "logo.png", "=?utf-8?q?x?=.csv",
     "Bericht Grüße.csv", "a/b\\c.csv", ".hidden.csv"]))
payloads = st.one_of(
    st.binary(max_size=300),
    st.just(GOOD_CSV),
    st.just(b"id,timestamp\n1,2024-01-01T00:00:00Z\n2,not-a-date\n"),
    st.just(b"\xff\xfe not utf-8, at all\n"),
    st.builds(lambda b: gzip.compress(b), st.sampled_from([GOOD_CSV, b"id,timestamp\n"])),
    st.builds(lambda b: b[: len(b) // 2], st.just(gzip.compress(GOOD_CSV))),  # truncated gzip
)


@st.composite
def zips(draw: st.DrawFn) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for n in range(draw(st.integers(0, 3))):
            archive.writestr(draw(st.sampled_from([f"r{n}.csv", f"../x{n}.csv", f"d/{n}.txt"])),
                             draw(payloads))
    return buffer.getvalue()


@st.composite
def emails(draw: st.DrawFn) -> EmailMessage:
    # Serialised in the test body: the email package draws MIME boundaries from `random`.
    msg = EmailMessage()
    msg["From"] = draw(st.sampled_from(["reports@certainly.example", "a@b", "", "x <y@z>, w@v"]))
    msg["Subject"] = draw(st.text(max_size=60).map(lambda s: " ".join(s.splitlines())))
    msg.set_content(draw(st.text(max_size=100)))
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["csv", "octet", "zip", "gzip", "text", "nested"]))
        filename = draw(names)
        if kind == "zip":
            msg.add_attachment(draw(zips()), maintype="application", subtype="zip", filename=filename)
        elif kind == "nested":
            inner = EmailMessage()
            inner["Subject"] = "forwarded"
            inner.add_attachment(draw(payloads), maintype="text", subtype="csv", filename="inner.csv")
            msg.add_attachment(inner)
        else:
            maintype, subtype = {"csv": ("text", "csv"), "octet": ("application", "octet-stream"),
                                 "gzip": ("application", "gzip"), "text": ("text", "plain")}[kind]
            data = draw(payloads)
            if maintype == "text":
                msg.add_attachment(data.decode("utf-8", "replace"), subtype=subtype, filename=filename,
                                   cte=draw(st.sampled_from(["base64", "quoted-printable"])))
            else:
                msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return msg


@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    parsed = parse_email(raw)
    assert all(r.filename and "/" not in r.filename for r in parsed.reports)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(message=emails())
def test_every_report_is_archived_or_quarantined_with_a_reason(message: EmailMessage, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    raw = message.as_bytes()
    workdir = tmp_path_factory.mktemp("fuzz")
    root = workdir / "archive"
    parsed = parse_email(raw)
    with Store.open(workdir / "state.sqlite") as store:
        summary = RunSummary()
        for report in parsed.reports:
            assert "/" not in report.filename and "\\" not in report.filename
            outcome = archive_report(root, store, report, parsed, summary, bot_id=BOT)
            assert outcome in {"archived", "duplicate", "quarantined"}
            if outcome == "quarantined":
                reasons = list((root / "quarantine").glob("*/reason.json"))
                # A whole file has one "reason"; rejected rows have "reasons" counted by kind.
                docs = [json.loads(p.read_text()) for p in reasons]
                assert docs and all(d.get("reason") or d.get("reasons") for d in docs)
        assert summary.balanced
    # Nothing is ever written outside the archive root.
    assert {p.name for p in workdir.iterdir()} <= {"archive", "state.sqlite", "state.sqlite-wal",
                                                   "state.sqlite-shm"}
    assert all(Path(p).resolve().is_relative_to(root.resolve()) for p in root.rglob("*"))
